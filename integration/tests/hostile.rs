//! Hostile input, each class generated here and run through the real binary (`tapwire
//! dissect`): the process must exit 0, stay within a memory bound (its peak RSS, from
//! `wait4`), and count what it refused as an anomaly. Each case aborted or exhausted memory
//! before the fix it names.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tapwire_integration::hostile;
use tapwire_integration::pcapgen::{Pcap, SERVER, client};

/// What one run of `tapwire dissect` did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    peak_rss_mib: u64,
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tapwire-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `tapwire dissect` on the capture, with its exit code and peak RSS.
fn dissect(name: &str, pcap: &Pcap) -> Run {
    dissect_with(name, pcap, &[])
}

fn dissect_with(name: &str, pcap: &Pcap, extra: &[&str]) -> Run {
    let path = tmp(name);
    pcap.write(&path).unwrap();
    let out_path = tmp(&format!("{name}.out"));
    let err_path = tmp(&format!("{name}.err"));
    // Reaped by `wait4` below, which also reports its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(tapwire_integration::tapwire())
        .args(["dissect", "--format", "ndjson"])
        .args(extra)
        .arg(&path)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (code, peak_rss_mib) = wait4(child.id() as i32);
    let run = Run {
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        peak_rss_mib,
    };
    for p in [path, out_path, err_path] {
        let _ = std::fs::remove_file(p);
    }
    eprintln!(
        "{name}: exit {}, peak RSS {} MiB, summary: {}",
        run.code,
        run.peak_rss_mib,
        run.stderr.trim()
    );
    run
}

/// Exit code (or 128 + signal) and peak RSS in MiB of a child, reaped here.
fn wait4(pid: i32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: `rusage` is plain data the kernel fills in; `pid` is our own child.
    #[allow(unsafe_code)]
    let (r, usage) = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let r = libc::wait4(pid, &mut status, 0, &mut usage);
        (r, usage)
    };
    assert_eq!(r, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    (code, (usage.ru_maxrss as u64) / 1024)
}

fn assert_survived(run: &Run, anomaly: &str, max_rss_mib: u64) {
    assert_eq!(run.code, 0, "exit status; stderr: {}", run.stderr);
    assert!(
        run.peak_rss_mib <= max_rss_mib,
        "peak RSS {} MiB over {max_rss_mib} MiB",
        run.peak_rss_mib
    );
    assert!(
        run.stderr.contains(anomaly),
        "the anomaly {anomaly} is counted: {}",
        run.stderr
    );
}

/// AMQP field tables nested 25000 deep (in a method and in a content header): the crate's
/// parser recursed once per level and overflowed the worker's stack.
#[test]
fn amqp_tables_nested_deeper_than_any_stack() {
    let mut p = Pcap::new();
    hostile::amqp_nesting(25_000).connect(&mut p, 1);
    let run = dissect("amqp-nesting.pcap", &p);
    assert_survived(&run, "amqp.table_too_deep", 100);
    assert!(
        run.stdout.contains("queue.declare"),
        "the method is still named"
    );
}

/// A GraphQL document whose nesting hides behind a block string with a lone quote in it (the
/// depth scan took it for three strings). graphql-parser 0.4 stops at 50 levels by itself,
/// so this never crashed; the scan now reports it as too deep instead of a parse error.
#[test]
fn graphql_nesting_hidden_behind_a_block_string() {
    let mut p = Pcap::new();
    hostile::graphql_block_string(10_000).connect(&mut p, 2);
    let run = dissect("graphql-nesting.pcap", &p);
    assert_survived(&run, "graphql.too_deep", 100);
}

/// HPACK amplification: one 60 KB table entry, then 100 trailer blocks and 300 streams made
/// of 16000 one-byte references to it each. Every reference copied the whole entry: 6.7 MB
/// of wire grew the process to 4.5 GB and took three minutes.
#[test]
fn hpack_references_to_a_large_entry_are_not_amplified() {
    let mut p = Pcap::new();
    hostile::hpack_amplification(16_000, 100, 300).connect(&mut p, 3);
    let run = dissect("hpack-amplification.pcap", &p);
    assert_survived(&run, "http2.header_list_too_large", 200);
}

/// A TLS server whose Certificate message announces 16 MiB and keeps sending full records
/// (100 of them, 1.6 MB): the handshake gatherer stops at 64 KiB and the handshake is
/// reported incomplete, the rest of the connection skipped.
#[test]
fn a_tls_certificate_larger_than_the_cap_is_not_buffered() {
    let mut p = Pcap::new();
    hostile::tls_certificate_flood(100).connect(&mut p, 4);
    let run = dissect("tls-certificate-flood.pcap", &p);
    assert_survived(&run, "tls.handshake_too_large", 100);
    assert!(
        run.stdout.contains("\"protocol\":\"tls\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\"status\":\"incomplete\""),
        "{}",
        run.stdout
    );
}

/// PostgreSQL messages announcing 1 GiB (a query of 2 MB sent, then rows): streamed past as
/// they come, the query reported without its text.
#[test]
fn postgresql_lengths_reserve_nothing() {
    let mut p = Pcap::new();
    hostile::postgresql_lengths(2_000_000).connect(&mut p, 5);
    let run = dissect("postgresql-lengths.pcap", &p);
    assert_survived(&run, "postgresql.message_too_large", 100);
    assert!(
        run.stdout.contains("\"protocol\":\"postgresql\""),
        "{}",
        run.stdout
    );
}

