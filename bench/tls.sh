#!/usr/bin/env bash
# Cost of the TLS plaintext source: a Python client sends REQUESTS small HTTPS requests over
# one keep-alive connection to nginx (both link the system's libssl, so both ends are traced:
# 4 TLS calls per request), in a network namespace, under four conditions:
#   none       no agent
#   off        tapwire run --tls off, one subscriber (packets dissected, no probes)
#   on-demand  tapwire run --tls on-demand, one subscriber (probes attached, plaintext dissected)
#   always     tapwire run --tls always, no subscriber (probes attached, nobody reading events)
# Reports the client's time per request and the agent's CPU seconds over the run.
#
#   bench/tls.sh [REQUESTS]   default 20000
# Then BULK (default 32) downloads of a 16 MiB file: throughput with and without the probes,
# and the agent's CPU per MiB of plaintext (each MiB is read twice: nginx's and the client's
# end, one of them dropped as a duplicate).
#   BPF_STATS=1 bench/tls.sh  also prints each BPF program's runs and time per run during the
#                             `always` condition (kernel.bpf_stats_enabled; needs bpftool)
#
# Needs root, iproute2, nginx, openssl, python3. Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tapwire-target}"
n=${1:-20000}
cargo build --release -q -p tapwire-agent
bin="$CARGO_TARGET_DIR/release/tapwire"
ns=twt-$$; work=$(mktemp -d); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/k.pem" -out "$work/c.pem" -days 1 \
  -subj /CN=bench.tapwire.test 2>/dev/null
mkdir -p "$work/www" && echo ok > "$work/www/ok.txt"
head -c $((16 << 20)) /dev/urandom > "$work/www/big.bin"
cat > "$work/nginx.conf" <<EOF
daemon off; user root; worker_processes 1; error_log $work/error.log; pid $work/nginx.pid;
events { worker_connections 64; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work;
  proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:8443 ssl; ssl_certificate $work/c.pem;
    ssl_certificate_key $work/k.pem; root $work/www; } }
EOF
ip netns exec "$ns" nginx -c "$work/nginx.conf" & pids+=($!)
cat > "$work/client.py" <<'EOF'
import socket, ssl, sys, time
n = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for _ in range(100):
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", 8443)))
        break
    except OSError:
        time.sleep(0.05)
path = sys.argv[2].encode()
req = b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n"
t0 = time.perf_counter()
buf = bytearray()
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    got = len(rest)
    while got < length:
        got += len(s.recv(1 << 20))
    buf = bytearray()
print(f"{(time.perf_counter() - t0) / n * 1e6:.1f}")
EOF
cat > "$work/bpfstats.py" <<'EOF'
import json, sys
for p in json.load(sys.stdin):
    name, runs = p.get("name", ""), p.get("run_cnt", 0)
    if runs and (name in ("sys_enter", "on_exec") or name.startswith(("ssl_", "go_"))):
        print(f"  bpf {name:<20} {runs:>9} runs {p['run_time_ns'] / runs:>8.0f} ns/run")
EOF
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
run() { # name [agent args…]
  local name=$1; shift
  local agent="" sub=""
  if [ $# -gt 0 ]; then
    ip netns exec "$ns" "$bin" run -i lo --listen 127.0.0.1:19490 --spool-dir "$work/spool-$name" \
      --spool-limit 64MiB "$@" 2>"$work/agent-$name.log" & agent=$!; pids+=($agent)
    for _ in $(seq 100); do
      ip netns exec "$ns" curl -sf http://127.0.0.1:19490/healthz >/dev/null && break; sleep 0.1
    done
    if [ "${SUBSCRIBE:-1}" = 1 ]; then
      ip netns exec "$ns" "$bin" watch --agent http://127.0.0.1:19490 >/dev/null & sub=$!; pids+=($sub)
    fi
    sleep 1  # the subscription, and the probes attaching
  fi
  local stats=0; [ "${BPF_STATS:-0}" = 1 ] && [ "$name" = always ] && stats=1
  [ $stats = 1 ] && sysctl -q kernel.bpf_stats_enabled=1
  local before=0; [ -n "$agent" ] && before=$(cpu "$agent")
  local us; us=$(ip netns exec "$ns" python3 "$work/client.py" "$count" "$path")
  local after=0; [ -n "$agent" ] && after=$(cpu "$agent")
  if [ $stats = 1 ]; then
    bpftool prog show --json | python3 "$work/bpfstats.py"
    sysctl -q kernel.bpf_stats_enabled=0
  fi
  local tracing="-"
  [ -n "$agent" ] && tracing=$(ip netns exec "$ns" curl -s http://127.0.0.1:19490/metrics \
    | awk '/^tapwire_tls_tracing /{print $2}')
  local cpu_s; cpu_s=$(echo "$after - $before" | bc -l)
  if [ "$path" = /big.bin ]; then
    printf '%-10s %8.0f MiB/s  agent CPU %6.2f s (%5.2f ms per MiB)  probes %s\n' "$name" \
      "$(echo "16 / ($us / 1000000)" | bc -l)" "$cpu_s" \
      "$(echo "$cpu_s * 1000 / ($count * 16)" | bc -l)" "$tracing"
  else
    printf '%-10s %8s µs/request  agent CPU %6.2f s  probes %s\n' "$name" "$us" "$cpu_s" "$tracing"
  fi
  [ -n "$sub" ] && kill -TERM "$sub" 2>/dev/null && wait "$sub" 2>/dev/null || true
  [ -n "$agent" ] && kill -TERM "$agent" && wait "$agent" 2>/dev/null || true
}
echo "$n HTTPS requests on one keep-alive connection (Python client -> nginx, both traced)"
count=$n path=/ok.txt
run none
run off --tls off
run on-demand --tls on-demand
SUBSCRIBE=0 run always --tls always
bulk=${BULK:-32}
echo "$bulk downloads of 16 MiB on one connection (both ends traced: 32 MiB of plaintext each)"
count=$bulk path=/big.bin
run none
run on-demand --tls on-demand
