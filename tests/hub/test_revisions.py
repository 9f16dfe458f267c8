"""Revisions (branches, tags, refs/pr/N, commit shas, pushes), renamed repos, paths-info, refs,
commits, the resolve-cache hop, raw pointers and conditional GETs."""

import json
import os
import unittest

from hubtest import HubTestCase, write


class Revisions(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        repo = os.path.join(root, "org", "rev")
        write(os.path.join(repo, "a.txt"), "main\n")
        write(os.path.join(repo, "big.bin"), b"\x01" * 5000)
        write(os.path.join(repo, ".hub", "branches", "dev", "a.txt"), "dev\n")
        write(os.path.join(repo, ".hub", "branches", "dev", "b.txt"), "only on dev\n")
        write(os.path.join(repo, ".hub", "branches", "refs%2Fpr%2F1", "a.txt"), "pr\n")
        write(os.path.join(repo, ".hub", "tags", "v1", "a.txt"), "v1\n")
        write(os.path.join(repo, ".hub", "meta.json"),
              json.dumps({"tags": {"stable": "main"}, "aliases": ["oldrev"], "lfs": ["*.bin"]}))

    def sha(self, hub, rev):
        r = hub.get("/api/models/org/rev/revision/%s" % rev)
        self.assertEqual(r.status, 200, r.body)
        return r.json()["sha"]

    def test_branches_tags_and_prs(self):
        with self.server() as hub:
            main, dev, pr, v1 = (self.sha(hub, r) for r in ("main", "dev", "refs%2Fpr%2F1", "v1"))
            self.assertEqual(len({main, dev, pr, v1}), 4)
            self.assertEqual(self.sha(hub, "stable"), main)
            self.assertEqual(self.sha(hub, "HEAD"), main)
            for rev, body in (("main", b"main\n"), ("dev", b"dev\n"), ("refs%2Fpr%2F1", b"pr\n"),
                              ("v1", b"v1\n"), (dev, b"dev\n")):
                r = hub.get("/org/rev/resolve/%s/a.txt" % rev)
                self.assertEqual((r.status, r.body), (200, body), rev)
            self.assertEqual(hub.get("/org/rev/resolve/%s/a.txt" % pr).header("X-Repo-Commit"),
                             pr)
            # JS clients send the tree revision with raw slashes
            r = hub.get("/api/models/org/rev/tree/refs/pr/1")
            self.assertEqual([e["path"] for e in r.json()], ["a.txt"])
            self.assertEqual(r.header("X-Repo-Commit"), pr)
            self.assertEqual(hub.get("/org/rev/resolve/main/b.txt").status, 404)
            self.assertEqual(hub.get("/org/rev/resolve/dev/b.txt").body, b"only on dev\n")
            r = hub.get("/org/rev/resolve/%s/a.txt" % ("f" * 40))
            self.assertEqual((r.status, r.header("X-Error-Code")), (404, "RevisionNotFound"))
            refs = hub.get("/api/models/org/rev/refs?include_prs=1").json()
            self.assertEqual({b["name"]: b["targetCommit"] for b in refs["branches"]},
                             {"main": main, "dev": dev})
            self.assertEqual({t["name"] for t in refs["tags"]}, {"v1", "stable"})
            self.assertEqual(refs["pullRequests"], [{"name": "1", "ref": "refs/pr/1",
                                                     "targetCommit": pr}])

    def test_push_moves_the_branch_and_keeps_old_commits(self):
        with self.server() as hub:
            old = self.sha(hub, "main")
            out = hub.control(cmd="push", repo="org/rev", branch="main",
                              files={"a.txt": "pushed\n", "new/c.txt": "c\n"}, message="edit")
            self.assertNotEqual(out["sha"], old)
            self.assertEqual(self.sha(hub, "main"), out["sha"])
            r = hub.get("/org/rev/resolve/main/a.txt")
            self.assertEqual((r.body, r.header("X-Repo-Commit")), (b"pushed\n", out["sha"]))
            self.assertEqual(hub.get("/org/rev/resolve/main/new/c.txt").body, b"c\n")
            self.assertEqual(hub.get("/org/rev/resolve/%s/a.txt" % old).body, b"main\n")
            commits = hub.get("/api/models/org/rev/commits/main").json()
            self.assertEqual([c["id"] for c in commits], [out["sha"], old])
            self.assertEqual(commits[0]["title"], "edit")
            out2 = hub.control(cmd="push", repo="org/rev", branch="main", delete=["new/c.txt"])
            self.assertEqual(hub.get("/org/rev/resolve/%s/new/c.txt" % out2["sha"]).status, 404)
            self.assertEqual(hub.get("/org/rev/resolve/%s/new/c.txt" % out["sha"]).status, 200)

    def test_renamed_repo_redirects_relatively(self):
        with self.server() as hub:
            r = hub.get("/api/models/oldrev?blobs=true")
            self.assertEqual((r.status, r.header("Location")),
                             (307, "/api/models/org/rev?blobs=true"))
            r = hub.head("/oldrev/resolve/main/a.txt")
            self.assertEqual((r.status, r.header("Location")), (307, "/org/rev/resolve/main/a.txt"))
            r = hub.get("/api/models/oldrev/tree/main")
            self.assertEqual(r.header("Location"), "/api/models/org/rev/tree/main")

    def test_paths_info_form_and_json(self):
        with self.server() as hub:
            r = hub.request("POST", "/api/models/org/rev/paths-info/main",
                            body="paths=a.txt&paths=nope&paths=big.bin&expand=False",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
            got = {e["path"]: e for e in r.json()}
            self.assertEqual(set(got), {"a.txt", "big.bin"})
            self.assertEqual(got["big.bin"]["lfs"]["size"], 5000)
            self.assertEqual(got["big.bin"]["size"], 5000)
            r = hub.request("POST", "/api/models/org/rev/paths-info/dev",
                            body=json.dumps({"paths": ["b.txt"], "expand": False}),
                            headers={"Content-Type": "application/json"})
            self.assertEqual([e["path"] for e in r.json()], ["b.txt"])

    def test_keep_alive_posts(self):
        import http.client
        with self.server() as hub:
            conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
            form = {"Content-Type": "application/x-www-form-urlencoded"}
            for url, body, want in (("/api/models/org/missing/paths-info/main", "paths=a", 401),
                                    ("/api/models/org/rev/paths-info/main", "paths=a.txt", 200),
                                    ("/api/models/org/rev", "x=1", 405),
                                    ("/api/models/org/rev/paths-info/dev", "paths=b.txt", 200)):
                conn.request("POST", url, body=body, headers=form)
                r = conn.getresponse()
                data = r.read()
                self.assertEqual(r.status, want, (url, data))
            self.assertEqual(json.loads(data)[0]["path"], "b.txt")
            conn.close()

    def test_resolve_cache_hop(self):
        with self.server("--resolve-cache") as hub:
            sha = self.sha(hub, "main")
            r = hub.head("/org/rev/resolve/main/a.txt")
            self.assertEqual(r.status, 307)
            loc = r.header("Location")
            self.assertTrue(loc.startswith("/api/resolve-cache/models/org/rev/%s/a.txt" % sha), loc)
            r = hub.get(loc, headers={"Range": "bytes=1-2"})
            self.assertEqual((r.status, r.body, r.header("X-Repo-Commit")), (206, b"ai", sha))
            self.assertEqual(hub.get("/api/resolve-cache/models/org/rev/main/a.txt").status, 400)
            self.assertEqual(hub.head("/org/rev/resolve/main/big.bin").status, 302)  # LFS
            self.assertEqual(hub.log()[1]["bucket"], "resolvers")

    def test_raw_pointer_and_conditional_get(self):
        with self.server() as hub:
            r = hub.get("/org/rev/raw/main/big.bin")
            self.assertTrue(r.body.startswith(b"version https://git-lfs.github.com/spec/v1\n"))
            self.assertIn(b"size 5000\n", r.body)
            etag = hub.get("/org/rev/resolve/main/a.txt").header("ETag")
            r = hub.get("/org/rev/resolve/main/a.txt", headers={"If-None-Match": etag})
            self.assertEqual((r.status, r.body), (304, b""))


if __name__ == "__main__":
    unittest.main()
