#!/usr/bin/env bash
# Whole-process comparison: tapwire dissect vs tshark vs tcpdump's read floor on one large
# generated capture (>= 1 GB, >= 1M HTTP/1 exchanges plus DNS lookups).
#
#   bench/compare.sh [CAPTURE]     default: bench/out/bench.pcap (generated if missing)
#
# Each tool runs once, pinned to one core (taskset -c 1), output to /dev/null; wall time and
# peak RSS come from /usr/bin/time. Prints the ratios the issue's targets are stated in.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
cap=${1:-bench/out/bench.pcap}
cargo build --release -q -p tapwire-agent -p tapwire-bench
bin="$CARGO_TARGET_DIR/release"
if [ ! -f "$cap" ]; then
  mkdir -p "$(dirname "$cap")"
  "$bin/gen-capture" "$cap" "${HTTP_EXCHANGES:-1200000}" 3 7
fi
size=$(stat -c %s "$cap")
cat "$cap" > /dev/null  # warm the page cache so every tool reads from memory
run() { # name cmd...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "/tmp/tw-bench-$name" taskset -c 1 "$@" >/dev/null 2>/tmp/tw-bench-$name.err || {
    echo "$name failed:"; cat "/tmp/tw-bench-$name.err"; exit 1; }
  read -r secs rss < "/tmp/tw-bench-$name"
  printf '%-10s %8.2f s  %8.1f MB/s  peak RSS %6d MiB\n' "$name" "$secs" \
    "$(echo "$size / $secs / 1048576" | bc -l)" $((rss / 1024))
  eval "t_$name=$secs"
}
echo "capture: $cap ($((size / 1048576)) MiB)"
run tcpdump tcpdump -r "$cap" -w /dev/null
run tapwire "$bin/tapwire" dissect "$cap"
grep -E "exchanges" /tmp/tw-bench-tapwire.err | head -1
exchanges=$(grep -oE '[0-9]+ exchanges' /tmp/tw-bench-tapwire.err | head -1 | cut -d' ' -f1)
run tshark tshark -r "$cap" -Y 'http || dns' -T fields -e http.request.method -e http.request.uri \
  -e http.response.code -e dns.qry.name -e dns.flags.rcode
echo "tapwire: $(echo "$exchanges / $t_tapwire" | bc) exchanges/s on one core"
echo "tshark / tapwire time: $(echo "$t_tshark / $t_tapwire" | bc -l | cut -c1-6)x"
echo "tapwire / tcpdump read floor: $(echo "$t_tapwire / $t_tcpdump" | bc -l | cut -c1-6)x"
