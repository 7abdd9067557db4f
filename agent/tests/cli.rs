//! `tapwire dissect` as a user runs it: output shapes, exit statuses, bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tapwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args(args)
        .output()
        .expect("run tapwire")
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/golden")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tapwire-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn ndjson_lines_are_events_and_summary_goes_to_stderr() {
    let out = tapwire(&["dissect", &fixture("http1/nginx-keepalive-pipelining.pcap")]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 11);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["protocol"], "http");
        assert!(v["http"]["request"]["method"].is_string());
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("11 exchanges"), "{stderr}");
    assert!(stderr.contains("drops by cap"), "{stderr}");
}

#[test]
fn table_is_one_line_per_exchange() {
    let out = tapwire(&[
        "dissect",
        "--format",
        "table",
        "-q",
        &fixture("dns/dnsmasq-records.pcap"),
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 8);
    assert!(
        stdout.contains("A nothere.example.test -> NXDOMAIN"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn bad_files_exit_2_naming_the_file_and_the_rest_is_processed() {
    let not_capture = tmp("notes.txt", b"this is not a capture file at all\n");
    // A pcap header with link type 147 (a user DLT tapwire cannot decode).
    let mut unknown = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    unknown.extend(65535u32.to_le_bytes());
    unknown.extend(147u32.to_le_bytes());
    let unknown = tmp("user.pcap", &unknown);
    let good = fixture("dns/dnsmasq-records.pcap");
    let out = tapwire(&[
        "dissect",
        "-q",
        not_capture.to_str().unwrap(),
        "/nonexistent/capture.pcap",
        unknown.to_str().unwrap(),
        &good,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("notes.txt") && lines[0].contains("not a pcap or pcapng"));
    assert!(lines[1].contains("/nonexistent/capture.pcap") && lines[1].contains("cannot open"));
    assert!(lines[2].contains("user.pcap") && lines[2].contains("link type 147"));
    // The good file after the bad ones was still dissected.
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 8);
}

#[test]
fn capture_cut_mid_record_warns_once_and_exits_0() {
    let whole = std::fs::read(fixture("http1/nginx-keepalive-pipelining.pcap")).unwrap();
    let cut = tmp("cut.pcap", &whole[..whole.len() * 2 / 3]);
    let out = tapwire(&["dissect", "-q", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cut short"), "{stderr}");
    assert!(!out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = tapwire(&["dissect", "--format", "xml", "x.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xml"));
    let out = tapwire(&["dissect"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tapwire(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dissect"));
}

#[test]
fn arbitrary_garbage_never_panics() {
    let mut seed = 0x5eed_u64;
    for i in 0..40 {
        let mut bytes = if i % 2 == 0 {
            vec![
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0,
            ]
        } else {
            vec![0x0a, 0x0d, 0x0d, 0x0a]
        };
        for _ in 0..(200 + i * 37) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        let f = tmp(&format!("garbage-{i}.pcap"), &bytes);
        let out = tapwire(&["dissect", "-q", f.to_str().unwrap()]);
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "garbage-{i}: {:?}",
            out.status
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

/// The recorded Redis capture carries its password (AUTH, `redis-cli -a`, `HELLO 3 AUTH`);
/// no output format may show it, nor the summary.
#[test]
fn credentials_never_reach_any_output() {
    const PASSWORD: &str = "tapwire-test-password-7f3a";
    let cap = fixture("redis/redis-server-mixed.pcap");
    let raw = std::fs::read(&cap).unwrap();
    assert!(
        raw.windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes()),
        "the fixture must contain the password for this test to mean anything"
    );
    for format in ["ndjson", "table"] {
        let out = tapwire(&["dissect", "--format", format, &cap]);
        assert!(out.status.success());
        for stream in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains(PASSWORD),
                "{format} output shows the password"
            );
            assert!(
                !text.contains("tapwire-test-password"),
                "{format} output shows part of it"
            );
        }
    }
    // Nor do the checked-in expectations.
    let golden = std::fs::read_to_string(fixture("redis/redis-server-mixed.ndjson")).unwrap();
    assert!(!golden.contains(PASSWORD));
    assert!(golden.contains("\"AUTH ?\""));
}

/// The recorded RabbitMQ capture carries the password in connection.start-ok (PLAIN).
#[test]
fn amqp_credentials_never_reach_any_output() {
    const PASSWORD: &str = "tapwire-amqp-password-9c1e";
    let cap = fixture("amqp/rabbitmq-pika.pcap");
    let raw = std::fs::read(&cap).unwrap();
    assert!(
        raw.windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes())
    );
    for format in ["ndjson", "table"] {
        let out = tapwire(&["dissect", "--format", format, &cap]);
        assert!(out.status.success());
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !String::from_utf8_lossy(stream).contains(PASSWORD),
                "{format} shows it"
            );
        }
    }
    let golden = std::fs::read_to_string(fixture("amqp/rabbitmq-pika.ndjson")).unwrap();
    assert!(!golden.contains(PASSWORD));
    assert!(golden.contains("connection.start"));
}

#[test]
fn proto_descriptor_decodes_grpc_messages_and_a_bad_one_exits_2() {
    let cap = fixture("grpc/grpcio-bookshop.pcap");
    let desc = fixture("grpc/grpcio-bookshop.desc");
    let out = tapwire(&["dissect", "-q", "--proto-descriptor", &desc, &cap]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(r#""decoded":[{"id":"1"}]"#), "{text}");
    let out = tapwire(&["dissect", "-q", "--proto-descriptor", &cap, &cap]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--proto-descriptor") && err.contains("grpcio-bookshop.pcap"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn dissect_filter_keeps_what_the_expression_accepts() {
    let cap = fixture("http1/nginx-keepalive-pipelining.pcap");
    let all = tapwire(&["dissect", "-q", &cap]);
    let errors = tapwire(&[
        "dissect",
        "-q",
        "--filter",
        "http.response.status_code >= 400",
        &cap,
    ]);
    assert!(errors.status.success());
    let (all, errors) = (
        String::from_utf8(all.stdout).unwrap(),
        String::from_utf8(errors.stdout).unwrap(),
    );
    let n = errors.lines().count();
    assert!(
        n > 0 && n < all.lines().count(),
        "{n} of {}",
        all.lines().count()
    );
    for l in errors.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["http"]["response"]["status_code"].as_u64().unwrap() >= 400);
    }
    let bad = tapwire(&[
        "dissect",
        "-q",
        "--filter",
        "http.response.status_code >=",
        &cap,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(
        err.starts_with("tapwire: --filter: bad filter") && err.lines().count() == 1,
        "{err}"
    );
    assert!(bad.stdout.is_empty());
}

#[test]
fn run_refuses_a_bad_config_or_interface_with_one_line() {
    let cfg = tmp("bad.yaml", b"spool:\n  dir: /tmp/x\n  limt: 1GiB\n");
    let out = tapwire(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("limt"), "names the key: {err}");
    let out = tapwire(&["run", "--spool-limit", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("tapwire: spool.limit: not a size")
    );
    let out = tapwire(&[
        "run",
        "--interface",
        "nosuchif0",
        "--listen",
        "127.0.0.1:19470",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim(), "tapwire: capture: no interface named nosuchif0");
    // The data API off loopback needs a token, before anything is opened.
    let out = Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args([
            "run",
            "--read",
            "/nonexistent.pcap",
            "--listen",
            "0.0.0.0:19470",
        ])
        .env_remove("TAPWIRE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(
            "tapwire: listen 0.0.0.0:19470: an address other than loopback needs a token"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

/// Every bad sink setting is one line naming its key, exit 2, before anything is captured.
#[test]
fn run_refuses_bad_sink_settings_naming_the_key() {
    let pcap = fixture("http1/nginx-keepalive-pipelining.pcap");
    let spool = std::env::temp_dir().join(format!("tapwire-cli-sinks-{}", std::process::id()));
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tapwire"));
        c.args([
            "run",
            "--read",
            &pcap,
            "--listen",
            "127.0.0.1:19471",
            "--spool-dir",
        ])
        .arg(&spool)
        .args(extra)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("TAPWIRE_TOKEN");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run tapwire");
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        err
    };
    let cfg = |name: &str, text: &str| tmp(name, text.as_bytes()).to_string_lossy().into_owned();
    // (arguments, environment, what the one line must say)
    type Case = (Vec<String>, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec!["--otlp-endpoint".into(), "collector:4317".into()],
            vec![],
            "tapwire: sinks.otlp.endpoint: \"collector:4317\" is not an http:// or https:// URL",
        ),
        (
            vec![],
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector")],
            "tapwire: sinks.otlp.endpoint:",
        ),
        (
            vec![
                "--otlp-endpoint".into(),
                "http://c:4317".into(),
                "--otlp-protocol".into(),
                "http/json".into(),
            ],
            vec![],
            "tapwire: sinks.otlp.protocol:",
        ),
        (
            vec!["--kafka-brokers".into(), "localhost".into()],
            vec![],
            "tapwire: sinks.kafka.brokers:",
        ),
        (
            vec!["--kafka-topic".into(), "t".into()],
            vec![],
            "tapwire: sinks.kafka.brokers: missing",
        ),
        (
            vec![
                "--config".into(),
                cfg("s1.yaml", "sinks:\n  otlp:\n    endpont: http://c:4317\n"),
            ],
            vec![],
            "endpont",
        ),
        (
            vec![
                "--config".into(),
                cfg(
                    "s2.yaml",
                    "sinks:\n  otlp:\n    endpoint: https://c:4317\n    tls: {ca_file: /nonexistent/ca.pem}\n",
                ),
            ],
            vec![],
            "tapwire: sinks.otlp.tls.ca_file: /nonexistent/ca.pem:",
        ),
        (
            vec![
                "--config".into(),
                cfg(
                    "s3.yaml",
                    "sinks:\n  kafka:\n    brokers: 127.0.0.1:9\n    properties: {no.such.thing: 1}\n",
                ),
            ],
            vec![],
            "tapwire: sinks.kafka.properties:",
        ),
        (
            vec![
                "--config".into(),
                cfg(
                    "s4.yaml",
                    "sinks:\n  prometheus: {enabled: true, filter: 'status ==='}\n",
                ),
            ],
            vec![],
            "tapwire: sinks.prometheus.filter:",
        ),
        (
            vec![
                "--config".into(),
                cfg(
                    "s5.yaml",
                    "sinks:\n  otlp: {endpoint: 'http://c:4317', compression: brotli}\n",
                ),
            ],
            vec![],
            "tapwire: sinks.otlp.compression:",
        ),
        (
            vec!["--kafka-brokers".into(), "127.0.0.1:9".into()],
            vec![("TAPWIRE_KAFKA_PROPERTIES", "sasl.password=x,no-value")],
            "tapwire: TAPWIRE_KAFKA_PROPERTIES: \"no-value\" is not key=value",
        ),
        (
            // Properties from the environment are checked like the file's.
            vec!["--kafka-brokers".into(), "127.0.0.1:9".into()],
            vec![("TAPWIRE_KAFKA_PROPERTIES", "no.such.thing=1")],
            "tapwire: sinks.kafka.properties:",
        ),
        (
            vec![
                "--config".into(),
                cfg("a1.yaml", "api: {max_subscriptions: 0}\n"),
            ],
            vec![],
            "tapwire: api.max_subscriptions: 0 is not between 1 and 10000",
        ),
        (
            vec![
                "--config".into(),
                cfg("r1.yaml", "redact: {headers: ['']}\n"),
            ],
            vec![],
            "tapwire: redact:",
        ),
    ];
    for (args, env, want) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = run(&a, &env);
        assert!(err.contains(want), "{a:?}: want {want:?}, got {err}");
    }
    let _ = std::fs::remove_dir_all(&spool);
}

/// `run --read FILE` replays a capture through the agent (spool, API); a subscriber with
/// `since` then gets every exchange the file holds, as `dissect` finds them. No root needed.
#[test]
fn run_replays_a_file_and_since_serves_it() {
    use std::io::{BufRead, BufReader};
    let cap = fixture("http1/nginx-keepalive-pipelining.pcap");
    let offline = tapwire(&["dissect", "-q", &cap]);
    let want: Vec<String> = String::from_utf8(offline.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let spool = std::env::temp_dir().join(format!("tapwire-read-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let api = "127.0.0.1:19472";
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args(["run", "--read", &cap, "--listen", api, "--spool-dir"])
        .arg(&spool)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args([
            "watch",
            "--agent",
            &format!("http://{api}"),
            "--since",
            "100000h",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first subscription attempt may come before the API is up: retry until it holds.
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    loop {
        let out = watch.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        while got.len() < want.len() && started.elapsed().as_secs() < 20 {
            match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                Ok(l) => got.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        if got.len() >= want.len() || started.elapsed().as_secs() >= 20 {
            break;
        }
        let _ = watch.wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
        watch = Command::new(env!("CARGO_BIN_EXE_tapwire"))
            .args([
                "watch",
                "--agent",
                &format!("http://{api}"),
                "--since",
                "100000h",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }
    let _ = watch.kill();
    let _ = watch.wait();
    // The same stream as server-sent events for a client that asks for them.
    let sse = Command::new("curl")
        .args(["-s", "-N", "-m", "3", "-H", "Accept: text/event-stream"])
        .arg(format!("http://{api}/v1/events?since=100000h"))
        .output();
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&spool);
    if let Ok(sse) = sse {
        let text = String::from_utf8_lossy(&sse.stdout);
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), want.len(), "{text}");
        assert!(
            events.iter().all(|e| e.starts_with("data: {\"protocol\"")),
            "{text}"
        );
    }
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(
        got_sorted, want_sorted,
        "the file's exchanges, through the spool, as dissect gives them"
    );
}

fn status(api: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-m", "2", &format!("http://{api}/v1/status")])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// `--recorded-speed` replays at the pace of the recording (2.7 s here), not all at once.
#[test]
fn recorded_speed_paces_the_replay() {
    let cap = fixture("redis/redis-server-mixed.pcap");
    let mut total = 0u64;
    pipeline::source::read_file(Path::new(&cap), |_| total += 1).unwrap();
    let spool = std::env::temp_dir().join(format!("tapwire-paced-{}", std::process::id()));
    let api = "127.0.0.1:19474";
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args([
            "run",
            "--read",
            &cap,
            "--recorded-speed",
            "--listen",
            api,
            "--spool-dir",
        ])
        .arg(&spool)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut partial = false;
    let mut done = false;
    while started.elapsed().as_secs() < 20 && !done {
        let n = status(api)["capture"]["packets"].as_u64().unwrap_or(0);
        partial |= n > 0 && n < total;
        done = n == total;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&spool);
    assert!(done, "every packet replayed");
    assert!(partial, "seen part-way through: the replay was paced");
}

/// On a terminal `watch` prints a table, errors in red.
#[test]
fn watch_on_a_terminal_prints_a_table_with_errors_in_red() {
    let have_script = Command::new("sh")
        .args(["-c", "command -v script && command -v curl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_script {
        eprintln!("SKIP: needs script(1) (util-linux) and curl");
        return;
    }
    let cap = fixture("http1/nginx-keepalive-pipelining.pcap");
    let spool = std::env::temp_dir().join(format!("tapwire-tty-{}", std::process::id()));
    let api = "127.0.0.1:19475";
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tapwire"))
        .args(["run", "--read", &cap, "--listen", api, "--spool-dir"])
        .arg(&spool)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while status(api).is_null() && started.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let watch = format!(
        "{} watch --agent http://{api} --since 100000h",
        env!("CARGO_BIN_EXE_tapwire")
    );
    // script(1) gives watch a pseudo-terminal; it is stopped after a few seconds.
    let out = Command::new("timeout")
        .args(["4", "script", "-qec", &watch, "/dev/null"])
        .output()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&spool);
    let text = String::from_utf8_lossy(&out.stdout);
    let red: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("\u{1b}[31m"))
        .collect();
    let plain: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" http ") && !l.starts_with('\u{1b}'))
        .collect();
    assert!(
        !red.is_empty()
            && red.iter().all(|l| l.contains("-> 404")
                || l.contains("-> 500")
                || l.contains("incomplete")
                || l.contains("no_response")),
        "{text}"
    );
    assert!(plain.iter().any(|l| l.contains("-> 200")), "{text}");
    assert!(!text.contains("{\"protocol\""), "a table, not JSON: {text}");
}

/// Every golden capture, and all of them read as one capture.
fn golden_captures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/golden");
    let mut all: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|d| d.path().is_dir() && d.file_name() != "corpus")
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    all.sort();
    assert!(all.len() >= 12, "{all:?}");
    all
}

/// Each flow's lines, in the order printed (flows by client and server endpoints).
fn per_flow(ndjson: &[u8]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut flows = std::collections::BTreeMap::<String, Vec<String>>::new();
    for line in String::from_utf8_lossy(ndjson).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = format!(
            "{} {} {}",
            v["client"], v["server"], v["network"]["transport"]
        );
        flows.entry(key).or_default().push(line.to_string());
    }
    flows
}

#[test]
fn workers_print_what_one_worker_prints() {
    let files = golden_captures();
    // One capture at a time: with --sort, byte for byte what one worker prints.
    for f in &files {
        let one = tapwire(&["dissect", "-q", "--workers", "1", f]);
        assert!(one.status.success());
        assert!(!one.stdout.is_empty(), "{f}");
        for n in ["2", "3", "8"] {
            let many = tapwire(&["dissect", "-q", "--sort", "--workers", n, f]);
            assert!(many.status.success());
            assert!(
                one.stdout == many.stdout,
                "{f} with {n} workers:\n{}\n---\n{}",
                String::from_utf8_lossy(&one.stdout),
                String::from_utf8_lossy(&many.stdout)
            );
        }
    }
    // All of them as one capture (their clocks jump back and forth, so idle flows are closed
    // when each worker next sees a packet, not all at once): the same exchanges, each flow's
    // in the same order, sorted or not.
    let mut args = vec!["dissect", "-q", "--workers", "1"];
    args.extend(files.iter().map(String::as_str));
    let one = tapwire(&args);
    assert!(one.status.success());
    let expected = per_flow(&one.stdout);
    assert!(expected.len() > 50, "{}", expected.len());
    for n in ["2", "3", "8"] {
        for sort in [true, false] {
            let mut args = vec!["dissect", "-q", "--workers", n];
            if sort {
                args.push("--sort");
            }
            args.extend(files.iter().map(String::as_str));
            let many = tapwire(&args);
            assert!(many.status.success());
            assert!(
                per_flow(&many.stdout) == expected,
                "all captures, {n} workers, sort {sort}"
            );
        }
    }
}

#[test]
fn workers_apply_the_filter_and_the_table_format_and_refuse_zero() {
    let files = golden_captures();
    let mut args = vec![
        "dissect",
        "-q",
        "--workers",
        "2",
        "--format",
        "table",
        "--filter",
        "status != \"ok\"",
    ];
    args.extend(files.iter().map(String::as_str));
    let out = tapwire(&args);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().count() >= 5, "{text}");
    assert!(
        text.lines().all(|l| !l.trim_end().ends_with(" ok")),
        "{text}"
    );
    let zero = tapwire(&["dissect", "--workers", "0", &files[0]]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--workers"));
}
