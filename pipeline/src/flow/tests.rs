use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::decode::TcpFlags;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

#[allow(clippy::too_many_arguments)]
fn tcp<'a>(
    ts: u64,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    seq: u32,
    ack: u32,
    flags: &str,
    payload: &'a [u8],
) -> Segment<'a> {
    Segment {
        ts,
        src: src.0,
        dst: dst.0,
        src_port: src.1,
        dst_port: dst.1,
        l4: L4::Tcp {
            seq,
            ack,
            flags: TcpFlags {
                syn: flags.contains('S'),
                ack: flags.contains('A'),
                fin: flags.contains('F'),
                rst: flags.contains('R'),
            },
        },
        payload,
        missing: 0,
    }
}

#[test]
fn table_cap_evicts_oldest_and_counts() {
    let cfg = FlowConfig {
        max_flows: 64,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg, crate::protocols::REGISTRY);
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let c = (ip(1), 10_000 + i as u16);
        t.segment(&tcp(u64::from(i), c, (ip(2), 80), 1, 0, "S", b""), &mut out);
        assert!(t.len() <= 64);
    }
    assert!(t.stats.evicted >= 900, "{:?}", t.stats);
    assert_eq!(t.stats.created, 1000);
}

#[test]
fn midstream_roles_come_from_content() {
    // No handshake; the server's response is captured before the client's request.
    let mut t = FlowTable::new(FlowConfig::default(), crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let (cl, sv) = ((ip(1), 80), (ip(2), 33_000)); // the client uses port 80 (odd, but legal)
    let req = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    t.segment(&tcp(1, cl, sv, 100, 500, "AP", req), &mut out);
    t.segment(
        &tcp(2, sv, cl, 500, 100 + req.len() as u32, "AP", resp),
        &mut out,
    );
    t.finish(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].client.port, out[0].server.port), (80, 33_000));
    assert_eq!(t.stats.midstream, 1);
}

#[test]
fn syn_decides_roles_and_rst_closes() {
    let mut t = FlowTable::new(FlowConfig::default(), crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let (cl, sv) = ((ip(1), 40_000), (ip(2), 8080));
    t.segment(&tcp(1, cl, sv, 0, 0, "S", b""), &mut out);
    t.segment(&tcp(2, sv, cl, 900, 1, "SA", b""), &mut out);
    t.segment(
        &tcp(3, cl, sv, 1, 901, "AP", b"GET / HTTP/1.1\r\n\r\n"),
        &mut out,
    );
    t.segment(&tcp(4, sv, cl, 901, 19, "R", b""), &mut out);
    assert!(t.is_empty());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, schemas::Status::NoResponse);
    assert_eq!(out[0].server.port, 8080);
}

