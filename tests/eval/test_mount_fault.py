#!/usr/bin/env python3
"""hfppl through hfmount when the weights cannot be fetched: the local Hub server answers the
first request for model.safetensors (the block with the header) and refuses every later one, so
the header validates, the file is mapped, and a page of the weights then cannot be read. hfppl
must exit non-zero with one line naming the file on the mount and the offset (the SIGBUS
report), within the test's time limit. The mount and the server are always torn down.

    test_mount_fault.py HFPPL HFMOUNT HUBSERVER TESTDATA"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HFPPL, HFMOUNT, HUB, DATA = sys.argv[1:5]
SAMPLE = os.path.join(DATA, "stories260K-hf")


def write_model(d):
    """A small llama (4096-row vocabulary: 8 MiB of weights, many 64 KiB blocks) with the
    sample's tokenizer."""
    V, D, F = 4096, 256, 64
    rnd = random.Random(5)
    shapes = {"model.embed_tokens.weight": (V, D), "lm_head.weight": (V, D),
              "model.norm.weight": (D,)}
    p = "model.layers.0."
    shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                   p + "self_attn.q_proj.weight": (D, D), p + "self_attn.k_proj.weight": (D, D),
                   p + "self_attn.v_proj.weight": (D, D), p + "self_attn.o_proj.weight": (D, D),
                   p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                   p + "mlp.down_proj.weight": (D, F)})
    header, blobs, off = {}, [], 0
    for name in sorted(shapes):
        n = 1
        for s in shapes[name]:
            n *= s
        raw = struct.pack(f"<{n}f", *(rnd.gauss(0, 0.05) for _ in range(n)))
        header[name] = {"dtype": "F32", "shape": list(shapes[name]), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    json.dump({"model_type": "llama", "hidden_size": D, "intermediate_size": F,
               "num_hidden_layers": 1, "num_attention_heads": 4, "rms_norm_eps": 1e-5,
               "vocab_size": V, "max_position_embeddings": 512}, open(os.path.join(d, "config.json"), "w"))
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(SAMPLE, f), d)


def main():
    work = tempfile.mkdtemp(prefix="hfppl-fault-")
    repo, mnt, cache = (os.path.join(work, x) for x in ("repos/t/m", "mnt", "cache"))
    for d in (repo, mnt, cache):
        os.makedirs(d)
    write_model(repo)
    fault = {"kind": "status", "status": [404], "file": "model.safetensors", "skip": 2, "count": -1}
    port = os.path.join(work, "port")
    hub = subprocess.Popen([sys.executable, HUB, "--root", os.path.join(work, "repos"), "--port", "0",
                            "--port-file", port, "--lfs-threshold", "0",
                            "--fault", json.dumps(fault)], stderr=subprocess.DEVNULL)
    ok = False
    try:
        for _ in range(200):
            if os.path.exists(port) and open(port).read().strip():
                break
            time.sleep(0.05)
        endpoint = "http://127.0.0.1:" + open(port).read().strip()
        subprocess.run([HFMOUNT, "--endpoint", endpoint, "--cache-dir", cache, "--block-size", "64K",
                        "--readahead", "0", "--max-wait", "5", mnt], check=True, timeout=60)
        model = os.path.join(mnt, "t", "m")
        p = subprocess.run([HFPPL, model, "--text", os.path.join(DATA, "text", "tinystories_sample.txt"),
                            "--ctx", "128", "--quiet"], capture_output=True, text=True, timeout=240)
        lines = p.stderr.strip().splitlines()
        print(f"hfppl exit status {p.returncode}; stderr: {p.stderr.strip()!r}")
        want = os.path.join(model, "model.safetensors")
        ok = (p.returncode == 1 and len(lines) == 1 and want in lines[0] and " at offset " in lines[0]
              and "could not be read" in lines[0]) or \
             (p.returncode == 1 and len(lines) == 1 and want in lines[0] and "read error" in lines[0])
    finally:
        if subprocess.run(["mountpoint", "-q", mnt]).returncode == 0:
            if subprocess.run(["fusermount3", "-u", mnt]).returncode != 0:
                subprocess.run(["fusermount3", "-uz", mnt])
        hub.terminate()
        hub.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    print("OK" if ok else "FAIL: expected one line naming the file and the offset")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
