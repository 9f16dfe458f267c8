"""hubtest.py — helpers for the local Hub server's tests: start a server on a temporary repo
tree (free ports, always killed), speak HTTP to it without following redirects, read its log."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER = os.path.join(REPO_ROOT, "scripts", "hubserver.py")
SAMPLE = os.path.join(REPO_ROOT, "tests", "data", "stories260K-hf")


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


class Reply:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


class HubServer:
    """A running hubserver.py on ports of its own; use as a context manager."""

    def __init__(self, root, *args):
        self.root, self.args = root, list(args)
        self.dir = tempfile.mkdtemp(prefix="hubtest.")
        self.port_file = os.path.join(self.dir, "port")
        self.cdn_port_file = os.path.join(self.dir, "cdn-port")
        self.log_path = os.path.join(self.dir, "requests.jsonl")
        self.proc = None

    def __enter__(self):
        self.stderr = open(os.path.join(self.dir, "stderr"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--root", self.root, "--port", "0", "--port-file",
             self.port_file, "--cdn-port-file", self.cdn_port_file, "--log", self.log_path]
            + self.args, stderr=self.stderr)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stderr.seek(0)
                err = self.stderr.read()
                self.__exit__(None, None, None)
                raise RuntimeError("hubserver did not start: %s" % err)
            time.sleep(0.05)
        self.port = int(read(self.port_file, "r"))
        self.cdn_port = int(read(self.cdn_port_file, "r"))
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.stderr:
            self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, url, headers=None, body=None, port=None, timeout=20):
        """One request on a fresh connection; url is a path or an absolute URL."""
        if url.startswith("http://"):
            u = urllib.parse.urlsplit(url)
            port, url = u.port, u.path + ("?" + u.query if u.query else "")
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, url, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def head(self, url, **kw):
        return self.request("HEAD", url, **kw)

    def control(self, **cmd):
        r = self.request("POST", "/_control", body=json.dumps(cmd),
                         headers={"Content-Type": "application/json"})
        if r.status != 200:
            raise AssertionError("control %s: %d %s" % (cmd, r.status, r.body))
        return r.json()

    def log(self, since=0):
        r = self.get("/_control/log?since=%d" % since)
        return [json.loads(line) for line in r.body.decode().splitlines()]


class HubTestCase(unittest.TestCase):
    """A fresh repo tree per test class: self.root; subclasses fill it in make_repos()."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hubrepos.")
        cls.root = os.path.join(cls.tmp, "repos")
        os.makedirs(cls.root)
        cls.make_repos(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def make_repos(cls, root):
        pass

    def server(self, *args):
        return HubServer(self.root, *args)
