//! AMQP 0-9-1 (RabbitMQ): methods of every class, content headers and bodies, per-channel
//! state.
//!
//! Frames are split here (type, channel, size, payload, `0xCE`); method and content-header
//! payloads are decoded by `amq-protocol` (`parse_class`, `parse_content_header`). Body frames
//! are not given to the crate, which copies them: their bytes are counted as they stream
//! past, so a message of any size costs no buffering. A method or header frame larger than
//! [`MAX_FRAME`] is skipped the same way (`amqp.frame_too_large`).
//!
//! Exchanges (ARCHITECTURE.md §4):
//! - a synchronous method and its `-ok` reply on the same channel are one exchange named
//!   after the request (`queue.declare`, `connection.tune`, …), whichever side sent it;
//! - `basic.publish`, `basic.deliver`, `basic.return` are one-way exchanges emitted once their
//!   content (header and body) is complete; `basic.ack`, `basic.nack`, `basic.reject` are
//!   one-way exchanges of their own;
//! - `basic.get` and the `get-ok` that answers it with a message are one exchange, the get:
//!   its destination is the queue asked, the message's exchange and routing key are
//!   `messaging.rabbitmq.exchange.name` and `messaging.rabbitmq.destination.routing_key`, and
//!   it ends when the message's body is complete (`get-empty` ends it at once). A `get-ok`
//!   whose get was not seen (capture started later) is a one-way `basic.get-ok`;
//! - a request answered by `channel.close` / `connection.close` with a reply code other than
//!   200 has `status` `error` with the code and text; the close itself is an exchange too
//!   (code 0, which some clients send for a normal close, is not an error);
//! - the protocol header and heartbeats are plumbing, never exchanges; `connection.start-ok`
//!   (which carries the credentials) contributes nothing but its name.
//!
//! Limits: requests in flight and messages being assembled are capped at
//! `pairing::DEFAULT_IN_FLIGHT` each (the oldest is reported and dropped). Bytes that are not
//! AMQP frames end dissection of the flow. Field tables are pre-scanned without recursion
//! before the crate parses them ([`nesting`]): one nested deeper than [`nesting::MAX_DEPTH`] is
//! not decoded (`amqp.table_too_deep`), the method is still named.

use std::collections::VecDeque;

use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::protocol::{AMQPClass, basic, channel, connection, exchange, queue};
use amq_protocol::types::AMQPValue;
use schemas::l7::db::Named;
use schemas::l7::messaging::{Amqp, Message, MessageBody, Messaging, RabbitDestination, Rabbitmq};
use schemas::{Exchange, Protocol, Status, Transport};

mod nesting;

use crate::dissect::entry::Detection;
use crate::dissect::entry::ProtocolEntry;
use crate::dissect::pairing::DEFAULT_IN_FLIGHT;
use crate::dissect::{Direction, DissectError, Dissector, Emitter, FlowMeta, Progress};
use crate::wire::{be16, be32};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadContentHeader = "amqp.bad_content_header",
        BadFrame = "amqp.bad_frame",
        BadFrameEnd = "amqp.bad_frame_end",
        BadMethod = "amqp.bad_method",
        BadTable = "amqp.bad_table",
        ContentEvicted = "amqp.content_evicted",
        FrameTooLarge = "amqp.frame_too_large",
        Gap = "amqp.gap",
        HeaderWithoutMethod = "amqp.header_without_method",
        ShortMethod = "amqp.short_method",
        TableTooDeep = "amqp.table_too_deep",
        UnknownMethod = "amqp.unknown_method",
    }
}

/// The anomaly for a field table the pre-scan refused.
fn table_anomaly(e: nesting::TableError) -> Anomaly {
    match e {
        nesting::TableError::TooDeep => Anomaly::TableTooDeep,
        nesting::TableError::Malformed => Anomaly::BadTable,
    }
}

/// Largest method or content-header frame decoded (RabbitMQ's default `frame_max`).
pub const MAX_FRAME: usize = 128 * 1024;

