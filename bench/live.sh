#!/usr/bin/env bash
# Live capture benchmark: replay a capture at full speed onto a veth pair (tcpreplay
# --topspeed, Debian) while `tapwire run` captures on the far end, spooling, with one
# subscriber (`tapwire watch` to /dev/null, so every packet is also dissected); then the same
# replay captured by `tcpdump -w` as the baseline. Reports packets captured, kernel drops,
# packets/s, CPU seconds and peak RSS of each.
#
#   bench/live.sh [CAPTURE] [LOOPS] [WORKERS]   default: bench/out/mix.pcap (the eight-protocol
#                                               mix, generated when missing), 1, 1
#   NO_SUBSCRIBER=1 bench/live.sh …              capture and spool only (no dissection)
#
# Needs root, iproute2, tcpreplay, tcpdump. The veth's far end lives in its own network
# namespace; everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
cap=$(realpath -m "${1:-bench/out/mix.pcap}")
loops=${2:-1}
workers=${3:-1}
cargo build --release -q -p tapwire-agent -p tapwire-bench
bin="$CARGO_TARGET_DIR/release"
if [ ! -f "$cap" ]; then
  mkdir -p "$(dirname "$cap")"
  "$bin/gen-capture" --mix "$cap" "${MIX_FLOWS:-200000}" 7
fi
ns=twb-$$; work=$(mktemp -d); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip link del twb-a$$ 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip link add twb-a$$ type veth peer name twb-b$$
ip link set twb-b$$ netns "$ns"
ip link set twb-a$$ mtu 9000 up
ip -n "$ns" link set twb-b$$ mtu 9000 up
ip -n "$ns" link set lo up
api=127.0.0.1:19480
cat "$cap" > /dev/null
total=$(capinfos -c -M "$cap" 2>/dev/null | awk -F: '/Number of packets/{gsub(/ /,"",$2); print $2}')
echo "capture: $cap, $total packets, replayed $loops time(s); tapwire workers: $workers"

cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
# CPU seconds of the capture workers (threads tapwire-w*), where every packet is spooled and
# dissected: the figure per packet the performance target is stated in.
worker_cpu() {
  local t=0
  for d in /proc/"$1"/task/*; do
    if grep -q '^tapwire-w' "$d/comm" 2>/dev/null; then
      t=$(awk -v t="$t" '{print t + ($14+$15)/100}' "$d/stat")
    fi
  done
  echo "$t"
}
hwm() { awk '/VmHWM/{print int($2/1024)}' "/proc/$1/status"; }

# tapwire, spooling and dissecting (one subscriber).
ip netns exec "$ns" "$bin/tapwire" run --interface twb-b$$ --workers "$workers" \
  --spool-dir "$work/spool" --spool-limit 2GiB --listen "$api" 2>"$work/tapwire.log" &
tw=$!; pids+=($tw)
for _ in $(seq 100); do ip netns exec "$ns" curl -sf "http://$api/healthz" >/dev/null && break; sleep 0.1; done
if [ -z "${NO_SUBSCRIBER:-}" ]; then
  ip netns exec "$ns" "$bin/tapwire" watch --agent "http://$api" >/dev/null &
  pids+=($!)
fi
sleep 0.5
# RSS every 10 s while the replay runs (flat means bounded memory under sustained traffic).
( while kill -0 $tw 2>/dev/null; do
    echo "$(date +%s) $(awk '/VmRSS/{print int($2/1024)}' /proc/$tw/status 2>/dev/null)"; sleep 10
  done ) > "$work/rss.log" &
pids+=($!)
tcpreplay --topspeed --loop "$loops" -i twb-a$$ "$cap" > "$work/replay1.log" 2>&1 || true
sleep 3
rss_series=$(awk '{print $2}' "$work/rss.log" | tr '\n' ' ')
status=$(ip netns exec "$ns" curl -sf "http://$api/v1/status")
tw_cpu=$(cpu $tw); tw_rss=$(hwm $tw); tw_wcpu=$(worker_cpu $tw)
# CPU seconds per thread name (where the rest of the process's time goes).
tw_threads=$(for d in /proc/"$tw"/task/*; do
    printf '%s %s\n' "$(tr ' ' _ < "$d/comm")" "$(awk '{print ($14+$15)/100}' "$d/stat")"
  done | awk '{t[$1]+=$2} END {for (k in t) if (t[k] > 0) printf "%s=%.2f ", k, t[k]}')
kill -TERM $tw; wait $tw 2>/dev/null || true
pps1=$(awk '/Rated:/{for(i=1;i<=NF;i++) if($i=="pps") print $(i-1)}' "$work/replay1.log" | head -1)
tw_packets=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["capture"]["packets"])')
tw_drops=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["capture"]["kernel_drops"])')
tw_ex=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["demand"]["exchanges"])')

# tcpdump -w, the baseline.
# A ring of 32 × 64 MB files: bounded like tapwire's 2 GiB spool (a plain -w of a long run
# fills the disk).
# -Z root: Debian's tcpdump otherwise drops to its own user, which cannot write here.
ip netns exec "$ns" tcpdump -Z root -i twb-b$$ -n -s 0 -B 65536 -C 64 -W 32 -w "$work/tcpdump.pcap" 2>"$work/tcpdump.log" &
td=$!; pids+=($td)
for _ in $(seq 100); do grep -q "listening on" "$work/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
tcpreplay --topspeed --loop "$loops" -i twb-a$$ "$cap" > "$work/replay2.log" 2>&1 || true
sleep 3
td_cpu=$(cpu $td); td_rss=$(hwm $td)
kill -INT $td; wait $td 2>/dev/null || true
pps2=$(awk '/Rated:/{for(i=1;i<=NF;i++) if($i=="pps") print $(i-1)}' "$work/replay2.log" | head -1)
td_packets=$(awk '/packets captured/{print $1}' "$work/tcpdump.log")
td_drops=$(awk '/dropped by kernel/{print $1}' "$work/tcpdump.log")

printf '\n%-8s %12s %12s %14s %10s %10s %10s\n' tool replay_pps captured kernel_drops cpu_s peak_MiB exchanges
printf '%-8s %12s %12s %14s %10s %10s %10s\n' tapwire "$pps1" "$tw_packets" "$tw_drops" "$tw_cpu" "$tw_rss" "$tw_ex"
printf '%-8s %12s %12s %14s %10s %10s %10s\n' tcpdump "$pps2" "$td_packets" "$td_drops" "$td_cpu" "$td_rss" -
echo "tapwire RSS (MiB) every 10 s during the replay: $rss_series"
echo "tapwire workers: $tw_wcpu CPU s, $(echo "$tw_wcpu * 1000000 / $tw_packets" | bc -l | awk '{printf "%.3f", $1}') µs per packet captured (process: $(echo "$tw_cpu * 1000000 / $tw_packets" | bc -l | awk '{printf "%.3f", $1}'))"
echo "tapwire CPU s by thread: $tw_threads"
echo "tcpdump: $(echo "$td_cpu * 1000000 / $td_packets" | bc -l | awk '{printf "%.3f", $1}') µs per packet captured"
