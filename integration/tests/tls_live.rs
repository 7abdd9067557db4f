//! The TLS plaintext source end to end, as root: nginx serving HTTPS in one network namespace,
//! curl in another, `tapwire run --tls on-demand` capturing on the server's veth, `tapwire
//! watch` subscribed through the API.
//!
//! Checked: the probes are not attached while nobody subscribes (`tapwire_tls_tracing` 0),
//! attached with the first subscriber; curl's HTTPS request arrives as one `http` exchange
//! with `tls.established`, curl's `process.*`, the connection's addresses and nginx's status,
//! once although both ends are traced (curl's end owns it); the probes are detached when the
//! subscriber leaves. A keep-alive connection opened before the agent started is dissected
//! from its next request and counted as picked up mid-stream. A request to a Service-like
//! virtual address, rewritten by DNAT in the client's namespace, is still one exchange, with
//! the virtual address as its server.
//!
//! And with `--tls always`: a Go program (Debian's Go, built here from `tls/tests/go/`) whose
//! file no process ran when the agent started (found at its first exec), over HTTP/2 and
//! HTTP/1.1 by ALPN, and redis-cli `--tls` against
//! redis-server's TLS port, each exchange once with its process; the same exchanges again
//! from the spool through a `since` subscription, and in a `tapwire pcap` export on the
//! `tls-plaintext` interface, read by tshark and re-dissected by `tapwire dissect`.
//!
//! Ground truth: curl (HTTP/1.1, HTTP/2), Python's `ssl` and the Go client write their session
//! keys to `SSLKEYLOGFILE` while tcpdump records the encrypted packets; the exchanges tshark
//! decrypts with those keys are exactly those the agent dissected from the plaintext (path,
//! status, client port).
//!
//! And with the TLS source off, the handshakes themselves from the packets: curl over TLS 1.3
//! (HTTP/2) and TLS 1.2 (HTTP/1.1, its certificate visible), each a `tls` exchange with its
//! server name. Skipped visibly when not
//! root; a missing tool as root is a failure (`.ci/run` installs them).

use std::process::Stdio;
use std::time::Duration;

use tapwire_integration::lab::{API, Lab, have, self_signed, sh, wait_until};

/// The agent's gauge `name`, read inside the server namespace.
fn read_gauge(lab: &Lab, name: &str) -> Option<i64> {
    let out = lab
        .in_ns(&lab.s, &["curl", "-s", &format!("http://{API}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The agent's `tapwire_tls_tracing` gauge.
fn tracing(lab: &Lab) -> Option<i64> {
    read_gauge(lab, "tapwire_tls_tracing")
}

/// A self-signed certificate and key in the lab folder: (cert, key).
fn certificate(lab: &Lab) -> (String, String) {
    let (cert, key) = self_signed(&lab.dir, "shop.tapwire.test");
    (cert.display().to_string(), key.display().to_string())
}

/// nginx serving `/hello.txt` over TLS (HTTP/1.1 and HTTP/2 by ALPN) on the server address,
/// port 443, up; returns that address.
fn start_https(lab: &mut Lab) -> String {
    let (cert, key) = certificate(lab);
    let d = lab.dir.clone();
    std::fs::write(d.join("www/hello.txt"), "hello over tls\n").unwrap();
    let dd = d.display();
    let conf = format!(
        "daemon off; user root; worker_processes 1; error_log {dd}/error.log; pid {dd}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; client_body_temp_path {dd}; proxy_temp_path {dd};\n\
           fastcgi_temp_path {dd}; uwsgi_temp_path {dd}; scgi_temp_path {dd};\n\
           ssl_protocols TLSv1.2 TLSv1.3;\n\
           server {{ listen {}:443 ssl http2; ssl_certificate {cert}; ssl_certificate_key {key};\n\
             root {dd}/www; }} }}\n",
        lab.sa,
    );
    std::fs::write(d.join("nginx.conf"), conf).unwrap();
    let s = lab.s.clone();
    let nginx = lab
        .in_ns(&s, &["nginx", "-c", d.join("nginx.conf").to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(nginx);
    let url = format!("https://{}/hello.txt", lab.sa);
    let c = lab.c.clone();
    wait_until("nginx over TLS", || {
        lab.in_ns(&c, &["curl", "-skf", "-o", "/dev/null", &url])
            .status()
            .is_ok_and(|st| st.success())
    });
    lab.sa.clone()
}

/// The exchanges seen through TLS (`tls.established`) among `rx`'s lines, read for `wait`.
fn tls_exchanges(rx: &std::sync::mpsc::Receiver<String>, wait: Duration) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
                && v["tls"]["established"] == true
            {
                got.push(v);
            }
        }
    }
    got
}

/// The exchanges of this lab's processes: `clients` (exited by now) and what still runs in its
/// namespaces. The TLS source traces the whole machine, so tests running beside this one
/// show up in its agent too.
fn ours(lab: &Lab, clients: &[u32], got: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut pids: Vec<u64> = clients.iter().map(|p| u64::from(*p)).collect();
    for ns in [&lab.s, &lab.c] {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .unwrap();
        pids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u64>().ok()),
        );
    }
    got.iter()
        .filter(|e| {
            e["process"]["pid"]
                .as_u64()
                .is_some_and(|p| pids.contains(&p))
        })
        .cloned()
        .collect()
}

/// The agent's `tapwire_tls_*` series and its log, for a failure's message.
fn diagnostics(lab: &Lab) -> String {
    let out = lab
        .in_ns(&lab.s, &["curl", "-s", &format!("http://{API}/metrics")])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let series: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("tapwire_tls_"))
        .collect();
    let log = std::fs::read_to_string(lab.dir.join("agent.log")).unwrap_or_default();
    format!("{}\nagent log:\n{log}", series.join("\n"))
}

