//! tapwire against tshark on HTTP/2 and gRPC captures, field by field.
//!
//! For every HTTP/2 stream tshark decodes (`-d tcp.port==P,http2` on the server ports tapwire
//! found), with its header fields (name and value; tshark shows `<unknown>` for fields that
//! refer to header-table entries it never saw):
//! - every field tshark decodes is in tapwire's event for that stream (`:method`, `:path`,
//!   `:scheme` and `:status` as `http.request.method`, `url.*` and the status code, the rest
//!   as request or response header values, secrets as `REDACTED`);
//! - every value tapwire reports is one tshark decoded for that stream: tapwire never emits a
//!   header value tshark does not have (the mid-connection rule);
//! - DATA payload bytes per direction equal tapwire's body sizes, and the gRPC messages
//!   tshark counts equal tapwire's, unless the capture lost bytes.
//!
//! Skipped visibly without tshark or `../shared/corpus`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use schemas::Exchange;
use serde_json::Value;

/// Streams keyed by (lower port, higher port, stream id).
type Key = (u16, u16, u32);

#[derive(Debug, Default)]
struct TsharkStream {
    /// (sent by the client, name, value) of every decoded field.
    fields: BTreeSet<(bool, String, String)>,
    /// Fields tshark could not name (`<unknown>`).
    unknown: usize,
    /// DATA payload bytes (without padding) by (client side).
    data: BTreeMap<bool, u64>,
    grpc_messages: BTreeMap<bool, u64>,
    /// Stream 1's request came as HTTP/1 with `Upgrade: h2c`.
    upgrade: bool,
}

fn tshark_ok() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `v` as a list (tshark's JSON has one object where there is one, a list where several).
fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => vec![],
    }
}

