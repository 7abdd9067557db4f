//! tapwire against tshark (the reference dissector) on the same captures: the HTTP requests
//! (method and target) and the DNS messages (id and question name) each finds must agree.
//!
//! tshark is told to decode HTTP on the server ports tapwire found (`-d tcp.port==P,http`),
//! since several captures use non-standard ports. Where the two disagree on purpose, the
//! capture is listed in `KNOWN` with who is right and why. Skipped visibly without tshark.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Captures where tapwire and tshark differ, and why tapwire is right.
const KNOWN: &[(&str, &str)] = &[
    (
        "zeek-http09.pcap",
        "HTTP/0.9 simple requests: tshark does not parse requests without a version",
    ),
    (
        "zeek-http-ipv6-ext-headers.pcap",
        "HTTP/0.9 requests (`GET /bad.html` without version): tshark shows none",
    ),
    (
        "suricata-http-sll.pcap",
        "the body is followed by bytes that are not a request; tshark reports the stray text as a request at a different offset",
    ),
    (
        "zeek-te-cl-desync.pcap",
        "smuggling test: Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), so the smuggled GET is a request of its own (Zeek agrees); tshark uses Content-Length and misses it",
    ),
    (
        "arkime-tcp-reassembly-synthetic.pcap",
        "tshark does not reassemble overlapping retransmissions the way the receiver does and reports different partial URIs",
    ),
    (
        "suricata-chunked-head.pcap",
        "tshark reports no request for the HEAD with a malformed Transfer-Encoding list; RFC 9110 §5.6.1 says empty list elements are ignored, so it is chunked",
    ),
    (
        "deepflow-client-ip.pcap",
        "capture starts mid-connection and the request's end is missing: tshark reports no request for an unfinished PDU, tapwire reports it with status incomplete",
    ),
    (
        "zeek-ipv4-fragmented-tcp.pcap",
        "overlapping IP fragments that disagree: tshark decodes no application layer; tapwire keeps the first copy of each byte and finds the request",
    ),
    (
        "zeek-http-snaplen96.pcap",
        "request line cut by the snaplen: tapwire keeps method and path, tshark keeps the partial line",
    ),
];

