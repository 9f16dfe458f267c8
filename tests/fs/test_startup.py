"""Start-up: every error that can be known before mounting is printed on stderr with exit
status 1 and leaves no mount (also when daemonizing); a detached daemon logs to --log FILE,
or to CACHE_DIR/hfmount.log where there is no syslog socket; a relative mount point is
unmounted at exit; a dead or live mount is refused instead of stacked over; an unreachable
endpoint is warned about at mount time, without an HTTP request to a reachable one."""
import errno
import os
import signal
import subprocess
import time

import fstest


class Startup(fstest.FsTest):
    def setUp(self):
        super().setUp()
        self.root, self.src = self.sample_repo()
        self.cache = os.path.join(self.tmp, "cache")
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        self.addCleanup(self.unmount, self.mnt)

    def env(self):
        e = dict(os.environ)
        e.pop("HF_TOKEN", None)
        e.pop("HF_ENDPOINT", None)
        e["HF_HOME"] = os.path.join(self.tmp, "hf-home")
        return e

    @staticmethod
    def unmount(mnt):
        """Whatever a test left on mnt, live or dead, is unmounted."""
        try:
            os.stat(mnt)
            live = os.path.ismount(mnt)
        except OSError as e:
            live = e.errno == errno.ENOTCONN
        if live:
            subprocess.run(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)

    def run_hfmount(self, *args, cwd=None, timeout=30):
        """hfmount as a user runs it (daemonizing unless -f is given); (status, stderr)."""
        p = subprocess.run([fstest.HFMOUNT, *args], env=self.env(), cwd=cwd, timeout=timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return p.returncode, p.stderr.decode(errors="replace")

    def assertRefused(self, want, *args):
        rc, err = self.run_hfmount(*args)
        self.assertEqual(rc, 1, err)
        self.assertIn(want, err)
        self.assertFalse(os.path.ismount(self.mnt), "a refused start left a mount")
        return err

    def test_bad_options_before_daemonizing(self):
        h = self.hub(self.root)
        base = ["--endpoint", h.url, "--cache-dir", self.cache]
        self.assertRefused("--rate 'foo'", *base, "--rate", "foo", self.mnt)
        self.assertRefused("--rate 'api=0/300'", *base, "--rate", "api=0/300", self.mnt)
        self.assertRefused("cannot read --token-file", *base, "--token-file",
                           os.path.join(self.tmp, "no-token"), self.mnt)
        self.assertRefused("cannot open the log file", *base, "--log",
                           os.path.join(self.tmp, "no-dir", "log"), self.mnt)
        blocker = os.path.join(self.tmp, "file")
        open(blocker, "w").close()
        self.assertRefused("cannot create the cache directory", "--endpoint", h.url,
                           "--cache-dir", os.path.join(blocker, "cache"), self.mnt)
        self.assertRefused("--block-size", *base, "--block-size", "3K", self.mnt)
        self.assertRefused("must start with http", "--endpoint", "ftp://x", self.mnt)
        self.assertRefused("not a directory", *base, blocker)
        self.assertEqual(h.count(), 0, "a refused start sent requests")

    def daemon(self, *args):
        rc, err = self.run_hfmount(*args, self.mnt)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.ismount(self.mnt))
        return err

    def test_daemon_log_file(self):
        h = self.hub(self.root)
        log = os.path.join(self.tmp, "hfmount.log")
        with open(log, "w") as f:
            f.write("earlier line\n")
        self.daemon("--endpoint", h.url, "--cache-dir", self.cache, "--log", log)
        want = open(os.path.join(self.src, "config.json"), "rb").read()
        self.assertEqual(open(os.path.join(self.mnt, "demo", "stories260K", "config.json"),
                              "rb").read(), want)
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        text = open(log).read()
        self.assertTrue(text.startswith("earlier line\n"), "--log must append")
        self.assertIn("serving %s on %s" % (h.url, os.path.realpath(self.mnt)), text)

    def test_daemon_log_fallback_without_syslog(self):
        if os.path.exists("/dev/log"):
            fstest.skip("a syslog socket exists here (/dev/log): the daemon logs to syslog")
        h = self.hub(self.root)
        self.daemon("--endpoint", h.url, "--cache-dir", self.cache)
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        log = os.path.join(self.cache, "hfmount.log")
        for _ in range(100):  # the daemon writes its last lines after the unmount
            if os.path.exists(log) and "serving" in open(log).read():
                break
            time.sleep(0.05)
        self.assertIn("serving %s" % h.url, open(log).read())

    def test_relative_mountpoint_unmounted_on_sigterm(self):
        h = self.hub(self.root)
        err = os.path.join(self.tmp, "err")
        p = subprocess.Popen([fstest.HFMOUNT, "-f", "--endpoint", h.url, "--cache-dir",
                              self.cache, "mnt"], cwd=self.tmp, env=self.env(),
                             stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        try:
            deadline = time.time() + 20
            while not os.path.ismount(self.mnt) and time.time() < deadline:
                self.assertIsNone(p.poll(), open(err).read())
                time.sleep(0.05)
            self.assertTrue(os.path.ismount(self.mnt))
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertFalse(os.path.ismount(self.mnt), "SIGTERM left the mount")
        self.assertNotIn("failed to unmount", open(err).read())
        os.stat(self.mnt)  # not a dead mount

    def test_dead_mount_refused(self):
        h = self.hub(self.root)
        p = subprocess.Popen([fstest.HFMOUNT, "-f", "--endpoint", h.url, "--cache-dir",
                              self.cache, self.mnt], env=self.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.ismount(self.mnt) and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        os.listdir(self.mnt)  # the daemon serves: past the FUSE handshake
        p.send_signal(signal.SIGKILL)
        p.wait()
        with self.assertRaises(OSError) as cm:
            os.statvfs(self.mnt)
        self.assertEqual(cm.exception.errno, errno.ENOTCONN)
        rc, err = self.run_hfmount("--endpoint", h.url, "--cache-dir", self.cache, self.mnt)
        self.assertEqual(rc, 1, err)
        self.assertIn("dead mount", err)
        self.assertIn("fusermount3 -u " + self.mnt, err)

    def test_live_mount_refused(self):
        h = self.hub(self.root)
        m = self.mount(h.url, self.cache)
        rc, err = self.run_hfmount("--endpoint", h.url, "--cache-dir", self.cache, m.mnt)
        self.assertEqual(rc, 1, err)
        self.assertIn("already an hfmount mount", err)
        # the first mount is intact and is the only one
        self.assertTrue(os.listdir(m.path("demo", "stories260K")))
        with open("/proc/self/mountinfo") as f:
            self.assertEqual(sum(1 for l in f if (" %s " % m.mnt) in l), 1)

    def test_unreachable_endpoint_warned(self):
        dead = "http://127.0.0.1:1"
        m = self.mount(dead, self.cache)
        self.assertIn("warning: cannot reach %s" % dead, m.log())
        self.assertIn("--offline", m.log())
        m2 = fstest.Mount(dead, os.path.join(self.tmp, "cache2"), "--offline")
        try:
            self.assertNotIn("cannot reach", m2.log())
        finally:
            m2.stop()

    def test_reachable_endpoint_probe_sends_no_request(self):
        h = self.hub(self.root)
        m = self.mount(h.url, self.cache)
        self.assertNotIn("cannot reach", m.log())
        self.assertEqual(h.count(), 0)
        self.assertIn("config.json", os.listdir(m.path("demo", "stories260K")))


if __name__ == "__main__":
    fstest.main()
