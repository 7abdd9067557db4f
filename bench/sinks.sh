#!/usr/bin/env bash
# Sink benchmark: `tapwire run --read CAPTURE` (one worker, as fast as the file reads) in a
# network namespace with a local OTLP receiver (tw-otlp-receiver --quiet, gRPC), a local
# tansu broker (in memory) and RED metrics, one configuration at a time:
#
#   none        dissection with no sink: one API subscriber reading everything to /dev/null
#   prometheus  RED metrics only
#   otlp        OTLP spans only
#   kafka       Kafka messages only
#   all         the three sinks together
#   k8s         RED metrics with Kubernetes enrichment: the agent lists 5320 pods (one per
#               server address of the capture, 16 deployments, and 5000 others) and 16
#               services from tw-fake-k8s, and names both peers of every exchange (the
#               file is read once the pods are listed: its wall-clock figures include that
#               wait; the worker's CPU figures do not)
#
# For each: the pipeline's time to read and dissect the whole capture (packets/s), the CPU
# seconds of the capture worker thread (what the pipeline itself spends: reading, spooling,
# dissecting, handing exchanges to the subscriber or sinks) and its packets per CPU-second,
# the time until every sink had delivered every exchange (events/s), the whole agent's CPU
# seconds (worker, exporter task, librdkafka threads), and what was dropped. Queues are sized
# so nothing is dropped.
#
# Cores: with PIN=1 (default) the capture worker thread runs alone on core 0 and everything
# else (the agent's other threads: API, OTLP exporter task, Kafka thread, librdkafka; the
# receiver and the broker) on core 1, as on a node where the agent's sinks and their
# receivers do not take the worker's core. PIN=0 lets the scheduler place everything.
#
#   bench/sinks.sh [CAPTURE]   default: bench/out/sinks.pcap (200k HTTP exchanges, generated)
#   ROUNDS=3 bench/sinks.sh    every configuration three times, interleaved (the spread shows
#                              the noise of a shared two-core machine)
#   CONFIGS="otlp all" ...     only these configurations
#   THREADS=1 ...              also the agent's CPU seconds by thread name
#   TAPWIRE=/tmp/old ...       another build of the agent (A/B runs, alternating)
#
# What the profiles said (perf record -a while the agent runs; perf report --comm tapwire-w0):
#   - `run --read` handed frames to the worker one by one over a channel: the blocked reader
#     was woken for every packet (futex wakes were a quarter of the worker's CPU). Frames now
#     come in batches of 512 (agent/src/capture/source.rs): worker packets per CPU-second rose
#     by 20-45% in every configuration.
#   - RED recording was a sixth of the worker (prometheus): a `format!` of address:port and a
#     template String per exchange for the route, a joined label key per metric. Now: routes
#     looked up by address and port with a reused buffer, series keyed by a hash of the label
#     values. Comparing the kept values with `==` (a libc memcmp call per value) made it 3x
#     slower than the joined key on this VM; a byte loop made it 20% faster than before
#     (criterion sinks/red_record: 20.0 -> 15.9 us for the bench's 150 exchanges).
#   - The OTLP exporter built each span three times (semconv view, the SDK's SpanData, the
#     protobuf), cloned the batch per attempt and copied every attribute string again: 5.9 us
#     of tokio-rt-worker CPU per span (THREADS=1). Spans are now protobuf built from the view
#     (sinks/src/otlp/proto.rs) and sent by our own transport: 4.0-4.6 us per span, of which
#     encoding is 1.7 us (criterion sinks/otlp_request); the rest is tonic/h2 and freeing the
#     exchanges.
#   - Tried and dropped: freeing each exchange on the worker that built it (a per-worker list
#     of handles swept when the readers were done). The profile's allocator share on the
#     worker fell from ~23% to ~9%, but the worker's CPU per packet did not (A/B over 6
#     alternating rounds, none and kafka: -5%, inside the noise): the worker then pays every
#     free that the readers' threads used to pay.
#   - Tried and dropped (2026-12-06), each with A/B runs (TAPWIRE=, 3 alternating rounds):
#     * one label-set table for the three HTTP histograms (one lookup per exchange instead of
#       three) and the route RED looks up handed to the OTLP exporter with the exchange:
#       criterion red_record 16.4 -> 16.8 us (no change: hot lookups are cheap), worker and
#       exporter CPU within the noise.
#     * RED recorded on a thread of its own behind a bounded queue: the worker's share of RED
#       (route_in, observe_key, Histogram::observe: ~1.1% of 4.8% of all samples with every
#       sink on) moves off it, but with every sink on core 1 is saturated and the RED thread
#       dropped 12k-43k of 267k exchanges (metrics that were exact became lossy), and the
#       worker's packets per CPU-second did not move out of the noise.
#     * sink threads polling their queues instead of blocking in recv (so the worker's send
#       never wakes them): futex_wake was 0.04% of the worker's 14% of samples (kafka), so
#       nothing to gain.
#     The noise that day: "none" ranged 455k-850k worker packets per CPU-second for one
#     binary across rounds; a 5-10% effect cannot be told apart with three rounds.
#   - With every sink on, core 1 (exporter task, Kafka thread, librdkafka, receiver, broker) is
#     saturated and the worker's CPU per packet rises although its own sink work (one queue
#     push per sink) is the same as with one sink: no hardware counters in this VM to tell
#     cache and memory interference apart from the worker's own instructions.
#
# Needs root, iproute2, curl, bc, capinfos (tshark) and the tansu broker (TAPWIRE_TANSU or
# ~/.cache/tapwire-tools/bin/tansu, installed by scripts/test-all.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
cargo build --release -q -p tapwire-agent -p tapwire-bench -p tapwire-integration --bins
bin="$CARGO_TARGET_DIR/release"
# TAPWIRE: another build of the agent (the helpers stay this tree's).
tapwire="${TAPWIRE:-$bin/tapwire}"
tansu="${TAPWIRE_TANSU:-$HOME/.cache/tapwire-tools/bin/tansu}"
cap=$(realpath -m "${1:-bench/out/sinks.pcap}")
if [ ! -f "$cap" ]; then
  mkdir -p "$(dirname "$cap")"
  "$bin/gen-capture" "$cap" "${HTTP_EXCHANGES:-200000}" 3 7
