//! The eight-protocol mix: short connections in the proportions seen in clusters.
//!
//! HTTP/1 40%, DNS 15%, Redis 15%, Kafka 10%, h2c 5%, gRPC 5%, AMQP 5%, GraphQL 5% of the
//! flows. Each TCP flow is a full handshake, one or two exchanges (AMQP: a publisher's
//! connection setup, a publish and the close) and a FIN close, about 11 packets; a DNS flow is
//! one lookup over UDP. Flows are interleaved (`concurrency` open at once). Protocol bytes are
//! encoded by the crates the dissectors decode with where one exists (kafka-protocol,
//! loona-hpack), by hand otherwise (RESP, AMQP frames, HTTP/1); everything is deterministic
//! for a given seed.

use std::collections::VecDeque;
use std::io::Write;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    self, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::{Conn, Gen, Rng};

/// What to generate.
#[derive(Debug, Clone)]
pub struct MixConfig {
    pub flows: u64,
    /// Connections open at once.
    pub concurrency: usize,
    pub seed: u64,
}

/// The protocols of the mix, in the order of [`WEIGHTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixProtocol {
    Http1,
    Dns,
    Redis,
    Kafka,
    H2c,
    Grpc,
    Amqp,
    Graphql,
}

/// Share of the flows per protocol, in percent.
pub const WEIGHTS: [(MixProtocol, u64); 8] = [
    (MixProtocol::Http1, 40),
    (MixProtocol::Dns, 15),
    (MixProtocol::Redis, 15),
    (MixProtocol::Kafka, 10),
    (MixProtocol::H2c, 5),
    (MixProtocol::Grpc, 5),
    (MixProtocol::Amqp, 5),
    (MixProtocol::Graphql, 5),
];

/// What was generated: packets and bytes, flows and exchanges per protocol (in the order of
/// [`WEIGHTS`]; an AMQP flow has six: start, tune, open, channel open, publish, close).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MixSummary {
    pub packets: u64,
    pub bytes: u64,
    pub flows: [u64; 8],
    pub exchanges: [u64; 8],
}

fn index(p: MixProtocol) -> usize {
    WEIGHTS.iter().position(|(q, _)| *q == p).unwrap_or(0)
}

/// One open TCP flow: its connection and the messages it has left to send.
struct Flow {
    conn: Conn,
    msgs: VecDeque<(bool, Vec<u8>)>,
}

impl Rng {
    fn pick(&mut self) -> MixProtocol {
        let mut r = self.below(100);
        for (p, w) in WEIGHTS {
            if r < w {
                return p;
            }
            r -= w;
        }
        MixProtocol::Http1
    }
}

/// Write the mix following `cfg` to `w` (pcap, Ethernet, microsecond timestamps).
pub fn generate_mix<W: Write>(w: W, cfg: &MixConfig) -> std::io::Result<MixSummary> {
    let mut g = Gen::new(w, cfg.seed)?;
    let mut sum = MixSummary::default();
    let mut open: Vec<Flow> = Vec::new();
    let mut started = 0u64;
    while started < cfg.flows || !open.is_empty() {
        if started < cfg.flows && open.len() < cfg.concurrency.max(1) {
            let p = g.rng.pick();
            sum.flows[index(p)] += 1;
            started += 1;
            if p == MixProtocol::Dns {
                g.dns(started)?;
                sum.exchanges[index(p)] += 1;
                continue;
            }
            let (port, msgs, exchanges) = messages(&mut g, p, started)?;
            sum.exchanges[index(p)] += exchanges;
            let conn = g.open(started, Some(port))?;
            open.push(Flow { conn, msgs });
            continue;
        }
        let i = g.rng.below(open.len() as u64) as usize;
        let Some(flow) = open.get_mut(i) else { break };
        match flow.msgs.pop_front() {
            Some((from_client, data)) => g.stream(from_client, &mut flow.conn, &data)?,
            None => {
                let f = open.swap_remove(i);
                g.close(&f.conn)?;
            }
        }
    }
    sum.packets = g.sum.packets;
    sum.bytes = g.sum.bytes;
    let mut w = g.w.into_writer();
    w.flush()?;
    Ok(sum)
}

type Messages = (u16, VecDeque<(bool, Vec<u8>)>, u64);

