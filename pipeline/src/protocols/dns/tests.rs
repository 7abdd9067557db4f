use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::dissect::AnomalyCounts;

fn meta(t: Transport) -> FlowMeta {
    FlowMeta {
        client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5555),
        server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 53),
        transport: t,
    }
}

/// Query for `www.example.test` A, id 0xbeef (annotated).
fn query() -> Vec<u8> {
    let mut m = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]; // id, RD, QD=1
    m.extend(b"\x03www\x07example\x04test\x00"); // QNAME
    m.extend([0, 1, 0, 1]); // A, IN
    m
}

/// Its response: one A record 10.77.0.10 (name by compression pointer to offset 12).
fn response(rcode: u8) -> Vec<u8> {
    let mut m = vec![0xbe, 0xef, 0x81, 0x80 | rcode, 0, 1, 0, 1, 0, 0, 0, 0];
    m.extend(b"\x03www\x07example\x04test\x00");
    m.extend([0, 1, 0, 1]);
    m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 77, 0, 10]); // ttl 3600
    m
}

fn run(t: Transport, msgs: &[(Direction, Vec<u8>)]) -> (Vec<Exchange>, AnomalyCounts) {
    let mut d = DnsDissector::new(t);
    let (mut out, mut an) = (Vec::new(), AnomalyCounts::default());
    let mut em = Emitter {
        origin: None,
        meta: meta(t),
        anomalies: &mut an,
        out: &mut out,
        descriptors: None,
        topic_ids: None,
    };
    for (i, (dir, m)) in msgs.iter().enumerate() {
        let _ = d.feed(*dir, m, 100 + i as u64, &mut em);
    }
    d.close(1_000, &mut em);
    (out, an)
}

#[test]
fn udp_query_and_response_pair() {
    let (out, _) = run(
        Transport::Udp,
        &[
            (Direction::ToServer, query()),
            (Direction::ToClient, response(0)),
        ],
    );
    assert_eq!(out.len(), 1);
    let dns = out[0].dns.as_ref().unwrap();
    assert_eq!(dns.id, 0xbeef);
    let q = dns.question.as_ref().unwrap();
    assert_eq!(
        (q.name.as_str(), q.qtype.as_str()),
        ("www.example.test", "A")
    );
    assert_eq!(dns.response_code.as_deref(), Some("NOERROR"));
    assert_eq!(dns.answers[0].data, "10.77.0.10");
    assert_eq!(dns.answers[0].ttl, 3600);
    assert_eq!(out[0].status, Status::Ok);
    assert_eq!(
        (out[0].start_time_unix_nano, out[0].end_time_unix_nano),
        (100, 101)
    );
}

#[test]
fn nxdomain_is_error_and_unanswered_is_no_response() {
    let (out, _) = run(
        Transport::Udp,
        &[
            (Direction::ToServer, query()),
            (Direction::ToClient, response(3)),
        ],
    );
    assert_eq!(out[0].status, Status::Error);
    assert_eq!(
        out[0].dns.as_ref().unwrap().response_code.as_deref(),
        Some("NXDOMAIN")
    );
    let (out, _) = run(Transport::Udp, &[(Direction::ToServer, query())]);
    assert_eq!(out[0].status, Status::NoResponse);
}

#[test]
fn tcp_messages_split_and_joined() {
    let framed = |m: Vec<u8>| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend(m);
        f
    };
    // Two queries in one segment; the response arrives one byte at a time.
    let mut two = framed(query());
    let mut q2 = query();
    q2[1] = 0xf0;
    two.extend(framed(q2));
    let mut d = DnsDissector::new(Transport::Tcp);
    let (mut out, mut an) = (Vec::new(), AnomalyCounts::default());
    let mut em = Emitter {
        origin: None,
        meta: meta(Transport::Tcp),
        anomalies: &mut an,
        out: &mut out,
        descriptors: None,
        topic_ids: None,
    };
    assert_eq!(
        d.feed(Direction::ToServer, &two, 1, &mut em),
        Progress::Done
    );
    let resp = framed(response(0));
    let mut pending = Vec::new();
    for b in &resp {
        pending.push(*b);
        if let Progress::Incomplete { consumed, .. } =
            d.feed(Direction::ToClient, &pending, 2, &mut em)
        {
            pending.drain(..consumed);
        } else {
            pending.clear();
        }
    }
    d.close(3, &mut em);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].status, Status::Ok);
    assert_eq!(out[1].status, Status::NoResponse);
}

