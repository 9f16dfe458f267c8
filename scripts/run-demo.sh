#!/usr/bin/env bash
# run-demo.sh BINDIR [OUTDIR] — the demo's steps with already-built programs (the e2e test runs
# this too):
#   1. start the local Hub server serving two models (stories260K in F32 and in BF16);
#   2. mount it with hfmount on a temporary mount point and list a repo;
#   3. hfppl on the mounted F32 model and the bundled text: the perplexity;
#   4. hfsweep over both models through the same mount: OUTDIR/results.jsonl, summary.md,
#      summary.svg (default OUTDIR: out/demo in the repository);
#   5. every perplexity compared with the float64 reference (1e-5 relative).
# The mount and the server are always torn down, also on failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=$(cd "${1:-$root/build/bin}" && pwd)
outdir=${2:-$root/out/demo}
cd "$root"

work=$(mktemp -d /tmp/hfmount-demo.XXXXXX)
hub_pid=""
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then
    fusermount3 -u "$work/mnt" 2>/dev/null || fusermount3 -uz "$work/mnt"
  fi
  if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null; wait "$hub_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The Hub's repos: one folder per repo (ORG/REPO), its files the tip of branch main.
files=(config.json model.safetensors tokenizer.json tokenizer_config.json)
mkdir -p "$work/repos/demo/stories260K" "$work/repos/demo/stories260K-bf16" "$work/mnt" "$work/cache"
for f in "${files[@]}"; do
  cp "tests/data/stories260K-hf/$f" "$work/repos/demo/stories260K/"
  cp "tests/data/stories260K-hf-bf16/$f" "$work/repos/demo/stories260K-bf16/"
done

python3 scripts/hubserver.py --root "$work/repos" --port 0 --port-file "$work/port" \
        --log "$work/requests.jsonl" 2>"$work/hub.log" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "demo: the local Hub server did not start:"; cat "$work/hub.log"; exit 1; }
export HF_ENDPOINT="http://127.0.0.1:$(cat "$work/port")"
echo "== local Hub at $HF_ENDPOINT serving demo/stories260K and demo/stories260K-bf16"

"$bindir/hfmount" --cache-dir "$work/cache" "$work/mnt"
echo "== mounted on $work/mnt"
echo "\$ ls -l $work/mnt/demo/stories260K"
ls -l "$work/mnt/demo/stories260K"

text=tests/data/text/tinystories_sample.txt
echo
echo "== \$ hfppl $work/mnt/demo/stories260K --text $text --ctx 256 --stride 128"
"$bindir/hfppl" "$work/mnt/demo/stories260K" --text "$text" --ctx 256 --stride 128 \
      --json "$work/result.json"

echo
echo "== \$ hfsweep --mount $work/mnt --models MODELS --text $text --ctx 256 --stride 128 --out $outdir"
printf 'demo/stories260K\ndemo/stories260K-bf16\n' > "$work/models.txt"
rm -rf "$outdir"
mkdir -p "$outdir"
scripts/hfsweep --mount "$work/mnt" --hfppl "$bindir/hfppl" --models "$work/models.txt" \
        --text "$text" --ctx 256 --stride 128 --out "$outdir"
echo
cat "$outdir/summary.md"

echo
python3 - "$work/result.json" "$outdir/results.jsonl" tests/data/stories260K-hf/refs.json <<'PY'
import json, sys
refs = json.load(open(sys.argv[3]))["texts"]["tinystories_sample"]["hf_sliding"]["L256_S128"]
want = {"demo/stories260K": refs["ppl"],
        "demo/stories260K-bf16": refs["impl"]["numpy_f64_bf16_safetensors"]["ppl"]}
got = {"hfppl demo/stories260K": (json.load(open(sys.argv[1]))["perplexity"], want["demo/stories260K"])}
for line in open(sys.argv[2]):
    r = json.loads(line)
    if r.get("status") == "ok":
        got["hfsweep " + r["model"]] = (r["perplexity"], want[r["model"]])
ok = len(got) == 3
for name, (ppl, ref) in got.items():
    rel = abs(ppl - ref) / ref
    ok &= rel <= 1e-5
    print(f"{name:30s} perplexity {ppl:.6f}  reference {ref:.6f}  relative difference {rel:.1e}"
          f"  {'OK' if rel <= 1e-5 else 'MISMATCH'}")
print("references: tests/data/stories260K-hf/REFERENCE.md (HF sliding window, L=256, S=128)")
sys.exit(0 if ok else 1)
PY
echo "sweep results, table and plot: $outdir/{results.jsonl,summary.md,summary.svg}"
