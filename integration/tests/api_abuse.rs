//! The agent's API under abuse, against a real `tapwire run --read` (no capture privileges
//! needed): filters that are too deep or too slow, a huge BPF filter, more subscriptions than
//! allowed, a replay client that never reads, out-of-range windows, missing or wrong tokens,
//! and the anomaly counters on `/metrics`. Each call is plain HTTP/1.1 over a socket, so what
//! is asserted is exactly what a client sees.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tapwire_integration::pcapgen::{Pcap, SERVER, client};

struct Agent {
    child: Child,
    api: String,
    dir: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A capture of `n` HTTP/1 exchanges on one keep-alive connection.
fn http_capture(n: usize) -> Pcap {
    let mut p = Pcap::new();
    let mut c = p.connect((client(1), 41000), (SERVER, 80));
    for i in 0..n {
        let req = format!("GET /item/{i} HTTP/1.1\r\nHost: api\r\n\r\n");
        p.send(&mut c, true, req.as_bytes());
        p.send(
            &mut c,
            false,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
    }
    p.close(&mut c);
    p
}

/// `tapwire run --read` on `pcap`, API on `port`, with `config` as its configuration file.
fn agent(name: &str, port: u16, pcap: &Pcap, config: &str, extra: &[&str]) -> Agent {
    let dir = std::env::temp_dir().join(format!("tapwire-abuse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cap = dir.join("in.pcap");
    pcap.write(&cap).unwrap();
    let cfg = dir.join("tapwire.yaml");
    std::fs::write(&cfg, config).unwrap();
    let api = format!("127.0.0.1:{port}");
    let child = Command::new(tapwire_integration::tapwire())
        .args(["run", "--read"])
        .arg(&cap)
        .args(["--listen", &api, "--config"])
        .arg(&cfg)
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("agent.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let a = Agent { child, api, dir };
    let until = Instant::now() + Duration::from_secs(15);
    while get(&a.api, "/healthz", &[]).status != 200 {
        assert!(Instant::now() < until, "the agent did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    a
}

/// A response: status, headers (lower-case names) and as much body as arrived.
struct Resp {
    status: u16,
    head: String,
    body: String,
}

/// One request; the body is read until the server closes or `read_for` passes.
fn request(api: &str, path: &str, headers: &[&str], read_for: Duration) -> Resp {
    let Ok(mut s) = TcpStream::connect(api) else {
        return Resp {
            status: 0,
            head: String::new(),
            body: String::new(),
        };
    };
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let until = Instant::now() + read_for;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while Instant::now() < until {
        s.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(api: &str, path: &str, headers: &[&str]) -> Resp {
    request(api, path, headers, Duration::from_secs(5))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn deep_and_slow_filters_are_refused_or_ended_alone() {
    let a = agent(
        "filters",
        19481,
        &http_capture(200),
        "api: {filter_budget: 1ms}\n",
        &[],
    );
    // A filter too long, and one too deep, are a 400 naming the cap, at once.
    let long = format!("1{} == 0", "+1".repeat(3000));
    let r = get(&a.api, &format!("/v1/events?filter={}", encode(&long)), &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("length cap"), "{}", r.body);
    let deep = format!("a{} == 1", ".b".repeat(1500));
    let r = get(&a.api, &format!("/v1/events?filter={}", encode(&deep)), &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("cap"), "{}", r.body);
    // A slow filter (two nested macros over 200-element lists, a 1 ms budget) is told and
    // ended; a subscriber beside it gets the whole replay.
    let list = (0..200)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let slow = format!("[{list}].all(x, [{list}].exists(y, y == x + 1000))");
    let api = a.api.clone();
    let plain = std::thread::spawn(move || {
        request(
            &api,
            "/v1/events?since=100000h",
            &[],
            Duration::from_secs(6),
        )
    });
    let r = request(
        &a.api,
        &format!("/v1/events?since=100000h&filter={}", encode(&slow)),
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("\"notice\":\"filter_too_slow\""),
        "{}",
        r.body
    );
    let plain = plain.join().unwrap();
    assert_eq!(
        plain.body.matches("\"protocol\":\"http\"").count(),
        200,
        "the other subscriber is unaffected"
    );
    assert_eq!(get(&a.api, "/healthz", &[]).status, 200);
}

#[test]
fn a_huge_bpf_filter_is_refused_while_health_answers() {
    let a = agent("bpf", 19482, &http_capture(5), "{}\n", &[]);
    // 44 KB: under the HTTP layer's URI limit, over the filter cap.
    let huge = vec!["host 10.0.0.1"; 2600].join(" or ");
    let api = a.api.clone();
    let export = std::thread::spawn(move || {
        get(
            &api,
            &format!("/v1/pcap?since=100000h&filter={}", encode(&huge)),
            &[],
        )
    });
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(&a.api, "/healthz", &[]).status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "health answers at once"
        );
    }
    let r = export.join().unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("length cap"), "{}", r.body);
    // One under the cap compiles on the blocking pool and exports.
    let r = get(&a.api, "/v1/pcap?since=100000h&filter=tcp%20port%2080", &[]);
    assert_eq!(r.status, 200);
}

#[test]
fn subscriptions_past_the_cap_get_429_with_retry_after() {
    let a = agent(
        "subs",
        19483,
        &http_capture(5),
        "api: {max_subscriptions: 64}\n",
        &[],
    );
    let mut open = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..500 {
        let mut s = TcpStream::connect(&a.api).unwrap();
        s.write_all(format!("GET /v1/events HTTP/1.1\r\nHost: {}\r\n\r\n", a.api).as_bytes())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        match &head[9..12] {
            b"200" => ok += 1,
            b"429" => refused += 1,
            other => panic!("status {}", String::from_utf8_lossy(other)),
        }
        open.push(s);
    }
    assert_eq!((ok, refused), (64, 436));
    let r = get(&a.api, "/v1/events", &[]);
    assert_eq!(r.status, 429);
    assert!(r.head.contains("retry-after: 5"), "{}", r.head);
    assert!(r.body.contains("api.max_subscriptions"), "{}", r.body);
    assert_eq!(get(&a.api, "/healthz", &[]).status, 200);
    drop(open);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = request(&a.api, "/v1/events", &[], Duration::from_millis(300));
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < until, "room again once they left");
    }
}

#[test]
fn a_replay_client_that_never_reads_is_given_up_on() {
    let a = agent(
        "stall",
        19484,
        &http_capture(60_000),
        "api: {max_replays: 1, client_stall: 1s}\n",
        &[],
    );
    // Subscribe with a replay and read nothing: the replay fills every buffer and stalls.
    let mut s = TcpStream::connect(&a.api).unwrap();
    s.write_all(
        format!(
            "GET /v1/events?since=100000h HTTP/1.1\r\nHost: {}\r\n\r\n",
            a.api
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r = request(
        &a.api,
        "/v1/events?since=100000h",
        &[],
        Duration::from_millis(300),
    );
    assert_eq!(r.status, 429, "the only replay slot is taken");
    assert!(r.body.contains("api.max_replays"));
    // Given up on after the stall time: the slot is free again.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let r = request(
            &a.api,
            "/v1/events?since=1s",
            &[],
            Duration::from_millis(300),
        );
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the stalled replay still holds its slot"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(s);
}

#[test]
fn out_of_range_windows_are_400() {
    let a = agent("windows", 19485, &http_capture(5), "{}\n", &[]);
    for path in [
        "/v1/events?since=1000000000h",
        "/v1/events?since=-5m",
        "/v1/events?since=99999999999999999999s",
        "/v1/pcap?since=1000000000h",
        "/v1/pcap?since=1m&until=5m",
    ] {
        let r = get(&a.api, path, &[]);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    assert!(
        get(&a.api, "/v1/events?since=1000000000h", &[])
            .body
            .contains("out of range")
    );
}

#[test]
fn every_endpoint_but_health_needs_the_token() {
    let dir = std::env::temp_dir().join(format!("tapwire-abuse-tokenfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-token-value\n").unwrap();
    let token_arg = token.to_string_lossy().into_owned();
    let a = agent(
        "token",
        19486,
        &http_capture(5),
        "{}\n",
        &["--token-file", &token_arg],
    );
    for path in ["/v1/events", "/v1/status", "/v1/pcap?since=1m", "/metrics"] {
        for headers in [
            &[][..],
            &["Authorization: Bearer wrong"][..],
            &["X-Tapwire-Token: wrong"][..],
            &["Authorization: Basic czNjcmV0LXRva2VuLXZhbHVl"][..],
        ] {
            let r = request(&a.api, path, headers, Duration::from_millis(500));
            assert_eq!(r.status, 401, "{path} with {headers:?}");
        }
        let r = request(
            &a.api,
            path,
            &["Authorization: Bearer s3cret-token-value"],
            Duration::from_millis(500),
        );
        assert_eq!(r.status, 200, "{path} with the token");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(&a.api, path, &[]).status, 200, "{path} stays open");
    }
    // With public metrics (the chart's default), /metrics answers scrapers; nothing else does.
    let b = agent(
        "public-metrics",
        19488,
        &http_capture(5),
        "api: {public_metrics: true}\n",
        &["--token-file", &token_arg],
    );
    assert_eq!(get(&b.api, "/metrics", &[]).status, 200);
    for path in ["/v1/events", "/v1/status", "/v1/pcap?since=1m"] {
        let r = request(&b.api, path, &[], Duration::from_millis(500));
        assert_eq!(r.status, 401, "{path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_export_every_anomaly_by_protocol_and_name() {
    // An AMQP table nested too deep, through the agent with a sink so it dissects.
    let mut p = Pcap::new();
    tapwire_integration::hostile::amqp_nesting(100).connect(&mut p, 7);
    let a = agent("metrics", 19487, &p, "{}\n", &["--red-metrics"]);
    let want = "tapwire_dissect_anomalies_total{name=\"table_too_deep\",protocol=\"amqp\"} 2";
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let m = get(&a.api, "/metrics", &[]);
        if m.body.contains(want) {
            break;
        }
        assert!(Instant::now() < until, "no {want} in:\n{}", m.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_ends_the_agent_even_with_clients_that_read_nothing() {
    let mut a = agent("sigterm", 19490, &http_capture(30_000), "{}\n", &[]);
    let mut idle = Vec::new();
    for path in [
        "/v1/pcap?since=100000h",
        "/v1/events?since=100000h",
        "/v1/events",
    ] {
        let mut s = TcpStream::connect(&a.api).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", a.api).as_bytes())
            .unwrap();
        idle.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = a.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < until, "the agent ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    drop(idle);
}
