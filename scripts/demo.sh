#!/usr/bin/env bash
# The main job on the bundled sample, end to end, on a fresh Debian machine:
#   install missing packages → build → scripts/run-demo.sh (local Hub server → hfmount → hfppl →
#   perplexity checked against the reference).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec scripts/run-demo.sh build/bin
