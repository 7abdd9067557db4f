//! tapwire against the peers' expected output stored next to the corpus captures:
//! DeepFlow's parser results (`*.deepflow.result`: HTTP/1, DNS, Redis, AMQP, Kafka) and Zeek's `http.log`
//! and `redis.log` baselines. Requests (method, target), response status codes, DNS questions
//! (id, name, type) and response codes, Redis command names and error prefixes, AMQP
//! operations, and Kafka exchanges (correlation id, API, topic, error code) must agree. Skipped visibly without `../shared`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use schemas::Exchange;

#[derive(Default, Debug, PartialEq)]
struct Facts {
    requests: BTreeSet<(String, String)>,
    statuses: BTreeSet<u16>,
    dns_questions: BTreeSet<(u16, String, String)>,
    dns_rcodes: BTreeSet<(u16, String)>,
    /// Redis commands (upper case) and whether any reply was an error.
    redis_commands: BTreeSet<String>,
    redis_errors: BTreeSet<String>,
    /// AMQP operations (`connection.open`, `basic.publish`, …).
    amqp_operations: BTreeSet<String>,
    /// Kafka exchanges: (correlation id, API name, topic or "", error code or 0).
    kafka: BTreeSet<(i32, String, String, i16)>,
    /// Correlation ids DeepFlow marks as not parsed (its status code -2 with status Ok: the
    /// API version is one it does not support); not compared.
    kafka_unparsed: BTreeSet<i32>,
}

fn ours(events: &[Exchange]) -> Facts {
    let mut f = Facts::default();
    for e in events {
        if let (Some(h), Some(u)) = (&e.http, &e.url) {
            let target = match &u.query {
                Some(q) => format!("{}?{q}", u.path.as_deref().unwrap_or_default()),
                None => u.path.clone().unwrap_or_default(),
            };
            f.requests
                .insert((h.request.method.clone().unwrap_or_default(), target));
            if let Some(code) = h.response.as_ref().and_then(|r| r.status_code) {
                f.statuses.insert(code);
            }
        }
        if let Some(db) = &e.db
            && db.query.is_some()
        {
            if let Some(op) = &db.operation {
                f.redis_commands.insert(op.name.clone());
            }
            if let Some(code) = db.response.as_ref().and_then(|r| r.status_code.clone()) {
                f.redis_errors.insert(code);
            }
        }
        if let Some(k) = &e.kafka
            && e.status != schemas::Status::NoResponse
        {
            let topic = k.topics.first().cloned().unwrap_or_default();
            f.kafka.insert((
                k.correlation_id,
                k.api_name.clone(),
                topic,
                k.error_code.unwrap_or(0),
            ));
        }
        if let Some(op) = e.messaging.as_ref().and_then(|m| m.operation.as_ref())
            && e.amqp.is_some()
        {
            f.amqp_operations.insert(op.name.clone());
        }
        if let Some(d) = &e.dns {
            if let Some(q) = &d.question {
                f.dns_questions
                    .insert((d.id, q.name.clone(), q.qtype.clone()));
            }
            if let Some(rc) = &d.response_code {
                f.dns_rcodes.insert((d.id, rc.clone()));
            }
        }
    }
    f
}

fn rcode_name(n: u64) -> String {
    match n {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "OTHER",
    }
    .to_string()
}

