use schemas::Transport;

use super::*;
use crate::dissect::testkit;
use crate::protocols::http1::Http1;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

/// A frame: FIN, RSV1, opcode, then the length form the size needs, the mask (client frames
/// are masked) and the payload masked with it.
fn frame(fin: bool, rsv1: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend((n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend((n as u64).to_be_bytes());
        }
    }
    if let Some(k) = mask {
        f.extend(k);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
    } else {
        f.extend(payload);
    }
    f
}

const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn upgrade_request() -> Vec<u8> {
    b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec()
}

fn switching() -> Vec<u8> {
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        .to_vec()
}

fn driver() -> testkit::Driver<Http1> {
    let meta = testkit::meta(Transport::Tcp, 8765);
    testkit::Driver::new(Http1::new(&meta), meta)
}

fn ws(e: &Exchange) -> &schemas::l7::websocket::Websocket {
    e.websocket.as_ref().unwrap()
}

#[test]
fn messages_after_the_upgrade_one_exchange_each() {
    for step in [1, 3, 100_000] {
        let mut d = driver();
        d.send(C, &upgrade_request(), step);
        // The 101 and the server's first message in one segment.
        let mut server = switching();
        server.extend(frame(true, false, 0x1, b"welcome", None));
        d.send(S, &server, step);
        // A text message in three fragments with a ping between them, then binary 70000 B.
        let mut client = frame(false, false, 0x1, b"hel", KEY);
        client.extend(frame(false, false, 0x0, b"lo ", KEY));
        client.extend(frame(true, false, 0x9, b"are you there", KEY));
        client.extend(frame(true, false, 0x0, b"world", KEY));
        client.extend(frame(true, false, 0x2, &vec![9u8; 70_000], KEY));
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend(b"bye");
        client.extend(frame(true, false, 0x8, &close, KEY));
        d.send(C, &client, step);
        d.send(S, &frame(true, false, 0xa, b"are you there", None), step);
        let mut close = 1011u16.to_be_bytes().to_vec();
        close.extend(b"server error");
        d.send(S, &frame(true, false, 0x8, &close, None), step);
        let peak = d.peak;
        let (out, an, _) = d.close();
        assert!(an.0.is_empty(), "{an:?}");
        assert!(peak < 200, "step {step}: {peak} bytes held");
        assert_eq!(out[0].protocol, Protocol::Http, "the upgrade itself");
        assert_eq!(
            out[0]
                .http
                .as_ref()
                .unwrap()
                .response
                .as_ref()
                .unwrap()
                .status_code,
            Some(101)
        );
        let rows: Vec<_> = out[1..]
            .iter()
            .map(|e| {
                let w = ws(e);
                (
                    w.direction.as_str(),
                    w.opcode.as_str(),
                    w.message.size,
                    e.status,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("server", "text", 7, Status::Ok),
                ("client", "ping", 13, Status::Ok),
                ("client", "text", 11, Status::Ok),
                ("client", "binary", 70_000, Status::Ok),
                ("client", "close", 5, Status::Ok),
                ("server", "pong", 13, Status::Ok),
                ("server", "close", 14, Status::Error),
            ],
            "step {step}"
        );
        let close = ws(&out[5]).close.as_ref().unwrap();
        assert_eq!(
            (close.code, close.reason.as_deref()),
            (Some(1000), Some("bye"))
        );
        assert_eq!(ws(&out[7]).close.as_ref().unwrap().code, Some(1011));
    }
}

#[test]
fn compressed_messages_are_flagged_and_sized_as_sent() {
    let mut d = driver();
    d.send(C, &upgrade_request(), 100);
    d.send(S, &switching(), 100);
    d.send(
        C,
        &frame(true, true, 0x1, &[0xf2, 0x48, 0xcd, 0xc9], KEY),
        100,
    );
    let (out, _, _) = d.close();
    assert_eq!(ws(&out[1]).compressed, Some(true));
    assert_eq!(ws(&out[1]).message.size, 4);
}

#[test]
fn a_message_cut_by_the_end_is_incomplete_and_bad_frames_end_the_flow() {
    let mut d = driver();
    d.send(C, &upgrade_request(), 100);
    d.send(S, &switching(), 100);
    let f = frame(true, false, 0x2, &[1u8; 1000], KEY);
    d.send(C, &f[..500], 100);
    let (out, _, _) = d.close();
    assert_eq!(ws(&out[1]).message.size, 500 - 8);
    assert_eq!(out[1].status, Status::Incomplete);
    let mut d = driver();
    d.send(C, &upgrade_request(), 100);
    d.send(S, &switching(), 100);
    // A 200-byte ping: control frames carry at most 125.
    assert!(!d.try_send(C, &frame(true, false, 0x9, &[0u8; 200], KEY), 100));
    let (_, an, _) = d.close();
    assert_eq!(an.0["websocket.bad_frame"], 1);
}

#[test]
fn garbage_after_the_upgrade_never_panics() {
    let mut base = frame(false, false, 0x1, b"abc", KEY);
    base.extend(frame(true, false, 0x0, b"def", KEY));
    base.extend(frame(true, false, 0x8, &[3, 232, b'x'], KEY));
    for m in testkit::mutations(&base, 3000, 0x3e3e) {
        let mut d = driver();
        d.send(C, &upgrade_request(), 100);
        d.send(S, &switching(), 100);
        let _ = d.try_send(C, &m, 5);
        let _ = d.try_send(S, &m, 7);
        d.gap(C, 9);
        let _ = d.close();
    }
}
