"""A hostile or broken server: unsafe names, duplicates and absurd sizes in listings, malformed
and huge JSON, LFS pointer text or HTML instead of bytes, bodies shorter or longer than
announced, refused and gated files. Each is rejected (and logged); the mount stays up, never
shows a path outside its tree, and maps errors to ENOENT / EACCES / EIO."""
import errno
import json
import os
import shutil
import subprocess
import time

import fstest

MiB = 1 << 20


class Hostile(fstest.FsTest):
    def setUp(self):
        super().setUp()
        self.root, self.src = self.sample_repo()
        self.h = self.hub(self.root, "--lfs-threshold", "100000")

    def walk(self, top):
        seen = []
        for d, dirs, files in os.walk(top):
            for n in dirs + files:
                seen.append(os.path.relpath(os.path.join(d, n), top))
        return sorted(seen)

    def test_hostile_names(self):
        self.h.control(cmd="fault", kind="hostile_names", path="*/tree/*")
        m = self.mount(self.h.url)
        repo = m.path("demo", "stories260K")
        names = self.walk(repo)
        # only the real files, and the first of the two entries named "dup"
        self.assertEqual(names, sorted(os.listdir(self.src) + ["dup"]))
        for n in os.listdir(self.src):
            self.assertEqual(fstest.sha256_file(os.path.join(repo, n)),
                             fstest.sha256_file(os.path.join(self.src, n)), n)
        log = m.log()
        self.assertIn("unsafe name rejected", log)
        self.assertIn("duplicate tree entry", log)
        self.assertIn("absurd or missing size", log)
        self.assertFalse(os.path.exists(m.path("demo", "escape")))

    def test_injected_entries(self):
        bad = [
            {"type": "file", "path": "neg.bin", "size": -5, "oid": "1" * 40},
            {"type": "file", "path": "huge.bin", "size": 1 << 60, "oid": "1" * 40},
            {"type": "file", "path": "badoid.bin", "size": 5, "oid": "xyz"},
            {"type": "file", "path": "lfs.bin", "size": 5, "oid": "1" * 40,
             "lfs": {"oid": "nothex", "size": 5}},
            {"type": "file", "path": "lfs2.bin", "size": 5, "oid": "1" * 40,
             "lfs": {"oid": "a" * 64, "size": 6}},
            {"type": "symlink", "path": "link", "size": 5, "oid": "1" * 40},
            {"type": "file", "path": "config.json/inside", "size": 1, "oid": "1" * 40},
            {"type": "file", "path": "x" * 256, "size": 1, "oid": "1" * 40},
            {"type": "file", "path": "/".join(["d"] * 2100), "size": 1, "oid": "1" * 40},
            {"type": "file", "path": "tab\tname", "size": 1, "oid": "1" * 40},
            "not an object", 42, None,
        ]
        self.h.control(cmd="fault", kind="inject_entries", entries=bad, path="*/tree/*")
        m = self.mount(self.h.url)
        self.assertEqual(self.walk(m.path("demo", "stories260K")), sorted(os.listdir(self.src)))
        self.assertTrue(os.path.isfile(m.path("demo", "stories260K", "config.json")))

    def test_malformed_and_huge_json(self):
        for text, repeat in (("{not json", 1), ("[" * 1024, 40 * 1024), ('{"a": 1}', 1)):
            self.h.control(cmd="clear_faults")
            self.h.control(cmd="fault", kind="body", text=text, repeat=repeat, path="*/tree/*")
            m = self.mount(self.h.url)
            with self.assertRaises(OSError) as cm:
                os.listdir(m.path("demo", "stories260K"))
            self.assertEqual(cm.exception.errno, errno.EIO, text[:20])
            self.assertTrue(os.path.isdir(m.path(".hfmount")))  # still up
            self.h.control(cmd="clear_faults")
            # a failure is not remembered as "no such repo": the next look works
            self.assertIn("config.json", os.listdir(m.path("demo", "stories260K")))
            m.stop()
            self.h.control(cmd="clear_faults")
            # the bad listing was never persisted
            import shutil
            shutil.rmtree(os.path.join(self.tmp, "cache"))

    def test_pointer_or_html_instead_of_bytes(self):
        for kind in ("lfs_pointer", "html"):
            self.h.control(cmd="clear_faults")
            self.h.control(cmd="fault", kind=kind, file="model.safetensors", count=-1)
            m = self.mount(self.h.url, os.path.join(self.tmp, "c-" + kind), "--max-wait", "3")
            with self.assertRaises(OSError) as cm:
                fstest.read_bytes(m.path("demo", "stories260K", "model.safetensors"))
            self.assertEqual(cm.exception.errno, errno.EIO, kind)
            self.assertEqual(fstest.read_bytes(m.path("demo", "stories260K", "config.json")),
                             fstest.read_bytes(os.path.join(self.src, "config.json")))
            m.stop()

    def test_corrupt_git_file_is_refused(self):
        # a flipped byte in a git-stored file: caught by its git oid, fetched again, never
        # served or cached
        self.h.control(cmd="fault", kind="corrupt", offset=10, file="config.json", count=1)
        m = self.mount(self.h.url)
        want = fstest.read_bytes(os.path.join(self.src, "config.json"))
        got = fstest.read_bytes(m.path("demo", "stories260K", "config.json"))
        self.assertEqual(got, want)
        self.assertIn("git oid", m.log())
        self.assertEqual(m.stats()["blocks"]["oid_bad"], 1)

    def test_corrupt_git_file_persistently(self):
        # every answer corrupted: EIO with a log line, nothing cached; after kill -9 and a
        # remount on the same cache with a healthy server the right bytes come
        self.h.control(cmd="fault", kind="corrupt", offset=10, file="tokenizer.json", count=-1)
        cache = os.path.join(self.tmp, "cache")
        m = self.mount(self.h.url, cache)
        path = m.path("demo", "stories260K", "tokenizer.json")
        with self.assertRaises(OSError) as cm:
            fstest.read_bytes(path)
        self.assertEqual(cm.exception.errno, errno.EIO)
        self.assertIn("fetches in a row: not served", m.log())
        self.assertGreaterEqual(m.stats()["blocks"]["oid_bad"], 3)
        m.kill9()
        self.h.control(cmd="clear_faults")
        m = self.mount(self.h.url, cache)
        self.assertEqual(fstest.read_bytes(m.path("demo", "stories260K", "tokenizer.json")),
                         fstest.read_bytes(os.path.join(self.src, "tokenizer.json")))

    def test_corrupt_large_git_file(self):
        # a git-stored file over 16 MiB (several blocks' worth) is checked against its oid too
        root = os.path.join(self.tmp, "big")
        os.makedirs(os.path.join(root, "org2", "st"))
        src = os.path.join(root, "org2", "st", "model.safetensors")
        fstest.write_random(src, 20 * MiB + 12345, seed=3)
        h = self.hub(root, "--lfs-threshold", str(64 * MiB))
        cache = os.path.join(self.tmp, "cache-big")
        for count in (1, -1):
            h.control(cmd="clear_faults")
            h.control(cmd="fault", kind="corrupt", offset=17 * MiB + 1, repo="org2/st",
                      file="model.safetensors", count=count)
            m = self.mount(h.url, cache)
            path = m.path("org2", "st", "model.safetensors")
            if count == 1:
                self.assertEqual(fstest.sha256_file(path), fstest.sha256_file(src))
                self.assertEqual(m.stats()["blocks"]["oid_bad"], 1)
                m.stop()
                shutil.rmtree(cache)
                continue
            with self.assertRaises(OSError) as cm:
                with open(path, "rb") as f:
                    f.seek(17 * MiB)
                    f.read(4096)
            self.assertEqual(cm.exception.errno, errno.EIO)
            m.kill9()
        h.control(cmd="clear_faults")
        m = self.mount(h.url, cache)
        self.assertEqual(fstest.sha256_file(m.path("org2", "st", "model.safetensors")),
                         fstest.sha256_file(src))

    def test_bad_bodies_are_retried(self):
        for kind, extra in (("truncate", {"after": 1000}), ("long_body", {}),
                            ("wrong_length", {}), ("reset", {"after": 5000})):
            self.h.control(cmd="clear_faults")
            self.h.control(cmd="fault", kind=kind, file="model.safetensors", count=2, **extra)
            m = self.mount(self.h.url, os.path.join(self.tmp, "c-" + kind))
            self.assertEqual(fstest.sha256_file(m.path("demo", "stories260K", "model.safetensors")),
                             fstest.sha256_file(os.path.join(self.src, "model.safetensors")), kind)
            m.stop()

    def test_errors_map(self):
        self.h.control(cmd="fault", kind="status", status=404, file="config.json", count=-1)
        self.h.control(cmd="fault", kind="status", status=403, file="tokenizer.json", count=-1)
        self.h.control(cmd="fault", kind="status", status=503, file="refs.json", count=-1)
        m = self.mount(self.h.url, None, "--max-wait", "3")
        repo = m.path("demo", "stories260K")
        for name, code in (("config.json", errno.ENOENT), ("tokenizer.json", errno.EACCES),
                           ("refs.json", errno.EIO)):
            with self.assertRaises(OSError) as cm:
                fstest.read_bytes(os.path.join(repo, name))
            self.assertEqual(cm.exception.errno, code, name)
        self.assertEqual(fstest.read_bytes(os.path.join(repo, "tokenizer_config.json")),
                         fstest.read_bytes(os.path.join(self.src, "tokenizer_config.json")))


