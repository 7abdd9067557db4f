//! The mid-connection rule on real captures: cut the start off every HTTP/2 and gRPC
//! capture (drop its first K packets, for every K), and drop single packets from its middle
//! (a gap), and check that no header value, method, path, status or gRPC field tapwire
//! emits differs from what it emits for the same stream with the whole capture.
//!
//! The captures: `../shared/corpus/http2` and `grpc` (skipped visibly when absent) and the
//! project's own HTTP/2 fixtures under `tests/golden/graphql` and `tests/golden/grpc`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pipeline::Pipeline;
use schemas::Exchange;

/// (lower port, higher port, stream id).
type Key = (u16, u16, u32);
/// (request side, name, value).
type Fields = BTreeSet<(bool, String, String)>;

struct Packet {
    link: pipeline::decode::LinkType,
    ts: u64,
    data: Vec<u8>,
    orig_len: u32,
}

fn packets(file: &Path) -> Vec<Packet> {
    let mut v = Vec::new();
    let _ = pipeline::source::read_file(file, |f| {
        v.push(Packet {
            link: f.link,
            ts: f.ts,
            data: f.data.to_vec(),
            orig_len: f.orig_len,
        })
    });
    v
}

fn run<'a>(pkts: impl Iterator<Item = &'a Packet>) -> Vec<Exchange> {
    let mut pipe = Pipeline::default();
    let mut out = Vec::new();
    for p in pkts {
        pipe.packet(p.link, p.ts, &p.data, p.orig_len, &mut out);
    }
    pipe.finish(&mut out);
    out
}

/// Every value an exchange states, keyed by its stream.
fn facts(events: &[Exchange]) -> BTreeMap<Key, Fields> {
    let mut m: BTreeMap<Key, Fields> = BTreeMap::new();
    for e in events {
        let Some(h2) = &e.http2 else { continue };
        let (a, b) = (e.client.port, e.server.port);
        let f = m.entry((a.min(b), a.max(b), h2.stream_id)).or_default();
        let mut add = |side: bool, n: &str, v: String| {
            f.insert((side, n.to_string(), v));
        };
        if let Some(h) = &e.http {
            if let Some(m) = &h.request.method {
                add(true, ":method", m.clone());
            }
            for (n, v) in h.request.header.iter() {
                add(true, n, v.to_string());
            }
            if let Some(r) = &h.response {
                if let Some(c) = r.status_code {
                    add(false, ":status", c.to_string());
                }
                for (n, v) in r.header.iter() {
                    add(false, n, v.to_string());
                }
            }
        }
        if let Some(u) = &e.url {
            if let Some(p) = &u.path {
                add(true, ":path", p.clone());
            }
            if let Some(q) = &u.query {
                add(true, "?query", q.clone());
            }
            if let Some(s) = &u.scheme {
                add(true, ":scheme", s.clone());
            }
        }
        if let Some(r) = &e.rpc {
            if let Some(m) = &r.method {
                add(true, "rpc.method", m.clone());
            }
            if let Some(s) = &r.response {
                add(false, "rpc.status", s.status_code.clone());
            }
        }
        if let Some(g) = &e.graphql {
            if let Some(t) = &g.operation.kind {
                add(true, "graphql.type", t.clone());
            }
            if let Some(n) = &g.operation.name {
                add(true, "graphql.name", n.clone());
            }
        }
    }
    m
}

fn captures() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(corpus) = common::corpus() {
        for dir in ["http2", "grpc"] {
            v.extend(common::captures_under(&corpus.join(dir)));
        }
    } else {
        common::skip("../shared/corpus is absent: pickup checked on the project's fixtures only");
    }
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    v.extend(common::captures_under(&own.join("grpc")));
    v.extend(
        common::captures_under(&own.join("graphql"))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("h2"))
            }),
    );
    v
}

/// Values of a partial run that the whole run does not state for the same stream.
fn wrong(partial: &[Exchange], full: &BTreeMap<Key, Fields>) -> Vec<String> {
    let mut bad = Vec::new();
    for (key, fields) in facts(partial) {
        let Some(whole) = full.get(&key) else {
            // A stream the whole run does not have cannot be checked; it must state nothing.
            if !fields.is_empty() {
                bad.push(format!(
                    "stream {key:?} only in the partial run: {fields:?}"
                ));
            }
            continue;
        };
        for f in fields.difference(whole) {
            bad.push(format!("stream {key:?}: {f:?}"));
        }
    }
    bad
}

#[test]
fn cutting_the_start_or_a_packet_never_yields_a_wrong_value() {
    let mut runs = 0;
    let mut with_unknown = 0;
    let mut failures = Vec::new();
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let pkts = packets(&file);
        let full = facts(&run(pkts.iter()));
        for k in 1..pkts.len() {
            let partial = run(pkts[k..].iter());
            with_unknown += partial
                .iter()
                .filter(|e| {
                    e.http2
                        .as_ref()
                        .is_some_and(|h| h.unknown_header_fields > 0)
                })
                .count();
            for w in wrong(&partial, &full) {
                failures.push(format!("{name} without the first {k} packets: {w}"));
            }
            let gap = run(pkts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, p)| p));
            for w in wrong(&gap, &full) {
                failures.push(format!("{name} without packet {k}: {w}"));
            }
            runs += 2;
        }
    }
    failures.truncate(40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{runs} partial runs, {with_unknown} exchanges with fields left out as unknown");
    assert!(runs > 100, "only {runs} partial runs");
}
