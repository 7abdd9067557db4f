#!/usr/bin/env bash
# Build the fuzz seed corpora from the project's own recorded captures (needs tshark, xxd).
#   seeds/http1/, seeds/dns/, seeds/redis/, seeds/amqp/, seeds/kafka/, seeds/tls/, seeds/postgresql/: one file per TCP connection: [piece size][split][client bytes][server bytes]
#   seeds/pipeline/: the first packets of each fixture capture
set -euo pipefail
cd "$(dirname "$0")"
fix=../pipeline/tests/golden
stream_seed() { # pcap stream-index out
  local c s
  c=$(tshark -r "$1" -Y "tcp.stream==$2 && tcp.len>0 && tcp.dstport==${4}" -T fields -e tcp.payload | tr -d '\n')
  s=$(tshark -r "$1" -Y "tcp.stream==$2 && tcp.len>0 && tcp.srcport==${4}" -T fields -e tcp.payload | tr -d '\n')
  local clen=$(( ${#c} / 2 )) slen=$(( ${#s} / 2 ))
  [ $((clen + slen)) -gt 0 ] || return 0
  local split=$(( clen * 256 / (clen + slen) ))
  { printf "%02x%02x" 7 "$split"; echo -n "$c$s"; } | xxd -r -p > "$3"
}
for i in $(tshark -r $fix/http1/nginx-keepalive-pipelining.pcap -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/http1/nginx-keepalive-pipelining.pcap "$i" "seeds/http1/nginx-$i" 80
done
for i in $(tshark -r $fix/dns/dnsmasq-records.pcap -Y tcp -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/dns/dnsmasq-records.pcap "$i" "seeds/dns/dnsmasq-tcp-$i" 53
done
mkdir -p seeds/redis
for i in $(tshark -r $fix/redis/redis-server-mixed.pcap -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/redis/redis-server-mixed.pcap "$i" "seeds/redis/redis-$i" 6379
done
# The 300 kB SET is a poor seed (slow to mutate); keep the small connections only.
find seeds/redis -size +8k -delete
mkdir -p seeds/amqp
for i in $(tshark -r $fix/amqp/rabbitmq-pika.pcap -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/amqp/rabbitmq-pika.pcap "$i" "seeds/amqp/rabbitmq-$i" 5672
done
mkdir -p seeds/kafka
for i in $(tshark -r $fix/kafka/tansu-confluent.pcap -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/kafka/tansu-confluent.pcap "$i" "seeds/kafka/tansu-$i" 9092
done
mkdir -p seeds/tls
for i in $(tshark -r $fix/tls/nginx-tls.pcap -Y "tcp.port==443" -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/tls/nginx-tls.pcap "$i" "seeds/tls/nginx-$i" 443
done
mkdir -p seeds/mysql
for i in $(tshark -r $fix/mysql/mariadb-cli-connector.pcap -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/mysql/mariadb-cli-connector.pcap "$i" "seeds/mysql/mariadb-$i" 3306
done
mkdir -p seeds/postgresql
for i in $(tshark -r $fix/postgresql/postgres-psql-psycopg.pcap -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/postgresql/postgres-psql-psycopg.pcap "$i" "seeds/postgresql/pg-$i" 5432
done
# WebSocket seeds: each connection's bytes after its 101 (frames only).
mkdir -p seeds/websocket
for port in 8765 8766; do
  for i in $(tshark -r $fix/websocket/websockets-echo.pcap -d tcp.port==8766,http -Y "tcp.port==$port" -T fields -e tcp.stream | sort -un); do
    c=$(tshark -r $fix/websocket/websockets-echo.pcap -d tcp.port==8766,http -Y "tcp.stream==$i && websocket && tcp.dstport==$port" -T fields -e tcp.payload | tr -d '\n')
    s=$(tshark -r $fix/websocket/websockets-echo.pcap -d tcp.port==8766,http -Y "tcp.stream==$i && websocket && tcp.srcport==$port" -T fields -e tcp.payload | tr -d '\n')
    { printf "%02x%02x" 7 128; echo -n "$c$s"; } | xxd -r -p > "seeds/websocket/ws-$i"
  done
done
mkdir -p seeds/http2 seeds/hpack seeds/http2_frame
for i in $(tshark -r $fix/graphql/strawberry-graphql-h2.pcap -Y tcp -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/graphql/strawberry-graphql-h2.pcap "$i" "seeds/http2/strawberry-$i" 8000
done
for i in $(tshark -r $fix/grpc/grpcio-bookshop.pcap -Y tcp -T fields -e tcp.stream | sort -un); do
  stream_seed $fix/grpc/grpcio-bookshop.pcap "$i" "seeds/http2/grpcio-$i" 50051
done
hpack_seed() { # pcap port out: every header block of one direction, 0xff between blocks
  tshark -r "$1" -d "tcp.port==$2,http2" -Y "tcp.dstport==$2 && http2.headers" -T fields -e http2.headers \
    | tr ',' '\n' | tr -d ':' | awk 'BEGIN{printf "00"} {printf "%sff", $0}' | xxd -r -p > "$3"
}
hpack_seed $fix/graphql/strawberry-graphql-h2.pcap 8000 seeds/hpack/strawberry-requests
hpack_seed $fix/grpc/grpcio-bookshop.pcap 50051 seeds/hpack/grpcio-requests
cp seeds/http2/grpcio-0 seeds/http2_frame/grpcio-0
# Seeds from the shared corpus stay outside the repository (corpus-seeds/ is ignored by git):
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O http2 corpus/http2 seeds/http2 corpus-seeds/http2
if [ -d ../../shared/corpus ]; then
  mkdir -p corpus-seeds/http2 corpus-seeds/hpack
  for f in ../../shared/corpus/http2/*.pcap* ../../shared/corpus/grpc/*.pcap*; do
    b=$(basename "$f"); b=${b%.*}
    port=$(tshark -r "$f" -q -z conv,tcp 2>/dev/null | awk '/<->/{print $3; exit}' | sed 's/.*://')
    [ -n "$port" ] || continue
    stream_seed "$f" 0 "corpus-seeds/http2/$b" "$port" || true
    hpack_seed "$f" "$port" "corpus-seeds/hpack/$b" || true
  done
fi
for f in $fix/*/*.pcap; do
  editcap -r "$f" "seeds/pipeline/$(basename "$f" .pcap)-head.pcap" 1-24
done
ls -la seeds/*
