use super::*;
use crate::dissect::testkit::{self, Driver};

const S: Direction = Direction::ToServer;
const C: Direction = Direction::ToClient;

fn driver() -> Driver<TlsDissector> {
    Driver::new(TlsDissector::default(), testkit::meta(Transport::Tcp, 443))
}

/// A record: type, version 3.3, length, body.
fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend((body.len() as u16).to_be_bytes());
    r.extend(body);
    r
}

/// A handshake message: type, 24-bit length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend(body);
    m
}

fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut e = kind.to_be_bytes().to_vec();
    e.extend((body.len() as u16).to_be_bytes());
    e.extend(body);
    e
}

/// A ClientHello body: version 3.3, random, empty session id, two ciphers (and a GREASE one),
/// null compression, then `exts`.
fn client_hello(exts: &[u8]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend([7u8; 32]); // random
    b.push(0); // session id
    b.extend([0, 6, 0x0a, 0x0a, 0x13, 0x01, 0xc0, 0x2f]); // ciphers: GREASE, TLS_AES_128_GCM_SHA256, ECDHE-RSA-AES128-GCM
    b.extend([1, 0]); // compression: null
    b.extend((exts.len() as u16).to_be_bytes());
    b.extend(exts);
    message(1, &b)
}

/// SNI `shop.test`, ALPN h2 + http/1.1, supported versions 1.3 + 1.2, x25519, one signature
/// algorithm.
fn modern_extensions() -> Vec<u8> {
    let mut e = Vec::new();
    let name = b"shop.test";
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    e.extend(ext(0x0000, &sni));
    e.extend(ext(0x0010, b"\x00\x0c\x02h2\x08http/1.1"));
    e.extend(ext(0x002b, &[4, 3, 4, 3, 3]));
    e.extend(ext(0x000a, &[0, 2, 0, 0x1d]));
    e.extend(ext(0x000d, &[0, 2, 4, 3]));
    e
}

/// A ServerHello body choosing `cipher`, with `exts`.
fn server_hello(random: [u8; 32], cipher: u16, exts: &[u8]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend(random);
    b.push(0);
    b.extend(cipher.to_be_bytes());
    b.push(0);
    b.extend((exts.len() as u16).to_be_bytes());
    b.extend(exts);
    message(2, &b)
}

fn tls(e: &Exchange) -> &Tls {
    e.tls.as_ref().unwrap()
}

#[test]
fn detection_needs_a_hello_record() {
    let ch = record(HANDSHAKE, &client_hello(&[]));
    assert_eq!(detect(&ch, Transport::Tcp, false), Detection::FromClient);
    assert_eq!(detect(&ch[..3], Transport::Tcp, false), Detection::NeedMore);
    assert_eq!(detect(&ch, Transport::Udp, false), Detection::No);
    let sh = record(HANDSHAKE, &server_hello([1; 32], 0x1301, &[]));
    assert_eq!(detect(&sh, Transport::Tcp, false), Detection::FromServer);
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\n", Transport::Tcp, true),
        Detection::No
    );
    assert_eq!(
        detect(&record(APPLICATION_DATA, b"x"), Transport::Tcp, true),
        Detection::No
    );
}

