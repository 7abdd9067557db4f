#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 1200), JOBS at a time (default 1), seeded
# with the recorded captures (seeds/), the hostile suite's cases (written fresh by
# tw-hostile-seeds into hostile-seeds/) and, when present, the shared corpus (corpus-seeds/).
# Inputs up to 128 KiB. Prints one line per target: executions, corpus size, findings
# (crash, leak, timeout and out-of-memory artifacts under artifacts/<target>/); a target
# that did not run (no final stats) is reported and makes the exit status 1.
#   bash fuzz/run-all.sh [SECONDS] [JOBS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-1200}"; jobs="${2:-1}"; shift $(( $# > 2 ? 2 : $# )) || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(amqp http2 hpack kafka http1 pipeline stream redis dns http2_frame tls postgresql websocket mysql)
fi
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/tapwire-fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
( cd .. && CARGO_TARGET_DIR="${MAIN_TARGET_DIR:-$HOME/.cache/tapwire-target}" \
    cargo run -q -p tapwire-integration --bin tw-hostile-seeds -- fuzz/hostile-seeds )
RUSTC_BOOTSTRAP=1 cargo fuzz build -O
mkdir -p logs
run_one() {
  local t="$1" dirs=()
  mkdir -p "corpus/$t" "artifacts/$t"
  for d in "seeds/$t" "hostile-seeds/$t" "corpus-seeds/$t"; do [ -d "$d" ] && dirs+=("$d"); done
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" "corpus/$t" "${dirs[@]}" -- \
    -max_total_time="$secs" -max_len=131072 -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" > "logs/$t.log" 2>&1 || true
  local execs found
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || true)
  found=$(find "artifacts/$t" -type f | wc -l)
  if [ -z "$execs" ]; then
    echo "fuzz: $t: FAILED to run (no final stats; see fuzz/logs/$t.log)"
    return 1
  fi
  echo "fuzz: $t: ${secs}s, $execs executions, $(ls "corpus/$t" | wc -l) corpus inputs, $found findings"
}
running=0 failed=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || failed=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
exit "$failed"
