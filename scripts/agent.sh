#!/usr/bin/env bash
# The README's main command: install what building the agent needs (idempotent: a C toolchain,
# libpcap's headers for capture filters in tcpdump syntax, zlib and OpenSSL headers for the
# librdkafka the Kafka sink builds from source, clang and libelf for the TLS plaintext source's
# eBPF program), build it, and run
# `tapwire run` on this host with the built-in defaults (or the arguments given). Needs root
# to capture (CAP_NET_RAW); uses sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
pkgs=(build-essential pkg-config libpcap-dev zlib1g-dev libssl-dev clang libelf-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "agent: installing ${missing[*]}"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
cargo build --release -q -p tapwire-agent
exec $sudo_ "$CARGO_TARGET_DIR/release/tapwire" run "$@"
