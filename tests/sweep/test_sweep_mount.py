#!/usr/bin/env python3
"""hfsweep on a mount the user started (--mount DIR): it uses it, learns the Hub endpoint from
MOUNT/.hfmount/stats (no --endpoint, no $HF_ENDPOINT) to resolve commits, records an
unsupported architecture as such, and leaves the mount mounted. And the budget gate: no
launch while MOUNT/.hfmount/stats says the api bucket is nearly spent."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

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


class BudgetGate(SweepCase):
    """The gate itself, with hfppl on a plain directory whose .hfmount/stats the test writes:
    no launch while the api bucket is nearly spent, launches once it has recovered."""

    @staticmethod
    def write_stats(path, remaining, used):
        api = {"requests": used, "quota": 100, "window_s": 30, "window_requests": used,
               "remaining": remaining, "429s": 0, "paused_s": 0.0, "paused_for_s": 0.0}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"endpoint": "http://127.0.0.1:9", "http": {"buckets": {"api": api}}}, f)
        os.replace(tmp, path)

    def test_holds_while_budget_low(self):
        mnt = os.path.join(self.work, "plain")
        os.makedirs(os.path.join(mnt, ".hfmount"))
        stats = os.path.join(mnt, ".hfmount", "stats")
        self.write_stats(stats, remaining=2, used=98)
        shutil.copytree(sweeplib.SAMPLE, os.path.join(mnt, "demo", "stories260K"))
        mfile = os.path.join(self.work, "models.txt")
        with open(mfile, "w", encoding="utf-8") as f:
            f.write("demo/stories260K\n")
        p = self.start_sweep("--mount", mnt, "--models", mfile, "--text", TEXT, "--out",
                             self.out, "--ctx", "256", "--stride", "128", "--threads", "1")
        time.sleep(4)
        self.assertIsNone(p.poll())
        self.assertFalse(os.path.exists(os.path.join(self.out, "results.jsonl")),
                         "a model was launched while the budget was low")
        self.assertEqual([f for f in os.listdir(os.path.join(self.out, "logs"))
                          if f.startswith("demo__")], [])
        self.write_stats(stats, remaining=90, used=10)
        self.assertEqual(p.wait(timeout=120), 0)
        with open(os.path.join(self.work, "sweep-0.stderr"), encoding="utf-8") as f:
            err = f.read()
        self.assertIn("holding back: api budget 2/100 left", err)
        rec = self.results()[0]
        self.assert_ppl(rec, refs()["sliding", 256, 128, "f32"])


if __name__ == "__main__":
    sweeplib.main()
