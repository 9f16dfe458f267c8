"""Control commands and the flags not covered elsewhere: info, config, rescan, tag, push of
generated content into --blob-dir, --cdn-reject-auth, --random-errors, --host checks."""

import base64
import hashlib
import os
import subprocess
import sys
import unittest

from hubtest import SERVER, HubTestCase, read, write


class Control(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        write(os.path.join(root, "org", "m", "f.txt"), "f")
        write(os.path.join(root, "org", "m", "w.bin"), b"\0" * 4096)
        write(os.path.join(root, "datasets", "solo", "d.txt"), "d")

    def test_info_and_config(self):
        with self.server("--page-size", "7", "--quota", "api=5/10") as hub:
            info = hub.get("/_control/info").json()
            self.assertEqual((info["port"], info["cdn_port"], info["page_size"], info["quota"]),
                             (hub.port, hub.cdn_port, 7, {"api": "5/10"}))
            out = hub.control(cmd="config", page_size=1, cdn_ttl=5, resolve_cache=True)
            self.assertEqual((out["page_size"], out["cdn_ttl"], out["resolve_cache"]),
                             (1, 5, True))
            r = hub.get("/api/models/org/m/tree/main")
            self.assertEqual(len(r.json()), 1)
            self.assertIn('rel="next"', r.header("Link"))
            self.assertEqual(hub.head("/org/m/resolve/main/f.txt").status, 307)

    def test_rescan_sees_new_repos(self):
        with self.server() as hub:
            self.assertEqual(hub.get("/api/models/org/new").status, 401)
            write(os.path.join(self.root, "org", "new", "n.txt"), "n")
            hub.control(cmd="rescan")
            self.assertEqual(hub.get("/org/new/resolve/main/n.txt").body, b"n")
            self.assertEqual(hub.get("/datasets/solo/resolve/main/d.txt").body, b"d")

    def test_tag_and_branch_commands(self):
        with self.server() as hub:
            sha = hub.get("/api/models/org/m").json()["sha"]
            hub.control(cmd="push", repo="org/m", files={"f.txt": "v2"})
            self.assertEqual(hub.control(cmd="tag", repo="org/m", name="v1", target=sha)["sha"],
                             sha)
            self.assertEqual(hub.get("/org/m/resolve/v1/f.txt").body, b"f")
            hub.control(cmd="tag", repo="org/m", name="stable", target="main", branch=True)
            self.assertEqual(hub.get("/org/m/resolve/stable/f.txt").body, b"v2")
            out = hub.control(cmd="push", repo="org/m", branch="feature",
                              files={"g.txt": {"base64": base64.b64encode(b"\x00\xff").decode()}})
            self.assertEqual(hub.get("/org/m/resolve/%s/g.txt" % out["sha"]).body, b"\x00\xff")
            self.assertEqual(hub.get("/org/m/resolve/feature/f.txt").body, b"v2")  # from main

    def test_generated_push_lands_in_blob_dir(self):
        blobs = os.path.join(self.tmp, "blobs")
        with self.server("--blob-dir", blobs, "--lfs-threshold", "1000") as hub:
            hub.head("/org/m/resolve/main/w.bin")
            self.assertEqual(read(os.path.join(blobs, hashlib.sha256(b"\0" * 4096).hexdigest())),
                             b"\0" * 4096)
            hub.control(cmd="push", repo="org/m", files={"gen.bin": {"size": 5000, "seed": 3}})
            r = hub.head("/org/m/resolve/main/gen.bin")
            sha = r.header("X-Linked-Etag").strip('"')
            data = read(os.path.join(blobs, sha))
            self.assertEqual((len(data), hashlib.sha256(data).hexdigest()), (5000, sha))
            self.assertEqual(hub.get(r.header("Location")).body, data)

    def test_cdn_reject_auth(self):
        with self.server("--cdn-reject-auth", "--lfs-threshold", "0") as hub:
            loc = hub.head("/org/m/resolve/main/f.txt").header("Location")
            r = hub.get(loc, headers={"Authorization": "Bearer x"})
            self.assertEqual(r.status, 400)
            self.assertIn(b"Only one auth mechanism allowed", r.body)
            self.assertEqual(hub.get(loc).body, b"f")
            self.assertEqual([e["auth"] for e in hub.log()], [False, True, False])

    def test_random_errors(self):
        with self.server("--random-errors", "0.5") as hub:
            got = [hub.get("/org/m/resolve/main/f.txt").status for _ in range(80)]
            self.assertTrue(set(got) <= {200, 429, 500, 502, 503}, got)
            self.assertGreater(got.count(200), 10)
            self.assertGreater(len(set(got)), 2)

    def test_bad_flags(self):
        for args, msg in ((["--host", "0.0.0.0"], "only loopback"),
                          (["--fault", '{"kind": "nope"}'], "unknown fault kind"),
                          (["--page-size", "0"], "--page-size")):
            p = subprocess.run([sys.executable, SERVER, "--root", self.root] + args,
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn(msg, p.stderr)
        p = subprocess.run([sys.executable, SERVER, "--root", os.path.join(self.tmp, "none")],
                           capture_output=True, text=True, timeout=20)
        self.assertIn("not a directory", p.stderr)

    def test_sigterm_is_a_clean_stop(self):
        with self.server() as hub:
            hub.get("/org/m/resolve/main/f.txt")
            hub.proc.terminate()
            self.assertEqual(hub.proc.wait(10), 0)
            with open(hub.log_path) as f:
                self.assertEqual(len(f.read().splitlines()), 1)

    def test_bad_metadata_is_named(self):
        import tempfile
        root = tempfile.mkdtemp(dir=self.tmp)
        write(os.path.join(root, "org", "bad", "f.txt"), "f")
        write(os.path.join(root, "org", "bad", ".hub", "meta.json"), '{"gated": "sometimes"}')
        p = subprocess.run([sys.executable, SERVER, "--root", root], capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad/.hub/meta.json: gated must be", p.stderr)
        write(os.path.join(root, "org", "bad", ".hub", "meta.json"), '{"tags": {"v": "nope"}}')
        from hubtest import HubServer
        with HubServer(root) as hub:
            r = hub.get("/api/models/org/bad")
            self.assertEqual(r.status, 500)
            self.assertIn("tag 'v' points at unknown ref 'nope'", r.header("X-Error-Message"))
            write(os.path.join(root, "org", "bad", ".hub", "meta.json"), "[1]")
            r = hub.request("POST", "/_control", body='{"cmd": "rescan"}')
            self.assertEqual(r.status, 400)
            self.assertIn("metadata must be a JSON object", r.json()["error"])

    def test_unknown_urls(self):
        with self.server() as hub:
            for url in ("/", "/org/m", "/org/m/blob/main/f.txt", "/api/spaces/org/m",
                        "/spaces/org/m/resolve/main/f.txt", "/_control/nope"):
                r = hub.get(url)
                self.assertIn(r.status, (401, 404), url)
            self.assertEqual(hub.get("/api/models/org/m?expand=sha").json().keys(),
                             {"_id", "id", "sha"})


if __name__ == "__main__":
    unittest.main()
