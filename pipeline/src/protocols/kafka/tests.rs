use bytes::BytesMut;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    DescribeGroupsResponse, GroupId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::*;
use crate::dissect::testkit::{self, Driver};

fn meta() -> FlowMeta {
    testkit::meta(Transport::Tcp, 9092)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend(body);
    f
}

/// A Metadata v12 request (flexible: header v2 with tagged fields) for one topic.
fn metadata_request(corr: i32) -> Vec<u8> {
    let mut b = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(12)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("unit")))
        .encode(&mut b, 2)
        .unwrap();
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("orders")))),
        ]))
        .encode(&mut b, 12)
        .unwrap();
    framed(&b)
}

/// Its response, with UNKNOWN_TOPIC_OR_PARTITION (3) on the topic.
fn metadata_response(corr: i32, code: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.extend_from_slice(&corr.to_be_bytes());
    b.extend_from_slice(&[0]); // response header v1: no tagged fields
    MetadataResponse::default()
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
                .with_error_code(code),
        ])
        .encode(&mut b, 12)
        .unwrap();
    framed(&b)
}

/// A legacy Produce v2 request (a version the crate no longer decodes), acks as given.
fn produce_v2(corr: i32, acks: i16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(0i16.to_be_bytes()); // api key Produce
    b.extend(2i16.to_be_bytes()); // version
    b.extend(corr.to_be_bytes());
    b.extend(4i16.to_be_bytes());
    b.extend(b"unit"); // client id
    b.extend(acks.to_be_bytes());
    b.extend(1000i32.to_be_bytes()); // timeout
    b.extend(1i32.to_be_bytes()); // one topic
    b.extend(6i16.to_be_bytes());
    b.extend(b"events");
    b.extend(1i32.to_be_bytes()); // one partition
    b.extend(0i32.to_be_bytes());
    // A v1 message set with one message: offset, size, then the message.
    let msg = [0u8; 22];
    let mut set = 0i64.to_be_bytes().to_vec();
    set.extend((msg.len() as i32).to_be_bytes());
    set.extend(msg);
    b.extend((set.len() as i32).to_be_bytes());
    b.extend(set);
    framed(&b)
}

fn produce_v2_response(corr: i32, code: i16) -> Vec<u8> {
    let mut b = corr.to_be_bytes().to_vec();
    b.extend(1i32.to_be_bytes());
    b.extend(6i16.to_be_bytes());
    b.extend(b"events");
    b.extend(1i32.to_be_bytes());
    b.extend(0i32.to_be_bytes()); // partition
    b.extend(code.to_be_bytes());
    b.extend(0i64.to_be_bytes()); // base offset
    b.extend((-1i64).to_be_bytes()); // log append time
    b.extend(0i32.to_be_bytes()); // throttle
    framed(&b)
}

fn driver() -> Driver<KafkaDissector> {
    Driver::new(KafkaDissector::new(), meta())
}

const S: Direction = Direction::ToServer;
const C: Direction = Direction::ToClient;

fn view(e: &Exchange) -> (String, i16, i32, Vec<String>, Option<i16>, Status) {
    let k = e.kafka.as_ref().unwrap();
    (
        k.api_name.clone(),
        k.api_version,
        k.correlation_id,
        k.topics.clone(),
        k.error_code,
        e.status,
    )
}

#[test]
fn flexible_request_pairs_by_correlation_id_at_every_feed_size() {
    for step in [1, 3, 16, 10_000] {
        let mut d = driver();
        let mut reqs = metadata_request(7);
        reqs.extend(metadata_request(8));
        d.send(S, &reqs, step);
        // Answered out of order: pairing is by correlation id.
        let mut resps = metadata_response(8, 0);
        resps.extend(metadata_response(7, 3));
        d.send(C, &resps, step);
        let got: Vec<_> = d.close().0.iter().map(view).collect();
        assert_eq!(
            got,
            vec![
                (
                    "Metadata".into(),
                    12,
                    8,
                    vec!["orders".into()],
                    None,
                    Status::Ok
                ),
                (
                    "Metadata".into(),
                    12,
                    7,
                    vec!["orders".into()],
                    Some(3),
                    Status::Error
                ),
            ],
            "step {step}"
        );
    }
}