/// A flow's server port, its messages (true: from the client) and its exchange count.
fn messages<W: Write>(g: &mut Gen<W>, p: MixProtocol, n: u64) -> std::io::Result<Messages> {
    let mut msgs = VecDeque::new();
    let r = g.rng.next();
    let count = 1 + r % 2;
    let port = match p {
        MixProtocol::Http1 => {
            for _ in 0..count {
                let (mut req, mut resp) = (Vec::new(), Vec::new());
                g.http_messages(&mut req, &mut resp)?;
                push_pair(&mut msgs, (req, resp));
            }
            [80, 8080][(r >> 8) as usize % 2]
        }
        MixProtocol::Redis => {
            for _ in 0..count {
                push_pair(&mut msgs, redis(&mut g.rng));
            }
            6379
        }
        MixProtocol::Kafka => {
            push_pair(&mut msgs, kafka_api_versions(n as i32)?);
            push_pair(&mut msgs, kafka(&mut g.rng, n as i32 + 1)?);
            return Ok((9092, msgs, 2));
        }
        MixProtocol::H2c | MixProtocol::Grpc => {
            let grpc = p == MixProtocol::Grpc;
            let (mut cli, mut srv) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
            for s in 0..count {
                let stream = 1 + 2 * s as u32;
                let (mut up, mut down) = (Vec::new(), Vec::new());
                if s == 0 {
                    up.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
                    up.extend(h2(4, 0, 0, &[0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0]));
                    down.extend(h2(4, 0, 0, &[0, 3, 0, 0, 0, 128]));
                    down.extend(h2(4, 1, 0, &[]));
                }
                if grpc {
                    grpc_exchange(&mut g.rng, &mut cli, &mut srv, stream, &mut up, &mut down);
                } else {
                    h2c_exchange(&mut g.rng, &mut cli, &mut srv, stream, &mut up, &mut down);
                }
                push_pair(&mut msgs, (up, down));
                if s == 0 && count > 1 {
                    // The client acknowledges the server's settings with its next flight.
                    msgs.push_back((true, h2(4, 1, 0, &[])));
                }
            }
            if grpc { 50051 } else { 8080 }
        }
        MixProtocol::Graphql => {
            for _ in 0..count {
                push_pair(&mut msgs, graphql(&mut g.rng));
            }
            4000
        }
        MixProtocol::Amqp => {
            amqp(&mut g.rng, &mut msgs);
            return Ok((5672, msgs, 6));
        }
        MixProtocol::Dns => 53,
    };
    Ok((port, msgs, count))
}

/// A request and its response, in that order.
fn push_pair(msgs: &mut VecDeque<(bool, Vec<u8>)>, (req, resp): (Vec<u8>, Vec<u8>)) {
    msgs.push_back((true, req));
    msgs.push_back((false, resp));
}

