use super::*;
use crate::dissect::testkit::{self, Driver};

fn meta() -> FlowMeta {
    testkit::meta(Transport::Tcp, 5672)
}

/// One frame: type, channel, size, payload, frame end.
fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend(channel.to_be_bytes());
    f.extend((payload.len() as u32).to_be_bytes());
    f.extend(payload);
    f.push(0xce);
    f
}

fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend(s.as_bytes());
    v
}

/// queue.declare(queue) — reserved, queue, flags, empty arguments table.
fn queue_declare(q: &str) -> Vec<u8> {
    let mut p = vec![0, 50, 0, 10, 0, 0];
    p.extend(short(q));
    p.push(0);
    p.extend(0u32.to_be_bytes());
    frame(1, 1, &p)
}

fn queue_declare_ok(q: &str) -> Vec<u8> {
    let mut p = vec![0, 50, 0, 11];
    p.extend(short(q));
    p.extend([0; 8]); // message and consumer counts
    frame(1, 1, &p)
}

/// basic.publish(exchange, routing key), its content header (content type) and body frames.
fn publish(ex: &str, rk: &str, body: &[u8], frame_max: usize) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 40, 0, 0];
    p.extend(short(ex));
    p.extend(short(rk));
    p.push(0);
    let mut out = frame(1, 1, &p);
    let mut h = vec![0, 60, 0, 0];
    h.extend((body.len() as u64).to_be_bytes());
    h.extend(0x8000u16.to_be_bytes()); // property flags: content-type
    h.extend(short("text/plain"));
    out.extend(frame(2, 1, &h));
    for chunk in body.chunks(frame_max) {
        out.extend(frame(3, 1, chunk));
    }
    out
}

fn channel_close(code: u16, text: &str) -> Vec<u8> {
    let mut p = vec![0, 20, 0, 40];
    p.extend(code.to_be_bytes());
    p.extend(short(text));
    p.extend([0, 50, 0, 10]);
    frame(1, 1, &p)
}

fn driver() -> Driver<AmqpDissector> {
    Driver::new(AmqpDissector::new(), meta())
}

fn op(e: &Exchange) -> (String, Option<String>, Status) {
    let m = e.messaging.as_ref().unwrap();
    (
        m.operation.as_ref().unwrap().name.clone(),
        m.destination.as_ref().map(|d| d.name.clone()),
        e.status,
    )
}

const S: Direction = Direction::ToServer;
const C: Direction = Direction::ToClient;

#[test]
fn declare_pairs_with_declare_ok_and_publish_is_one_way_at_every_feed_size() {
    for step in [1, 3, 64, 100_000] {
        let mut d = driver();
        let mut client = PROTOCOL_HEADER.to_vec();
        client.extend(queue_declare("jobs"));
        client.extend(publish("", "jobs", b"hello world", 4));
        client.extend(frame(8, 0, &[])); // heartbeat: plumbing
        d.send(S, &client, step);
        d.send(C, &queue_declare_ok("jobs"), step);
        let (out, _, _) = d.close();
        let got: Vec<_> = out.iter().map(op).collect();
        assert_eq!(
            got,
            vec![
                ("basic.publish".into(), None, Status::Ok),
                ("queue.declare".into(), Some("jobs".into()), Status::Ok),
            ],
            "step {step}"
        );
        let publish = &out[0];
        let m = publish.messaging.as_ref().unwrap();
        assert_eq!(m.rabbitmq.as_ref().unwrap().destination.routing_key, "jobs");
        assert_eq!(m.message.as_ref().unwrap().body.as_ref().unwrap().size, 11);
        assert_eq!(
            publish.amqp.as_ref().unwrap().content_type.as_deref(),
            Some("text/plain")
        );
    }
}

/// basic.get(queue): reserved, queue, no-ack.
fn basic_get(q: &str) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 70, 0, 0];
    p.extend(short(q));
    p.push(1);
    frame(1, 1, &p)
}

/// basic.get-ok(exchange, routing key) with its content header and one body frame.
fn get_ok(ex: &str, rk: &str, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 60, 0, 71];
    p.extend(7u64.to_be_bytes()); // delivery tag
    p.push(0); // redelivered
    p.extend(short(ex));
    p.extend(short(rk));
    p.extend(3u32.to_be_bytes()); // messages left
    let mut out = frame(1, 1, &p);
    let mut h = vec![0, 60, 0, 0];
    h.extend((body.len() as u64).to_be_bytes());
    h.extend(0u16.to_be_bytes());
    out.extend(frame(2, 1, &h));
    out.extend(frame(3, 1, body));
    out
}