#[test]
fn legacy_produce_and_acks_zero() {
    let mut d = driver();
    d.send(S, &produce_v2(1, 1), 5);
    d.send(C, &produce_v2_response(1, 2), 5);
    d.send(S, &produce_v2(2, 0), 5);
    let (out, _, _) = d.close();
    let got: Vec<_> = out.iter().map(view).collect();
    assert_eq!(
        got[0],
        (
            "Produce".into(),
            2,
            1,
            vec!["events".into()],
            Some(2),
            Status::Error
        )
    );
    // acks=0: no response by design, a one-way exchange.
    assert_eq!(
        got[1],
        (
            "Produce".into(),
            2,
            2,
            vec!["events".into()],
            None,
            Status::Ok
        )
    );
    let m = out[0].messaging.as_ref().unwrap();
    assert_eq!(m.destination.as_ref().unwrap().name, "events");
    assert_eq!(m.client.as_ref().unwrap().id, "unit");
    assert_eq!(m.batch.as_ref().unwrap().message_count, 1);
}

#[test]
fn oversized_messages_are_skipped_not_buffered() {
    let mut d = driver();
    d.send(S, &metadata_request(1), 100);
    // A 5 MB response: header-level pairing only, bytes streamed past.
    let mut big = 1i32.to_be_bytes().to_vec();
    big.extend(vec![0u8; 5 << 20]);
    d.send(C, &framed(&big), 1448);
    d.send(S, &metadata_request(2), 100);
    d.send(C, &metadata_response(2, 0), 100);
    let (out, _, peak) = d.close();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].kafka.as_ref().unwrap().correlation_id, 1);
    assert_eq!(out[0].status, Status::Ok);
    assert!(peak < 2 * 1448, "{peak} bytes held by the flow layer");
}

#[test]
fn detection() {
    assert_eq!(
        detect(&metadata_request(1), Transport::Tcp, false),
        Detection::FromClient
    );
    assert_eq!(
        detect(&produce_v2(1, 1), Transport::Tcp, false),
        Detection::FromClient
    );
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Transport::Tcp, true),
        Detection::No
    );
    assert_eq!(detect(&[0, 0], Transport::Tcp, false), Detection::NeedMore);
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0xcafe_u64;
    let base = {
        let mut v = metadata_request(1);
        v.extend(produce_v2(2, 1));
        v
    };
    let resp = metadata_response(1, 0);
    for _ in 0..3000 {
        let (mut m, mut r) = (base.clone(), resp.clone());
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed as usize) % m.len();
        m[i] = (seed >> 40) as u8;
        let j = (seed as usize >> 8) % r.len();
        r[j] = (seed >> 48) as u8;
        let mut d = driver();
        let _ = d.try_send(S, &m, m.len());
        let _ = d.try_send(C, &r, r.len());
        d.gap(C, 3);
        let _ = d.close();
    }
}

/// Regression (found by the fuzzer): an array count of 2^31-1 on the wire made the decoder
/// reserve ~100 GB and abort the process. The vendored kafka-protocol bounds the reservation.
#[test]
fn hostile_array_count_does_not_abort() {
    let mut b = Vec::new();
    b.extend((ApiKey::Metadata as i16).to_be_bytes());
    b.extend(4i16.to_be_bytes()); // Metadata v4: plain (non-flexible) arrays
    b.extend(9i32.to_be_bytes());
    b.extend((-1i16).to_be_bytes()); // null client id
    b.extend(i32::MAX.to_be_bytes()); // topics: 2^31-1 of them, claimed
    b.extend([0u8; 8]);
    let mut d = driver();
    d.send(S, &framed(&b), 100);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert!(
        out[0]
            .tapwire
            .anomalies
            .iter()
            .any(|a| a == "kafka.bad_request")
    );
}

#[test]
fn extreme_lengths_in_detection_and_tagged_fields() {
    // A length of i32::MIN, and a tagged field claiming u64::MAX bytes.
    let mut m = i32::MIN.to_be_bytes().to_vec();
    m.extend([0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0]);
    assert_eq!(detect(&m, Transport::Tcp, false), Detection::No);
    let huge = [
        1u8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert_eq!(skip_tagged(&huge), None);
}

/// Error codes nested in lists (DescribeGroups), at the top (SaslAuthenticate), and the first
/// non-zero one in field order when there are several (ListGroups).
#[test]
fn error_codes_of_every_api_are_found() {
    let resp = ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(vec![
        DescribedGroup::default().with_group_id(GroupId(StrBytes::from_static_str("g"))),
        DescribedGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("h")))
            .with_error_code(16),
    ]));
    assert_eq!(errors::first_error(&resp), Some(16));
    let resp = ResponseKind::SaslAuthenticate(
        kafka_protocol::messages::SaslAuthenticateResponse::default().with_error_code(58),
    );
    assert_eq!(errors::first_error(&resp), Some(58));
    let resp = ResponseKind::Heartbeat(kafka_protocol::messages::HeartbeatResponse::default());
    assert_eq!(errors::first_error(&resp), None);
}
