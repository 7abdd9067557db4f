//! The benchmark capture is dissected into exactly the exchanges the generator wrote.

use pipeline::Pipeline;
use schemas::Protocol;
use tapwire_bench::{GenConfig, generate};

#[test]
fn every_generated_exchange_is_found() {
    let cfg = GenConfig {
        http_exchanges: 3_000,
        dns_every: 3,
        concurrency: 200,
        seed: 42,
    };
    let mut buf = Vec::new();
    let sum = generate(&mut buf, &cfg).expect("generate");
    let mut pipe = Pipeline::default();
    let mut out = Vec::new();
    pipeline::source::read(&buf[..], std::path::Path::new("generated"), |f| {
        pipe.packet(f.link, f.ts, f.data, f.orig_len, &mut out)
    })
    .expect("read back");
    pipe.finish(&mut out);
    let http = out.iter().filter(|e| e.protocol == Protocol::Http).count() as u64;
    let dns = out.iter().filter(|e| e.protocol == Protocol::Dns).count() as u64;
    assert_eq!((http, dns), (sum.http_exchanges, sum.dns_lookups));
    assert!(out.iter().all(
        |e| e.status != schemas::Status::Incomplete && e.status != schemas::Status::NoResponse
    ));
    let stats = pipe.stats();
    assert_eq!(stats.flows.reassembly.gaps, 0);
    assert_eq!(stats.anomalies.total(), 0, "{:?}", stats.anomalies);
}