#[test]
fn basic_get_and_the_get_ok_carrying_its_message_are_one_exchange() {
    for step in [1, 5, 100_000] {
        let mut d = driver();
        d.send(S, &basic_get("jobs"), step);
        d.send(C, &get_ok("orders", "eu.new", b"twelve bytes"), step);
        // An empty queue: the get ends with get-empty, no message.
        d.send(S, &basic_get("idle"), step);
        let mut empty = vec![0, 60, 0, 72];
        empty.extend(short(""));
        d.send(C, &frame(1, 1, &empty), step);
        let (out, _, _) = d.close();
        let got: Vec<_> = out.iter().map(op).collect();
        assert_eq!(
            got,
            vec![
                ("basic.get".into(), Some("jobs".into()), Status::Ok),
                ("basic.get".into(), Some("idle".into()), Status::Ok),
            ],
            "step {step}"
        );
        let m = out[0].messaging.as_ref().unwrap();
        let r = m.rabbitmq.as_ref().unwrap();
        assert_eq!(r.destination.routing_key, "eu.new");
        assert_eq!(r.exchange.as_ref().unwrap().name, "orders");
        assert_eq!(m.message.as_ref().unwrap().body.as_ref().unwrap().size, 12);
        assert!(out[1].messaging.as_ref().unwrap().message.is_none());
        assert!(out[1].messaging.as_ref().unwrap().rabbitmq.is_none());
    }
}

#[test]
fn a_get_ok_without_its_get_is_one_way() {
    let mut d = driver();
    d.send(C, &get_ok("orders", "eu.new", b"x"), 100);
    let (out, _, _) = d.close();
    let got: Vec<_> = out.iter().map(op).collect();
    assert_eq!(
        got,
        vec![("basic.get-ok".into(), Some("orders".into()), Status::Ok)]
    );
}

#[test]
fn channel_close_with_error_fails_the_request_it_answers() {
    let mut d = driver();
    d.send(S, &queue_declare("locked"), 100);
    d.send(
        C,
        &channel_close(405, "RESOURCE_LOCKED - cannot obtain exclusive access"),
        100,
    );
    let (out, _, _) = d.close();
    let got: Vec<_> = out.iter().map(op).collect();
    assert_eq!(
        got[0],
        ("queue.declare".into(), Some("locked".into()), Status::Error)
    );
    assert_eq!(out[0].amqp.as_ref().unwrap().reply_code, Some(405));
    assert_eq!(got[1].0, "channel.close");
    assert_eq!(got[1].2, Status::Error);
}

#[test]
fn large_bodies_stream_without_buffering() {
    let body = vec![7u8; 3 << 20];
    let mut d = driver();
    d.send(S, &publish("big", "k", &body, 131_072), 1448);
    let (out, _, peak) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Ok);
    assert!(peak < 2 * 1448, "{peak} bytes held");
}

#[test]
fn detection_by_header_and_by_frame() {
    assert_eq!(
        detect(PROTOCOL_HEADER, Transport::Tcp, false),
        Detection::FromClient
    );
    assert_eq!(detect(b"AMQP", Transport::Tcp, false), Detection::NeedMore);
    assert_eq!(
        detect(&queue_declare("q"), Transport::Tcp, false),
        Detection::FromClient
    );
    assert_eq!(
        detect(&queue_declare_ok("q"), Transport::Tcp, false),
        Detection::FromServer
    );
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\n", Transport::Tcp, true),
        Detection::No
    );
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0xa11ce_u64;
    let base = {
        let mut v = PROTOCOL_HEADER.to_vec();
        v.extend(queue_declare("q"));
        v.extend(publish("e", "r", b"body", 2));
        v
    };
    for _ in 0..2000 {
        let mut m = base.clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed as usize) % m.len();
        m[i] = (seed >> 40) as u8;
        let mut d = driver();
        let _ = d.try_send(S, &m, m.len());
        d.gap(S, 5);
        let _ = d.close();
    }
}
