"""Tokens, gated and private repos: the statuses, X-Error-Code and messages the Hub sends."""

import json
import os
import unittest

from hubtest import HubTestCase, write

GOOD, OTHER = {"Authorization": "Bearer good"}, {"Authorization": "Bearer other"}


class Auth(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        for name, meta in (("public", {}), ("gated", {"gated": "auto", "authorized": ["good"]}),
                           ("private", {"private": True, "authorized": ["good"]}),
                           ("disabled", {"disabled": True})):
            write(os.path.join(root, "org", name, "f.txt"), name)
            if meta:
                write(os.path.join(root, "org", name, ".hub", "meta.json"), json.dumps(meta))

    def test_invalid_token_is_refused_even_on_public_repos(self):
        with self.server("--token", "good", "--token", "other") as hub:
            self.assertEqual(hub.get("/org/public/resolve/main/f.txt").body, b"public")
            r = hub.get("/org/public/resolve/main/f.txt", headers={"Authorization": "Bearer no"})
            self.assertEqual(r.status, 401)
            self.assertEqual(r.header("X-Error-Message"),
                             "Invalid credentials in Authorization header")
            self.assertEqual(hub.get("/api/whoami-v2", headers=GOOD).status, 200)
            self.assertEqual(hub.get("/api/whoami-v2").status, 401)
            self.assertEqual([e["auth"] for e in hub.log()], [False, True, True, False])

    def test_gated(self):
        with self.server("--token", "good", "--token", "other") as hub:
            info = hub.get("/api/models/org/gated")  # metadata stays public
            self.assertEqual((info.status, info.json()["gated"]), (200, "auto"))
            self.assertEqual(hub.get("/api/models/org/gated/tree/main").status, 200)
            r = hub.get("/org/gated/resolve/main/f.txt")
            self.assertEqual((r.status, r.header("X-Error-Code")), (401, "GatedRepo"))
            self.assertIn("Please log in", r.header("X-Error-Message"))
            self.assertIn("model org/gated is restricted", r.header("X-Error-Message"))
            r = hub.head("/org/gated/resolve/main/f.txt", headers=OTHER)
            self.assertEqual((r.status, r.header("X-Error-Code")), (403, "GatedRepo"))
            self.assertIn("not in the authorized list", r.header("X-Error-Message"))
            r = hub.get("/org/gated/resolve/main/f.txt", headers=GOOD)
            self.assertEqual((r.status, r.body), (200, b"gated"))

    def test_private(self):
        with self.server("--token", "good", "--token", "other") as hub:
            r = hub.get("/api/models/org/private")
            self.assertEqual((r.status, r.header("X-Error-Code")), (401, "RepoNotFound"))
            r = hub.get("/org/private/resolve/main/f.txt", headers=OTHER)
            self.assertEqual((r.status, r.header("X-Error-Code")), (404, "RepoNotFound"))
            r = hub.get("/api/models/org/private", headers=GOOD)
            self.assertEqual((r.status, r.json()["private"]), (200, True))
            self.assertEqual(hub.get("/org/private/resolve/main/f.txt", headers=GOOD).body,
                             b"private")

    def test_disabled(self):
        with self.server() as hub:
            r = hub.get("/org/disabled/resolve/main/f.txt")
            self.assertEqual((r.status, r.header("X-Error-Message")),
                             (403, "Access to this resource is disabled."))

    def test_without_tokens_configured_any_token_is_valid(self):
        with self.server() as hub:
            r = hub.get("/org/public/resolve/main/f.txt", headers={"Authorization": "Bearer x"})
            self.assertEqual(r.status, 200)
            self.assertEqual(hub.get("/org/gated/resolve/main/f.txt",
                                     headers={"Authorization": "Bearer x"}).status, 403)


if __name__ == "__main__":
    unittest.main()
