#!/usr/bin/env python3
"""kill -9 of hfsweep in the middle of a sweep, then the same command: the models that had
finished are not re-run, the rest complete, a torn last line of results.jsonl does not break
the reader, and the mount the killed sweep left behind is unmounted. Also: SIGTERM stops a
sweep cleanly (mount gone, status 143, the same command resumes)."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweeplib  # noqa: E402
from sweeplib import SweepCase, refs, wait_for, read_text  # noqa: E402


class KillAndResume(SweepCase):
    def setUp(self):
        super().setUp()
        self.models = [f"demo/stories260K-r{i}" for i in range(5)]
        for m in self.models:
            self.hub.add_copy(m)
        self.hub.start()
        self.mfile = os.path.join(self.work, "models.txt")
        with open(self.mfile, "w", encoding="utf-8") as f:
            f.write("\n".join(self.models) + "\n")
        # --delay spreads the launches out so that the kill lands mid-sweep.
        self.args = ["--models", self.mfile, *self.base_args(), "--ctx", "256", "--stride",
                     "128", "--sequential", "--delay", "1.5"]

    def ok_count(self):
        try:
            return sum(1 for r in self.results() if r["status"] == "ok")
        except FileNotFoundError:
            return 0

    def mountpoint(self):
        with open(os.path.join(self.out, ".mount"), encoding="utf-8") as f:
            return json.load(f)["mountpoint"]

    def test_kill9_then_same_command(self):
        p = self.start_sweep(*self.args)
        wait_for(lambda: self.ok_count() >= 2, 120, "two finished models")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        finished = {r["model"] for r in self.results() if r["status"] == "ok"}
        self.assertLess(len(finished), len(self.models), "the kill came too late to test resume")
        stale = self.mountpoint()
        self.assertTrue(os.path.ismount(stale), "a kill -9'd sweep cannot have unmounted")
        # A sweep killed inside write(2) leaves a torn line; simulate that too.
        with open(os.path.join(self.out, "results.jsonl"), "a", encoding="utf-8") as f:
            f.write('{"model": "demo/stories260K-r4", "status": "o')

        r = self.sweep(*self.args)
        self.assertEqual(r.returncode, 0, self.explain())
        self.assertFalse(os.path.ismount(stale), "the stale mount was left behind")
        self.assertIn("already evaluated", r.stderr)
        runs = {}
        for rec in self.results():
            runs.setdefault(rec["model"], []).append(rec)
        self.assertEqual(sorted(runs), self.models)
        ref = refs()["sliding", 256, 128, "f32"]
        for m, recs in runs.items():
            oks = [x for x in recs if x["status"] == "ok"]
            self.assertEqual(len(oks), 1, f"{m} evaluated {len(oks)} times: {recs}")
            self.assert_ppl(oks[0], ref)
        md = read_text(os.path.join(self.out, "summary.md"))
        for m in self.models:
            self.assertIn(m, md)

    def test_sigterm_stops_cleanly(self):
        p = self.start_sweep(*self.args)
        wait_for(lambda: self.ok_count() >= 1, 120, "one finished model")
        mnt = self.mountpoint()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=60), 128 + signal.SIGTERM)
        self.assertFalse(os.path.ismount(mnt), "SIGTERM left the mount behind")
        self.assertFalse(os.path.exists(mnt), "SIGTERM left the mount point behind")
        self.assertFalse(os.path.exists(os.path.join(self.out, ".mount")))
        self.assertTrue(os.path.exists(os.path.join(self.out, "summary.md")))
        r = self.sweep(*self.args)
        self.assertEqual(r.returncode, 0, self.explain())
        oks = [x["model"] for x in self.results() if x["status"] == "ok"]
        self.assertEqual(sorted(oks), self.models)


class StuckMount(SweepCase):
    """A read the mount cannot answer (the Hub hangs) blocks hfppl uninterruptibly inside FUSE;
    SIGTERM must still end the sweep promptly, unmount, and leave no process behind."""

    def test_sigterm_while_a_read_hangs(self):
        for m in ("demo/ok", "demo/hangs"):
            self.hub.add_unique(m, m)
        self.hub.start("--fault", json.dumps({"kind": "hang", "seconds": 600,
                                              "repo": "demo/hangs", "count": -1}))
        mfile = os.path.join(self.work, "models.txt")
        with open(mfile, "w", encoding="utf-8") as f:
            f.write("demo/ok\ndemo/hangs\n")
        p = self.start_sweep("--models", mfile, *self.base_args(), "--ctx", "256", "--stride",
                             "128")
        wait_for(lambda: os.path.exists(os.path.join(self.out, "results.jsonl")), 120,
                 "the first model")
        with open(os.path.join(self.out, ".mount"), encoding="utf-8") as f:
            st = json.load(f)
        time.sleep(2)  # the second run is now stuck on the mount
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=60), 128 + signal.SIGTERM)
        self.assertLess(time.monotonic() - t0, 45)
        self.assertFalse(sweeplib.is_mounted(st["mountpoint"]), "the mount was left behind")
        self.assertFalse(os.path.exists(st["mountpoint"]), "the mount point was left behind")
        self.assertIsNotNone(st.get("daemon"))
        wait_for(lambda: not os.path.exists(f"/proc/{st['daemon']}"), 20, "hfmount to exit")
        recs = self.results()
        self.assertEqual([r["model"] for r in recs], ["demo/ok"])
        with open(os.path.join(self.work, "requests.jsonl"), encoding="utf-8") as f:
            hung = [json.loads(ln) for ln in f if '"hang"' in ln]
        self.assertTrue(hung, "the hang fault never fired: the test proves nothing")


if __name__ == "__main__":
    sweeplib.main()