/// Debian's Go builds `tls/tests/go/client.go` into the lab folder: a file no process runs yet.
fn go_client(lab: &Lab) -> std::path::PathBuf {
    let bin = lab.dir.join("goclient");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/../tls/tests/go/client.go");
    let cache = std::env::temp_dir().join("tapwire-gocache");
    let st = std::process::Command::new("go")
        .args(["build", "-o", bin.to_str().unwrap(), src])
        .env("GO111MODULE", "off")
        .env("GOCACHE", &cache)
        .env("GOPATH", cache.join("gopath"))
        .status()
        .unwrap();
    assert!(st.success(), "go build");
    bin
}

/// Runs the Go client `bin` against `sa` until one run is traced. Its first run is seen at its
/// exec, and its file attached then (read on a thread of its own): that run's first requests
/// may come before the probes are in, milliseconds after its start, so they are not counted
/// (their query is `via=warm-up`). The first run, usually, or the second; every later run of
/// the file is traced from its first byte.
fn warm_up(lab: &Lab, rx: &std::sync::mpsc::Receiver<String>, bin: &str, sa: &str) {
    for _ in 0..10 {
        let mut child = lab
            .in_ns(
                &lab.c,
                &[bin, &format!("https://{sa}/hello.txt?via=warm-up")],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(
            child.wait().unwrap().success(),
            "the Go client's warm-up run"
        );
        let seen = tls_exchanges(rx, Duration::from_secs(1));
        if seen.iter().any(|e| e["process"]["pid"] == u64::from(pid)) {
            return;
        }
    }
    panic!("no run of the Go program was traced\n{}", diagnostics(lab));
}

#[test]
fn https_plaintext_reaches_subscribers_with_its_process() {
    let Some(mut lab) = Lab::new() else { return };
    for tool in ["openssl", "iptables"] {
        assert!(have(tool), "{tool} (installed by .ci/run)");
    }
    let url = format!("https://{}/hello.txt", start_https(&mut lab));
    let c = lab.c.clone();
    // A keep-alive connection opened before the agent starts: its next request, made under
    // the probes, is dissected, and the connection counted as picked up mid-stream.
    let early = format!(
        "import socket, ssl, sys\n\
         c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE\n\
         s = c.wrap_socket(socket.create_connection(('{}', 443)))\n\
         def get(q):\n    s.sendall(b'GET /hello.txt?' + q + b' HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n    \
         got = b''\n    while not got.endswith(b'hello over tls\\n'): got += s.recv(65536)\n\
         get(b'before')\nprint('ready', flush=True)\nsys.stdin.readline()\nget(b'after')\n",
        lab.sa
    );
    let mut early = lab
        .in_ns(&c, &["python3", "-c", &early])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let early_pid = early.id();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(early.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    lab.start_agent_with(&["--tls", "on-demand"]);
    wait_until("the metrics", || tracing(&lab).is_some());
    assert_eq!(tracing(&lab), Some(0), "no probes while nobody subscribes");

    let (mut watch, rx) = lab.watch();
    wait_until("the probes to attach", || tracing(&lab) == Some(1));

    let curl = lab
        .in_ns(&c, &["curl", "-sk", "--http1.1", &url])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = curl.id();
    let mut curl = curl;
    assert!(curl.wait().unwrap().success());

    // The server end's chunks wait out a 100 ms hold before they are dropped as duplicates:
    // read on past it, so a second report of the exchange would show.
    let mut got = Vec::new();
    wait_until("the HTTPS exchange", || {
        got.extend(tls_exchanges(&rx, Duration::from_millis(500)));
        !ours(&lab, &[pid], &got).is_empty()
    });
    got.extend(tls_exchanges(&rx, Duration::from_secs(1)));
    let mine = ours(&lab, &[pid], &got);
    assert_eq!(
        mine.len(),
        1,
        "one exchange, from curl's end only: {mine:#?}"
    );
    let ex = &mine[0];
    assert_eq!(ex["protocol"], "http");
    assert_eq!(ex["process"]["pid"], u64::from(pid), "{ex}");
    assert_eq!(ex["process"]["executable"]["name"], "curl");
    assert_eq!(ex["url"]["path"], "/hello.txt");
    assert_eq!(ex["http"]["response"]["status_code"], 200);
    assert_eq!(ex["server"]["address"], lab.sa.as_str());
    assert_eq!(ex["server"]["port"], 443);

    // Through a Service's virtual address: DNAT in the client's namespace (as kube-proxy's
    // rules do) sends 10.96.0.10:443 to nginx. curl's socket has the virtual address as its
    // peer, nginx's has curl's endpoint: still one exchange, named by the client's view.
    sh(&["ip", "-n", &c, "route", "add", "10.96.0.0/12", "dev", &c]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &c,
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "10.96.0.10",
        "--dport",
        "443",
        "-j",
        "DNAT",
        "--to-destination",
        &format!("{}:443", lab.sa),
    ]);
    let mut curl = lab
        .in_ns(
            &c,
            &["curl", "-sk", "--http1.1", "https://10.96.0.10/hello.txt"],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = curl.id();
    assert!(curl.wait().unwrap().success());
    let mut got = Vec::new();
    wait_until("the exchange through the Service address", || {
        got.extend(tls_exchanges(&rx, Duration::from_millis(500)));
        !ours(&lab, &[pid], &got).is_empty()
    });
    got.extend(tls_exchanges(&rx, Duration::from_secs(1)));
    let mine = ours(&lab, &[pid], &got);
    assert_eq!(mine.len(), 1, "once, from curl's end: {mine:#?}");
    assert_eq!(mine[0]["process"]["pid"], u64::from(pid));
    assert_eq!(mine[0]["server"]["address"], "10.96.0.10");
    assert_eq!(mine[0]["server"]["port"], 443);

    // The connection opened before the agent: its request under the probes, counted.
    std::io::Write::write_all(&mut early.stdin.take().unwrap(), b"go\n").unwrap();
    assert!(early.wait().unwrap().success());
    let mut got = Vec::new();
    wait_until("the old connection's request", || {
        got.extend(tls_exchanges(&rx, Duration::from_millis(500)));
        got.iter()
            .any(|e| e["process"]["pid"] == u64::from(early_pid))
    });
    got.extend(tls_exchanges(&rx, Duration::from_secs(1)));
    let mine: Vec<_> = got
        .iter()
        .filter(|e| e["process"]["pid"] == u64::from(early_pid))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0]["url"]["query"], "after");
    assert_eq!(mine[0]["http"]["response"]["status_code"], 200);
    wait_until("the connection counted as picked up mid-stream", || {
        read_gauge(
            &lab,
            "tapwire_tls_connections_total{picked_up=\"midstream\"}",
        )
        .is_some_and(|n| n >= 1)
    });

    let _ = watch.kill();
    let _ = watch.wait();
    wait_until("the probes to detach", || tracing(&lab) == Some(0));
}

