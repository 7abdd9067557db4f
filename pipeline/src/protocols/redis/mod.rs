//! Redis: RESP2 and RESP3 (maps, sets, doubles, big numbers, verbatim strings, attributes,
//! pushes), inline commands, pipelining, pub/sub, `CLIENT REPLY OFF|SKIP|ON`.
//!
//! Hand-written, resumable RESP scanner rather than the `redis-protocol` crate: the crate
//! decodes whole frames into owned values, so a 100 MB bulk string or a million-element reply
//! would have to be buffered whole. The scanner keeps only its position (a stack of remaining
//! element counts, at most [`MAX_DEPTH`] deep) and the current line (at most [`MAX_LINE`]
//! bytes); bulk payloads are skipped as they stream past, and only the first bytes of the
//! first [`KEEP_ARGS`] command arguments are looked at (for the command and sub-command names).
//!
//! Exchanges: one per command as sent, paired in order with its reply (FIFO, at most
//! `pairing::DEFAULT_IN_FLIGHT` in flight). Replies that are pushes (RESP3 `>` frames, or
//! RESP2 `message`/`pmessage`/`smessage` arrays) are one-way exchanges; the first
//! `subscribe`-family confirmation answers the SUBSCRIBE that asked for it, later ones are
//! not exchanges. Commands sent under `CLIENT REPLY OFF` or right after `CLIENT REPLY SKIP`
//! get no reply by design and are emitted at once (status `ok`, no response fields).
//!
//! `db.query.text` keeps the command (and the sub-command of container commands such as
//! `CLIENT` or `CONFIG`) and replaces every other argument by `?`, so `AUTH` and
//! `HELLO … AUTH` passwords never reach an event. Bytes that are not RESP end dissection of
//! the flow (`Progress::Error`), counted by the flow layer.

use schemas::l7::db::{Db, DbQuery, DbResponse, DbSystem, Named, Redis, RedisResponse};
use schemas::{Exchange, Protocol, Status, Transport};

use crate::dissect::entry::Detection;
use crate::dissect::entry::ProtocolEntry;
use crate::dissect::pairing::{DEFAULT_IN_FLIGHT, Fifo};
use crate::dissect::{Direction, DissectError, Dissector, Emitter, FlowMeta, Progress};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadLength = "redis.bad_length",
        Gap = "redis.gap",
        LineTooLong = "redis.line_too_long",
        NotResp = "redis.not_resp",
        ResponseWithoutRequest = "redis.response_without_request",
        TooDeep = "redis.too_deep",
    }
}

/// Deepest aggregate nesting followed.
pub const MAX_DEPTH: usize = 32;
/// Longest line (simple string, error, number, inline command).
pub const MAX_LINE: usize = 64 * 1024;
/// Command arguments looked at (command, sub-command, and the mode of `CLIENT REPLY`).
const KEEP_ARGS: usize = 3;
/// Bytes of one kept argument.
const KEEP_ARG_BYTES: usize = 64;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Redis,
    tcp: true,
    udp: false,
    ports: &[6379, 6380, 26379],
    detect,
    new: |_meta: &FlowMeta| Box::new(RedisDissector::new()),
};

/// Commands recognised in the inline (telnet) form.
const INLINE: &[&str] = &[
    "PING",
    "ECHO",
    "GET",
    "SET",
    "DEL",
    "EXISTS",
    "INCR",
    "DECR",
    "KEYS",
    "INFO",
    "AUTH",
    "HELLO",
    "SELECT",
    "QUIT",
    "MGET",
    "MSET",
    "EXPIRE",
    "TTL",
    "TYPE",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "LRANGE",
    "SADD",
    "SMEMBERS",
    "HGET",
    "HSET",
    "HGETALL",
    "SUBSCRIBE",
    "PUBLISH",
    "FLUSHALL",
    "FLUSHDB",
    "DBSIZE",
    "CLIENT",
    "CONFIG",
    "COMMAND",
    "MONITOR",
    "SCAN",
];

/// Commands whose first argument is a sub-command kept in `db.query.text`.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY",
    "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