fn tshark_ok() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tshark_fields(file: &Path, extra: &[String], fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(extra).args([
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=\u{1f}",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn compare(file: &Path) -> Result<(), String> {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    if KNOWN.iter().any(|(k, _)| *k == name) {
        return Ok(());
    }
    let (events, _) = common::dissect(&[file.to_path_buf()]);
    let mut ports = BTreeSet::new();
    let mut ours_http = BTreeSet::new();
    let mut ours_dns = BTreeSet::new();
    for e in &events {
        // HTTP/2 streams are compared field by field in `tshark_http2.rs`; an HTTP/1 request
        // that upgraded to h2c (it carries `Upgrade`, which HTTP/2 forbids) is HTTP/1 to tshark.
        let http1 = |h: &&schemas::l7::http::Http| {
            e.http2.is_none() || h.request.header.first("upgrade").is_some()
        };
        if let Some(h) = e.http.as_deref().filter(http1) {
            ports.insert(e.server.port);
            let u = e.url.as_ref().unwrap();
            let target = match &u.query {
                Some(q) => format!("{}?{q}", u.path.as_deref().unwrap_or_default()),
                None => u.path.clone().unwrap_or_default(),
            };
            ours_http.insert((h.request.method.clone().unwrap_or_default(), target));
        }
        if let Some(d) = &e.dns
            && let Some(q) = &d.question
        {
            ours_dns.insert((d.id.to_string(), q.name.to_ascii_lowercase()));
        }
    }
    let mut extra = Vec::new();
    for p in &ports {
        extra.push("-d".to_string());
        extra.push(format!("tcp.port=={p},http"));
    }
    let theirs_http: BTreeSet<(String, String)> =
        tshark_fields(file, &extra, &["http.request.method", "http.request.uri"])
            .into_iter()
            .filter(|r| r.len() == 2 && !r[0].is_empty())
            .flat_map(|r| {
                let ms: Vec<String> = r[0].split('\u{1f}').map(str::to_string).collect();
                let us: Vec<String> = r[1].split('\u{1f}').map(str::to_string).collect();
                ms.into_iter().zip(us).collect::<Vec<_>>()
            })
            .collect();
    let theirs_dns: BTreeSet<(String, String)> =
        tshark_fields(file, &[], &["dns.id", "dns.qry.name"])
            .into_iter()
            .filter(|r| r.len() == 2 && !r[0].is_empty() && !r[1].is_empty())
            .filter_map(|r| {
                let id =
                    u16::from_str_radix(r[0].split('\u{1f}').next()?.trim_start_matches("0x"), 16)
                        .ok()?;
                let name = r[1].split('\u{1f}').next()?.to_ascii_lowercase();
                let name = if name == "<root>" {
                    ".".to_string()
                } else {
                    name
                };
                Some((id.to_string(), name))
            })
            .collect();
    let mut problems = Vec::new();
    if ours_http != theirs_http {
        problems.push(format!(
            "http only tapwire: {:?}; only tshark: {:?}",
            ours_http.difference(&theirs_http).collect::<Vec<_>>(),
            theirs_http.difference(&ours_http).collect::<Vec<_>>()
        ));
    }
    if ours_dns != theirs_dns {
        problems.push(format!(
            "dns only tapwire: {:?}; only tshark: {:?}",
            ours_dns.difference(&theirs_dns).collect::<Vec<_>>(),
            theirs_dns.difference(&ours_dns).collect::<Vec<_>>()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}", file.display(), problems.join("; ")))
    }
}

/// AMQP: every method tshark decodes that is a request or a one-way message (not an `-ok`
/// reply other than `basic.get-ok`, which carries a message; not a `basic.get-empty`) is an
/// operation tapwire reports, and vice versa. A `get-ok` answering a `basic.get` is part of
/// the get's exchange (ARCHITECTURE.md §4): tapwire reports it on its own only when its get
/// was not captured.
fn compare_amqp(file: &Path) -> Result<(), String> {
    let (events, _) = common::dissect(&[file.to_path_buf()]);
    let ours: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.messaging.as_ref()?.operation.as_ref())
        .map(|o| o.name.clone())
        .collect();
    let mut theirs = BTreeSet::new();
    for row in tshark_fields(file, &[], &["amqp.method.class", "amqp.method.method"]) {
        if row.len() != 2 || row[0].is_empty() {
            continue;
        }
        for (c, m) in row[0].split('\u{1f}').zip(row[1].split('\u{1f}')) {
            let (Ok(c), Ok(m)) = (c.parse::<u16>(), m.parse::<u16>()) else {
                continue;
            };
            if let Some((name, _)) = pipeline::protocols::amqp::method_name(c, m)
                && (!name.ends_with("-ok") || name == "basic.get-ok")
                && name != "basic.get-empty"
            {
                theirs.insert(name.to_string());
            }
        }
    }
    if theirs.contains("basic.get") {
        theirs.remove("basic.get-ok");
    }
    if ours == theirs {
        Ok(())
    } else {
        Err(format!(
            "{}: amqp only tapwire: {:?}; only tshark: {:?}",
            file.display(),
            ours.difference(&theirs).collect::<Vec<_>>(),
            theirs.difference(&ours).collect::<Vec<_>>()
        ))
    }
}

#[test]
fn amqp_agrees_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: AMQP tshark agreement not checked");
        return;
    }
    let mut files =
        common::captures_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/amqp"));
    if let Some(c) = common::corpus() {
        files.extend(common::captures_under(&c.join("amqp")));
    }
    let failures: Vec<String> = files.iter().filter_map(|f| compare_amqp(f).err()).collect();
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Kafka: every request tshark decodes (correlation id, API key) is one tapwire reports.
/// tshark 4.0 stops at the versions it knows (not Metadata v12, Fetch v16, Produce v9…),
/// so this is a subset check: tapwire reports more, never less.
fn compare_kafka(file: &Path) -> Result<usize, String> {
    let (events, _) = common::dissect(&[file.to_path_buf()]);
    let mut ports = BTreeSet::new();
    let ours: BTreeSet<(i32, i16)> = events
        .iter()
        .filter_map(|e| {
            ports.insert(e.server.port);
            e.kafka.as_ref().map(|k| (k.correlation_id, k.api_key))
        })
        .collect();
    let extra: Vec<String> = ports
        .iter()
        .flat_map(|p| ["-d".to_string(), format!("tcp.port=={p},kafka")])
        .collect();
    let mut theirs = BTreeSet::new();
    for row in tshark_fields(file, &extra, &["kafka.correlation_id", "kafka.request_key"]) {
        // Requests only: tshark fills `request_key` on requests, not on responses.
        if row.len() != 2 || row[0].is_empty() || row[1].is_empty() {
            continue;
        }
        for (c, k) in row[0].split('\u{1f}').zip(row[1].split('\u{1f}')) {
            if let (Ok(c), Ok(k)) = (c.parse::<i32>(), k.parse::<i16>()) {
                theirs.insert((c, k));
            }
        }
    }
    if theirs.is_subset(&ours) {
        Ok(theirs.len())
    } else {
        Err(format!(
            "{}: kafka requests only tshark found: {:?}",
            file.display(),
            theirs.difference(&ours).collect::<Vec<_>>()
        ))
    }
}

