"""Revisions and repo kinds: tags, branches (also refs/pr/1, percent-encoded), pinned commits,
datasets; a push seen by new opens after --revalidate while an open file keeps its commit's
bytes; a pinned commit never rechecks; unknown revisions and repos are ENOENT."""
import json
import os
import time
import urllib.parse
import urllib.request

import fstest


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class Revisions(fstest.FsTest):
    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "repos")
        repo = os.path.join(self.root, "demo", "m")
        write(os.path.join(repo, "config.json"), '{"rev": "main"}\n')
        write(os.path.join(repo, "sub", "deep", "a.txt"), "main a\n")
        write(os.path.join(repo, ".hub", "branches", "dev", "config.json"), '{"rev": "dev"}\n')
        write(os.path.join(repo, ".hub", "branches", "refs%2Fpr%2F1", "config.json"),
              '{"rev": "pr1"}\n')
        write(os.path.join(repo, ".hub", "tags", "v1.0", "config.json"), '{"rev": "v1.0"}\n')
        write(os.path.join(self.root, "datasets", "demo", "set", "data", "train.csv"), "a,b\n1,2\n")
        self.h = self.hub(self.root)

    def info(self, rev=None, kind="models", repo="demo/m"):
        url = "%s/api/%s/%s" % (self.h.url, kind, repo)
        if rev:
            url += "/revision/" + urllib.parse.quote(rev, safe="")
        with urllib.request.urlopen(url) as r:
            return json.load(r)

    def read(self, *parts):
        with open(self.m.path(*parts)) as f:
            return f.read()

    def test_revisions_and_datasets(self):
        self.m = self.mount(self.h.url)
        self.assertEqual(self.read("demo", "m", "config.json"), '{"rev": "main"}\n')
        self.assertEqual(self.read("demo", "m", "sub", "deep", "a.txt"), "main a\n")
        self.assertEqual(self.read("demo", "m@dev", "config.json"), '{"rev": "dev"}\n')
        self.assertEqual(self.read("demo", "m@v1.0", "config.json"), '{"rev": "v1.0"}\n')
        self.assertEqual(self.read("demo", "m@refs%2Fpr%2F1", "config.json"), '{"rev": "pr1"}\n')
        sha = self.info("dev")["sha"]
        self.assertEqual(self.read("demo", "m@" + sha, "config.json"), '{"rev": "dev"}\n')
        self.assertEqual(self.read("datasets", "demo", "set", "data", "train.csv"), "a,b\n1,2\n")
        self.assertEqual(os.listdir(self.m.path("datasets")), ["demo"])
        self.assertEqual(os.listdir(self.m.path("datasets", "demo")), ["set"])
        self.assertEqual(sorted(os.listdir(self.m.path("demo", "m"))), ["config.json", "sub"])
        self.assertEqual(os.listdir(self.m.path("demo", "m", "sub")), ["deep"])
        for bad in ("m@nope", "m@", "nope", "m@" + "0" * 40):
            self.assertFalse(os.path.exists(self.m.path("demo", bad)), bad)
        self.assertFalse(os.path.exists(self.m.path("datasets", "demo", "m")))
        # the mtime is the commit's date
        st = os.stat(self.m.path("demo", "m", "config.json"))
        self.assertLess(abs(st.st_mtime - os.stat(os.path.join(self.root, "demo/m/config.json")).st_mtime), 2)

    def test_push_and_revalidation(self):
        self.m = self.mount(self.h.url, None, "--revalidate", "1")
        old_sha = self.info()["sha"]
        pinned = ("demo", "m@" + old_sha, "config.json")
        self.assertEqual(self.read("demo", "m", "config.json"), '{"rev": "main"}\n')
        self.assertEqual(self.read(*pinned), '{"rev": "main"}\n')
        # an open file whose bytes are fetched only after the push
        keep = open(self.m.path("demo", "m", "sub", "deep", "a.txt"), "rb")
        self.addCleanup(keep.close)
        new_sha = self.h.control(cmd="push", repo="demo/m",
                                 files={"config.json": '{"rev": "pushed"}\n',
                                        "sub/deep/a.txt": "pushed a, longer\n"})["sha"]
        self.assertNotEqual(new_sha, old_sha)
        time.sleep(1.5)
        n = self.h.count()
        self.assertEqual(self.read("demo", "m", "config.json"), '{"rev": "pushed"}\n')
        self.assertEqual(self.read("demo", "m", "sub", "deep", "a.txt"), "pushed a, longer\n")
        api = [r["path"] for r in self.h.requests(since=n) if r["bucket"] == "api"]
        trees = [p for p in api if "/tree/" in p]
        self.assertEqual(trees, ["/api/models/demo/m/tree/" + new_sha], api)
        self.assertLessEqual(len(api) - len(trees), 2, api)  # cheap rechecks, at most 1 per second
        self.assertEqual(keep.read(), b"main a\n")  # the open file kept its commit
        n = self.h.count()
        self.assertEqual(self.read(*pinned), '{"rev": "main"}\n')
        self.assertEqual([r for r in self.h.requests(since=n) if r["bucket"] == "api"], [])
        self.assertEqual(self.m.stats()["metadata"]["new_commits"], 1)

    def test_legacy_ids(self):
        write(os.path.join(self.root, "gpt9", "config.json"), '{"legacy": true}\n')
        renamed = os.path.join(self.root, "newer-org", "gpt8")
        write(os.path.join(renamed, "config.json"), '{"renamed": true}\n')
        write(os.path.join(renamed, ".hub", "meta.json"), '{"aliases": ["gpt8"]}')
        self.h.control(cmd="rescan")
        self.m = self.mount(self.h.url)
        self.assertEqual(self.read("gpt9", "config.json"), '{"legacy": true}\n')
        self.assertEqual(self.read("gpt8", "config.json"), '{"renamed": true}\n')
        self.assertIn("config.json", os.listdir(self.m.path("gpt9")))
        self.assertFalse(os.path.exists(self.m.path("gpt9", "nope.json")))
        self.m.stop()
        # cached: listed at the top, served offline
        self.m = self.mount(self.h.url, None, "--offline")
        self.assertIn("gpt9", os.listdir(self.m.mnt))
        self.assertEqual(self.read("gpt9", "config.json"), '{"legacy": true}\n')

    def test_revalidation_is_rare(self):
        self.m = self.mount(self.h.url)  # --revalidate 3600
        self.read("demo", "m", "config.json")
        n = self.h.count()
        self.h.control(cmd="push", repo="demo/m", files={"config.json": "{}\n"})
        for _ in range(5):
            time.sleep(0.3)
            self.assertEqual(self.read("demo", "m", "config.json"), '{"rev": "main"}\n')
        self.assertEqual([r for r in self.h.requests(since=n) if r["bucket"] == "api"], [])


if __name__ == "__main__":
    fstest.main()
