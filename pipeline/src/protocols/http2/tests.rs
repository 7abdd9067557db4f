//! HTTP/2 dissector tests on annotated frames (HPACK blocks from loona-hpack's encoder).

use schemas::{Exchange, Protocol, Status, Transport};

use super::frame::*;
use super::*;
use crate::dissect::testkit::{self, Driver};
use crate::dissect::{Direction::ToClient as S, Direction::ToServer as C};

use super::frame::tests::frame;

/// One HPACK encoder per direction, as a real peer has.
struct Peer(loona_hpack::Encoder<'static>);

impl Peer {
    fn new() -> Self {
        Peer(loona_hpack::Encoder::new())
    }
    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.0
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }
}

fn settings() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff])
}

fn driver() -> Driver<Http2> {
    let meta = testkit::meta(Transport::Tcp, 8080);
    Driver::new(Http2::new(&meta), meta)
}

fn get(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "http".into()),
        (":path", path.into()),
        (":authority", "example.test".into()),
        ("user-agent", "tapwire-test/1".into()),
    ]
}

fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(n, s)| (*n, s.as_str())).collect()
}

fn summary(ex: &Exchange) -> (u32, Option<String>, Option<String>, Option<u16>, Status) {
    let h = ex.http.as_ref().unwrap();
    (
        ex.http2.as_ref().unwrap().stream_id,
        h.request.method.clone(),
        ex.url.as_ref().and_then(|u| u.path.clone()),
        h.response.as_ref().and_then(|r| r.status_code),
        ex.status,
    )
}

/// Preface, SETTINGS, a GET with a query and a response with a body, in every split.
#[test]
fn prior_knowledge_exchange_in_any_split() {
    for step in [1, 2, 7, 9, 10, 4096] {
        let (mut cli, mut srv) = (Peer::new(), Peer::new());
        let mut d = driver();
        let mut up = PREFACE.to_vec();
        up.extend(settings());
        up.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &cli.block(&refs(&get("/items?id=7"))),
        ));
        d.send(C, &up, step);
        let mut down = settings();
        down.extend(frame(SETTINGS, ACK, 0, &[]));
        down.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &srv.block(&[(":status", "200"), ("content-type", "text/plain")]),
        ));
        down.extend(frame(DATA, 0, 1, b"hello "));
        down.extend(frame(DATA, END_STREAM, 1, b"world"));
        d.send(S, &down, step);
        let (out, an, peak) = d.close();
        assert_eq!(out.len(), 1, "step {step}");
        let ex = &out[0];
        assert_eq!(
            summary(ex),
            (
                1,
                Some("GET".into()),
                Some("/items".into()),
                Some(200),
                Status::Ok
            )
        );
        assert_eq!(ex.url.as_ref().unwrap().query.as_deref(), Some("id=7"));
        assert_eq!(ex.network.protocol.as_ref().unwrap().version, "2");
        let h = ex.http.as_ref().unwrap();
        assert_eq!(h.response.as_ref().unwrap().body.as_ref().unwrap().size, 11);
        assert_eq!(h.request.header.first("user-agent"), Some("tapwire-test/1"));
        assert_eq!(an.total(), 0, "{an:?}");
        assert!(
            peak <= 9 + 64,
            "only whole control frames are held (step {step}: {peak})"
        );
    }
}

