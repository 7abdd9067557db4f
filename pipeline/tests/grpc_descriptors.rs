//! gRPC messages decoded with a user-supplied descriptor set, on the project's own recording
//! (`integration/record.sh grpc`: grpcio server and client for
//! `integration/servers/proto/bookshop.proto`, whose descriptor set the script writes next to
//! the capture). Without descriptors nothing about message content is reported.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipeline::dissect::protobuf::Descriptors;
use pipeline::{Config, Pipeline};
use schemas::{Exchange, Protocol, Status};
use serde_json::json;

fn fixture(ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/grpc/grpcio-bookshop.{ext}"))
}

fn dissect(descriptors: Option<Descriptors>) -> Vec<Exchange> {
    let mut cfg = Config::default();
    cfg.flow.descriptors = descriptors.map(Arc::new);
    let mut pipe = Pipeline::new(cfg);
    let mut out = Vec::new();
    pipeline::source::read_file(&fixture("pcap"), |f| {
        pipe.packet(f.link, f.ts, f.data, f.orig_len, &mut out)
    })
    .unwrap();
    pipe.finish(&mut out);
    out
}

#[test]
fn every_streaming_kind_decodes_with_descriptors() {
    let desc = Descriptors::load(&fixture("desc")).unwrap();
    let events = dissect(Some(desc));
    let calls: Vec<(String, String, Status)> = events
        .iter()
        .map(|e| {
            let rpc = e.rpc.as_ref().unwrap();
            (
                rpc.method.clone().unwrap(),
                rpc.response.as_ref().unwrap().status_code.clone(),
                e.status,
            )
        })
        .collect();
    let m = |s: &str| format!("tapwire.test.Bookshop/{s}");
    assert_eq!(
        calls,
        vec![
            (m("GetBook"), "OK".into(), Status::Ok),
            (m("ListBooks"), "OK".into(), Status::Ok),
            (m("AddBooks"), "OK".into(), Status::Ok),
            (m("Chat"), "OK".into(), Status::Ok),
            (m("AddBooks"), "OK".into(), Status::Ok),
            (m("GetBook"), "NOT_FOUND".into(), Status::Error),
        ]
    );
    assert!(events.iter().all(|e| e.protocol == Protocol::Grpc));
    let g = |i: usize| events[i].grpc.as_ref().unwrap();
    // Unary.
    assert_eq!(g(0).request.decoded, vec![json!({"id": "1"})]);
    assert_eq!(g(0).response.decoded[0]["title"], "The Dispossessed");
    // Server streaming: one request, two replies.
    assert_eq!((g(1).request.count, g(1).response.count), (1, 2));
    assert_eq!(g(1).response.decoded[1]["year"], 1993);
    // Client streaming.
    assert_eq!(g(2).request.decoded.len(), 2);
    assert_eq!(g(2).response.decoded, vec![json!({"added": 2})]);
    // Bidirectional.
    assert_eq!(
        g(3).response.decoded,
        vec![json!({"text": "re: hello"}), json!({"text": "re: bye"})]
    );
    // A gzip-compressed message is inflated before decoding.
    assert_eq!(g(4).encoding.as_deref(), Some("gzip"));
    assert_eq!(g(4).request.compressed, 1);
    assert_eq!(g(4).request.decoded[0]["author"], "Anonymous");
    // The error carries its message; no reply message.
    assert_eq!(g(5).status_message.as_deref(), Some("no book 404"));
    assert_eq!(g(5).response.count, 0);
}

#[test]
fn without_descriptors_nothing_is_guessed() {
    let events = dissect(None);
    assert_eq!(events.len(), 6);
    for e in &events {
        let g = e.grpc.as_ref().unwrap();
        assert!(g.request.decoded.is_empty() && g.response.decoded.is_empty());
        assert!(g.request.count > 0);
    }
}

#[test]
fn a_file_that_is_not_a_descriptor_set_is_refused() {
    let err = Descriptors::load(&fixture("pcap")).unwrap_err().to_string();
    assert!(
        err.contains("grpcio-bookshop.pcap is not a protobuf FileDescriptorSet"),
        "{err}"
    );
    assert!(Descriptors::load(Path::new("/nonexistent/x.desc")).is_err());
}
