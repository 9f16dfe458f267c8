"""The local Hub server's endpoints: repo info, tree, resolve with ranges, LFS via the CDN
listener, datasets, legacy ids, errors and the request log."""

import hashlib
import os
import unittest

from hubtest import SAMPLE, HubTestCase, read, write

SAMPLE_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def sha256(path):
    return hashlib.sha256(read(path)).hexdigest()


class Basic(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        for name in SAMPLE_FILES:
            write(os.path.join(root, "demo", "stories", name), read(os.path.join(SAMPLE, name)))
        write(os.path.join(root, "gpt2", "config.json"), '{"n": 1}\n')
        write(os.path.join(root, "demo", "stories", "sub", "deep", "x.txt"), "deep\n")
        write(os.path.join(root, "datasets", "org", "ds", "data", "train.csv"), "a,b\n1,2\n")

    def test_info_siblings_and_sha(self):
        with self.server("--lfs-threshold", "1000000") as hub:
            r = hub.get("/api/models/demo/stories?blobs=true")
            self.assertEqual(r.status, 200)
            info = r.json()
            self.assertEqual(info["id"], "demo/stories")
            self.assertRegex(info["sha"], "^[0-9a-f]{40}$")
            sib = {s["rfilename"]: s for s in info["siblings"]}
            self.assertEqual(set(sib), set(SAMPLE_FILES) | {"sub/deep/x.txt"})
            st = sib["model.safetensors"]
            self.assertEqual(st["size"], os.path.getsize(os.path.join(SAMPLE,
                                                                      "model.safetensors")))
            self.assertEqual(st["lfs"]["sha256"], sha256(os.path.join(SAMPLE,
                                                                      "model.safetensors")))
            self.assertNotIn("lfs", sib["config.json"])
            data = read(os.path.join(SAMPLE, "config.json"))
            self.assertEqual(sib["config.json"]["blobId"], hashlib.sha1(
                b"blob %d\0" % len(data) + data).hexdigest())
            rev = hub.get("/api/models/demo/stories/revision/main").json()
            self.assertEqual(rev["sha"], info["sha"])
            self.assertNotIn("size", rev["siblings"][0])
            sha = info["sha"]
        with self.server("--lfs-threshold", "1000000") as hub:  # stable across restarts
            self.assertEqual(hub.get("/api/models/demo/stories").json()["sha"], sha)

    def test_resolve_small_file_and_ranges(self):
        data = read(os.path.join(SAMPLE, "config.json"))
        with self.server() as hub:
            sha = hub.get("/api/models/demo/stories").json()["sha"]
            r = hub.get("/demo/stories/resolve/main/config.json")
            self.assertEqual((r.status, r.body), (200, data))
            self.assertEqual(r.header("X-Repo-Commit"), sha)
            self.assertEqual(r.header("ETag"), '"%s"' % hashlib.sha1(
                b"blob %d\0" % len(data) + data).hexdigest())
            self.assertEqual(int(r.header("Content-Length")), len(data))
            r = hub.get("/demo/stories/resolve/main/config.json", headers={"Range": "bytes=5-14"})
            self.assertEqual((r.status, r.body), (206, data[5:15]))
            self.assertEqual(r.header("Content-Range"), "bytes 5-14/%d" % len(data))
            r = hub.get("/demo/stories/resolve/main/config.json", headers={"Range": "bytes=-4"})
            self.assertEqual((r.status, r.body), (206, data[-4:]))
            r = hub.get("/demo/stories/resolve/main/config.json",
                        headers={"Range": "bytes=%d-" % len(data)})
            self.assertEqual(r.status, 416)
            self.assertEqual(r.header("Content-Range"), "bytes */%d" % len(data))
            h = hub.head("/demo/stories/resolve/main/config.json")
            self.assertEqual((h.status, h.body, int(h.header("Content-Length"))),
                             (200, b"", len(data)))
            r = hub.get("/demo/stories/resolve/%s/sub/deep/x.txt" % sha)
            self.assertEqual((r.status, r.body), (200, b"deep\n"))

    def test_lfs_redirect_to_cdn(self):
        path = os.path.join(SAMPLE, "model.safetensors")
        data = read(path)
        with self.server("--lfs-threshold", "100000") as hub:
            r = hub.head("/demo/stories/resolve/main/model.safetensors",
                         headers={"Authorization": "Bearer tok"})
            self.assertEqual(r.status, 302)
            self.assertEqual(r.header("X-Linked-Etag"), '"%s"' % sha256(path))
            self.assertEqual(int(r.header("X-Linked-Size")), len(data))
            self.assertRegex(r.header("X-Repo-Commit"), "^[0-9a-f]{40}$")
            loc = r.header("Location")
            self.assertTrue(loc.startswith("http://127.0.0.1:%d/" % hub.cdn_port), loc)
            c = hub.get(loc, headers={"Range": "bytes=100-199"})
            self.assertEqual((c.status, c.body), (206, data[100:200]))
            self.assertIsNone(c.header("X-Repo-Commit"))
            self.assertNotEqual(c.header("ETag"), '"%s"' % sha256(path))
            self.assertEqual(hub.get(loc).body, data)
            self.assertEqual(hub.get(loc + "0").status, 403)  # signature tampered with
            log = hub.log()
            self.assertEqual([(e["bucket"], e["status"], e["auth"]) for e in log],
                             [("resolvers", 302, True), ("cdn", 206, False), ("cdn", 200, False),
                              ("cdn", 403, False)])
            self.assertEqual(log[1]["bytes"], 100)
            self.assertEqual(log[1]["range"], "bytes=100-199")

    def test_cdn_url_expires(self):
        with self.server("--lfs-threshold", "0", "--cdn-ttl", "2") as hub:
            loc = hub.head("/demo/stories/resolve/main/config.json").header("Location")
            self.assertEqual(hub.get(loc).status, 200)
            import time
            time.sleep(3.1)
            r = hub.get(loc)
            self.assertEqual(r.status, 403)
            self.assertIn(b"expired", r.body)

    def test_tree_listing_and_pagination(self):
        with self.server("--page-size", "2") as hub:
            r = hub.get("/api/models/demo/stories/tree/main")
            self.assertEqual(r.status, 200)
            paths, url = [e["path"] for e in r.json()], r.header("Link")
            while url:
                self.assertTrue(url.endswith('rel="next"'), url)
                r = hub.get(url[1:url.index(">")])
                paths += [e["path"] for e in r.json()]
                url = r.header("Link")
            self.assertEqual(sorted(paths), sorted(SAMPLE_FILES + ["sub"]))
            r = hub.get("/api/models/demo/stories/tree/main/sub?recursive=true&limit=9")
            got = {e["path"]: e["type"] for e in r.json()}
            self.assertEqual(got, {"sub/deep": "directory", "sub/deep/x.txt": "file"})
            oids = {e["path"]: e["oid"] for e in hub.request(
                "POST", "/api/models/demo/stories/paths-info/main", body="paths=sub&paths=sub/deep",
                headers={"Content-Type": "application/x-www-form-urlencoded"}).json()}
            self.assertNotEqual(oids["sub"], oids["sub/deep"])  # git-like tree oids
            r = hub.get("/api/models/demo/stories/tree/main/sub%2Fdeep")
            self.assertEqual([e["path"] for e in r.json()], ["sub/deep/x.txt"])
            r = hub.get("/api/models/demo/stories/tree/main?recursive=true&expand=true")
            self.assertEqual(len(r.json()), 2)
            self.assertIn("lastCommit", r.json()[0])
            r = hub.get("/api/models/demo/stories/tree/main/nope")
            self.assertEqual((r.status, r.header("X-Error-Code")), (404, "EntryNotFound"))

    def test_errors(self):
        with self.server() as hub:
            r = hub.get("/api/models/demo/missing")
            self.assertEqual((r.status, r.header("X-Error-Code")), (401, "RepoNotFound"))
            r = hub.get("/api/models/demo/missing", headers={"Authorization": "Bearer x"})
            self.assertEqual((r.status, r.header("X-Error-Code")), (404, "RepoNotFound"))
            r = hub.get("/demo/stories/resolve/nobranch/config.json")
            self.assertEqual((r.status, r.header("X-Error-Code")), (404, "RevisionNotFound"))
            self.assertIn("Invalid rev id: nobranch", r.header("X-Error-Message"))
            r = hub.get("/demo/stories/resolve/main/nofile.json")
            self.assertEqual((r.status, r.header("X-Error-Code")), (404, "EntryNotFound"))
            self.assertRegex(r.header("X-Repo-Commit"), "^[0-9a-f]{40}$")

    def test_datasets_and_legacy_ids(self):
        with self.server() as hub:
            info = hub.get("/api/datasets/org/ds").json()
            self.assertEqual([s["rfilename"] for s in info["siblings"]], ["data/train.csv"])
            self.assertNotIn("modelId", info)
            r = hub.get("/datasets/org/ds/resolve/main/data/train.csv")
            self.assertEqual((r.status, r.body), (200, b"a,b\n1,2\n"))
            self.assertEqual(hub.get("/org/ds/resolve/main/data/train.csv").status, 401)
            self.assertEqual(hub.get("/api/models/gpt2/tree/main").json()[0]["path"],
                             "config.json")
            self.assertEqual(hub.get("/gpt2/resolve/main/config.json").body, b'{"n": 1}\n')

    def test_log_file_matches_endpoint(self):
        with self.server() as hub:
            hub.get("/api/models/gpt2")
            hub.get("/gpt2/resolve/main/config.json", headers={"Range": "bytes=0-1"})
            log = hub.log()
            self.assertEqual(len(log), 2)
            with open(hub.log_path) as f:
                lines = f.read().splitlines()
            self.assertEqual(len(lines), 2)
            self.assertEqual([e["bucket"] for e in log], ["api", "resolvers"])
            self.assertEqual(log[1]["bytes"], 2)
            for key in ("time", "method", "path", "query", "bucket", "status", "range",
                        "bytes", "auth"):
                self.assertIn(key, log[0])


if __name__ == "__main__":
    unittest.main()
