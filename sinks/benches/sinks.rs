//! What each sink costs per exchange, on the project's recorded exchanges (every protocol's
//! golden events): RED metrics (`RedMetrics::record`, on the capture worker), the
//! semantic-convention mapping an OTLP span starts from (`semconv::span`), the whole encoded
//! OTLP request (`otlp::request`: spans, resources, protobuf; on the exporter task), and the
//! JSON line the Kafka sink sends (`json_line`, shared with API subscribers; the Kafka sink
//! runs it on its own thread). The OTLP and Kafka sinks only queue a reference on the worker.
//! Run: `cargo bench -p tapwire-sinks --bench sinks`.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schemas::Exchange;
use sinks::red::{RedConfig, RedMetrics};
use sinks::route::{RouteConfig, Routes};
use sinks::{SinkMetrics, json_line, semconv};

fn events() -> Vec<Exchange> {
    let mut v = Vec::new();
    for f in [
        "http1/nginx-keepalive-pipelining.ndjson",
        "grpc/grpcio-bookshop.ndjson",
        "redis/redis-server-mixed.ndjson",
        "kafka/tansu-confluent.ndjson",
        "amqp/rabbitmq-pika.ndjson",
        "dns/dnsmasq-records.ndjson",
        "graphql/strawberry-graphql-h1.ndjson",
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipeline/tests/golden")
            .join(f);
        for l in std::fs::read_to_string(p).expect("golden").lines() {
            v.push(serde_json::from_str(l).expect("event"));
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let evs = events();
    let mut g = c.benchmark_group("sinks");
    g.throughput(Throughput::Elements(evs.len() as u64));
    let r = prometheus::Registry::new();
    let red = RedMetrics::new(
        &r,
        RedConfig::default(),
        Arc::new(Routes::new(RouteConfig::default())),
        SinkMetrics::new(&r).expect("registers"),
    )
    .expect("registers");
    g.bench_function("red_record", |b| {
        b.iter(|| {
            for e in &evs {
                red.record(e);
            }
        })
    });
    let routes = Routes::new(RouteConfig::default());
    g.bench_function("semconv_span", |b| {
        b.iter(|| {
            for e in &evs {
                std::hint::black_box(semconv::span(e, &routes, semconv::Options::default()));
            }
        })
    });
    let batch: Vec<Arc<Exchange>> = evs.iter().cloned().map(Arc::new).collect();
    let cfg = sinks::otlp::OtlpConfig::new("http://127.0.0.1:4317", sinks::otlp::Transport::Grpc);
    g.bench_function("otlp_request", |b| {
        b.iter(|| std::hint::black_box(sinks::otlp::request(&batch, &routes, &cfg).len()))
    });
    g.bench_function("json_line", |b| {
        b.iter(|| {
            for e in &evs {
                std::hint::black_box(json_line(e).map(|l| l.len()));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