/// An mDNS message, id 0: a query for `name` `qtype` (1 = A, 12 = PTR, 255 = ANY), or a
/// response without a question whose one answer is `name` A 10.0.0.9.
fn mdns(response: bool, name: &[u8], qtype: u16) -> Vec<u8> {
    let mut m = vec![0, 0, if response { 0x84 } else { 0 }, 0];
    m.extend(if response { [0, 0, 0, 1] } else { [0, 1, 0, 0] }); // QD, AN
    m.extend([0, 0, 0, 0]);
    m.extend(name);
    if response {
        m.extend([0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 10, 0, 0, 9]); // A, cache-flush IN, ttl 120
    } else {
        m.extend(qtype.to_be_bytes());
        m.extend([0, 1]);
    }
    m
}

#[test]
fn mdns_responses_pair_by_what_they_answer_not_by_id() {
    let mut d = DnsDissector::new(Transport::Udp);
    d.mdns = true;
    let (mut out, mut an) = (Vec::new(), AnomalyCounts::default());
    let mut em = Emitter {
        origin: None,
        meta: meta(Transport::Udp),
        anomalies: &mut an,
        out: &mut out,
        descriptors: None,
        topic_ids: None,
    };
    let printer = b"\x07printer\x05local\x00";
    let host = b"\x04host\x05local\x00";
    // Two queries (both id 0); an announcement of another name; then the answer to the second.
    for (i, m) in [
        mdns(false, b"\x04_ipp\x04_tcp\x05local\x00", 12),
        mdns(false, host, 255),
        mdns(true, printer, 1),
        mdns(true, host, 1),
    ]
    .iter()
    .enumerate()
    {
        let _ = d.feed(Direction::ToServer, m, 100 + i as u64, &mut em);
    }
    d.close(1_000, &mut em);
    let rows: Vec<_> = out
        .iter()
        .map(|e| {
            let dns = e.dns.as_ref().unwrap();
            (
                dns.question.as_ref().map(|q| q.name.clone()),
                dns.answers.first().map(|a| a.name.clone()),
                e.status,
                e.start_time_unix_nano,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            // The announcement stands alone (no question), not paired with the PTR query.
            (None, Some("printer.local".into()), Status::Ok, 102),
            // The ANY query for host.local is what the host's A record answers.
            (
                Some("host.local".into()),
                Some("host.local".into()),
                Status::Ok,
                101
            ),
            (
                Some("_ipp._tcp.local".into()),
                None,
                Status::NoResponse,
                100
            ),
        ]
    );
    assert!(!an.0.contains_key("dns.response_without_query"));
}

#[test]
fn cut_message_keeps_header_and_question() {
    let r = response(0);
    let (out, an) = run(
        Transport::Udp,
        &[
            (Direction::ToServer, query()),
            (Direction::ToClient, r[..r.len() - 6].to_vec()),
        ],
    );
    assert_eq!(out[0].status, Status::Incomplete);
    let q = out[0].dns.as_ref().unwrap().question.as_ref().unwrap();
    assert_eq!(q.name, "www.example.test");
    assert_eq!(an.0["dns.truncated"], 1);
}

#[test]
fn every_prefix_and_mutation_is_safe() {
    let r = response(0);
    for n in 0..=r.len() {
        let _ = run(Transport::Udp, &[(Direction::ToClient, r[..n].to_vec())]);
        let _ = run(Transport::Tcp, &[(Direction::ToClient, r[..n].to_vec())]);
    }
    let mut seed = 0xdead_beef_u64;
    for _ in 0..2000 {
        let mut m = r.clone();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        m[(seed as usize) % r.len()] = (seed >> 40) as u8;
        let _ = run(Transport::Udp, &[(Direction::ToClient, m)]);
    }
}

#[test]
fn detection_sanity() {
    assert_eq!(
        detect(&query(), Transport::Udp, true),
        Detection::FromClient
    );
    assert_eq!(
        detect(&response(0), Transport::Udp, true),
        Detection::FromServer
    );
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\n\r\n", Transport::Udp, true),
        Detection::No
    );
}
