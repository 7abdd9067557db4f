#!/usr/bin/env bash
# Record a fixture capture from real servers and clients in two network namespaces.
#
#   integration/record.sh http1 OUT.pcap   nginx (Debian) + curl and a raw pipelining client
#   integration/record.sh dns   OUT.pcap   dnsmasq (Debian) + dig (UDP and TCP)
#   integration/record.sh redis OUT.pcap   redis-server (Debian) + redis-cli and raw RESP clients
#   integration/record.sh amqp  OUT.pcap   rabbitmq-server (Debian) + pika (PyPI; PYTHON names a
#                                          python with pika, default python3)
#   integration/record.sh kafka OUT.pcap   tansu (crates.io, --features dynostore; TANSU names the
#                                          binary) + confluent-kafka (PyPI, current librdkafka)
#   integration/record.sh graphql-h1 OUT.pcap  Strawberry GraphQL served by Hypercorn + httpx
#   integration/record.sh graphql-h2 OUT.pcap  over HTTP/1.1, or HTTP/2 with prior knowledge, and
#                                          curl upgrading with h2c (PyPI: strawberry-graphql,
#                                          hypercorn, starlette, httpx[http2] in PYTHON's env)
#   integration/record.sh tls   OUT.pcap   nginx with TLS 1.2 and 1.3 (Debian) + curl and openssl
#                                          s_client: SNI, ALPN, resumption, alerts, no SNI
#   integration/record.sh postgresql OUT.pcap  PostgreSQL 15 (Debian) + psql (clear and TLS) and
#                                          psycopg 3 (PyPI, in PYTHON's env)
#   integration/record.sh websocket OUT.pcap  a `websockets` echo server and client (PyPI, in
#                                          PYTHON's env), with and without permessage-deflate
#   integration/record.sh mysql OUT.pcap   MariaDB (Debian) + the mariadb client (clear and TLS)
#                                          and mysql-connector-python (PyPI, in PYTHON's env)
#   integration/record.sh grpc  OUT.pcap   grpcio server and client (PyPI: grpcio, grpcio-tools in
#                                          PYTHON's env) for servers/proto/bookshop.proto; also
#                                          writes the descriptor set next to OUT (OUT.desc)
#
# The namespaces (tw-srv-$$, tw-cli-$$) are joined by a veth pair with 10.77.0.1 (server)
# and 10.77.0.2 (client), no route out; offloads are off so frames look like wire frames.
# tcpdump captures on the server side. Everything is torn down on exit, pass or fail.
# Needs root, iproute2, ethtool, tcpdump, and the scenario's server and client.
set -euo pipefail

usage="usage: record.sh http1|dns|redis|amqp|kafka|graphql-h1|graphql-h2|grpc|tls|postgresql|websocket|mysql OUT.pcap"
scenario=${1:?$usage}
out=$(realpath -m "${2:?$usage}")
here=$(cd "$(dirname "$0")" && pwd)
S=tw-srv-$$; C=tw-cli-$$; SA=10.77.0.1; CA=10.77.0.2
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$C" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$S"; ip netns add "$C"
ip link add tw-s$$ type veth peer name tw-c$$
ip link set tw-s$$ netns "$S"; ip link set tw-c$$ netns "$C"
ip -n "$S" addr add $SA/24 dev tw-s$$; ip -n "$C" addr add $CA/24 dev tw-c$$
ip -n "$S" link set lo up; ip -n "$C" link set lo up
ip -n "$S" link set tw-s$$ up; ip -n "$C" link set tw-c$$ up
ip netns exec "$S" ethtool -K tw-s$$ tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
ip netns exec "$C" ethtool -K tw-c$$ tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
smac=$(ip netns exec "$S" cat /sys/class/net/tw-s$$/address)
cmac=$(ip netns exec "$C" cat /sys/class/net/tw-c$$/address)
ip -n "$S" neigh add $CA lladdr "$cmac" dev tw-s$$ nud permanent
ip -n "$C" neigh add $SA lladdr "$smac" dev tw-c$$ nud permanent

