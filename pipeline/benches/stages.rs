//! Per-stage benchmarks on the project's recorded captures (loaded into memory first):
//! decode only, and the whole pipeline, on HTTP/1 (nginx), DNS (dnsmasq), Redis
//! (redis-server), AMQP (RabbitMQ with pika), Kafka (tansu with confluent-kafka), HTTP/2
//! (GraphQL on Hypercorn with httpx and curl) and gRPC (grpcio); and the HPACK decoder alone
//! on header blocks a real encoder (loona-hpack) produced for browser-like requests.
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
        ("http2", "tests/golden/graphql/strawberry-graphql-h2.pcap"),
        ("grpc", "tests/golden/grpc/grpcio-bookshop.pcap"),
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

/// Request header blocks as a client connection sends them (one encoder, so later blocks
/// are mostly dynamic-table references), with Huffman-coded values.
fn hpack_blocks() -> Vec<Vec<u8>> {
    let mut enc = loona_hpack::Encoder::new();
    let huff = |s: &str| {
        let mut v = Vec::new();
        httlib_huffman::encode(s.as_bytes(), &mut v).unwrap();
        v
    };
    let mut blocks = Vec::new();
    for i in 0..1000u32 {
        let path = format!("/api/v1/orders/{}/items?page={}", i % 50, i % 7);
        let trace = format!(
            "00-{:032x}-{:016x}-01",
            u128::from(i) * 7919,
            u64::from(i) * 104_729
        );
        let mut b = enc.encode(vec![
            (&b":method"[..], &b"GET"[..]),
            (b":scheme", b"http"),
            (b":path", path.as_bytes()),
            (b":authority", b"orders.shop.svc.cluster.local:8080"),
            (
                b"user-agent",
                b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
            ),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"gzip, deflate, br"),
            (b"traceparent", trace.as_bytes()),
        ]);
        // One Huffman-coded literal per block, as browsers send most values.
        let (n, v) = (huff("x-id"), huff("x-request-id-value-with-some-length"));
        b.push(0x00);
        b.push(0x80 | n.len() as u8);
        b.extend(n);
        b.push(0x80 | v.len() as u8);
        b.extend(v);
        blocks.push(b);
    }
    blocks
}

fn hpack(c: &mut Criterion) {
    use pipeline::protocols::http2::hpack::{Decoder, Field, huffman_decode};
    let blocks = hpack_blocks();
    let mut g = c.benchmark_group("hpack");
    g.throughput(Throughput::Elements(blocks.len() as u64));
    g.bench_function("decode_1000_request_blocks", |b| {
        b.iter(|| {
            let mut d = Decoder::new();
            let mut n = 0usize;
            for block in &blocks {
                d.decode(block, |f| {
                    if let Field::Known { value, .. } = f {
                        n += value.len();
                    }
                })
                .unwrap();
            }
            n
        })
    });
    let mut coded = Vec::new();
    httlib_huffman::encode(
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        &mut coded,
    )
    .unwrap();
    g.throughput(Throughput::Bytes(coded.len() as u64));
    g.bench_function("huffman_user_agent", |b| {
        b.iter(|| huffman_decode(&coded).unwrap().len())
    });
    g.finish();
}

criterion_group!(benches, bench, hpack);
criterion_main!(benches);
