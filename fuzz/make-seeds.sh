#!/usr/bin/env bash
# Build the fuzz seed corpora from the project's own recorded captures (needs tshark, xxd).
#   seeds/http1/, seeds/dns/, seeds/redis/, seeds/amqp/, seeds/kafka/: one file per TCP connection: [piece size][split][client bytes][server bytes]
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
for f in $fix/*/*.pcap; do
  editcap -r "$f" "seeds/pipeline/$(basename "$f" .pcap)-head.pcap" 1-24
done
ls -la seeds/*