fn num(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// tshark's HTTP/2 streams of a capture: as tshark finds them by itself (it follows h2c
/// upgrades and recognises the preface), plus those it decodes only when told the server
/// ports speak HTTP/2 (connections picked up mid-way).
fn tshark_streams(file: &Path, server_ports: &BTreeSet<u16>) -> BTreeMap<Key, TsharkStream> {
    let mut found = tshark_streams_with(file, server_ports, false);
    for (k, v) in tshark_streams_with(file, server_ports, true) {
        found.entry(k).or_insert(v);
    }
    found
}

/// tshark's HTTP/2 streams, with HTTP/2 forced on the server ports when `force`.
fn tshark_streams_with(
    file: &Path,
    server_ports: &BTreeSet<u16>,
    force: bool,
) -> BTreeMap<Key, TsharkStream> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-T", "json", "--no-duplicate-keys"]);
    for p in server_ports.iter().filter(|_| force) {
        cmd.args(["-d", &format!("tcp.port=={p},http2")]);
    }
    cmd.args(["-Y", "http2 || http.request"]);
    let out = cmd.output().expect("tshark runs");
    let packets: Value = serde_json::from_slice(&out.stdout).expect("tshark JSON");
    let mut streams: BTreeMap<Key, TsharkStream> = BTreeMap::new();
    for p in packets.as_array().into_iter().flatten() {
        let layers = &p["_source"]["layers"];
        let sport = num(layers["tcp"].get("tcp.srcport")) as u16;
        let dport = num(layers["tcp"].get("tcp.dstport")) as u16;
        let from_client = server_ports.contains(&dport) && !server_ports.contains(&sport);
        let (lo, hi) = (sport.min(dport), sport.max(dport));
        for h2 in items(layers.get("http2")) {
            for st in items(h2.get("http2.stream")) {
                let kind = num(st.get("http2.type"));
                // A PUSH_PROMISE carries the promised stream's request.
                let (id, from_client) = match st.get("http2.push_promise.promised_stream_id") {
                    Some(p) if kind == 5 => (num(Some(p)) as u32, true),
                    _ => (num(st.get("http2.streamid")) as u32, from_client),
                };
                if id == 0 {
                    continue;
                }
                let e = streams.entry((lo, hi, id)).or_default();
                if kind == 0 {
                    let len = num(st.get("http2.length"));
                    let pad = num(st.get("http2.pad_length"));
                    let padded = st
                        .get("http2.flags_tree")
                        .and_then(|f| f.get("http2.flags.padded"))
                        .and_then(Value::as_str)
                        == Some("1");
                    let body = if padded {
                        len.saturating_sub(pad + 1)
                    } else {
                        len
                    };
                    *e.data.entry(from_client).or_default() += body;
                }
                for hf in items(st.get("http2.header")) {
                    let name = hf.get("http2.header.name").and_then(Value::as_str);
                    let value = hf
                        .get("http2.header.value")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    match name {
                        Some(n) if n != "<unknown>" => {
                            e.fields
                                .insert((from_client, n.to_string(), value.to_string()));
                        }
                        _ => e.unknown += 1,
                    }
                }
            }
        }
        // An HTTP/1 request that upgrades to h2c is stream 1 (RFC 9113 §3.2).
        if let Some(http) = layers.get("http")
            && let Some(line) = http
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| v)
                .find(|v| v.get("http.request.uri").is_some())
        {
            let e = streams.entry((lo, hi, 1)).or_default();
            e.upgrade = true;
            for (pseudo, field) in [
                (":method", "http.request.method"),
                (":path", "http.request.uri"),
            ] {
                if let Some(v) = line.get(field).and_then(Value::as_str) {
                    e.fields.insert((true, pseudo.into(), v.to_string()));
                }
            }
            for line in items(http.get("http.request.line")) {
                if let Some((n, v)) = line.as_str().and_then(|l| l.split_once(':')) {
                    e.fields
                        .insert((true, n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
        }
        for g in items(layers.get("grpc")) {
            // Messages in this packet, credited to the stream of the packet's last HTTP/2
            // DATA frame (gRPC messages ride on DATA frames).
            let n = items(g.get("grpc.message_length")).len() as u64
                + items(g.get("grpc.message")).len() as u64;
            let last = items(layers.get("http2"))
                .into_iter()
                .flat_map(|h2| items(h2.get("http2.stream")))
                .filter(|st| num(st.get("http2.type")) == 0)
                .map(|st| num(st.get("http2.streamid")) as u32)
                .next_back();
            if let Some(id) = last {
                *streams
                    .entry((lo, hi, id))
                    .or_default()
                    .grpc_messages
                    .entry(from_client)
                    .or_default() += n;
            }
        }
    }
    streams
}

/// tapwire's view of one exchange as (sent by the client, name, value) fields.
fn our_fields(ex: &Exchange) -> BTreeSet<(bool, String, String)> {
    let mut f = BTreeSet::new();
    if let Some(h) = &ex.http {
        if let Some(m) = &h.request.method {
            f.insert((true, ":method".into(), m.clone()));
        }
        for (n, v) in h.request.header.iter() {
            f.insert((true, n.to_string(), v.to_string()));
        }
        if let Some(r) = &h.response {
            if let Some(c) = r.status_code {
                f.insert((false, ":status".into(), c.to_string()));
            }
            for (n, v) in r.header.iter() {
                f.insert((false, n.to_string(), v.to_string()));
            }
        }
    }
    if let Some(u) = &ex.url
        && u.path.is_some()
    {
        let target = match &u.query {
            Some(q) => format!("{}?{q}", u.path.as_deref().unwrap_or_default()),
            None => u.path.clone().unwrap_or_default(),
        };
        f.insert((true, ":path".into(), target));
    }
    if let Some(s) = ex.url.as_ref().and_then(|u| u.scheme.as_ref()) {
        f.insert((true, ":scheme".into(), s.clone()));
    }
    f
}

const SECRETS: &[&str] = &[
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// Streams whose request tshark does not decode at all, and who else confirms tapwire's:
/// (capture, server port, stream id, why). `None` as the port: any connection.
const TSHARK_BLIND: &[(&str, Option<u16>, u32, &str)] = &[
    (
        "arkime-nghttp2.pcap",
        None,
        13,
        "the request's header block spans 20 CONTINUATION frames over many segments; tshark shows none of it (Arkime's expected output lists the same path and header names as tapwire, checked below)",
    ),
    (
        "suricata-grpc-via-connect-proxy.pcap",
        Some(8888),
        1,
        "HTTP/2 inside an HTTP CONNECT tunnel: tshark leaves the tunnel undecoded; the same RPC also goes direct to port 6233 in this capture, where tshark and tapwire agree",
    ),
];

#[test]
fn http2_and_grpc_agree_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: HTTP/2 tshark agreement not checked");
        return;
    }
    let own = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files = common::captures_under(&own.join("graphql"));
    files.extend(common::captures_under(&own.join("grpc")));
    let with_corpus = match common::corpus() {
        Some(corpus) => {
            for dir in ["http2", "grpc"] {
                files.extend(common::captures_under(&corpus.join(dir)));
            }
            true
        }
        None => {
            common::skip(
                "../shared/corpus is absent: HTTP/2 tshark agreement on own fixtures only",
            );
            false
        }
    };
    let mut compared_fields = 0;
    let mut compared_streams = 0;
    let mut failures = Vec::new();
    {
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            let (events, stats) = common::dissect(std::slice::from_ref(&file));
            let h2: Vec<&Exchange> = events.iter().filter(|e| e.http2.is_some()).collect();
            let server_ports: BTreeSet<u16> = h2.iter().map(|e| e.server.port).collect();
            let theirs = tshark_streams(&file, &server_ports);
            let lossy = stats.flows.reassembly.gap_bytes > 0 || stats.decode.truncated > 0;
            for ex in &h2 {
                let id = ex.http2.as_ref().unwrap().stream_id;
                let (a, b) = (ex.client.port, ex.server.port);
                let key = (a.min(b), a.max(b), id);
                let blind = TSHARK_BLIND.iter().find(|(f, port, s, _)| {
                    *f == name && *s == id && port.is_none_or(|p| p == ex.server.port)
                });
                if blind.is_some_and(|(_, port, _, _)| port.is_some()) {
                    continue;
                }
                let Some(t) = theirs.get(&key) else {
                    failures.push(format!("{name}: stream {key:?} unknown to tshark"));
                    continue;
                };
                compared_streams += 1;
                let ours = our_fields(ex);
                for (client, n, v) in &t.fields {
                    if n == ":authority" || n == ":protocol" {
                        continue;
                    }
                    let want = if SECRETS.contains(&n.as_str()) {
                        "REDACTED".to_string()
                    } else {
                        v.clone()
                    };
                    compared_fields += 1;
                    if !ours.contains(&(*client, n.clone(), want.clone())) {
                        failures.push(format!(
                            "{name} stream {id}: tshark has {n}: {want}, tapwire does not"
                        ));
                    }
                }
                let blind = blind.is_some();
                for (client, n, v) in ours.iter().filter(|(c, _, _)| !(blind && *c)) {
                    let theirs_has = t
                        .fields
                        .iter()
                        .any(|(c, tn, tv)| c == client && tn == n && (tv == v || v == "REDACTED"));
                    if !theirs_has {
                        failures.push(format!(
                            "{name} stream {id}: tapwire has {n}: {v}, tshark does not"
                        ));
                    }
                }
                // Sizes and message counts only where every byte was seen (tshark does not count
                // a frame cut by the end of the capture; tapwire counts the bytes it saw).
                if lossy || ex.status == schemas::Status::Incomplete {
                    continue;
                }
                let h = ex.http.as_ref().unwrap();
                let req = h.request.body.as_ref().map_or(0, |b| b.size);
                let resp = h
                    .response
                    .as_ref()
                    .and_then(|r| r.body.as_ref())
                    .map_or(0, |b| b.size);
                let td = |c: bool| t.data.get(&c).copied().unwrap_or(0);
                if (req, resp) != (td(true), td(false)) {
                    failures.push(format!(
                        "{name} stream {id}: body sizes {req}/{resp}, tshark DATA {}/{}",
                        td(true),
                        td(false)
                    ));
                }
                if let Some(g) = &ex.grpc {
                    let tg = |c: bool| t.grpc_messages.get(&c).copied().unwrap_or(0);
                    if (g.request.count, g.response.count) != (tg(true), tg(false)) {
                        failures.push(format!(
                            "{name} stream {id}: gRPC messages {}/{}, tshark {}/{}",
                            g.request.count,
                            g.response.count,
                            tg(true),
                            tg(false)
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let (min_streams, min_fields) = if with_corpus { (40, 400) } else { (12, 80) };
    assert!(
        compared_streams >= min_streams,
        "only {compared_streams} streams compared"
    );
    assert!(
        compared_fields >= min_fields,
        "only {compared_fields} fields compared"
    );
    eprintln!("compared {compared_streams} streams, {compared_fields} fields with tshark");
}

/// Where tshark is blind (see `TSHARK_BLIND`), Arkime's expected output confirms tapwire's
/// request paths and header names.
#[test]
fn arkime_confirms_what_tshark_does_not_decode() {
    let Some(corpus) = common::corpus() else {
        common::skip("../shared/corpus is absent: Arkime HTTP/2 check not run");
        return;
    };
    let file = corpus.join("http2/arkime-nghttp2.pcap");
    let expected: Value = serde_json::from_slice(
        &std::fs::read(corpus.join("http2/arkime-nghttp2.arkime.test")).unwrap(),
    )
    .unwrap();
    let http = &expected["sessions3"][0]["body"]["http"];
    let strings = |k: &str| -> BTreeSet<String> {
        http[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let (events, _) = common::dissect(&[file]);
    let paths: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.url.as_ref()?.path.clone())
        .collect();
    assert_eq!(paths, strings("path"));
    let names: BTreeSet<String> = events
        .iter()
        .flat_map(|e| e.http.as_ref().unwrap().request.header.iter())
        .map(|(n, _)| n.to_string())
        .collect();
    let want = strings("requestHeader");
    assert!(want.is_subset(&names), "Arkime {want:?}, tapwire {names:?}");
}

/// Facts DeepFlow's expected output states about HTTP/2 streams.
#[derive(Debug, Default, PartialEq)]
struct StreamFacts {
    /// (stream id, `:path`) of requests whose path is known.
    paths: BTreeSet<(u32, String)>,
    /// (stream id, `:status`).
    statuses: BTreeSet<(u32, u16)>,
    /// (stream id, gRPC status name).
    grpc_statuses: BTreeSet<(u32, String)>,
    /// Streams recognised as gRPC.
    grpc: BTreeSet<u32>,
}

fn some_num(line: &str, field: &str) -> Option<u64> {
    line.split(&format!(" {field}: Some("))
        .nth(1)?
        .split(')')
        .next()?
        .parse()
        .ok()
}

fn deepflow_streams(text: &str) -> StreamFacts {
    let mut f = StreamFacts::default();
    for line in text.lines().filter(|l| l.starts_with("HttpInfo")) {
        let Some(id) = some_num(line, "stream_id").map(|n| n as u32) else {
            continue;
        };
        if let Some(p) = line
            .split(" path: \"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .filter(|p| !p.is_empty())
        {
            f.paths.insert((id, p.to_string()));
        }
        if let Some(c) = some_num(line, "status_code") {
            f.statuses.insert((id, c as u16));
        }
        if let Some(c) = some_num(line, "grpc_status_code") {
            f.grpc_statuses
                .insert((id, pipeline::protocols::grpc::status_name(&c.to_string())));
        }
        if line.contains("proto: Grpc") {
            f.grpc.insert(id);
        }
    }
    f
}

fn our_streams(events: &[Exchange]) -> StreamFacts {
    let mut f = StreamFacts::default();
    for e in events {
        let Some(h2) = &e.http2 else { continue };
        let id = h2.stream_id;
        if let Some(u) = &e.url
            && let Some(p) = &u.path
        {
            let target = match &u.query {
                Some(q) => format!("{p}?{q}"),
                None => p.clone(),
            };
            f.paths.insert((id, target));
        }
        if let Some(c) = e
            .http
            .as_ref()
            .and_then(|h| h.response.as_ref()?.status_code)
        {
            f.statuses.insert((id, c));
        }
        if let Some(r) = e.rpc.as_ref().and_then(|r| r.response.as_ref()) {
            f.grpc_statuses.insert((id, r.status_code.clone()));
        }
        if e.protocol == schemas::Protocol::Grpc {
            f.grpc.insert(id);
        }
    }
    f
}

/// DeepFlow's results for the HTTP/2 and gRPC captures: paths, status codes, gRPC status
/// codes and which streams are gRPC agree. `*.as-unary.*` is DeepFlow configured to treat
/// streaming as unary, the same facts.
#[test]
fn http2_and_grpc_agree_with_deepflow() {
    let Some(corpus) = common::corpus() else {
        common::skip("../shared/corpus is absent: HTTP/2 DeepFlow agreement not checked");
        return;
    };
    let mut compared = 0;
    let mut failures = Vec::new();
    for dir in ["http2", "grpc"] {
        for entry in std::fs::read_dir(corpus.join(dir)).unwrap().flatten() {
            let exp = entry.path();
            let name = exp.file_name().unwrap().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".deepflow.result") else {
                continue;
            };
            let unary = stem.ends_with(".as-unary");
            let stem = stem.trim_end_matches(".as-unary");
            let cap = corpus.join(dir).join(format!("{stem}.pcap"));
            let theirs = deepflow_streams(&std::fs::read_to_string(&exp).unwrap());
            let (events, _) = common::dissect(&[cap]);
            let mut ours = our_streams(&events);
            if unary {
                // Treating a stream as unary, DeepFlow stops before the trailers.
                ours.grpc_statuses.clear();
            }
            compared += 1;
            if theirs != ours {
                failures.push(format!("{name}:\n  theirs: {theirs:?}\n  ours:   {ours:?}"));
            }
        }
    }
    assert!(compared >= 8, "only {compared} DeepFlow results compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
