//! Apache Kafka: every API key and version the `kafka-protocol` crate knows (flexible versions
//! included), request headers v0–v2, and header-level exchanges for the versions the crate
//! dropped (Produce v0–2, Fetch v0–3, ListOffsets v0), whose topic names come from small
//! readers here.
//!
//! Framing: a 4-byte length, then the message. A message of at most [`MAX_DECODE`] bytes is
//! collected (in a buffer of this dissector, not the flow's) and decoded whole; a larger one
//! (a big Fetch response, say) gives a header-level exchange only and its bytes are skipped
//! as they stream past. Responses carry no API key: they are paired with their request by
//! correlation id (at most `pairing::DEFAULT_IN_FLIGHT` in flight, [`REQUEST_TIMEOUT_NS`])
//! and decoded with the request's key and version. Produce with `acks=0` gets no response and
//! is a one-way exchange.
//!
//! Fields: `kafka.api_key`, `api_name`, `api_version`, `correlation_id`, `topics` (every topic
//! named; a topic named by id only, as in Fetch v13+, by the name a Metadata response on any
//! connection gave that id: `dissect::kafka_topics`), `error_code` (the first non-zero code at any level of the response, `status`
//! `error`), `topic_stats` (records and bytes per topic for Produce requests and Fetch
//! responses, from the record-batch headers: batches are never decompressed);
//! `messaging.destination.name` when exactly one topic is named, `messaging.client.id`,
//! `messaging.consumer.group.name` for group APIs, `messaging.batch.message_count`;
//! `trace_id`/`span_id` from the first `traceparent` record header of a Produce request
//! (uncompressed v2 batches, at most 64 records looked at).
//! Error codes are read field by field for every response the crate decodes (`errors.rs`,
//! generated from the crate's message definitions by `scripts/gen-kafka-errors.py`).

mod errors;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use schemas::l7::db::Named;
use schemas::l7::messaging::{Batch, Client, Consumer, Kafka, Messaging, TopicStats};
use schemas::{Exchange, Protocol, Status, Transport};

use crate::dissect::entry::Detection;
use crate::dissect::entry::ProtocolEntry;
use crate::dissect::kafka_topics::TopicIds;
use crate::dissect::pairing::{ById, DEFAULT_IN_FLIGHT};
use crate::dissect::{Direction, Dissector, Emitter, FlowMeta, Progress};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadLength = "kafka.bad_length",
        BadRequest = "kafka.bad_request",
        BadResponse = "kafka.bad_response",
        Gap = "kafka.gap",
        MessageTooLarge = "kafka.message_too_large",
        ResponseWithoutRequest = "kafka.response_without_request",
        ShortRequest = "kafka.short_request",
        ShortResponse = "kafka.short_response",
        TopicIdsFull = "kafka.topic_ids_full",
        UnknownVersion = "kafka.unknown_version",
    }
}

/// Largest message decoded whole; larger ones are skipped past after their header.
pub const MAX_DECODE: usize = 1 << 20;
/// Largest message length believed at all (Kafka's default socket request maximum).
const MAX_MESSAGE: usize = 100 << 20;
/// A request unanswered for this long (capture time) is `no_response`.
pub const REQUEST_TIMEOUT_NS: u64 = 60_000_000_000;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Kafka,
    tcp: true,
    udp: false,
    ports: &[9092, 9093, 9094],
    detect,
    new: |_meta: &FlowMeta| Box::new(KafkaDissector::new()),
};

use crate::wire::{be_i16 as i16_at, be_i32 as i32_at};

/// Versions the crate dropped but tapwire still reads at header level.
fn legacy(api: ApiKey, version: i16) -> bool {
    matches!(
        (api, version),
        (ApiKey::Produce, 0..=2) | (ApiKey::Fetch, 0..=3) | (ApiKey::ListOffsets, 0)
    )
}

fn known_version(api: ApiKey, version: i16) -> bool {
    let r = api.valid_versions();
    (r.min..=r.max).contains(&version) || legacy(api, version)
}

