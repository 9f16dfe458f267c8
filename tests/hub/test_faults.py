"""Fault injection: each kind, its scoping (listener, bucket, path, file, count, skip, prob),
the control endpoint's errors, and how faults show in the request log."""

import http.client
import json
import os
import socket
import time
import unittest

from hubtest import HubTestCase, write

DATA = bytes(range(256)) * 64  # 16 KiB


def raw_get(port, path, timeout=5):
    """Status line + headers + everything the server sent until it closed (no framing)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        return head.decode(), body
    finally:
        s.close()


def content_length(head):
    for line in head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            return int(line.split(":")[1])
    return None


class Faults(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        write(os.path.join(root, "org", "m", "small.json"), '{"a": 1}')
        write(os.path.join(root, "org", "m", "weights.bin"), DATA)
        write(os.path.join(root, "org", "m", "sub", "x.txt"), "x")

    def server(self, *args):
        return super().server("--lfs-threshold", "1000", *args)

    def cdn_location(self, hub):
        return hub.head("/org/m/resolve/main/weights.bin").header("Location")

    def test_status_count_skip_and_scope(self):
        with self.server() as hub:
            hub.control(cmd="fault", kind="status", status=502, count=2, skip=1,
                        bucket="resolvers", file="small.json")
            url = "/org/m/resolve/main/small.json"
            self.assertEqual(hub.get("/api/models/org/m").status, 200)  # other bucket
            self.assertEqual(hub.get("/org/m/resolve/main/sub/x.txt").status, 200)  # other file
            self.assertEqual([hub.get(url).status for _ in range(4)], [200, 502, 502, 200])
            self.assertEqual([e.get("fault") for e in hub.log()],
                             [None, None, None, "status", "status", None])
            faults = hub.get("/_control/faults").json()
            self.assertEqual((faults[0]["remaining"], faults[0]["fired"]), (0, 2))

    def test_status_probability_and_clear(self):
        with self.server() as hub:
            hub.control(cmd="fault", kind="status", status=[500, 503], prob=0.5, count=-1)
            got = [hub.get("/org/m/resolve/main/small.json").status for _ in range(60)]
            self.assertTrue(set(got) <= {200, 500, 503}, got)
            self.assertGreater(got.count(200), 5)
            self.assertGreater(len(got) - got.count(200), 5)
            hub.control(cmd="clear_faults")
            self.assertEqual(hub.get("/org/m/resolve/main/small.json").status, 200)

    def test_429_header_forms(self):
        with self.server() as hub:
            url = "/org/m/resolve/main/small.json"
            for form, check in (
                    ("ratelimit", lambda r: r.header("RateLimit") == '"resolvers";r=0;t=7'),
                    ("retry-after", lambda r: r.header("Retry-After") == "7"
                     and r.header("RateLimit") is None),
                    ("retry-after-date", lambda r: abs(time.mktime(time.strptime(
                        r.header("Retry-After"), "%a, %d %b %Y %H:%M:%S GMT")) - time.mktime(
                        time.gmtime()) - 7) <= 2),
                    ("none", lambda r: r.header("RateLimit") is None
                     and r.header("Retry-After") is None),
                    ("hostile", lambda r: r.header("RateLimit") == '"resolvers";r=0;t=999999999')):
                hub.control(cmd="fault", kind="status", status=429, headers=form, t=7)
                r = hub.get(url)
                self.assertEqual(r.status, 429, form)
                self.assertTrue(check(r), (form, r.headers))

    def test_hang(self):
        with self.server() as hub:
            hub.control(cmd="fault", kind="hang", path="/api/models/org/m")
            t0 = time.monotonic()
            with self.assertRaises(socket.timeout):
                hub.get("/api/models/org/m", timeout=1)
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
            t0 = time.monotonic()
            entry = hub.log()[0]  # logged at once, the log does not wait for the hang
            self.assertLess(time.monotonic() - t0, 1.5)
            self.assertEqual((entry["fault"], entry["status"], entry["repo"]),
                             ("hang", 0, "org/m"))
            self.assertEqual(hub.get("/api/models/org/m").status, 200)  # count 1: spent

    def test_drop_and_delay(self):
        with self.server() as hub:
            hub.control(cmd="fault", kind="drop", bucket="api")
            with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)):
                hub.get("/api/models/org/m")
            hub.control(cmd="fault", kind="delay", seconds=1, bucket="api")
            t0 = time.monotonic()
            self.assertEqual(hub.get("/api/models/org/m").status, 200)
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
            hub.control(cmd="fault", kind="delay", seconds=0.1, bucket="api")
            hub.control(cmd="fault", kind="truncate", after=5, bucket="api")
            with self.assertRaises(http.client.IncompleteRead):
                hub.get("/api/models/org/m")
            self.assertEqual([(e["status"], e.get("fault")) for e in hub.log()],
                             [(0, "drop"), (200, "delay"), (200, "delay+truncate")])

    def test_truncate_and_wrong_length(self):
        with self.server() as hub:
            loc = self.cdn_location(hub)
            hub.control(cmd="fault", kind="truncate", after=1000, listener="cdn")
            head, body = raw_get(hub.cdn_port, loc[loc.index("/blobs"):])
            self.assertEqual((content_length(head), len(body)), (len(DATA), 1000))
            self.assertEqual(body, DATA[:1000])
            hub.control(cmd="fault", kind="wrong_length", delta=10, listener="cdn")
            head, body = raw_get(hub.cdn_port, loc[loc.index("/blobs"):])
            self.assertEqual((content_length(head), len(body)), (len(DATA) + 10, len(DATA)))
            hub.control(cmd="fault", kind="long_body", extra=77, file="small.json")
            head, body = raw_get(hub.port, "/org/m/resolve/main/small.json")
            self.assertEqual((content_length(head), body), (8, b'{"a": 1}' + b"X" * 77))
            with self.assertRaises(http.client.IncompleteRead):
                hub.control(cmd="fault", kind="truncate", listener="cdn")
                hub.get(loc)

    def test_reset_mid_body(self):
        with self.server() as hub:
            loc = self.cdn_location(hub)
            hub.control(cmd="fault", kind="reset", after=4096, listener="cdn")
            with self.assertRaises((ConnectionResetError, http.client.IncompleteRead)):
                hub.get(loc)
            entry = hub.log()[-1]
            self.assertEqual((entry["fault"], entry["bytes"], entry["status"]),
                             ("reset", 4096, 200))
            self.assertEqual(hub.get(loc).body, DATA)

    def test_slow_body(self):
        with self.server() as hub:
            loc = self.cdn_location(hub)
            hub.control(cmd="fault", kind="slow", rate=20000, listener="cdn")
            t0 = time.monotonic()
            r = hub.get(loc, headers={"Range": "bytes=0-9999"})
            self.assertEqual(r.body, DATA[:10000])
            self.assertGreaterEqual(time.monotonic() - t0, 0.4)

    def test_cdn_refuse_pointer_html_corrupt(self):
        with self.server() as hub:
            loc = self.cdn_location(hub)
            hub.control(cmd="fault", kind="cdn_refuse", listener="cdn")
            r = hub.get(loc)
            self.assertEqual(r.status, 403)
            self.assertIn(b"AccessDenied", r.body)
            hub.control(cmd="fault", kind="lfs_pointer", file="weights.bin")
            self.assertTrue(hub.get(loc).body.startswith(b"version https://git-lfs"))
            hub.control(cmd="fault", kind="html", file="small.json")
            r = hub.get("/org/m/resolve/main/small.json", headers={"Range": "bytes=0-3"})
            self.assertEqual((r.status, r.header("Content-Type")),
                             (200, "text/html; charset=utf-8"))
            self.assertIn(b"<html>", r.body)
            hub.control(cmd="fault", kind="corrupt", offset=3, listener="cdn")
            r = hub.get(loc, headers={"Range": "bytes=0-9"})
            self.assertEqual(r.body, DATA[:3] + bytes([DATA[3] ^ 0xFF]) + DATA[4:10])
            self.assertEqual(hub.get(loc).body, DATA)

    def test_range_answers_gone_wrong(self):
        import gzip
        with self.server() as hub:
            loc = self.cdn_location(hub)
            rng = {"Range": "bytes=100-199"}
            hub.control(cmd="fault", kind="ignore_range", listener="cdn")
            r = hub.get(loc, headers=rng)
            self.assertEqual((r.status, r.body, r.header("Content-Range")), (200, DATA, None))
            hub.control(cmd="fault", kind="wrong_range", shift=5, listener="cdn")
            r = hub.get(loc, headers=rng)
            self.assertEqual((r.status, r.body), (206, DATA[100:200]))
            self.assertEqual(r.header("Content-Range"), "bytes 105-204/%d" % len(DATA))
            hub.control(cmd="fault", kind="wrong_range", shift=0, total=7, listener="cdn")
            self.assertEqual(hub.get(loc, headers=rng).header("Content-Range"), "bytes 100-199/7")
            hub.control(cmd="fault", kind="gzip", file="small.json")
            r = hub.get("/org/m/resolve/main/small.json", headers={"Range": "bytes=0-1"})
            self.assertEqual((r.status, r.header("Content-Encoding")), (200, "gzip"))
            self.assertEqual(gzip.decompress(r.body), b'{"a": 1}')
            self.assertEqual(hub.get(loc, headers=rng).body, DATA[100:200])  # all spent

    def test_stall_mid_body(self):
        with self.server() as hub:
            loc = self.cdn_location(hub)
            hub.control(cmd="fault", kind="stall", after=100, seconds=1.5, listener="cdn")
            t0 = time.monotonic()
            r = hub.get(loc, headers={"Range": "bytes=0-999"})
            self.assertEqual(r.body, DATA[:1000])
            self.assertGreaterEqual(time.monotonic() - t0, 1.4)
            hub.control(cmd="fault", kind="stall", after=100, listener="cdn")
            with self.assertRaises(socket.timeout):
                hub.get(loc, timeout=1)

    def test_hostile_listings(self):
        with self.server() as hub:
            hub.control(cmd="fault", kind="hostile_names", path="*/tree/*")
            entries = hub.get("/api/models/org/m/tree/main").json()
            paths = [e.get("path") for e in entries if isinstance(e, dict)]
            for bad in ("..", "../escape", "a//b", "/absolute", "back\\slash", "nul\0byte", ""):
                self.assertIn(bad, paths)
            self.assertEqual(paths.count("dup"), 2)
            self.assertIn("small.json", paths)
            hub.control(cmd="fault", kind="inject_entries", path="/api/models/org/m",
                        entries=[{"type": "file", "path": "../x", "size": -5}])
            sib = hub.get("/api/models/org/m").json()["siblings"]
            self.assertIn({"rfilename": "../x", "size": -5}, sib)
            hub.control(cmd="fault", kind="body", text="[{\"type\": \"fi", path="*/tree/*")
            r = hub.get("/api/models/org/m/tree/main")
            with self.assertRaises(ValueError):
                json.loads(r.body)
            hub.control(cmd="fault", kind="body", text="[" + "1," * 1000, repeat=100,
                        path="*/tree/*")
            self.assertEqual(len(hub.get("/api/models/org/m/tree/main").body), 200100)

    def test_fault_flags_and_bad_specs(self):
        spec = json.dumps({"kind": "status", "status": 503, "count": 1, "bucket": "api"})
        with self.server("--fault", spec) as hub:
            self.assertEqual(hub.get("/api/models/org/m").status, 503)
            self.assertEqual(hub.get("/api/models/org/m").status, 200)
            for bad in ({"cmd": "fault", "kind": "nope"}, {"cmd": "fault", "kind": "status",
                                                            "status": 200},
                        {"cmd": "fault", "kind": "slow", "rate": 0},
                        {"cmd": "fault", "kind": "truncate", "bogus": 1}, {"cmd": "what"},
                        [1, 2]):
                r = hub.request("POST", "/_control", body=json.dumps(bad))
                self.assertEqual(r.status, 400, bad)
                self.assertIn("error", r.json())
            self.assertEqual(len(hub.log()), 2)  # control requests are not logged


if __name__ == "__main__":
    unittest.main()
