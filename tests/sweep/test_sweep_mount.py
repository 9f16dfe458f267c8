#!/usr/bin/env python3
"""hfsweep on a mount the user started (--mount DIR): it uses it, learns the Hub endpoint from
MOUNT/.hfmount/stats (no --endpoint, no $HF_ENDPOINT) to resolve commits, records an
unsupported architecture as such, and leaves the mount mounted."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeplib  # noqa: E402
from sweeplib import SweepCase, TEXT, refs  # noqa: E402


class GivenMount(SweepCase):
    def test_user_mount(self):
        self.hub.add_unique("demo/stories260K-m", "m")
        d = self.hub.add_unique("demo/mamba-like", "mamba")
        cfg_path = os.path.join(d, "config.json")
        with open(cfg_path, encoding="utf-8") as f:
            text = f.read()
        with open(cfg_path, "w", encoding="utf-8") as f:
            f.write(text.replace('"llama"', '"mamba"').replace("LlamaForCausalLM",
                                                               "MambaForCausalLM"))
        self.hub.start()
        mnt = tempfile.mkdtemp(prefix="hfsweep-usermnt.", dir=self.work)
        env = self.env()
        subprocess.run([self.hfmount, "--endpoint", self.hub.url, "--cache-dir", self.cache, mnt],
                       check=True, env=env, timeout=60)
        self.addCleanup(subprocess.run, ["fusermount3", "-u", mnt], capture_output=True)
        mfile = os.path.join(self.work, "models.txt")
        with open(mfile, "w", encoding="utf-8") as f:
            f.write("demo/stories260K-m\ndemo/mamba-like\n")
        r = self.sweep("--mount", mnt, "--models", mfile, "--text", TEXT, "--out", self.out,
                       "--ctx", "256", "--stride", "128", "--threads", "1", "--jobs", "2")
        self.assertEqual(r.returncode, 1, self.explain())
        got = {x["model"]: x for x in self.results()}
        self.assert_ppl(got["demo/stories260K-m"], refs()["sliding", 256, 128, "f32"])
        self.assertRegex(got["demo/stories260K-m"]["commit"] or "", r"^[0-9a-f]{40}$",
                         "the commit was not resolved through the mount's endpoint")
        bad = got["demo/mamba-like"]
        self.assertEqual((bad["status"], bad["reason"]), ("failed", "unsupported"), bad)
        self.assertIn("mamba", bad["error"])
        self.assertTrue(sweeplib.is_mounted(mnt), "hfsweep unmounted a mount it did not start")
        self.assertFalse(os.path.exists(os.path.join(self.out, ".mount")))


if __name__ == "__main__":
    sweeplib.main()