wait_tcp() { # ns addr port
  for _ in $(seq 100); do
    ip netns exec "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "record.sh: server on $2:$3 did not start" >&2; return 1
}

start_capture() {
  # No filter: the namespaces carry only this scenario's traffic.
  ip netns exec "$S" tcpdump -Z root --immediate-mode -i tw-s$$ -U -n -s 0 -w "$work/cap.pcap" 2>"$work/tcpdump.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$work/tcpdump.log" 2>/dev/null && break; sleep 0.05; done
}

stop_capture() {
  sleep 0.3
  kill -INT "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  mkdir -p "$(dirname "$out")"; cp "$work/cap.pcap" "$out"
  echo "record.sh: wrote $out ($(stat -c %s "$out") bytes)"
}

case "$scenario" in
http1)
  mkdir -p "$work/www" "$work/tmp"
  printf 'hello from nginx\n' > "$work/www/index.html"
  # A text file large enough for gzip to answer chunked.
  for i in $(seq 400); do echo "line $i: the quick brown fox jumps over the lazy dog"; done > "$work/www/big.txt"
  cat > "$work/nginx.conf" <<CONF
daemon off;
user root;
worker_processes 1;
error_log $work/error.log;
pid $work/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/tmp/body; proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fcgi; uwsgi_temp_path $work/tmp/uwsgi; scgi_temp_path $work/tmp/scgi;
  types { text/html html; text/plain txt; }
  keepalive_requests 100;
  server {
    listen $SA:80;
    root $work/www;
    gzip on; gzip_types text/plain; gzip_min_length 100;
    location = /fail { return 500 "boom\n"; }
    location = /upload { return 201 "stored\n"; }
  }
}
CONF
  ip netns exec "$S" nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
  wait_tcp "$S" $SA 80
  start_capture
  base=http://$SA
  # Keep-alive: several requests on one connection, with 404 and 500 and a HEAD.
  ip netns exec "$C" curl -s -o /dev/null -o /dev/null -o /dev/null -H 'Authorization: Bearer s3cr3t' \
    -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
    "$base/index.html" "$base/missing?x=1" "$base/fail"
  ip netns exec "$C" curl -s -o /dev/null -I "$base/index.html"
  # gzip'd response, chunked (nginx compresses on the fly).
  ip netns exec "$C" curl -s -o /dev/null -H 'Accept-Encoding: gzip' "$base/big.txt"
  # Chunked request body (and 100 Continue for a large body).
  ip netns exec "$C" curl -s -o /dev/null -H 'Transfer-Encoding: chunked' --data-binary @"$work/www/big.txt" "$base/upload"
  ip netns exec "$C" curl -s -o /dev/null -H 'Expect: 100-continue' --data-binary @"$work/www/big.txt" "$base/upload"
  # HTTP/1.0 request.
  ip netns exec "$C" curl -s -o /dev/null -0 "$base/index.html"
  # Pipelining: three requests in one write, answered in order.
  ip netns exec "$C" bash -c "exec 3<>/dev/tcp/$SA/80
    printf 'GET /index.html HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\nHEAD /big.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&3
    cat <&3 >/dev/null"
  stop_capture
  ;;
dns)
  ip netns exec "$S" dnsmasq --keep-in-foreground --log-facility=- --conf-file=/dev/null \
    --no-resolv --no-hosts --user=root --pid-file= --listen-address=$SA --bind-interfaces \
    --local=/example.test/ --host-record=www.example.test,10.77.0.10,fd00:77::10 \
    --cname=alias.example.test,www.example.test --mx-host=example.test,mail.example.test,10 \
    --txt-record=example.test,"v=spf1 -all","second string" \
    --srv-host=_http._tcp.example.test,www.example.test,80,0,5 >"$work/dnsmasq.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    ip netns exec "$C" dig +short +time=1 +tries=1 @$SA www.example.test >/dev/null 2>&1 && break; sleep 0.05
  done
  start_capture
  q() { ip netns exec "$C" dig +time=2 +tries=1 @$SA "$@" >/dev/null || true; }
  q www.example.test A
  q www.example.test AAAA
  q alias.example.test A
  q example.test MX
  q example.test TXT
  q _http._tcp.example.test SRV
  q nothere.example.test A
  q +tcp www.example.test A
  stop_capture
  ;;