#[test]
fn kafka_requests_tshark_decodes_are_found() {
    if !tshark_ok() {
        common::skip("tshark is not installed: Kafka tshark agreement not checked");
        return;
    }
    let mut files =
        common::captures_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kafka"));
    if let Some(c) = common::corpus() {
        files.extend(common::captures_under(&c.join("kafka")));
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in &files {
        match compare_kafka(f) {
            Ok(n) => checked += n,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked >= 10,
        "tshark decoded only {checked} Kafka requests: the check is vacuous"
    );
}

#[test]
fn http_and_dns_agree_with_tshark() {
    if !tshark_ok() {
        common::skip(
            "tshark is not installed: tshark agreement not checked (scripts/test-all.sh installs it)",
        );
        return;
    }
    let mut files =
        common::captures_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"));
    if let Some(c) = common::corpus() {
        for d in ["http1", "dns", "edge"] {
            files.extend(common::captures_under(&c.join(d)));
        }
    } else {
        common::skip(
            "../shared/corpus is absent: only the project's own captures compared with tshark",
        );
    }
    let failures: Vec<String> = files.iter().filter_map(|f| compare(f).err()).collect();
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// DNSSEC: every RRSIG answer tapwire reports (its presentation form) is one tshark decodes in
/// the same capture: type covered, algorithm, labels, original TTL, key tag and signer.
#[test]
fn dnssec_signatures_agree_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: DNSSEC tshark agreement not checked");
        return;
    }
    let Some(c) = common::corpus() else {
        common::skip("../shared/corpus is absent: DNSSEC records not compared with tshark");
        return;
    };
    let file = c.join("dns/tcpdump-dnssec.pcap");
    type Sig = (String, String, String, String, String, String);
    let (events, _) = common::dissect(std::slice::from_ref(&file));
    let ours: Vec<Sig> = events
        .iter()
        .filter_map(|e| e.dns.as_ref())
        .flat_map(|d| &d.answers)
        .filter(|a| a.rtype == "RRSIG")
        .map(|a| {
            // TYPE ALGORITHM LABELS TTL EXPIRATION INCEPTION TAG SIGNER SIGNATURE
            let f: Vec<&str> = a.data.split(' ').collect();
            assert_eq!(f.len(), 9, "{}", a.data);
            let signer = f[7].trim_end_matches('.');
            let pick = |i: usize| f[i].to_string();
            (
                pick(0),
                pick(1),
                pick(2),
                pick(3),
                pick(6),
                signer.to_string(),
            )
        })
        .collect();
    assert!(ours.len() >= 2, "the capture's RRSIG answers: {ours:?}");
    let fields = [
        "dns.rrsig.type_covered",
        "dns.rrsig.algorithm",
        "dns.rrsig.labels",
        "dns.rrsig.original_ttl",
        "dns.rrsig.key_tag",
        "dns.rrsig.signers_name",
    ];
    let mut theirs: BTreeSet<Sig> = BTreeSet::new();
    for row in tshark_fields(&file, &[], &fields) {
        if row.len() != fields.len() || row[0].is_empty() {
            continue;
        }
        let cols: Vec<Vec<&str>> = row.iter().map(|c| c.split('\u{1f}').collect()).collect();
        for i in 0..cols[0].len() {
            let at = |k: usize| cols[k].get(i).copied().unwrap_or("").to_string();
            let covered = at(0).parse::<u16>().unwrap_or(0);
            let algorithm = at(1).parse::<u8>().unwrap_or(0);
            theirs.insert((
                hickory_proto::rr::RecordType::from(covered).to_string(),
                hickory_proto::dnssec::Algorithm::from_u8(algorithm).to_string(),
                at(2),
                at(3),
                at(4),
                at(5),
            ));
        }
    }
    for sig in &ours {
        assert!(
            theirs.contains(sig),
            "{sig:?} not among tshark's {theirs:?}"
        );
    }
}

/// TLS handshakes: for every connection of the project's TLS captures, what tapwire reports
/// is what tshark decodes: the server name and JA3 of the ClientHello; the version, cipher and
/// selected ALPN of the ServerHello; the certificate's DNS names; a plaintext alert's level
/// and name. (JA4 is checked against published values in `tls/ja.rs`: tshark 4.0 lacks it.)
#[test]
fn tls_handshakes_agree_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: TLS tshark agreement not checked");
        return;
    }
    let files =
        common::captures_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tls"));
    assert!(!files.is_empty(), "the recorded TLS fixture");
    for file in files {
        let (events, _) = common::dissect(std::slice::from_ref(&file));
        let mut ours = std::collections::BTreeMap::new();
        for e in events
            .iter()
            .filter(|e| e.protocol == schemas::Protocol::Tls)
        {
            let t = e.tls.as_ref().expect("tls fields");
            let c = t.client.as_ref();
            let names: Vec<String> = t
                .server
                .as_ref()
                .and_then(|s| s.x509.as_ref())
                .map(|x| {
                    x.alternative_names
                        .iter()
                        .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            ours.insert(
                e.client.port,
                (
                    c.and_then(|c| c.server_name.clone()).unwrap_or_default(),
                    c.map(|c| c.ja3.clone()).unwrap_or_default(),
                    t.protocol
                        .as_ref()
                        .map(|p| p.version.clone())
                        .unwrap_or_default(),
                    t.cipher.clone().unwrap_or_default(),
                    t.next_protocol.clone().unwrap_or_default(),
                    names.join(","),
                    t.alert
                        .as_ref()
                        .map(|a| format!("{} {}", a.level, a.description))
                        .unwrap_or_default(),
                ),
            );
        }
        let mut theirs = std::collections::BTreeMap::new();
        let hello = tshark_fields(
            &file,
            &["-Y".into(), "tls.handshake.type == 1".into()],
            &[
                "tcp.srcport",
                "tls.handshake.extensions_server_name",
                "tls.handshake.ja3",
            ],
        );
        for row in hello.iter().filter(|r| r.len() == 3) {
            let e = theirs
                .entry(row[0].parse::<u16>().unwrap_or(0))
                .or_insert_with(
                    <(String, String, String, String, String, String, String)>::default,
                );
            (e.0, e.1) = (row[1].clone(), row[2].clone());
        }
        let server = tshark_fields(
            &file,
            &["-Y".into(), "tls.handshake.type == 2".into()],
            &[
                "tcp.dstport",
                "tls.handshake.ciphersuite",
                "tls.handshake.extensions.supported_version",
                "tls.handshake.version",
                "tls.handshake.extensions_alpn_str",
                "x509ce.dNSName",
            ],
        );
        for row in server.iter().filter(|r| r.len() == 6) {
            let Some(e) = theirs.get_mut(&row[0].parse::<u16>().unwrap_or(0)) else {
                continue;
            };
            let num = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0);
            let version = if row[2].is_empty() { &row[3] } else { &row[2] };
            e.2 = match num(version) {
                0x0304 => "1.3",
                0x0303 => "1.2",
                0x0302 => "1.1",
                _ => "?",
            }
            .into();
            e.3 = tls_parser::TlsCipherSuite::from_id(num(&row[1]))
                .map(|c| c.name.to_string())
                .unwrap_or_default();
            e.4 = row[4].clone();
            e.5 = row[5].replace('\u{1f}', ",");
        }
        let alerts = tshark_fields(
            &file,
            &["-Y".into(), "tls.alert_message.level".into()],
            &[
                "tcp.srcport",
                "tcp.dstport",
                "tls.alert_message.level",
                "tls.alert_message.desc",
            ],
        );
        for row in alerts.iter().filter(|r| r.len() == 4) {
            // Keyed by the client's port: the alert's sender is the server when it came from
            // a port tapwire reports as a server (443, 8443).
            let (src, dst) = (
                row[0].parse::<u16>().unwrap_or(0),
                row[1].parse::<u16>().unwrap_or(0),
            );
            let port = if theirs.contains_key(&dst) { dst } else { src };
            if let Some(e) = theirs.get_mut(&port) {
                let level = if row[2] == "2" { "fatal" } else { "warning" };
                e.6 = format!(
                    "{level} {}",
                    pipeline::protocols::tls::alert_name(row[3].parse().unwrap_or(0))
                );
            }
        }
        assert_eq!(ours, theirs, "{}", file.display());
        assert!(ours.len() >= 9, "every handshake of {}", file.display());
    }
}

