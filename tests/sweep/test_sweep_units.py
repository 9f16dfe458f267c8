#!/usr/bin/env python3
"""hfsweep's own logic without a Hub or a mount: model lists and config files, the results
file under concurrent writers and after a torn write, failure classification, the budget
gate, and the reports (sorted table, well-formed SVG naming every model)."""

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweeplib import HFSWEEP, load_hfsweep, read_text  # noqa: E402

hs = load_hfsweep()


def _writer(path, n, tag):
    for i in range(n):
        hs.append_result(path, {"key": f"{tag}-{i}", "model": "o/r", "pad": "x" * 3000,
                                "status": "ok"})


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hfsweep-unit.")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
        return p


class Models(Base):
    def test_models_file(self):
        p = self.write("m.txt", "# a comment\n\nopenai-community/gpt2\n"
                                "EleutherAI/pythia-70m@step1000  # pinned\n")
        self.assertEqual(hs.read_models_file(p),
                         [{"repo": "openai-community/gpt2", "revision": None},
                          {"repo": "EleutherAI/pythia-70m", "revision": "step1000"}])

    def test_bad_line_names_file_and_line(self):
        p = self.write("m.txt", "a/b\nnot a model\n")
        with self.assertRaisesRegex(hs.UsageError, r"m\.txt:2: 'not a model' is not ORG/REPO"):
            hs.read_models_file(p)

    def test_config_overrides(self):
        p = self.write("s.toml", 'text = "t.txt"\nctx = 1024\nstride = 512\n'
                                 'models = ["a/b"]\n[[model]]\nrepo = "c/d@v1"\nctx = 2048\n'
                                 'method = "llamacpp"\n')
        cfg = hs.load_config(p)
        self.assertEqual(cfg["text"], os.path.join(self.dir, "t.txt"))
        runs = [hs.make_run(e, cfg, "0" * 64) for e in cfg["models"]]
        self.assertEqual([(r["repo"], r["revision"], r["ctx"], r["stride"]) for r in runs],
                         [("a/b", None, 1024, 512), ("c/d", "v1", 2048, 512)])
        self.assertEqual(runs[1]["method"], "llamacpp")
        self.assertEqual(runs[1]["ctx"], 2048)
        self.assertEqual(runs[0]["ctx"], 1024)
        self.assertNotEqual(runs[0]["key"], runs[1]["key"])

    def test_config_errors(self):
        p = self.write("s.toml", 'txet = "t.txt"\n')
        with self.assertRaisesRegex(hs.UsageError, "unknown key 'txet'"):
            hs.load_config(p)
        p = self.write("s.toml", '[[model]]\nrepo = "a/b"\nctxx = 3\n')
        with self.assertRaisesRegex(hs.UsageError, "model #1: unknown key"):
            hs.load_config(p)
        p = self.write("s.toml", 'ctx = [\n')
        with self.assertRaisesRegex(hs.UsageError, "s.toml"):
            hs.load_config(p)
        with self.assertRaisesRegex(hs.UsageError, "method must be one of"):
            hs.make_run({"repo": "a/b", "method": "rolling"}, {}, "x")
        with self.assertRaisesRegex(hs.UsageError, "ctx must be an integer"):
            hs.make_run({"repo": "a/b", "method": "sliding", "ctx": "1024"}, {}, "x")

    def test_key_depends_on_settings_and_text(self):
        base = {"repo": "a/b", "method": "sliding", "ctx": 1024, "stride": 512}
        k = hs.make_run(base, {}, "t1")["key"]
        self.assertEqual(k, hs.make_run(dict(base), {}, "t1")["key"])
        self.assertNotEqual(k, hs.make_run(dict(base, stride=256), {}, "t1")["key"])
        self.assertNotEqual(k, hs.make_run(base, {}, "t2")["key"])
        self.assertNotEqual(k, hs.make_run(dict(base, revision="v2"), {}, "t1")["key"])


class Results(Base):
    def test_torn_line_tolerated_and_terminated(self):
        p = os.path.join(self.dir, "results.jsonl")
        hs.append_result(p, {"key": "k1", "status": "ok"})
        with open(p, "a", encoding="utf-8") as f:
            f.write('{"key": "k2", "sta')  # killed mid-write
        self.assertEqual([r["key"] for r in hs.read_results(p)], ["k1"])
        hs.append_result(p, {"key": "k3", "status": "failed"})
        self.assertEqual([r["key"] for r in hs.read_results(p)], ["k1", "k3"])
        with open(p, encoding="utf-8") as f:
            self.assertTrue(f.read().endswith("\n"))

    def test_concurrent_writers_never_interleave(self):
        p = os.path.join(self.dir, "results.jsonl")
        procs = [multiprocessing.Process(target=_writer, args=(p, 40, t)) for t in "abcd"]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join()
        with open(p, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 160)
        self.assertEqual(len({json.loads(ln)["key"] for ln in lines}), 160)

    def test_ok_is_not_superseded(self):
        recs = [{"key": "a", "status": "failed"}, {"key": "a", "status": "ok"},
                {"key": "a", "status": "failed"}, {"key": "b", "status": "ok"},
                {"key": "b", "status": "ok", "n": 2}]
        latest = hs.latest_by_key(recs)
        self.assertEqual(latest["a"]["status"], "ok")
        self.assertEqual(latest["b"].get("n"), 2)


