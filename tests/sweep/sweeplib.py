"""Shared fixtures for the hfsweep tests: a local Hub serving the bundled stories260K model and
variants generated from it, the reference perplexities, and a way to run hfsweep.

Every server started here uses --port 0 --port-file and is killed in cleanup; every mount
hfsweep leaves behind (a kill -9'd sweep cannot unmount) is unmounted in cleanup as well."""

import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SCRIPTS = os.environ.get("HF_SCRIPTS", os.path.join(ROOT, "scripts"))
HFSWEEP = os.path.join(SCRIPTS, "hfsweep")
HUBSERVER = os.path.join(SCRIPTS, "hubserver.py")
DATA = os.environ.get("HF_TEST_DATA", os.path.join(ROOT, "tests", "data"))
SAMPLE = os.path.join(DATA, "stories260K-hf")
TEXT = os.path.join(DATA, "text", "tinystories_sample.txt")
SAMPLE_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
REL_TOL = 1e-5  # the demo's tolerance against the float64 reference


def load_hfsweep():
    """Import scripts/hfsweep (no .py suffix) as a module for white-box tests."""
    loader = importlib.machinery.SourceFileLoader("hfsweep", HFSWEEP)
    spec = importlib.util.spec_from_loader("hfsweep", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def refs():
    with open(os.path.join(SAMPLE, "refs.json"), encoding="utf-8") as f:
        t = json.load(f)["texts"]["tinystories_sample"]
    sl, ch = t["hf_sliding"], t["llamacpp_chunk"]
    return {
        ("sliding", 256, 128, "f32"): sl["L256_S128"]["ppl"],
        ("sliding", 256, 256, "f32"): sl["L256_S256"]["ppl"],
        ("llamacpp", 128, None, "f32"): ch["ctx_128"]["ppl"],
        ("sliding", 256, 128, "bf16"): sl["L256_S128"]["impl"]["numpy_f64_bf16_safetensors"]["ppl"],
    }


def binaries():
    """(hfmount, hfppl) paths, or a reason string why the end-to-end tests cannot run yet."""
    bindir = os.environ.get("HF_BIN_DIR", os.path.join(ROOT, "build", "bin"))
    hfmount = os.environ.get("HFMOUNT", os.path.join(bindir, "hfmount"))
    hfppl = os.environ.get("HFPPL", os.path.join(bindir, "hfppl"))
    missing = [p for p in (hfmount, hfppl) if not os.access(p, os.X_OK)]
    if missing:
        return f"not built yet: {', '.join(missing)}"
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        return "FUSE is not available (/dev/fuse, fusermount3)"
    return hfmount, hfppl


def skip_unless_binaries():
    """Visible skip (exit 77, ctest SKIP_RETURN_CODE) while hfmount/hfppl do not exist."""
    b = binaries()
    if isinstance(b, str):
        print(f"SKIP: {b}")
        sys.exit(77)
    return b


def to_bf16(src, dst):
    """The F32 safetensors rounded to BF16 (round to nearest even), same layout as the
    reference conversion (byte-identical to the data set's stories260K-hf-bf16)."""
    with open(src, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    hdr = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {"__metadata__": hdr.pop("__metadata__")} if "__metadata__" in hdr else {}
    chunks, off = [], 0
    for name in sorted(hdr, key=lambda k: hdr[k]["data_offsets"][0]):
        t = hdr[name]
        a, b = t["data_offsets"]
        vals = struct.unpack(f"<{(b - a) // 4}I", body[a:b])
        raw = struct.pack(f"<{len(vals)}H",
                          *(((v + 0x7FFF + ((v >> 16) & 1)) >> 16) & 0xFFFF for v in vals))
        out[name] = {"dtype": "BF16", "shape": t["shape"], "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hj = json.dumps(out, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(dst, "wb") as f:
        f.write(len(hj).to_bytes(8, "little") + hj + b"".join(chunks))


class Hub:
    """A folder of repos and the local Hub server serving it."""

    def __init__(self, work):
        self.work = work
        self.root = os.path.join(work, "repos")
        os.makedirs(self.root, exist_ok=True)
        self.proc = None
        self.url = None
        self.token = "hf_sweeptest_token_0123456789"
        self.token_file = os.path.join(work, "token")
        with open(self.token_file, "w", encoding="utf-8") as f:
            f.write(self.token + "\n")

    def add_copy(self, name):
        d = os.path.join(self.root, name)
        os.makedirs(d, exist_ok=True)
        for fn in SAMPLE_FILES:
            shutil.copyfile(os.path.join(SAMPLE, fn), os.path.join(d, fn))
        return d

    def add_bf16(self, name):
        d = self.add_copy(name)
        to_bf16(os.path.join(SAMPLE, "model.safetensors"), os.path.join(d, "model.safetensors"))
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        cfg["torch_dtype"] = "bfloat16"
        with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
        return d

    def add_corrupt_header(self, name):
        """The header length says more bytes than the file has: a corrupt safetensors header."""
        d = self.add_copy(name)
        path = os.path.join(d, "model.safetensors")
        with open(path, "r+b") as f:
            f.write((1 << 40).to_bytes(8, "little"))
        return d

    def add_unique(self, name, tag):
        """A copy whose config.json and safetensors bytes are its own (the same weights under a
        different header metadata), so that no block of it is already cached from another repo
        by content: the mount must really fetch it."""
        d = self.add_copy(name)
        path = os.path.join(d, "model.safetensors")
        with open(path, "rb") as f:
            data = f.read()
        n = int.from_bytes(data[:8], "little")
        hdr = json.loads(data[8:8 + n])
        hdr.setdefault("__metadata__", {})["variant"] = tag
        hj = json.dumps(hdr, separators=(",", ":")).encode()
        hj += b" " * (-len(hj) % 8)
        with open(path, "wb") as f:
            f.write(len(hj).to_bytes(8, "little") + hj + data[8 + n:])
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        cfg["variant"] = tag
        with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
        return d

    def add_gated(self, name):
        d = self.add_unique(name, "gated")
        os.makedirs(os.path.join(d, ".hub"), exist_ok=True)
        with open(os.path.join(d, ".hub", "meta.json"), "w", encoding="utf-8") as f:
            json.dump({"gated": "auto"}, f)
        return d

    def start(self, *extra):
        port_file = os.path.join(self.work, "hub.port")
        self.log = open(os.path.join(self.work, "hub.stderr"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, HUBSERVER, "--root", self.root, "--port", "0", "--port-file",
             port_file, "--log", os.path.join(self.work, "requests.jsonl"),
             "--token", self.token, *extra],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(self.work, "hub.stderr"), encoding="utf-8",
                          errors="replace") as f:
                    raise RuntimeError("the local Hub server did not start:\n" + f.read())
            time.sleep(0.05)
        with open(port_file, encoding="utf-8") as f:
            self.url = f"http://127.0.0.1:{f.read().strip()}"
        return self.url

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


def is_mounted(path):
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == os.path.realpath(path) for line in f if line.strip())


def unmount_leftovers(out):
    """Unmount what a kill -9'd hfsweep left mounted (it records its mount point in OUT/.mount)."""
    try:
        with open(os.path.join(out, ".mount"), encoding="utf-8") as f:
            mnt = json.load(f).get("mountpoint")
    except (OSError, ValueError):
        return
    if mnt and is_mounted(mnt):
        if subprocess.run(["fusermount3", "-u", mnt], capture_output=True).returncode != 0:
            subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)


class SweepCase(unittest.TestCase):
    """Base: a temporary work dir, a Hub, binaries, and helpers to run hfsweep."""

    def setUp(self):
        self.hfmount, self.hfppl = skip_unless_binaries()
        self.work = tempfile.mkdtemp(prefix="hfsweep-test.")
        self.hub = Hub(self.work)
        self.out = os.path.join(self.work, "out")
        self.cache = os.path.join(self.work, "cache")
        self.procs = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        unmount_leftovers(self.out)
        self.hub.stop()
        if os.environ.get("HFSWEEP_KEEP_WORK"):
            print(f"work dir kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def env(self):
        e = dict(os.environ, HFMOUNT=self.hfmount, HFPPL=self.hfppl)
        for k in ("HF_TOKEN", "HF_TOKEN_PATH", "HF_ENDPOINT"):
            e.pop(k, None)
        e["HF_HOME"] = os.path.join(self.work, "hf_home")  # no user token leaks in
        return e

    def base_args(self):
        return ["--endpoint", self.hub.url, "--cache-dir", self.cache, "--out", self.out,
                "--text", TEXT, "--threads", "1", "--timeout", "120"]

    def sweep(self, *args, timeout=240):
        """Run hfsweep to completion; returns CompletedProcess with text stdout/stderr."""
        r = subprocess.run([sys.executable, HFSWEEP, *args], capture_output=True, text=True,
                           env=self.env(), timeout=timeout, cwd=self.work)
        self.last = r
        return r

    def start_sweep(self, *args):
        log = open(os.path.join(self.work, f"sweep-{len(self.procs)}.stderr"), "wb")
        p = subprocess.Popen([sys.executable, HFSWEEP, *args], stdout=log, stderr=log,
                             env=self.env(), cwd=self.work, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(p)
        return p

    def results(self):
        path = os.path.join(self.out, "results.jsonl")
        recs = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
        return recs

    def latest(self):
        by = {}
        for r in self.results():
            by[r["model"], r["settings"]["method"], r["settings"].get("ctx"),
               r["settings"].get("stride") if r["settings"]["method"] == "sliding" else None] = r
        return by

    def explain(self):
        r = getattr(self, "last", None)
        s = "" if r is None else f"\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        logs = os.path.join(self.out, "logs")
        if os.path.isdir(logs):
            for fn in sorted(os.listdir(logs)):
                if fn.endswith(".log"):
                    with open(os.path.join(logs, fn), encoding="utf-8", errors="replace") as f:
                        s += f"\n--- {fn}\n{f.read()[-1500:]}"
        return s

    def assert_ppl(self, rec, ref):
        self.assertEqual(rec["status"], "ok", rec)
        rel = abs(rec["perplexity"] - ref) / ref
        self.assertLessEqual(rel, REL_TOL, f"{rec['model']}: ppl {rec['perplexity']} vs "
                                           f"reference {ref} (rel {rel:.2e})")


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def main():
    """Entry point for each test file: visible skip when the binaries are missing."""
    skip_unless_binaries()
    unittest.main(verbosity=2)


__all__ = ["SweepCase", "Hub", "refs", "TEXT", "SAMPLE", "load_hfsweep", "wait_for", "main",
           "signal", "unmount_leftovers", "is_mounted", "REL_TOL", "read_text"]
