"""--blob-dir and --cdn-url-base with a real nginx serving the blobs (the benchmark setup of
docs/HUBSERVER.md): the 302 points at nginx, which serves the right bytes and ranges."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from hubtest import HubServer, write

NGINX_CONF = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
{user}
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  sendfile on; default_type application/octet-stream;
  server {{ listen 127.0.0.1:{port}; root {blobs}; location / {{ }} }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hubnginx.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.blobs = os.path.join(self.tmp, "blobs")
        os.makedirs(os.path.join(self.tmp, "tmp"))
        self.data = os.urandom(3 << 20)
        write(os.path.join(self.tmp, "repos", "org", "m", "model.bin"), self.data)
        write(os.path.join(self.tmp, "repos", "org", "m", "config.json"), "{}")

    def start_nginx(self):
        for _ in range(5):  # the port is free when chosen; retry if someone takes it meanwhile
            port = free_port()
            conf = os.path.join(self.tmp, "nginx.conf")
            user = "user root;" if os.geteuid() == 0 else ""
            write(conf, NGINX_CONF.format(d=self.tmp, port=port, blobs=self.blobs, user=user))
            proc = subprocess.Popen([shutil.which("nginx"), "-c", conf, "-g", "daemon off;"],
                                    stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    self.addCleanup(self.stop_nginx, proc)
                    return port
                except OSError:
                    time.sleep(0.05)
            if proc.poll() is None:
                self.stop_nginx(proc)
        self.fail("nginx did not start: %s" % proc.stderr.read().decode())

    @staticmethod
    def stop_nginx(proc):
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()

    def test_redirect_to_nginx(self):
        port = self.start_nginx()
        with HubServer(os.path.join(self.tmp, "repos"), "--lfs-threshold", "1000",
                       "--blob-dir", self.blobs, "--cdn-url-base",
                       "http://127.0.0.1:%d" % port) as hub:
            r = hub.head("/org/m/resolve/main/model.bin")
            sha = hashlib.sha256(self.data).hexdigest()
            self.assertEqual((r.status, r.header("X-Linked-Etag")), (302, '"%s"' % sha))
            loc = r.header("Location")
            self.assertTrue(loc.startswith("http://127.0.0.1:%d/%s?" % (port, sha)), loc)
            self.assertTrue(os.path.exists(os.path.join(self.blobs, sha)))
            full = hub.get(loc)
            self.assertEqual((full.status, hashlib.sha256(full.body).hexdigest()), (200, sha))
            part = hub.get(loc, headers={"Range": "bytes=1000000-1000099"})
            self.assertEqual((part.status, part.body), (206, self.data[1000000:1000100]))
            self.assertEqual(part.header("Content-Range"),
                             "bytes 1000000-1000099/%d" % len(self.data))
            self.assertEqual(hub.get(loc, headers={"Range": "bytes=%d-" % len(self.data)}).status,
                             416)
            # the server's own log has the resolve only; the bytes went through nginx
            self.assertEqual([e["bucket"] for e in hub.log()], ["resolvers"])


if __name__ == "__main__":
    if shutil.which("nginx") is None:
        print("SKIP: nginx not installed (apt-get install nginx)")
        sys.exit(77)
    unittest.main()
