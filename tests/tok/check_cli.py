#!/usr/bin/env python3
"""`hfppl --tokenize DIR --text FILE [--no-special]` prints exactly the reference ids:
space-separated, one newline at the end. Whole WikiText-2 / tinyshakespeare for the main
tokenizers (from tests/tok/expected/), the bundled stories260K sample with and without
special tokens (from its refs.json).

usage: check_cli.py HFPPL EXPECTED_DIR SHARED_DATA STORIES_DIR BUNDLED_TEXT TOKENIZER..."""
import gzip
import hashlib
import json
import os
import subprocess
import sys

FILES = {"wikitext": "text/wikitext-2-raw/wiki.test.raw",
         "shakespeare": "text/tinyshakespeare/input.txt"}


def run(hfppl, args):
    p = subprocess.run([hfppl, "--tokenize"] + args, capture_output=True, timeout=600)
    return p.returncode, p.stdout.decode(), p.stderr.decode().strip()


def main():
    hfppl, expdir, data, stories, bundled, *toks = sys.argv[1:]
    bad = 0
    ref = json.load(open(os.path.join(stories, "refs.json")))["texts"]["tinystories_sample"]
    rc, out, err = run(hfppl, [stories, "--text", bundled])
    sha = hashlib.sha256(out.rstrip("\n").encode()).hexdigest()
    ok = rc == 0 and out.endswith("\n") and sha == ref["tokenizer"]["ids_sha256"]
    print(f"{'ok' if ok else 'FAIL'} stories260K: sha256 {sha[:16]} {err}")
    bad += not ok
    rc, out2, err = run(hfppl, [stories, "--text", bundled, "--no-special"])
    ok = rc == 0 and out2.split() == out.split()[1:]  # the same ids without the BOS
    print(f"{'ok' if ok else 'FAIL'} stories260K --no-special {err}")
    bad += not ok
    if not os.path.isdir(data):
        print("SKIP: ../shared/data not found")
        return 1 if bad else 77
    for t in toks:
        exp = json.load(gzip.open(os.path.join(expdir, f"{t}.json.gz"), "rt", encoding="utf-8"))
        for key, want in exp["texts"].items():
            name, a, b = key.split(":")
            path = os.path.join(data, FILES.get(name, ""))
            if name not in FILES or int(a) != 0 or int(b) != os.path.getsize(path):
                continue  # whole files only: the command line has no byte range
            rc, out, err = run(hfppl, [os.path.join(data, "tokenizers", t), "--text", path])
            ok = rc == 0 and out == want + "\n"
            print(f"{'ok' if ok else 'FAIL'} {t} {name}: {len(out.split())} ids {err}")
            bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
