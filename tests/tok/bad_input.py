#!/usr/bin/env python3
"""Bad input gets a clear error naming what is wrong and where, never a crash or a hang.
Each case writes a broken tokenizer folder (built from the bundled stories260K tokenizer) and
asserts tokdrv's exit status and message. Also checks the documented invalid-UTF-8 rule.

usage: bad_input.py TOKDRV STORIES_DIR"""
import copy
import json
import os
import subprocess
import sys
import tempfile

FAILS = []


def run(drv, args, timeout=120):
    p = subprocess.run([drv] + args, capture_output=True, timeout=timeout)
    if p.returncode < 0:
        FAILS.append(f"{args}: killed by signal {-p.returncode}")
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def expect_error(drv, tmp, name, content, *needles):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "wb") as f:
        f.write(content if isinstance(content, bytes) else json.dumps(content).encode())
    rc, _, err = run(drv, ["info", d])
    missing = [n for n in needles if n not in err]
    if rc != 1 or missing:
        FAILS.append(f"{name}: rc={rc} stderr={err.strip()!r} lacks {missing}")
    else:
        print(f"ok {name}: {err.strip()}")


def patched(base, path, value):
    j = copy.deepcopy(base)
    node = j
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return j


def broken_files(drv, tmp, stories):
    raw = open(os.path.join(stories, "tokenizer.json"), "rb").read()
    base = json.loads(raw)
    expect_error(drv, tmp, "truncated", raw[: len(raw) // 2], "tokenizer.json:", "invalid JSON")
    expect_error(drv, tmp, "empty", b"", "invalid JSON")
    expect_error(drv, tmp, "not-an-object", b"[1, 2]", "not a JSON object")
    expect_error(drv, tmp, "unknown-normalizer", patched(base, ["normalizer"], {"type": "Fancy"}),
                 "normalizer", '"Fancy"', "not supported")
    expect_error(drv, tmp, "unknown-nested-normalizer",
                 patched(base, ["normalizer", "normalizers", 1], {"type": "BertNormalizer"}),
                 "normalizer.normalizers[1]", "BertNormalizer")
    expect_error(drv, tmp, "unknown-pre-tokenizer",
                 patched(base, ["pre_tokenizer"], {"type": "Sequence", "pretokenizers": [
                     {"type": "UnicodeScripts"}]}), "pre_tokenizer.pretokenizers[0]",
                 "UnicodeScripts")
    expect_error(drv, tmp, "unknown-model", patched(base, ["model", "type"], "WordLevel"),
                 "model type", "WordLevel")
    expect_error(drv, tmp, "bad-unigram-vocab", patched(base, ["model"], {"type": "Unigram",
                 "unk_id": 0, "vocab": [["<unk>", 0.0], ["a"]]}), "model.vocab[1]",
                 "[piece, score]")
    expect_error(drv, tmp, "bad-unigram-unk", patched(base, ["model"], {"type": "Unigram",
                 "unk_id": 5, "vocab": [["<unk>", 0.0]]}), "model.unk_id")
    expect_error(drv, tmp, "bad-charsmap", patched(base, ["normalizer"], {"type": "Precompiled",
                 "precompiled_charsmap": "AAAA"}), "normalizer", "precompiled_charsmap")
    expect_error(drv, tmp, "unknown-post", patched(base, ["post_processor", "type"], "Magic"),
                 "post_processor", "Magic")
    expect_error(drv, tmp, "unknown-decoder", patched(base, ["decoder", "decoders", 2],
                 {"type": "CTC"}), "decoder.decoders[2]", "CTC")
    expect_error(drv, tmp, "missing-model", patched(base, ["model"], KeyError), '"model"')
    expect_error(drv, tmp, "missing-vocab", patched(base, ["model", "vocab"], KeyError),
                 "model.vocab")
    expect_error(drv, tmp, "bad-vocab-id", patched(base, ["model", "vocab", "<s>"], "one"),
                 'model.vocab["<s>"]')
    expect_error(drv, tmp, "merge-out-of-vocab", patched(base, ["model", "merges", 3], "zq xj"),
                 "model.merges[3]", "not in the vocab")
    expect_error(drv, tmp, "merge-not-a-pair", patched(base, ["model", "merges", 0], "abc"),
                 "model.merges[0]")
    expect_error(drv, tmp, "missing-replace-content",
                 patched(base, ["normalizer", "normalizers", 1, "content"], KeyError),
                 "normalizer.normalizers[1]", '"content"')
    expect_error(drv, tmp, "bad-regex", patched(base, ["pre_tokenizer"], {"type": "Split",
                 "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": False}),
                 "pre_tokenizer", "does not compile")
    expect_error(drv, tmp, "bad-behavior", patched(base, ["pre_tokenizer"], {"type": "Split",
                 "pattern": {"String": " "}, "behavior": "Sideways", "invert": False}),
                 "Sideways")
    expect_error(drv, tmp, "missing-special", patched(base, ["post_processor", "special_tokens"],
                 {}), "post_processor", "<s>")
    expect_error(drv, tmp, "dropout", patched(base, ["model", "dropout"], 0.1), "dropout")


def huge_merges(drv, tmp):
    # 100 MB of merges: refused by size before parsing, without reading it into memory.
    d = os.path.join(tmp, "huge")
    os.makedirs(d)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        f.write('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [')
        chunk = ",".join(['"a a"'] * 100000)
        for _ in range(200):
            f.write(chunk + ",")
        f.write('"a a"]}}')
    rc, _, err = run(drv, ["info", d])
    if rc != 1 or "MiB limit" not in err:
        FAILS.append(f"huge merges: rc={rc} {err.strip()!r}")
    else:
        print(f"ok huge merges: {err.strip()}")
    os.unlink(os.path.join(d, "tokenizer.json"))


def missing_dir(drv, tmp):
    rc, _, err = run(drv, ["info", os.path.join(tmp, "nope")])
    if rc != 1 or "nope/tokenizer.json" not in err or "No such file" not in err:
        FAILS.append(f"missing dir: rc={rc} {err.strip()!r}")
    else:
        print(f"ok missing dir: {err.strip()}")


def directory_as_file(drv, tmp):
    # jansson alone would call a directory "invalid JSON"; the cause must be named.
    d = os.path.join(tmp, "dir-as-file")
    os.makedirs(os.path.join(d, "tokenizer.json"), exist_ok=True)
    rc, _, err = run(drv, ["info", d])
    if rc != 1 or "tokenizer.json: Is a directory" not in err or "invalid JSON" in err:
        FAILS.append(f"directory as tokenizer.json: rc={rc} {err.strip()!r}")
    else:
        print(f"ok directory as tokenizer.json: {err.strip()}")


def invalid_utf8(drv, tmp, stories):
    # Each maximal invalid subsequence becomes one U+FFFD, as bytes.decode(errors="replace").
    cases = [b"a\xffb", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"ok\xc0\xafok"]
    for raw in cases:
        fixed = raw.decode("utf-8", "replace").encode("utf-8")
        a, b = os.path.join(tmp, "raw.txt"), os.path.join(tmp, "fixed.txt")
        open(a, "wb").write(raw)
        open(b, "wb").write(fixed)
        r1, o1, e1 = run(drv, ["encode", stories, a])
        r2, o2, _ = run(drv, ["encode", stories, b])
        if r1 or r2 or o1 != o2:
            FAILS.append(f"invalid utf-8 {raw!r}: {o1.strip()} vs {o2.strip()} {e1}")
        else:
            print(f"ok invalid utf-8 {raw!r} -> {o1.strip()}")


def main():
    drv, stories = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        broken_files(drv, tmp, stories)
        huge_merges(drv, tmp)
        missing_dir(drv, tmp)
        directory_as_file(drv, tmp)
        invalid_utf8(drv, tmp, stories)
    for f in FAILS:
        print("FAIL", f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