fn detect(data: &[u8], _t: Transport, _hinted: bool) -> Detection {
    if data.len() < 14 {
        return Detection::NeedMore;
    }
    let (Some(len), Some(key), Some(version), Some(client_len)) = (
        i32_at(data, 0),
        i16_at(data, 4),
        i16_at(data, 6),
        i16_at(data, 12),
    ) else {
        return Detection::No;
    };
    let Ok(api) = ApiKey::try_from(key) else {
        return Detection::No;
    };
    let sane_len = len >= 10 && (len as usize) <= MAX_MESSAGE;
    let sane_client =
        client_len == -1 || (client_len >= 0 && i32::from(client_len) <= len.saturating_sub(10));
    if sane_len && sane_client && known_version(api, version) {
        Detection::FromClient
    } else {
        Detection::No
    }
}

/// A small cursor for the legacy layouts.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (h, t) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = t;
        Some(h)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).and_then(|b| i16_at(b, 0))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).and_then(|b| i32_at(b, 0))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.i16()?;
        if n < 0 {
            return Some(String::new());
        }
        self.take(n as usize)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
    fn array_len(&mut self) -> Option<usize> {
        let n = self.i32()?;
        // Every element is at least 2 bytes: a count beyond that is corrupt.
        (n >= 0 && (n as usize) <= self.0.len() / 2).then_some(n as usize)
    }
}

/// Topics (and Produce's acks and record stats) of the legacy request layouts.
fn legacy_request(api: ApiKey, version: i16, body: &[u8], info: &mut ReqInfo) -> Option<()> {
    let mut r = Rd(body);
    match api {
        ApiKey::Produce => {
            if version >= 3 {
                r.string()?; // transactional id (not legacy; kept for symmetry)
            }
            info.acks = r.i16()?;
            r.i32()?; // timeout
            for _ in 0..r.array_len()? {
                let topic = r.string()?;
                let mut stats = TopicStats {
                    topic: topic.clone(),
                    ..TopicStats::default()
                };
                for _ in 0..r.array_len()? {
                    r.i32()?; // partition
                    let n = r.i32()?;
                    if n > 0 {
                        let set = r.take(n as usize)?;
                        count_records(set, &mut stats);
                        if info.traceparent.is_none() {
                            info.traceparent = record_traceparent(set);
                        }
                    }
                }
                info.topic(topic);
                info.stats.push(stats);
            }
        }
        ApiKey::Fetch => {
            r.i32()?; // replica id
            r.i32()?; // max wait
            r.i32()?; // min bytes
            if version >= 3 {
                r.i32()?; // max bytes
            }
            for _ in 0..r.array_len()? {
                info.topic(r.string()?);
                for _ in 0..r.array_len()? {
                    r.take(4 + 8 + 4)?; // partition, fetch offset, max bytes
                }
            }
        }
        ApiKey::ListOffsets => {
            r.i32()?; // replica id
            for _ in 0..r.array_len()? {
                info.topic(r.string()?);
                for _ in 0..r.array_len()? {
                    r.take(4 + 8 + 4)?;
                }
            }
        }
        _ => {}
    }
    Some(())
}

/// First non-zero error code of a legacy Produce (v0–2) response.
fn legacy_produce_error(body: &[u8]) -> Option<i16> {
    let mut r = Rd(body);
    for _ in 0..r.array_len()? {
        r.string()?;
        for _ in 0..r.array_len()? {
            r.i32()?;
            let code = r.i16()?;
            if code != 0 {
                return Some(code);
            }
            r.take(8)?; // base offset (log append time follows in v2)
        }
    }
    None
}

/// Records and bytes in a record set: v2 record batches (count from the batch header) or
/// v0/v1 message sets (one record per message). Nothing is decompressed.
fn count_records(mut set: &[u8], stats: &mut TopicStats) {
    stats.bytes += set.len() as u64;
    while set.len() >= 12 {
        let Some(len) = i32_at(set, 8).filter(|l| *l > 0) else {
            break;
        };
        let end = 12 + len as usize;
        let magic = set.get(16).copied().unwrap_or(0);
        if magic >= 2 {
            if let Some(n) = i32_at(set, 57).filter(|n| *n > 0) {
                stats.records += n as u64;
            }
        } else {
            stats.records += 1;
        }
        match set.get(end..) {
            Some(rest) => set = rest,
            None => break, // a cut last batch (fetch responses may end mid-batch)
        }
    }
}

/// Records whose headers are searched for a `traceparent`, per record set.
const TRACEPARENT_SCAN_RECORDS: usize = 64;