redis)
  # The password is a known test value: tests check it never appears in any output.
  pw=tapwire-test-password-7f3a
  ip netns exec "$S" redis-server --bind $SA --port 6379 --protected-mode no --save '' \
    --appendonly no --daemonize no --requirepass "$pw" --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  wait_tcp "$S" $SA 6379
  start_capture
  cli() { ip netns exec "$C" redis-cli -h $SA --no-auth-warning -a "$pw" "$@" >/dev/null; }
  cli SET user:1 alice
  cli GET user:1
  cli INCR user:1 || true                      # -ERR value is not an integer
  cli LPUSH list a b c
  cli GET list || true                          # -WRONGTYPE
  cli LRANGE list 0 -1
  cli CLIENT SETNAME recorder
  ip netns exec "$C" redis-cli -3 -h $SA --no-auth-warning -a "$pw" HSET h f1 v1 f2 v2 >/dev/null
  ip netns exec "$C" redis-cli -3 -h $SA --no-auth-warning -a "$pw" HGETALL h >/dev/null
  head -c 300000 /dev/zero | tr '\0' 'x' > "$work/big"
  ip netns exec "$C" redis-cli -h $SA --no-auth-warning -a "$pw" -x SET big < "$work/big" >/dev/null
  cli STRLEN big
  # Pub/sub: a subscriber, two publishes, then the subscriber leaves.
  ip netns exec "$C" timeout 2 redis-cli -h $SA --no-auth-warning -a "$pw" SUBSCRIBE news >/dev/null &
  sub=$!
  sleep 0.5
  cli PUBLISH news hello
  cli PUBLISH news world
  wait $sub || true
  # Raw client: HELLO 3 with AUTH, pipelined RESP commands, an inline command, and
  # CLIENT REPLY OFF / ON / SKIP (commands that get no reply).
  ip netns exec "$C" bash -c "exec 3<>/dev/tcp/$SA/6379
    printf '*5\r\n\$5\r\nHELLO\r\n\$1\r\n3\r\n\$4\r\nAUTH\r\n\$7\r\ndefault\r\n\$${#pw}\r\n$pw\r\n' >&3
    sleep 0.2
    printf '*1\r\n\$4\r\nPING\r\n*2\r\n\$3\r\nGET\r\n\$6\r\nuser:1\r\nEXISTS user:1\r\n' >&3
    sleep 0.2
    printf '*3\r\n\$6\r\nCLIENT\r\n\$5\r\nREPLY\r\n\$3\r\nOFF\r\n*1\r\n\$4\r\nPING\r\n*3\r\n\$6\r\nCLIENT\r\n\$5\r\nREPLY\r\n\$2\r\nON\r\n' >&3
    sleep 0.2
    printf '*3\r\n\$6\r\nCLIENT\r\n\$5\r\nREPLY\r\n\$4\r\nSKIP\r\n*1\r\n\$4\r\nPING\r\n*1\r\n\$4\r\nPING\r\n*1\r\n\$4\r\nQUIT\r\n' >&3
    cat <&3 >/dev/null"
  stop_capture
  ;;
amqp)
  # RabbitMQ without systemd: the server script run directly, everything under $work. The
  # password is a known test value: tests check it never appears in any output.
  pw=tapwire-amqp-password-9c1e
  rmq=$work/rabbit; mkdir -p "$rmq/home" "$rmq/mnesia" "$rmq/log"
  printf 'tapwire-test-cookie' > "$rmq/home/.erlang.cookie"; chmod 400 "$rmq/home/.erlang.cookie"
  cat > "$rmq/rabbitmq.conf" <<CONF