class Auth(fstest.FsTest):
    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "repos")
        for name, meta in (("gated", {"gated": "auto"}), ("private", {"private": True})):
            d = os.path.join(self.root, "org", name)
            os.makedirs(os.path.join(d, ".hub"))
            with open(os.path.join(d, ".hub", "meta.json"), "w") as f:
                json.dump(meta, f)
            with open(os.path.join(d, "config.json"), "w") as f:
                f.write('{"%s": true}\n' % name)
            fstest.write_random(os.path.join(d, "w.bin"), 11 * MiB, 1)
        self.h = self.hub(self.root, "--token", "hf_good")

    def test_without_token(self):
        m = self.mount(self.h.url, None, "--max-wait", "3")
        self.assertFalse(os.path.exists(m.path("org", "private")))
        with self.assertRaises(OSError) as cm:
            fstest.read_text(m.path("org", "gated", "config.json"))
        self.assertEqual(cm.exception.errno, errno.EACCES)
        self.assertIn("HF_TOKEN", m.log())

    def test_with_token(self):
        tok = os.path.join(self.tmp, "token")
        with open(tok, "w") as f:
            f.write("hf_good\n")
        m = self.mount(self.h.url, None, "--token-file", tok)
        for name in ("gated", "private"):
            self.assertEqual(fstest.read_text(m.path("org", name, "config.json")),
                             '{"%s": true}\n' % name)
            self.assertEqual(fstest.sha256_file(m.path("org", name, "w.bin")),
                             fstest.sha256_file(os.path.join(self.root, "org", name, "w.bin")))
        log = self.h.requests()
        self.assertTrue(all(r["auth"] for r in log if r["listener"] == "hub"))
        cdn = [r for r in log if r["listener"] == "cdn"]
        self.assertTrue(cdn)
        self.assertFalse(any(r["auth"] for r in cdn))  # the token never leaves the Hub

    def test_env_token_and_bad_token(self):
        m = self.mount(self.h.url, None, env={"HF_TOKEN": "hf_good"})
        self.assertEqual(fstest.read_text(m.path("org", "private", "config.json")),
                         '{"private": true}\n')
        m.stop()
        m = self.mount(self.h.url, os.path.join(self.tmp, "c2"), "--max-wait", "3",
                       env={"HF_TOKEN": "hf_bad"})
        with self.assertRaises(OSError) as cm:
            os.listdir(m.path("org", "gated"))
        self.assertEqual(cm.exception.errno, errno.EACCES)