/// The first W3C `traceparent` record header in a record set: uncompressed v2 batches only
/// (compressed records are never inflated), at most [`TRACEPARENT_SCAN_RECORDS`] records.
fn record_traceparent(mut set: &[u8]) -> Option<(String, String)> {
    let mut budget = TRACEPARENT_SCAN_RECORDS;
    while set.len() >= 61 && budget > 0 {
        let len = usize::try_from(i32_at(set, 8)?).ok()?;
        let end = 12usize.checked_add(len)?;
        let batch = set.get(..end.min(set.len()))?;
        let attributes = i16_at(batch, 21)?;
        if batch.get(16) == Some(&2) && attributes & 0x7 == 0 {
            let count = usize::try_from(i32_at(batch, 57)?).unwrap_or(0);
            let mut r = Varints(batch.get(61..)?);
            for _ in 0..count.min(budget) {
                budget -= 1;
                let rec_len = usize::try_from(r.varint()?).ok()?;
                let mut rec = Varints(r.take(rec_len)?);
                rec.take(1)?; // attributes
                rec.varint()?; // timestamp delta (a varlong; small values fit)
                rec.varint()?; // offset delta
                for _ in 0..2 {
                    // key, then value (-1: null)
                    let n = rec.varint()?;
                    if n > 0 {
                        rec.take(usize::try_from(n).ok()?)?;
                    }
                }
                let headers = rec.varint()?;
                for _ in 0..headers.clamp(0, 64) {
                    let kn = usize::try_from(rec.varint()?).ok()?;
                    let key = rec.take(kn)?;
                    let vn = rec.varint()?;
                    let val = if vn > 0 {
                        rec.take(usize::try_from(vn).ok()?)?
                    } else {
                        &[]
                    };
                    if key.eq_ignore_ascii_case(b"traceparent")
                        && let Some(tp) = std::str::from_utf8(val)
                            .ok()
                            .and_then(crate::dissect::http_fields::parse_traceparent)
                    {
                        return Some(tp);
                    }
                }
            }
        }
        set = set.get(end..)?;
    }
    None
}

/// Zigzag varints of the v2 record format.
struct Varints<'a>(&'a [u8]);

impl<'a> Varints<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }

    fn varint(&mut self) -> Option<i64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.0.get(i)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = self.0.get(i + 1..)?;
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        None
    }
}

/// What a request says.
#[derive(Default)]
struct ReqInfo {
    topics: Vec<String>,
    group: Option<String>,
    acks: i16,
    stats: Vec<TopicStats>,
    /// The first `traceparent` record header of a Produce request.
    traceparent: Option<(String, String)>,
}

impl ReqInfo {
    fn topic(&mut self, t: String) {
        if !t.is_empty() && !self.topics.contains(&t) {
            self.topics.push(t);
        }
    }
}

fn request_info(req: &RequestKind, info: &mut ReqInfo, ids: Option<&TopicIds>) {
    match req {
        RequestKind::Produce(r) => {
            info.acks = r.acks;
            for t in &r.topic_data {
                let mut stats = TopicStats {
                    topic: t.name.to_string(),
                    ..TopicStats::default()
                };
                for p in &t.partition_data {
                    if let Some(rec) = &p.records {
                        count_records(rec, &mut stats);
                        if info.traceparent.is_none() {
                            info.traceparent = record_traceparent(rec);
                        }
                    }
                }
                info.topic(t.name.to_string());
                info.stats.push(stats);
            }
        }
        // Fetch v13+ names topics by id: the name comes from the shared table.
        RequestKind::Fetch(r) => r.topics.iter().for_each(|t| {
            let name = match (t.topic.is_empty(), ids) {
                (true, Some(ids)) => ids.name(t.topic_id.as_bytes()).unwrap_or_default(),
                _ => t.topic.to_string(),
            };
            info.topic(name)
        }),
        RequestKind::ListOffsets(r) => r.topics.iter().for_each(|t| info.topic(t.name.to_string())),
        RequestKind::Metadata(r) => r
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref())
            .for_each(|n| info.topic(n.to_string())),
        RequestKind::OffsetCommit(r) => {
            info.group = Some(r.group_id.to_string());
            r.topics.iter().for_each(|t| info.topic(t.name.to_string()));
        }
        RequestKind::OffsetFetch(r) => {
            if !r.group_id.is_empty() {
                info.group = Some(r.group_id.to_string());
            }
            r.topics
                .iter()
                .flatten()
                .for_each(|t| info.topic(t.name.to_string()));
            for g in &r.groups {
                info.group.get_or_insert_with(|| g.group_id.to_string());
                g.topics
                    .iter()
                    .flatten()
                    .for_each(|t| info.topic(t.name.to_string()));
            }
        }
        RequestKind::JoinGroup(r) => info.group = Some(r.group_id.to_string()),
        RequestKind::SyncGroup(r) => info.group = Some(r.group_id.to_string()),
        RequestKind::Heartbeat(r) => info.group = Some(r.group_id.to_string()),
        RequestKind::LeaveGroup(r) => info.group = Some(r.group_id.to_string()),
        RequestKind::CreateTopics(r) => {
            r.topics.iter().for_each(|t| info.topic(t.name.to_string()))
        }
        RequestKind::DeleteTopics(r) => {
            r.topic_names.iter().for_each(|t| info.topic(t.to_string()));
            r.topics
                .iter()
                .filter_map(|t| t.name.as_ref())
                .for_each(|n| info.topic(n.to_string()));
        }
        _ => {}
    }
}