#[test]
fn idle_flows_time_out() {
    let cfg = FlowConfig {
        tcp_idle_ns: 5_000_000_000,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg, crate::protocols::REGISTRY);
    let mut out = Vec::new();
    t.segment(
        &tcp(
            1,
            (ip(1), 1234),
            (ip(2), 80),
            1,
            0,
            "AP",
            b"GET / HTTP/1.1\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(t.len(), 1);
    // Another flow's packet 10 s later sweeps the idle one.
    t.segment(
        &tcp(10_000_000_001, (ip(3), 1), (ip(4), 80), 1, 0, "S", b""),
        &mut out,
    );
    assert_eq!(t.stats.timed_out, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, schemas::Status::NoResponse);
}

/// Flows whose requests wait for answers that never come, each holding a large header list:
/// the sum stays within the budget, the largest flows are closed (their requests reported)
/// and counted.
#[test]
fn the_memory_budget_bounds_all_flows_together() {
    let budget = 8 << 20;
    let cfg = FlowConfig {
        memory_budget: budget,
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg, crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let header = format!("X-Filler: {}\r\n", "f".repeat(4000));
    let mut request = b"GET /a HTTP/1.1\r\nHost: h\r\n".to_vec();
    for _ in 0..12 {
        request.extend_from_slice(header.as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let mut peak = 0;
    for i in 0..400u32 {
        let c = (ip(1), 10_000 + i as u16);
        let s = (ip(2), 80);
        t.segment(&tcp(1, c, s, 100, 0, "S", b""), &mut out);
        t.segment(&tcp(2, s, c, 500, 101, "SA", b""), &mut out);
        let mut seq = 101;
        for _ in 0..4 {
            t.segment(&tcp(3, c, s, seq, 501, "A", &request), &mut out);
            seq += request.len() as u32;
        }
        peak = peak.max(t.held_bytes());
    }
    // 400 flows × 4 requests × ~48 KB would be ~77 MB.
    assert!(
        peak <= budget + (1 << 20),
        "peak {peak} over the budget {budget}"
    );
    assert!(t.stats.memory_evicted > 0, "{:?}", t.stats);
    assert!(
        out.iter().any(|e| e.status == schemas::Status::NoResponse),
        "the closed flows' requests are reported"
    );
    // What is left is counted exactly: closing everything returns the total to zero.
    t.finish(&mut out);
    assert_eq!(t.held_bytes(), 0);
}

#[test]
fn skipped_endpoints_are_never_dissected() {
    let cfg = FlowConfig {
        skip: std::sync::Arc::new([(None, 9464), (Some(ip(9)), 4317)]),
        ..FlowConfig::default()
    };
    let mut t = FlowTable::new(cfg, crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let req = b"GET /v1/events HTTP/1.1\r\nHost: a\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (server, port) in [(ip(2), 9464), (ip(9), 4317), (ip(2), 80)] {
        let c = (ip(1), 40_000 + port);
        let s = (server, port);
        t.segment(&tcp(1, c, s, 100, 0, "S", b""), &mut out);
        t.segment(&tcp(2, s, c, 500, 101, "SA", b""), &mut out);
        t.segment(&tcp(3, c, s, 101, 501, "A", req), &mut out);
        t.segment(
            &tcp(4, s, c, 501, 101 + req.len() as u32, "A", resp),
            &mut out,
        );
    }
    t.finish(&mut out);
    assert_eq!(t.stats.skipped, 2);
    assert_eq!(out.len(), 1, "only the flow to port 80: {out:?}");
    assert_eq!(out[0].server.port, 80);
}

/// Found by the `pipeline` fuzz target: a flow that held out-of-order bytes, then became
/// opaque (nothing detected) and was reset, left those bytes counted in the out-of-order
/// budget for ever.
#[test]
fn an_opaque_flow_gives_back_its_out_of_order_bytes() {
    let mut t = FlowTable::new(FlowConfig::default(), crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let c = (ip(1), 40_000);
    let s = (ip(2), 7777);
    t.segment(&tcp(1, c, s, 100, 0, "S", b""), &mut out);
    t.segment(&tcp(2, s, c, 500, 101, "SA", b""), &mut out);
    // Ahead of the stream: held out of order.
    t.segment(&tcp(3, c, s, 301, 501, "A", &[0xee; 50]), &mut out);
    assert_eq!(t.buffered_bytes(), 50);
    // In-order bytes no detector recognises: the flow becomes opaque.
    let mut seq = 101;
    for i in 0..8u64 {
        t.segment(&tcp(4 + i, c, s, seq, 501, "A", &[0x01; 20]), &mut out);
        t.segment(&tcp(4 + i, s, c, 501, seq + 20, "A", &[0x02; 20]), &mut out);
        seq += 20;
    }
    assert_eq!(t.stats.opaque, 1, "{:?}", t.stats);
    t.segment(&tcp(20, c, s, seq, 501, "R", b""), &mut out);
    assert_eq!(t.len(), 0);
    assert_eq!(
        t.buffered_bytes(),
        0,
        "the reset flow's out-of-order bytes are released"
    );
}

/// A chunk of stream 7 owned by curl at 10.0.0.1:40000 talking to 10.0.0.2:443.
fn plain<'a>(origin: &'a StreamOrigin, sent: bool, offset: u64, data: &'a [u8]) -> StreamChunk<'a> {
    StreamChunk {
        ts: 1_000 + offset,
        local: (ip(1), 40_000),
        peer: (ip(2), 443),
        stream: std::num::NonZeroU64::new(7).expect("non-zero"),
        sent,
        offset,
        data,
        origin,
    }
}

#[test]
fn a_plaintext_stream_is_dissected_with_its_process_and_tls_established() {
    let curl = StreamOrigin {
        pid: 4242,
        executable: Some("curl".into()),
    };
    let mut t = FlowTable::new(FlowConfig::default(), crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    // The request in two chunks, the second repeated in part (bytes 10.. again).
    t.stream(&plain(&curl, true, 0, &req[..10]), &mut out);
    t.stream(&plain(&curl, true, 5, &req[5..]), &mut out);
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    t.stream(&plain(&curl, false, 0, resp), &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    let ex = &out[0];
    assert_eq!(
        ex.http
            .as_ref()
            .and_then(|h| h.response.as_ref()?.status_code),
        Some(200)
    );
    assert_eq!(
        (ex.client.address.as_str(), ex.client.port),
        ("10.0.0.1", 40_000)
    );
    assert_eq!(
        (ex.server.address.as_str(), ex.server.port),
        ("10.0.0.2", 443)
    );
    assert_eq!(ex.tls.as_ref().and_then(|t| t.established), Some(true));
    let p = ex.process.as_ref().expect("process");
    assert_eq!(p.pid, 4242);
    assert_eq!(p.executable.as_ref().map(|e| e.name.as_str()), Some("curl"));
    assert_eq!(t.stats.stream_repeated_bytes, 5);
    assert_eq!(t.stats.stream_gap_bytes, 0);

    // The same tuple on the wire is another flow, and its exchanges say nothing of TLS.
    let c = (ip(1), 40_000);
    let s = (ip(2), 443);
    t.segment(&tcp(5_000, c, s, 100, 0, "S", b""), &mut out);
    assert_eq!(t.len(), 2);
}

#[test]
fn an_offset_jump_in_a_plaintext_stream_is_a_gap() {
    let py = StreamOrigin {
        pid: 7,
        executable: None,
    };
    let mut t = FlowTable::new(FlowConfig::default(), crate::protocols::REGISTRY);
    let mut out = Vec::new();
    let req1 = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    t.stream(&plain(&py, true, 0, req1), &mut out);
    t.stream(&plain(&py, false, 0, head), &mut out);
    t.stream(&plain(&py, false, head.len() as u64, b"0123"), &mut out);
    // Six body bytes lost upstream, then the next exchange.
    let at = head.len() as u64 + 10;
    let req2 = b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
    t.stream(&plain(&py, true, req1.len() as u64, req2), &mut out);
    t.stream(
        &plain(
            &py,
            false,
            at,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ),
        &mut out,
    );
    assert_eq!(t.stats.stream_gap_bytes, 6, "{:?}", t.stats);
    let codes: Vec<_> = out
        .iter()
        .map(|e| {
            e.http
                .as_ref()
                .and_then(|h| h.response.as_ref()?.status_code)
        })
        .collect();
    assert_eq!(codes, [Some(200), Some(404)], "{out:?}");
    // The body lost bytes: the first exchange is incomplete, as after packet loss.
    assert_eq!(out[0].status, schemas::Status::Incomplete);
    assert_eq!(out[1].status, schemas::Status::Error);
    assert_eq!(out[1].process.as_ref().map(|p| p.pid), Some(7));
}