/// Two interleaved streams, padding, priority, CONTINUATION and a padded DATA frame.
#[test]
fn interleaved_streams_with_padding_priority_and_continuation() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let mut up = PREFACE.to_vec();
    up.extend(settings());
    // Stream 1: HEADERS padded with priority, the block split over a CONTINUATION.
    let b1 = cli.block(&refs(&get("/a")));
    let (first, rest) = b1.split_at(3);
    let mut p = vec![4u8, 0, 0, 0, 0, 16];
    p.extend_from_slice(first);
    p.extend([0; 4]);
    up.extend(frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &p));
    up.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    // Stream 3 opens before stream 1 ends; stream 1 sends a padded body.
    let mut post = get("/b");
    post[0].1 = "POST".into();
    up.extend(frame(HEADERS, END_HEADERS, 3, &cli.block(&refs(&post))));
    up.extend(frame(PRIORITY, 0, 3, &[0, 0, 0, 1, 8]));
    up.extend(frame(
        DATA,
        PADDED | END_STREAM,
        1,
        &[3, b'x', b'y', 0, 0, 0],
    ));
    up.extend(frame(DATA, END_STREAM, 3, b"body!"));
    d.send(C, &up, 5);
    let mut down = settings();
    down.extend(frame(
        HEADERS,
        END_HEADERS,
        3,
        &srv.block(&[(":status", "201")]),
    ));
    down.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &srv.block(&[(":status", "404")]),
    ));
    down.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
    down.extend(frame(PING, 0, 0, &[1; 8]));
    down.extend(frame(DATA, END_STREAM, 1, b"nope"));
    down.extend(frame(DATA, END_STREAM, 3, b""));
    d.send(S, &down, 3);
    let (out, an, _) = d.close();
    let got: Vec<_> = out.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![
            (
                1,
                Some("GET".into()),
                Some("/a".into()),
                Some(404),
                Status::Error
            ),
            (
                3,
                Some("POST".into()),
                Some("/b".into()),
                Some(201),
                Status::Ok
            ),
        ]
    );
    let size = |i: usize| {
        out[i]
            .http
            .as_ref()
            .unwrap()
            .request
            .body
            .as_ref()
            .unwrap()
            .size
    };
    assert_eq!((size(0), size(1)), (2, 5), "padding is not body");
    assert_eq!(an.total(), 0, "{an:?}");
}

/// RST_STREAM and GOAWAY end streams with their error code; connection frames are never
/// exchanges.
#[test]
fn reset_and_goaway_end_streams() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let mut up = PREFACE.to_vec();
    up.extend(settings());
    for id in [1, 3, 5] {
        up.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &cli.block(&refs(&get("/x"))),
        ));
    }
    d.send(C, &up, 100);
    let mut down = settings();
    down.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &srv.block(&[(":status", "200")]),
    ));
    down.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 7])); // REFUSED_STREAM
    down.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    d.send(S, &down, 100);
    let (out, _, _) = d.close();
    let by_id = |id: u32| {
        out.iter()
            .find(|e| e.http2.as_ref().unwrap().stream_id == id)
            .unwrap()
    };
    assert_eq!(out.len(), 3);
    assert_eq!(by_id(1).status, Status::Ok);
    let h3 = by_id(3).http2.as_ref().unwrap();
    assert_eq!(
        (h3.error_code.as_deref(), h3.reset_by.as_deref()),
        (Some("REFUSED_STREAM"), Some("server"))
    );
    assert_eq!(by_id(3).status, Status::Error);
    let h5 = by_id(5);
    assert_eq!(
        h5.http2.as_ref().unwrap().error_code.as_deref(),
        Some("NO_ERROR")
    );
    assert_eq!(
        h5.status,
        Status::NoResponse,
        "refused by GOAWAY(NO_ERROR): never processed"
    );
}

/// A client reset keeps the stream open for the frames the server had in flight.
#[test]
fn client_reset_takes_the_response_in_flight() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let mut up = PREFACE.to_vec();
    up.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &cli.block(&refs(&get("/slow"))),
    ));
    up.extend(frame(RST_STREAM, 0, 1, &[0, 0, 0, 8])); // CANCEL
    d.send(C, &up, 100);
    let mut down = frame(HEADERS, END_HEADERS, 1, &srv.block(&[(":status", "200")]));
    down.extend(frame(DATA, END_STREAM, 1, b"late"));
    d.send(S, &down, 100);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(summary(&out[0]).3, Some(200));
    assert_eq!(
        out[0].http2.as_ref().unwrap().reset_by.as_deref(),
        Some("client")
    );
    assert_eq!(out[0].status, Status::Error);
}