#[test]
fn go_over_http2_and_tls_redis_with_the_probes_always_on() {
    let Some(mut lab) = Lab::new() else { return };
    for tool in ["openssl", "go", "redis-server", "redis-cli"] {
        assert!(have(tool), "{tool} (installed by .ci/run)");
    }
    let sa = start_https(&mut lab);
    let (cert, key) = (
        lab.dir.join("c.pem").display().to_string(),
        lab.dir.join("k.pem").display().to_string(),
    );
    lab.start_redis_with(&[
        "--port",
        "0",
        "--tls-port",
        "6380",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-auth-clients",
        "no",
    ]);
    let c = lab.c.clone();
    let cli = |args: &[&str]| {
        let mut a = vec!["redis-cli", "-h", &sa, "-p", "6380", "--tls", "--insecure"];
        a.extend_from_slice(args);
        lab.in_ns(&c, &a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    wait_until("redis over TLS", || {
        cli(&["PING"]).is_ok_and(|s| s.success())
    });

    // The Go client, built now: a file no process runs yet when the agent starts.
    let bin = go_client(&lab);

    lab.start_agent_with(&["--tls", "always"]);
    let (mut watch, rx) = lab.watch();
    wait_until("the probes to attach", || tracing(&lab) == Some(1));
    let run = |args: &[&str]| {
        let mut child = lab.in_ns(&c, args).stdout(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success(), "{args:?}");
        pid
    };
    let b = bin.to_str().unwrap();
    warm_up(&lab, &rx, b, &sa);
    let h2 = run(&[b, &format!("https://{sa}/hello.txt?via=h2")]);
    let h1 = run(&[b, "-http1", &format!("https://{sa}/hello.txt?via=h1")]);
    let set = {
        let mut child = lab
            .in_ns(
                &c,
                &[
                    "redis-cli",
                    "-h",
                    &sa,
                    "-p",
                    "6380",
                    "--tls",
                    "--insecure",
                    "SET",
                    "greeting",
                    "hello",
                ],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        pid
    };
    let got = ours(
        &lab,
        &[h2, h1, set],
        &tls_exchanges(&rx, Duration::from_secs(3)),
    );
    let of = |pid: u32| -> Vec<&serde_json::Value> {
        got.iter()
            .filter(|e| e["process"]["pid"] == u64::from(pid))
            .collect()
    };
    for (pid, via, version) in [(h2, "h2", "2"), (h1, "h1", "1.1")] {
        let mine = of(pid);
        assert_eq!(
            mine.len(),
            1,
            "one exchange from the Go client ({via}): {got:#?}\n{}",
            diagnostics(&lab)
        );
        let ex = mine[0];
        assert_eq!(ex["protocol"], "http", "{ex}");
        assert_eq!(ex["network"]["protocol"]["version"], version, "{ex}");
        assert_eq!(ex["url"]["query"], format!("via={via}"), "{ex}");
        assert_eq!(ex["http"]["response"]["status_code"], 200, "{ex}");
        assert_eq!(ex["process"]["executable"]["name"], "goclient", "{ex}");
        assert_eq!(ex["server"]["address"], sa.as_str());
        assert_eq!(ex["server"]["port"], 443);
    }
    let mine = of(set);
    assert_eq!(mine.len(), 1, "one Redis exchange from redis-cli: {got:#?}");
    let ex = mine[0];
    assert_eq!(ex["protocol"], "redis", "{ex}");
    assert_eq!(ex["db"]["operation"]["name"], "SET", "{ex}");
    assert_eq!(ex["process"]["executable"]["name"], "redis-cli", "{ex}");
    assert_eq!(ex["server"]["port"], 6380);
    // Nothing else: nginx's and redis-server's ends of the same connections are not reported
    // (a warm-up run's exchange may come from nginx's end, if the probes came in after it).
    let rest: Vec<_> = got
        .iter()
        .filter(|e| e["url"]["query"] != "via=warm-up")
        .collect();
    assert_eq!(rest.len(), 3, "{got:#?}");

    // The decrypted connections are in the spool (its `tls/` folder): a `since` subscription
    // replays them as they were dissected live, with their process.
    std::thread::sleep(Duration::from_millis(1200)); // the once-a-second flush
    let (mut since, srx) = lab.watch_with(&["--since", "1m"]);
    let replayed = tls_exchanges(&srx, Duration::from_secs(4));
    let _ = since.kill();
    let _ = since.wait();
    for (pid, via) in [(h2, "via=h2"), (h1, "via=h1")] {
        let mine: Vec<_> = replayed
            .iter()
            .filter(|e| e["process"]["pid"] == u64::from(pid))
            .collect();
        assert_eq!(mine.len(), 1, "{via} replayed once: {replayed:#?}");
        assert_eq!(mine[0]["url"]["query"], via);
        assert_eq!(mine[0]["process"]["executable"]["name"], "goclient");
    }
    assert!(
        replayed
            .iter()
            .any(|e| e["process"]["pid"] == u64::from(set) && e["db"]["operation"]["name"] == "SET"),
        "the TLS Redis SET replayed: {replayed:#?}"
    );
    // And `tapwire pcap` exports them on their own interface, readable as cleartext.
    let export = lab.dir.join("export.pcapng");
    let st = lab.pcap(&["--since", "1m", "-o", export.to_str().unwrap()]);
    assert!(st.success());
    // tshark reads the records: their comments name the process, their payload is the
    // plaintext. (They share their TCP addresses and ports with the encrypted packets of the
    // same connection, which a TCP-conversation view mixes: read them by their comment.)
    let out = std::process::Command::new("tshark")
        .args(["-r", export.to_str().unwrap()])
        .args([
            "-Y",
            "frame.comment contains \"tapwire-tls\"",
            "-T",
            "fields",
        ])
        .args(["-e", "frame.comment", "-e", "tcp.payload"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let want: String = b"GET /hello.txt?via=h1 HTTP/1.1"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        shown
            .lines()
            .any(|l| l.contains(&format!("pid={h1} exe=goclient")) && l.contains(&want)),
        "tshark reads the plaintext records: {shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And `tapwire dissect` re-dissects the export: the records as the streams they were
    // (apart from the encrypted packets of the same connections, also in the export).
    let out = std::process::Command::new(&*tapwire_integration::lab::TAPWIRE_PATH)
        .args(["dissect", export.to_str().unwrap(), "--format", "ndjson"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (pid, via) in [(h2, "via=h2"), (h1, "via=h1")] {
        let mine: Vec<_> = again
            .iter()
            .filter(|e| e["process"]["pid"] == u64::from(pid))
            .collect();
        assert_eq!(mine.len(), 1, "{via} re-dissected once: {again:#?}");
        assert_eq!(mine[0]["url"]["query"], via);
        assert_eq!(mine[0]["http"]["response"]["status_code"], 200);
        assert_eq!(mine[0]["tls"]["established"], true);
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

/// tshark's HTTP exchanges in an encrypted capture it decrypts with `keys`: (client port,
/// path with query, status), HTTP/1.x answers paired with their requests in order, HTTP/2 by
/// stream.
fn decrypted_by_tshark(
    capture: &std::path::Path,
    keys: &std::path::Path,
) -> Vec<(u64, String, u64)> {
    use serde_json::Value;
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keys.display()))
        .args(["-T", "json", "--no-duplicate-keys", "-Y", "http || http2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets: Value = serde_json::from_slice(&out.stdout).expect("tshark JSON");
    let items = |v: Option<&Value>| -> Vec<Value> {
        match v {
            Some(Value::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
            None => vec![],
        }
    };
    let num = |v: Option<&Value>| -> u64 {
        v.and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    // HTTP/1: requests and answers per client port, in order. HTTP/2: per (port, stream).
    let mut h1: std::collections::BTreeMap<u64, (Vec<String>, Vec<u64>)> = Default::default();
    let mut h2: std::collections::BTreeMap<(u64, u64), (String, u64)> = Default::default();
    for p in packets.as_array().into_iter().flatten() {
        let layers = &p["_source"]["layers"];
        let (sport, dport) = (
            num(layers["tcp"].get("tcp.srcport")),
            num(layers["tcp"].get("tcp.dstport")),
        );
        let port = if dport == 443 { sport } else { dport };
        for http in items(layers.get("http")) {
            // The request or status line is an object of its own inside the layer.
            for line in http.as_object().into_iter().flat_map(|o| o.values()) {
                if let Some(uri) = line.get("http.request.uri").and_then(Value::as_str) {
                    h1.entry(port).or_default().0.push(uri.to_string());
                }
                if let Some(code) = line.get("http.response.code") {
                    h1.entry(port).or_default().1.push(num(Some(code)));
                }
            }
        }
        for layer in items(layers.get("http2")) {
            for st in items(layer.get("http2.stream")) {
                let id = num(st.get("http2.streamid"));
                for hf in items(st.get("http2.header")) {
                    let value = hf.get("http2.header.value").and_then(Value::as_str);
                    let e = h2.entry((port, id)).or_default();
                    match hf.get("http2.header.name").and_then(Value::as_str) {
                        Some(":path") => e.0 = value.unwrap_or("").to_string(),
                        Some(":status") => e.1 = num(hf.get("http2.header.value")),
                        _ => {}
                    }
                }
            }
        }
    }
    let mut all = Vec::new();
    for (port, (paths, codes)) in h1 {
        assert_eq!(
            paths.len(),
            codes.len(),
            "tshark pairs every request on {port}"
        );
        all.extend(paths.into_iter().zip(codes).map(|(p, c)| (port, p, c)));
    }
    all.extend(h2.into_iter().map(|((port, _), (p, c))| (port, p, c)));
    all.sort();
    all
}

#[test]
fn what_tshark_decrypts_with_the_clients_keys_is_what_the_probes_saw() {
    // Ground truth: curl (HTTP/1.1 and HTTP/2), Python's `ssl` and a Go client write their
    // session keys to SSLKEYLOGFILE; tcpdump records the encrypted packets on the client's
    // veth; tshark decrypts that capture with the keys. The exchanges tshark finds and those
    // the agent dissected from the probes' plaintext are the same: path, status, client port.
    let Some(mut lab) = Lab::new() else { return };
    for tool in ["openssl", "go", "tcpdump", "tshark", "python3"] {
        assert!(have(tool), "{tool} (installed by .ci/run)");
    }
    let sa = start_https(&mut lab);
    let bin = go_client(&lab);
    let b = bin.to_str().unwrap();
    let c = lab.c.clone();
    lab.start_agent_with(&["--tls", "on-demand"]);
    let (mut watch, rx) = lab.watch();
    wait_until("the probes to attach", || tracing(&lab) == Some(1));
    warm_up(&lab, &rx, b, &sa);

    let capture = lab.dir.join("encrypted.pcap");
    let keys = lab.dir.join("keys.txt");
    let mut tcpdump = lab
        .in_ns(
            &c,
            &[
                "tcpdump",
                "-i",
                &c,
                "-U",
                "-Z",
                "root",
                "-w",
                capture.to_str().unwrap(),
                "tcp",
                "port",
                "443",
            ],
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(tcpdump.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");

    let url = |q: &str| format!("https://{sa}/{q}");
    let python = format!(
        "import socket, ssl\n\
         ctx = ssl.create_default_context(); ctx.check_hostname = False\n\
         ctx.verify_mode = ssl.CERT_NONE\n\
         s = ctx.wrap_socket(socket.create_connection(('{sa}', 443)))\n\
         s.sendall(b'GET /hello.txt?via=python HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n\
         while s.recv(4096): pass\n"
    );
    let runs: Vec<Vec<String>> = vec![
        vec![
            "curl".into(),
            "-sk".into(),
            "--http1.1".into(),
            url("hello.txt?via=curl-h1"),
            url("missing.txt?via=curl-h1"),
        ],
        vec![
            "curl".into(),
            "-sk".into(),
            "--http2".into(),
            url("hello.txt?via=curl-h2"),
            url("missing.txt?via=curl-h2"),
        ],
        vec!["python3".into(), "-c".into(), python],
        vec![
            b.into(),
            url("hello.txt?via=go-h2"),
            url("missing.txt?via=go-h2"),
        ],
        vec![b.into(), "-http1".into(), url("hello.txt?via=go-h1")],
    ];
    let mut pids = Vec::new();
    for args in &runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = lab
            .in_ns(&c, &args)
            .env("SSLKEYLOGFILE", &keys)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        pids.push(child.id());
        assert!(child.wait().unwrap().success(), "{:?}", &args[..1]);
    }
    let got = ours(&lab, &pids, &tls_exchanges(&rx, Duration::from_secs(3)));
    sh(&["kill", "-INT", &tcpdump.id().to_string()]);
    let _ = tcpdump.wait();

    let truth = decrypted_by_tshark(&capture, &keys);
    assert_eq!(
        truth.len(),
        8,
        "tshark decrypted every exchange: {truth:#?}"
    );
    let mut seen: Vec<(u64, String, u64)> = got
        .iter()
        .map(|e| {
            let mut path = e["url"]["path"].as_str().unwrap_or("").to_string();
            if let Some(q) = e["url"]["query"].as_str() {
                path = format!("{path}?{q}");
            }
            (
                e["client"]["port"].as_u64().unwrap_or(0),
                path,
                e["http"]["response"]["status_code"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        truth,
        "the probes' exchanges against tshark's decryption\n{}",
        diagnostics(&lab)
    );
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn handshakes_are_dissected_from_the_packets() {
    // The TLS source off: the handshakes come from the wire alone. curl with a name (SNI) and
    // HTTP/2 by ALPN over TLS 1.3; then TLS 1.2, whose certificate is visible.
    let Some(mut lab) = Lab::new() else { return };
    assert!(have("openssl"), "openssl (installed by .ci/run)");
    let sa = start_https(&mut lab);
    lab.start_agent_with(&["--tls", "off"]);
    let (mut watch, rx) = lab.watch();
    std::thread::sleep(Duration::from_millis(500)); // the subscription reaches the workers
    let c = lab.c.clone();
    let resolve = format!("shop.tapwire.test:443:{sa}");
    for version in ["--tlsv1.3", "--tls-max"] {
        let mut args = vec!["curl", "-sSk", "-o", "/dev/null", "--resolve", &resolve];
        if version == "--tls-max" {
            args.extend(["--tls-max", "1.2", "--http1.1"]);
        } else {
            args.extend([version, "--http2"]);
        }
        args.push("https://shop.tapwire.test/hello.txt");
        let out = lab.in_ns(&c, &args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut handshakes: Vec<serde_json::Value> = Vec::new();
    wait_until("two handshakes", || {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
                && v["protocol"] == "tls"
            {
                handshakes.push(v);
            }
        }
        handshakes.len() >= 2
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let versions: Vec<&str> = handshakes
        .iter()
        .map(|h| h["tls"]["protocol"]["version"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(versions, ["1.3", "1.2"], "{handshakes:#?}");
    for h in &handshakes {
        assert_eq!(h["status"], "ok");
        assert_eq!(h["tls"]["client"]["server_name"], "shop.tapwire.test");
        assert_eq!(h["server"]["address"], sa.as_str());
        assert!(
            h["tls"]["client"]["ja4"]
                .as_str()
                .unwrap_or("")
                .starts_with('t')
        );
    }
    assert_eq!(handshakes[1]["tls"]["next_protocol"], "http/1.1");
    assert_eq!(
        handshakes[1]["tls"]["server"]["subject"],
        "CN=shop.tapwire.test"
    );
}
