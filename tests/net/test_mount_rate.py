"""Rate limits through the mount (issue: never fail a run on a rate limit).

Against the local Hub server with quotas: parallel readers over many repos get every byte right,
with zero 429s when the mount paces itself, within 1.3x of the time the quota allows; a server
quota tighter than the mount's budget costs a few 429s but no failed read and no request before
the reset; two mounts on one cache dir share one budget; --max-wait bounds a permanent 429."""
import errno
import hashlib
import math
import os
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fs"))
from fstest import FsTest, write_random  # noqa: E402


def make_repos(root, nrepos, lfs_size=1_200_000):
    """nrepos repos org/rNN with 6 files each: 5 small ones and one LFS file."""
    files = []
    for r in range(nrepos):
        repo = "org/r%02d" % r
        d = os.path.join(root, repo)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write('{"model_type": "llama", "repo": %d}\n' % r)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            f.write('{"model": {"type": "BPE", "vocab": {"a": %d}}}\n' % r)
        for k in range(3):
            write_random(os.path.join(d, "part%d.bin" % k), 20_000 + 1000 * k, seed=r * 10 + k)
        write_random(os.path.join(d, "model.safetensors"), lfs_size, seed=1000 + r)
        files += [(repo, n) for n in sorted(os.listdir(d))]
    return files


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_all(mount_paths, root, files, nreaders):
    """nreaders threads read every file through the mounts (round robin); returns the errors."""
    errors, lock = [], threading.Lock()
    todo = list(enumerate(files))

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i, (repo, name) = todo.pop(0)
            mnt = mount_paths[i % len(mount_paths)]
            try:
                got = sha(os.path.join(mnt, repo, name))
                if got != sha(os.path.join(root, repo, name)):
                    raise ValueError("wrong bytes")
            except (OSError, ValueError) as e:
                with lock:
                    errors.append("%s/%s: %s" % (repo, name, e))

    threads = [threading.Thread(target=worker) for _ in range(nreaders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def quota_minimum(log, quotas):
    """Seconds from the quota's start until its fixed windows let the last request through."""
    worst = 0.0
    for bucket, (q, w) in quotas.items():
        n = sum(1 for e in log if e["bucket"] == bucket and e.get("status") != 429)
        worst = max(worst, (math.ceil(n / q) - 1) * w if n else 0.0)
    return worst


def early_requests(log, start, quotas):
    """Requests sent to a bucket after it answered 429 and before that window's reset."""
    bad = []
    for e in log:
        if e.get("status") != 429 or e["bucket"] not in quotas:
            continue
        w = quotas[e["bucket"]][1]
        reset = start + (math.floor((e["time"] - start) / w) + 1) * w
        bad += [f for f in log if f["bucket"] == e["bucket"] and
                e["time"] + 0.2 < f["time"] < reset - 0.2]
    return bad


class MountRateTest(FsTest):
    def start_quota(self, hub, quota):
        start = time.time()
        hub.control(cmd="quota", quota=quota, headers="ratelimit")
        return start, len(hub.requests())

    def test_paced_sweep(self):
        """api=12/30 s, resolvers=60/30 s, 8 readers over 20 repos x 6 files."""
        root = os.path.join(self.tmp, "repos")
        files = make_repos(root, 20)
        hub = self.hub(root, "--lfs-threshold", "1000000")
        m = self.mount(hub.url)
        quotas = {"api": (12, 30), "resolvers": (60, 30)}
        start, mark = self.start_quota(hub, "api=12/30,resolvers=60/30")
        errors = read_all([m.mnt], root, files, 8)
        wall = time.time() - start
        log = hub.requests(mark)
        n429 = sum(1 for e in log if e.get("status") == 429)
        minimum = quota_minimum(log, quotas)
        print("paced sweep: %d files, %d requests (api %d, resolvers %d), %d 429s, %.1f s, "
              "quota minimum %.0f s, ratio %.2f" % (
                  len(files), len(log), sum(e["bucket"] == "api" for e in log),
                  sum(e["bucket"] == "resolvers" for e in log), n429, wall, minimum,
                  wall / minimum if minimum else 0))
        self.assertEqual(errors, [])
        self.assertEqual(n429, 0, "the mount paced itself into a 429")
        self.assertGreater(minimum, 0)
        self.assertLessEqual(wall, 1.3 * minimum, "slower than 1.3x the quota minimum")
        st = m.stats()["http"]["buckets"]
        self.assertEqual(st["api"]["429s"], 0)
        self.assertEqual(st["api"]["quota"], 12)

    def test_tighter_server(self):
        """The server allows less than the mount's budget (--rate is looser, and another client
        spends part of the same quota): 429s happen, every read succeeds, and the mount sends
        nothing to a bucket between a 429 and the reset the server gave."""
        root = os.path.join(self.tmp, "repos")
        files = make_repos(root, 6, lfs_size=200_000)
        hub = self.hub(root, "--lfs-threshold", "100000")
        m = self.mount(hub.url, None, "--rate", "api=100/8,resolvers=100/8")
        quotas = {"api": (6, 8), "resolvers": (12, 8)}
        start, mark = self.start_quota(hub, "api=6/8,resolvers=12/8")
        stop = threading.Event()

        def other_client():  # another machine with the same token spends 10 of the 12
            for k in (1, 2):  # resolves right after the first two resets, unknown to the mount
                if stop.wait(max(0.0, start + k * 8 + 0.2 - time.time())):
                    return
                for _ in range(10):
                    try:
                        urllib.request.urlopen(
                            hub.url + "/org/r00/resolve/main/config.json?other=1").read()
                    except OSError:  # a 429 (HTTPError) ends the burst
                        break

        other = threading.Thread(target=other_client)
        other.start()
        try:
            # interleave the repos so that the first readers all need a new repo's listing
            order = sorted(files, key=lambda f: (f[1], f[0]))
            errors = read_all([m.mnt], root, order, 8)
        finally:
            stop.set()
            other.join()
        log = [e for e in hub.requests(mark) if "other=1" not in e.get("query", "")]
        n429 = sum(1 for e in log if e.get("status") == 429)
        early = early_requests(log, start, quotas)
        print("tighter server: %d files, %d 429s, %d early requests, %.1f s" % (
            len(files), n429, len(early), time.time() - start))
        if os.environ.get("NET_TEST_VERBOSE"):
            for e in log:
                print("%6.2f %-9s %s %s" % (e["time"] - start, e["bucket"], e.get("status"),
                                           e["path"][-40:]))
        self.assertEqual(errors, [])
        self.assertGreater(n429, 0, "the server's tighter quota was never hit")
        self.assertEqual(early, [], "requests sent to a paused bucket before its reset")

    def test_two_mounts_one_budget(self):
        """Two mounts on one cache dir under one quota: zero 429s combined."""
        root = os.path.join(self.tmp, "repos")
        files = make_repos(root, 8, lfs_size=200_000)
        hub = self.hub(root, "--lfs-threshold", "100000")
        cache = os.path.join(self.tmp, "cache")
        m1 = self.mount(hub.url, cache)
        m2 = self.mount(hub.url, cache)
        start, mark = self.start_quota(hub, "api=6/8,resolvers=20/8")
        # each mount reads its own repos so that both spend the budget
        errors = read_all([m1.mnt, m2.mnt], root, sorted(files, key=lambda f: f[0]), 8)
        log = hub.requests(mark)
        n429 = sum(1 for e in log if e.get("status") == 429)
        print("two mounts: %d files, %d requests, %d 429s, %.1f s" % (
            len(files), len(log), n429, time.time() - start))
        self.assertEqual(errors, [])
        self.assertEqual(n429, 0)

    def test_max_wait_permanent_429(self):
        """--max-wait 5 with a permanent 429: EIO after about 5 s; other repos still served."""
        root = os.path.join(self.tmp, "repos")
        make_repos(root, 2, lfs_size=200_000)
        hub = self.hub(root, "--lfs-threshold", "100000")
        m = self.mount(hub.url, None, "--max-wait", "5")
        hub.control(cmd="fault", kind="status", status=429, t=2, repo="org/r00", count=-1)
        t0 = time.time()
        with self.assertRaises(OSError) as cm:
            with open(m.path("org", "r00", "config.json"), "rb") as f:
                f.read()
        took = time.time() - t0
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertTrue(4.5 < took < 9, "EIO after %.1f s" % took)
        with open(m.path("org", "r01", "config.json"), "rb") as f:
            self.assertIn(b'"repo": 1', f.read())
        log = m.log()
        self.assertIn("org/r00", log)
        self.assertIn("HF_TOKEN", log)
        print("permanent 429: EIO after %.1f s; the mount serves other repos" % took)

    def test_faults_all_reads_correct(self):
        """5xx bursts, random 503s, resets mid-body, a CDN socket that never answers, truncated,
        longer and mis-announced bodies, expired CDN URLs: every read returns the right bytes."""
        root = os.path.join(self.tmp, "repos")
        files = make_repos(root, 4)
        hub = self.hub(root, "--lfs-threshold", "1000000", "--random-errors", "0.05")
        m = self.mount(hub.url, None, "--block-size", "256K")
        faults = [
            dict(kind="status", status=503, bucket="resolvers", count=5),
            dict(kind="status", status=500, bucket="api", count=2),
            dict(kind="status", status=502, listener="cdn", count=3),
            dict(kind="reset", after=50000, listener="cdn", count=2),
            dict(kind="reset", after=1000, bucket="resolvers", count=2),
            dict(kind="truncate", after=30000, listener="cdn", count=2),
            dict(kind="long_body", extra=4096, listener="cdn", count=2),
            dict(kind="wrong_length", delta=100, listener="cdn", count=1),
            dict(kind="wrong_length", delta=-100, bucket="resolvers", count=1),
            dict(kind="hang", seconds=120, listener="cdn", count=1),
            dict(kind="cdn_refuse", listener="cdn", count=1),  # the core re-resolves once
        ]
        for f in faults:
            hub.control(cmd="fault", **f)
        t0 = time.time()
        errors = read_all([m.mnt], root, files, 4)
        took = time.time() - t0
        log = hub.requests()
        fired = sorted({e["fault"] for e in log if e.get("fault")})
        retries = {}
        for b in m.stats()["http"]["buckets"].values():
            for cause, n in b["retries"].items():
                retries[cause] = retries.get(cause, 0) + n
        print("faults: %d files in %.1f s; fired %s; retries %s" % (
            len(files), took, fired, {k: v for k, v in retries.items() if v}))
        self.assertEqual(errors, [])
        for kind in ("status", "reset", "truncate", "long_body", "wrong_length", "hang",
                     "cdn_refuse"):
            self.assertIn(kind, fired, "fault %s never fired" % kind)
        self.assertGreater(retries["stall"], 0)
        self.assertGreater(retries["server_error"], 0)

    def test_cdn_refused_parallel_readers(self):
        """An expired CDN URL (403 from the CDN, not the endpoint) seen by 5 parallel readers is
        re-resolved, shared between them, and every reader gets the right bytes, never EACCES."""
        root = os.path.join(self.tmp, "repos")
        os.makedirs(os.path.join(root, "org", "big"))
        src = os.path.join(root, "org", "big", "big.bin")
        write_random(src, 40 << 20, seed=7)
        hub = self.hub(root, "--lfs-threshold", "1000000")
        m = self.mount(hub.url, None, "--block-size", "256K")
        path = m.path("org", "big", "big.bin")
        keep = open(path, "rb")  # held open: the file's known CDN target stays in memory
        self.addCleanup(keep.close)
        self.assertEqual(len(keep.read(1)), 1)
        mark = len(hub.requests())
        hub.control(cmd="fault", kind="cdn_refuse", listener="cdn", count=2)
        with open(src, "rb") as f:
            want = f.read()
        errors, lock = [], threading.Lock()

        def reader(off):
            try:
                with open(path, "rb") as f:
                    f.seek(off << 20)
                    if f.read(8 << 20) != want[off << 20:(off + 8) << 20]:
                        raise ValueError("wrong bytes")
            except (OSError, ValueError) as e:
                with lock:
                    errors.append("offset %d MiB: %s" % (off, e))

        threads = [threading.Thread(target=reader, args=(off,)) for off in range(0, 40, 8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log = hub.requests(mark)
        refused = [e for e in log if e.get("fault") == "cdn_refuse"]
        resolves = [e for e in log if e.get("bucket") == "resolvers"]
        print("cdn refused %d requests; %d re-resolves" % (len(refused), len(resolves)))
        self.assertEqual(errors, [])
        self.assertEqual(len(refused), 2)
        self.assertNotIn("access denied", m.log())
        # each refusal costs at most one resolve, shared by every reader of the refused URL
        self.assertGreaterEqual(len(resolves), 1)
        self.assertLessEqual(len(resolves), len(refused))


if __name__ == "__main__":
    unittest.main(verbosity=2)