#[test]
fn a_tls13_handshake_ends_at_the_servers_last_record_before_the_client_finishes() {
    for step in [1, 7, 100_000] {
        let mut d = driver();
        d.send(
            S,
            &record(HANDSHAKE, &client_hello(&modern_extensions())),
            step,
        );
        let mut flight = record(
            HANDSHAKE,
            &server_hello([1; 32], 0x1301, &ext(0x002b, &[3, 4])),
        );
        flight.extend(record(CHANGE_CIPHER_SPEC, &[1]));
        flight.extend(record(APPLICATION_DATA, &[0u8; 90])); // encrypted extensions, certificate…
        d.send(C, &flight, step);
        let server_done = d.ts;
        let mut second = record(CHANGE_CIPHER_SPEC, &[1]);
        second.extend(record(APPLICATION_DATA, &[0u8; 53])); // the client's Finished
        second.extend(record(APPLICATION_DATA, b"GET / HTTP/1.1")); // never read
        d.send(S, &second, step);
        assert!(d.finished, "the rest of the flow is not fed");
        let (out, an, _) = d.close();
        assert_eq!(out.len(), 1, "step {step}");
        let e = &out[0];
        assert_eq!(e.protocol, Protocol::Tls);
        assert_eq!(e.status, Status::Ok);
        assert_eq!(e.end_time_unix_nano, server_done);
        let t = tls(e);
        let c = t.client.as_ref().unwrap();
        assert_eq!(c.server_name.as_deref(), Some("shop.test"));
        assert_eq!(c.next_protocols, vec!["h2", "http/1.1"]);
        // GREASE left out; 2 ciphers, 5 extensions, ALPN h2.
        assert!(c.ja4.starts_with("t13d0205h2_"), "{}", c.ja4);
        assert_eq!(c.ja3.len(), 32);
        assert_eq!(t.protocol.as_ref().unwrap().version, "1.3");
        assert_eq!(t.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(t.resumed, Some(false));
        assert_eq!(t.next_protocol, None, "encrypted in 1.3");
        assert_eq!(t.established, Some(true));
        assert!(an.0.is_empty(), "{an:?}");
    }
}

#[test]
fn a_hello_retry_request_and_its_dummy_change_cipher_specs_are_one_handshake() {
    let mut d = driver();
    d.send(
        S,
        &record(HANDSHAKE, &client_hello(&modern_extensions())),
        100,
    );
    let mut retry = record(
        HANDSHAKE,
        &server_hello(HELLO_RETRY, 0x1301, &ext(0x002b, &[3, 4])),
    );
    retry.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    d.send(C, &retry, 100);
    let mut again = record(CHANGE_CIPHER_SPEC, &[1]);
    again.extend(record(HANDSHAKE, &client_hello(&modern_extensions())));
    d.send(S, &again, 100);
    let mut flight = record(
        HANDSHAKE,
        &server_hello([6; 32], 0x1302, &ext(0x002b, &[3, 4])),
    );
    flight.extend(record(APPLICATION_DATA, &[0u8; 80]));
    d.send(C, &flight, 100);
    d.send(S, &record(APPLICATION_DATA, &[0u8; 53]), 100);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Ok);
    assert_eq!(
        tls(&out[0]).cipher.as_deref(),
        Some("TLS_AES_256_GCM_SHA384")
    );
}

#[test]
fn a_tls12_handshake_ends_at_the_servers_finished_and_resumption_shows() {
    for (full, resumed) in [(true, false), (false, true)] {
        let mut d = driver();
        d.send(
            S,
            &record(HANDSHAKE, &client_hello(&modern_extensions())),
            100,
        );
        let mut flight = server_hello([2; 32], 0xc02f, &ext(0x0010, b"\x00\x03\x02h2"));
        if full {
            flight.extend(message(14, &[])); // ServerHelloDone
        }
        d.send(C, &record(HANDSHAKE, &flight), 100);
        if full {
            let mut client = record(HANDSHAKE, &message(16, &[0; 33])); // ClientKeyExchange
            client.extend(record(CHANGE_CIPHER_SPEC, &[1]));
            client.extend(record(HANDSHAKE, &[0x55; 40])); // encrypted Finished: not parsed
            d.send(S, &client, 100);
        }
        d.send(C, &record(CHANGE_CIPHER_SPEC, &[1]), 100);
        d.send(C, &record(HANDSHAKE, &[0x66; 40]), 100); // the server's Finished
        let finished_at = d.ts;
        let (out, an, _) = d.close();
        assert_eq!(out.len(), 1);
        let t = tls(&out[0]);
        assert_eq!(out[0].status, Status::Ok);
        assert_eq!(out[0].end_time_unix_nano, finished_at);
        assert_eq!(t.protocol.as_ref().unwrap().version, "1.2");
        assert_eq!(
            t.cipher.as_deref(),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(t.next_protocol.as_deref(), Some("h2"));
        assert_eq!(t.resumed, Some(resumed));
        assert!(an.0.is_empty(), "{an:?}");
    }
}

#[test]
fn a_fatal_alert_fails_the_handshake_with_its_name() {
    let mut d = driver();
    d.send(
        S,
        &record(HANDSHAKE, &client_hello(&modern_extensions())),
        3,
    );
    d.send(C, &record(ALERT, &[2, 70]), 3); // fatal protocol_version
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Error);
    let a = tls(&out[0]).alert.as_ref().unwrap();
    assert_eq!(
        (a.level.as_str(), a.description.as_str(), a.sender.as_str()),
        ("fatal", "protocol_version", "server")
    );
    assert_eq!(alert_name(40), "handshake_failure");
    assert_eq!(alert_name(112), "unrecognized_name");
    assert_eq!(alert_name(250), "alert_250");
}

