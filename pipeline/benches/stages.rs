//! Per-stage benchmarks on the project's recorded captures (loaded into memory first):
//! decode only, and the whole pipeline, on HTTP/1 (nginx), DNS (dnsmasq), Redis
//! (redis-server), AMQP (RabbitMQ with pika) and Kafka (tansu with confluent-kafka).
//! Run: `cargo bench -p tapwire-pipeline --bench stages`.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline::decode::{Decoder, LinkType};
use pipeline::{Pipeline, source};

struct Frames(Vec<(LinkType, u64, Vec<u8>, u32)>);

fn load(rel: &str) -> Frames {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let mut v = Vec::new();
    source::read_file(&path, |f| {
        v.push((f.link, f.ts, f.data.to_vec(), f.orig_len))
    })
    .expect("fixture readable");
    Frames(v)
}

fn bench(c: &mut Criterion) {
    for (name, rel) in [
        (
            "http1",
            "tests/golden/http1/nginx-keepalive-pipelining.pcap",
        ),
        ("dns", "tests/golden/dns/dnsmasq-records.pcap"),
        ("redis", "tests/golden/redis/redis-server-mixed.pcap"),
        ("amqp", "tests/golden/amqp/rabbitmq-pika.pcap"),
        ("kafka", "tests/golden/kafka/tansu-confluent.pcap"),
    ] {
        let frames = load(rel);
        let bytes: usize = frames.0.iter().map(|f| f.2.len()).sum();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("decode", |b| {
            b.iter(|| {
                let mut d = Decoder::default();
                let mut n = 0usize;
                for (l, ts, data, orig) in &frames.0 {
                    d.decode(*l, *ts, data, *orig, |s| n += s.payload.len());
                }
                n
            })
        });
        g.bench_function("pipeline", |b| {
            let mut out = Vec::new();
            b.iter(|| {
                let mut p = Pipeline::default();
                for (l, ts, data, orig) in &frames.0 {
                    p.packet(*l, *ts, data, *orig, &mut out);
                }
                p.finish(&mut out);
                let n = out.len();
                out.clear();
                n
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