const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Amqp,
    tcp: true,
    udp: false,
    ports: &[5672],
    detect,
    new: |_meta: &FlowMeta| Box::new(AmqpDissector::new()),
};

/// Name of a method (`class.method`, as the 0-9-1 spec spells it), and whether only a client
/// sends it (used by detection).
pub fn method_name(class: u16, method: u16) -> Option<(&'static str, bool)> {
    Some(match (class, method) {
        (10, 10) => ("connection.start", false),
        (10, 11) => ("connection.start-ok", true),
        (10, 20) => ("connection.secure", false),
        (10, 21) => ("connection.secure-ok", true),
        (10, 30) => ("connection.tune", false),
        (10, 31) => ("connection.tune-ok", true),
        (10, 40) => ("connection.open", true),
        (10, 41) => ("connection.open-ok", false),
        (10, 50) => ("connection.close", false),
        (10, 51) => ("connection.close-ok", false),
        (10, 60) => ("connection.blocked", false),
        (10, 61) => ("connection.unblocked", false),
        (10, 70) => ("connection.update-secret", false),
        (10, 71) => ("connection.update-secret-ok", true),
        (20, 10) => ("channel.open", true),
        (20, 11) => ("channel.open-ok", false),
        (20, 20) => ("channel.flow", false),
        (20, 21) => ("channel.flow-ok", false),
        (20, 40) => ("channel.close", false),
        (20, 41) => ("channel.close-ok", false),
        (30, 10) => ("access.request", true),
        (30, 11) => ("access.request-ok", false),
        (40, 10) => ("exchange.declare", true),
        (40, 11) => ("exchange.declare-ok", false),
        (40, 20) => ("exchange.delete", true),
        (40, 21) => ("exchange.delete-ok", false),
        (40, 30) => ("exchange.bind", true),
        (40, 31) => ("exchange.bind-ok", false),
        (40, 40) => ("exchange.unbind", true),
        (40, 51) => ("exchange.unbind-ok", false),
        (50, 10) => ("queue.declare", true),
        (50, 11) => ("queue.declare-ok", false),
        (50, 20) => ("queue.bind", true),
        (50, 21) => ("queue.bind-ok", false),
        (50, 30) => ("queue.purge", true),
        (50, 31) => ("queue.purge-ok", false),
        (50, 40) => ("queue.delete", true),
        (50, 41) => ("queue.delete-ok", false),
        (50, 50) => ("queue.unbind", true),
        (50, 51) => ("queue.unbind-ok", false),
        (60, 10) => ("basic.qos", true),
        (60, 11) => ("basic.qos-ok", false),
        (60, 20) => ("basic.consume", true),
        (60, 21) => ("basic.consume-ok", false),
        (60, 30) => ("basic.cancel", false),
        (60, 31) => ("basic.cancel-ok", false),
        (60, 40) => ("basic.publish", true),
        (60, 50) => ("basic.return", false),
        (60, 60) => ("basic.deliver", false),
        (60, 70) => ("basic.get", true),
        (60, 71) => ("basic.get-ok", false),
        (60, 72) => ("basic.get-empty", false),
        (60, 80) => ("basic.ack", false),
        (60, 90) => ("basic.reject", true),
        (60, 100) => ("basic.recover-async", true),
        (60, 110) => ("basic.recover", true),
        (60, 111) => ("basic.recover-ok", false),
        (60, 120) => ("basic.nack", false),
        (85, 10) => ("confirm.select", true),
        (85, 11) => ("confirm.select-ok", false),
        (90, 10) => ("tx.select", true),
        (90, 11) => ("tx.select-ok", false),
        (90, 20) => ("tx.commit", true),
        (90, 21) => ("tx.commit-ok", false),
        (90, 30) => ("tx.rollback", true),
        (90, 31) => ("tx.rollback-ok", false),
        _ => return None,
    })
}

