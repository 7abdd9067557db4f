#!/usr/bin/env bash
# Install what the tests need (idempotent), build once, lint, and run every test.
# This is the README's test command; .ci/run calls it. Ends with the test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(tshark tcpdump dnsmasq-base nginx-light redis-server bind9-dnsutils curl iproute2 ethtool
      build-essential pkg-config libpcap-dev zlib1g-dev libssl-dev prometheus openssl
      python3-venv clang libelf-dev golang-go iptables postgresql
      mariadb-server mariadb-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-all: installing ${missing[*]}"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo_ debconf-set-selections
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
# One build per run: incremental caches only grow the target folder (tens of GB over many runs).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The Kafka-protocol broker the sink tests produce to: tansu from crates.io, built once into
# a cache outside the checkout (about 20 minutes the first time, then reused).
TANSU_VERSION=0.6.0
tools="${TAPWIRE_TOOLS:-$HOME/.cache/tapwire-tools}"
if ! "$tools/bin/tansu" --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
  echo "test-all: building the tansu broker $TANSU_VERSION into $tools (once)"
  CARGO_TARGET_DIR="$tools/target" cargo install tansu --version "$TANSU_VERSION" --locked \
    --features dynostore --root "$tools" --quiet
  rm -rf "$tools/target"
fi
export TAPWIRE_TANSU="$tools/bin/tansu"

# Helm's engine (helm-python-sdk bundles Helm's Go library: no helm binary) and
# kubernetes-validate, for the chart test, in a venv next to it.
export TAPWIRE_VENV="$tools/venv"
# The `websockets` package, for the live WebSocket test's server and client, in it too.
if ! "$TAPWIRE_VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, websockets' 2>/dev/null; then
  echo "test-all: installing helm-python-sdk, kubernetes-validate and websockets into $TAPWIRE_VENV"
  python3 -m venv "$TAPWIRE_VENV"
  "$TAPWIRE_VENV/bin/pip" install -q 'helm-python-sdk==0.2.2' 'kubernetes-validate==1.37.0' pyyaml \
    'websockets==17.4'
fi
export CARGO_TERM_COLOR=never
if [ ! -d ../shared/corpus ]; then
  echo "test-all: SKIP: ../shared/corpus is absent: the corpus golden, peer and robustness checks"
  echo "test-all: SKIP: pass without checking (each says so in its captured output)"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets are a workspace of their own (cargo fuzz builds them): they must still compile.
cargo check --manifest-path fuzz/Cargo.toml --bins --locked --quiet
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