#[test]
fn an_unanswered_hello_is_no_response_and_a_cut_one_incomplete() {
    let mut d = driver();
    d.send(S, &record(HANDSHAKE, &client_hello(&[])), 100);
    let (out, _, _) = d.close();
    assert_eq!(out[0].status, Status::NoResponse);
    assert!(tls(&out[0]).client.as_ref().unwrap().server_name.is_none());
    let mut d = driver();
    d.send(S, &record(HANDSHAKE, &client_hello(&[])), 100);
    d.send(
        C,
        &record(HANDSHAKE, &server_hello([3; 32], 0xc02f, &[])),
        100,
    );
    d.gap(C, 1000);
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Incomplete);
    assert_eq!(an.0["tls.gap"], 1);
}

#[test]
fn a_message_across_records_is_gathered_and_the_cap_holds() {
    let ch = client_hello(&modern_extensions());
    let (a, b) = ch.split_at(20);
    let mut d = driver();
    let mut bytes = record(HANDSHAKE, a);
    bytes.extend(record(HANDSHAKE, b));
    d.send(S, &bytes, 9);
    let (out, _, _) = d.close();
    assert_eq!(
        tls(&out[0]).client.as_ref().unwrap().server_name.as_deref(),
        Some("shop.test")
    );
    // A message announcing 16 MiB: records pile up to the cap, then the exchange ends.
    let mut d = driver();
    d.send(S, &record(HANDSHAKE, &client_hello(&[])), 100);
    let mut huge = vec![11, 0xff, 0xff, 0xff];
    huge.extend([0u8; 16000]);
    let mut flight = record(HANDSHAKE, &server_hello([4; 32], 0xc02f, &[]));
    flight.extend(record(HANDSHAKE, &huge));
    for _ in 0..5 {
        flight.extend(record(HANDSHAKE, &[0u8; 16000]));
    }
    d.send(C, &flight, 1448);
    assert!(
        d.peak < MAX_RECORD_BODY + 1448 * 2,
        "{} bytes pending",
        d.peak
    );
    let (out, an, _) = d.close();
    assert_eq!(out[0].status, Status::Incomplete);
    assert_eq!(an.0["tls.handshake_too_large"], 1);
}

#[test]
fn records_that_are_not_tls_end_the_flow() {
    let mut d = driver();
    d.send(S, &record(HANDSHAKE, &client_hello(&[])), 100);
    let mut bad = record(HANDSHAKE, &[]);
    bad[3] = 0xff; // 65 KiB record: over the bound
    bad[4] = 0xff;
    assert!(!d.try_send(C, &bad, 100));
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(an.0["tls.bad_record"], 1);
}

#[test]
fn broken_hellos_are_counted_not_fatal() {
    let mut d = driver();
    d.send(S, &record(HANDSHAKE, &message(1, &[3, 3, 1])), 100);
    d.send(C, &record(HANDSHAKE, &message(2, &[3])), 100);
    d.send(
        C,
        &record(HANDSHAKE, &message(11, &[0, 0, 5, 0, 0, 2, 1, 2])),
        100,
    );
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(an.0["tls.bad_client_hello"], 1);
    assert_eq!(an.0["tls.bad_server_hello"], 1);
    assert_eq!(an.0["tls.bad_certificate"], 1);
}

#[test]
fn every_prefix_and_mutation_is_safe() {
    let mut whole = record(HANDSHAKE, &client_hello(&modern_extensions()));
    let mut flight = record(
        HANDSHAKE,
        &server_hello([5; 32], 0x1301, &ext(0x002b, &[3, 4])),
    );
    flight.extend(record(ALERT, &[2, 40]));
    whole.extend(flight);
    for n in 0..=whole.len() {
        let mut d = driver();
        let _ = d.try_send(S, &whole[..n], 13);
        let _ = d.close();
    }
    for m in testkit::mutations(&whole, 3000, 0x7157) {
        let mut d = driver();
        let _ = d.try_send(S, &m, 31);
        let _ = d.try_send(C, &m, 31);
        d.gap(C, 5);
        let _ = d.close();
    }
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_796_527_800), "2026-12-06T03:30:00Z");
    assert_eq!(rfc3339(-86_400), "1969-12-31T00:00:00Z");
}
