//! Hostile input, each class generated here and run through the real binary (`tapwire
//! dissect`): the process must exit 0, stay within a memory bound (its peak RSS, from
//! `wait4`), and count what it refused as an anomaly. Each case aborted or exhausted memory
//! before the fix it names.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
    let path = tmp(name);
    pcap.write(&path).unwrap();
    let out_path = tmp(&format!("{name}.out"));
    let err_path = tmp(&format!("{name}.err"));
    // Reaped by `wait4` below, which also reports its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(tapwire_integration::tapwire())
        .args(["dissect", "--format", "ndjson"])
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

fn amqp_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xce);
    f
}

/// A field table holding one entry whose value is `depth` nested arrays.
fn nested_table(depth: usize) -> Vec<u8> {
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut v = vec![b'A'];
        v.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        v.extend_from_slice(&inner);
        inner = v;
    }
    let mut entry = vec![1, b'k'];
    entry.extend_from_slice(&inner);
    let mut table = (entry.len() as u32).to_be_bytes().to_vec();
    table.extend_from_slice(&entry);
    table
}

/// AMQP field tables nested 25000 deep (in a method and in a content header): the crate's
/// parser recursed once per level and overflowed the worker's stack.
#[test]
fn amqp_tables_nested_deeper_than_any_stack() {
    let mut p = Pcap::new();
    let mut c = p.connect((client(1), 40001), (SERVER, 5672));
    p.send(&mut c, true, b"AMQP\x00\x00\x09\x01");
    // queue.declare with its arguments table nested.
    let mut declare = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
    declare.extend(nested_table(25_000));
    p.send(&mut c, true, &amqp_frame(1, 1, &declare));
    // basic.publish, then a content header whose `headers` property is nested.
    let publish = [0, 60, 0, 40, 0, 0, 0, 1, b'k', 0];
    p.send(&mut c, true, &amqp_frame(1, 1, &publish));
    let mut header = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0b0010_0000, 0];
    header.extend(nested_table(25_000));
    p.send(&mut c, true, &amqp_frame(2, 1, &header));
    p.close(&mut c);
    let run = dissect("amqp-nesting.pcap", &p);
    assert_survived(&run, "amqp.table_too_deep", 100);
    assert!(
        run.stdout.contains("queue.declare"),
        "the method is still named"
    );
}

fn http1_post(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A GraphQL document whose nesting hides behind a block string with a lone quote in it (the
/// depth scan took it for three strings). graphql-parser 0.4 stops at 50 levels by itself,
/// so this never crashed; the scan now reports it as too deep instead of a parse error.
#[test]
fn graphql_nesting_hidden_behind_a_block_string() {
    let doc = format!(
        r#"{{ a(s: \"\"\" \" \"\"\") {}{} }}"#,
        "{ b ".repeat(10_000),
        "}".repeat(10_000)
    );
    let body = format!(r#"{{"query":"{doc}"}}"#);
    let mut p = Pcap::new();
    let mut c = p.connect((client(2), 40002), (SERVER, 80));
    p.send(
        &mut c,
        true,
        &http1_post("/graphql", "application/json", &body),
    );
    p.send(
        &mut c,
        false,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"data\":{}}",
    );
    p.close(&mut c);
    let run = dissect("graphql-nesting.pcap", &p);
    assert_survived(&run, "graphql.too_deep", 100);
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block as HEADERS plus CONTINUATIONs of at most 16384 bytes.
fn h2_headers(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let kind = if i == 0 { 1 } else { 9 };
        let mut flags = if last { 0x4 } else { 0 };
        if i == 0 && end_stream {
            flags |= 0x1;
        }
        out.extend(h2_frame(kind, flags, stream, chunk));
    }
    out
}

/// HPACK amplification: one 60 KB table entry, then streams and trailer blocks made of
/// one-byte references to it. Each reference copied the whole entry: 100 KB of wire grew
/// the process by gigabytes.
#[test]
fn hpack_references_to_a_large_entry_are_not_amplified() {
    let mut p = Pcap::new();
    let mut c = p.connect((client(3), 40003), (SERVER, 8080));
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(h2_frame(4, 0, 0, &[]));
    // Size update to 65536, GET / http, then x-big: 60000 bytes, indexed.
    let mut first = vec![0x3f, 0xe1, 0xff, 0x03, 0x82, 0x84, 0x86, 0x40, 5];
    first.extend_from_slice(b"x-big");
    first.extend_from_slice(&[0x7f, 0xe1, 0xd3, 0x03]); // 127 + 59873 = 60000
    first.extend(std::iter::repeat_n(b'v', 60_000));
    wire.extend(h2_headers(1, &first, false));
    let mut refs = vec![0x82, 0x84, 0x86];
    refs.extend(std::iter::repeat_n(0x80 | 62, 16_000));
    // Trailer blocks on stream 1, then 300 more streams, none answered.
    for _ in 0..100 {
        wire.extend(h2_headers(1, &refs[3..], false));
    }
    for i in 0..300u32 {
        wire.extend(h2_headers(3 + 2 * i, &refs, false));
    }
    p.send(&mut c, true, &wire);
    p.close(&mut c);
    let run = dissect("hpack-amplification.pcap", &p);
    assert_survived(&run, "http2.header_list_too_large", 200);
}

/// Kafka requests on 3000 connections, each one 70-byte segment announcing a 1 MiB message:
/// the buffer was reserved from the length prefix before the bytes arrived.
#[test]
fn length_prefixes_reserve_nothing() {
    let mut p = Pcap::new();
    for i in 0..3000u32 {
        let mut c = p.connect((client(10 + i), 40000 + (i % 20000) as u16), (SERVER, 9092));
        let mut m = 1_000_000i32.to_be_bytes().to_vec();
        m.extend_from_slice(&3i16.to_be_bytes()); // Metadata
        m.extend_from_slice(&4i16.to_be_bytes());
        m.extend_from_slice(&(i as i32).to_be_bytes());
        m.extend_from_slice(&4i16.to_be_bytes());
        m.extend_from_slice(b"evil");
        m.resize(70, 0);
        p.send(&mut c, true, &m);
    }
    let run = dissect("kafka-reservations.pcap", &p);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.peak_rss_mib <= 200,
        "peak RSS {} MiB: 3000 × 70 bytes held, not 3000 × 1 MiB",
        run.peak_rss_mib
    );
}

/// Credentials in places the four classic headers do not cover never reach the output.
#[test]
fn credentials_by_name_pattern_userinfo_and_query_are_redacted() {
    let mut p = Pcap::new();
    let mut c = p.connect((client(4), 40004), (SERVER, 80));
    let req = "GET http://alice:pw-in-userinfo-1@proxy.test/a?sig=sig-secret-2&page=1&access_token=tok-secret-3 HTTP/1.1\r\n\
               Host: proxy.test\r\nX-Api-Key: key-secret-4\r\nX-Auth-Token: tok-secret-5\r\n\
               X-Amz-Security-Token: amz-secret-6\r\nX-Tapwire-Token: tw-secret-7\r\n\r\n";
    p.send(&mut c, true, req.as_bytes());
    p.send(
        &mut c,
        false,
        b"HTTP/1.1 200 OK\r\nX-Session-Token: sess-secret-8\r\nContent-Length: 0\r\n\r\n",
    );
    p.close(&mut c);
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
