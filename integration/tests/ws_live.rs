//! WebSocket end to end, as root: the `websockets` echo server (`integration/servers/
//! ws_server.py`, from the venv `.ci/run` prepares, `$TAPWIRE_VENV`) in the lab's server
//! namespace and its client in the other, `tapwire run` on the server's veth, `tapwire
//! watch` subscribed. The upgrade is an `http` exchange (101); then each message is a
//! `websocket` exchange with its sender, opcode and size (a 100 kB message whole, a compressed
//! one flagged), and the server's close with 1011 is an error. Skipped visibly when not root
//! or without that venv.

use std::process::Stdio;
use std::time::Duration;

use tapwire_integration::lab::{Lab, wait_until};

#[test]
fn websocket_messages_live() {
    let Some(mut lab) = Lab::new() else { return };
    let Some(py) = std::env::var_os("TAPWIRE_VENV")
        .map(|v| std::path::PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
    else {
        eprintln!("SKIP: TAPWIRE_VENV (with websockets) is not set up: run scripts/test-all.sh");
        return;
    };
    let here = concat!(env!("CARGO_MANIFEST_DIR"));
    let py = py.to_str().unwrap().to_string();
    let (s, c, sa) = (lab.s.clone(), lab.c.clone(), lab.sa.clone());
    let server = lab
        .in_ns(&s, &[&py, &format!("{here}/servers/ws_server.py"), &sa])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.procs.push(server);
    let mut ready = String::new();
    let out = lab.procs.last_mut().unwrap().stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    lab.start_agent_with(&["--tls", "off"]);
    let (mut watch, rx) = lab.watch();
    std::thread::sleep(Duration::from_millis(500)); // the subscription reaches the workers
    let st = lab
        .in_ns(&c, &[&py, &format!("{here}/clients/ws_client.py"), &sa])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "the WebSocket client");
    let mut got: Vec<serde_json::Value> = Vec::new();
    wait_until("the WebSocket messages", || {
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                got.push(v);
            }
        }
        got.iter().filter(|e| e["protocol"] == "websocket").count() >= 20
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let upgrades = got
        .iter()
        .filter(|e| e["protocol"] == "http" && e["http"]["response"]["status_code"] == 101)
        .count();
    assert_eq!(upgrades, 3);
    let ws: Vec<&serde_json::Value> = got
        .iter()
        .filter(|e| e["protocol"] == "websocket")
        .collect();
    let find = |dir: &str, op: &str, size: u64| {
        ws.iter().any(|e| {
            e["websocket"]["direction"] == dir
                && e["websocket"]["opcode"] == op
                && e["websocket"]["message"]["size"] == size
        })
    };
    assert!(
        find("client", "text", 5) && find("server", "text", 5),
        "{ws:#?}"
    );
    assert!(find("client", "text", 15), "three fragments, one message");
    assert!(find("client", "ping", 13) && find("server", "pong", 13));
    assert!(find("client", "text", 100_000) && find("server", "text", 100_000));
    assert!(ws.iter().any(|e| e["websocket"]["compressed"] == true));
    let failed = ws
        .iter()
        .find(|e| e["websocket"]["close"]["code"] == 1011)
        .expect("the server's error close");
    assert_eq!(failed["status"], "error");
    assert_eq!(failed["websocket"]["close"]["reason"], "boom");
}