/// First non-zero error code at any level, and Fetch's per-topic stats (topics named by id
/// resolved through `ids`); a Metadata response teaches `ids` its topics' ids.
fn response_error(
    resp: &ResponseKind,
    stats: &mut Vec<TopicStats>,
    ids: Option<&TopicIds>,
    out: &mut Emitter<'_>,
) -> Option<i16> {
    if let (ResponseKind::Metadata(r), Some(ids)) = (resp, ids) {
        for t in &r.topics {
            if let Some(name) = &t.name
                && !ids.learn(t.topic_id.as_bytes(), name)
            {
                out.anomaly(Anomaly::TopicIdsFull);
            }
        }
    }
    if let ResponseKind::Fetch(r) = resp {
        for t in &r.responses {
            let topic = match (t.topic.is_empty(), ids) {
                (true, Some(ids)) => ids.name(t.topic_id.as_bytes()).unwrap_or_default(),
                _ => t.topic.to_string(),
            };
            let mut s = TopicStats {
                topic,
                ..TopicStats::default()
            };
            for p in &t.partitions {
                if let Some(rec) = &p.records {
                    count_records(rec, &mut s);
                }
            }
            stats.push(s);
        }
    }
    errors::first_error(resp)
}

/// Skip the tagged fields of a flexible header: returns the bytes after them.
fn skip_tagged(b: &[u8]) -> Option<&[u8]> {
    fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate().take(10) {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }
    let (count, mut at) = uvarint(b)?;
    for _ in 0..count.min(64) {
        let (_, n) = uvarint(b.get(at..)?)?;
        at += n;
        let (size, n) = uvarint(b.get(at..)?)?;
        at = at
            .checked_add(n)?
            .checked_add(usize::try_from(size).ok()?)?;
    }
    b.get(at..)
}

/// A request waiting for its response.
struct Pending {
    ex: Exchange,
    api: Option<ApiKey>,
    version: i16,
}

/// Collection state of one direction.
#[derive(Default)]
struct Side {
    /// Bytes of the message being collected (length prefix excluded).
    buf: Vec<u8>,
    /// Length of the message being collected.
    want: usize,
    /// Bytes of an oversized message still to skip.
    skip: usize,
    start_ts: u64,
}

/// Kafka dissector state for one connection.
pub struct KafkaDissector {
    sides: [Side; 2],
    pending: ById<i32, Pending>,
}

impl Default for KafkaDissector {
    fn default() -> Self {
        Self::new()
    }
}

fn api_name(key: i16, api: Option<ApiKey>) -> String {
    match api {
        Some(a) => format!("{a:?}"),
        None => format!("ApiKey{key}"),
    }
}

impl KafkaDissector {
    pub fn new() -> Self {
        KafkaDissector {
            sides: [Side::default(), Side::default()],
            pending: ById::new(DEFAULT_IN_FLIGHT, REQUEST_TIMEOUT_NS),
        }
    }

    fn expire(&mut self, ts: u64, out: &mut Emitter<'_>) {
        for p in self.pending.expire(ts) {
            let mut ex = p.ex;
            ex.status = Status::NoResponse;
            out.emit(ex);
        }
    }

