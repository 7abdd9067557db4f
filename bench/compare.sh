#!/usr/bin/env bash
# Whole-process comparison on the generator's two captures: tcpdump's read floor, tshark, and
# tapwire dissect with one worker and with N (default: the cores), NDJSON to /dev/null.
#
#   bench/compare.sh [CAPTURE…]    default: bench/out/http.pcap and bench/out/mix.pcap
#                                  (generated when missing)
#   NO_TSHARK=1 bench/compare.sh   without tshark (it takes minutes on the HTTP capture)
#   WORKERS=N                      tapwire's N [default: nproc]
#
# The captures:
#   http.pcap  HTTP/1 only: 1.2M exchanges on ~60k long keep-alive connections, DNS lookups
#              (gen-capture OUT 1200000 3 7, ~1.7 GB)
#   mix.pcap   the eight-protocol mix: 200k short connections of ~11 packets (gen-capture --mix)
#
# One-process tools are pinned to one core (taskset -c 1); tapwire with N workers is not. Wall
# time and peak RSS come from /usr/bin/time, the fastest of RUNS runs [default: 3] (tshark:
# one); every tool reads from the page cache. Prints one
# table with the ratios the performance targets are stated in (tapwire / tcpdump, the N-worker
# speed-up, tshark / tapwire).
#
# What the profiles said (perf record -g, `tapwire dissect --workers 1` on mix.pcap, 2026-12):
# - No single hot spot: the top symbols are memmove, serde_json's string escaper, mimalloc's
#   malloc/free, the flow table's hash lookup, each 4-11%. The cost is many small owned
#   allocations per exchange, built, moved, written and freed.
# - An exchange was 2264 bytes by value (every protocol's part inline); boxing the parts made
#   it 384 and halved memmove's share (11% -> 5%).
# - JSON writing is ~16% of the time, but a hand-written writer (SWAR escaping, one pass) was
#   no faster: in a whole run its time is load misses on the cold strings of each event, and
#   on hot events serde_json's writer is as fast or faster (schemas-side criterion bench, not
#   kept). Fewer, denser strings per event is the lever, not the escaper.
# - HTTP/1 bodies: a JSON response body was copied and kept (up to 64 KiB) for the GraphQL
#   refiner even when the request could not be GraphQL; now kept only when it may be read.
# - Memory per open flow (gen-capture --open OUT 100000; dissect's peak RSS over the flows):
#   2.9 KB, of which 912 bytes were three empty request slots: a VecDeque's first push makes
#   room for four, and an HTTP/1 request is 304 bytes. The pairing queues now reserve one slot
#   first (most connections have one request in flight) and header lists their exact count:
#   1.8 KB per open flow, and 0.6 s instead of 1.3 s for the 100k-flow capture.
# - Under a SYN flood (gen-capture --syn-flood OUT N; every packet a new flow) the peak was
#   the flow table: 305-byte slots, half of them spare once max_flows (262144) needs 2^19
#   of them, plus the old table while it doubled: 338 MiB, flat from 250k SYNs on. Flows are
#   boxed now (64-byte slots): 139 MiB at 250k SYNs, 160 MiB at 3M, and mix.pcap's time did
#   not move (1.42-1.68 s against 1.47-1.58 s, alternating runs).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
cargo build --release -q -p tapwire-agent -p tapwire-bench
bin="$CARGO_TARGET_DIR/release"
workers=${WORKERS:-$(nproc)}
caps=("$@")
if [ ${#caps[@]} -eq 0 ]; then
  mkdir -p bench/out
  [ -f bench/out/http.pcap ] || "$bin/gen-capture" bench/out/http.pcap "${HTTP_EXCHANGES:-1200000}" 3 7
  [ -f bench/out/mix.pcap ] || "$bin/gen-capture" --mix bench/out/mix.pcap "${MIX_FLOWS:-200000}" 7
  caps=(bench/out/http.pcap bench/out/mix.pcap)
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
runs=${RUNS:-3}
run() { # name cmd… → "secs rss_mib", the fastest of $runs runs (the machine is shared and noisy)
  local name=$1; shift
  local best=
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$tmp/$name.time" "$@" >/dev/null 2>"$tmp/$name.err" || {
      echo "$name failed:" >&2; cat "$tmp/$name.err" >&2; exit 1; }
    read -r secs rss < "$tmp/$name.time"
    if [ -z "$best" ] || [ "$(echo "$secs < $best" | bc)" = 1 ]; then best=$secs; fi
  done
  echo "$best $((rss / 1024))"
}
ratio() { echo "$1 / $2" | bc -l | awk '{printf "%.2f", $1}'; }
printf '%-10s %8s %10s %10s %11s %12s %9s %8s %9s %11s\n' capture MiB tcpdump_s tshark_s tapwire1_s "tapwire${workers}_s" \
  'tw1/tcpd' "tw${workers}/tcpd" "speed-up" tshark/tw1
for cap in "${caps[@]}"; do
  size=$(($(stat -c %s "$cap") / 1048576))
  cat "$cap" > /dev/null
  read -r td _ < <(run tcpdump taskset -c 1 tcpdump -r "$cap" -w /dev/null)
  read -r tw1 rss1 < <(run tw1 taskset -c 1 "$bin/tapwire" dissect --workers 1 "$cap")
  read -r twn rssn < <(run twn "$bin/tapwire" dissect -q --workers "$workers" "$cap")
  ts=- ; tsr=-
  if [ -z "${NO_TSHARK:-}" ]; then
    read -r ts _ < <(runs=1 run tshark taskset -c 1 tshark -r "$cap" -T fields -e frame.number \
      -e http.request.method -e http.response.code -e dns.qry.name -e redis.string -e kafka.api_key \
      -e amqp.method.method -e http2.header.value -e grpc.message_length)
    tsr=$(ratio "$ts" "$tw1")
  fi
  printf '%-10s %8s %10s %10s %11s %12s %9s %8s %9s %11s\n' "$(basename "$cap" .pcap)" "$size" "$td" "$ts" \
    "$tw1" "$twn" "$(ratio "$tw1" "$td")" "$(ratio "$twn" "$td")" "$(ratio "$tw1" "$twn")" "$tsr"
  echo "  tapwire peak RSS: ${rss1} MiB (1 worker), ${rssn} MiB ($workers); $(grep -oE '[0-9]+ exchanges' "$tmp/tw1.err" | head -1)"
done