loopback_users = none
listeners.tcp.default = $SA:5672
log.console = true
default_user = tapwire
default_pass = $pw
CONF
  echo '[].' > "$rmq/enabled_plugins"
  ip netns exec "$S" env HOME="$rmq/home" RABBITMQ_NODENAME=tw@localhost \
    RABBITMQ_CONFIG_FILE="$rmq/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$rmq/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$rmq/mnesia" RABBITMQ_LOG_BASE="$rmq/log" RABBITMQ_PID_FILE="$rmq/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1 /usr/lib/rabbitmq/bin/rabbitmq-server >"$rmq/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do
    ip netns exec "$C" bash -c "exec 3<>/dev/tcp/$SA/5672" 2>/dev/null && break; sleep 0.1
  done
  start_capture
  ip netns exec "$C" "${PYTHON:-python3}" "$here/clients/amqp_client.py" $SA tapwire "$pw"
  stop_capture
  # epmd outlives the server: end it by PID (it lives in the server namespace).
  for p in $(ip netns pids "$S"); do kill -TERM "$p" 2>/dev/null || true; done
  ;;
kafka)
  ip netns exec "$S" "${TANSU:-tansu}" broker --storage-engine memory://tansu/ \
    --listener-url tcp://$SA:9092 --advertised-listener-url tcp://$SA:9092 >"$work/tansu.log" 2>&1 &
  pids+=($!)
  wait_tcp "$S" $SA 9092
  start_capture
  ip netns exec "$C" "${PYTHON:-python3}" "$here/clients/kafka_client.py" $SA:9092
  stop_capture
  ;;
graphql-h1|graphql-h2)
  ip netns exec "$S" bash -c "cd '$here/servers' && exec '${PYTHON:-python3}' -m hypercorn \
    --bind $SA:8000 graphql_app:app" >"$work/hypercorn.log" 2>&1 &
  pids+=($!)
  wait_tcp "$S" $SA 8000
  start_capture
  if [ "$scenario" = graphql-h1 ]; then
    ip netns exec "$C" "${PYTHON:-python3}" "$here/clients/graphql_client.py" "http://$SA:8000/graphql" 1.1
  else
    ip netns exec "$C" "${PYTHON:-python3}" "$here/clients/graphql_client.py" "http://$SA:8000/graphql" 2
    # One more connection that upgrades from HTTP/1.1 (curl upgrades body-less requests).
    ip netns exec "$C" curl -s --http2 -o /dev/null \
      "http://$SA:8000/graphql?query=query%20Upgraded%20%7B%20books%20%7B%20id%20%7D%20%7D"
  fi
  stop_capture
  ;;
grpc)
  py=${PYTHON:-python3}
  mkdir -p "$work/gen"
  "$py" -m grpc_tools.protoc -I "$here/servers/proto" --python_out="$work/gen" \
    --grpc_python_out="$work/gen" "$here/servers/proto/bookshop.proto"
  "$py" -m grpc_tools.protoc -I "$here/servers/proto" --include_imports \
    --descriptor_set_out="${out%.pcap}.desc" "$here/servers/proto/bookshop.proto"
  ip netns exec "$S" "$py" "$here/servers/grpc_server.py" "$work/gen" $SA:50051 >"$work/grpc.log" 2>&1 &
  pids+=($!)
  wait_tcp "$S" $SA 50051
  start_capture
  ip netns exec "$C" "$py" "$here/clients/grpc_client.py" "$work/gen" $SA:50051
  stop_capture
  ;;
tls)
  # nginx with TLS 1.2 and 1.3 on 443 (HTTP/2 by ALPN, session resumption) and TLS 1.2 only on
  # 8443; clients: curl (1.3 with h2, 1.2 with http/1.1), openssl s_client with SNI and ALPN,
  # resumed sessions (1.2 and 1.3), a version the server refuses and a cipher it lacks (alerts),
  # and no SNI at all.
  mkdir -p "$work/www" "$work/tmp"
  printf 'hello over tls\n' > "$work/www/index.html"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/k.pem" -out "$work/c.pem" -days 825 \
    -subj "/O=tapwire fixtures/CN=shop.tapwire.test" \
    -addext "subjectAltName=DNS:shop.tapwire.test,DNS:www.tapwire.test,IP:$SA" 2>/dev/null
  cat > "$work/nginx.conf" <<CONF
