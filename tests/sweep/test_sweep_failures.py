#!/usr/bin/env python3
"""A sweep of 6 repos on the local Hub: 3 evaluate to the reference perplexities, 3 fail with
the right reason (gated without a token, missing, corrupt safetensors header); the exit status
is non-zero and the printed re-run command, given the token, completes the gated one without
re-running what already finished. The report files list every model."""

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeplib  # noqa: E402
from sweeplib import TEXT, SweepCase, refs, read_text  # noqa: E402

CONFIG = """\
# The sample model, a BF16 copy, the same weights under the llama.cpp method, and three that
# cannot work for different reasons.
text = "{text}"
ctx = 256
stride = 128
method = "sliding"

[[model]]
repo = "demo/stories260K"

[[model]]
repo = "demo/stories260K-bf16"

[[model]]
repo = "demo/stories260K-chunk"
method = "llamacpp"
ctx = 128

[[model]]
repo = "demo/stories260K-gated"

[[model]]
repo = "demo/no-such-model"

[[model]]
repo = "demo/stories260K-corrupt"
"""

MODELS = ["demo/stories260K", "demo/stories260K-bf16", "demo/stories260K-chunk",
          "demo/stories260K-gated", "demo/no-such-model", "demo/stories260K-corrupt"]


class FailuresAndRerun(SweepCase):
    def setUp(self):
        super().setUp()
        h = self.hub
        h.add_copy("demo/stories260K")
        h.add_bf16("demo/stories260K-bf16")
        h.add_copy("demo/stories260K-chunk")
        h.add_gated("demo/stories260K-gated")
        h.add_corrupt_header("demo/stories260K-corrupt")
        h.start()
        self.config = os.path.join(self.work, "sweep.toml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(CONFIG.format(text=TEXT))

    def test_failures_then_only_failed_with_token(self):
        R = refs()
        args = ["--config", self.config, "--endpoint", self.hub.url, "--cache-dir", self.cache,
                "--out", self.out, "--threads", "1", "--timeout", "120"]
        r = self.sweep(*args)
        self.assertEqual(r.returncode, 1, "a sweep with failures must exit 1" + self.explain())
        got = {rec["model"]: rec for rec in self.results()}
        self.assertEqual(sorted(got), sorted(MODELS), self.explain())
        self.assert_ppl(got["demo/stories260K"], R["sliding", 256, 128, "f32"])
        self.assert_ppl(got["demo/stories260K-bf16"], R["sliding", 256, 128, "bf16"])
        self.assert_ppl(got["demo/stories260K-chunk"], R["llamacpp", 128, None, "f32"])
        self.assertEqual(got["demo/stories260K-chunk"]["settings"]["method"], "llamacpp")
        self.assertEqual(got["demo/stories260K-chunk"]["settings"]["ctx"], 128)
        for model, reason in (("demo/stories260K-gated", "gated"),
                              ("demo/no-such-model", "missing"),
                              ("demo/stories260K-corrupt", "bad-weights")):
            rec = got[model]
            self.assertEqual(rec["status"], "failed", rec)
            self.assertEqual(rec["reason"], reason, f"{model}: {rec}" + self.explain())
            self.assertTrue(rec["error"], rec)
        for rec in got.values():  # every record has the documented fields
            for k in ("model", "revision", "commit", "method", "settings", "perplexity", "nll",
                      "tokens", "seconds", "status", "error"):
                if rec["status"] == "ok" or k not in ("perplexity", "nll", "tokens"):
                    self.assertIn(k, rec, rec)
        ok = got["demo/stories260K"]
        self.assertRegex(ok["commit"] or "", r"^[0-9a-f]{40}$", ok)
        self.assertGreater(ok["n_params"], 200000)
        self.assertTrue(os.path.exists(os.path.join(self.out, ok["log"])))

        # The summary lists the failures and the exact command that re-runs only them.
        self.assertIn("re-run only the failed models with:", r.stdout)
        line = r.stdout.split("re-run only the failed models with:\n", 1)[1].splitlines()[0]
        cmd = shlex.split(line)
        self.assertEqual(os.path.realpath(cmd[0]), os.path.realpath(sweeplib.HFSWEEP))
        self.assertIn("--only-failed", cmd)
        for m in ("demo/stories260K-gated", "demo/no-such-model", "demo/stories260K-corrupt"):
            self.assertIn(m, r.stdout)
        self.check_reports(MODELS)

        # The same command with the token: the gated one completes, nothing else re-runs.
        before = self.results()
        r2 = self.sweep(*cmd[1:], "--token-file", self.hub.token_file)
        self.assertEqual(r2.returncode, 1, "two failures remain" + self.explain())
        after = self.results()
        new = after[len(before):]
        self.assertEqual(sorted(x["model"] for x in new),
                         ["demo/no-such-model", "demo/stories260K-corrupt",
                          "demo/stories260K-gated"], new)
        gated = [x for x in new if x["model"] == "demo/stories260K-gated"][0]
        self.assert_ppl(gated, R["sliding", 256, 128, "f32"])
        self.check_reports(MODELS)

        # --report alone rebuilds the files from what is there.
        os.unlink(os.path.join(self.out, "summary.md"))
        r3 = self.sweep("--out", self.out, "--report")
        self.assertEqual(r3.returncode, 0, self.explain())
        self.check_reports(MODELS)

    def check_reports(self, models):
        md = read_text(os.path.join(self.out, "summary.md"))
        svg_path = os.path.join(self.out, "summary.svg")
        svg = read_text(svg_path)
        root = ET.fromstring(svg)  # well-formed SVG
        self.assertTrue(root.tag.endswith("svg"))
        for m in models:
            self.assertIn(m, md)
            self.assertIn(m.split("/", 1)[1], svg)
        # The table is sorted by perplexity.
        ppls = [float(row.split("|")[8]) for row in md.splitlines()
                if row.startswith("| ") and row.split("|")[1].strip().isdigit()]
        self.assertEqual(ppls, sorted(ppls))
        self.assertGreaterEqual(len(ppls), 3)
        if sweeplib.shutil.which("rsvg-convert"):
            png = os.path.join(self.work, "summary.png")
            subprocess.run(["rsvg-convert", "-o", png, svg_path], check=True)
            self.assertGreater(os.path.getsize(png), 5000)


if __name__ == "__main__":
    sweeplib.main()