/// The replies that complete a synchronous request.
fn replies(request: &str) -> &'static [&'static str] {
    match request {
        "connection.start" => &["connection.start-ok"],
        "connection.secure" => &["connection.secure-ok"],
        "connection.tune" => &["connection.tune-ok"],
        "connection.open" => &["connection.open-ok"],
        "connection.close" => &["connection.close-ok"],
        "connection.update-secret" => &["connection.update-secret-ok"],
        "channel.open" => &["channel.open-ok"],
        "channel.flow" => &["channel.flow-ok"],
        "channel.close" => &["channel.close-ok"],
        "access.request" => &["access.request-ok"],
        "exchange.declare" => &["exchange.declare-ok"],
        "exchange.delete" => &["exchange.delete-ok"],
        "exchange.bind" => &["exchange.bind-ok"],
        "exchange.unbind" => &["exchange.unbind-ok"],
        "queue.declare" => &["queue.declare-ok"],
        "queue.bind" => &["queue.bind-ok"],
        "queue.purge" => &["queue.purge-ok"],
        "queue.delete" => &["queue.delete-ok"],
        "queue.unbind" => &["queue.unbind-ok"],
        "basic.qos" => &["basic.qos-ok"],
        "basic.consume" => &["basic.consume-ok"],
        "basic.cancel" => &["basic.cancel-ok"],
        "basic.get" => &["basic.get-ok", "basic.get-empty"],
        "basic.recover" => &["basic.recover-ok"],
        "confirm.select" => &["confirm.select-ok"],
        "tx.select" => &["tx.select-ok"],
        "tx.commit" => &["tx.commit-ok"],
        "tx.rollback" => &["tx.rollback-ok"],
        _ => &[],
    }
}

fn detect(data: &[u8], _t: Transport, hinted: bool) -> Detection {
    let n = data.len().min(PROTOCOL_HEADER.len());
    if data[..n] == PROTOCOL_HEADER[..n] {
        return if n == PROTOCOL_HEADER.len() {
            Detection::FromClient
        } else {
            Detection::NeedMore
        };
    }
    // Mid-session: a method frame with a known class and method, whole and well terminated.
    if data.len() < 11 {
        return if data.first() == Some(&1) {
            Detection::NeedMore
        } else {
            Detection::No
        };
    }
    if data[0] != 1 {
        return Detection::No;
    }
    let (Some(size), Some(class), Some(method)) = (be32(data, 3), be16(data, 7), be16(data, 9))
    else {
        return Detection::No;
    };
    let size = size as usize;
    if !(4..=MAX_FRAME).contains(&size) {
        return Detection::No;
    }
    let Some((_, client_only)) = method_name(class, method) else {
        return Detection::No;
    };
    match data.get(7 + size) {
        Some(0xce) => {}
        Some(_) => return Detection::No,
        None if hinted => {}
        None => return Detection::NeedMore,
    }
    if client_only {
        Detection::FromClient
    } else {
        Detection::FromServer
    }
}

/// A request waiting for its reply.
struct Pending {
    channel: u16,
    dir: Direction,
    name: &'static str,
    ex: Exchange,
}

/// A message whose content (header, body) is still arriving.
struct Content {
    channel: u16,
    dir: Direction,
    ex: Exchange,
    /// Body bytes announced by the content header (`None` until it comes).
    expected: Option<u64>,
    received: u64,
}

/// Frame reader state of one direction.
#[derive(Debug, Default)]
struct Reader {
    /// Body (or oversized frame) bytes still to skip, plus the frame-end byte.
    skip_left: u64,
    /// Channel of the body being skipped (`None`: an oversized frame, not counted).
    body_channel: Option<u16>,
}

/// AMQP dissector state for one connection.
pub struct AmqpDissector {
    readers: [Reader; 2],
    pending: VecDeque<Pending>,
    contents: VecDeque<Content>,
}

impl Default for AmqpDissector {
    fn default() -> Self {
        Self::new()
    }
}

fn named(s: &str) -> Option<Named> {
    (!s.is_empty()).then(|| Named {
        name: s.to_string(),
    })
}

