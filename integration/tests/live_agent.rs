//! `tapwire run` end to end, as root: two network namespaces joined by a veth pair, nginx
//! (Debian) in one, curl in the other, the agent capturing on the server's veth, `tapwire
//! watch` subscribed through the API.
//!
//! Checked: no dissection work while nobody subscribes (counters), exactly the expected
//! exchanges while someone does, dissection stopping when the subscriber leaves, a clean
//! SIGTERM (segments closed, and re-dissecting the spool offline gives the live exchanges),
//! and a SIGKILL (the next start trims and indexes the cut segment, which reads back).
//!
//! Skipped visibly when not root or when `ip`, `nginx` or `curl` is missing. Only addresses
//! inside the namespaces are used; namespaces and processes are removed even on failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tapwire_integration::lab::{
    API, Lab, TAPWIRE_PATH, have, lines_of, sh, tapwire_cmd, wait_until,
};

/// (method, path, status) of the HTTP exchanges in ndjson text.
fn requests(text: &str) -> Vec<(String, String, u64)> {
    let mut v: Vec<(String, String, u64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["protocol"] == "http")
        .map(|e| {
            (
                e["http"]["request"]["method"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["url"]["path"].as_str().unwrap_or("").to_string(),
                e["http"]["response"]["status_code"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

fn dissect(files: &[PathBuf]) -> String {
    let mut cmd = tapwire_cmd();
    cmd.args(["dissect", "-q"]).args(files);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn capture_spool_and_dissect_on_demand() {
    let Some(mut lab) = Lab::new() else { return };
    lab.start_nginx();
    let agent = lab.start_agent();

    // Nobody subscribed: packets are captured and spooled, nothing is dissected.
    lab.get("/before-1");
    lab.get("/before-2");
    wait_until("the unsubscribed packets to be counted", || {
        lab.status()["capture"]["packets"].as_u64().unwrap_or(0) >= 10
    });
    let st = lab.status();
    assert_eq!(st["demand"]["dissected_packets"], 0, "{st}");
    assert_eq!(st["demand"]["dissection_active"], false);

    // A subscriber: `tapwire watch`, piped, prints NDJSON.
    let (mut watch, rx) = lab.watch();
    // A second subscriber with a filter, and one whose filter does not compile.
    let mut only_404 = lab
        .in_ns(
            &lab.s.clone(),
            &[
                &*TAPWIRE_PATH as &str,
                "watch",
                "--agent",
                &format!("http://{API}"),
                "--filter",
                "http.response.status_code == 404",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bad = lab
        .in_ns(
            &lab.s.clone(),
            &[
                &*TAPWIRE_PATH as &str,
                "watch",
                "--agent",
                &format!("http://{API}"),
                "--filter",
                "status ==",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(
        why.contains("bad filter") && why.lines().count() == 1,
        "{why}"
    );
    wait_until("the subscriptions", || {
        lab.status()["demand"]["subscriptions"] == 2
    });
    lab.get("/index.html");
    lab.get("/missing");
    lab.get("/index.html?x=1");
    let mut live = String::new();
    let until = Instant::now() + Duration::from_secs(10);
    while requests(&live).len() < 3 && Instant::now() < until {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            live.push_str(&l);
            live.push('\n');
        }
    }
    // Give a stray extra event the chance to show up before checking there is none.
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        live.push_str(&l);
        live.push('\n');
    }
    let want = vec![
        ("GET".to_string(), "/index.html".to_string(), 200),
        ("GET".to_string(), "/index.html".to_string(), 200),
        ("GET".to_string(), "/missing".to_string(), 404),
    ];
    assert_eq!(
        requests(&live),
        want,
        "exactly the exchanges made while subscribed"
    );

    // The spool exported through the API (`tapwire pcap`) and re-dissected offline has the
    // exchanges seen live (the segments are flushed once a second).
    std::thread::sleep(Duration::from_millis(1200));
    let export = lab.dir.join("export.pcapng");
    let st = lab.pcap(&["--since", "1m", "-o", export.to_str().unwrap()]);
    assert!(st.success());
    let exported = requests(&dissect(std::slice::from_ref(&export)));
    for r in &want {
        assert!(
            exported.contains(r),
            "{r:?} not in the export: {exported:?}"
        );
    }
    // With a capture filter on the export: only what it accepts.
    for (filter, http) in [("tcp port 80", true), ("udp", false)] {
        let out = lab.dir.join("filtered.pcapng");
        let st = lab
            .in_ns(
                &lab.s.clone(),
                &[
                    &*TAPWIRE_PATH as &str,
                    "pcap",
                    "--agent",
                    &format!("http://{API}"),
                    "--since",
                    "1m",
                    "--filter",
                    filter,
                    "-o",
                    out.to_str().unwrap(),
                ],
            )
            .status()
            .unwrap();
        assert!(st.success());
        let got = requests(&dissect(std::slice::from_ref(&out)));
        assert_eq!(!got.is_empty(), http, "{filter}: {got:?}");
    }
    let bad = lab
        .in_ns(
            &lab.s.clone(),
            &[
                &*TAPWIRE_PATH as &str,
                "pcap",
                "--agent",
                &format!("http://{API}"),
                "--since",
                "soon",
                "-o",
                "/dev/null",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("since=\"soon\""));

    // The agent's own metrics.
    let metrics = lab
        .in_ns(
            &lab.s.clone(),
            &["curl", "-sf", &format!("http://{API}/metrics")],
        )
        .output()
        .unwrap();
    let metrics = String::from_utf8(metrics.stdout).unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(
        value(&format!(
            "tapwire_capture_packets_total{{interface=\"{}\"}}",
            lab.dev
        )) > 10.0
    );
    assert_eq!(
        value(&format!(
            "tapwire_kernel_drops_total{{interface=\"{}\"}}",
            lab.dev
        )),
        0.0
    );
    assert!(value("tapwire_exchanges_total{protocol=\"http\"}") >= 3.0);
    assert_eq!(value("tapwire_dissection_active"), 1.0);
    assert_eq!(value("tapwire_subscriptions_active"), 2.0);
    assert!(
        value("tapwire_spool_bytes{worker=\"0\"}") + value("tapwire_spool_bytes{worker=\"1\"}")
            > 0.0
    );

    // `since`: a new subscriber first gets the spool's recent past (made while nobody or
    // somebody else was subscribed), then live events, each exchange exactly once.
    let (mut since, srx) = lab.watch_with(&["--since", "1m"]);
    wait_until("the since subscription", || {
        lab.status()["demand"]["subscriptions"] == 3
    });
    lab.get("/after-since");
    let mut got = String::new();
    let until = Instant::now() + Duration::from_secs(15);
    while !got.contains("/after-since") && Instant::now() < until {
        if let Ok(l) = srx.recv_timeout(Duration::from_millis(200)) {
            got.push_str(&l);
            got.push('\n');
        }
    }
    while let Ok(l) = srx.recv_timeout(Duration::from_millis(500)) {
        got.push_str(&l);
        got.push('\n');
    }
    let _ = since.kill();
    let _ = since.wait();
    let mut expected = vec![
        ("GET".to_string(), "/after-since".to_string(), 404),
        ("GET".to_string(), "/before-1".to_string(), 404),
        ("GET".to_string(), "/before-2".to_string(), 404),
    ];
    expected.extend(want.iter().cloned());
    expected.sort();
    assert_eq!(
        requests(&got),
        expected,
        "replay then live, no duplicate, no hole"
    );
    let first_live = got
        .lines()
        .position(|l| l.contains("/after-since"))
        .unwrap();
    assert_eq!(
        first_live,
        got.lines().count() - 1,
        "the replay comes before live events"
    );

    // The filtered subscriber got only the 404s.
    let _ = only_404.kill();
    let out = only_404.wait_with_output().unwrap();
    let filtered = requests(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        filtered,
        vec![
            ("GET".to_string(), "/after-since".to_string(), 404),
            ("GET".to_string(), "/missing".to_string(), 404),
        ]
    );

    // The subscriber leaves: dissection stops.
    let _ = watch.kill();
    let _ = watch.wait();
    wait_until("dissection to stop", || {
        lab.get("/after");
        let st = lab.status();
        st["demand"]["subscriptions"] == 0 && st["demand"]["dissection_active"] == false
    });

    // SIGTERM: a clean exit with every segment closed; the spool re-dissected offline has
    // every request, the live ones included.
    let st = lab.signal(agent, "-TERM");
    assert!(st.success(), "{st:?}");
    let files = lab.spool_files();
    assert!(!files.is_empty());
    assert!(
        files.iter().all(|f| f
            .file_name()
            .unwrap()
            .to_string_lossy()
            .matches('-')
            .count()
            == 3),
        "all segments closed: {files:?}"
    );
    let offline = requests(&dissect(&files));
    for r in &want {
        assert!(offline.contains(r), "{r:?} not in the spool: {offline:?}");
    }
    assert!(
        offline.iter().any(|(_, p, _)| p == "/before-1"),
        "spooled while unsubscribed"
    );

    // SIGKILL: the next start trims the cut segment and indexes it.
    let again = lab.start_agent();
    lab.get("/killed");
    std::thread::sleep(Duration::from_millis(1500));
    let st = lab.signal(again, "-KILL");
    assert!(!st.success());
    let open_after_kill = lab
        .spool_files()
        .iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .matches('-')
                .count()
                == 1
        })
        .count();
    assert!(open_after_kill > 0, "a segment was left open by the kill");
    let third = lab.start_agent();
    let files = lab.spool_files();
    let offline = requests(&dissect(
        &files
            .iter()
            .filter(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .matches('-')
                    .count()
                    == 3
            })
            .cloned()
            .collect::<Vec<_>>(),
    ));
    assert!(
        offline.iter().any(|(_, p, _)| p == "/killed"),
        "{offline:?}"
    );
    let st = lab.signal(third, "-TERM");
    assert!(st.success());
}

/// With a token file, every endpoint but the health checks needs the bearer token: missing
/// or wrong is 401; `watch` passes it with `--token`. Captures on loopback only.
#[test]
fn api_token_guards_everything_but_health() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" || !have("curl") {
        eprintln!("SKIP: the token test needs root (AF_PACKET) and curl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapwire-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let api = "127.0.0.1:19467";
    let mut agent = tapwire_cmd()
        .args([
            "run",
            "--interface",
            "lo",
            "--listen",
            api,
            "--workers",
            "1",
        ])
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .arg("--token-file")
        .arg(&token)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code = |path: &str, auth: Option<&str>| -> String {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2"]);
        if let Some(a) = auth {
            c.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let out = c.arg(format!("http://{api}{path}")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the agent", || code("/healthz", None) == "200");
    let result = std::panic::catch_unwind(|| {
        assert_eq!(code("/readyz", None), "200");
        for path in ["/metrics", "/v1/status", "/v1/pcap?since=1m"] {
            assert_eq!(code(path, None), "401", "{path} without a token");
            assert_eq!(
                code(path, Some("wrong")),
                "401",
                "{path} with a wrong token"
            );
            assert_eq!(
                code(path, Some("s3cret-token")),
                "200",
                "{path} with the token"
            );
        }
        // The header `watch --cluster` sends through the API server's pod proxy.
        let with_header = |t: &str| {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-m",
                    "2",
                    "-H",
                ])
                .arg(format!("X-Tapwire-Token: {t}"))
                .arg(format!("http://{api}/v1/status"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(with_header("s3cret-token"), "200");
        assert_eq!(with_header("wrong"), "401");
        let denied = tapwire_cmd()
            .args([
                "watch",
                "--agent",
                &format!("http://{api}"),
                "--token",
                "wrong",
            ])
            .output()
            .unwrap();
        assert_eq!(denied.status.code(), Some(2));
    });
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
    // The token from the environment instead of a file.
    let api2 = "127.0.0.1:19477";
    let mut agent2 = tapwire_cmd()
        .args([
            "run",
            "--interface",
            "lo",
            "--listen",
            api2,
            "--workers",
            "1",
        ])
        .arg("--spool-dir")
        .arg(dir.join("spool2"))
        .env("TAPWIRE_TOKEN", "from-env")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code2 = |auth: Option<&str>| -> String {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2"]);
        if let Some(a) = auth {
            c.args(["-H", &format!("Authorization: Bearer {a}")]);
        }
        let out = c.arg(format!("http://{api2}/v1/status")).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the second agent", || code2(None) == "401");
    let env_ok = code2(Some("from-env"));
    let _ = Command::new("kill")
        .args(["-TERM", &agent2.id().to_string()])
        .status();
    let _ = agent2.wait();
    assert_eq!(env_ok, "200", "TAPWIRE_TOKEN guards the API too");
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A capture filter (tcpdump syntax through libpcap, or `tcpdump -ddd` text) is attached
/// before the socket is bound: only matching packets are captured. Loopback only.
#[test]
fn capture_filter_keeps_only_matching_packets() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" || !have("curl") || !have("tcpdump") {
        eprintln!("SKIP: the capture filter test needs root, curl and tcpdump");
        return;
    }
    let ddd = Command::new("tcpdump")
        .args(["-ddd", "-y", "EN10MB", "udp port 39999"])
        .output()
        .unwrap();
    let ddd = String::from_utf8(ddd.stdout).unwrap();
    for (n, filter) in [("syntax", "udp port 39999".to_string()), ("ddd", ddd)] {
        let dir = std::env::temp_dir().join(format!("tapwire-bpf-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let api = "127.0.0.1:19468";
        let mut agent = tapwire_cmd()
            .args([
                "run",
                "--interface",
                "lo",
                "--listen",
                api,
                "--workers",
                "1",
                "--filter",
                &filter,
            ])
            .arg("--spool-dir")
            .arg(&dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = || -> serde_json::Value {
            let out = Command::new("curl")
                .args(["-sf", &format!("http://{api}/v1/status")])
                .output()
                .unwrap();
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
        };
        wait_until("the agent", || status() != serde_json::Value::Null);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for port in [39999, 39998, 39999, 39997, 39999] {
            sock.send_to(b"x", ("127.0.0.1", port)).unwrap();
        }
        wait_until("the matching datagrams", || {
            status()["capture"]["packets"] == 3
        });
        std::thread::sleep(Duration::from_millis(300));
        let packets = status()["capture"]["packets"].clone();
        let _ = Command::new("kill")
            .args(["-TERM", &agent.id().to_string()])
            .status();
        let _ = agent.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            packets, 3,
            "{n}: only the three datagrams to port 39999 (API traffic excluded)"
        );
    }
    let bad = tapwire_cmd()
        .args([
            "run",
            "--interface",
            "lo",
            "--listen",
            "127.0.0.1:19469",
            "--filter",
            "udp port banana",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("bad capture filter") && err.lines().count() == 1,
        "{err}"
    );
}

/// On `any`, a packet that crosses a veth and a bridge (a Kubernetes node's pod path) is
/// counted and spooled once, not once per interface.
#[test]
fn any_counts_a_bridged_packet_once() {
    let Some(mut lab) = Lab::new() else { return };
    let br = format!("twl-br{}", &lab.s[5..]);
    let sa = lab.sa.clone();
    // Move the server's address from its veth to a bridge the veth is a port of.
    sh(&["ip", "-n", &lab.s, "addr", "flush", "dev", &lab.dev]);
    sh(&["ip", "-n", &lab.s, "link", "add", &br, "type", "bridge"]);
    sh(&["ip", "-n", &lab.s, "link", "set", &lab.dev, "master", &br]);
    sh(&[
        "ip",
        "-n",
        &lab.s,
        "addr",
        "add",
        &format!("{sa}/24"),
        "dev",
        &br,
    ]);
    sh(&["ip", "-n", &lab.s, "link", "set", &br, "up"]);
    for ns in [lab.s.clone(), lab.c.clone()] {
        let _ = lab
            .in_ns(&ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .status();
    }
    // A UDP sink, so no ICMP answers; static neighbours, so no ARP.
    let sink = lab
        .in_ns(
            &lab.s.clone(),
            &["python3", "-c", "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',39999));[s.recv(64) for _ in iter(int,1)]"],
        )
        .spawn()
        .unwrap();
    lab.procs.push(sink);
    let spool = lab.dir.join("spool");
    let agent = lab
        .in_ns(
            &lab.s.clone(),
            &[
                &*TAPWIRE_PATH as &str,
                "run",
                "--listen",
                API,
                "--workers",
                "1",
                "--spool-dir",
                spool.to_str().unwrap(),
                // Leave out the test's own API calls on loopback.
                "--filter",
                "udp port 39999",
            ],
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(agent);
    lab.wait_for(&lab.s.clone(), &format!("http://{API}/healthz"));
    let send = format!("for i in $(seq 50); do echo x > /dev/udp/{sa}/39999; done");
    let st = lab
        .in_ns(&lab.c.clone(), &["bash", "-c", &send])
        .status()
        .unwrap();
    assert!(st.success());
    wait_until("the datagrams", || {
        lab.status()["capture"]["packets"].as_u64().unwrap_or(0) >= 50
    });
    std::thread::sleep(Duration::from_millis(500));
    let st = lab.status();
    let packets = st["capture"]["packets"].as_u64().unwrap();
    // Each datagram crossed the veth and the bridge: 100 sightings, 50 packets.
    assert_eq!(packets, 50, "{st}");
    // Copies are counted in the metrics at the worker's next housekeeping (once a second).
    wait_until("the duplicates metric", || {
        let m = lab
            .in_ns(
                &lab.s.clone(),
                &["curl", "-sf", &format!("http://{API}/metrics")],
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&m.stdout)
            .contains("tapwire_capture_duplicates_total{interface=\"any\"} 50")
    });
}

/// Sustained traffic against a small spool: the folder stays within its cap plus one
/// segment, the oldest segments go first, and capture goes on. Loopback only.
#[test]
fn the_spool_cap_holds_under_sustained_traffic() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" || !have("curl") {
        eprintln!("SKIP: the spool cap test needs root and curl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapwire-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let api = "127.0.0.1:19471";
    let mut agent = tapwire_cmd()
        .args([
            "run",
            "--interface",
            "lo",
            "--listen",
            api,
            "--workers",
            "1",
        ])
        .args([
            "--spool-limit",
            "2MiB",
            "--filter",
            "udp port 39996",
            "--snaplen",
            "200",
        ])
        .arg("--spool-dir")
        .arg(&dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = || -> String {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://{api}/metrics")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the agent", || !metrics().is_empty());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let payload = [0x5au8; 1000];
    let mut max_seen = 0u64;
    let size = |d: &PathBuf| -> u64 {
        std::fs::read_dir(d.join("w0"))
            .map(|r| {
                r.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    // About 12 MB in bursts, checking the folder as it goes.
    for _ in 0..40 {
        for _ in 0..300 {
            sock.send_to(&payload, "127.0.0.1:39996").unwrap();
        }
        std::thread::sleep(Duration::from_millis(25));
        max_seen = max_seen.max(size(&dir));
    }
    wait_until("segments to be deleted", || {
        metrics().contains("tapwire_spool_segments_deleted_total{worker=\"0\"}")
    });
    let m = metrics();
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let final_size = size(&dir);
    // The snaplen: 200 bytes kept of each 1042-byte frame, the wire length recorded.
    let seg = std::fs::read_dir(dir.join("w0"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut frames = 0;
    pipeline::source::read_file(&seg, |f| {
        assert_eq!((f.data.len(), f.orig_len), (200, 1042));
        frames += 1;
    })
    .unwrap();
    assert!(frames > 0);
    let _ = std::fs::remove_dir_all(&dir);
    // 2 MiB cap, 1 MiB segments (cap / 16, at least 1 MiB), one block of slack.
    let bound = (2 << 20) + (1 << 20) + 2048;
    assert!(
        max_seen <= bound && final_size <= bound,
        "{max_seen} / {final_size} over {bound}"
    );
    assert!(
        m.contains("tapwire_capture_packets_total{interface=\"lo\"} 12000"),
        "{m}"
    );
    assert!(
        m.contains("tapwire_kernel_drops_total{interface=\"lo\"} 0"),
        "{m}"
    );
}

/// `--libpcap`: the same agent on libpcap live capture instead of the ring. Loopback only.
#[test]
fn libpcap_source_serves_live_events() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" || !have("curl") {
        eprintln!("SKIP: the libpcap test needs root and curl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapwire-libpcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The traffic to watch is the agent's own API's, which it skips by default.
    let cfg = std::env::temp_dir().join(format!("tapwire-libpcap-{}.yaml", std::process::id()));
    std::fs::write(&cfg, "skip_own_traffic: false\n").unwrap();
    let api = "127.0.0.1:19473";
    let mut agent = tapwire_cmd()
        .args(["run", "--config"])
        .arg(&cfg)
        .args([
            "--libpcap",
            "--interface",
            "lo",
            "--listen",
            api,
            "--filter",
            "tcp port 19473",
        ])
        .arg("--spool-dir")
        .arg(&dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let curl = |path: &str| {
        Command::new("curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "-m",
                "2",
                &format!("http://{api}{path}"),
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    wait_until("the agent", || curl("/healthz"));
    let mut watch = tapwire_cmd()
        .args([
            "watch",
            "--agent",
            &format!("http://{api}"),
            "--filter",
            "url.path == \"/v1/status\"",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut watch);
    let mut seen = String::new();
    wait_until("a live event through libpcap", || {
        curl("/v1/status");
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&l);
        }
        seen.contains("/v1/status")
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let st = agent.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
    assert!(st.success());
}

/// Redis (redis-server, redis-cli) and DNS (dnsmasq, dig over UDP and TCP) through the live
/// agent: the exchanges arrive with their protocol fields.
#[test]
fn redis_and_dns_exchanges_arrive_live() {
    let Some(mut lab) = Lab::new() else { return };
    for cmd in ["redis-server", "redis-cli", "dnsmasq", "dig"] {
        if !have(cmd) {
            eprintln!("SKIP: the redis/dns live test needs {cmd}");
            return;
        }
    }
    let sa = lab.sa.clone();
    lab.start_redis();
    lab.start_dnsmasq(&["--address=/shop.tapwire.test/10.9.8.7"]);
    lab.start_agent();
    let mut watch = lab
        .in_ns(
            &lab.s.clone(),
            &[
                &*TAPWIRE_PATH as &str,
                "watch",
                "--agent",
                &format!("http://{API}"),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut watch);
    wait_until("the subscription", || {
        lab.status()["demand"]["subscriptions"] == 1
    });
    let c = lab.c.clone();
    wait_until("redis-server", || {
        lab.in_ns(&c, &["redis-cli", "-h", &sa, "PING"])
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
    });
    for args in [
        vec!["SET", "cart:1", "apples"],
        vec!["GET", "cart:1"],
        vec!["INCRBY", "cart:1", "2"],
    ] {
        let mut a = vec!["redis-cli", "-h", sa.as_str()];
        a.extend(args);
        let _ = lab.in_ns(&c, &a).output().unwrap();
    }
    let mut events: Vec<serde_json::Value> = Vec::new();
    // A slow consumer: a second subscriber that stops reading (SIGSTOP) while 20k commands
    // go by. It loses events and is told so; the first subscriber loses none.
    let mut slow = lab
        .in_ns(
            &lab.s.clone(),
            &[
                &*TAPWIRE_PATH as &str,
                "watch",
                "--agent",
                &format!("http://{API}"),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the slow subscription", || {
        lab.status()["demand"]["subscriptions"] == 2
    });
    sh(&["kill", "-STOP", &slow.id().to_string()]);
    let bench = lab
        .in_ns(
            &c,
            &[
                "redis-benchmark",
                "-h",
                &sa,
                "-n",
                "20000",
                "-c",
                "4",
                "-t",
                "ping",
                "-q",
            ],
        )
        .output()
        .unwrap();
    assert!(bench.status.success());
    let fast_pings = std::cell::Cell::new(0usize);
    wait_until("the fast subscriber to get every PING", || {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(50)) {
            if l.contains("\"PING\"") {
                fast_pings.set(fast_pings.get() + 1);
            } else if let Ok(v) = serde_json::from_str(&l) {
                events.push(v);
            }
        }
        fast_pings.get() >= 20_000
    });
    assert!(
        lab.status()["demand"]["dropped"].as_u64().unwrap() > 0,
        "the slow one lost events"
    );
    sh(&["kill", "-CONT", &slow.id().to_string()]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = slow.kill();
    let slow_err = slow.wait_with_output().unwrap().stderr;
    let slow_err = String::from_utf8_lossy(&slow_err);
    assert!(
        slow_err.contains("\"notice\":\"dropped\""),
        "the slow one was told: {slow_err}"
    );
    for proto in ["+notcp", "+tcp"] {
        let st = lab
            .in_ns(
                &c,
                &[
                    "dig",
                    &format!("@{sa}"),
                    "shop.tapwire.test",
                    "A",
                    proto,
                    "+tries=3",
                    "+time=1",
                ],
            )
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&st.stdout).contains("10.9.8.7"));
    }
    let done = |ev: &[serde_json::Value]| {
        let redis = ev.iter().filter(|e| e["protocol"] == "redis").count();
        let dns = ev.iter().filter(|e| e["protocol"] == "dns").count();
        redis >= 4 && dns >= 2
    };
    let until = Instant::now() + Duration::from_secs(20);
    while !done(&events) && Instant::now() < until {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            events.push(serde_json::from_str(&l).unwrap());
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let ops: Vec<&str> = events
        .iter()
        .filter(|e| e["protocol"] == "redis")
        .filter_map(|e| e["db"]["operation"]["name"].as_str())
        .collect();
    for op in ["SET", "GET", "INCRBY"] {
        assert!(ops.contains(&op), "{op} not in {ops:?}");
    }
    let incr = events
        .iter()
        .find(|e| e["db"]["operation"]["name"] == "INCRBY")
        .unwrap();
    assert_eq!(
        incr["status"], "error",
        "INCRBY on a string is a Redis error reply"
    );
    let dns: Vec<&serde_json::Value> = events.iter().filter(|e| e["protocol"] == "dns").collect();
    assert_eq!(
        dns.len(),
        2,
        "{dns:?}; the agent: {}; its log: {}",
        lab.status(),
        std::fs::read_to_string(lab.dir.join("agent.log")).unwrap_or_default()
    );
    let transports: Vec<&str> = dns
        .iter()
        .filter_map(|e| e["network"]["transport"].as_str())
        .collect();
    assert!(
        transports.contains(&"udp") && transports.contains(&"tcp"),
        "{transports:?}"
    );
    for e in dns {
        assert_eq!(e["dns"]["question"]["name"], "shop.tapwire.test");
        assert_eq!(e["dns"]["answers"][0]["data"], "10.9.8.7");
    }
}

/// An interface list (`--interface VETH,lo`), and the VLAN tag the NIC strips restored in
/// the spool: datagrams sent over VLAN 10 on the veth are spooled with their 802.1Q tag.
#[test]
fn interface_lists_and_vlan_tags() {
    let Some(mut lab) = Lab::new() else { return };
    let (s, c, dev) = (lab.s.clone(), lab.c.clone(), lab.dev.clone());
    let cdev = dev.replace("twl-s", "twl-c");
    let net = lab.sa.split('.').nth(2).unwrap().to_string();
    let (sv, cv) = (format!("{dev}.10"), format!("{cdev}.10"));
    // VLAN devices need the kernel's 8021q support, which not every test host has.
    let vlan = Command::new("ip")
        .args([
            "-n", &s, "link", "add", "link", &dev, "name", &sv, "type", "vlan", "id", "10",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if vlan {
        sh(&[
            "ip", "-n", &c, "link", "add", "link", &cdev, "name", &cv, "type", "vlan", "id", "10",
        ]);
        sh(&[
            "ip",
            "-n",
            &s,
            "addr",
            "add",
            &format!("10.80.{net}.1/24"),
            "dev",
            &sv,
        ]);
        sh(&[
            "ip",
            "-n",
            &c,
            "addr",
            "add",
            &format!("10.80.{net}.2/24"),
            "dev",
            &cv,
        ]);
        sh(&["ip", "-n", &s, "link", "set", &sv, "up"]);
        sh(&["ip", "-n", &c, "link", "set", &cv, "up"]);
    } else {
        eprintln!(
            "SKIP: no 802.1Q support in this kernel: VLAN tags not checked live (the interface list is)"
        );
    }
    let spool = lab.dir.join("spool");
    let agent = lab
        .in_ns(
            &s,
            &[
                &*TAPWIRE_PATH as &str,
                "run",
                "--interface",
                &format!("{dev},lo"),
                "--listen",
                API,
                "--workers",
                "1",
                "--spool-dir",
                spool.to_str().unwrap(),
            ],
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(agent);
    let i = lab.procs.len() - 1;
    lab.wait_for(&s, &format!("http://{API}/healthz"));
    let target = if vlan {
        format!("10.80.{net}.1")
    } else {
        lab.sa.clone()
    };
    let send = format!("for i in $(seq 5); do echo vlan > /dev/udp/{target}/39994; done");
    assert!(
        lab.in_ns(&c, &["bash", "-c", &send])
            .status()
            .unwrap()
            .success()
    );
    wait_until("both interfaces to count packets", || {
        let st = lab.status();
        st["capture"]["interfaces"] == serde_json::json!([dev.clone(), "lo"])
            && st["capture"]["packets"].as_u64().unwrap_or(0) > 5
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(lab.signal(i, "-TERM").success());
    let mut tagged = 0;
    for f in lab.spool_files() {
        pipeline::source::read_file(&f, |fr| {
            let d = fr.data;
            // Ethernet, 802.1Q with VID 10, then IPv4 UDP to port 39994.
            if d.len() > 42
                && d[12..14] == [0x81, 0x00]
                && u16::from_be_bytes([d[14], d[15]]) & 0x0fff == 10
                && d[16..18] == [0x08, 0x00]
                && d[27] == 17
                && u16::from_be_bytes([d[40], d[41]]) == 39994
            {
                tagged += 1;
            }
        })
        .unwrap();
    }
    if vlan {
        assert_eq!(tagged, 5, "every datagram spooled with its VLAN tag");
    }
}
