"""The real @huggingface/hub JavaScript client against the server: modelInfo, listFiles with
pagination, downloads of small and LFS files, fileExists, gated and missing repos, bad tokens.
Enabled by HF_JS_HUB_MODULES=DIR, a node_modules folder holding @huggingface/hub (e.g.
`npm install --prefix X @huggingface/hub@2.17.5`, then DIR=X/node_modules); otherwise it
prints SKIP and exits 77."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import unittest

from hubtest import HERE, SAMPLE, HubTestCase, read, write

FILES = ["config.json", "model.safetensors", "tokenizer.json"]
MODULES = os.environ.get("HF_JS_HUB_MODULES", "")


def available():
    return bool(shutil.which("node")) and os.path.exists(
        os.path.join(MODULES, "@huggingface", "hub", "dist", "index.mjs"))


@unittest.skipUnless(available(), "HF_JS_HUB_MODULES does not hold @huggingface/hub")
class JsClient(HubTestCase):
    @classmethod
    def make_repos(cls, root):
        for name in FILES:
            write(os.path.join(root, "demo", "stories", name), read(os.path.join(SAMPLE, name)))
        write(os.path.join(root, "demo", "stories", "sub", "x.txt"), "x")
        write(os.path.join(root, "org", "gated", "f.txt"), "g")
        write(os.path.join(root, "org", "gated", ".hub", "meta.json"),
              json.dumps({"gated": "manual", "authorized": ["hf_good"]}))

    def test_client(self):
        with self.server("--lfs-threshold", "100000", "--page-size", "2", "--token", "hf_good",
                         "--token", "hf_other") as hub:
            p = subprocess.run(["node", os.path.join(HERE, "js_client.mjs"), MODULES,
                                "http://127.0.0.1:%d" % hub.port], capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            out = json.loads(p.stdout)
            self.assertEqual(out["sha"], hub.get("/api/models/demo/stories").json()["sha"])
            files = {f["path"]: f for f in out["files"]}
            self.assertEqual(set(files), set(FILES) | {"sub", "sub/x.txt"})
            weights = read(os.path.join(SAMPLE, "model.safetensors"))
            self.assertEqual(files["model.safetensors"]["size"], len(weights))
            self.assertEqual(files["model.safetensors"]["lfs"], hashlib.sha256(weights).hexdigest())
            self.assertEqual(files["sub"]["type"], "directory")
            self.assertEqual(out["weights"], hashlib.sha256(weights).hexdigest())
            self.assertEqual(out["config"], hashlib.sha256(
                read(os.path.join(SAMPLE, "config.json"))).hexdigest())
            self.assertEqual(out["exists"], [True, False])
            e = out["errors"]
            self.assertEqual(e["missing"][0], 401)
            self.assertEqual(e["gated_anonymous"][0], 401)
            self.assertIn("Please log in", e["gated_anonymous"][1])
            self.assertEqual(e["gated_other"][0], 403)
            self.assertIn("not in the authorized list", e["gated_other"][1])
            self.assertEqual(e["bad_token"], [401, "Invalid credentials in Authorization header"])
            self.assertEqual(out["gated"], "g")
            pages = [x for x in hub.log() if "/tree/" in x["path"]]
            self.assertGreater(len(pages), 2)  # it followed the Link header


if __name__ == "__main__":
    if not available():
        print("SKIP: @huggingface/hub not found (set HF_JS_HUB_MODULES to a node_modules "
              "folder holding it)")
        sys.exit(77)
    unittest.main()
