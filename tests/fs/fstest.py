"""Helpers for the hfmount end-to-end tests: a local Hub server and an hfmount mount, both
always torn down (unmounted, killed), also when a test fails.

Environment: HFMOUNT (the binary), HUBSERVER (scripts/hubserver.py), HF_SHARED_DATA (optional
../shared/data). A test that cannot run here exits 77 after printing "SKIP: why"."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HFMOUNT = os.environ.get("HFMOUNT", os.path.join(ROOT, "build", "bin", "hfmount"))
HUBSERVER = os.environ.get("HUBSERVER", os.path.join(ROOT, "scripts", "hubserver.py"))
SAMPLE = os.path.join(ROOT, "tests", "data", "stories260K-hf")
SHARED = os.environ.get("HF_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def require_fuse():
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        skip("FUSE is not available (/dev/fuse, fusermount3)")
    if not os.path.exists(HFMOUNT):
        skip("hfmount is not built: " + HFMOUNT)


def require_shared():
    if not os.path.isdir(SHARED):
        skip("../shared/data not found")


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def write_random(path, size, seed):
    """size pseudo-random bytes, reproducible from seed."""
    import random
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        done = 0
        while done < size:
            n = min(1 << 20, size - done)
            f.write(rnd.randbytes(n))
            done += n


def read_text(path):
    """The whole text of a file, closed again (no ResourceWarning)."""
    with open(path, errors="replace") as f:
        return f.read()


def read_bytes(path):
    """The whole content of a file, closed again."""
    with open(path, "rb") as f:
        return f.read()


class Hub:
    """scripts/hubserver.py on a free port, with its request log."""

    def __init__(self, root, *flags):
        self.dir = tempfile.mkdtemp(prefix="hfhub-")
        self.log = os.path.join(self.dir, "requests.jsonl")
        portfile = os.path.join(self.dir, "port")
        with open(os.path.join(self.dir, "hub.err"), "w") as err:  # the child keeps a copy
            self.proc = subprocess.Popen(
                [sys.executable, HUBSERVER, "--root", root, "--port", "0", "--port-file", portfile,
                 "--log", self.log, *flags], stdout=subprocess.DEVNULL, stderr=err)
        for _ in range(200):
            if os.path.exists(portfile) and read_text(portfile).strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError("hubserver died: " + read_text(os.path.join(self.dir, "hub.err")))
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("hubserver did not start")
        self.port = int(read_text(portfile))
        self.url = "http://127.0.0.1:%d" % self.port

    def requests(self, since=0):
        """The request log from entry `since`, once the server is idle."""
        with urllib.request.urlopen("%s/_control/log?since=%d&wait=3" % (self.url, since)) as r:
            return [json.loads(l) for l in r.read().decode().splitlines() if l.strip()]

    def count(self):
        return len(self.requests())

    def control(self, **cmd):
        req = urllib.request.Request(self.url + "/_control", data=json.dumps(cmd).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"{}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Mount:
    """hfmount -f on a temporary mount point; stop() unmounts and waits for the daemon."""

    def __init__(self, endpoint, cache, *args, env=None, wait=True):
        self.mnt = tempfile.mkdtemp(prefix="hfmnt-")
        self.errpath = self.mnt + ".log"
        e = dict(os.environ)
        e.pop("HF_TOKEN", None)
        e["HF_HOME"] = e.get("HF_HOME_TEST", os.path.join(cache, "hf-home-unused"))
        e.update(env or {})
        cmd = [HFMOUNT, "-f", "--cache-dir", cache, *args, self.mnt]
        if endpoint:
            cmd[1:1] = ["--endpoint", endpoint]
        with open(self.errpath, "w") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=err)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.ismount(self.mnt):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("hfmount exited %d: %s" % (self.proc.returncode, self.log()))
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("hfmount did not mount in %ds" % timeout)

    def log(self):
        try:
            return read_text(self.errpath)
        except OSError:
            return ""

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def stats(self):
        with open(self.path(".hfmount", "stats")) as f:
            return json.load(f)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)

    def stop(self):
        """Unmount and wait for the daemon; its exit status (a sanitizer report fails)."""
        if os.path.ismount(self.mnt):
            if subprocess.run(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL).returncode:
                subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.rmdir(self.mnt)
        except OSError:
            pass
        log = self.log()
        try:
            os.unlink(self.errpath)
        except OSError:
            pass
        for bad in ("ThreadSanitizer", "AddressSanitizer", "runtime error:", "LeakSanitizer"):
            if bad in log:
                raise AssertionError("hfmount reported a sanitizer error:\n" + log[-20000:])
        return self.proc.returncode


class FsTest(unittest.TestCase):
    """Base class: self.tmp (removed afterwards), hub()/mount() that clean up after themselves."""

    def setUp(self):
        require_fuse()
        self.tmp = tempfile.mkdtemp(prefix="hftest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def hub(self, root, *flags):
        h = Hub(root, *flags)
        self.addCleanup(h.stop)
        return h

    def mount(self, endpoint, cache=None, *args, **kw):
        m = Mount(endpoint, cache or os.path.join(self.tmp, "cache"), *args, **kw)
        self.addCleanup(m.stop)
        return m

    def sample_repo(self, org="demo", name="stories260K"):
        root = os.path.join(self.tmp, "repos")
        dst = os.path.join(root, org, name)
        shutil.copytree(SAMPLE, dst)
        return root, dst

    def assertTreesEqual(self, src, mounted):
        """Every file under src is byte-identical under mounted, and nothing else is there."""
        want, got = [], []
        for d, _, files in os.walk(src):
            if "/.hub" in d or d.endswith(".hub"):
                continue
            want += [os.path.relpath(os.path.join(d, f), src) for f in files]
        for d, _, files in os.walk(mounted):
            got += [os.path.relpath(os.path.join(d, f), mounted) for f in files]
        self.assertEqual(sorted(want), sorted(got))
        for rel in want:
            a, b = os.path.join(src, rel), os.path.join(mounted, rel)
            self.assertEqual(os.path.getsize(a), os.path.getsize(b), rel)
            self.assertEqual(sha256_file(a), sha256_file(b), rel)


def main():
    require_fuse()
    unittest.main(verbosity=2)