/// MySQL rows announcing 16 MiB each (the first 1 MB of each sent) after a column count of
/// 2^62: nothing is allocated from the counts, the rows stream past.
#[test]
fn mysql_lengths_reserve_nothing() {
    let mut p = Pcap::new();
    hostile::mysql_lengths(1, 1_000_000).connect(&mut p, 6);
    let run = dissect("mysql-lengths.pcap", &p);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.peak_rss_mib <= 100, "peak RSS {} MiB", run.peak_rss_mib);
    assert!(
        run.stdout.contains("\"protocol\":\"mysql\""),
        "{}",
        run.stdout
    );
}

/// Kafka requests on 3000 connections, each one 70-byte segment announcing a 1 MiB message:
/// the buffer was reserved from the length prefix before the bytes arrived (3.2 GB).
#[test]
fn length_prefixes_reserve_nothing() {
    let mut p = Pcap::new();
    for i in 0..3000u32 {
        let case = hostile::kafka_reservation(i as i32);
        let mut c = p.connect(
            (client(10 + i), 40000 + (i % 20000) as u16),
            (SERVER, case.port),
        );
        p.send(&mut c, true, &case.client);
    }
    let run = dissect("kafka-reservations.pcap", &p);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.peak_rss_mib <= 200,
        "peak RSS {} MiB: 3000 × 70 bytes held, not 3000 × 1 MiB",
        run.peak_rss_mib
    );
}

/// Many connections with requests in flight that are never answered, each under every
/// per-flow cap: only the pipeline's memory budget bounds their sum (128 MiB peak without
/// it, 55 MiB with an 8 MiB budget, for 100 connections × 128 requests × 4 KB).
#[test]
fn the_memory_budget_bounds_many_flows_with_requests_in_flight() {
    let mut p = Pcap::new();
    let case = hostile::unanswered_requests(128, 4000);
    for i in 0..100u32 {
        let mut c = p.connect((client(5000 + i), 30000 + i as u16), (SERVER, case.port));
        p.send(&mut c, true, &case.client);
    }
    // One worker: this is the pipeline's budget. With N workers each gets 1/N of it, and the
    // allocator's per-thread caches add their own (two workers here: 120-130 MiB peak).
    let run = dissect_with(
        "unanswered.pcap",
        &p,
        &["--memory-budget", "8MiB", "--workers", "1"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("memory_budget="), "{}", run.stderr);
    assert!(
        !run.stderr.contains("memory_budget=0"),
        "flows were closed: {}",
        run.stderr
    );
    assert!(
        run.peak_rss_mib <= 80,
        "peak RSS {} MiB with an 8 MiB budget",
        run.peak_rss_mib
    );
    assert!(
        run.stdout.contains("\"no_response\""),
        "closed flows report their requests"
    );
}

/// Credentials in places the four classic headers do not cover never reach the output.
#[test]
fn credentials_by_name_pattern_userinfo_and_query_are_redacted() {
    let mut p = Pcap::new();
    hostile::credentials().connect(&mut p, 4);
    let run = dissect("redaction.pcap", &p);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("\"x-api-key\":[\"REDACTED\"]"),
        "{}",
        run.stdout
    );
    for secret in [
        "pw-in-userinfo-1",
        "sig-secret-2",
        "tok-secret-3",
        "key-secret-4",
        "tok-secret-5",
        "amz-secret-6",
        "tw-secret-7",
        "sess-secret-8",
    ] {
        assert!(!run.stdout.contains(secret), "{secret} in {}", run.stdout);
    }
    assert!(run.stdout.contains("page=1"), "other query values stay");
}

/// The fuzz seeds of the hostile cases are what the fuzz targets take: the stream layout,
/// under the 128 KiB the fuzz script allows.
#[test]
fn hostile_seeds_fit_the_fuzzers() {
    for case in hostile::seed_cases() {
        let seed = case.seed();
        assert!(
            seed.len() <= 128 * 1024,
            "{}: {} bytes",
            case.name,
            seed.len()
        );
        let split = (seed.len() - 2) * usize::from(seed[1]) / 256;
        assert!(
            split.abs_diff(case.client.len()) <= (seed.len() - 2) / 256 + 1,
            "{}",
            case.name
        );
    }
}

#[test]
fn the_generated_captures_are_ones_tshark_reads() {
    if !tapwire_integration::lab::have("tshark") {
        eprintln!("SKIP: tshark is not installed");
        return;
    }
    let mut p = Pcap::new();
    let mut c = p.connect((Ipv4Addr::new(10, 99, 0, 1), 40000), (SERVER, 80));
    p.send(&mut c, true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    p.send(&mut c, false, b"HTTP/1.1 204 No Content\r\n\r\n");
    p.close(&mut c);
    let path = tmp("tshark-check.pcap");
    p.write(&path).unwrap();
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args(["-Y", "http", "-T", "fields", "-e", "http.response.code"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "204");
}