    /// A whole request (`whole` false: only its first bytes, the rest was skipped).
    fn request(&mut self, msg: &[u8], whole: bool, start: u64, ts: u64, out: &mut Emitter<'_>) {
        let (Some(key), Some(version), Some(corr)) =
            (i16_at(msg, 0), i16_at(msg, 2), i32_at(msg, 4))
        else {
            out.anomaly(Anomaly::ShortRequest);
            return;
        };
        let api = ApiKey::try_from(key).ok();
        let header_version = api.map_or(1, |a| a.request_header_version(version));
        let mut rest = msg.get(8..).unwrap_or_default();
        let mut client_id = None;
        if header_version >= 1 {
            let mut r = Rd(rest);
            client_id = r.string();
            rest = r.0;
        }
        if header_version >= 2 {
            rest = skip_tagged(rest).unwrap_or_default();
        }
        let mut info = ReqInfo {
            acks: -1,
            ..ReqInfo::default()
        };
        let mut anomaly = None;
        if let Some(a) = api
            && whole
        {
            let r = a.valid_versions();
            if (r.min..=r.max).contains(&version) {
                match RequestKind::decode(a, &mut Bytes::copy_from_slice(rest), version) {
                    Ok(req) => request_info(&req, &mut info, out.topic_ids),
                    Err(_) => anomaly = Some(Anomaly::BadRequest),
                }
            } else if legacy(a, version) {
                if legacy_request(a, version, rest, &mut info).is_none() {
                    anomaly = Some(Anomaly::BadRequest);
                }
            } else {
                anomaly = Some(Anomaly::UnknownVersion);
            }
        }
        if let Some(a) = anomaly {
            out.anomaly(a);
        }
        let mut ex = out.exchange(Protocol::Kafka, start);
        ex.end_time_unix_nano = ts;
        if let Some((t, s)) = info.traceparent.take() {
            ex.trace_id = Some(t);
            ex.span_id = Some(s);
        }
        if let Some(a) = anomaly {
            ex.add_anomaly(a.name());
        }
        let op = match api {
            Some(ApiKey::Produce) => "send".to_string(),
            Some(ApiKey::Fetch) => "receive".to_string(),
            _ => api_name(key, api),
        };
        let count: u64 = info.stats.iter().map(|s| s.records).sum();
        ex.messaging = Some(Box::new(Messaging {
            system: "kafka".into(),
            operation: Some(Named { name: op }),
            destination: (info.topics.len() == 1).then(|| Named {
                name: info.topics[0].clone(),
            }),
            client: client_id.filter(|c| !c.is_empty()).map(|id| Client { id }),
            consumer: info.group.filter(|g| !g.is_empty()).map(|g| Consumer {
                group: Named { name: g },
            }),
            batch: (api == Some(ApiKey::Produce) && !info.stats.is_empty()).then_some(Batch {
                message_count: count,
            }),
            ..Messaging::default()
        }));
        ex.kafka = Some(Box::new(Kafka {
            api_key: key,
            api_name: api_name(key, api),
            api_version: version,
            correlation_id: corr,
            topics: info.topics,
            error_code: None,
            topic_stats: info.stats,
        }));
        if api == Some(ApiKey::Produce) && info.acks == 0 {
            // acks=0: the broker never answers.
            out.emit(ex);
            return;
        }
        if let Some(old) = self.pending.push(corr, start, Pending { ex, api, version }) {
            out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
            let mut ex = old.ex;
            ex.status = Status::NoResponse;
            out.emit(ex);
        }
    }

    fn response(&mut self, msg: &[u8], whole: bool, ts: u64, out: &mut Emitter<'_>) {
        let Some(corr) = i32_at(msg, 0) else {
            out.anomaly(Anomaly::ShortResponse);
            return;
        };
        let Some(p) = self.pending.take(&corr) else {
            out.anomaly(Anomaly::ResponseWithoutRequest);
            return;
        };
        let mut ex = p.ex;
        ex.end_time_unix_nano = ts;
        let mut error = None;
        let mut stats = Vec::new();
        if let Some(a) = p.api
            && whole
        {
            let mut body = msg.get(4..).unwrap_or_default();
            if a.response_header_version(p.version) >= 1 {
                body = skip_tagged(body).unwrap_or_default();
            }
            let r = a.valid_versions();
            if (r.min..=r.max).contains(&p.version) {
                match ResponseKind::decode(a, &mut Bytes::copy_from_slice(body), p.version) {
                    Ok(resp) => {
                        let ids = out.topic_ids;
                        error = response_error(&resp, &mut stats, ids, out)
                    }
                    Err(_) => {
                        out.anomaly(Anomaly::BadResponse);
                        ex.add_anomaly(Anomaly::BadResponse.name());
                    }
                }
            } else if a == ApiKey::Produce && legacy(a, p.version) {
                error = legacy_produce_error(body);
            }
        }
        if let Some(k) = ex.kafka.as_mut() {
            k.error_code = error;
            if !stats.is_empty() {
                let count: u64 = stats.iter().map(|s| s.records).sum();
                k.topic_stats = stats;
                if let Some(m) = ex.messaging.as_mut() {
                    m.batch = Some(Batch {
                        message_count: count,
                    });
                }
            }
        }
        if error.is_some() {
            ex.status = Status::Error;
        }
        out.emit(ex);
    }