/// PUSH_PROMISE: the promised request (decoded with the server's table) and its response.
#[test]
fn server_push_is_its_own_exchange() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let mut up = PREFACE.to_vec();
    up.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &cli.block(&refs(&get("/"))),
    ));
    d.send(C, &up, 100);
    let mut pp = vec![0, 0, 0, 2];
    pp.extend(srv.block(&refs(&get("/style.css"))));
    let mut down = frame(PUSH_PROMISE, END_HEADERS, 1, &pp);
    down.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &srv.block(&[(":status", "200")]),
    ));
    down.extend(frame(
        HEADERS,
        END_HEADERS,
        2,
        &srv.block(&[(":status", "200")]),
    ));
    down.extend(frame(DATA, END_STREAM, 2, b"body{}"));
    d.send(S, &down, 100);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 2);
    let pushed = out
        .iter()
        .find(|e| e.http2.as_ref().unwrap().pushed)
        .unwrap();
    assert_eq!(
        summary(pushed),
        (
            2,
            Some("GET".into()),
            Some("/style.css".into()),
            Some(200),
            Status::Ok
        )
    );
}

fn grpc_msg(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend((payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// gRPC: method, messages per direction, status from trailers or a trailers-only response.
#[test]
fn grpc_calls_and_statuses() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let req = |path: &str| {
        vec![
            (":method", "POST".to_string()),
            (":scheme", "http".into()),
            (":path", path.to_string()),
            ("content-type", "application/grpc".into()),
            ("te", "trailers".into()),
        ]
    };
    let mut up = PREFACE.to_vec();
    up.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &cli.block(&refs(&req("/shop.Cart/Get"))),
    ));
    let mut body = grpc_msg(b"abc");
    body.extend(grpc_msg(b"defg"));
    let (a, b) = body.split_at(6);
    up.extend(frame(DATA, 0, 1, a));
    up.extend(frame(DATA, END_STREAM, 1, b));
    up.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &cli.block(&refs(&req("/shop.Cart/Missing"))),
    ));
    d.send(C, &up, 100);
    let mut down = frame(
        HEADERS,
        END_HEADERS,
        1,
        &srv.block(&[(":status", "200"), ("content-type", "application/grpc")]),
    );
    down.extend(frame(DATA, 0, 1, &grpc_msg(b"reply")));
    down.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &srv.block(&[("grpc-status", "0"), ("grpc-message", "")]),
    ));
    down.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &srv.block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20cart"),
        ]),
    ));
    d.send(S, &down, 100);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 2);
    let ok = &out[0];
    assert_eq!(ok.protocol, Protocol::Grpc);
    let rpc = ok.rpc.as_ref().unwrap();
    assert_eq!(rpc.system.name, "grpc");
    assert_eq!(rpc.method.as_deref(), Some("shop.Cart/Get"));
    assert_eq!(rpc.response.as_ref().unwrap().status_code, "OK");
    let g = ok.grpc.as_ref().unwrap();
    assert_eq!((g.request.count, g.request.size), (2, 7));
    assert_eq!((g.response.count, g.response.size), (1, 5));
    assert_eq!(ok.status, Status::Ok);
    let missing = &out[1];
    assert_eq!(
        missing
            .rpc
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .status_code,
        "NOT_FOUND"
    );
    assert_eq!(
        missing.grpc.as_ref().unwrap().status_message.as_deref(),
        Some("no such cart")
    );
    assert_eq!(
        missing.status,
        Status::Error,
        "gRPC NOT_FOUND on HTTP 200 is an error"
    );
}

