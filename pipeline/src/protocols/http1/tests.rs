use super::*;
use crate::dissect::http_fields::{decoded_body, header_name};
use crate::dissect::testkit::{self, Driver};
use std::borrow::Cow;

fn driver() -> Driver<Http1> {
    let meta = testkit::meta(Transport::Tcp, 80);
    Driver::new(Http1::new(&meta), meta)
}

fn summary(ex: &Exchange) -> (String, String, Option<u16>, Status, u64, u64) {
    let h = ex.http.as_ref().unwrap();
    (
        h.request.method.clone().unwrap_or_default(),
        ex.url.as_ref().unwrap().path.clone().unwrap_or_default(),
        h.response.as_ref().and_then(|r| r.status_code),
        ex.status,
        h.request.body.as_ref().map_or(0, |b| b.size),
        h.response
            .as_ref()
            .and_then(|r| r.body.as_ref())
            .map_or(0, |b| b.size),
    )
}

const S: Direction = Direction::ToServer;
const C: Direction = Direction::ToClient;

// Two pipelined requests (the second with a chunked body), answered in order: a
// Content-Length response and a chunked one with a trailer, preceded by 100 Continue.
const REQS: &[u8] = b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Basic c2VjcmV0\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
const RESPS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nSet-Cookie: id=1\r\n\r\nabc\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnope\r\n0\r\nX-T: 1\r\n\r\n";

#[test]
fn pipelined_exchanges_at_every_feed_size() {
    for step in [1, 2, 3, 7, 64, 10_000] {
        let mut d = driver();
        d.send(S, REQS, step);
        d.send(C, RESPS, step);
        let (out, _, _) = d.close();
        let got: Vec<_> = out.iter().map(summary).collect();
        assert_eq!(
            got,
            vec![
                ("GET".into(), "/a".into(), Some(200), Status::Ok, 0, 3),
                ("POST".into(), "/b".into(), Some(404), Status::Error, 11, 4),
            ],
            "step {step}"
        );
        let first = &out[0];
        assert_eq!(first.url.as_ref().unwrap().query.as_deref(), Some("x=1"));
        let req_h = &first.http.as_ref().unwrap().request.header;
        assert_eq!(
            req_h.get_all("authorization").collect::<Vec<_>>(),
            [REDACTED]
        );
        let resp_h = &first
            .http
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .header;
        assert_eq!(resp_h.get_all("set-cookie").collect::<Vec<_>>(), [REDACTED]);
        assert_eq!(first.network.protocol.as_ref().unwrap().version, "1.1");
    }
}

#[test]
fn head_204_304_have_no_body_and_close_delimits() {
    let mut d = driver();
    d.send(S, b"HEAD / HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /m HTTP/1.1\r\n\r\nGET /c HTTP/1.0\r\n\r\n", 5);
    d.send(
        C,
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil close",
        4,
    );
    let (out, _, _) = d.close();
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got[0],
        ("HEAD".into(), "/".into(), Some(200), Status::Ok, 0, 0)
    );
    assert_eq!(got[1].2, Some(204));
    assert_eq!(got[2].2, Some(304));
    assert_eq!(
        got[3],
        ("GET".into(), "/c".into(), Some(200), Status::Ok, 0, 11)
    );
    assert_eq!(out[3].network.protocol.as_ref().unwrap().version, "1.0");
}

#[test]
fn upgrade_stops_parsing_and_unanswered_is_no_response() {
    let mut d = driver();
    d.send(
        S,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        100,
    );
    d.send(
        C,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        100,
    );
    // After the upgrade the bytes are WebSocket frames (the server's text message), and a
    // request line is not one: the flow is given up, not parsed as HTTP again.
    assert!(!d.try_send(S, b"GET /not-http-any-more HTTP/1.1\r\n\r\n", 100));
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 2);
    assert_eq!(summary(&out[0]).2, Some(101));
    assert_eq!(out[1].websocket.as_ref().unwrap().message.size, 5);
    assert_eq!(an.0["websocket.bad_frame"], 1);

    let mut d = driver();
    d.send(S, b"GET /lonely HTTP/1.1\r\n\r\n", 100);
    let (out, _, _) = d.close();
    assert_eq!(out[0].status, Status::NoResponse);
}

