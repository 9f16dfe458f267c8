#!/usr/bin/env python3
"""Six models with --jobs 4 against a Hub with a tight quota and injected faults (5xx answers
and reset connections): the mount paces and retries, hfsweep holds launches while the budget
is low, and every model completes with the reference perplexity — zero failures."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeplib  # noqa: E402
from sweeplib import SweepCase, refs  # noqa: E402

FAULTS = [
    {"kind": "status", "status": 503, "count": 2, "skip": 2},
    {"kind": "status", "status": 503, "count": -1, "prob": 0.15},
    {"kind": "status", "status": 429, "t": 2, "count": 3, "skip": 5},
    {"kind": "reset", "listener": "cdn", "count": 3, "after": 1000},
]


class TightQuota(SweepCase):
    def test_jobs4_under_quota_and_faults(self):
        models = [f"demo/stories260K-q{i}" for i in range(6)]
        for i, m in enumerate(models):  # each its own bytes: every model is really fetched
            self.hub.add_unique(m, f"q{i}")
        # The weights are LFS files (a redirect to the CDN listener, where the resets hit).
        args = ["--quota", "api=5/3,resolvers=8/3", "--lfs-threshold", "100000"]
        for f in FAULTS:
            args += ["--fault", json.dumps(f)]
        self.hub.start(*args)
        mfile = os.path.join(self.work, "models.txt")
        with open(mfile, "w", encoding="utf-8") as f:
            f.write("# six copies of the sample model\n\n" + "\n".join(models) + "\n")
        r = self.sweep("--models", mfile, *self.base_args(), "--ctx", "256", "--stride", "128",
                       "--jobs", "4", timeout=400)
        self.assertEqual(r.returncode, 0, self.explain())
        recs = self.results()
        self.assertEqual(sorted(x["model"] for x in recs), models, recs)
        ref = refs()["sliding", 256, 128, "f32"]
        for rec in recs:
            self.assert_ppl(rec, ref)
        self.assertNotIn("failed:", r.stdout)
        # The quota really was tight: the server refused requests with 429 and the faults fired.
        statuses = []
        with open(os.path.join(self.work, "requests.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    statuses.append(int(json.loads(line).get("status", 0)))
                except (ValueError, TypeError, AttributeError):
                    pass
        self.assertIn(429, statuses, "the quota never limited anything: the test proves nothing")
        self.assertIn(503, statuses, "no fault was injected")


if __name__ == "__main__":
    sweeplib.main()
