#!/usr/bin/env python3
"""Compare the tokenizer with the expected ids stored in tests/tok/expected/ (produced once by
the reference library, see docs/TOKENIZER.md): every vector case, edge case and invalid-UTF-8
case, and whole texts / byte slices of ../shared/data/text/.

usage: check_expected.py TOKDRV EXPECTED.json.gz SHARED_DATA VARIANTS_JSON
Exits 77 (skip) when SHARED_DATA is absent."""
import gzip
import json
import os
import subprocess
import sys
import tempfile


def tokenizer_dir(exp, data, variants, tmp):
    base = os.path.join(data, "tokenizers", exp["tokenizer"])
    if "variant" not in exp:
        return base
    v = next(v for v in json.load(open(variants))["variants"] if v["name"] == exp["variant"])
    j = json.load(open(os.path.join(base, "tokenizer.json"), encoding="utf-8"))
    j.update(v.get("set", {}))
    j["model"].update(v.get("set_model", {}))
    json.dump(j, open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8"))
    return tmp


def case_bytes(c):
    return bytes.fromhex(c["hex"]) if "hex" in c else c["text"].encode("utf-8")


def check_cases(drv, tdir, cases, tmp):
    path = os.path.join(tmp, "batch.txt")
    with open(path, "w") as f:
        for c in cases:
            f.write(f"{int(c['special'])} {case_bytes(c).hex()}\n")
    out = subprocess.run([drv, "batch", tdir, path], capture_output=True, text=True, timeout=600)
    if out.returncode:
        print(f"FAIL: tokdrv batch: {out.stderr.strip()}")
        return len(cases)
    lines = out.stdout.split("\n")
    bad = 0
    for c, line in zip(cases, lines):
        got = [int(x) for x in line.split()]
        if got != c["ids"]:
            bad += 1
            if bad <= 10:
                what = c.get("text", c.get("hex"))
                print(f"FAIL {c['src']} special={c['special']} text={what!r:.80}\n"
                      f"  got  {got[:24]}\n  want {c['ids'][:24]}")
    return bad + check_decode(drv, tdir, cases, tmp)


def check_decode(drv, tdir, cases, tmp):
    """tok_decode(ids) against the library's decode(ids, skip_special_tokens=False)."""
    path = os.path.join(tmp, "ids.txt")
    with open(path, "w") as f:
        for c in cases:
            f.write(" ".join(map(str, c["ids"])) + "\n")
    out = subprocess.run([drv, "unbatch", tdir, path], capture_output=True, text=True,
                         timeout=600)
    if out.returncode:
        print(f"FAIL: tokdrv unbatch: {out.stderr.strip()}")
        return len(cases)
    bad = 0
    for c, line in zip(cases, out.stdout.split("\n")):
        got = bytes.fromhex(line.strip()).decode("utf-8", "replace")
        if got != c["decoded"]:
            bad += 1
            if bad <= 10:
                print(f"FAIL decode {c['src']} special={c['special']}\n  got  {got!r:.120}\n"
                      f"  want {c['decoded']!r:.120}")
    print(f"{'ok' if not bad else 'FAIL'} {len(cases) - bad}/{len(cases)} decodes")
    return bad


def check_info(drv, tdir, info):
    """Vocabulary size (with added tokens) and the BOS id the template adds."""
    out = subprocess.run([drv, "info", tdir], capture_output=True, text=True, timeout=120)
    f = out.stdout.split()
    got = (int(f[1]), int(f[3])) if out.returncode == 0 and len(f) >= 4 else None
    want = (info["vocab_size"], info["before"][0] if info["before"] else -1)
    if got != want:
        print(f"FAIL info: got (vocab, bos) {got} {out.stderr.strip()}, want {want}")
        return 1
    print(f"ok info: vocab {got[0]}, bos {got[1]}")
    return 0


def check_texts(drv, tdir, texts, data):
    files = {"wikitext": "text/wikitext-2-raw/wiki.test.raw",
             "shakespeare": "text/tinyshakespeare/input.txt",
             "tinystories": "text/tinystories-sample/tinystories_sample.txt"}
    bad = 0
    for key, want in texts.items():
        name, a, b = key.split(":")
        out = subprocess.run([drv, "encode", tdir, os.path.join(data, files[name]), "--bytes",
                              f"{a}:{b}"], capture_output=True, text=True, timeout=600)
        got = out.stdout.split()
        want = want.split()
        if out.returncode or got != want:
            bad += 1
            i = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y),
                     min(len(got), len(want)))
            print(f"FAIL text {key}: {out.stderr.strip()} {len(got)} ids vs {len(want)}, "
                  f"first difference at id {i}: got {got[i:i + 8]} want {want[i:i + 8]}")
        else:
            print(f"ok text {key}: {len(got)} ids")
    return bad


def main():
    drv, exp_path, data, variants = sys.argv[1:5]
    if not os.path.isdir(data):
        print("SKIP: ../shared/data not found")
        return 77
    exp = json.load(gzip.open(exp_path, "rt", encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        tdir = tokenizer_dir(exp, data, variants, tmp)
        bad = check_cases(drv, tdir, exp["cases"], tmp)
        print(f"{'ok' if not bad else 'FAIL'} {len(exp['cases']) - bad}/{len(exp['cases'])} "
              f"cases of {os.path.basename(exp_path)}")
        bad += check_info(drv, tdir, exp["info"])
        bad += check_texts(drv, tdir, exp["texts"], data)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