    fn run(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let side = &mut self.sides[dir.index()];
            if side.skip > 0 {
                let n = rest.len().min(side.skip);
                side.skip -= n;
                pos += n;
                continue;
            }
            if side.want > 0 {
                // Collecting a message that spans feeds.
                let n = rest.len().min(side.want - side.buf.len());
                side.buf.extend_from_slice(&rest[..n]);
                pos += n;
                if side.buf.len() == side.want {
                    let msg = std::mem::take(&mut side.buf);
                    let start = side.start_ts;
                    side.want = 0;
                    self.message(dir, &msg, true, start, ts, out);
                }
                continue;
            }
            let Some(len) = i32_at(rest, 0) else {
                return Progress::Incomplete {
                    consumed: pos,
                    needed: 4 - rest.len(),
                };
            };
            if len < 4 || len as usize > MAX_MESSAGE {
                out.anomaly(Anomaly::BadLength);
                return Progress::Error(crate::dissect::DissectError {
                    protocol: Protocol::Kafka,
                    reason: "bad length",
                });
            }
            let len = len as usize;
            let body = &rest[4..];
            if len > MAX_DECODE {
                // Header-level only: wait for the first bytes, then skip the rest.
                let head = len.min(64);
                if body.len() < head {
                    return Progress::Incomplete {
                        consumed: pos,
                        needed: head - body.len(),
                    };
                }
                out.anomaly(Anomaly::MessageTooLarge);
                self.message(dir, &body[..head], false, ts, ts, out);
                self.sides[dir.index()].skip = len - head;
                pos += 4 + head;
                continue;
            }
            if body.len() >= len {
                self.message(dir, &body[..len], true, ts, ts, out);
                pos += 4 + len;
            } else {
                let side = &mut self.sides[dir.index()];
                // Grown as the bytes arrive, never reserved from the length prefix: a
                // 70-byte segment claiming 1 MiB costs 70 bytes.
                side.buf = body.to_vec();
                side.want = len;
                side.start_ts = ts;
                pos = data.len();
            }
        }
        Progress::Done
    }

    fn message(
        &mut self,
        dir: Direction,
        msg: &[u8],
        whole: bool,
        start: u64,
        ts: u64,
        out: &mut Emitter<'_>,
    ) {
        self.expire(ts, out);
        match dir {
            Direction::ToServer => self.request(msg, whole, start, ts, out),
            Direction::ToClient => self.response(msg, whole, ts, out),
        }
    }
}

impl Dissector for KafkaDissector {
    fn held_bytes(&self) -> usize {
        self.sides.iter().map(|s| s.buf.capacity()).sum::<usize>()
            + self
                .pending
                .held_bytes(|_| crate::dissect::EXCHANGE_ESTIMATE)
    }

    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        self.run(dir, data, ts, out)
    }

    fn gap(&mut self, dir: Direction, len: u64, _ts: u64, out: &mut Emitter<'_>) {
        out.anomaly(Anomaly::Gap);
        let side = &mut self.sides[dir.index()];
        if (len as usize) < side.skip {
            side.skip -= len as usize;
            return;
        }
        // The length framing is lost: this direction is not parsed any further.
        side.buf = Vec::new();
        side.want = 0;
        side.skip = usize::MAX;
    }

    fn close(&mut self, _ts: u64, out: &mut Emitter<'_>) {
        for p in self.pending.drain().collect::<Vec<_>>() {
            let mut ex = p.ex;
            ex.status = Status::NoResponse;
            out.emit(ex);
        }
    }
}

#[cfg(test)]
mod tests;