/// DeepFlow's result lines: Rust `Debug` of `HttpInfo` for HTTP, JSON for DNS.
fn deepflow(text: &str) -> Facts {
    let mut f = Facts::default();
    let mut pending_kafka: Vec<(i32, String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with("HttpInfo") {
            let field = |name: &str| {
                let at = line.find(&format!(" {name}: "))? + name.len() + 3;
                Some(&line[at..])
            };
            if line.contains("msg_type: Request") {
                let method = field("method")
                    .and_then(|m| m.split([',', ' ']).next())
                    .unwrap_or("");
                let path = field("path")
                    .and_then(|p| p.strip_prefix('"'))
                    .and_then(|p| p.split('"').next())
                    .unwrap_or("");
                f.requests
                    .insert((method.to_ascii_uppercase(), path.to_string()));
            } else if line.contains("msg_type: Response")
                && let Some(code) = field("status_code")
                    .and_then(|s| s.strip_prefix("Some("))
                    .and_then(|s| s.split(')').next())
                    .and_then(|s| s.parse().ok())
            {
                f.statuses.insert(code);
            }
        } else if line.starts_with("KafkaInfo") {
            // One line per message: the request names api and topic, the response the code.
            let text = |name: &str| {
                line.split(&format!("{name}: \""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
            };
            let corr = line
                .split("correlation_id: Some(")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|c| c.parse::<i32>().ok());
            let api = line
                .split("api_key: ")
                .nth(1)
                .and_then(|r| r.split(',').next());
            if let (Some(corr), Some(api)) = (corr, api) {
                if line.contains("msg_type: Request") {
                    let topic = text("topic_name").unwrap_or("").to_string();
                    pending_kafka.push((corr, api.to_string(), topic));
                } else if let Some(i) = pending_kafka.iter().position(|p| p.0 == corr) {
                    let (corr, api, topic) = pending_kafka.remove(i);
                    let code = line
                        .split("status_code: Some(")
                        .nth(1)
                        .and_then(|r| r.split(')').next())
                        .and_then(|c| c.parse::<i16>().ok())
                        .unwrap_or(0);
                    if code == -2 && line.contains("status: Ok") {
                        f.kafka_unparsed.insert(corr);
                    } else {
                        f.kafka.insert((corr, api, topic, code));
                    }
                }
            }
        } else if line.starts_with("AmqpInfo") {
            // `req_type: Some("Exchange.Declare")` on request lines: `exchange.declare`.
            if line.contains("msg_type: Request")
                && let Some(t) = line
                    .split("req_type: Some(\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                && let Some((class, method)) = t.split_once('.')
            {
                let mut kebab = String::new();
                for (i, ch) in method.chars().enumerate() {
                    if ch.is_ascii_uppercase() && i > 0 {
                        kebab.push('-');
                    }
                    kebab.push(ch.to_ascii_lowercase());
                }
                f.amqp_operations
                    .insert(format!("{}.{kebab}", class.to_ascii_lowercase()));
            }
        } else if line.starts_with("RedisInfo") {
            let field = |name: &str| {
                let at = line.find(&format!("{name}: \""))? + name.len() + 3;
                line[at..].split('"').next()
            };
            if let Some(t) = field("request_type").filter(|t| !t.is_empty()) {
                f.redis_commands.insert(t.to_ascii_uppercase());
            }
            if let Some(e) = field("error").filter(|e| !e.is_empty()) {
                let prefix = e
                    .trim_start_matches(['-', '!'])
                    .split(' ')
                    .next()
                    .unwrap_or("");
                f.redis_errors.insert(prefix.to_string());
            }
        } else if line.starts_with('{') {
            let json = &line[..line.rfind('}').map_or(0, |i| i + 1)];
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
                continue;
            };
            let id = v["request_id"].as_u64().unwrap_or(0) as u16;
            if let (Some(name), Some(t)) =
                (v["request_resource"].as_str(), v["request_type"].as_str())
            {
                f.dns_questions
                    .insert((id, name.to_string(), t.to_string()));
            }
            if v["msg_type"] == "Response"
                && let Some(rc) = v["response_code"].as_u64()
            {
                f.dns_rcodes.insert((id, rcode_name(rc)));
            }
        }
    }
    f
}

/// Rows of a Zeek log baseline as (column, value) lookups. The column names come from the
/// `#fields` line, or from a header line holding `key` (btest baselines cut to a few columns).
fn zeek_rows<'a>(text: &'a str, key: &str) -> Vec<Vec<(&'a str, &'a str)>> {
    let mut cols: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    let keep = |l: &&str| !l.starts_with('#') || l.starts_with("#fields");
    for line in text.lines().filter(keep) {
        let line = line.strip_prefix("#fields\t").unwrap_or(line);
        let cells: Vec<&str> = line.split('\t').collect();
        if cells.contains(&key) {
            cols = cells;
            continue;
        }
        rows.push(cols.iter().copied().zip(cells).collect());
    }
    rows
}

