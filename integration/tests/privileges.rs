//! The agent needs `CAP_NET_RAW` and nothing else: run as an unprivileged uid holding only
//! that capability (as the chart's DaemonSet does), it captures with several fanout workers,
//! and its spool is private (folders 0700, segments 0600); the TLS plaintext source, which
//! needs BPF privileges, says in one line that it is off and capture goes on. Needs root (to
//! hand out the capability) and setpriv(1); skips visibly otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn capture_needs_only_net_raw_and_the_spool_is_private() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root
        || !tapwire_integration::lab::have("setpriv")
        || !tapwire_integration::lab::have("curl")
    {
        eprintln!("SKIP: needs root, setpriv and curl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapwire-privs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The test's own binary copy where the unprivileged uid can run it.
    let bin = dir.join("tapwire");
    std::fs::copy(tapwire_integration::tapwire(), &bin).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::os::unix::fs::chown(&spool, Some(65534), Some(65534)).unwrap();
    let api = "127.0.0.1:19489";
    let agent = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+net_raw",
            "--ambient-caps=-all,+net_raw",
            "--bounding-set=-all,+net_raw",
            "--no-new-privs",
        ])
        .arg(&bin)
        .args([
            "run",
            "--interface",
            "lo",
            "--workers",
            "2",
            "--listen",
            api,
            // The TLS plaintext source needs BPF privileges this uid lacks: one line, and
            // capture goes on.
            "--tls",
            "always",
        ])
        .arg("--spool-dir")
        .arg(&spool)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = || {
        Command::new("curl")
            .args(["-sf", "-m", "2", &format!("http://{api}/v1/status")])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
    };
    let until = Instant::now() + Duration::from_secs(15);
    let mut packets = 0;
    while Instant::now() < until && packets < 20 {
        packets = status().map_or(0, |s| s["capture"]["packets"].as_u64().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        packets >= 20,
        "captured {packets} packets with NET_RAW only: {log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("tapwire: TLS plaintext off: "))
            .count(),
        1,
        "one line says why the TLS plaintext source is off: {log}"
    );
    let mut segments = 0;
    for w in ["w0", "w1"] {
        let wd = spool.join(w);
        let meta = std::fs::metadata(&wd).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{w}");
        assert_eq!(meta.uid(), 65534);
        for f in std::fs::read_dir(&wd).unwrap().flatten() {
            let mode = f.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.path().display());
            segments += 1;
        }
    }
    assert!(segments > 0, "the spool has segments");
    let _ = std::fs::remove_dir_all(&dir);
}