/// The SQL statements and error codes of a database capture: tapwire's `db.query.text` and
/// `db.response.status_code`, and tshark's `query_field` (literals hidden as tapwire hides
/// them) and `code_field`, read with `decode`.
type SqlSets = (
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
);

fn sql_sets(file: &Path, decode: &[String], query_field: &str, code_field: &str) -> SqlSets {
    let (events, _) = common::dissect(&[file.to_path_buf()]);
    let db = || events.iter().filter_map(|e| e.db.as_ref());
    let ours = db()
        .filter_map(|d| d.query.as_ref())
        .map(|q| q.text.clone())
        .collect();
    let our_codes = db()
        .filter_map(|d| d.response.as_ref()?.status_code.clone())
        .collect();
    let mut theirs = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for row in tshark_fields(file, decode, &[query_field, code_field]) {
        for q in row[0].split('\u{1f}').filter(|q| !q.is_empty()) {
            theirs.insert(pipeline::dissect::sql::obfuscate(q));
        }
        codes.extend(
            row.get(1)
                .into_iter()
                .flat_map(|c| c.split('\u{1f}'))
                .filter(|c| !c.is_empty())
                .map(str::to_string),
        );
    }
    (ours, theirs, our_codes, codes)
}

/// PostgreSQL: the SQL tshark reads in every `Query` and `Parse` (literals hidden the way
/// tapwire hides them) is the SQL of tapwire's exchanges, and the SQLSTATEs of tshark's
/// `ErrorResponse`s are the status codes tapwire reports; statements the server skipped
/// after an error in a pipeline (`SELECT 1` here) are tshark's alone.
#[test]
fn postgresql_statements_and_errors_agree_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: PostgreSQL tshark agreement not checked");
        return;
    }
    let files = common::captures_under(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/postgresql"),
    );
    assert!(!files.is_empty(), "the recorded PostgreSQL fixture");
    for file in files {
        let decode = ["-d".to_string(), "tcp.port==5432,pgsql".to_string()];
        let (ours, theirs, our_codes, codes) =
            sql_sets(&file, &decode, "pgsql.query", "pgsql.code");
        let skipped: BTreeSet<String> = theirs.difference(&ours).cloned().collect();
        assert_eq!(
            skipped,
            BTreeSet::from(["SELECT ?".to_string()]),
            "{}",
            file.display()
        );
        assert!(
            ours.is_subset(&theirs),
            "{:?}",
            ours.difference(&theirs).collect::<Vec<_>>()
        );
        assert_eq!(our_codes, codes, "{}", file.display());
        assert!(ours.len() >= 14, "{ours:?}");
    }
}