/// `traceparent` from a header table (AMQP headers or content properties).
fn traceparent(headers: Option<&amq_protocol::types::FieldTable>) -> Option<(String, String)> {
    let v = headers?
        .inner()
        .iter()
        .find(|(k, _)| k.as_str().eq_ignore_ascii_case("traceparent"))?
        .1;
    let text = match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        _ => return None,
    };
    crate::dissect::http_fields::parse_traceparent(&text)
}

impl AmqpDissector {
    pub fn new() -> Self {
        AmqpDissector {
            readers: [Reader::default(), Reader::default()],
            pending: VecDeque::new(),
            contents: VecDeque::new(),
        }
    }

    fn exchange(
        out: &Emitter<'_>,
        name: &str,
        channel: u16,
        ts: u64,
        destination: Option<Named>,
        routing_key: Option<&str>,
    ) -> Exchange {
        let mut ex = out.exchange(Protocol::Amqp, ts);
        ex.messaging = Some(Box::new(Messaging {
            system: "rabbitmq".into(),
            operation: Some(Named { name: name.into() }),
            destination,
            message: None,
            rabbitmq: routing_key.filter(|k| !k.is_empty()).map(|k| Rabbitmq {
                destination: RabbitDestination {
                    routing_key: k.to_string(),
                },
                exchange: None,
            }),
            ..Messaging::default()
        }));
        ex.amqp = Some(Box::new(Amqp {
            channel,
            ..Amqp::default()
        }));
        ex
    }

    /// Destination and routing key a method names.
    fn target(class: &AMQPClass) -> (Option<Named>, Option<String>) {
        match class {
            AMQPClass::Basic(m) => match m {
                basic::AMQPMethod::Publish(p) => {
                    (named(p.exchange.as_str()), Some(p.routing_key.to_string()))
                }
                basic::AMQPMethod::Deliver(d) => {
                    (named(d.exchange.as_str()), Some(d.routing_key.to_string()))
                }
                basic::AMQPMethod::Return(r) => {
                    (named(r.exchange.as_str()), Some(r.routing_key.to_string()))
                }
                basic::AMQPMethod::GetOk(g) => {
                    (named(g.exchange.as_str()), Some(g.routing_key.to_string()))
                }
                basic::AMQPMethod::Get(g) => (named(g.queue.as_str()), None),
                basic::AMQPMethod::Consume(c) => (named(c.queue.as_str()), None),
                _ => (None, None),
            },
            AMQPClass::Queue(m) => match m {
                queue::AMQPMethod::Declare(q) => (named(q.queue.as_str()), None),
                queue::AMQPMethod::DeclareOk(q) => (named(q.queue.as_str()), None),
                queue::AMQPMethod::Bind(q) => {
                    (named(q.queue.as_str()), Some(q.routing_key.to_string()))
                }
                queue::AMQPMethod::Unbind(q) => {
                    (named(q.queue.as_str()), Some(q.routing_key.to_string()))
                }
                queue::AMQPMethod::Purge(q) => (named(q.queue.as_str()), None),
                queue::AMQPMethod::Delete(q) => (named(q.queue.as_str()), None),
                _ => (None, None),
            },
            AMQPClass::Exchange(m) => match m {
                exchange::AMQPMethod::Declare(e) => (named(e.exchange.as_str()), None),
                exchange::AMQPMethod::Delete(e) => (named(e.exchange.as_str()), None),
                exchange::AMQPMethod::Bind(e) => (
                    named(e.destination.as_str()),
                    Some(e.routing_key.to_string()),
                ),
                exchange::AMQPMethod::Unbind(e) => (
                    named(e.destination.as_str()),
                    Some(e.routing_key.to_string()),
                ),
                _ => (None, None),
            },
            _ => (None, None),
        }
    }

