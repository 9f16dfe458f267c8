#!/usr/bin/env python3
"""A tokenizer without a pre-tokenizer (Llama-2 layout) sees the whole text as one word; the
BPE must stay O(n log n). Encode 200 kB and 2 MB built from TEXT and require the 2 MB run to
take less than 40x the 200 kB run (linear is 10x, a quadratic rescan would be 100x; the margin
absorbs a busy machine; CPU time is measured, and ctest runs it alone). Spaces
are removed from the text so that the model cannot cut it into words (tok_bpe_cut): the
merge heap itself must scale.

usage: linear_time.py TOKDRV MODEL_DIR TEXT"""
import os
import subprocess
import sys
import tempfile


def timed(drv, model, path):
    out = subprocess.run([drv, "time", model, path, "5", "cpu"], capture_output=True, text=True,
                         timeout=300)
    if out.returncode:
        sys.exit(f"FAIL: tokdrv: {out.stderr.strip()}")
    return float(out.stdout.split()[0])


def main():
    drv, model, text = sys.argv[1:4]
    base = open(text, "rb").read().replace(b" ", b"").replace(b"\n", b"")
    with tempfile.TemporaryDirectory() as d:
        paths = {}
        for size in (200_000, 2_000_000):
            data = (base * (size // len(base) + 1))[:size]
            paths[size] = os.path.join(d, f"t{size}")
            open(paths[size], "wb").write(data)
        small = timed(drv, model, paths[200_000])
        big = timed(drv, model, paths[2_000_000])
    ratio = big / max(small, 1e-6)
    print(f"200 kB: {small:.4f} s, 2 MB: {big:.4f} s, ratio {ratio:.1f}")
    if ratio > 40:
        print("FAIL: encode time grows faster than n log n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