fn cell<'a>(row: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    row.iter().find(|(c, _)| *c == name).map(|(_, v)| *v)
}

/// Zeek `redis.log` baselines: command names, and error replies (`success` F with the error
/// text as the reply).
fn zeek_redis(text: &str) -> Facts {
    let mut f = Facts::default();
    for row in zeek_rows(text, "cmd.name") {
        if let Some(c) = cell(&row, "cmd.name").filter(|c| *c != "-") {
            f.redis_commands.insert(c.to_ascii_uppercase());
        }
        if cell(&row, "success") == Some("F")
            && let Some(r) = cell(&row, "reply.value")
        {
            f.redis_errors
                .insert(r.split(' ').next().unwrap_or("").to_string());
        }
    }
    f
}

/// Zeek `http.log` baselines: method and URI, status code.
fn zeek_http(text: &str) -> Facts {
    let mut f = Facts::default();
    for row in zeek_rows(text, "uri") {
        if let (Some(m), Some(u)) = (cell(&row, "method"), cell(&row, "uri"))
            && m != "-"
        {
            f.requests.insert((m.to_string(), u.to_string()));
        }
        // Zeek logs 0 for HTTP/0.9 responses, which have no status line.
        if let Some(code) = cell(&row, "status_code")
            .and_then(|c| c.parse().ok())
            .filter(|c| *c != 0)
        {
            f.statuses.insert(code);
        }
    }
    f
}

fn capture_for(expected: &Path) -> Option<std::path::PathBuf> {
    let name = expected.file_name()?.to_str()?;
    let stem = name.split(".deepflow").next()?.split(".zeek").next()?;
    ["pcap", "pcapng"]
        .iter()
        .map(|ext| expected.with_file_name(format!("{stem}.{ext}")))
        .find(|p| p.exists())
}

#[test]
fn http_and_dns_agree_with_deepflow_and_zeek() {
    let Some(corpus) = common::corpus() else {
        common::skip("../shared/corpus is absent: peer agreement not checked");
        return;
    };
    let mut failures = Vec::new();
    let mut compared = 0;
    for dir in ["http1", "dns", "edge", "redis", "amqp", "kafka"] {
        let mut files: Vec<_> = std::fs::read_dir(corpus.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for exp in files {
            let name = exp.file_name().unwrap().to_string_lossy().to_string();
            let theirs = if name.ends_with(".deepflow.result") {
                deepflow(&std::fs::read_to_string(&exp).unwrap())
            } else if name.ends_with(".zeek.http.log") {
                zeek_http(&std::fs::read_to_string(&exp).unwrap())
            } else if name.ends_with(".zeek.redis.log") {
                zeek_redis(&std::fs::read_to_string(&exp).unwrap())
            } else {
                continue;
            };
            let Some(cap) = capture_for(&exp) else {
                continue;
            };
            let (events, _) = common::dissect(&[cap]);
            let mut mine = ours(&events);
            mine.kafka.retain(|k| !theirs.kafka_unparsed.contains(&k.0));
            mine.kafka_unparsed = theirs.kafka_unparsed.clone();
            compared += 1;
            // Zeek baselines are cut to a few columns; compare what the baseline has.
            let ok = theirs.requests == mine.requests
                && (theirs.statuses.is_empty() || theirs.statuses == mine.statuses)
                && theirs.dns_questions.is_subset(&mine.dns_questions)
                && theirs.dns_rcodes == mine.dns_rcodes
                && theirs.redis_commands == mine.redis_commands
                && theirs.redis_errors == mine.redis_errors
                && theirs.amqp_operations.is_subset(&mine.amqp_operations)
                && theirs.kafka == mine.kafka;
            if !ok {
                failures.push(format!("{name}:\n  theirs: {theirs:?}\n  ours:   {mine:?}"));
            }
        }
    }
    eprintln!("compared {compared} expected outputs");
    assert!(compared >= 16, "only {compared} expected outputs compared");
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