/// One HTTP/2 frame.
fn h2(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn block(enc: &mut loona_hpack::Encoder<'static>, fields: &[(&str, &str)]) -> Vec<u8> {
    enc.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn h2c_exchange(
    rng: &mut Rng,
    cli: &mut loona_hpack::Encoder<'static>,
    srv: &mut loona_hpack::Encoder<'static>,
    stream: u32,
    up: &mut Vec<u8>,
    down: &mut Vec<u8>,
) {
    let r = rng.next();
    let path = format!("/api/v2/products/{}?fields=name,price", r % 50_000);
    let req = block(
        cli,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", &path),
            (":authority", "catalog.shop.svc.cluster.local:8080"),
            ("accept", "application/json"),
            ("user-agent", "Go-http-client/2.0"),
        ],
    );
    up.extend(h2(HEADERS, END_HEADERS | END_STREAM, stream, &req));
    let status = if r.is_multiple_of(20) { "404" } else { "200" };
    let len = 60 + (r >> 20) as usize % 900;
    let len_s = len.to_string();
    let resp = block(
        srv,
        &[
            (":status", status),
            ("content-type", "application/json"),
            ("content-length", &len_s),
        ],
    );
    down.extend(h2(HEADERS, END_HEADERS, stream, &resp));
    down.extend(h2(DATA, END_STREAM, stream, &vec![b'{'; len]));
}

fn grpc_exchange(
    rng: &mut Rng,
    cli: &mut loona_hpack::Encoder<'static>,
    srv: &mut loona_hpack::Encoder<'static>,
    stream: u32,
    up: &mut Vec<u8>,
    down: &mut Vec<u8>,
) {
    let r = rng.next();
    let method = [
        "/shop.v1.Catalog/GetItem",
        "/shop.v1.Catalog/ListItems",
        "/shop.v1.Cart/AddItem",
    ][r as usize % 3];
    let req = block(
        cli,
        &[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "catalog.shop.svc.cluster.local:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-accept-encoding", "identity,deflate,gzip"),
            ("user-agent", "grpc-go/1.64.0"),
        ],
    );
    up.extend(h2(HEADERS, END_HEADERS, stream, &req));
    // A protobuf message: field 1 (varint id), field 2 (string).
    let mut msg = vec![0x08];
    let mut id = r >> 8 & 0xfffff;
    while id >= 0x80 {
        msg.push(id as u8 | 0x80);
        id >>= 7;
    }
    msg.push(id as u8);
    msg.extend_from_slice(&[0x12, 7]);
    msg.extend_from_slice(b"eu-west");
    up.extend(h2(DATA, END_STREAM, stream, &grpc_message(&msg)));
    let resp = block(
        srv,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    down.extend(h2(HEADERS, END_HEADERS, stream, &resp));
    let code = match (r >> 40) % 20 {
        0 => "5",
        1 => "14",
        _ => "0",
    };
    if code == "0" {
        let len = 20 + (r >> 30) as usize % 400;
        let mut body = vec![0x0a];
        body.push(len.min(127) as u8);
        body.extend(std::iter::repeat_n(b'a', len.min(127)));
        down.extend(h2(DATA, 0, stream, &grpc_message(&body)));
    }
    let trailers = block(srv, &[("grpc-status", code), ("grpc-message", "")]);
    down.extend(h2(HEADERS, END_HEADERS | END_STREAM, stream, &trailers));
}

fn grpc_message(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

fn resp_bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

fn resp_command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        resp_bulk(&mut out, p);
    }
    out
}

fn redis(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let r = rng.next();
    let key = format!("session:{:08x}", r as u32);
    match (r >> 32) % 10 {
        0..=3 => {
            let mut resp = Vec::new();
            if r.is_multiple_of(7) {
                resp.extend_from_slice(b"$-1\r\n");
            } else {
                resp_bulk(&mut resp, &vec![b'v'; 20 + (r >> 40) as usize % 300]);
            }
            (resp_command(&[b"GET", key.as_bytes()]), resp)
        }
        4..=6 => {
            let value = vec![b'v'; 20 + (r >> 40) as usize % 300];
            (
                resp_command(&[b"SET", key.as_bytes(), &value, b"EX", b"3600"]),
                b"+OK\r\n".to_vec(),
            )
        }
        7 => (
            resp_command(&[b"INCR", b"rate:api:requests"]),
            format!(":{}\r\n", r >> 44).into_bytes(),
        ),
        8 => {
            let mut resp = b"*4\r\n".to_vec();
            for f in [&b"name"[..], b"ada", b"cart", b"3"] {
                resp_bulk(&mut resp, f);
            }
            (resp_command(&[b"HGETALL", key.as_bytes()]), resp)
        }
        _ => (
            resp_command(&[b"LPUSH", b"queue:emails", key.as_bytes()]),
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".to_vec(),
        ),
    }
}

fn graphql(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let r = rng.next();
    let (body, answer) = if r.is_multiple_of(4) {
        (
            format!(
                r#"{{"query":"mutation AddToCart($sku: ID!, $qty: Int!) {{ addToCart(sku: $sku, qty: $qty) {{ id items {{ sku qty }} }} }}","variables":{{"sku":"SKU-{}","qty":{}}},"operationName":"AddToCart"}}"#,
                r % 9000,
                1 + (r >> 8) % 5
            ),
            r#"{"data":{"addToCart":{"id":"c1","items":[{"sku":"SKU-1","qty":2}]}}}"#.to_string(),
        )
    } else if r.is_multiple_of(13) {
        (
            r#"{"query":"query Product($id: ID!) { product(id: $id) { name price reviews { stars } } }","variables":{"id":"missing"},"operationName":"Product"}"#.to_string(),
            r#"{"errors":[{"message":"product not found","path":["product"]}],"data":{"product":null}}"#.to_string(),
        )
    } else {
        (
            format!(
                r#"{{"query":"query Product($id: ID!) {{ product(id: $id) {{ name price reviews {{ stars }} }} }}","variables":{{"id":"{}"}},"operationName":"Product"}}"#,
                r % 50_000
            ),
            r#"{"data":{"product":{"name":"Lamp","price":31.5,"reviews":[{"stars":4},{"stars":5}]}}}"#.to_string(),
        )
    };
    let req = format!(
        "POST /graphql HTTP/1.1\r\nHost: gateway.shop.svc.cluster.local:4000\r\nUser-Agent: apollo-client/3.9\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{answer}",
        answer.len()
    );
    (req.into_bytes(), resp.into_bytes())
}