fi
ns=twk-$$; work=$(mktemp -d); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
api=127.0.0.1:19481
in_ns() { ip netns exec "$ns" "$@"; }
cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
# CPU seconds of the capture worker threads (named tapwire-w<N>).
worker_cpu() {
  local t=0
  for d in /proc/$1/task/*; do
    if grep -q '^tapwire-w' "$d/comm" 2>/dev/null; then
      t=$(echo "$t + $(awk '{print ($14+$15)/100}' "$d/stat")" | bc)
    fi
  done
  echo "$t"
}
status() { in_ns curl -sf "http://$api/v1/status"; }
# A number from the status JSON (`"key":N`), without starting an interpreter per poll.
num() { local re="\"$1\":([0-9]+)"; [[ $2 =~ $re ]] && echo "${BASH_REMATCH[1]}" || echo 0; }
# Offered, delivered and dropped, summed over the sinks, from one scrape.
sink_sums() {
  in_ns curl -sf "http://$api/metrics" | awk '
    index($0, "tapwire_sink_offered_total") == 1 {o += $NF}
    index($0, "tapwire_sink_delivered_total") == 1 {d += $NF}
    index($0, "tapwire_sink_dropped_total") == 1 {x += $NF}
    END {print o + 0, d + 0, x + 0}'
}
metric_sum() { in_ns curl -sf "http://$api/metrics" | awk -v n="$1" -v l="$2" 'index($0, n) == 1 && (l == "" || index($0, l)) {s += $NF} END {print s + 0}'; }
total=$(capinfos -c -M "$cap" 2>/dev/null | awk -F: '/Number of packets/{gsub(/ /,"",$2); print $2}')
cat "$cap" > /dev/null
echo "capture: $cap, $total packets"
printf '\n%-11s %10s %10s %10s %12s %14s %11s %10s %11s %8s\n' sinks exchanges pipeline_s pkts_per_s worker_cpu_s pkts_per_cpu_s delivered_s events_s agent_cpu_s dropped

pin=${PIN:-1}
others=()
if [ "$pin" = 1 ]; then
  # This script, its pollers and everything it starts run on core 1.
  taskset -p -c 1 $$ >/dev/null
  others=(taskset -c 1)
fi
ip netns exec "$ns" "${others[@]}" "$bin/tw-otlp-receiver" 127.0.0.1:4317 127.0.0.1:4318 --quiet > /dev/null &
pids+=($!)
# The cluster the k8s configuration names: the capture's servers are 10.96.N.10-29 (N < 16).
python3 - "$work/objects.json" <<'PY'
import json, sys
def pod(ns, name, ip, owner):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": "u-" + name,
                         "creationTimestamp": "2020-01-01T00:00:00Z", "labels": {"app": owner},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": owner + "-5d8f7", "uid": "rs-" + owner, "controller": True}]},
            "spec": {"nodeName": "node-a", "containers": [{"name": "main", "image": "x"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "startTime": "2020-01-01T00:00:00Z"}}
pods, rs, svcs, slices = [], [], [], []
for n in range(16):
    d = "svc%d" % n
    rs.append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": d + "-5d8f7", "namespace": "shop", "uid": "rs-" + d,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": d, "uid": "d-" + d, "controller": True}]}})
    names = []
    for h in range(10, 30):
        name = "%s-5d8f7-%d" % (d, h)
        pods.append(pod("shop", name, "10.96.%d.%d" % (n, h), d))
        names.append(name)
    svcs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": d, "namespace": "shop"},
                 "spec": {"clusterIP": "10.100.0.%d" % (n + 1), "clusterIPs": ["10.100.0.%d" % (n + 1)]}})
    slices.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                   "metadata": {"name": d + "-abc", "namespace": "shop",
                                "labels": {"kubernetes.io/service-name": d}},
                   "endpoints": [{"addresses": ["x"], "targetRef": {"kind": "Pod", "name": x, "namespace": "shop"}} for x in names],
                   "ports": [{"port": p} for p in (80, 8080, 8000, 3000)]})
for i in range(5000):
    pods.append(pod("other", "filler-%d" % i, "10.200.%d.%d" % (i // 250, i % 250 + 1), "filler"))
json.dump({"pods": pods, "replicasets": rs, "services": svcs, "endpointslices": slices,
           "nodes": [], "jobs": []}, open(sys.argv[1], "w"))
PY
ip netns exec "$ns" "${others[@]}" "$bin/tw-fake-k8s" "$work/objects.json" 127.0.0.1:6443 > /dev/null &
pids+=($!)
for _ in $(seq 300); do in_ns curl -sf -o /dev/null "http://127.0.0.1:6443/api/v1/nodes" && break; sleep 0.1; done
in_ns curl -sf -o /dev/null "http://127.0.0.1:6443/api/v1/nodes" || { echo "sinks.sh: tw-fake-k8s did not start" >&2; exit 1; }
printf 'apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: b\n  cluster:\n    server: http://127.0.0.1:6443\ncontexts:\n- name: b\n  context:\n    cluster: b\n    user: u\nusers:\n- name: u\n  user: {}\n' > "$work/kubeconfig"
run() {
  local name=$1
  # A fresh broker per run (in memory), with its topic.
  ip netns exec "$ns" "${others[@]}" "$tansu" broker --storage-engine memory://tansu/ --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 >/dev/null 2>&1 &
  local broker=$!; pids+=($broker)
  for _ in $(seq 100); do in_ns "$bin/tw-kafka" create 127.0.0.1:9092 tapwire.exchanges >/dev/null 2>&1 && break; sleep 0.1; done
  local prom="" otlp="" kafka=""
  case "$name" in prometheus|all|k8s) prom="  prometheus: {enabled: true}";; esac
  case "$name" in otlp|all) otlp="  otlp: {endpoint: 'http://127.0.0.1:4317', queue: 2000000, batch_size: 2048}";; esac
  case "$name" in kafka|all) kafka="  kafka: {brokers: '127.0.0.1:9092', queue: 2000000, properties: {linger.ms: 20, queue.buffering.max.kbytes: 2000000}}";; esac
  printf 'sinks:\n%s\n%s\n%s\n' "$prom" "$otlp" "$kafka" > "$work/tapwire.yaml"
  if [ "$name" = k8s ]; then
    printf 'kubernetes: {kubeconfig: %s}\n' "$work/kubeconfig" >> "$work/tapwire.yaml"
  fi
  rm -rf "$work/spool"
  local t0; t0=$(date +%s.%N)
  ip netns exec "$ns" "${others[@]}" "$tapwire" run --read "$cap" --spool-dir "$work/spool" --spool-limit 4GiB \
    --listen "$api" --config "$work/tapwire.yaml" 2>"$work/agent.log" &
  local tw=$!; pids+=($tw)
  if [ "$pin" = 1 ]; then
    # The worker thread to core 0 as soon as it exists (its first milliseconds run on core 1;
    # with Kubernetes names it starts once the pods are listed, so wait up to 15 s for it).
    for _ in $(seq 15000); do
      local tid; tid=$(grep -l '^tapwire-w' /proc/$tw/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5 || true)
      if [ -n "$tid" ]; then taskset -p -c 0 "$tid" >/dev/null; break; fi
      sleep 0.001
    done
  fi
  local t_sub=0
  if [ "$name" = none ]; then
    # Dissection needs a consumer: one subscriber, reading every event to /dev/null. It can
    # only join once the API is up, a moment after the file started to be read: the rates of
    # this run count the packets dissected since it joined.
    for _ in $(seq 500); do in_ns curl -sf "http://$api/healthz" >/dev/null && break; sleep 0.01; done
    ip netns exec "$ns" "${others[@]}" curl -sN "http://$api/v1/events" > /dev/null &
    pids+=($!)
    for _ in $(seq 500); do
      [ "$(num subscriptions "$(status)")" = 1 ] && break; sleep 0.01
    done
    t_sub=$(echo "$(date +%s.%N) - $t0" | bc)
  fi
  local t_pipe="" t_done="" ex=0 dpk=0 wcpu=0
  while :; do
    local st; st=$(status 2>/dev/null || echo '{}')
    local pk; pk=$(num packets "$st")
    ex=$(num exchanges "$st")
    local now; now=$(date +%s.%N)
    if [ -z "$t_pipe" ] && [ "$pk" = "$total" ]; then
      t_pipe=$(echo "$now - $t0" | bc)
      dpk=$(num dissected_packets "$st")
      wcpu=$(worker_cpu $tw)
    fi
    if [ -n "$t_pipe" ]; then
      # One scrape per poll (with RED on, encoding every series is work for the agent's
      # runtime, the thread the OTLP exporter shares).
      local off del drp
      read -r off del drp < <(sink_sums)
      if [ "$(echo "$del + $drp >= $off" | bc)" = 1 ]; then t_done=$(echo "$now - $t0" | bc); break; fi
    fi
    sleep 0.05
  done
  local c; c=$(cpu $tw)
  if [ "${THREADS:-0}" = 1 ]; then
    # CPU seconds by thread name (the OTLP exporter runs on tokio-rt-worker, the Kafka sink's
    # thread is tapwire-kafka, librdkafka's are rdk:*).
    for d in /proc/$tw/task/*; do
      printf '%s %s\n' "$(tr ' ' '_' < "$d/comm")" "$(awk '{print ($14+$15)/100}' "$d/stat")"
    done | awk '{s[$1] += $2} END {for (t in s) if (s[t] > 0) printf "            %-16s %6.2f\n", t, s[t]}' | sort
  fi
  printf '%-11s %10s %10.2f %10.0f %12.2f %14.0f %11.2f %10.0f %11s %8s\n' "$name" "$ex" "$t_pipe" \
    "$(echo "$dpk / ($t_pipe - $t_sub)" | bc -l)" "$wcpu" "$(echo "$dpk / $wcpu" | bc -l)" \
    "$t_done" "$(echo "$ex / ($t_done - $t_sub)" | bc -l)" "$c" "$drp"
  if [ "$name" = k8s ]; then
    echo "            peers named: $(metric_sum tapwire_k8s_resolutions_total 'resolution="resolved"') resolved, $(metric_sum tapwire_k8s_resolutions_total 'resolution="unknown"') unknown"
  fi
  kill -KILL $tw $broker 2>/dev/null || true
  wait $tw $broker 2>/dev/null || true
}
for _ in $(seq "${ROUNDS:-1}"); do
  for s in ${CONFIGS:-none prometheus otlp kafka all k8s}; do run "$s"; done
done
