//! The sinks end to end, as root, against real receivers: nginx, redis-server and dnsmasq
//! in one network namespace, their clients in another, the agent capturing on the server's
//! veth, and in the server namespace on 127.0.0.1 a real Prometheus scraping the agent, a real
//! OTLP receiver (`tw-otlp-receiver`: opentelemetry-proto's collector service on tonic, and
//! HTTP/protobuf) and a real Kafka-protocol broker (tansu, in-memory) read back with a real
//! client (`tw-kafka`, rdkafka).
//!
//! Checked: spans, Kafka messages and Prometheus series against the exchanges the agent's
//! own subscription API reports for the same traffic (names, kinds, attributes, status,
//! `traceparent` parents, timestamps; message keys, headers and payloads; request counts
//! and every latency bucket), and through collector and broker outages that everything
//! offered is delivered, counted as dropped, or still queued.
//!
//! Skipped visibly when not root or a server is missing; `.ci/run` installs them all (tansu
//! from crates.io into a cache outside the checkout; `TAPWIRE_TANSU` names its binary).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tapwire_integration::lab::{API, Lab, have, lines_of, sh, wait_until};

const RECEIVER: &str = env!("CARGO_BIN_EXE_tw-otlp-receiver");
const KAFKA: &str = env!("CARGO_BIN_EXE_tw-kafka");
const FAKE_K8S: &str = env!("CARGO_BIN_EXE_tw-fake-k8s");
const BROKER: &str = "127.0.0.1:9092";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// The tansu binary: `TAPWIRE_TANSU`, the CI cache, or `tansu` on the PATH.
fn tansu() -> Option<String> {
    let cached = std::env::var("HOME")
        .map(|h| format!("{h}/.cache/tapwire-tools/bin/tansu"))
        .ok();
    std::env::var("TAPWIRE_TANSU")
        .ok()
        .into_iter()
        .chain(cached)
        .find(|p| PathBuf::from(p).exists())
        .or_else(|| have("tansu").then(|| "tansu".to_string()))
}

fn lab_with(cmds: &[&str]) -> Option<Lab> {
    let lab = Lab::new()?;
    for cmd in cmds {
        if !have(cmd) {
            eprintln!("SKIP: the sink tests need {cmd}");
            return None;
        }
    }
    Some(lab)
}

/// The OTLP receiver in the server namespace; its span lines as they arrive.
fn start_receiver(lab: &mut Lab) -> (usize, mpsc::Receiver<String>) {
    let mut child = lab
        .in_ns(&lab.s, &[RECEIVER, "127.0.0.1:4317", "127.0.0.1:4318"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).as_deref(),
        Ok("ready")
    );
    lab.procs.push(child);
    (lab.procs.len() - 1, rx)
}

