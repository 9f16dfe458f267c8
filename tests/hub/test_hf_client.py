"""The real huggingface_hub client against the server: hf_hub_download (small and LFS files,
with a token that must never reach the CDN), snapshot_download, its cache layout, gated and
missing entries. Skipped visibly (exit 77) when huggingface_hub is not installed."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import unittest

from hubtest import SAMPLE, HubTestCase, read, write

FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]

CHILD = r"""
import json, os, sys
from huggingface_hub import hf_hub_download, snapshot_download
out = {}
cache = os.environ["TEST_CACHE"]
out["small"] = hf_hub_download("demo/stories", "config.json", cache_dir=cache, token="good")
out["lfs"] = hf_hub_download("demo/stories", "model.safetensors", cache_dir=cache, token="good")
out["snapshot"] = snapshot_download("demo/stories", cache_dir=cache + "2")
for name, call in (("gated", lambda: hf_hub_download("org/gated", "f.txt", cache_dir=cache)),
                   ("missing", lambda: hf_hub_download("demo/stories", "nope.txt",
                                                       cache_dir=cache))):
    try:
        call()
        out[name] = None
    except Exception as e:
        out[name] = type(e).__name__
json.dump(out, sys.stdout)
"""


@unittest.skipIf(importlib.util.find_spec("huggingface_hub") is None,
                 "huggingface_hub not installed")
class HfClient(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        for name in FILES:
            write(os.path.join(root, "demo", "stories", name), read(os.path.join(SAMPLE, name)))
        write(os.path.join(root, "org", "gated", "f.txt"), "g")
        write(os.path.join(root, "org", "gated", ".hub", "meta.json"),
              json.dumps({"gated": "auto", "authorized": ["good"]}))

    def test_downloads(self):
        with self.server("--lfs-threshold", "100000", "--resolve-cache") as hub:
            env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:%d" % hub.port,
                       HF_HOME=os.path.join(self.tmp, "hfhome"),
                       TEST_CACHE=os.path.join(self.tmp, "cache"), HF_HUB_DISABLE_XET="1")
            env.pop("HF_TOKEN", None)
            p = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = json.loads(p.stdout)
            for key, name in (("small", "config.json"), ("lfs", "model.safetensors")):
                self.assertEqual(read(out[key]), read(os.path.join(SAMPLE, name)), key)
            for name in FILES:
                self.assertEqual(read(os.path.join(out["snapshot"], name)),
                                 read(os.path.join(SAMPLE, name)), name)
            self.assertEqual(out["gated"], "GatedRepoError")
            # 0.x raises EntryNotFoundError, 1.x its subclass RemoteEntryNotFoundError
            self.assertIn(out["missing"], ("EntryNotFoundError", "RemoteEntryNotFoundError"))
            sha = hub.get("/api/models/demo/stories").json()["sha"]
            refs = os.path.join(self.tmp, "cache", "models--demo--stories", "refs", "main")
            self.assertEqual(read(refs, "r"), sha)
            blob = os.path.join(self.tmp, "cache", "models--demo--stories", "blobs",
                                hashlib.sha256(read(os.path.join(SAMPLE,
                                                                 "model.safetensors"))).hexdigest())
            self.assertTrue(os.path.exists(blob))
            log = hub.log()
            cdn = [e for e in log if e["listener"] == "cdn"]
            self.assertTrue(cdn)
            self.assertFalse(any(e["auth"] for e in cdn), cdn)  # the token stays on the Hub
            self.assertTrue(any(e["auth"] for e in log if e["listener"] == "hub"))


if __name__ == "__main__":
    if importlib.util.find_spec("huggingface_hub") is None:
        print("SKIP: huggingface_hub not installed (Debian 12 does not package it)")
        sys.exit(77)
    unittest.main()