daemon off;
user root;
worker_processes 1;
error_log $work/error.log;
pid $work/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/tmp/body; proxy_temp_path $work/tmp/proxy;
  fastcgi_temp_path $work/tmp/fcgi; uwsgi_temp_path $work/tmp/uwsgi; scgi_temp_path $work/tmp/scgi;
  ssl_certificate $work/c.pem; ssl_certificate_key $work/k.pem;
  ssl_session_cache shared:tls:1m; ssl_session_tickets on;
  server { listen $SA:443 ssl http2; ssl_protocols TLSv1.2 TLSv1.3; root $work/www; }
  server { listen $SA:8443 ssl; ssl_protocols TLSv1.2; root $work/www; }
}
CONF
  ip netns exec "$S" nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
  wait_tcp "$S" $SA 443
  wait_tcp "$S" $SA 8443
  start_capture
  name=shop.tapwire.test
  resolve=(--resolve "$name:443:$SA" --resolve "$name:8443:$SA")
  ip netns exec "$C" curl -sk -o /dev/null "${resolve[@]}" --http2 "https://$name/index.html"
  ip netns exec "$C" curl -sk -o /dev/null "${resolve[@]}" --http1.1 --tls-max 1.2 "https://$name/index.html"
  sc() { ip netns exec "$C" openssl s_client -connect "$SA:$1" "${@:2}"; }
  # s_client waits for the server's session tickets before it quits.
  (sleep 0.3; echo Q) | sc 443 -servername $name -alpn h2,http/1.1 -tls1_2 -sess_out "$work/s12.pem" >/dev/null 2>&1 || true
  (sleep 0.3; echo Q) | sc 443 -servername $name -alpn h2,http/1.1 -tls1_2 -sess_in "$work/s12.pem" >/dev/null 2>&1 || true
  (sleep 0.3; echo Q) | sc 443 -servername $name -tls1_3 -sess_out "$work/s13.pem" >/dev/null 2>&1 || true
  (sleep 0.3; echo Q) | sc 443 -servername $name -tls1_3 -sess_in "$work/s13.pem" >/dev/null 2>&1 || true
  # TLS 1.3 to the 1.2-only server: a protocol_version alert. A cipher it lacks: handshake_failure.
  sc 8443 -servername $name -tls1_3 </dev/null >/dev/null 2>&1 || true
  sc 8443 -servername $name -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 </dev/null >/dev/null 2>&1 || true
  # No SNI.
  (sleep 0.3; echo Q) | sc 8443 -noservername >/dev/null 2>&1 || true
  stop_capture
  ;;
postgresql)
  # PostgreSQL 15 (Debian) with TLS available; psql in the clear (simple queries, an error,
  # COPY in and out, a refused password), psql with sslmode=require (the SSLRequest becomes a
  # TLS handshake), and psycopg 3 (PYTHON's env) for the extended protocol.
  py=${PYTHON:-python3}
  bin=/usr/lib/postgresql/15/bin
  run_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
  chmod 711 "$work"; mkdir -p "$work/pg/sock"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/pg/k.pem" -out "$work/pg/c.pem" \
    -days 825 -subj /CN=db.tapwire.test 2>/dev/null
  chown -R postgres "$work/pg"; chmod 600 "$work/pg/k.pem"
  run_pg "$bin/initdb" -D "$work/pg/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all 10.77.0.0/24 scram-sha-256" >> "$work/pg/data/pg_hba.conf"
  ip netns exec "$S" setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" \
    -D "$work/pg/data" -c listen_addresses=$SA -c unix_socket_directories="$work/pg/sock" \
    -c ssl=on -c ssl_cert_file="$work/pg/c.pem" -c ssl_key_file="$work/pg/k.pem" -c fsync=off \
    >"$work/pg/log" 2>&1 & pids+=($!)
  wait_tcp "$S" $SA 5432
  psql_sock() { run_pg psql -q -h "$work/pg/sock" -U postgres "$@"; }
  psql_sock -c "CREATE ROLE shop LOGIN PASSWORD 'shop-pass'" -c "CREATE DATABASE shop OWNER shop" >/dev/null
  start_capture
  export PGPASSWORD=shop-pass
  pq() { ip netns exec "$C" psql -q -X -h $SA -U shop -d shop "$@"; }
  PGSSLMODE=disable pq -c "CREATE TABLE books (id int PRIMARY KEY, title text, price numeric)" \
    -c "INSERT INTO books VALUES (1, 'Dune', 9.99), (2, 'Emma', 5.5)" \
    -c "SELECT title FROM books WHERE price > 6" -c "SELECT * FROM missing" >/dev/null 2>&1 || true
  printf '3\tUlysses\t12\n4\tBeloved\t8\n' | PGSSLMODE=disable pq -c "\\copy books FROM STDIN" >/dev/null
  PGSSLMODE=disable pq -c "\\copy books TO STDOUT" >/dev/null
  PGSSLMODE=disable PGPASSWORD=wrong pq -c "SELECT 1" >/dev/null 2>&1 || true
  PGSSLMODE=require pq -c "SELECT 1" >/dev/null
  ip netns exec "$C" "$py" "$here/clients/pg_client.py" $SA shop-pass
  stop_capture
  ;;
