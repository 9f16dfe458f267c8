#!/usr/bin/env bash
# run-demo.sh BINDIR — the demo's steps with already-built programs (the e2e test runs this too):
# start the local Hub server serving the sample model, mount it with hfmount on a temporary mount
# point, run hfppl on the mounted model and the bundled text, print the perplexity and compare it
# with the reference. The mount and the server are always torn down, also on failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bindir=$(cd "${1:-$root/build/bin}" && pwd)
cd "$root"

work=$(mktemp -d /tmp/hfmount-demo.XXXXXX)
hub_pid=""
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then fusermount3 -u "$work/mnt" || fusermount3 -uz "$work/mnt"; fi
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null && wait "$hub_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The Hub's repos: one folder per repo (ORG/REPO), its files the tip of branch main.
mkdir -p "$work/repos/demo/stories260K" "$work/mnt" "$work/cache"
cp tests/data/stories260K-hf/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json} \
   "$work/repos/demo/stories260K/"

python3 scripts/hubserver.py --root "$work/repos" --port 0 --port-file "$work/port" \
        --log "$work/requests.jsonl" 2>"$work/hub.log" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "demo: the local Hub server did not start:"; cat "$work/hub.log"; exit 1; }
export HF_ENDPOINT="http://127.0.0.1:$(cat "$work/port")"
echo "local Hub at $HF_ENDPOINT serving demo/stories260K"

"$bindir/hfmount" --cache-dir "$work/cache" "$work/mnt"
echo "mounted on $work/mnt:"
ls -l "$work/mnt/demo/stories260K"

text=tests/data/text/tinystories_sample.txt
echo
echo "hfppl $work/mnt/demo/stories260K --text $text --ctx 256 --stride 128"
"$bindir/hfppl" "$work/mnt/demo/stories260K" --text "$text" --ctx 256 --stride 128 \
      --json "$work/result.json"
python3 - "$work/result.json" tests/data/stories260K-hf/refs.json <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))
refs = json.load(open(sys.argv[2]))
ref = refs["texts"]["tinystories_sample"]["hf_sliding"]["L256_S128"]["ppl"]
rel = abs(got["perplexity"] - ref) / ref
print(f"\nreference perplexity {ref:.6f} (REFERENCE.md, HF sliding window L=256 S=128); "
      f"relative difference {rel:.1e}: {'OK' if rel <= 1e-5 else 'MISMATCH'}")
sys.exit(0 if rel <= 1e-5 else 1)
PY
