#!/usr/bin/env python3
"""Hostile tokenizer.json files never crash or hang the loader or the encoder: each round
replaces one random node of a real tokenizer.json with a value of another type (or deletes it),
then loads it and encodes a text with special tokens, invalid UTF-8 and long runs. The exit
status must be 0 or 1 (a clear error on stderr), never a signal. Deterministic (fixed seed).

usage: fuzz_json.py TOKDRV TOKENIZER_DIR [ROUNDS]"""
import base64
import copy
import json
import os
import random
import subprocess
import sys
import tempfile

VALUES = [None, 0, -1, 2 ** 40, 1e308, "", "x", "(", "\u2581", [], [[]], [["a", "b", "c"]],
          {}, {"type": "Sequence"}, {"type": 7}, True, ["a b", 3], {"String": 5}]
TEXT = ("<s>Hello </s> world\xff\xfe  \t\n\n" + "a" * 3000 + " ▁▁ 123 ①²").encode(
    "utf-8", "surrogateescape")


def nodes(j, path=()):
    yield path
    if isinstance(j, dict):
        for k, v in j.items():
            if k not in ("vocab", "merges") or random.random() < 0.02:
                yield from nodes(v, path + (k,))
    elif isinstance(j, list):
        for i in random.sample(range(len(j)), min(len(j), 4)):
            yield from nodes(j[i], path + (i,))


def random_charsmap(rng):
    """A precompiled_charsmap with a consistent header but random trie units and pool."""
    units = rng.randrange(1, 300)
    blob = (units * 4).to_bytes(4, "little") + bytes(rng.randrange(256) for _ in range(units * 4))
    return base64.b64encode(blob + bytes(rng.randrange(256) for _ in range(64))).decode()


def mutate(base, rng):
    j = copy.deepcopy(base)
    if rng.random() < 0.1:
        j["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": random_charsmap(rng)}
        return j, ("normalizer", "precompiled_charsmap")
    paths = [p for p in nodes(j) if p]
    p = rng.choice(paths)
    node = j
    for k in p[:-1]:
        node = node[k]
    if rng.random() < 0.2 and isinstance(node, dict):
        del node[p[-1]]
    else:
        node[p[-1]] = copy.deepcopy(rng.choice(VALUES))
    return j, p


def main():
    drv, src = sys.argv[1:3]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    random.seed(1234)
    rng = random.Random(1234)
    base = json.load(open(os.path.join(src, "tokenizer.json"), encoding="utf-8"))
    bad = 0
    errors = 0
    with tempfile.TemporaryDirectory() as d:
        text = os.path.join(d, "text")
        open(text, "wb").write(TEXT)
        for r in range(rounds):
            j, p = mutate(base, rng)
            with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(j, f)
            for cmd in (["encode", d, text], ["roundtrip", d, text]):
                try:
                    out = subprocess.run([drv] + cmd, capture_output=True, timeout=60)
                except subprocess.TimeoutExpired:
                    print(f"FAIL round {r}: {cmd[0]} hangs after mutating {p}")
                    bad += 1
                    continue
                if out.returncode not in (0, 1) or (out.returncode == 1 and not out.stderr):
                    print(f"FAIL round {r}: {cmd[0]} exit {out.returncode} after mutating {p}: "
                          f"{out.stderr[-300:]!r}")
                    bad += 1
                errors += out.returncode == 1 and cmd[0] == "encode"
    print(f"{rounds} mutated files: {errors} refused with a message, {bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