/// WebSocket: the messages tshark's frames make (data frames up to the one with FIN, control
/// frames alone), with their sender, opcode and payload size summed over their frames, are
/// the messages tapwire reports.
#[test]
fn websocket_messages_agree_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: WebSocket tshark agreement not checked");
        return;
    }
    let files = common::captures_under(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/websocket"),
    );
    assert!(!files.is_empty(), "the recorded WebSocket fixture");
    for file in files {
        let (events, _) = common::dissect(std::slice::from_ref(&file));
        let mut ours: Vec<(u16, String, String, u64)> = events
            .iter()
            .filter_map(|e| {
                let w = e.websocket.as_ref()?;
                Some((
                    e.client.port,
                    w.direction.clone(),
                    w.opcode.clone(),
                    w.message.size,
                ))
            })
            .collect();
        // tshark needs telling that the compressed connection's port is HTTP.
        let decode = ["-d".to_string(), "tcp.port==8766,http".to_string()];
        let rows = tshark_fields(
            &file,
            &decode,
            &[
                "tcp.srcport",
                "tcp.dstport",
                "websocket.fin",
                "websocket.opcode",
                "websocket.payload_length",
                "websocket.payload_length_ext_16",
                "websocket.payload_length_ext_64",
            ],
        );
        let mut theirs = Vec::new();
        let mut open: std::collections::BTreeMap<(u16, bool), (String, u64)> = Default::default();
        for row in rows.iter().filter(|r| r.len() == 7 && !r[3].is_empty()) {
            let (src, dst) = (
                row[0].parse::<u16>().unwrap_or(0),
                row[1].parse::<u16>().unwrap_or(0),
            );
            let from_client = dst == 8765 || dst == 8766;
            let client_port = if from_client { src } else { dst };
            let col = |i: usize| row[i].split('\u{1f}').collect::<Vec<_>>();
            let (fins, ops, lens, l16, l64) = (col(2), col(3), col(4), col(5), col(6));
            let (mut i16, mut i64) = (0, 0);
            for (k, op) in ops.iter().enumerate() {
                let op: u8 = op.parse().unwrap_or(0);
                let mut len: u64 = lens.get(k).and_then(|l| l.parse().ok()).unwrap_or(0);
                if len == 126 {
                    len = l16.get(i16).and_then(|l| l.parse().ok()).unwrap_or(0);
                    i16 += 1;
                } else if len == 127 {
                    len = l64.get(i64).and_then(|l| l.parse().ok()).unwrap_or(0);
                    i64 += 1;
                }
                let dir = if from_client { "client" } else { "server" };
                let name = |op: u8| match op {
                    1 => "text",
                    2 => "binary",
                    8 => "close",
                    9 => "ping",
                    _ => "pong",
                };
                if op >= 8 {
                    theirs.push((client_port, dir.to_string(), name(op).to_string(), len));
                    continue;
                }
                let e = open
                    .entry((client_port, from_client))
                    .or_insert_with(|| (name(op).to_string(), 0));
                e.1 += len;
                if fins.get(k) == Some(&"1") {
                    let (kind, size) = open.remove(&(client_port, from_client)).unwrap_or_default();
                    theirs.push((client_port, dir.to_string(), kind, size));
                }
            }
        }
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{}", file.display());
        assert!(ours.len() >= 20, "{ours:?}");
    }
}

/// MySQL/MariaDB: the SQL of every `COM_QUERY` and `COM_STMT_PREPARE` tshark decodes (literals
/// hidden the way tapwire hides them) is the SQL tapwire reports, and the error numbers of
/// tshark's ERR packets are tapwire's status codes.
#[test]
fn mysql_statements_and_errors_agree_with_tshark() {
    if !tshark_ok() {
        common::skip("tshark is not installed: MySQL tshark agreement not checked");
        return;
    }
    let files =
        common::captures_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mysql"));
    assert!(!files.is_empty(), "the recorded MariaDB fixture");
    for file in files {
        let (ours, theirs, our_codes, codes) =
            sql_sets(&file, &[], "mysql.query", "mysql.error_code");
        assert_eq!(ours, theirs, "{}", file.display());
        assert_eq!(our_codes, codes, "{}", file.display());
        assert!(ours.len() >= 8, "{ours:?}");
    }
}