/// Joining mid-connection: a block that refers to entries inserted before the capture
/// started yields only what is certain; literals and static-table fields are exact.
#[test]
fn mid_connection_pickup_emits_only_certain_fields() {
    let mut srv = Peer::new();
    // Earlier traffic (not captured) filled both tables: the client had sent
    // `:path: /orders` with incremental indexing (now dynamic index 62).
    let _ = srv.block(&[(":status", "200"), ("x-served-by", "node-a")]);
    // The capture starts here: GET (static 2), http (static 6), index 62, a literal.
    let mut req = vec![0x82, 0x86, 0xbe, 0x40, 4];
    req.extend_from_slice(b"x-id");
    req.push(2);
    req.extend_from_slice(b"42");
    let mut d = driver();
    d.send(C, &frame(HEADERS, END_HEADERS | END_STREAM, 5, &req), 100);
    d.send(
        S,
        &frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            5,
            &srv.block(&[
                (":status", "200"),
                ("x-served-by", "node-a"),
                ("x-new", "fresh"),
            ]),
        ),
        100,
    );
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 1);
    let ex = &out[0];
    let h = ex.http.as_ref().unwrap();
    assert_eq!(
        h.request.method.as_deref(),
        Some("GET"),
        "static table: certain"
    );
    assert_eq!(
        ex.url.as_ref().unwrap().path,
        None,
        "dynamic entry never seen: left out"
    );
    assert_eq!(ex.url.as_ref().unwrap().scheme.as_deref(), Some("http"));
    assert_eq!(
        h.request.header.first("x-id"),
        Some("42"),
        "a literal is certain"
    );
    let resp = h.response.as_ref().unwrap();
    assert_eq!(resp.status_code, Some(200));
    assert!(
        resp.header.first("x-served-by").is_none(),
        "indexed from the unseen table"
    );
    assert_eq!(resp.header.first("x-new"), Some("fresh"));
    assert_eq!(ex.http2.as_ref().unwrap().unknown_header_fields, 2);
    assert_eq!(ex.status, Status::Ok);
    assert_eq!(an.total(), 0, "{an:?}");
}

/// A gap inside a header block: the fields before the cut are kept, the exchange is
/// incomplete, and the next blocks decode again once they stop referring to lost entries.
#[test]
fn gap_in_a_header_block_keeps_what_came_before() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let mut up = PREFACE.to_vec();
    up.extend(settings());
    d.send(C, &up, 100);
    let block = cli.block(&refs(&get("/first")));
    let hdr = frame(HEADERS, END_HEADERS | END_STREAM, 1, &block);
    // The frame's last 6 bytes are lost.
    d.send(C, &hdr[..hdr.len() - 6], 100);
    d.gap(C, 6);
    // Later: a request of fresh literals on stream 3.
    d.send(
        C,
        &frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &cli.block(&[(":method", "DELETE"), (":path", "/second"), ("x-id", "9")]),
        ),
        100,
    );
    d.send(
        S,
        &frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &srv.block(&[(":status", "204")]),
        ),
        100,
    );
    let (out, an, _) = d.close();
    assert_eq!(an.0.get("http2.gap"), Some(&1));
    let first = out
        .iter()
        .find(|e| e.http2.as_ref().unwrap().stream_id == 1)
        .unwrap();
    assert_eq!(first.status, Status::Incomplete);
    assert_eq!(
        first.http.as_ref().unwrap().request.method.as_deref(),
        Some("GET")
    );
    let second = out
        .iter()
        .find(|e| e.http2.as_ref().unwrap().stream_id == 3)
        .unwrap();
    assert_eq!(
        summary(second),
        (
            3,
            Some("DELETE".into()),
            Some("/second".into()),
            Some(204),
            Status::Ok
        )
    );
}

/// Frames of unknown alignment (capture started inside a frame) are found by structure.
#[test]
fn resync_after_starting_inside_a_frame() {
    let (mut cli, mut srv) = (Peer::new(), Peer::new());
    let mut d = driver();
    let mut up = frame(DATA, 0, 1, &[0x55; 40])[20..].to_vec(); // tail of an earlier frame
    up.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &cli.block(&[(":method", "GET"), (":path", "/z")]),
    ));
    d.send(C, &up, 100);
    d.send(
        S,
        &frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &srv.block(&[(":status", "200")]),
        ),
        100,
    );
    let (out, an, _) = d.close();
    assert_eq!(an.0.get("http2.mid_frame_start"), Some(&1));
    let ex = out
        .iter()
        .find(|e| e.http2.as_ref().unwrap().stream_id == 3)
        .unwrap();
    assert_eq!(
        summary(ex),
        (
            3,
            Some("GET".into()),
            Some("/z".into()),
            Some(200),
            Status::Ok
        )
    );
}

