"""Quotas per bucket: fixed windows, RateLimit / RateLimit-Policy on every answer, the 429
header forms, changes at run time, and the log's accounting."""

import os
import time
import unittest

from hubtest import HubTestCase, write


class Quota(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        write(os.path.join(root, "org", "m", "f.txt"), "f")

    def test_api_quota_and_headers(self):
        with self.server("--quota", "api=3/3,resolvers=100/3") as hub:
            hub.control(cmd="quota", quota="api=3/4,resolvers=100/4")  # a fresh window now
            got = [hub.get("/api/models/org/m") for _ in range(4)]
            self.assertEqual([r.status for r in got], [200, 200, 200, 429])
            self.assertEqual([r.header("RateLimit").split(";")[1] for r in got],
                             ["r=2", "r=1", "r=0", "r=0"])
            for r in got:
                self.assertEqual(r.header("RateLimit-Policy"), '"fixed window";"api";q=3;w=4')
            t = int(got[3].header("RateLimit").split("t=")[1])
            self.assertTrue(1 <= t <= 4, t)
            self.assertEqual(got[3].header("X-Error-Message").split(" ")[0], "You")
            r = hub.get("/org/m/resolve/main/f.txt")  # the resolvers bucket is separate
            self.assertEqual((r.status, r.header("RateLimit").split(";")[0]),
                             (200, '"resolvers"'))
            time.sleep(t + 0.1)
            r = hub.get("/api/models/org/m")
            self.assertEqual((r.status, r.header("RateLimit").split(";")[1]), (200, "r=2"))
            log = hub.log()
            self.assertEqual([(e["bucket"], e["status"]) for e in log],
                             [("api", 200)] * 3 + [("api", 429), ("resolvers", 200),
                                                   ("api", 200)])
            self.assertEqual(log[3]["ratelimit"]["r"], 0)

    def test_header_forms_and_runtime_change(self):
        with self.server() as hub:
            self.assertIsNone(hub.get("/api/models/org/m").header("RateLimit"))  # no quota
            for form in ("retry-after", "retry-after-date", "none", "hostile"):
                hub.control(cmd="quota", quota="resolvers=1/60", headers=form)
                ok, limited = hub.get("/org/m/resolve/main/f.txt"), hub.get(
                    "/org/m/resolve/main/f.txt")
                self.assertEqual((ok.status, limited.status), (200, 429), form)
                if form == "retry-after":
                    self.assertTrue(0 < int(limited.header("Retry-After")) <= 60)
                    self.assertIsNone(limited.header("RateLimit"))
                elif form == "retry-after-date":
                    self.assertTrue(limited.header("Retry-After").endswith(" GMT"))
                elif form == "none":
                    self.assertIsNone(limited.header("RateLimit"))
                    self.assertIsNone(limited.header("Retry-After"))
                    self.assertIsNone(ok.header("RateLimit"))
                else:
                    self.assertTrue(limited.header("RateLimit").endswith(";t=999999999"))
            hub.control(cmd="quota", quota="")
            self.assertEqual(hub.get("/org/m/resolve/main/f.txt").status, 200)

    def test_anonymous_quota(self):
        tok = {"Authorization": "Bearer t"}
        with self.server("--quota", "api=4/60", "--anon-quota", "api=2/60") as hub:
            anon = [hub.get("/api/models/org/m").status for _ in range(3)]
            self.assertEqual(anon, [200, 200, 429])
            r = hub.get("/api/models/org/m", headers=tok)
            self.assertEqual((r.status, r.header("RateLimit-Policy")),
                             (200, '"fixed window";"api";q=4;w=60'))
            self.assertEqual([hub.get("/api/models/org/m", headers=tok).status
                              for _ in range(4)], [200, 200, 200, 429])
            r = hub.get("/org/m/resolve/main/f.txt")  # no quota on resolvers at all
            self.assertEqual((r.status, r.header("RateLimit")), (200, None))
            hub.control(cmd="quota", quota="api=4/60", anon="")
            self.assertEqual(hub.get("/api/models/org/m").header("RateLimit-Policy"),
                             '"fixed window";"api";q=4;w=60')
            self.assertEqual(hub.get("/_control/info").json()["anon_quota"], {})

    def test_bad_quota_flag(self):
        import subprocess
        import sys
        from hubtest import SERVER
        p = subprocess.run([sys.executable, SERVER, "--root", self.root, "--quota", "api=x"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bad quota 'api=x'", p.stderr)


if __name__ == "__main__":
    unittest.main()