fn start_tansu(lab: &mut Lab, bin: &str, topics: &[&str]) -> usize {
    let url = format!("tcp://{BROKER}");
    let child = lab
        .in_ns(
            &lab.s,
            &[
                bin,
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(child);
    let mut args = vec![KAFKA, "create", BROKER];
    args.extend_from_slice(topics);
    wait_until("tansu to create the topics", || {
        lab.in_ns(&lab.s, &args)
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    });
    lab.procs.len() - 1
}

fn consume(lab: &Lab, topics: &[&str]) -> Vec<Value> {
    let mut args = vec![KAFKA, "consume", BROKER, "3"];
    args.extend_from_slice(topics);
    let out = lab.in_ns(&lab.s, &args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("consumer line"))
        .collect()
}

fn start_prometheus(lab: &mut Lab) {
    let d = lab.dir.display().to_string();
    let conf = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n  - job_name: tapwire\n    static_configs: [{{targets: ['{API}']}}]\n"
    );
    std::fs::write(lab.dir.join("prometheus.yml"), conf).unwrap();
    let child = lab
        .in_ns(
            &lab.s,
            &[
                "prometheus",
                &format!("--config.file={d}/prometheus.yml"),
                &format!("--storage.tsdb.path={d}/prometheus"),
                "--web.listen-address=127.0.0.1:9090",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(child);
    lab.wait_for(&lab.s.clone(), "http://127.0.0.1:9090/-/ready");
}

/// One PromQL instant query through Prometheus's HTTP API: the single value, or `None`.
fn promql(lab: &Lab, q: &str) -> Option<f64> {
    let out = lab
        .in_ns(
            &lab.s,
            &[
                "curl",
                "-sf",
                "--get",
                "--data-urlencode",
                &format!("query={q}"),
                "http://127.0.0.1:9090/api/v1/query",
            ],
        )
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let r = v["data"]["result"].as_array()?;
    r.first()?["value"][1].as_str()?.parse().ok()
}

fn metrics(lab: &Lab) -> String {
    let out = lab
        .in_ns(&lab.s, &["curl", "-sf", &format!("http://{API}/metrics")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The sum of every series of `name` whose labels include each of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The agent's own event stream (`/v1/events`), read with curl in the server namespace.
fn subscribe(lab: &mut Lab) -> mpsc::Receiver<String> {
    subscribe_with(lab, None, 1)
}

/// `/v1/events` with one query parameter (`filter=EXPR`, `since=5m`); `n`: the
/// subscriptions open once it is.
fn subscribe_with(lab: &mut Lab, query: Option<&str>, n: u64) -> mpsc::Receiver<String> {
    let mut args = vec!["curl", "-sNG", "--fail"];
    if let Some(q) = query {
        args.extend(["--data-urlencode", q]);
    }
    let url = format!("http://{API}/v1/events");
    args.push(&url);
    let mut child: Child = lab
        .in_ns(&lab.s, &args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    lab.procs.push(child);
    wait_until("the subscription", || {
        lab.status()["demand"]["subscriptions"] == n
    });
    rx
}

fn collect(rx: &mpsc::Receiver<String>, into: &mut Vec<Value>, want: usize, what: &str) {
    wait_until(what, || {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
            into.push(serde_json::from_str(&l).expect("a JSON line"));
        }
        into.len() >= want
    });
}

fn curl(lab: &Lab, path: &str, headers: &[&str]) {
    let url = format!("http://{}{path}", lab.sa);
    let mut args = vec!["curl", "-s", "-o", "/dev/null"];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&url);
    assert!(lab.in_ns(&lab.c, &args).status().unwrap().success());
}

/// 7 HTTP, 3 Redis and 2 DNS exchanges.
fn traffic(lab: &Lab) {
    for p in [
        "/index.html",
        "/index.html",
        "/index.html",
        "/missing",
        "/users/42",
    ] {
        curl(lab, p, &[]);
    }
    curl(lab, "/users/43", &[]);
    curl(
        lab,
        "/index.html?traced=1",
        &[&format!("traceparent: 00-{TRACE_ID}-{PARENT_ID}-01")],
    );
    for args in [
        ["SET", "cart:1", "apples"],
        ["GET", "cart:1", ""],
        ["LPUSH", "cart:1", "pears"],
    ] {
        let mut a = vec!["redis-cli", "-h", &lab.sa];
        a.extend(args.iter().filter(|x| !x.is_empty()));
        let _ = lab.in_ns(&lab.c, &a).output().unwrap();
    }
    for name in ["www.tapwire.test", "nothere.tapwire.test"] {
        let server = format!("@{}", lab.sa);
        let _ = lab
            .in_ns(&lab.c, &["dig", "+tries=1", &server, name, "A"])
            .output()
            .unwrap();
    }
}

fn start_servers(lab: &mut Lab) {
    lab.start_nginx();
    lab.start_redis();
    lab.start_dnsmasq(&[
        "--local=/tapwire.test/",
        "--address=/www.tapwire.test/10.9.8.7",
    ]);
    let (c, sa) = (lab.c.clone(), lab.sa.clone());
    wait_until("redis-server", || {
        lab.in_ns(&c, &["redis-cli", "-h", &sa, "PING"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
    });
}

fn key(e: &Value) -> (u64, u64) {
    (
        e["start_time_unix_nano"].as_u64().unwrap(),
        e["end_time_unix_nano"].as_u64().unwrap(),
    )
}

#[test]
fn prometheus_otlp_and_kafka_get_the_same_exchanges() {
    let Some(tansu) = tansu() else {
        eprintln!("SKIP: the sink tests need the tansu broker (TAPWIRE_TANSU)");
        return;
    };
    let needs = [
        "ip",
        "nginx",
        "curl",
        "redis-server",
        "redis-cli",
        "dnsmasq",
        "dig",
        "prometheus",
        "promtool",
    ];
    let Some(mut lab) = lab_with(&needs) else {
        return;
    };
    start_servers(&mut lab);
    let (_, spans_rx) = start_receiver(&mut lab);
    start_tansu(
        &mut lab,
        &tansu,
        &["tapwire.http", "tapwire.redis", "tapwire.dns"],
    );
    start_prometheus(&mut lab);
    lab.start_agent_with(&[
        "--red-metrics",
        "--otlp-endpoint",
        "http://127.0.0.1:4317",
        "--kafka-brokers",
        BROKER,
        "--kafka-topic",
        "tapwire.{protocol}",
    ]);
    let events_rx = subscribe(&mut lab);
    traffic(&lab);
    let mut events = Vec::new();
    collect(&events_rx, &mut events, 12, "12 exchanges on /v1/events");
    let by_proto = |p: &str| events.iter().filter(|e| e["protocol"] == p).count();
    assert_eq!(
        (by_proto("http"), by_proto("redis"), by_proto("dns")),
        (7, 3, 2)
    );

    // OTLP: one span per exchange, at the exchange's times.
    let mut spans = Vec::new();
    collect(&spans_rx, &mut spans, 12, "12 spans at the receiver");
    std::thread::sleep(Duration::from_millis(1500));
    while let Ok(l) = spans_rx.try_recv() {
        spans.push(serde_json::from_str(&l).unwrap());
    }
    assert_eq!(spans.len(), 12, "exactly one span per exchange");
    let span_of = |e: &Value| {
        let (s, t) = key(e);
        spans
            .iter()
            .find(|x| x["start"] == s && x["end"] == t)
            .unwrap_or_else(|| panic!("no span for {e}"))
    };
    for e in &events {
        let s = span_of(e);
        assert_eq!(s["transport"], "grpc");
        assert_eq!(s["scope"]["name"], "tapwire");
        assert_eq!(s["resource"]["service.name"], "tapwire-observed");
        assert_eq!(s["resource"]["telemetry.sdk.name"], "tapwire");
        assert_eq!(s["attributes"]["server.address"], e["server"]["address"]);
        assert_eq!(s["attributes"]["client.port"], e["client"]["port"]);
        assert_eq!(s["span_id"].as_str().unwrap().len(), 16);
        match e["protocol"].as_str().unwrap() {
            "http" => {
                // SPAN_KIND_SERVER = 2; status unset (0) but for 5xx.
                assert_eq!(s["kind"], 2);
                assert_eq!(s["status"]["code"], 0);
                let route = s["attributes"]["http.route"].as_str().unwrap();
                assert_eq!(s["name"], format!("GET {route}"));
                assert_eq!(
                    s["attributes"]["http.response.status_code"],
                    e["http"]["response"]["status_code"]
                );
                let path = e["url"]["path"].as_str().unwrap();
                let want = if path.starts_with("/users/") {
                    "/users/{id}"
                } else {
                    path
                };
                assert_eq!(route, want);
                if e["url"]["query"] == "traced=1" {
                    assert_eq!(s["trace_id"], TRACE_ID);
                    assert_eq!(s["parent_span_id"], PARENT_ID);
                } else {
                    assert_eq!(s["parent_span_id"], "", "a new trace");
                    assert_ne!(s["trace_id"], TRACE_ID);
                }
            }
            "redis" => {
                assert_eq!(s["kind"], 3, "client");
                let op = e["db"]["operation"]["name"].as_str().unwrap();
                assert_eq!(s["name"], op);
                assert_eq!(s["attributes"]["db.system.name"], "redis");
                if op == "LPUSH" {
                    assert_eq!(s["attributes"]["db.response.status_code"], "WRONGTYPE");
                    assert_eq!(s["status"]["code"], 2, "error");
                } else {
                    assert_eq!(s["status"]["code"], 0);
                }
            }
            "dns" => {
                assert_eq!(
                    (s["kind"].clone(), s["name"].clone()),
                    (3.into(), "DNS A".into())
                );
                let q = &e["dns"]["question"]["name"];
                assert_eq!(&s["attributes"]["dns.question.name"], q);
                let nx = q == "nothere.tapwire.test";
                assert_eq!(s["status"]["code"], if nx { 2 } else { 0 });
                if !nx {
                    assert_eq!(
                        s["attributes"]["dns.answers"],
                        serde_json::json!(["10.9.8.7"])
                    );
                }
            }
            p => panic!("unexpected protocol {p}"),
        }
    }

    // Kafka: one message per exchange, the event itself, keyed by connection.
    wait_until("Kafka delivery reports", || {
        metric(
            &metrics(&lab),
            "tapwire_sink_delivered_total",
            &["sink=\"kafka\""],
        ) == 12
    });
    let msgs = consume(&lab, &["tapwire.http", "tapwire.redis", "tapwire.dns"]);
    assert_eq!(msgs.len(), 12);
    for e in &events {
        let m = msgs
            .iter()
            .find(|m| &m["payload"] == e)
            .unwrap_or_else(|| panic!("no message for {e}"));
        assert_eq!(
            m["topic"],
            format!("tapwire.{}", e["protocol"].as_str().unwrap())
        );
        assert_eq!(
            m["key"],
            format!(
                "{}:{}>{}:{}",
                e["client"]["address"].as_str().unwrap(),
                e["client"]["port"],
                e["server"]["address"].as_str().unwrap(),
                e["server"]["port"]
            )
        );
        assert_eq!(m["headers"]["tapwire.protocol"], e["protocol"]);
        assert_eq!(m["headers"]["tapwire.schema.version"], "1.2");
    }

    // Prometheus: counts and every latency bucket, as the server stored them.
    wait_until("Prometheus to scrape the HTTP requests", || {
        promql(&lab, "sum(http_server_request_duration_seconds_count)") == Some(7.0)
    });
    let http: Vec<&Value> = events.iter().filter(|e| e["protocol"] == "http").collect();
    for le in [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ] {
        let want = http
            .iter()
            .filter(|e| {
                let (s, t) = key(e);
                t.saturating_sub(s) as f64 / 1e9 <= le
            })
            .count() as f64;
        let q = format!("sum(http_server_request_duration_seconds_bucket{{le=\"{le}\"}})");
        assert_eq!(promql(&lab, &q), Some(want), "{q}");
    }
    let q = |s: &str| promql(&lab, s);
    assert_eq!(
        q(
            r#"sum(http_server_request_duration_seconds_count{http_route="/users/{id}",http_response_status_code="404"})"#
        ),
        Some(2.0)
    );
    assert_eq!(
        q(
            r#"sum(http_server_request_duration_seconds_count{http_route="/index.html",http_request_method="GET",error_type=""})"#
        ),
        Some(4.0)
    );
    assert_eq!(
        q(r#"sum(http_server_response_body_size_bytes_count{http_route="/index.html"})"#),
        Some(4.0)
    );
    assert_eq!(
        q(
            r#"sum(db_client_operation_duration_seconds_count{db_system_name="redis",db_operation_name="LPUSH",db_response_status_code="WRONGTYPE"})"#
        ),
        Some(1.0)
    );
    assert_eq!(
        q(r#"sum(dns_lookup_duration_seconds_count{dns_response_code="NXDOMAIN"})"#),
        Some(1.0)
    );
    assert_eq!(
        q(r#"sum(tapwire_sink_offered_total)"#),
        Some(36.0),
        "12 exchanges to each of three sinks"
    );
    // The exposition is valid for Prometheus's own checker.
    let text = metrics(&lab);
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for sink in ["otlp", "kafka", "prometheus"] {
        let l = format!("sink=\"{sink}\"");
        assert_eq!(
            metric(&text, "tapwire_sink_offered_total", &[&l]),
            12,
            "{sink}"
        );
        assert_eq!(
            metric(&text, "tapwire_sink_delivered_total", &[&l]),
            12,
            "{sink}"
        );
        assert_eq!(
            metric(&text, "tapwire_sink_dropped_total", &[&l]),
            0,
            "{sink}"
        );
    }
}

/// offered = delivered + dropped + queued, for one sink, from the agent's /metrics.
fn accounted(lab: &Lab, sink: &str) -> (u64, u64, BTreeMap<String, u64>, u64) {
    let text = metrics(lab);
    let l = format!("sink=\"{sink}\"");
    let mut dropped = BTreeMap::new();
    for line in text
        .lines()
        .filter(|x| x.starts_with("tapwire_sink_dropped_total{") && x.contains(&l))
    {
        let reason = line
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if n > 0 {
            dropped.insert(reason, n);
        }
    }
    (
        metric(&text, "tapwire_sink_offered_total", &[&l]),
        metric(&text, "tapwire_sink_delivered_total", &[&l]),
        dropped,
        metric(&text, "tapwire_sink_queued", &[&l]),
    )
}

#[test]
fn otlp_over_http_with_gzip_and_headers_counts_what_an_outage_loses() {
    let Some(mut lab) = lab_with(&["ip", "nginx", "curl"]) else {
        return;
    };
    lab.start_nginx();
    let (receiver, rx) = start_receiver(&mut lab);
    let config = lab.dir.join("tapwire.yaml");
    std::fs::write(
        &config,
        "sinks:\n  otlp:\n    endpoint: http://127.0.0.1:4318\n    protocol: http/protobuf\n    \
         compression: gzip\n    headers: {x-tapwire-test: sinks}\n    service_name: shop-frontend\n    \
         batch_timeout: 200ms\n    timeout: 2s\n    max_retries: 1\n    filter: 'protocol == \"http\"'\n",
    )
    .unwrap();
    lab.start_agent_with(&["--config", config.to_str().unwrap()]);
    let get = |lab: &Lab, tag: &str| {
        for i in 0..5 {
            curl(lab, &format!("/{tag}-{i}"), &[]);
        }
    };
    get(&lab, "before");
    let mut spans = Vec::new();
    collect(&rx, &mut spans, 5, "5 spans over HTTP/protobuf");
    for s in &spans {
        assert_eq!(s["transport"], "http");
        assert_eq!(s["meta"]["encoding"], "gzip");
        assert_eq!(s["meta"]["content-type"], "application/x-protobuf");
        assert_eq!(s["meta"]["x-tapwire-test"], "sinks");
        assert_eq!(s["resource"]["service.name"], "shop-frontend");
        assert!(s["name"].as_str().unwrap().starts_with("GET /before-"));
    }

    // The collector goes away: those exports fail after their retry and are counted.
    let pid = lab.procs[receiver].id().to_string();
    sh(&["kill", "-KILL", &pid]);
    let _ = lab.procs[receiver].wait();
    get(&lab, "during");
    wait_until("the failed exports to be counted", || {
        accounted(&lab, "otlp").2.get("export_failed") == Some(&5)
    });

    // It comes back: new spans flow again.
    let (_, rx) = start_receiver(&mut lab);
    get(&lab, "after");
    let mut after = Vec::new();
    collect(&rx, &mut after, 5, "5 spans after the outage");
    assert!(
        after
            .iter()
            .all(|s| s["name"].as_str().unwrap().starts_with("GET /after-"))
    );
    let (offered, delivered, dropped, queued) = accounted(&lab, "otlp");
    assert_eq!((offered, delivered, queued), (15, 10, 0));
    assert_eq!(dropped, BTreeMap::from([("export_failed".to_string(), 5)]));
    assert_eq!(delivered as usize, spans.len() + after.len());
}

#[test]
fn kafka_broker_outage_delivers_the_queue_and_counts_the_overflow() {
    let Some(tansu) = tansu() else {
        eprintln!("SKIP: the sink tests need the tansu broker (TAPWIRE_TANSU)");
        return;
    };
    let Some(mut lab) = lab_with(&["ip", "nginx", "curl"]) else {
        return;
    };
    lab.start_nginx();
    let broker = start_tansu(&mut lab, &tansu, &["tapwire.exchanges"]);
    let config = lab.dir.join("tapwire.yaml");
    std::fs::write(
        &config,
        format!(
            "sinks:\n  kafka:\n    brokers: {BROKER}\n    queue: 3\n    \
             properties: {{linger.ms: 0, reconnect.backoff.max.ms: 500}}\n"
        ),
    )
    .unwrap();
    lab.start_agent_with(&["--config", config.to_str().unwrap()]);
    let get = |lab: &Lab, tag: &str| {
        for i in 0..5 {
            curl(lab, &format!("/{tag}-{i}"), &[]);
            // One at a time, so the queue of 3 is never full while the broker is up.
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    get(&lab, "before");
    wait_until("5 deliveries", || accounted(&lab, "kafka").1 == 5);
    assert_eq!(consume(&lab, &["tapwire.exchanges"]).len(), 5);

    // The broker hangs (SIGSTOP): 3 messages wait in the queue, 2 overflow it and are
    // counted; when it wakes up the 3 are delivered, and a consumer reads all 8 in order.
    let pid = lab.procs[broker].id().to_string();
    sh(&["kill", "-STOP", &pid]);
    get(&lab, "hung");
    wait_until("10 offered", || accounted(&lab, "kafka").0 == 10);
    let (_, delivered, dropped, queued) = accounted(&lab, "kafka");
    assert_eq!((delivered, queued), (5, 3));
    assert_eq!(dropped, BTreeMap::from([("queue_full".to_string(), 2)]));
    sh(&["kill", "-CONT", &pid]);
    wait_until("the queue to drain", || accounted(&lab, "kafka").1 == 8);
    let paths = |msgs: &[Value]| -> Vec<String> {
        msgs.iter()
            .map(|m| m["payload"]["url"]["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        paths(&consume(&lab, &["tapwire.exchanges"])),
        [
            "/before-0",
            "/before-1",
            "/before-2",
            "/before-3",
            "/before-4",
            "/hung-0",
            "/hung-1",
            "/hung-2"
        ]
    );

    // The broker dies and restarts (empty: in-memory storage): what waited is delivered.
    sh(&["kill", "-KILL", &pid]);
    let _ = lab.procs[broker].wait();
    for i in 0..3 {
        curl(&lab, &format!("/down-{i}"), &[]);
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("13 offered", || accounted(&lab, "kafka").0 == 13);
    assert_eq!(accounted(&lab, "kafka").3, 3, "3 wait for the broker");
    start_tansu(&mut lab, &tansu, &["tapwire.exchanges"]);
    wait_until("the queue to drain", || accounted(&lab, "kafka").1 == 11);
    // The restarted broker may have taken a message before its topic was created again (and
    // kept it nowhere): what it has is the outage's messages, in order.
    let after = paths(&consume(&lab, &["tapwire.exchanges"]));
    let down = ["/down-0", "/down-1", "/down-2"];
    let mut it = down.iter();
    assert!(
        after.iter().all(|p| it.any(|d| d == p)),
        "only the outage's messages, in order: {after:?}"
    );
    let (offered, delivered, dropped, queued) = accounted(&lab, "kafka");
    assert_eq!(
        offered,
        delivered + dropped.values().sum::<u64>() + queued,
        "everything offered is delivered, counted as dropped, or queued"
    );
    assert_eq!((offered, delivered, queued), (13, 11, 0));
}

/// A private CA, server certificates for `otel.tapwire.test` (srv) and for 127.0.0.1 (ip), and
/// a client certificate (cli), made with the openssl command line in `dir`.
fn certificates(dir: &std::path::Path) {
    let d = dir.display();
    let script = format!(
        "set -e; cd {d}
         openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=tapwire-test-ca \
           -keyout ca.key -out ca.pem 2>/dev/null
         printf 'subjectAltName=DNS:otel.tapwire.test\\n' > srv.ext
         openssl req -newkey rsa:2048 -nodes -subj /CN=otel.tapwire.test -keyout srv.key -out srv.csr 2>/dev/null
         openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
           -extfile srv.ext -out srv.pem 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\n' > ip.ext
         openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout ip.key -out ip.csr 2>/dev/null
         openssl x509 -req -in ip.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
           -extfile ip.ext -out ip.pem 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -subj /CN=tapwire-agent -keyout cli.key -out cli.csr 2>/dev/null
         printf 'extendedKeyUsage=clientAuth\n' > cli.ext
         openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
           -extfile cli.ext -out cli.pem 2>/dev/null"
    );
    sh(&["sh", "-c", &script]);
}

/// nginx in front of the receiver, terminating TLS and asking for a client certificate:
/// gRPC on 127.0.0.1:4443 (certificate for `otel.tapwire.test` only, to the receiver's 4317),
/// HTTPS on 127.0.0.1:4444 (certificate for 127.0.0.1, to its 4318).
fn start_tls_proxy(lab: &mut Lab) {
    let d = lab.dir.display().to_string();
    let conf = format!(
        "daemon off; user root; worker_processes 1; error_log {d}/tls-error.log; pid {d}/tls.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};\n\
           fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
           ssl_client_certificate {d}/ca.pem; ssl_verify_client on;\n\
           server {{ listen 127.0.0.1:4443 ssl http2;\n\
             ssl_certificate {d}/srv.pem; ssl_certificate_key {d}/srv.key;\n\
             location / {{ grpc_pass grpc://127.0.0.1:4317; }} }}\n\
           server {{ listen 127.0.0.1:4444 ssl;\n\
             ssl_certificate {d}/ip.pem; ssl_certificate_key {d}/ip.key;\n\
             location / {{ proxy_pass http://127.0.0.1:4318; }} }} }}\n"
    );
    let path = lab.dir.join("tls-nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = lab
        .in_ns(&lab.s, &["nginx", "-c", path.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(child);
    let s = lab.s.clone();
    wait_until("the TLS proxy", || {
        lab.in_ns(&s, &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/4444"])
            .status()
            .is_ok_and(|st| st.success())
    });
}

#[test]
fn otlp_over_tls_checks_the_server_and_presents_a_client_certificate() {
    let Some(mut lab) = lab_with(&["ip", "nginx", "curl", "openssl", "bash"]) else {
        return;
    };
    lab.start_nginx();
    certificates(&lab.dir);
    let (_, rx) = start_receiver(&mut lab);
    start_tls_proxy(&mut lab);
    let d = lab.dir.display().to_string();
    let client = format!("ca_file: {d}/ca.pem, cert_file: {d}/cli.pem, key_file: {d}/cli.key");
    let mut spans: Vec<Value> = Vec::new();
    for (n, (protocol, endpoint, name, extra)) in [
        // The certificate names otel.tapwire.test, not the address dialled: server_name.
        // gRPC also compressed, with a header of the configuration.
        (
            "grpc",
            "https://127.0.0.1:4443",
            ", server_name: otel.tapwire.test",
            "    compression: gzip\n    headers: {x-tapwire-test: tls}\n",
        ),
        ("http/protobuf", "https://127.0.0.1:4444", "", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let config = lab.dir.join(format!("tls-{n}.yaml"));
        std::fs::write(
            &config,
            format!(
                "sinks:\n  otlp:\n    endpoint: {endpoint}\n    protocol: {protocol}\n    \
                 batch_timeout: 200ms\n    tls: {{{client}{name}}}\n{extra}"
            ),
        )
        .unwrap();
        let agent = lab.start_agent_with(&["--config", config.to_str().unwrap()]);
        for i in 0..3 {
            curl(&lab, &format!("/tls-{n}-{i}"), &[]);
        }
        let before = spans.len();
        collect(&rx, &mut spans, before + 3, "3 spans through the TLS proxy");
        let want = if protocol == "grpc" { "grpc" } else { "http" };
        assert!(spans[before..].iter().all(|s| s["transport"] == want));
        if protocol == "grpc" {
            for s in &spans[before..] {
                assert_eq!(s["meta"]["encoding"], "gzip");
                assert_eq!(s["meta"]["x-tapwire-test"], "tls");
            }
        }
        assert_eq!(accounted(&lab, "otlp").1, 3);
        lab.signal(agent, "-TERM");
    }

    // Without the private CA the proxy is not trusted (the client certificate is there):
    // nothing is sent, and it is counted.
    let config = lab.dir.join("untrusted.yaml");
    std::fs::write(
        &config,
        format!(
            "sinks:\n  otlp:\n    endpoint: https://127.0.0.1:4443\n    batch_timeout: 200ms\n    \
             max_retries: 0\n    tls: {{cert_file: {d}/cli.pem, key_file: {d}/cli.key, \
             server_name: otel.tapwire.test}}\n"
        ),
    )
    .unwrap();
    lab.start_agent_with(&["--config", config.to_str().unwrap()]);
    curl(&lab, "/untrusted", &[]);
    wait_until("the refused export to be counted", || {
        accounted(&lab, "otlp").2.get("export_failed") == Some(&1)
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "no span got through"
    );
}

/// The client's address (the lab's other veth end).
fn client_address(lab: &Lab) -> String {
    lab.sa
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.2"))
        .unwrap()
}

/// A kubeconfig for the fake API server at `url`.
fn kubeconfig(lab: &Lab, url: &str) -> String {
    let path = tapwire_integration::fake_k8s::kubeconfig(&lab.dir.join("kubeconfig"), url);
    path.to_str().unwrap().to_string()
}

/// The fake Kubernetes API server in the server namespace, serving `objects`.
fn start_fake_api(lab: &mut Lab, objects: &Value) -> String {
    let file = lab.dir.join("objects.json");
    std::fs::write(&file, objects.to_string()).unwrap();
    let mut child = lab
        .in_ns(
            &lab.s,
            &[FAKE_K8S, file.to_str().unwrap(), "127.0.0.1:6443"],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    lab.procs.push(child);
    let ready = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the fake API server");
    ready.strip_prefix("ready ").unwrap().to_string()
}

/// Kubernetes enrichment end to end: the agent lists a (fake) API server's pods, replica
/// sets, services and endpoint slices over a kubeconfig, and the names reach the events,
/// the filters, the RED metrics' labels and the OTLP resources.
#[test]
fn kubernetes_names_reach_events_filters_metrics_and_span_resources() {
    let needs = [
        "ip",
        "nginx",
        "curl",
        "redis-server",
        "redis-cli",
        "dnsmasq",
        "dig",
    ];
    let Some(mut lab) = lab_with(&needs) else {
        return;
    };
    use tapwire_integration::fake_k8s::objects;
    let (sa, ca) = (lab.sa.clone(), client_address(&lab));
    let at = "2026-01-01T00:00:00Z";
    let objects = serde_json::json!({
        "pods": [
            objects::pod("shop", "checkout-6d5f9-x2x7q", "u-checkout", &ca, "node-a",
                Some(("ReplicaSet", "checkout-6d5f9", "rs-checkout")),
                serde_json::json!({"app": "checkout", "pod-template-hash": "6d5f9", "team": "t1"}), at),
            objects::pod("shop", "web-0", "u-web-0", &sa, "node-b",
                Some(("StatefulSet", "web", "sts-web")),
                serde_json::json!({"app": "web"}), at),
        ],
        "replicasets": [objects::replicaset("shop", "checkout-6d5f9", "rs-checkout", "checkout")],
        "services": [
            objects::service("shop", "web", "10.96.0.10", 80, 80),
            objects::service("shop", "cache", "10.96.0.11", 6379, 6379),
        ],
        "endpointslices": [
            objects::slice("shop", "web", &[("web-0", "u-web-0", &sa)], 80),
            objects::slice("shop", "cache", &[("web-0", "u-web-0", &sa)], 6379),
        ],
        "nodes": [objects::node("node-a", "192.168.49.2"), objects::node("node-b", "192.168.49.3")],
        "jobs": [],
    });
    start_servers(&mut lab);
    let url = start_fake_api(&mut lab, &objects);
    let kc = kubeconfig(&lab, &url);
    let (_, spans_rx) = start_receiver(&mut lab);
    lab.start_agent_with(&[
        "--red-metrics",
        "--otlp-endpoint",
        "http://127.0.0.1:4317",
        "--kubeconfig",
        &kc,
    ]);
    wait_until("the pods listed", || {
        lab.status()["kubernetes"]["pods_listed"] == true
    });
    assert_eq!(lab.status()["kubernetes"]["api_server"], format!("{url}/"));
    let events_rx = subscribe_with(&mut lab, None, 1);
    let cache_rx = subscribe_with(
        &mut lab,
        Some(r#"filter=server.k8s.service.name == "cache""#),
        2,
    );
    traffic(&lab);
    let mut events = Vec::new();
    collect(&events_rx, &mut events, 12, "12 exchanges on /v1/events");

    for e in &events {
        let (c, s) = (&e["client"]["k8s"], &e["server"]["k8s"]);
        assert_eq!(c["resolution"], "resolved", "{e}");
        assert_eq!(c["pod"]["name"], "checkout-6d5f9-x2x7q");
        assert_eq!(c["pod"]["label"]["app"], "checkout");
        assert!(
            c["pod"]["label"].get("team").is_none(),
            "not on the allow-list"
        );
        assert_eq!(c["namespace"]["name"], "shop");
        assert_eq!(c["node"]["name"], "node-a");
        assert_eq!(c["deployment"]["name"], "checkout");
        assert_eq!(c["replicaset"]["name"], "checkout-6d5f9");
        assert_eq!(
            c["workload"],
            serde_json::json!({"name": "checkout", "kind": "deployment"})
        );
        assert_eq!(s["pod"]["name"], "web-0");
        assert_eq!(s["statefulset"]["name"], "web");
        // Two services select web-0: the exchange's port picks the one named.
        let want = match e["protocol"].as_str().unwrap() {
            "http" => Value::from("web"),
            "redis" => Value::from("cache"),
            _ => Value::Null,
        };
        assert_eq!(
            s["service"].get("name").cloned().unwrap_or(Value::Null),
            want,
            "{e}"
        );
    }

    // The filter on a Kubernetes name: only the Redis exchanges.
    let mut cache = Vec::new();
    collect(
        &cache_rx,
        &mut cache,
        3,
        "3 exchanges for the cache service",
    );
    std::thread::sleep(Duration::from_millis(500));
    while let Ok(l) = cache_rx.try_recv() {
        cache.push(serde_json::from_str(&l).unwrap());
    }
    assert_eq!(cache.len(), 3);
    assert!(cache.iter().all(|e| e["protocol"] == "redis"));

    // A `since` replay from the spool names its exchanges too (as they were at their time).
    let replay_rx = subscribe_with(&mut lab, Some("since=5m"), 3);
    let mut replayed = Vec::new();
    collect(
        &replay_rx,
        &mut replayed,
        12,
        "12 exchanges replayed from the spool",
    );
    for e in &replayed {
        assert_eq!(
            e["client"]["k8s"]["pod"]["name"], "checkout-6d5f9-x2x7q",
            "{e}"
        );
        assert_eq!(e["server"]["k8s"]["pod"]["name"], "web-0", "{e}");
    }

    // RED metrics: the server's workload for server metrics, the client's for client ones.
    let text = metrics(&lab);
    assert_eq!(
        metric(
            &text,
            "http_server_request_duration_seconds_count",
            &[r#"k8s_namespace_name="shop""#, r#"k8s_workload_name="web""#]
        ),
        7
    );
    assert_eq!(
        metric(
            &text,
            "db_client_operation_duration_seconds_count",
            &[
                r#"k8s_namespace_name="shop""#,
                r#"k8s_workload_name="checkout""#
            ]
        ),
        3
    );
    assert_eq!(
        metric(
            &text,
            "tapwire_k8s_resolutions_total",
            &[r#"resolution="resolved""#, r#"side="server""#]
        ),
        24,
        "12 live and 12 replayed"
    );
    assert_eq!(
        metric(
            &text,
            "tapwire_k8s_synced",
            &[r#"resource="endpointslices""#]
        ),
        1
    );

    // OTLP: one resource per workload, named after it.
    let mut spans = Vec::new();
    collect(&spans_rx, &mut spans, 12, "12 spans at the receiver");
    for s in &spans {
        let r = &s["resource"];
        if s["kind"] == 2 {
            assert_eq!(r["service.name"], "web", "{s}");
            assert_eq!(r["k8s.statefulset.name"], "web");
        } else {
            assert_eq!(r["service.name"], "checkout", "{s}");
            assert_eq!(r["k8s.deployment.name"], "checkout");
        }
        assert_eq!(r["service.namespace"], "shop");
        assert_eq!(r["k8s.namespace.name"], "shop");
    }
}

/// An API server that cannot be reached: one line says so, and capture and dissection go on
/// without names (every peer `unknown`, counted).
#[test]
fn an_unreachable_api_server_is_said_once_and_exchanges_still_flow() {
    let Some(mut lab) = lab_with(&["ip", "nginx", "curl"]) else {
        return;
    };
    lab.start_nginx();
    let kc = kubeconfig(&lab, "https://127.0.0.1:1");
    lab.start_agent_with(&["--kubeconfig", &kc]);
    let rx = subscribe(&mut lab);
    for _ in 0..3 {
        lab.get("/index.html");
    }
    let mut events = Vec::new();
    collect(&rx, &mut events, 3, "3 exchanges without names");
    for e in &events {
        assert_eq!(e["client"]["k8s"]["resolution"], "unknown");
        assert_eq!(e["server"]["k8s"]["resolution"], "unknown");
    }
    // The watchers keep retrying (with backoff) and the failure is said once.
    wait_until("a few failed attempts", || {
        metric(
            &metrics(&lab),
            "tapwire_k8s_watch_errors_total",
            &[r#"resource="pods""#],
        ) >= 2
    });
    let log = std::fs::read_to_string(lab.dir.join("agent.log")).unwrap();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("kubernetes"))
        .collect();
    assert_eq!(said.len(), 2, "{log}");
    assert!(
        said.iter().any(|l| l.starts_with("tapwire: capturing on ")),
        "{log}"
    );
    let unreachable: Vec<&&str> = said
        .iter()
        .filter(|l| {
            l.starts_with("tapwire: kubernetes: API server https://127.0.0.1:1/ unreachable: ")
        })
        .collect();
    assert_eq!(unreachable.len(), 1, "{log}");
    assert!(unreachable[0].contains("Connection refused"), "{log}");
    assert_eq!(lab.status()["kubernetes"]["pods_listed"], false);
}