class Classify(unittest.TestCase):
    def test_messages(self):
        cases = {
            "hfppl: /m/a/b/config.json: Permission denied": "gated",
            "hfppl: model_type 'mamba' (MambaForCausalLM) is not supported": "unsupported",
            "hfppl: /m/a/b/model.safetensors: header length 1099511627776 exceeds the file "
            "size 1176152": "bad-weights",
            "hfppl: /m/a/b: No such file or directory": "missing",
            "hfppl: out of memory": "other",
        }
        for msg, want in cases.items():
            self.assertEqual(hs.classify(msg), want, msg)


class Budget(unittest.TestCase):
    @staticmethod
    def stats(**api):
        b = {"requests": 10, "quota": 100, "window_s": 300, "window_requests": 10,
             "remaining": 90, "429s": 0, "paused_s": 0.0, "paused_for_s": 0.0}
        b.update(api)
        return {"offline": False, "buckets": {"api": b, "cdn": dict(b, quota=0, remaining=-1)}}

    def test_gate(self):
        hold, wait, why = hs.budget_low(self.stats(remaining=3), 0.1)
        self.assertTrue(hold)
        self.assertIn("api budget 3/100", why)
        self.assertGreater(wait, 0)
        self.assertFalse(hs.budget_low(self.stats(), 0.1)[0])
        self.assertFalse(hs.budget_low(self.stats(remaining=-1), 0.1)[0])  # nothing heard yet
        # Our own count says the window's budget is nearly spent, before the server says so.
        self.assertTrue(hs.budget_low(self.stats(remaining=-1, window_requests=95), 0.1)[0])
        # The window is over (window_requests 0): the low figure heard in it is stale.
        self.assertFalse(hs.budget_low(self.stats(remaining=1, window_requests=0), 0.1)[0])
        hold, wait, why = hs.budget_low(self.stats(paused_for_s=12.5), 0.1)
        self.assertTrue(hold)
        self.assertEqual(wait, 12.5)
        self.assertIn("paused", why)
        cdn = self.stats()
        cdn["buckets"]["cdn"] = dict(cdn["buckets"]["api"], remaining=0)
        self.assertFalse(hs.budget_low(cdn, 0.1)[0])  # not a Hub bucket
        nested = {"http": self.stats(remaining=1), "cache": {}}
        self.assertTrue(hs.budget_low(nested, 0.1)[0])
        self.assertFalse(hs.budget_low(self.stats(remaining=3), 0.0)[0])  # gate disabled
        for nothing in (None, {}, {"buckets": "x"}, {"buckets": {"api": {"remaining": "a"}}}):
            self.assertFalse(hs.budget_low(nothing, 0.1)[0])


