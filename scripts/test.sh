#!/usr/bin/env bash
# Build if needed and run every unit and end-to-end test, then the unit and concurrency tests
# again under AddressSanitizer+UndefinedBehaviorSanitizer and ThreadSanitizer.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    the plain build's suite only (no sanitizer builds)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --sanitizers
jobs=$(nproc)

# The real JavaScript Hub client (@huggingface/hub), when npm can fetch it, so that the local Hub
# server is also checked against a real client; its test skips visibly without it.
if [ -z "${HF_JS_HUB_MODULES:-}" ] && command -v npm >/dev/null; then
  npmdir=build/npm-hub-client
  if [ -d "$npmdir/node_modules/@huggingface/hub" ] ||
     timeout 120 npm install --silent --no-audit --no-fund --prefix "$npmdir" @huggingface/hub@2.17.5 \
       >/dev/null 2>&1; then
    export HF_JS_HUB_MODULES="$PWD/$npmdir/node_modules"
  else
    echo "note: npm could not install @huggingface/hub; its client test will be skipped"
  fi
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure --no-tests=error -j "$jobs"

if [ "${1:-}" != "--quick" ]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
        -DHF_SANITIZE=address,undefined >/dev/null
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure --no-tests=error \
        -j "$jobs" -L unit
  echo "== concurrency tests under ThreadSanitizer"
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
        -DHF_SANITIZE=thread >/dev/null
  cmake --build build-tsan -j "$jobs"
  ctest --test-dir build-tsan --output-on-failure --no-tests=ignore -j "$jobs" -L tsan
fi