    /// Reply code and text a method carries (`channel.close`, `connection.close`,
    /// `basic.return`).
    fn close_code(class: &AMQPClass) -> Option<(u16, String)> {
        match class {
            AMQPClass::Basic(basic::AMQPMethod::Return(r)) => {
                Some((r.reply_code, r.reply_text.to_string()))
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                Some((c.reply_code, c.reply_text.to_string()))
            }
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                Some((c.reply_code, c.reply_text.to_string()))
            }
            _ => None,
        }
    }

    fn method(
        &mut self,
        dir: Direction,
        channel: u16,
        payload: &[u8],
        ts: u64,
        out: &mut Emitter<'_>,
    ) {
        let (Some(class_id), Some(method_id)) = (be16(payload, 0), be16(payload, 2)) else {
            out.anomaly(Anomaly::ShortMethod);
            return;
        };
        let Some((name, _)) = method_name(class_id, method_id) else {
            out.anomaly(Anomaly::UnknownMethod);
            return;
        };
        // connection.start-ok carries the credentials: nothing of it is decoded.
        let class = if name == "connection.start-ok" {
            None
        } else if let Err(e) = nesting::check_method(payload, class_id, method_id) {
            out.anomaly(table_anomaly(e));
            None
        } else {
            match amq_protocol::protocol::parse_class(payload) {
                Ok((_, c)) => Some(c),
                Err(_) => {
                    out.anomaly(Anomaly::BadMethod);
                    None
                }
            }
        };
        let (destination, routing_key) = class.as_ref().map(Self::target).unwrap_or((None, None));
        // A reply completes the oldest matching request of the other side on this channel.
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.channel == channel && p.dir != dir && replies(p.name).contains(&name))
            && let Some(p) = self.pending.remove(i)
        {
            let mut ex = p.ex;
            ex.end_time_unix_nano = ts;
            if name == "basic.get-ok" {
                // The get goes on until the message it fetched is complete.
                if let Some(m) = ex.messaging.as_mut()
                    && (destination.is_some()
                        || routing_key.as_deref().is_some_and(|k| !k.is_empty()))
                {
                    m.rabbitmq = Some(Rabbitmq {
                        destination: RabbitDestination {
                            routing_key: routing_key.unwrap_or_default(),
                        },
                        exchange: destination,
                    });
                }
                self.expect_content(channel, dir, ex, out);
                return;
            }
            if let (Some(m), Some(d)) = (ex.messaging.as_mut(), destination.clone())
                && m.destination.is_none()
            {
                // queue.declare with a server-named queue: the name comes in declare-ok.
                m.destination = Some(d);
            }
            out.emit(ex);
        }
        let close = class.as_ref().and_then(Self::close_code);
        let closing = matches!(name, "channel.close" | "connection.close");
        if let Some((code, text)) = &close
            && !matches!(*code, 0 | 200)
            && closing
        {
            // The close answers the other side's requests on this channel (all channels for
            // connection.close) with an error.
            let whole = class_id == 10;
            let mut i = 0;
            while i < self.pending.len() {
                let p = &self.pending[i];
                if p.dir != dir && (whole || p.channel == channel) {
                    if let Some(p) = self.pending.remove(i) {
                        let mut ex = p.ex;
                        ex.end_time_unix_nano = ts;
                        ex.status = Status::Error;
                        if let Some(a) = ex.amqp.as_mut() {
                            a.reply_code = Some(*code);
                            a.reply_text = Some(text.clone());
                        }
                        out.emit(ex);
                    }
                } else {
                    i += 1;
                }
            }
        }
        let mut ex = Self::exchange(out, name, channel, ts, destination, routing_key.as_deref());
        if let Some((code, text)) = close
            && !matches!(code, 0 | 200)
        {
            // A close with an error code fails; a returned message only reports why.
            if closing {
                ex.status = Status::Error;
            }
            if let Some(a) = ex.amqp.as_mut() {
                a.reply_code = Some(code);
                a.reply_text = Some(text);
            }
        }
        match name {
            "basic.publish" | "basic.deliver" | "basic.return" | "basic.get-ok" => {
                self.expect_content(channel, dir, ex, out);
            }
            "basic.ack" | "basic.nack" | "basic.reject" => out.emit(ex),
            _ if !replies(name).is_empty() => {
                if self.pending.len() >= DEFAULT_IN_FLIGHT
                    && let Some(old) = self.pending.pop_front()
                {
                    out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
                    let mut ex = old.ex;
                    ex.status = Status::NoResponse;
                    out.emit(ex);
                }
                self.pending.push_back(Pending {
                    channel,
                    dir,
                    name,
                    ex,
                });
            }
            // Replies without a request seen (capture started late), and notifications
            // (connection.blocked, …) are not exchanges of their own.
            _ => {}
        }
    }

    /// `ex` waits for the content (header and body) that follows its method from `dir` on
    /// `channel`; the oldest waiting is reported incomplete when too many wait.
    fn expect_content(
        &mut self,
        channel: u16,
        dir: Direction,
        ex: Exchange,
        out: &mut Emitter<'_>,
    ) {
        if self.contents.len() >= DEFAULT_IN_FLIGHT
            && let Some(old) = self.contents.pop_front()
        {
            out.anomaly(Anomaly::ContentEvicted);
            let mut ex = old.ex;
            ex.status = Status::Incomplete;
            out.emit(ex);
        }
        self.contents.push_back(Content {
            channel,
            dir,
            ex,
            expected: None,
            received: 0,
        });
    }

    fn content_header(
        &mut self,
        dir: Direction,
        channel: u16,
        payload: &[u8],
        ts: u64,
        out: &mut Emitter<'_>,
    ) {
        let Some(c) = self
            .contents
            .iter_mut()
            .find(|c| c.channel == channel && c.dir == dir && c.expected.is_none())
        else {
            out.anomaly(Anomaly::HeaderWithoutMethod);
            return;
        };
        let parsed = match nesting::check_content_header(payload) {
            Ok(()) => parse_content_header(payload).map_err(|_| Anomaly::BadContentHeader),
            Err(e) => Err(table_anomaly(e)),
        };
        match parsed {
            Ok((_, h)) => {
                c.expected = Some(h.body_size);
                if let Some(a) = c.ex.amqp.as_mut() {
                    a.content_type = h.properties.content_type().as_ref().map(|t| t.to_string());
                }
                if let Some((t, s)) = traceparent(h.properties.headers().as_ref()) {
                    c.ex.trace_id = Some(t);
                    c.ex.span_id = Some(s);
                }
                if let Some(m) = c.ex.messaging.as_mut() {
                    m.message = Some(Message {
                        body: Some(MessageBody { size: h.body_size }),
                    });
                }
            }
            Err(anomaly) => {
                out.anomaly(anomaly);
                c.expected = Some(0);
            }
        }
        self.finish_contents(ts, out);
    }

    fn body(&mut self, dir: Direction, channel: u16, n: u64, ts: u64, out: &mut Emitter<'_>) {
        if let Some(c) = self
            .contents
            .iter_mut()
            .find(|c| c.channel == channel && c.dir == dir && c.expected.is_some())
        {
            c.received += n;
            c.ex.end_time_unix_nano = ts;
        }
        self.finish_contents(ts, out);
    }

    /// Emit messages whose body is complete.
    fn finish_contents(&mut self, ts: u64, out: &mut Emitter<'_>) {
        let mut i = 0;
        while i < self.contents.len() {
            let c = &self.contents[i];
            if c.expected.is_some_and(|e| c.received >= e) {
                if let Some(c) = self.contents.remove(i) {
                    let mut ex = c.ex;
                    ex.end_time_unix_nano = ex.end_time_unix_nano.max(ts);
                    out.emit(ex);
                }
            } else {
                i += 1;
            }
        }
    }

    fn run(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let r = &mut self.readers[dir.index()];
            if r.skip_left > 0 {
                let n = (rest.len() as u64).min(r.skip_left);
                r.skip_left -= n;
                // The frame-end byte is not body.
                let body = if r.skip_left == 0 {
                    n.saturating_sub(1)
                } else {
                    n
                };
                if let Some(ch) = r.body_channel {
                    if r.skip_left == 0 {
                        r.body_channel = None;
                    }
                    self.body(dir, ch, body, ts, out);
                }
                pos += n as usize;
                continue;
            }
            if rest[0] == b'A' {
                // The protocol header: plumbing.
                if rest.len() < 8 {
                    return Progress::Incomplete {
                        consumed: pos,
                        needed: 8 - rest.len(),
                    };
                }
                if rest[..4] == *b"AMQP" {
                    pos += 8;
                    continue;
                }
            }
            if rest.len() < 7 {
                return Progress::Incomplete {
                    consumed: pos,
                    needed: 7 - rest.len(),
                };
            }
            let (Some(&kind), Some(channel), Some(size)) =
                (rest.first(), be16(rest, 1), be32(rest, 3))
            else {
                return Progress::Incomplete {
                    consumed: pos,
                    needed: 7,
                };
            };
            let size = size as usize;
            if !matches!(kind, 1 | 2 | 3 | 8) {
                out.anomaly(Anomaly::BadFrame);
                self.flush(out);
                return Progress::Error(DissectError {
                    protocol: Protocol::Amqp,
                    reason: "bad frame type",
                });
            }
            if kind == 3 || size > MAX_FRAME {
                // Body, or a frame too large to decode: stream past it.
                if kind != 3 {
                    out.anomaly(Anomaly::FrameTooLarge);
                }
                let r = &mut self.readers[dir.index()];
                r.skip_left = size as u64 + 1;
                r.body_channel = (kind == 3).then_some(channel);
                pos += 7;
                continue;
            }
            let Some(frame) = rest.get(..7 + size + 1) else {
                return Progress::Incomplete {
                    consumed: pos,
                    needed: 7 + size + 1 - rest.len(),
                };
            };
            if frame[7 + size] != 0xce {
                out.anomaly(Anomaly::BadFrameEnd);
                self.flush(out);
                return Progress::Error(DissectError {
                    protocol: Protocol::Amqp,
                    reason: "bad frame end",
                });
            }
            let payload = &frame[7..7 + size];
            match kind {
                1 => self.method(dir, channel, payload, ts, out),
                2 => self.content_header(dir, channel, payload, ts, out),
                _ => {} // heartbeat
            }
            pos += frame.len();
        }
        Progress::Done
    }

    /// End of the flow: requests without a reply, messages without all their content.
    fn flush(&mut self, out: &mut Emitter<'_>) {
        for p in std::mem::take(&mut self.pending) {
            let mut ex = p.ex;
            // A close that got no close-ok still closed the channel: not a lost reply.
            if !p.name.ends_with(".close") && ex.status != Status::Error {
                ex.status = Status::NoResponse;
            }
            out.emit(ex);
        }
        for c in std::mem::take(&mut self.contents) {
            let mut ex = c.ex;
            ex.status = Status::Incomplete;
            out.emit(ex);
        }
    }
}