fn kafka_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A size-prefixed Kafka message: its header, then its body.
fn kafka_frame(
    header: impl FnOnce(&mut BytesMut) -> std::io::Result<()>,
    body: impl FnOnce(&mut BytesMut) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header(&mut buf)?;
    body(&mut buf)?;
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.to_vec())
}

fn request<T: Encodable>(
    key: i16,
    version: i16,
    correlation: i32,
    header_version: i16,
    body: &T,
) -> std::io::Result<Vec<u8>> {
    kafka_frame(
        |b| {
            RequestHeader::default()
                .with_request_api_key(key)
                .with_request_api_version(version)
                .with_correlation_id(correlation)
                .with_client_id(Some(StrBytes::from_static_str("shop-orders-1")))
                .encode(b, header_version)
                .map_err(kafka_error)
        },
        |b| body.encode(b, version).map_err(kafka_error),
    )
}

fn response<T: Encodable>(
    version: i16,
    correlation: i32,
    header_version: i16,
    body: &T,
) -> std::io::Result<Vec<u8>> {
    kafka_frame(
        |b| {
            ResponseHeader::default()
                .with_correlation_id(correlation)
                .encode(b, header_version)
                .map_err(kafka_error)
        },
        |b| body.encode(b, version).map_err(kafka_error),
    )
}

fn kafka_api_versions(correlation: i32) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("librdkafka"))
        .with_client_software_version(StrBytes::from_static_str("2.3.0"));
    let keys = [(0, 9), (1, 12), (3, 12), (18, 3)]
        .iter()
        .map(|&(k, max)| {
            messages::api_versions_response::ApiVersion::default()
                .with_api_key(k)
                .with_min_version(0)
                .with_max_version(max)
        })
        .collect();
    let resp = ApiVersionsResponse::default().with_api_keys(keys);
    Ok((
        request(18, 3, correlation, 2, &req)?,
        response(3, correlation, 0, &resp)?,
    ))
}

fn records(rng: &mut Rng, n: usize) -> std::io::Result<Bytes> {
    let recs: Vec<Record> = (0..n)
        .map(|i| {
            let r = rng.next();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1_764_237_600_000 + i as i64,
                key: Some(Bytes::from(format!("order-{}", r % 100_000))),
                value: Some(Bytes::from(vec![b'{'; 100 + (r >> 20) as usize % 400])),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(kafka_error)?;
    Ok(buf.freeze())
}

fn kafka(rng: &mut Rng, correlation: i32) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    use messages::{fetch_request, fetch_response, metadata_request, metadata_response};
    use messages::{produce_request, produce_response};
    let r = rng.next();
    let topic = TopicName(StrBytes::from_static_str(
        ["orders", "payments", "clicks"][r as usize % 3],
    ));
    let partition = (r >> 8) as i32 % 6;
    match (r >> 16) % 20 {
        0..=11 => {
            let batch = records(rng, 1 + (r >> 24) as usize % 3)?;
            let req = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(topic.clone())
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(partition)
                                .with_records(Some(batch)),
                        ]),
                ]);
            let resp = ProduceResponse::default().with_responses(vec![
                produce_response::TopicProduceResponse::default()
                    .with_name(topic)
                    .with_partition_responses(vec![
                        produce_response::PartitionProduceResponse::default()
                            .with_index(partition)
                            .with_base_offset((r >> 30) as i64 % 1_000_000),
                    ]),
            ]);
            Ok((
                request(0, 9, correlation, 2, &req)?,
                response(9, correlation, 1, &resp)?,
            ))
        }
        12..=16 => {
            let batch = records(rng, 1 + (r >> 24) as usize % 4)?;
            let req = FetchRequest::default()
                .with_replica_id(messages::BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(52_428_800)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(topic.clone())
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset((r >> 30) as i64 % 1_000_000)
                                .with_partition_max_bytes(1_048_576),
                        ]),
                ]);
            let resp = FetchResponse::default().with_responses(vec![
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(topic)
                    .with_partitions(vec![
                        fetch_response::PartitionData::default()
                            .with_partition_index(partition)
                            .with_high_watermark(1_000_000)
                            .with_records(Some(batch)),
                    ]),
            ]);
            Ok((
                request(1, 12, correlation, 2, &req)?,
                response(12, correlation, 1, &resp)?,
            ))
        }
        _ => {
            let req = MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
            ]));
            let resp = MetadataResponse::default()
                .with_brokers(vec![
                    metadata_response::MetadataResponseBroker::default()
                        .with_node_id(messages::BrokerId(1))
                        .with_host(StrBytes::from_static_str("kafka-0.kafka.svc"))
                        .with_port(9092),
                ])
                .with_topics(vec![
                    metadata_response::MetadataResponseTopic::default()
                        .with_name(Some(topic))
                        .with_partitions(
                            (0..6)
                                .map(|p| {
                                    metadata_response::MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(messages::BrokerId(1))
                                })
                                .collect(),
                        ),
                ]);
            Ok((
                request(3, 12, correlation, 2, &req)?,
                response(12, correlation, 1, &resp)?,
            ))
        }
    }
}