def synthetic(out):
    os.makedirs(out, exist_ok=True)
    rows = [("openai-community/gpt2", 124e6, 29.9), ("distilbert/distilgpt2", 82e6, 44.6),
            ("EleutherAI/pythia-160m", 162e6, 31.2), ("HuggingFaceTB/SmolLM-135M", 135e6, 21.7),
            ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1.1e9, 8.1), ("Qwen/Qwen2.5-0.5B", 494e6, 13.1)]
    text = os.path.join(out, "t.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("x")
    ms = os.path.join(out, "m.txt")
    with open(ms, "w", encoding="utf-8") as f:
        f.write("\n".join([r[0] for r in rows] + ["meta-llama/Llama-2-7b-hf"]) + "\n")
    sha = hs.sha256_file(text)
    for repo, n, ppl in rows:
        run = hs.make_run({"repo": repo}, {"method": "sliding", "ctx": 1024, "stride": 512}, sha)
        hs.append_result(os.path.join(out, "results.jsonl"), dict(
            run, model=repo, revision="main", commit="a" * 40, status="ok", perplexity=ppl,
            nll=1.0, tokens=1000, count=999, n_params=int(n), seconds=12.5,
            settings={"method": "sliding", "ctx": 1024, "stride": 512}, error=None))
    run = hs.make_run({"repo": "meta-llama/Llama-2-7b-hf"},
                      {"method": "sliding", "ctx": 1024, "stride": 512}, sha)
    hs.append_result(os.path.join(out, "results.jsonl"), dict(
        run, model="meta-llama/Llama-2-7b-hf", revision="main", status="failed", reason="gated",
        error="config.json: Permission denied", settings={"method": "sliding", "ctx": 1024}))
    return ms, text, [r[0] for r in rows] + ["meta-llama/Llama-2-7b-hf"]


class Report(Base):
    def test_report_from_results(self):
        out = os.path.join(self.dir, "out")
        ms, text, models = synthetic(out)
        r = subprocess.run([sys.executable, HFSWEEP, "--models", ms, "--text", text,
                            "--ctx", "1024", "--stride", "512", "--out", out, "--report"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        md = read_text(os.path.join(out, "summary.md"))
        for m in models:
            self.assertIn(m, md)
        order = [ln.split("`")[1] for ln in md.splitlines()
                 if ln.startswith("| ") and ln.split("|")[1].strip().isdigit()]
        self.assertEqual(order[0], "TinyLlama/TinyLlama-1.1B-Chat-v1.0")
        self.assertEqual(order[-1], "distilbert/distilgpt2")
        svg = read_text(os.path.join(out, "summary.svg"))
        ET.fromstring(svg)
        for m in models:
            self.assertIn(m.split("/", 1)[1][:20], svg)
        for tick in ("100M", "1B"):
            self.assertIn(f">{tick}<", svg)
        if shutil.which("rsvg-convert"):
            png = os.path.join(self.dir, "s.png")
            subprocess.run(["rsvg-convert", "-o", png, os.path.join(out, "summary.svg")],
                           check=True)

    def test_report_from_results_alone(self):
        out = os.path.join(self.dir, "out")
        _, _, models = synthetic(out)
        r = subprocess.run([sys.executable, HFSWEEP, "--out", out, "--report"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        md = read_text(os.path.join(out, "summary.md"))
        for m in models:
            self.assertIn(m, md)

    def test_ticks_and_ranges(self):
        lo, hi = hs.nice_range([260000.0], 100.0)
        self.assertLess(lo, 260000)
        self.assertGreater(hi, 260000)
        self.assertGreaterEqual(len(hs.log_ticks(lo, hi)), 3)
        self.assertEqual(hs.fmt_params(124_000_000), "124M")
        self.assertEqual(hs.fmt_params(1_100_000_000), "1.1B")


class Cli(Base):
    def run_cli(self, *args):
        return subprocess.run([sys.executable, HFSWEEP, *args], capture_output=True, text=True,
                              timeout=60, cwd=self.dir)

    def test_help(self):
        r = self.run_cli("--help")
        self.assertEqual(r.returncode, 0)
        for opt in ("--models", "--config", "--jobs", "--delay", "--only-failed", "--report",
                    "--mount"):
            self.assertIn(opt, r.stdout)

    def test_usage_errors_are_one_line(self):
        r = self.run_cli("--models", "nope.txt", "--text", "t", "--out", "o")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr.strip(), r"^hfsweep: --models nope.txt: No such file")
        r = self.run_cli("--out", "o2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--text", r.stderr)
        self.write("m.txt", "a/b\n")
        self.write("t.txt", "hello\n")
        r = self.run_cli("--models", "m.txt", "--text", "t.txt", "--out", "o3", "--hfppl",
                         "/nonexistent/hfppl", "--mount", self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertIn("hfppl not found", r.stderr)

    def write_bytes(self, name, data):
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)

    def assert_usage(self, r, pattern):
        """Exit 2 and exactly one stderr line matching `pattern`: no traceback."""
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertRegex(r.stderr.strip(), pattern)

    def test_files_not_utf8_name_file_and_line(self):
        self.write_bytes("m.txt", b"org/m\n\xff\xfe\n")
        self.write("t.txt", "hello\n")
        self.assert_usage(self.run_cli("--models", "m.txt", "--text", "t.txt", "--out", "o"),
                          r"^hfsweep: m\.txt:2: not UTF-8")
        self.write_bytes("s.toml", b'text = "t.txt"\nmodels = ["a/b"]\n# \xe9\n')
        self.assert_usage(self.run_cli("--config", "s.toml", "--out", "o"),
                          r"^hfsweep: s\.toml:3: not UTF-8")
        self.write("ok.txt", "a/b\n")
        self.write_bytes("tok", b"\xff\n")
        self.assert_usage(self.run_cli("--models", "ok.txt", "--text", "t.txt", "--out", "o",
                                       "--token-file", "tok"), r"^hfsweep: tok:1: not UTF-8")

    def test_empty_models_file_is_named(self):
        self.write("empty.txt", "# nothing yet\n\n")
        self.write("t.txt", "hello\n")
        self.assert_usage(self.run_cli("--models", "empty.txt", "--text", "t.txt", "--out", "o"),
                          r"^hfsweep: empty\.txt: no models in the file")
        self.write("s.toml", 'text = "t.txt"\n')
        self.assert_usage(self.run_cli("--config", "s.toml", "--out", "o"),
                          r"^hfsweep: s\.toml: no models")

    def test_bad_paths_are_usage_errors(self):
        self.write("m.txt", "a/b\n")
        self.write("t.txt", "hello\n")
        self.assert_usage(self.run_cli("--models", self.dir, "--text", "t.txt", "--out", "o"),
                          r"^hfsweep: --models .*: Is a directory")
        self.assert_usage(self.run_cli("--models", "m.txt", "--text", self.dir, "--out", "o"),
                          r"^hfsweep: --text .*: Is a directory")
        self.assert_usage(self.run_cli("--models", "m.txt", "--text", "t.txt", "--out", "t.txt"),
                          r"^hfsweep: --out t\.txt: exists and is not a directory")


if __name__ == "__main__":
    unittest.main(verbosity=2)