impl Dissector for AmqpDissector {
    fn held_bytes(&self) -> usize {
        self.pending.len() * (std::mem::size_of::<Pending>() + crate::dissect::EXCHANGE_ESTIMATE)
            + self.contents.len()
                * (std::mem::size_of::<Content>() + crate::dissect::EXCHANGE_ESTIMATE)
    }

    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        self.run(dir, data, ts, out)
    }

    fn gap(&mut self, dir: Direction, len: u64, _ts: u64, out: &mut Emitter<'_>) {
        out.anomaly(Anomaly::Gap);
        let r = &mut self.readers[dir.index()];
        if len < r.skip_left {
            // Lost inside a body: framing holds, the message is incomplete.
            r.skip_left -= len;
            if let Some(ch) = r.body_channel
                && let Some(c) = self
                    .contents
                    .iter_mut()
                    .find(|c| c.channel == ch && c.dir == dir)
            {
                c.ex.add_anomaly(Anomaly::Gap.name());
                c.ex.status = Status::Incomplete;
                c.received += len;
            }
            return;
        }
        // Framing lost: resynchronisation on a frame boundary cannot be told from data, so
        // the flow's dissection ends here with what is in flight reported.
        *r = Reader::default();
        self.flush(out);
        self.readers[dir.index()].skip_left = u64::MAX;
        self.readers[dir.index()].body_channel = None;
    }

    fn close(&mut self, _ts: u64, out: &mut Emitter<'_>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests;
