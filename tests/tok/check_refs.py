#!/usr/bin/env python3
"""Compare the tokenizer's ids with the reference ids of a refs.json (n_ids, first 32, last 8,
sha256 of the ids written as decimal numbers separated by single spaces).

usage: check_refs.py TOKDRV MODEL_DIR REFS_JSON TEXT_ROOT [--only NAME...]
TEXT_ROOT is the directory the refs' "source" paths are relative to; exits 77 (skip) when it
is absent."""
import hashlib
import json
import os
import subprocess
import sys


def main():
    drv, model, refs_path, root = sys.argv[1:5]
    only = sys.argv[sys.argv.index("--only") + 1:] if "--only" in sys.argv else None
    if not os.path.isdir(root):
        print("SKIP: ../shared/data not found")
        return 77
    refs = json.load(open(refs_path))
    failures = 0
    for name, t in refs["texts"].items():
        if only and name not in only:
            continue
        src = os.path.join(root, t["source"])
        if not os.path.exists(src):
            src = os.path.join(root, "text", os.path.basename(t["source"]))
        a, b = t["byte_range"]
        out = subprocess.run([drv, "encode", model, src, "--bytes", f"{a}:{b}"],
                             capture_output=True, text=True, timeout=300)
        if out.returncode:
            print(f"FAIL {name}: tokdrv failed: {out.stderr.strip()}")
            failures += 1
            continue
        line = out.stdout.strip()
        ids = [int(x) for x in line.split()]
        ref = t["tokenizer"]
        got = (len(ids), ids[:32], ids[-8:], hashlib.sha256(line.encode()).hexdigest())
        want = (ref["n_ids"], ref["first_32_ids"], ref["last_8_ids"], ref["ids_sha256"])
        if got != want:
            print(f"FAIL {name}: got n={got[0]} first={got[1][:8]}.. last={got[2]} "
                  f"sha={got[3][:16]}; want n={want[0]} first={want[1][:8]}.. last={want[2]} "
                  f"sha={want[3][:16]}")
            failures += 1
        else:
            print(f"ok {name}: {len(ids)} ids, sha256 {got[3][:16]}...")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
