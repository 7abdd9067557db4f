//! The TLS plaintext source end to end, as root: nginx serving HTTPS in one network namespace,
//! curl in another, `tapwire run --tls on-demand` capturing on the server's veth, `tapwire
//! watch` subscribed through the API.
//!
//! Checked: the probes are not attached while nobody subscribes (`tapwire_tls_tracing` 0),
//! attached with the first subscriber; curl's HTTPS request arrives as one `http` exchange
//! with `tls.established`, curl's `process.*`, the connection's addresses and nginx's status,
//! once although both ends are traced (curl's end owns it); the probes are detached when the
//! subscriber leaves. Skipped visibly when not root or a tool is missing.

use std::process::Stdio;
use std::time::Duration;

use tapwire_integration::lab::{API, Lab, have, sh, wait_until};

/// The agent's `tapwire_tls_tracing` gauge, read inside the server namespace.
fn tracing(lab: &Lab) -> Option<i64> {
    let out = lab
        .in_ns(&lab.s, &["curl", "-s", &format!("http://{API}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("tapwire_tls_tracing "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn https_plaintext_reaches_subscribers_with_its_process() {
    let Some(mut lab) = Lab::new() else { return };
    if !have("openssl") {
        eprintln!("SKIP: the TLS live test needs openssl");
        return;
    }
    let d = lab.dir.clone();
    let (key, cert) = (d.join("k.pem"), d.join("c.pem"));
    sh(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "1",
        "-subj",
        "/CN=shop.tapwire.test",
    ]);
    std::fs::write(d.join("www/hello.txt"), "hello over tls\n").unwrap();
    let dd = d.display();
    let conf = format!(
        "daemon off; user root; worker_processes 1; error_log {dd}/error.log; pid {dd}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; client_body_temp_path {dd}; proxy_temp_path {dd};\n\
           fastcgi_temp_path {dd}; uwsgi_temp_path {dd}; scgi_temp_path {dd};\n\
           server {{ listen {}:443 ssl; ssl_certificate {}; ssl_certificate_key {};\n\
             root {dd}/www; }} }}\n",
        lab.sa,
        cert.display(),
        key.display()
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

    let mut mine: Vec<serde_json::Value> = Vec::new();
    let read = |mine: &mut Vec<serde_json::Value>| {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l)
                && v["tls"]["established"] == true
            {
                mine.push(v);
            }
        }
    };
    wait_until("the HTTPS exchange", || {
        read(&mut mine);
        !mine.is_empty()
    });
    // The server end's chunks wait out a 100 ms hold before they are dropped as duplicates:
    // read on past it, so a second report of the exchange would show.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        read(&mut mine);
    }
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

    let _ = watch.kill();
    let _ = watch.wait();
    wait_until("the probes to detach", || tracing(&lab) == Some(0));
}