class Unreachable(fstest.FsTest):
    """A dead endpoint or a hung CDN: a killed reader is freed at once (the FUSE interrupt is
    honoured wherever a request waits), and the first connection failure is logged."""

    def assertKilledPromptly(self, argv):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        self.assertIsNone(p.poll(), "the reader should still be waiting")
        t0 = time.time()
        p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("%s still stuck 10 s after kill -9" % argv)
        return time.time() - t0

    def test_dead_endpoint_lookup_is_interruptible(self):
        m = self.mount("http://127.0.0.1:1", None, "--max-wait", "1800")
        took = self.assertKilledPromptly(["ls", m.path("org", "x")])
        self.assertLess(took, 3)
        took = self.assertKilledPromptly(["stat", m.path("org", "x")])
        self.assertLess(took, 3)
        self.assertIn("cannot reach http://127.0.0.1:1", m.log())

    def test_hung_cdn_read_is_interruptible(self):
        root = os.path.join(self.tmp, "repos")
        os.makedirs(os.path.join(root, "org", "r"))
        fstest.write_random(os.path.join(root, "org", "r", "big.bin"), 8 * MiB, seed=5)
        h = self.hub(root, "--lfs-threshold", "100000")
        m = self.mount(h.url, None, "--max-wait", "1800")
        os.stat(m.path("org", "r", "big.bin"))
        h.control(cmd="fault", kind="hang", seconds=120, listener="cdn", count=-1)
        took = self.assertKilledPromptly(
            ["dd", "if=" + m.path("org", "r", "big.bin"), "of=/dev/null", "bs=1M", "count=1"])
        self.assertLess(took, 3)


if __name__ == "__main__":
    fstest.main()
