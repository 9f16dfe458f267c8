"""hfmount end to end on the bundled sample: listing, byte-identical reads and mmap through the
block cache, read-only semantics, the stats file, and what it costs in requests."""
import errno
import json
import mmap
import os
import subprocess
import time

import fstest


class Basic(fstest.FsTest):
    def setUp(self):
        super().setUp()
        self.root, self.src = self.sample_repo()
        self.h = self.hub(self.root, "--lfs-threshold", "100000")
        self.m = self.mount(self.h.url)
        self.repo = self.m.path("demo", "stories260K")

    def test_listing_and_sizes(self):
        names = sorted(os.listdir(self.repo))
        self.assertEqual(names, sorted(os.listdir(self.src)))
        for n in names:
            st = os.stat(os.path.join(self.repo, n))
            self.assertEqual(st.st_size, os.path.getsize(os.path.join(self.src, n)), n)
            self.assertEqual(st.st_mode & 0o777, 0o444, n)
        self.assertEqual(os.stat(self.repo).st_mode & 0o777, 0o555)
        self.assertIn("demo", os.listdir(self.m.mnt))
        self.assertIn("stories260K", os.listdir(self.m.path("demo")))

    def test_bytes_identical(self):
        self.assertTreesEqual(self.src, self.repo)

    def test_mmap_shared_and_private(self):
        want = fstest.read_bytes(os.path.join(self.src, "model.safetensors"))
        for flags in (mmap.MAP_SHARED, mmap.MAP_PRIVATE):
            with open(os.path.join(self.repo, "model.safetensors"), "rb") as f:
                m = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
                self.assertEqual(len(m), len(want))
                # touch the pages out of order, then compare everything
                for off in (len(want) - 1, 0, len(want) // 2, 4096 * 3 + 17):
                    self.assertEqual(m[off], want[off])
                self.assertEqual(m[:], want)
                m.close()

    def test_read_only(self):
        p = os.path.join(self.repo, "config.json")
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC):
            with self.assertRaises(OSError) as cm:
                os.open(p, flags)
            self.assertEqual(cm.exception.errno, errno.EROFS)
        for op in (lambda: os.open(os.path.join(self.repo, "new"), os.O_CREAT | os.O_WRONLY),
                   lambda: os.mkdir(os.path.join(self.repo, "d")),
                   lambda: os.unlink(p),
                   lambda: os.rename(p, p + ".x"),
                   lambda: os.chmod(p, 0o644)):
            with self.assertRaises(OSError) as cm:
                op()
            self.assertEqual(cm.exception.errno, errno.EROFS)

    def test_missing_names(self):
        with self.assertRaises(FileNotFoundError):
            os.stat(os.path.join(self.repo, "nope.json"))
        with self.assertRaises(FileNotFoundError):
            os.stat(self.m.path("demo", "no-such-repo"))
        with self.assertRaises(FileNotFoundError):
            os.stat(self.m.path("demo", "..bad"))

    def test_requests(self):
        # first full read: 2 API calls for the repo, then one resolve per file, no more
        for n in os.listdir(self.repo):
            fstest.read_bytes(os.path.join(self.repo, n))
        log = self.h.requests()
        api = [r for r in log if r["bucket"] == "api"]
        resolves = [r for r in log if r["bucket"] == "resolvers"]
        self.assertLessEqual(len(api), 2, api)
        files = sorted(os.listdir(self.src))
        self.assertEqual(sorted(r["path"].rsplit("/", 1)[1] for r in resolves), files)
        self.assertTrue(all(not r["auth"] for r in log if r["listener"] == "cdn"))
        n = len(log)
        # a second read of everything (new opens, page cache dropped) costs zero requests
        subprocess.run(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"], stderr=subprocess.DEVNULL)
        self.assertTreesEqual(self.src, self.repo)
        # 50 probes of names not in the tree cost zero requests
        for i in range(50):
            with self.assertRaises(FileNotFoundError):
                os.stat(os.path.join(self.repo, "probe-%d.bin" % i))
        self.assertEqual(self.h.requests(since=n), [])

    def test_statfs(self):
        st = os.statvfs(self.m.mnt)
        self.assertTrue(st.f_flag & os.ST_RDONLY)
        self.assertEqual(st.f_namemax, 255)

    def test_expired_or_refused_download_url(self):
        big = os.path.join(self.src, "big.bin")
        fstest.write_random(big, 12 << 20, 9)
        h = self.hub(self.root, "--cdn-ttl", "4")
        m = self.mount(h.url, os.path.join(self.tmp, "c2"), "--block-size", "1M",
                       "--readahead", "0")
        path = m.path("demo", "stories260K", "big.bin")
        want = fstest.read_bytes(big)
        with open(path, "rb", buffering=0) as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)  # no kernel read-ahead
            self.assertEqual(os.pread(f.fileno(), 1 << 20, 0), want[:1 << 20])
            time.sleep(4.5)  # the signed URL has expired: resolved again, once
            self.assertEqual(os.pread(f.fileno(), 1 << 20, 5 << 20), want[5 << 20:6 << 20])
            h.control(cmd="fault", kind="cdn_refuse", listener="cdn", count=1)
            self.assertEqual(os.pread(f.fileno(), 1 << 20, 9 << 20), want[9 << 20:10 << 20])
        log = h.requests()
        resolves = [r for r in log if r["bucket"] == "resolvers" and r["path"].endswith("big.bin")]
        # an expired or refused URL costs one more resolve, never one per block
        self.assertGreaterEqual(len(resolves), 2, resolves)
        self.assertLessEqual(len(resolves), 3, resolves)

    def test_stats(self):
        fstest.read_bytes(os.path.join(self.repo, "model.safetensors"))
        s = self.m.stats()
        self.assertGreaterEqual(s["blocks"]["bytes_network"], 1176152)
        self.assertEqual(s["blocks"]["resolves"], 1)
        self.assertIn("api", s["http"]["buckets"])
        self.assertGreaterEqual(s["http"]["buckets"]["api"]["requests"], 2)
        self.assertGreaterEqual(s["fs"]["bytes_read"], 1176152)


class Daemon(fstest.FsTest):
    def test_daemonizes_when_ready(self):
        root, src = self.sample_repo()
        h = self.hub(root)
        mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(mnt)
        env = dict(os.environ, HF_HOME=os.path.join(self.tmp, "hf"))
        r = subprocess.run([fstest.HFMOUNT, "--endpoint", h.url, "--cache-dir",
                            os.path.join(self.tmp, "cache"), mnt], env=env, timeout=30)
        self.addCleanup(subprocess.run, ["fusermount3", "-u", mnt])
        self.assertEqual(r.returncode, 0)
        self.assertTrue(os.path.ismount(mnt))
        self.assertEqual(fstest.read_bytes(os.path.join(mnt, "demo/stories260K/config.json")),
                         fstest.read_bytes(os.path.join(src, "config.json")))

    def test_bad_usage(self):
        for args in ([], ["--block-size", "3"], ["--log-level", "loud", "/tmp"],
                     ["--endpoint", "ftp://x", self.tmp], [os.path.join(self.tmp, "absent")]):
            r = subprocess.run([fstest.HFMOUNT, *args], capture_output=True, text=True, timeout=10)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn("hfmount", r.stderr, args)
        r = subprocess.run([fstest.HFMOUNT, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for opt in ("--endpoint", "--cache-dir", "--token-file", "--offline", "--revalidate",
                    "--block-size", "--cache-max", "--max-wait", "--rate", "--readahead",
                    "--log-level", "-o", "-f", "-d"):
            self.assertIn(opt, r.stdout)


if __name__ == "__main__":
    fstest.main()