/// One AMQP 0-9-1 frame (type, channel, payload, frame end).
fn amqp_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xce);
    f
}

fn method(channel: u16, class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    amqp_frame(1, channel, &p)
}

fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn long(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// A publisher's short connection: the handshake, a channel, one publish (with publisher
/// confirms off, so it is one-way) and the close.
fn amqp(rng: &mut Rng, msgs: &mut VecDeque<(bool, Vec<u8>)>) {
    let r = rng.next();
    let empty_table = [0u8, 0, 0, 0];
    let mut start = vec![0, 9];
    start.extend_from_slice(&empty_table);
    start.extend(long(b"PLAIN AMQPLAIN"));
    start.extend(long(b"en_US"));
    let mut start_ok = empty_table.to_vec();
    start_ok.extend(short("PLAIN"));
    start_ok.extend(long(b"\0guest\0guest"));
    start_ok.extend(short("en_US"));
    let tune = [0u8, 0x07, 0xff, 0, 0x02, 0, 0, 0, 0x3c];
    let mut open = short("/");
    open.extend([0, 0]);
    let mut up = b"AMQP\x00\x00\x09\x01".to_vec();
    msgs.push_back((true, std::mem::take(&mut up)));
    msgs.push_back((false, method(0, 10, 10, &start)));
    msgs.push_back((true, method(0, 10, 11, &start_ok)));
    msgs.push_back((false, method(0, 10, 30, &tune)));
    up.extend(method(0, 10, 31, &tune));
    up.extend(method(0, 10, 40, &open));
    msgs.push_back((true, std::mem::take(&mut up)));
    msgs.push_back((false, method(0, 10, 41, &short(""))));
    msgs.push_back((true, method(1, 20, 10, &short(""))));
    msgs.push_back((false, method(1, 20, 11, &long(b""))));
    // basic.publish, its content header and body in one segment.
    let mut publish = vec![0, 0];
    publish.extend(short("orders"));
    publish.extend(short(&format!("order.created.{}", r % 8)));
    publish.push(0);
    let body = vec![b'{'; 80 + (r >> 8) as usize % 600];
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend([0, 0]);
    header.extend((body.len() as u64).to_be_bytes());
    header.extend(0x9000u16.to_be_bytes()); // content-type and delivery-mode
    header.extend(short("application/json"));
    header.push(2);
    up.extend(method(1, 60, 40, &publish));
    up.extend(amqp_frame(2, 1, &header));
    up.extend(amqp_frame(3, 1, &body));
    let mut close = 200u16.to_be_bytes().to_vec();
    close.extend(short("Normal shutdown"));
    close.extend([0, 0, 0, 0]);
    up.extend(method(0, 10, 50, &close));
    msgs.push_back((true, up));
    msgs.push_back((false, method(0, 10, 51, &[])));
}
