#!/usr/bin/env python3
"""decode(encode(text)) == text, byte for byte, for the lossless tokenizers on whole texts.

usage: roundtrip.py TOKDRV SHARED_DATA TOKENIZER...
Exits 77 (skip) when SHARED_DATA is absent."""
import os
import subprocess
import sys

TEXTS = ["text/wikitext-2-raw/wiki.test.raw", "text/tinyshakespeare/input.txt",
         "text/tinystories-sample/tinystories_sample.txt"]


def main():
    drv, data, *toks = sys.argv[1:]
    if not os.path.isdir(data):
        print("SKIP: ../shared/data not found")
        return 77
    bad = 0
    for t in toks:
        for text in TEXTS:
            p = subprocess.run([drv, "roundtrip", os.path.join(data, "tokenizers", t),
                                os.path.join(data, text)], capture_output=True, text=True,
                               timeout=600)
            msg = (p.stdout + p.stderr).strip()
            print(f"{'ok' if p.returncode == 0 else 'FAIL'} {t} {os.path.basename(text)}: {msg}")
            bad += p.returncode != 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
