"""The block cache end to end: persisted metadata (a second mount costs zero requests), offline
mode (a repo that is not cached is logged once), corrupted blocks, kill -9 in the middle of a
download, the whole-file sha256 check (a failed one also drops the kernel's pages of the file),
--cache-max, and the huggingface_hub cache."""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request

import fstest

MiB = 1 << 20


def digest(data):
    return hashlib.sha256(data).hexdigest()


def wait_block_stat(m, key, timeout=10):
    """The mount's blocks.<key> once it is nonzero (the whole-file check runs on a worker after
    the last block arrives), or its value at the timeout."""
    end = time.time() + timeout
    while time.time() < end:
        v = m.stats()["blocks"][key]
        if v:
            return v
        time.sleep(0.1)
    return m.stats()["blocks"][key]


def read_all(root):
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                while fh.read(1 << 20):
                    pass


class Cache(fstest.FsTest):
    def setUp(self):
        super().setUp()
        self.root, self.src = self.sample_repo()
        self.cache = os.path.join(self.tmp, "cache")

    def populate(self, h, *args):
        m = self.mount(h.url, self.cache, *args)
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        self.assertEqual(m.stop(), 0)

    def blocks(self):
        return sorted(p for p in glob.glob(os.path.join(self.cache, "blocks", "*", "*", "*"))
                      if os.path.basename(p).isdigit())

    def test_second_mount_costs_nothing(self):
        h = self.hub(self.root, "--lfs-threshold", "100000")
        self.populate(h)
        n = h.count()
        m = self.mount(h.url, self.cache)
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        self.assertEqual(sorted(os.listdir(m.mnt)), [".hfmount", "datasets", "demo"])
        for i in range(50):
            self.assertFalse(os.path.exists(m.path("demo", "stories260K", "missing%d" % i)))
        self.assertEqual(h.requests(since=n), [])
        self.assertEqual(m.stats()["metadata"]["from_cache"], 1)

    def test_offline(self):
        h = self.hub(self.root)
        self.populate(h)
        h.stop()  # nothing listens any more
        for args, env in ((["--offline"], {}), ([], {"HF_HUB_OFFLINE": "1"})):
            m = self.mount(h.url, self.cache, *args, env=env)
            self.assertEqual(os.listdir(m.path("demo")), ["stories260K"])  # ls works offline
            self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
            self.assertFalse(os.path.exists(m.path("demo", "not-cached")))
            self.assertTrue(m.stats()["offline"])
            m.stop()

    def test_offline_miss_is_logged_once(self):
        h = self.hub(self.root)
        self.populate(h)  # demo/stories260K is cached, at its default branch only
        h.stop()
        for args, env in ((["--offline"], {}), ([], {"HF_HUB_OFFLINE": "1"})):
            log = os.path.join(self.tmp, "offline%d.log" % len(args))
            m = self.mount(h.url, self.cache, "--log", log, *args, env=env)
            for _ in range(3):
                for name in ("missing", "stories260K@v2"):
                    with self.assertRaises(FileNotFoundError):
                        os.stat(m.path("demo", name))
                time.sleep(1.2)  # past the kernel's negative entry: the next stat reaches hfmount
            self.assertGreaterEqual(m.stats()["fs"]["negative_lookups"], 6)
            self.assertTrue(os.path.isfile(m.path("demo", "stories260K", "config.json")))
            self.assertEqual(m.stop(), 0)
            text = fstest.read_text(log)
            self.assertNotIn("Sanitizer", text)  # --log takes stderr, sanitizer reports too
            lines = [l for l in text.splitlines() if "not in the cache" in l]
            self.assertEqual(len(lines), 2, lines)  # one per repo, not per lookup
            self.assertIn("demo/missing: not in the cache, and offline", lines[0])
            self.assertIn("demo/stories260K@v2: not in the cache, and offline", lines[1])
            for l in lines:
                self.assertIn("HF_HUB_OFFLINE", l)

    def test_revalidation_failure_keeps_serving(self):
        h = self.hub(self.root)
        self.populate(h)
        h.stop()
        # the branch is due for a recheck, but the Hub is gone: the known commit serves
        m = self.mount(h.url, self.cache, "--revalidate", "0", "--max-wait", "2")
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        self.assertGreaterEqual(m.stats()["metadata"]["check_failures"], 1)

    def test_corrupt_block_is_refetched(self):
        h = self.hub(self.root, "--lfs-threshold", "100000")
        self.populate(h, "--block-size", "256K")
        model = [b for b in self.blocks() if os.path.getsize(b) > 4096 + 200000]
        self.assertGreater(len(model), 2)
        victims = model[:2]
        with open(victims[0], "r+b") as f:  # one data byte
            f.seek(4096 + 12345)
            c = f.read(1)
            f.seek(4096 + 12345)
            f.write(bytes([c[0] ^ 0x40]))
        with open(victims[1], "r+b") as f:  # the header
            f.seek(30)
            f.write(b"\xff\xff")
        n = h.count()
        m = self.mount(h.url, self.cache, "--block-size", "256K")
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        s = m.stats()
        self.assertEqual(s["cache"]["blocks_corrupt"], 2)
        self.assertEqual(s["blocks"]["fetched"], 2)
        new = [r for r in h.requests(since=n) if r["listener"] == "cdn"]
        self.assertEqual(len(new), 2, new)

    def test_truncated_block_file(self):
        h = self.hub(self.root, "--lfs-threshold", "100000")
        self.populate(h, "--block-size", "256K")
        b = [b for b in self.blocks() if os.path.getsize(b) > 4096 + 200000][0]
        os.truncate(b, 4096 + 1000)
        m = self.mount(h.url, self.cache, "--block-size", "256K")
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        self.assertEqual(m.stats()["cache"]["blocks_corrupt"], 1)

    def test_kill9_during_download(self):
        big = os.path.join(self.src, "big.bin")
        fstest.write_random(big, 48 * MiB, 7)
        h = self.hub(self.root)
        h.control(cmd="fault", kind="slow", rate=MiB, listener="cdn", count=-1)
        for attempt in range(2):
            m = self.mount(h.url, self.cache, "--block-size", "1M")
            reader = subprocess.Popen(["cat", m.path("demo", "stories260K", "big.bin")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2.5)
            m.kill9()
            reader.wait(timeout=30)
        have = len([b for b in self.blocks() if os.path.getsize(b) == 4096 + MiB])
        self.assertGreater(have, 0)  # complete blocks survived
        self.assertLess(have, 48)    # and the download was really cut
        h.control(cmd="clear_faults")
        n = h.count()
        m = self.mount(h.url, self.cache, "--block-size", "1M")
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        fetched = len([r for r in h.requests(since=n) if r["listener"] == "cdn"])
        self.assertLessEqual(fetched, 48 - have + 1)
        self.assertEqual(m.stats()["cache"]["blocks_corrupt"], 0)

    def test_sha256_mismatch_drops_file(self):
        big = os.path.join(self.src, "big.bin")
        fstest.write_random(big, 12 * MiB, 3)
        h = self.hub(self.root)
        h.control(cmd="fault", kind="corrupt", offset=1000, listener="cdn", count=1)
        m = self.mount(h.url, self.cache, "--block-size", "1M")
        with open(m.path("demo", "stories260K", "big.bin"), "rb") as f:
            f.read()
        self.assertEqual(wait_block_stat(m, "sha256_bad"), 1)
        self.assertIn("sha256", m.log())
        m.stop()
        m = self.mount(h.url, self.cache, "--block-size", "1M")
        self.assertEqual(fstest.sha256_file(m.path("demo", "stories260K", "big.bin")),
                         fstest.sha256_file(big))
        self.assertEqual(wait_block_stat(m, "sha256_ok"), 1)

    def test_sha256_mismatch_evicts_kernel_pages(self):
        big = os.path.join(self.src, "big.bin")
        fstest.write_random(big, 12 * MiB, 5)
        want = fstest.sha256_file(big)
        h = self.hub(self.root)
        h.control(cmd="fault", kind="corrupt", offset=1000, listener="cdn", count=1)
        m = self.mount(h.url, self.cache, "--block-size", "1M")
        path = m.path("demo", "stories260K", "big.bin")
        with open(path, "rb") as f:
            self.assertNotEqual(digest(f.read()), want)  # one flipped byte arrived
            self.assertEqual(wait_block_stat(m, "sha256_bad"), 1)
            self.assertIn("sha256", m.log())
            h.control(cmd="clear_faults")
            # The kernel keeps a file's pages across opens (keep_cache): the bad ones must be
            # gone once the check has failed, for this open and the next, without a remount.
            f.seek(0)
            self.assertEqual(digest(f.read()), want, "the same open, after the failed check")
        self.assertEqual(fstest.sha256_file(path), want, "a new open, after the failed check")
        self.assertEqual(wait_block_stat(m, "sha256_ok"), 1)

    def test_cache_max_evicts_lru(self):
        for i in range(3):
            fstest.write_random(os.path.join(self.src, "f%d.bin" % i), 16 * MiB, i)
        h = self.hub(self.root)
        m = self.mount(h.url, self.cache, "--block-size", "1M", "--cache-max", "24M")
        repo = m.path("demo", "stories260K")
        for i in range(3):
            self.assertEqual(fstest.sha256_file(os.path.join(repo, "f%d.bin" % i)),
                             fstest.sha256_file(os.path.join(self.src, "f%d.bin" % i)))
        total = sum(os.path.getsize(b) for b in self.blocks())
        self.assertLessEqual(total, 24 * MiB + MiB + 4096)
        self.assertGreater(m.stats()["cache"]["blocks_evicted"], 0)
        self.assertTreesEqual(self.src, repo)  # evicted blocks come back

    def test_hf_hub_cache_is_served_without_requests(self):
        h = self.hub(self.root)
        with urllib.request.urlopen(h.url + "/api/models/demo/stories260K") as r:
            commit = json.load(r)["sha"]
        hub = os.path.join(self.tmp, "hf", "hub")
        folder = os.path.join(hub, "models--demo--stories260K")
        os.makedirs(os.path.join(folder, "blobs"))
        os.makedirs(os.path.join(folder, "refs"))
        with open(os.path.join(folder, "refs", "main"), "w") as f:
            f.write(commit)
        snapdir = os.path.join(folder, "snapshots", commit)
        os.makedirs(snapdir)
        for name in os.listdir(self.src):
            etag = fstest.sha256_file(os.path.join(self.src, name))
            shutil.copy(os.path.join(self.src, name), os.path.join(folder, "blobs", etag))
            os.symlink(os.path.join("..", "..", "blobs", etag), os.path.join(snapdir, name))
        n = h.count()
        m = self.mount(h.url, self.cache, env={"HF_HUB_CACHE": hub})
        self.assertIn("demo", os.listdir(m.mnt))
        self.assertTreesEqual(self.src, m.path("demo", "stories260K"))
        self.assertEqual(h.requests(since=n), [])
        self.assertEqual(m.stats()["metadata"]["from_hf_cache"], 1)
        self.assertGreater(m.stats()["fs"]["bytes_hf_cache"], 1000000)


if __name__ == "__main__":
    fstest.main()
