"""Big files and many readers: a generated 300 MiB file byte for byte (sequential, with
read-ahead), and 16 concurrent readers at random offsets on a cold cache, each byte checked,
with every block fetched at most once (single-flight)."""
import os
import random
import sys
import threading

import fstest

MiB = 1 << 20


class Large(fstest.FsTest):
    def test_300mib_file(self):
        root = os.path.join(self.tmp, "repos")
        src = os.path.join(root, "big", "m", "weights.bin")
        fstest.write_random(src, 300 * MiB, 42)
        h = self.hub(root)
        m = self.mount(h.url)
        got = m.path("big", "m", "weights.bin")
        self.assertEqual(os.path.getsize(got), 300 * MiB)
        self.assertEqual(fstest.sha256_file(got), fstest.sha256_file(src))
        log = h.requests()
        self.assertEqual(len([r for r in log if r["bucket"] == "resolvers"]), 1)
        self.assertLessEqual(len([r for r in log if r["bucket"] == "api"]), 2)
        cdn = [r for r in log if r["listener"] == "cdn"]
        self.assertEqual(len(cdn), 75)  # 4 MiB blocks, each once
        s = m.stats()
        self.assertGreater(s["blocks"]["readahead"], 50)


class Concurrent(fstest.FsTest):
    READERS = 16
    READS = 150

    def test_random_readers(self):
        root = os.path.join(self.tmp, "repos")
        src = os.path.join(root, "conc", "m", "data.bin")
        size = 40 * MiB + 12345
        fstest.write_random(src, size, 5)
        want = fstest.read_bytes(src)
        h = self.hub(root)
        m = self.mount(h.url, None, "--block-size", "1M")
        path = m.path("conc", "m", "data.bin")
        errors = []

        def reader(seed):
            rnd = random.Random(seed)
            try:
                with open(path, "rb", buffering=0) as f:
                    for _ in range(self.READS):
                        off = rnd.randrange(0, size)
                        n = rnd.choice((1, 4096, 65536, 200000, 1 << 20))
                        got = os.pread(f.fileno(), n, off)
                        if got != want[off:off + n]:
                            errors.append("reader %d: wrong bytes at %d+%d" % (seed, off, n))
                            return
            except OSError as e:
                errors.append("reader %d: %s" % (seed, e))

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(self.READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        self.assertFalse(any(t.is_alive() for t in threads), "readers hung")
        self.assertEqual(errors, [])
        cdn = [r for r in h.requests() if r["listener"] == "cdn"]
        ranges = [r["range"] for r in cdn]
        self.assertEqual(len(ranges), len(set(ranges)), "a block was fetched twice")
        self.assertLessEqual(len(ranges), 41)
        # and the whole file is right afterwards
        self.assertEqual(fstest.sha256_file(path), fstest.sha256_file(src))


if __name__ == "__main__":
    fstest.main()