fn detect(data: &[u8], _t: Transport, hinted: bool) -> Detection {
    // A RESP request: `*<n>\r\n$<len>\r\n`.
    if data.first() == Some(&b'*') {
        let digits = data[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = &data[1 + digits..];
        if digits == 0 || digits > 7 {
            return if data.len() == 1 {
                Detection::NeedMore
            } else {
                Detection::No
            };
        }
        return match rest {
            [] | [b'\r'] | [b'\r', b'\n'] => Detection::NeedMore,
            [b'\r', b'\n', b'$', ..] => Detection::FromClient,
            _ => Detection::No,
        };
    }
    // On a Redis port, a capture that starts with a reply: a RESP type byte and a whole line.
    if hinted
        && data.first().is_some_and(|b| b"+-:$%~>_,#(=!|".contains(b))
        && line(data).is_some_and(|(l, _)| l.len() > 1 || l == b"_")
    {
        return Detection::FromServer;
    }
    // An inline command: a command word followed by a space or the line end (any word on a
    // Redis port, a known command elsewhere).
    let word_len = data
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if word_len == 0 || word_len > 32 || !data[0].is_ascii_alphabetic() {
        return Detection::No;
    }
    let word = &data[..word_len];
    let known = hinted
        || INLINE
            .iter()
            .any(|c| c.as_bytes().eq_ignore_ascii_case(word));
    let prefix_of_known = || {
        INLINE
            .iter()
            .any(|c| c.len() >= word_len && c.as_bytes()[..word_len].eq_ignore_ascii_case(word))
    };
    match data.get(word_len) {
        Some(b' ') | Some(b'\r') | Some(b'\n') if known => Detection::FromClient,
        None if hinted || prefix_of_known() => Detection::NeedMore,
        _ => Detection::No,
    }
}

/// Scanner state of one direction; survives between feeds.
#[derive(Debug, Default)]
struct Scan {
    /// Elements still to read at each open aggregate level.
    stack: Vec<u64>,
    /// Bytes of the bulk payload (plus its CRLF) still to skip.
    bulk_left: u64,
    /// The bulk being skipped is a kept argument / head (index into `args`).
    bulk_keep: bool,
    /// Attribute maps open (their elements do not complete the element they precede).
    attr_depth: Vec<usize>,
    /// Type byte of the top-level frame (after any attribute).
    top: Option<u8>,
    /// First arguments (requests) or the first string of a top-level aggregate (replies).
    args: Vec<Vec<u8>>,
    /// Arguments counted (requests).
    nargs: u64,
    /// Error text of an error reply (first word kept).
    error: Option<String>,
    start_ts: Option<u64>,
    /// Bytes of this message were lost in a gap (inside a bulk payload).
    lost: bool,
}

impl Scan {
    fn reset(&mut self) {
        self.lost = false;
        self.stack.clear();
        self.bulk_left = 0;
        self.bulk_keep = false;
        self.attr_depth.clear();
        self.top = None;
        self.args.clear();
        self.nargs = 0;
        self.error = None;
        self.start_ts = None;
    }
}

/// A finished top-level message.
struct Message {
    top: u8,
    args: Vec<Vec<u8>>,
    nargs: u64,
    error: Option<String>,
    start_ts: u64,
    lost: bool,
}

enum Step {
    /// Consumed this many bytes; a top-level message may be complete.
    Advance(usize, Option<Message>),
    NeedMore,
    Bad(Anomaly),
}

fn line(data: &[u8]) -> Option<(&[u8], usize)> {
    let eol = data.iter().position(|&b| b == b'\n')?;
    let l = &data[..eol];
    Some((l.strip_suffix(b"\r").unwrap_or(l), eol + 1))
}

fn parse_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

impl Scan {
    /// One element has been read completely at the current level.
    fn element_done(&mut self, ts: u64) -> Option<Message> {
        loop {
            match self.stack.last_mut() {
                None => {
                    return Some(Message {
                        top: self.top.unwrap_or(b'?'),
                        args: std::mem::take(&mut self.args),
                        nargs: self.nargs,
                        error: self.error.take(),
                        start_ts: self.start_ts.take().unwrap_or(ts),
                        lost: self.lost,
                    })
                    .inspect(|_| self.reset());
                }
                Some(n) => {
                    *n -= 1;
                    if *n > 0 {
                        return None;
                    }
                    self.stack.pop();
                    if self.attr_depth.last() == Some(&self.stack.len()) {
                        // An attribute map ended: it precedes an element, it is not one.
                        self.attr_depth.pop();
                        return None;
                    }
                }
            }
        }
    }

    fn keep_arg(&self) -> bool {
        self.args.len() < KEEP_ARGS && self.stack.len() <= 1 && self.attr_depth.is_empty()
    }

    /// Read one item (or skip part of a bulk payload).
    fn step(&mut self, data: &[u8], request: bool, ts: u64) -> Step {
        if self.bulk_left > 0 {
            let n = (data.len() as u64).min(self.bulk_left) as usize;
            if self.bulk_keep
                && let Some(a) = self.args.last_mut()
            {
                let room = KEEP_ARG_BYTES.saturating_sub(a.len());
                a.extend_from_slice(&data[..n.min(room)]);
            }
            self.bulk_left -= n as u64;
            if self.bulk_left == 0 {
                if let Some(a) = self.args.last_mut().filter(|_| self.bulk_keep) {
                    // The payload's CRLF was kept with it when short.
                    while a.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        a.pop();
                    }
                }
                self.bulk_keep = false;
                return Step::Advance(n, self.element_done(ts));
            }
            return Step::Advance(n, None);
        }
        let Some((l, used)) = line(data) else {
            return if data.len() > MAX_LINE {
                Step::Bad(Anomaly::LineTooLong)
            } else {
                Step::NeedMore
            };
        };
        if self.start_ts.is_none() {
            self.start_ts = Some(ts);
        }
        let Some(&kind) = l.first() else {
            // An empty line between commands (telnet clients send them).
            return Step::Advance(used, None);
        };
        let top_level = self.stack.is_empty() && self.attr_depth.is_empty();
        if top_level && kind != b'|' {
            self.top = Some(kind);
        }
        let body = &l[1..];
        match kind {
            b'+' | b':' | b'_' | b',' | b'#' | b'(' | b'-' => {
                if kind == b'-' && top_level {
                    self.error = Some(String::from_utf8_lossy(body).into_owned());
                }
                if (kind == b'+') && self.keep_arg() && !request {
                    self.args
                        .push(body.iter().take(KEEP_ARG_BYTES).copied().collect());
                }
                Step::Advance(used, self.element_done(ts))
            }
            b'$' | b'=' | b'!' => match parse_int(body) {
                Some(-1) => Step::Advance(used, self.element_done(ts)),
                Some(n) if n >= 0 => {
                    if request && self.stack.len() <= 1 {
                        self.nargs += 1;
                    }
                    self.bulk_keep = self.keep_arg() || (kind == b'!' && top_level);
                    if self.bulk_keep {
                        self.args.push(Vec::new());
                    }
                    self.bulk_left = n as u64 + 2;
                    Step::Advance(used, None)
                }
                _ => Step::Bad(Anomaly::BadLength),
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => match parse_int(body) {
                Some(-1) => Step::Advance(used, self.element_done(ts)),
                Some(0) if kind != b'|' => Step::Advance(used, self.element_done(ts)),
                Some(n) if n >= 0 => {
                    if self.stack.len() >= MAX_DEPTH {
                        return Step::Bad(Anomaly::TooDeep);
                    }
                    let n = n as u64;
                    let count = if matches!(kind, b'%' | b'|') {
                        n.saturating_mul(2)
                    } else {
                        n
                    };
                    if kind == b'|' {
                        self.attr_depth.push(self.stack.len());
                        if count == 0 {
                            self.attr_depth.pop();
                            return Step::Advance(used, None);
                        }
                    }
                    self.stack.push(count);
                    Step::Advance(used, None)
                }
                _ => Step::Bad(Anomaly::BadLength),
            },
            _ if request && top_level => {
                // Inline command: words separated by spaces.
                let words: Vec<&[u8]> = l.split(|b| *b == b' ').filter(|w| !w.is_empty()).collect();
                if words.is_empty() {
                    return Step::Advance(used, None);
                }
                self.top = Some(b'i');
                self.nargs = words.len() as u64;
                self.args = words
                    .iter()
                    .take(KEEP_ARGS)
                    .map(|w| w.iter().take(KEEP_ARG_BYTES).copied().collect())
                    .collect();
                Step::Advance(used, self.element_done(ts))
            }
            _ => Step::Bad(Anomaly::NotResp),
        }
    }
}

/// A command waiting for its reply.
struct Pending {
    ex: Exchange,
    /// Upper-case command name.
    op: String,
}

/// Redis dissector state for one connection.
pub struct RedisDissector {
    scans: [Scan; 2],
    pending: Fifo<Pending>,
    /// `CLIENT REPLY OFF` in force.
    reply_off: bool,
    /// `CLIENT REPLY SKIP`: the next command gets no reply.
    skip_next: bool,
}

impl Default for RedisDissector {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisDissector {
    pub fn new() -> Self {
        RedisDissector {
            scans: [Scan::default(), Scan::default()],
            pending: Fifo::new(DEFAULT_IN_FLIGHT),
            reply_off: false,
            skip_next: false,
        }
    }

    fn upper(arg: Option<&Vec<u8>>) -> String {
        arg.map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
            .unwrap_or_default()
    }

    fn request(&mut self, m: Message, ts: u64, out: &mut Emitter<'_>) {
        let op = Self::upper(m.args.first());
        if op.is_empty() {
            return;
        }
        let sub = Self::upper(m.args.get(1));
        let expects_reply = self.expects_reply(&op, &sub, &m);
        let keep_sub = CONTAINERS.contains(&op.as_str()) && !sub.is_empty();
        let mut text = op.clone();
        if keep_sub {
            text.push(' ');
            text.push_str(&sub);
        }
        let shown = 1 + u64::from(keep_sub);
        for _ in shown..m.nargs.max(shown) {
            text.push_str(" ?");
        }
        let mut ex = out.exchange(Protocol::Redis, m.start_ts);
        ex.end_time_unix_nano = ts;
        if m.lost {
            ex.status = Status::Incomplete;
            ex.add_anomaly(Anomaly::Gap.name());
        }
        ex.db = Some(Box::new(Db {
            system: DbSystem {
                name: "redis".into(),
            },
            operation: Some(Named { name: op.clone() }),
            query: Some(DbQuery { text }),
            response: None,
            ..Db::default()
        }));
        if !expects_reply {
            out.emit(ex);
            return;
        }
        if let Some(old) = self.pending.push(Pending { ex, op }) {
            out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
            let mut ex = old.ex;
            ex.status = Status::NoResponse;
            out.emit(ex);
        }
    }

    fn reply(&mut self, m: Message, ts: u64, out: &mut Emitter<'_>) {
        let head = m
            .args
            .first()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .unwrap_or_default();
        let is_push_msg = m.top == b'>' && !head.ends_with("subscribe")
            || (m.top == b'*' && matches!(head.as_str(), "message" | "pmessage" | "smessage"));
        if is_push_msg {
            let mut ex = out.exchange(Protocol::Redis, m.start_ts);
            ex.end_time_unix_nano = ts;
            ex.db = Some(Box::new(Db {
                system: DbSystem {
                    name: "redis".into(),
                },
                operation: Some(Named {
                    name: head.to_ascii_uppercase(),
                }),
                query: None,
                response: None,
                ..Db::default()
            }));
            ex.redis = Some(Redis {
                response: Some(RedisResponse {
                    rtype: "push".into(),
                }),
            });
            out.emit(ex);
            return;
        }
        if head.ends_with("subscribe") && matches!(m.top, b'>' | b'*') {
            // A (un)subscribe confirmation: it answers the front command only if that is a
            // subscribe-family command; further confirmations are not exchanges.
            let answers = self
                .pending
                .front_mut()
                .is_some_and(|p| p.op.ends_with("SUBSCRIBE"));
            if !answers {
                return;
            }
        }
        let Some(p) = self.pending.pop() else {
            out.anomaly(Anomaly::ResponseWithoutRequest);
            return;
        };
        let mut ex = p.ex;
        ex.end_time_unix_nano = ts;
        let rtype = match m.top {
            b'+' => "simple_string",
            b'-' => "error",
            b':' => "integer",
            b'$' => "bulk_string",
            b'*' => "array",
            b'_' => "null",
            b'%' => "map",
            b'~' => "set",
            b',' => "double",
            b'#' => "boolean",
            b'(' => "big_number",
            b'=' => "verbatim_string",
            b'!' => "bulk_error",
            b'>' => "push",
            _ => "unknown",
        };
        let error = match m.top {
            b'-' => m.error,
            b'!' => m
                .args
                .first()
                .map(|a| String::from_utf8_lossy(a).into_owned()),
            _ => None,
        };
        if let Some(e) = error {
            let prefix = e.split(' ').next().unwrap_or("").to_string();
            ex.status = Status::Error;
            if let Some(db) = ex.db.as_mut() {
                db.response = Some(DbResponse {
                    status_code: Some(prefix),
                    ..DbResponse::default()
                });
            }
        }
        if m.lost {
            ex.status = Status::Incomplete;
            ex.add_anomaly(Anomaly::Gap.name());
        }
        ex.redis = Some(Redis {
            response: Some(RedisResponse {
                rtype: rtype.into(),
            }),
        });
        out.emit(ex);
    }

    fn run(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        let request = dir == Direction::ToServer;
        let mut pos = 0;
        while pos < data.len() {
            let step = self.scans[dir.index()].step(&data[pos..], request, ts);
            match step {
                Step::Advance(n, msg) => {
                    pos += n;
                    if let Some(m) = msg {
                        if request {
                            self.request(m, ts, out);
                        } else {
                            self.reply(m, ts, out);
                        }
                    }
                }
                Step::NeedMore => {
                    return Progress::Incomplete {
                        consumed: pos,
                        needed: 1,
                    };
                }
                Step::Bad(a) => {
                    out.anomaly(a);
                    self.flush(out);
                    return Progress::Error(DissectError {
                        protocol: Protocol::Redis,
                        reason: a.name(),
                    });
                }
            }
        }
        Progress::Done
    }

    /// Will the server answer this command? `CLIENT REPLY OFF` (and every command after it
    /// until `CLIENT REPLY ON`) gets no reply; `CLIENT REPLY SKIP` gets none and neither does
    /// the command after it.
    fn expects_reply(&mut self, op: &str, sub: &str, m: &Message) -> bool {
        if op == "CLIENT" && sub == "REPLY" {
            match Self::upper(m.args.get(2)).as_str() {
                "OFF" => {
                    self.reply_off = true;
                    return false;
                }
                "SKIP" => {
                    self.skip_next = true;
                    return false;
                }
                "ON" => {
                    self.reply_off = false;
                    self.skip_next = false;
                    return true;
                }
                _ => {}
            }
        }
        !self.reply_off && !std::mem::take(&mut self.skip_next)
    }

    /// Commands still waiting: no reply came.
    fn flush(&mut self, out: &mut Emitter<'_>) {
        for p in self.pending.drain().collect::<Vec<_>>() {
            let mut ex = p.ex;
            ex.status = Status::NoResponse;
            out.emit(ex);
        }
    }
}

impl Dissector for RedisDissector {
    fn held_bytes(&self) -> usize {
        let scans: usize = self
            .scans
            .iter()
            .map(|s| {
                s.stack.capacity() * 8
                    + s.attr_depth.capacity() * 8
                    + s.args.iter().map(|a| a.capacity() + 24).sum::<usize>()
                    + s.error.as_ref().map_or(0, String::capacity)
            })
            .sum();
        scans
            + self
                .pending
                .held_bytes(|_| crate::dissect::EXCHANGE_ESTIMATE)
    }

    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        self.run(dir, data, ts, out)
    }

    fn gap(&mut self, dir: Direction, len: u64, _ts: u64, out: &mut Emitter<'_>) {
        out.anomaly(Anomaly::Gap);
        let scan = &mut self.scans[dir.index()];
        if len < scan.bulk_left {
            // Lost inside a bulk payload: the framing holds; the message is incomplete.
            scan.bulk_left -= len;
            scan.lost = true;
            return;
        }
        // Framing lost: what is in flight on this side is gone. Replies lost with it would
        // shift the pairing, so the waiting commands are reported as incomplete.
        scan.reset();
        if dir == Direction::ToClient {
            for p in self.pending.drain().collect::<Vec<_>>() {
                let mut ex = p.ex;
                ex.status = Status::Incomplete;
                ex.add_anomaly(Anomaly::Gap.name());
                out.emit(ex);
            }
        }
    }

    fn close(&mut self, _ts: u64, out: &mut Emitter<'_>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests;
