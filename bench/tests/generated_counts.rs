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

/// The eight-protocol mix is dissected into exactly the exchanges the generator wrote, per
/// protocol, with nothing left incomplete or anomalous.
#[test]
fn every_exchange_of_the_mix_is_found() {
    use tapwire_bench::{MixConfig, MixProtocol, WEIGHTS, generate_mix};
    let cfg = MixConfig {
        flows: 3_000,
        concurrency: 300,
        seed: 42,
    };
    let mut buf = Vec::new();
    let sum = generate_mix(&mut buf, &cfg).expect("generate");
    let mut pipe = Pipeline::default();
    let mut out = Vec::new();
    pipeline::source::read(&buf[..], std::path::Path::new("mix"), |f| {
        pipe.packet(f.link, f.ts, f.data, f.orig_len, &mut out)
    })
    .expect("read back");
    pipe.finish(&mut out);
    let kind = |e: &schemas::Exchange| match e.protocol {
        Protocol::Http if e.http2.is_some() => Some(MixProtocol::H2c),
        Protocol::Http => Some(MixProtocol::Http1),
        Protocol::Dns => Some(MixProtocol::Dns),
        Protocol::Redis => Some(MixProtocol::Redis),
        Protocol::Kafka => Some(MixProtocol::Kafka),
        Protocol::Grpc => Some(MixProtocol::Grpc),
        Protocol::Amqp => Some(MixProtocol::Amqp),
        Protocol::Graphql => Some(MixProtocol::Graphql),
        _ => None,
    };
    let found: Vec<u64> = WEIGHTS
        .iter()
        .map(|(p, _)| out.iter().filter(|e| kind(e) == Some(*p)).count() as u64)
        .collect();
    assert_eq!(found, sum.exchanges);
    assert!(sum.flows.iter().all(|&n| n > 0), "{:?}", sum.flows);
    let packets_per_flow = sum.packets as f64 / sum.flows.iter().sum::<u64>() as f64;
    assert!(
        (9.0..14.0).contains(&packets_per_flow),
        "{packets_per_flow}"
    );
    assert!(out.iter().all(
        |e| e.status != schemas::Status::Incomplete && e.status != schemas::Status::NoResponse
    ));
    let stats = pipe.stats();
    assert_eq!(stats.flows.reassembly.gaps, 0);
    assert_eq!(stats.flows.opaque, 0);
    assert_eq!(stats.anomalies.total(), 0, "{:?}", stats.anomalies);
}

/// tshark, the reference dissector, reads the mix as the protocols it is meant to be: as many
/// HTTP/1 requests (GraphQL included), DNS answers, Kafka requests, AMQP publishes and HTTP/2
/// and gRPC requests as the generator says it wrote.
#[test]
fn tshark_reads_the_mix_as_the_protocols_it_is() {
    use tapwire_bench::{MixConfig, MixProtocol, WEIGHTS, generate_mix};
    if std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("SKIP: tshark is not installed");
        return;
    }
    let cfg = MixConfig {
        flows: 1_500,
        concurrency: 200,
        seed: 11,
    };
    let mut buf = Vec::new();
    let sum = generate_mix(&mut buf, &cfg).expect("generate");
    let path = std::env::temp_dir().join(format!("tapwire-mix-{}.pcap", std::process::id()));
    std::fs::write(&path, &buf).expect("write");
    let count = |filter: &str| -> u64 {
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-d", "tcp.port==50051,http2", "-Y", filter, "-T", "fields"])
            .args(["-e", "frame.number"])
            .output()
            .expect("tshark runs");
        String::from_utf8_lossy(&out.stdout).lines().count() as u64
    };
    let of = |p: MixProtocol| {
        WEIGHTS
            .iter()
            .position(|(q, _)| *q == p)
            .map_or((0, 0), |i| (sum.exchanges[i], sum.flows[i]))
    };
    let got = [
        count("http.request"),
        count("dns.flags.response == 1"),
        count("kafka.api_key && tcp.dstport == 9092"),
        count("amqp.method.class == 60 && amqp.method.method == 40"),
        count("http2.headers.path && tcp.dstport == 8080"),
        count("http2.headers.path && tcp.dstport == 50051"),
    ];
    let _ = std::fs::remove_file(&path);
    let want = [
        of(MixProtocol::Http1).0 + of(MixProtocol::Graphql).0,
        of(MixProtocol::Dns).0,
        of(MixProtocol::Kafka).0,
        of(MixProtocol::Amqp).1,
        of(MixProtocol::H2c).0,
        of(MixProtocol::Grpc).0,
    ];
    assert_eq!(got, want);
}

/// A SYN flood is one new flow per packet, none dissected, and the flow table's cap holds it
/// (the oldest flows are evicted and counted).
#[test]
fn a_syn_flood_is_a_flow_per_packet_within_the_cap() {
    let mut buf = Vec::new();
    let sum = tapwire_bench::generate_syn_flood(&mut buf, 5_000, 7).expect("generate");
    assert_eq!((sum.packets, sum.connections), (5_000, 5_000));
    let mut cfg = pipeline::Config::default();
    cfg.flow.max_flows = 1_000;
    let mut pipe = Pipeline::new(cfg);
    let mut out = Vec::new();
    pipeline::source::read(&buf[..], std::path::Path::new("generated"), |f| {
        pipe.packet(f.link, f.ts, f.data, f.orig_len, &mut out)
    })
    .expect("read back");
    let stats = pipe.stats();
    assert_eq!(stats.flows.created, 5_000, "every SYN is a flow of its own");
    assert_eq!(stats.flows.evicted, 4_000, "the cap of 1000 flows held");
    pipe.finish(&mut out);
    assert!(out.is_empty(), "no payload, no exchange: {:?}", out.first());
}