#[test]
fn gap_in_body_keeps_framing_and_marks_incomplete() {
    let mut d = driver();
    d.send(S, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 100);
    d.send(C, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123", 100);
    d.gap(C, 4);
    d.send(C, b"89HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 100);
    let (out, anomalies, _) = d.close();
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got[0],
        (
            "GET".into(),
            "/1".into(),
            Some(200),
            Status::Incomplete,
            0,
            10
        )
    );
    assert_eq!(
        got[1],
        ("GET".into(), "/2".into(), Some(200), Status::Ok, 0, 2)
    );
    assert_eq!(anomalies.0["http.gap"], 1);
}

#[test]
fn gap_in_headers_resyncs_at_next_message() {
    let mut d = driver();
    d.send(
        S,
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
        100,
    );
    d.send(C, b"HTTP/1.1 500 Internal Server Error\r\nConte", 100);
    d.gap(C, 30);
    d.send(
        C,
        b"garbage\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        100,
    );
    let (out, _, _) = d.close();
    let got: Vec<_> = out.iter().map(summary).collect();
    // The cut status line still gives the status; the exchange is incomplete.
    assert_eq!(got[0].2, Some(500));
    assert_eq!(got[0].3, Status::Incomplete);
    assert_eq!(
        got[1],
        ("GET".into(), "/2".into(), Some(200), Status::Ok, 0, 0)
    );
}

#[test]
fn traceparent_sets_trace_and_span() {
    let mut d = driver();
    d.send(
        S,
        b"GET / HTTP/1.1\r\ntraceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n\r\n",
        100,
    );
    d.send(C, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100);
    let (out, _, _) = d.close();
    assert_eq!(
        out[0].trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(out[0].span_id.as_deref(), Some("00f067aa0ba902b7"));
}

#[test]
fn oversized_header_block_is_dropped_not_buffered() {
    let mut d = driver();
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', MAX_HEADER_BLOCK + 10));
    d.send(S, &big, 4096);
    assert!(d.pending[0].len() <= MAX_HEADER_BLOCK + 4096);
    let (_, anomalies, _) = d.close();
    assert_eq!(anomalies.0["http.header_too_large"], 1);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..300 {
        let mut d = driver();
        let mut msg = REQS.to_vec();
        msg.extend_from_slice(RESPS);
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % msg.len();
            msg[i] = (seed >> 32) as u8;
        }
        let split = (seed as usize) % msg.len();
        let _ = d.try_send(S, &msg[..split], 3);
        let _ = d.try_send(C, &msg[split..], 5);
        d.gap(C, 7);
        let _ = d.try_send(C, &msg, 11);
        let _ = d.close();
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn kept_bodies_are_content_decoded_and_bad_codings_reported() {
    let body = gzip(&b"{\"data\":{\"user\":{\"id\":1}}}".repeat(50));
    let mut corrupt = body.clone();
    let n = corrupt.len();
    corrupt[n / 2] ^= 0x55;
    for (payload, bad) in [(&body, false), (&corrupt, true)] {
        let mut d = driver();
        d.send(S, b"GET /q HTTP/1.1\r\n\r\n", 100);
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            payload.len()
        )
        .into_bytes();
        resp.extend_from_slice(payload);
        resp.extend_from_slice(b"\r\n0\r\n\r\n");
        d.send(C, &resp, 13);
        let (out, anomalies, _) = d.close();
        assert_eq!(out.len(), 1);
        let flagged = out[0]
            .tapwire
            .anomalies
            .iter()
            .any(|a| a == "http.bad_content_encoding");
        assert_eq!(flagged, bad);
        assert_eq!(anomalies.0.contains_key("http.bad_content_encoding"), bad);
        // Body size counts the coded bytes (after chunk framing is removed).
        assert_eq!(summary(&out[0]).5, payload.len() as u64);
    }
}

#[test]
fn decoded_body_follows_the_kept_copy() {
    let mut k = KeptBody::default();
    k.push(&gzip(b"hello"));
    assert_eq!(
        decoded_body(&Some(k.clone()), Some("gzip")),
        Some(Ok(Cow::Owned(b"hello".to_vec())))
    );
    k.truncated = true;
    assert_eq!(decoded_body(&Some(k), Some("gzip")), None);
    assert_eq!(decoded_body(&None, Some("gzip")), None);
}

#[test]
fn header_names_are_lower_case_whether_common_or_not() {
    assert!(matches!(
        header_name("Content-Type"),
        Cow::Borrowed("content-type")
    ));
    assert_eq!(header_name("X-Weird-Header"), "x-weird-header");
    let long = "X-".to_string() + &"A".repeat(60);
    assert_eq!(header_name(&long), long.to_ascii_lowercase());
    assert_eq!(header_name(""), "");
}

/// A JSON response is kept only when its request may be GraphQL (the refiner reads it); any
/// other is counted as it streams past, and its flow holds none of it.
#[test]
fn response_bodies_are_kept_only_for_requests_that_may_be_graphql() {
    let body = b"{\"data\":{\"user\":{\"id\":1}}}".repeat(200);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len() + 10
    );
    let graphql = br#"{"query":"{ user(id: 1) { id } }"}"#;
    let requests: [(Vec<u8>, bool); 4] = [
        (b"GET /api/users/1 HTTP/1.1\r\n\r\n".to_vec(), false),
        (b"GET /graphql?query=%7Bx%7D HTTP/1.1\r\n\r\n".to_vec(), true),
        (
            format!(
                "POST /graphql HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                graphql.len()
            )
            .into_bytes()
            .into_iter()
            .chain(graphql.iter().copied())
            .collect(),
            true,
        ),
        (
            b"POST /orders HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"id\":71}"
                .to_vec(),
            false,
        ),
    ];
    for (req, kept) in requests {
        let mut d = driver();
        d.send(S, &req, 4096);
        d.send(C, head.as_bytes(), 4096);
        d.send(C, &body, 4096);
        let held = d.d.held_bytes();
        assert_eq!(
            held >= body.len(),
            kept,
            "{}: {held} bytes held",
            String::from_utf8_lossy(&req[..20])
        );
    }
}
