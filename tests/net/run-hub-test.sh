#!/usr/bin/env bash
# Start the local Hub server on a temporary repo tree, run one test binary against it, and
# always stop the server.  Usage: run-hub-test.sh HUBSERVER TEST_BINARY [ARGS...]
# The binary gets: HUB_URL ROOT_DIR [ARGS...]; the server's own flags come from $HUB_FLAGS.
set -euo pipefail
hubserver=$1
bin=$2
shift 2
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir -p "$tmp/root/org/repo" "$tmp/root/org/other"
printf '{"model_type":"llama","hidden_size":64}\n' >"$tmp/root/org/repo/config.json"
head -c 3145728 /dev/urandom >"$tmp/root/org/repo/big.bin" # LFS: served by the CDN
head -c 200000 /dev/urandom >"$tmp/root/org/repo/small.bin"
printf 'hello\n' >"$tmp/root/org/other/README.md"
# shellcheck disable=SC2086
python3 "$hubserver" --root "$tmp/root" --port 0 --port-file "$tmp/port" --cdn-port 0 \
  --lfs-threshold 1048576 ${HUB_FLAGS:-} 2>"$tmp/server.err" &
pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
if [ ! -s "$tmp/port" ]; then
  echo "hub server did not start:" >&2
  cat "$tmp/server.err" >&2
  exit 1
fi
rc=0
"$bin" "http://127.0.0.1:$(cat "$tmp/port")" "$tmp/root" "$@" || rc=$?
if [ "$rc" -ne 0 ]; then tail -n 20 "$tmp/server.err" >&2; fi
exit "$rc"
