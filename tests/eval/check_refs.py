#!/usr/bin/env python3
"""Run hfppl on a model directory for every text and method in its refs.json and compare the
perplexity, total NLL and scored-token count with the reference (1e-5 relative), and the
--tokenize ids with the reference ids (count, first ids, sha256 where given).

    check_refs.py HFPPL MODEL_DIR [--refs REFS.json] [--impl NAME] [--texts DIR] [--no-mmap]
                  [--max-bytes N]

The texts are looked up under --texts by their path in refs.json (without a leading
"shared/data/"), then by file name. A missing model directory skips the test (exit 77)."""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

TOL = 1e-5


def find_text(texts_dir, source):
    rel = source[len("shared/data/"):] if source.startswith("shared/data/") else source
    for cand in (os.path.join(texts_dir, rel), os.path.join(texts_dir, os.path.basename(rel))):
        if os.path.isfile(cand):
            return cand
    return None


def settings(text_refs):
    """(label, hfppl args, reference dict) for each method in one text's refs."""
    out = []
    for key, val in text_refs.items():
        if not isinstance(val, dict):
            continue
        if key == "llamacpp_chunk":  # stories260K layout: {ctx_128: {...}, ...}
            for sub, ref in val.items():
                if sub.startswith("ctx_"):
                    out.append((f"llamacpp ctx {sub[4:]}", ["--method", "llamacpp", "--ctx", sub[4:]], ref))
        elif key == "hf_sliding":  # {L256_S128: {...}}
            for sub, ref in val.items():
                if sub.startswith("L") and "_S" in sub:
                    L, S = sub[1:].split("_S")
                    out.append((f"sliding {L}/{S}", ["--ctx", L, "--stride", S], ref))
        elif key.startswith("llamacpp_chunks_ctx"):  # tiny-* layout
            out.append((f"llamacpp ctx {val['n_ctx']}",
                        ["--method", "llamacpp", "--ctx", str(val["n_ctx"])], val))
        elif key.startswith("hf_sliding_"):
            out.append((f"sliding {val['max_length']}/{val['stride']}",
                        ["--ctx", str(val["max_length"]), "--stride", str(val["stride"])], val))
    return out


def ref_values(ref, impl):
    if impl:
        ref = ref["impl"][impl]
    return ref["ppl"], ref.get("nll", ref.get("nll_sum")), ref["count"]


def check_ids(hfppl, model, path, t):
    tok = t.get("tokenizer") or {}
    n_ref = tok.get("n_ids", t.get("n_tokens"))
    first = tok.get("first_32_ids", t.get("first_32_ids"))
    sha = tok.get("ids_sha256")
    p = subprocess.run([hfppl, "--tokenize", model, "--text", path], capture_output=True,
                       text=True, timeout=300)
    if p.returncode != 0:
        return f"--tokenize failed: {p.stderr.strip()}"
    ids = p.stdout.split()
    if n_ref is not None and len(ids) != n_ref:
        return f"--tokenize gave {len(ids)} ids, reference {n_ref}"
    if first and [int(x) for x in ids[:len(first)]] != first:
        return f"--tokenize first ids {ids[:8]} differ from the reference {first[:8]}"
    if sha and hashlib.sha256(" ".join(ids).encode()).hexdigest() != sha:
        return "--tokenize ids sha256 differs from the reference"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hfppl")
    ap.add_argument("model")
    ap.add_argument("--refs")
    ap.add_argument("--impl")
    ap.add_argument("--texts", required=True)
    ap.add_argument("--no-mmap", action="store_true")
    ap.add_argument("--max-bytes", type=int, help="check only texts up to this many bytes")
    a = ap.parse_args()
    refs_path = a.refs or os.path.join(a.model, "refs.json")
    if not os.path.isdir(a.model) or not os.path.isfile(refs_path):
        print("SKIP: ../shared/data not found" if "shared" in a.model else
              f"SKIP: {a.model} or {refs_path} not found")
        return 77
    refs = json.load(open(refs_path))
    failures, checked = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, t in refs["texts"].items():
            src = find_text(a.texts, t["source"])
            if not src:
                print(f"skip text {name}: {t['source']} not under {a.texts}")
                continue
            lo, hi = t["byte_range"]
            if a.max_bytes and hi - lo > a.max_bytes:
                print(f"skip text {name}: {hi - lo} bytes (--max-bytes {a.max_bytes})")
                continue
            data = open(src, "rb").read()[lo:hi]
            path = os.path.join(tmp, "text.txt")
            open(path, "wb").write(data)
            if not a.impl:
                err = check_ids(a.hfppl, a.model, path, t)
                print(f"{name}: --tokenize {'OK' if not err else err}")
                if err:
                    failures.append(f"{name}: {err}")
            for label, args, ref in settings(t):
                try:
                    ppl_ref, nll_ref, count_ref = ref_values(ref, a.impl)
                except KeyError:
                    continue
                out = os.path.join(tmp, "out.json")
                cmd = [a.hfppl, a.model, "--text", path, "--json", out, "--quiet"] + args
                if a.no_mmap:
                    cmd.append("--no-mmap")
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if p.returncode != 0:
                    failures.append(f"{name} {label}: hfppl failed: {p.stderr.strip()}")
                    continue
                got = json.load(open(out))
                rel_p = abs(got["perplexity"] - ppl_ref) / ppl_ref
                rel_n = abs(got["nll"] - nll_ref) / abs(nll_ref)
                ok = rel_p <= TOL and rel_n <= TOL and got["count"] == count_ref
                checked += 1
                print(f"{name} {label}: ppl {got['perplexity']:.6f} ref {ppl_ref:.6f} "
                      f"rel {rel_p:.1e}, nll rel {rel_n:.1e}, count {got['count']}/{count_ref} "
                      f"{'OK' if ok else 'MISMATCH'}")
                if not ok:
                    failures.append(f"{name} {label}")
    if checked == 0:
        print("no reference setting could be checked")
        return 1
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