/// `Upgrade: h2c` over HTTP/1: the upgrading request is stream 1, answered in HTTP/2.
#[test]
fn h2c_upgrade_hands_over_from_http1() {
    let meta = testkit::meta(Transport::Tcp, 80);
    let mut d = Driver::new(crate::protocols::http1::Http1::new(&meta), meta);
    d.send(
        C,
        b"GET /up?x=1 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        1000,
    );
    let mut srv = Peer::new();
    let mut down =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    down.extend(settings());
    down.extend(frame(
        HEADERS,
        END_HEADERS,
        1,
        &srv.block(&[(":status", "200")]),
    ));
    down.extend(frame(DATA, END_STREAM, 1, b"upgraded"));
    d.send(S, &down, 1000);
    let mut up = PREFACE.to_vec();
    up.extend(settings());
    up.extend(frame(SETTINGS, ACK, 0, &[]));
    d.send(C, &up, 1000);
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 1, "{out:?}");
    let ex = &out[0];
    assert_eq!(
        summary(ex),
        (
            1,
            Some("GET".into()),
            Some("/up".into()),
            Some(200),
            Status::Ok
        )
    );
    assert_eq!(ex.network.protocol.as_ref().unwrap().version, "2");
    assert_eq!(ex.url.as_ref().unwrap().query.as_deref(), Some("x=1"));
    assert_eq!(an.total(), 0, "{an:?}");
}

/// Detection: the preface, or whole frames from their first byte; HTTP/1 text is not HTTP/2.
#[test]
fn detection() {
    use crate::dissect::entry::Detection;
    assert_eq!(
        detect(PREFACE, Transport::Tcp, false),
        Detection::FromClient
    );
    assert_eq!(
        detect(&PREFACE[..10], Transport::Tcp, false),
        Detection::NeedMore
    );
    let mut srv = Peer::new();
    let resp = frame(HEADERS, END_HEADERS, 1, &srv.block(&[(":status", "200")]));
    assert_eq!(detect(&resp, Transport::Tcp, false), Detection::FromServer);
    let mut cli = Peer::new();
    let req = frame(HEADERS, END_HEADERS, 1, &cli.block(&[(":method", "GET")]));
    assert_eq!(detect(&req, Transport::Tcp, false), Detection::FromClient);
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\n\r\n", Transport::Tcp, false),
        Detection::No
    );
    assert_eq!(
        detect(b"*1\r\n$4\r\nPING\r\n", Transport::Tcp, false),
        Detection::No
    );
    assert_eq!(
        detect(&settings()[..5], Transport::Tcp, false),
        Detection::No
    );
}

/// Garbage never panics, and memory held stays bounded.
#[test]
fn garbage_is_survived() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..200 {
        let mut d = driver();
        let mut bytes = PREFACE.to_vec();
        for _ in 0..(round * 13 % 700) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(seed as u8);
        }
        let _ = d.try_send(C, &bytes, 1 + round % 17);
        let _ = d.try_send(S, &bytes[24..], 1 + round % 5);
        d.gap(S, 3);
        let (_, _, peak) = d.close();
        assert!(peak <= MAX_FRAME_BUFFERED + 64);
    }
}

/// A DATA frame whose padding exceeds it (or on stream 0) loses sync without looping on it
/// (found by the `http2` fuzz target).
#[test]
fn bad_data_frames_resync_past_themselves() {
    let mut d = driver();
    let mut up = PREFACE.to_vec();
    up.extend(frame(DATA, PADDED, 1, &[9, 0, 0]));
    up.extend(frame(DATA, 0, 0, b"x"));
    up.extend(frame(PING, 0, 0, &[0; 8]));
    d.send(C, &up, 4096);
    let (_, an, _) = d.close();
    assert_eq!(an.0.get("http2.bad_padding"), Some(&1));
}