websocket)
  # The `websockets` echo server (PYTHON's env) and its client: text, binary, fragments, ping,
  # a large message, closes (normal and an error), permessage-deflate on port 8766.
  py=${PYTHON:-python3}
  ip netns exec "$S" "$py" "$here/servers/ws_server.py" $SA >"$work/ws.log" 2>&1 & pids+=($!)
  wait_tcp "$S" $SA 8765
  start_capture
  ip netns exec "$C" "$py" "$here/clients/ws_client.py" $SA
  stop_capture
  ;;
mysql)
  # MariaDB (Debian) with TLS available; the mariadb client in the clear (queries, USE, an
  # error, a refused password) and with --ssl (a TLS handshake), and mysql-connector-python
  # (PYTHON's env) for prepared statements.
  py=${PYTHON:-python3}
  chmod 711 "$work"; mkdir -p "$work/my"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/my/k.pem" -out "$work/my/c.pem" \
    -days 825 -subj /CN=db.tapwire.test 2>/dev/null
  chown -R mysql "$work/my"
  mariadb-install-db --no-defaults --datadir="$work/my/data" --user=mysql --skip-test-db \
    --auth-root-authentication-method=socket >/dev/null 2>&1
  ip netns exec "$S" mariadbd --no-defaults --user=mysql --datadir="$work/my/data" \
    --socket="$work/my/sock" --pid-file="$work/my/pid" --log-error="$work/my/log" \
    --bind-address=$SA --port=3306 --ssl-cert="$work/my/c.pem" --ssl-key="$work/my/k.pem" \
    --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=16M & pids+=($!)
  wait_tcp "$S" $SA 3306
  mariadb -S "$work/my/sock" -u root -e "CREATE DATABASE shop; CREATE USER 'shop'@'%' IDENTIFIED BY 'shop-pass'; GRANT ALL ON shop.* TO 'shop'@'%'; CREATE TABLE shop.books (id int PRIMARY KEY, title text); INSERT INTO shop.books VALUES (1, 'Dune'), (2, 'Emma');"
  start_capture
  my() { ip netns exec "$C" mariadb -h $SA -u shop -pshop-pass "$@"; }
  my --skip-ssl shop -e "SELECT title FROM books WHERE id > 0; INSERT INTO books VALUES (3, 'Ulysses'); USE shop; SELECT * FROM missing" >/dev/null 2>&1 || true
  ip netns exec "$C" mariadb -h $SA -u shop -pwrong --skip-ssl shop -e "SELECT 1" >/dev/null 2>&1 || true
  my --ssl --ssl-verify-server-cert=0 shop -e "SELECT 1" >/dev/null 2>&1 || true
  ip netns exec "$C" "$py" "$here/clients/mysql_client.py" $SA shop-pass
  stop_capture
  ;;
*) echo "record.sh: unknown scenario $scenario" >&2; exit 2 ;;
esac
