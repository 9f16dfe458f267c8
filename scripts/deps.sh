#!/usr/bin/env bash
# Install the Debian packages hfmount and hfppl need to build, test and run the demo,
# only those that are missing. Needs root (or sudo) when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev libssl-dev libxxhash-dev
      libjansson-dev libpcre2-dev libutf8proc-dev python3 curl ca-certificates nginx)
if [ "${1:-}" = "--bench" ]; then pkgs+=(nginx libopenblas-dev httpdirfs rclone hyperfine python3-torch); fi
if [ "${1:-}" = "--sanitizers" ] || [ "${1:-}" = "--bench" ]; then pkgs+=(clang libclang-rt-14-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
