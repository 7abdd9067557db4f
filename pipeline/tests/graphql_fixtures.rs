//! GraphQL over HTTP/1.1 and HTTP/2 from a real server (Strawberry on Hypercorn, recorded by
//! `integration/record.sh graphql-h1|graphql-h2` with httpx and curl clients): every request
//! form tapwire reads, the fields it reports, and variables never copied into events.

mod common;

use std::path::{Path, PathBuf};

use schemas::{Exchange, Protocol, Status};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/graphql")
        .join(name)
}

/// (protocol, type, name, errors, batch size, hash prefix, status) of an exchange.
type Row = (
    Protocol,
    Option<String>,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<String>,
    Status,
);

fn row(e: &Exchange) -> Row {
    let g = e.graphql.as_ref();
    (
        e.protocol,
        g.and_then(|g| g.operation.kind.clone()),
        g.and_then(|g| g.operation.name.clone()),
        g.and_then(|g| g.errors.as_ref().map(|e| e.count)),
        g.and_then(|g| g.batch.as_ref().map(|b| b.size)),
        g.and_then(|g| {
            g.persisted_query
                .as_ref()
                .map(|p| p.sha256_hash[..8].to_string())
        }),
        e.status,
    )
}

fn r(
    protocol: Protocol,
    kind: Option<&str>,
    name: Option<&str>,
    errors: Option<u64>,
    batch: Option<u64>,
    hash: Option<&str>,
    status: Status,
) -> Row {
    (
        protocol,
        kind.map(str::to_string),
        name.map(str::to_string),
        errors,
        batch,
        hash.map(str::to_string),
        status,
    )
}

/// The requests `integration/clients/graphql_client.py` sends, in order.
fn common_rows(h2: bool) -> Vec<Row> {
    use Protocol::{Graphql as G, Http as H};
    use Status::{Error as E, Ok as O};
    let mut v = vec![
        r(G, Some("query"), Some("AllBooks"), Some(0), None, None, O),
        r(G, Some("query"), Some("B"), Some(0), None, None, O),
        r(G, Some("mutation"), Some("AddBook"), Some(0), None, None, O),
        r(G, Some("query"), None, Some(1), None, None, E),
        r(G, Some("query"), Some("First"), Some(1), Some(2), None, E),
        // A persisted query the server does not know: hash only, answered 400 in text.
        r(G, None, None, None, None, Some("ecf4edb4"), E),
        r(G, Some("query"), Some("ByGet"), Some(0), None, None, O),
    ];
    if !h2 {
        // `application/graphql`, which Strawberry does not accept (415, not JSON).
        v.push(r(G, Some("query"), None, None, None, None, E));
    }
    // An unparsable document is still GraphQL: typed and named by how it starts, failed by
    // the server's `errors`. JSON without a query is not GraphQL.
    v.push(r(G, Some("query"), Some("Broken"), Some(1), None, None, E));
    v.push(r(H, None, None, None, None, None, E));
    v
}

#[test]
fn graphql_over_http1() {
    let (events, stats) = common::dissect(&[fixture("strawberry-graphql-h1.pcap")]);
    let rows: Vec<Row> = events.iter().map(row).collect();
    assert_eq!(rows, common_rows(false));
    assert!(
        events
            .iter()
            .all(|e| e.network.protocol.as_ref().unwrap().version == "1.1")
    );
    assert_eq!(stats.anomalies.0.get("graphql.parse_error"), Some(&1));
}

#[test]
fn graphql_over_http2_with_interleaved_streams_and_h2c_upgrade() {
    let (mut events, _) = common::dissect(&[fixture("strawberry-graphql-h2.pcap")]);
    assert!(
        events
            .iter()
            .all(|e| e.network.protocol.as_ref().unwrap().version == "2")
    );
    // The upgraded connection comes last (its own client port).
    let upgraded = events.pop().unwrap();
    assert_eq!(upgraded.http2.as_ref().unwrap().stream_id, 1);
    assert_eq!(
        row(&upgraded),
        r(
            Protocol::Graphql,
            Some("query"),
            Some("Upgraded"),
            Some(0),
            None,
            None,
            Status::Ok
        )
    );
    // Four concurrent queries on one connection, in whatever order they finished.
    let mut parallel: Vec<String> = events
        .split_off(events.len() - 4)
        .iter()
        .map(|e| e.graphql.as_ref().unwrap().operation.name.clone().unwrap())
        .collect();
    parallel.sort();
    assert_eq!(
        parallel,
        ["Parallel0", "Parallel1", "Parallel2", "Parallel3"]
    );
    let rows: Vec<Row> = events.iter().map(row).collect();
    assert_eq!(rows, common_rows(true));
}

#[test]
fn variables_never_reach_events() {
    for f in ["strawberry-graphql-h1.pcap", "strawberry-graphql-h2.pcap"] {
        let (events, _) = common::dissect(&[fixture(f)]);
        let text = common::ndjson(&events);
        assert!(text.contains("AddBook"), "{f}: the mutation is there");
        assert!(
            !text.contains("tapwire-graphql-token-5d2b"),
            "{f}: a variable leaked"
        );
        assert!(!text.contains("Frank Herbert"), "{f}: a variable leaked");
    }
}
