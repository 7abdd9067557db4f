//! PostgreSQL frontend/backend protocol 3 (PostgreSQL 7.4 and later).
//!
//! Hand-written: the protocol is a type byte and a length per message, and no crate decodes
//! both directions of a captured connection (the client crates speak it, they do not watch
//! it). SQL text goes through [`crate::dissect::sql`] (literals as `?`).
//!
//! Exchanges (ARCHITECTURE.md §4):
//! - the startup: `StartupMessage` (user, database, application name) to the first
//!   `ReadyForQuery`, or the `ErrorResponse` that refuses it (`28P01`): operation `STARTUP`.
//!   The authentication messages (passwords, SASL) are skipped unread, both ways;
//! - an `SSLRequest` answered `S` makes the connection a TLS one: its handshake is reported as
//!   a `tls` exchange (the TLS dissector, fed from here) and the rest is not looked at; a
//!   `GSSENCRequest` answered `G` is GSSAPI encryption: counted (`postgresql.gss_encrypted`)
//!   and skipped; answered `N`, either goes on in the clear;
//! - a simple `Query`: one exchange to its `ReadyForQuery` (several statements in one query
//!   are one exchange, named by the first), with the rows it returned, the last
//!   `CommandComplete` tag, an error's SQLSTATE and message, and its notices;
//! - the extended protocol: one exchange per `Execute`, named by the SQL its statement was
//!   `Parse`d with (named statements remembered per connection, at most
//!   [`MAX_STATEMENTS`]); `Parse`/`Bind`/`Describe`/`Close`/`Sync` are matched to their
//!   replies in order, pipelined or not. An error fails the message it answers (a `Parse`
//!   that fails is reported with its SQL) and the server skips the rest up to `Sync`;
//! - `COPY … FROM STDIN` / `TO STDOUT`: part of its query's exchange; `CopyData` is counted
//!   as it passes (`postgresql.copy_bytes`), never buffered; so are `DataRow`s;
//! - a `CancelRequest` is a one-way exchange (`CANCEL`); `Terminate` ends nothing.
//!
//! Limits: a message other than `DataRow` and `CopyData` larger than [`MAX_MESSAGE`] is
//! skipped as it streams past (`postgresql.message_too_large`: its exchange loses its SQL or
//! error text); [`DEFAULT_IN_FLIGHT`] client messages awaiting their reply (the oldest is
//! reported `no_response` past it); 16 notices per exchange. Bytes that are not messages end
//! dissection of the flow (`postgresql.bad_message`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use schemas::l7::db::{
    Db, DbCollection, DbQuery, DbResponse, DbSystem, Named, Postgresql, PostgresqlMessage,
};
use schemas::{Exchange, Protocol, Status, Transport};

use crate::dissect::entry::{Detection, ProtocolEntry};
use crate::dissect::pairing::DEFAULT_IN_FLIGHT;
use crate::dissect::sql::{self, Summary};
use crate::dissect::{
    Direction, DissectError, Dissector, EXCHANGE_ESTIMATE, Emitter, FlowMeta, Progress,
};
use crate::protocols::tls::TlsDissector;
use crate::wire::{be32, cstr};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadMessage = "postgresql.bad_message",
        Gap = "postgresql.gap",
        GssEncrypted = "postgresql.gss_encrypted",
        MessageTooLarge = "postgresql.message_too_large",
        UnexpectedReply = "postgresql.unexpected_reply",
    }
}

/// Largest message read whole (SQL, errors, parameters); larger ones stream past.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Named prepared statements (and portals) remembered per connection, each as its SQL with
/// the literals hidden (at most `sql::MAX_TEXT` bytes).
pub const MAX_STATEMENTS: usize = 256;
/// Notices kept per exchange.
pub const MAX_NOTICES: usize = 16;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Postgresql,
    tcp: true,
    udp: false,
    ports: &[5432],
    detect,
    new: |_meta: &FlowMeta| Box::new(PostgresqlDissector::default()),
};

/// A startup-phase message: length, then a code (protocol 3.x or a request), with the
/// startup's parameters as NUL-terminated pairs ending in an empty name.
fn detect(data: &[u8], t: Transport, _hinted: bool) -> Detection {
    if t != Transport::Tcp {
        return Detection::No;
    }
    let (Some(len), Some(code)) = (be32(data, 0), be32(data, 4)) else {
        return if data.len() < 8 && data.iter().take(2).all(|b| *b == 0) {
            Detection::NeedMore
        } else {
            Detection::No
        };
    };
    let len = len as usize;
    match code {
        SSL_REQUEST | GSSENC_REQUEST if len == 8 => Detection::FromClient,
        CANCEL_REQUEST if len == 16 => Detection::FromClient,
        c if c >> 16 == 3 && (9..=10_000).contains(&len) => {
            let Some(body) = data.get(8..len) else {
                return Detection::NeedMore;
            };
            // Pairs of C strings ending in an empty one, naming the user.
            let ok = body.last() == Some(&0)
                && body.split(|b| *b == 0).any(|k| k == b"user")
                && body
                    .iter()
                    .all(|b| *b == 0 || (0x20..0x7f).contains(b) || *b >= 0x80);
            if ok {
                Detection::FromClient
            } else {
                Detection::No
            }
        }
        _ => Detection::No,
    }
}

/// A client message awaiting its reply.
#[derive(Debug)]
enum Pending {
    /// A simple query: its exchange ends at `ReadyForQuery`.
    Query(Box<Exchange>),
    /// `Parse` of this SQL (literals hidden) into a statement.
    Parse {
        sql: Option<Arc<Summary>>,
        ts: u64,
    },
    Bind,
    Describe,
    Close,
    /// `Execute`: its exchange ends at `CommandComplete`, `EmptyQueryResponse`,
    /// `PortalSuspended` or an error.
    Execute(Box<Exchange>),
    Sync,
}

/// Where the connection is.
#[derive(Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's first message.
    #[default]
    Startup,
    /// An SSLRequest (or GSSENCRequest, `gss`) waits for its one-byte answer.
    Negotiating {
        gss: bool,
    },
    /// The startup runs (authentication): its exchange ends at `ReadyForQuery`.
    Authenticating,
    Ready,
}

/// PostgreSQL dissector state for one connection.
#[derive(Debug, Default)]
pub struct PostgresqlDissector {
    phase: Phase,
    /// After an `SSLRequest` answered `S`: the TLS handshake's dissector.
    tls: Option<Box<TlsDissector>>,
    startup: Option<Box<Exchange>>,
    database: Option<String>,
    pending: VecDeque<Pending>,
    /// Statement name → its SQL (the unnamed one is "").
    statements: HashMap<String, Arc<Summary>>,
    /// Portal name → its statement's SQL.
    portals: HashMap<String, Arc<Summary>>,
    /// Bytes of a streamed message still to pass, per direction.
    skip: [usize; 2],
    /// After an error in the extended protocol the server ignores the client's messages until
    /// `Sync`: so does this.
    discarding: bool,
    done: bool,
}

/// One message of `data` at `at`: type, body, total length; `None` when incomplete.
fn message(data: &[u8], at: usize) -> Option<(u8, usize)> {
    let kind = *data.get(at)?;
    let len = be32(data, at + 1)? as usize;
    Some((kind, len))
}

/// An ErrorResponse or NoticeResponse body: (field type, value) pairs ending in 0.
fn fields(mut b: &[u8]) -> PostgresqlMessage {
    let mut m = PostgresqlMessage::default();
    while let Some((&kind, rest)) = b.split_first() {
        if kind == 0 {
            break;
        }
        let Some((value, rest)) = cstr(rest) else {
            break;
        };
        match kind {
            b'V' => m.severity = value,
            b'S' if m.severity.is_empty() => m.severity = value,
            b'C' => m.code = value,
            b'M' => m.message = value,
            _ => {}
        }
        b = rest;
    }
    m
}

impl PostgresqlDissector {
    fn db(&self, op: Option<String>) -> Db {
        Db {
            system: DbSystem {
                name: "postgresql".into(),
            },
            operation: op.map(|name| Named { name }),
            namespace: self.database.clone(),
            ..Db::default()
        }
    }

    /// A new exchange for `sql` (`None`: a statement whose SQL was not seen).
    fn statement(&self, sql: Option<&Summary>, ts: u64, out: &mut Emitter<'_>) -> Box<Exchange> {
        let mut ex = out.exchange(Protocol::Postgresql, ts);
        let mut db = self.db(sql.and_then(|s| s.operation.clone()));
        if let Some(s) = sql {
            db.query = Some(DbQuery {
                text: s.text.clone(),
            });
            db.collection = s.collection.clone().map(|name| DbCollection { name });
        }
        ex.db = Some(Box::new(db));
        ex.postgresql = Some(Box::new(Postgresql::default()));
        Box::new(ex)
    }

    fn push(&mut self, p: Pending, out: &mut Emitter<'_>) {
        if self.pending.len() >= DEFAULT_IN_FLIGHT
            && let Some(old) = self.pending.pop_front()
        {
            out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
            if let Pending::Query(mut ex) | Pending::Execute(mut ex) = old {
                ex.status = Status::NoResponse;
                out.emit(*ex);
            }
        }
        self.pending.push_back(p);
    }

    /// The exchange the server's current reply belongs to.
    fn current(&mut self) -> Option<&mut Exchange> {
        match self.pending.front_mut()? {
            Pending::Query(ex) | Pending::Execute(ex) => Some(ex),
            _ => None,
        }
    }

    fn finish(ex: Box<Exchange>, ts: u64, out: &mut Emitter<'_>) {
        let mut ex = *ex;
        ex.end_time_unix_nano = ts.max(ex.start_time_unix_nano);
        out.emit(ex);
    }

    /// A whole message from the client.
    fn client(&mut self, kind: u8, body: &[u8], ts: u64, out: &mut Emitter<'_>) {
        if self.discarding {
            if kind != b'S' {
                return;
            }
            self.discarding = false;
        }
        match kind {
            b'Q' => {
                let sql = cstr(body).map(|(s, _)| sql::summarize(&s));
                let ex = self.statement(sql.as_ref(), ts, out);
                self.push(Pending::Query(ex), out);
            }
            b'P' => {
                let Some((name, rest)) = cstr(body) else {
                    return;
                };
                // Read once (literals hidden) and shared by its portals and executions.
                let sql = cstr(rest).map(|(s, _)| Arc::new(sql::summarize(&s)));
                // Known from now on: a pipelining client binds and executes it before the
                // server's ParseComplete (a Parse that fails makes the server skip those).
                if let Some(summary) = &sql
                    && (self.statements.len() < MAX_STATEMENTS
                        || self.statements.contains_key(&name))
                {
                    self.statements.insert(name, Arc::clone(summary));
                }
                self.push(Pending::Parse { sql, ts }, out);
            }
            b'B' => {
                if let Some((portal, rest)) = cstr(body)
                    && let Some((stmt, _)) = cstr(rest)
                    && let Some(sql) = self.statements.get(&stmt).cloned()
                    && (self.portals.len() < MAX_STATEMENTS || self.portals.contains_key(&portal))
                {
                    self.portals.insert(portal, sql);
                }
                self.push(Pending::Bind, out);
            }
            b'D' => self.push(Pending::Describe, out),
            b'C' => self.push(Pending::Close, out),
            b'E' => {
                let portal = cstr(body).map(|(p, _)| p).unwrap_or_default();
                let sql = self.portals.get(&portal).cloned();
                let ex = self.statement(sql.as_deref(), ts, out);
                self.push(Pending::Execute(ex), out);
            }
            b'S' => self.push(Pending::Sync, out),
            // Flush, CopyData (streamed), CopyDone, CopyFail, Terminate, FunctionCall and the
            // authentication responses ('p': never read).
            _ => {}
        }
    }

    /// A whole message from the server.
    fn server(&mut self, kind: u8, body: &[u8], ts: u64, out: &mut Emitter<'_>) {
        if self.phase == Phase::Authenticating {
            match kind {
                b'Z' => {
                    self.phase = Phase::Ready;
                    if let Some(ex) = self.startup.take() {
                        Self::finish(ex, ts, out);
                    }
                }
                b'E' => {
                    let m = fields(body);
                    if let Some(mut ex) = self.startup.take() {
                        ex.status = Status::Error;
                        Self::fail(&mut ex, m);
                        Self::finish(ex, ts, out);
                    }
                }
                _ => {}
            }
            return;
        }
        match kind {
            b'1' => self.pop_if(|p| matches!(p, Pending::Parse { .. })),
            b'2' => self.pop_if(|p| matches!(p, Pending::Bind)),
            b'3' => self.pop_if(|p| matches!(p, Pending::Close)),
            b'n' | b'T' => self.pop_if(|p| matches!(p, Pending::Describe)),
            b'C' | b'I' | b's' => {
                let tag = cstr(body).map(|(t, _)| t).filter(|_| kind == b'C');
                if let Some(ex) = self.current()
                    && let Some(pg) = ex.postgresql.as_mut()
                    && tag.is_some()
                {
                    pg.command_tag = tag;
                }
                if matches!(self.pending.front(), Some(Pending::Execute(_)))
                    && let Some(Pending::Execute(ex)) = self.pending.pop_front()
                {
                    Self::finish(ex, ts, out);
                }
            }
            b'E' => self.error(fields(body), ts, out),
            b'N' => {
                let m = fields(body);
                if let Some(ex) = self.current()
                    && let Some(pg) = ex.postgresql.as_mut()
                    && pg.notices.len() < MAX_NOTICES
                {
                    pg.notices.push(m);
                }
            }
            b'Z' => self.ready(ts, out),
            // ParameterDescription, CopyIn/Out/Both responses, CopyDone, ParameterStatus,
            // BackendKeyData, NotificationResponse, NegotiateProtocolVersion: nothing to
            // report on their own.
            _ => {}
        }
    }

    fn pop_if(&mut self, f: impl Fn(&Pending) -> bool) {
        if self.pending.front().is_some_and(f) {
            self.pending.pop_front();
        }
    }

    fn fail(ex: &mut Exchange, m: PostgresqlMessage) {
        ex.status = Status::Error;
        if let Some(db) = ex.db.as_mut() {
            let r = db.response.get_or_insert_with(DbResponse::default);
            r.status_code = Some(m.code.clone());
        }
        if let Some(pg) = ex.postgresql.as_mut() {
            pg.error = Some(m);
        }
    }

    /// An ErrorResponse: fails what it answers; in the extended protocol the server then skips
    /// to `Sync`.
    fn error(&mut self, m: PostgresqlMessage, ts: u64, out: &mut Emitter<'_>) {
        match self.pending.pop_front() {
            Some(Pending::Query(mut ex)) => {
                // Its exchange still ends at ReadyForQuery.
                Self::fail(&mut ex, m);
                self.pending.push_front(Pending::Query(ex));
                return;
            }
            Some(Pending::Execute(mut ex)) => {
                Self::fail(&mut ex, m);
                Self::finish(ex, ts, out);
            }
            Some(Pending::Parse { sql, ts: start, .. }) => {
                let mut ex = self.statement(sql.as_deref(), start, out);
                Self::fail(&mut ex, m);
                Self::finish(ex, ts, out);
            }
            Some(Pending::Sync) => {
                // An error outside any statement: the Sync still waits for its ReadyForQuery.
                self.pending.push_front(Pending::Sync);
                out.anomaly(Anomaly::UnexpectedReply);
                return;
            }
            Some(_) => {}
            None => {
                out.anomaly(Anomaly::UnexpectedReply);
                return;
            }
        }
        // Skipped by the server up to the next Sync: never answered, not reported (those still
        // to come too).
        while let Some(p) = self.pending.front() {
            if matches!(p, Pending::Sync | Pending::Query(_)) {
                break;
            }
            self.pending.pop_front();
        }
        if self.pending.is_empty() {
            self.discarding = true;
        }
    }

    /// ReadyForQuery: ends the simple query or the Sync it answers (and anything the server
    /// passed over before it).
    fn ready(&mut self, ts: u64, out: &mut Emitter<'_>) {
        while let Some(p) = self.pending.pop_front() {
            match p {
                Pending::Query(ex) => {
                    Self::finish(ex, ts, out);
                    return;
                }
                Pending::Sync => return,
                Pending::Execute(mut ex) => {
                    ex.status = Status::NoResponse;
                    Self::finish(ex, ts, out);
                }
                _ => {}
            }
        }
    }

    /// The startup message (or a request) from the client.
    fn startup(&mut self, code: u32, body: &[u8], ts: u64, out: &mut Emitter<'_>) {
        match code {
            SSL_REQUEST => self.phase = Phase::Negotiating { gss: false },
            GSSENC_REQUEST => self.phase = Phase::Negotiating { gss: true },
            CANCEL_REQUEST => {
                let mut ex = out.exchange(Protocol::Postgresql, ts);
                ex.db = Some(Box::new(self.db(Some("CANCEL".into()))));
                out.emit(ex);
                self.done = true;
            }
            _ => {
                let mut params = HashMap::new();
                let mut rest = body;
                while let Some((k, tail)) = cstr(rest) {
                    if k.is_empty() {
                        break;
                    }
                    let Some((v, tail)) = cstr(tail) else { break };
                    if matches!(k.as_str(), "user" | "database" | "application_name") {
                        params.insert(k, v);
                    }
                    rest = tail;
                }
                let user = params.remove("user");
                // The database defaults to the user's name.
                self.database = params.remove("database").or_else(|| user.clone());
                let mut ex = out.exchange(Protocol::Postgresql, ts);
                ex.db = Some(Box::new(self.db(Some("STARTUP".into()))));
                ex.postgresql = Some(Box::new(Postgresql {
                    user,
                    application_name: params.remove("application_name"),
                    ..Postgresql::default()
                }));
                self.startup = Some(Box::new(ex));
                self.phase = Phase::Authenticating;
            }
        }
    }

    fn bad(&mut self, out: &mut Emitter<'_>) -> Progress {
        out.anomaly(Anomaly::BadMessage);
        self.close_all(0, out);
        Progress::Error(DissectError {
            protocol: Protocol::Postgresql,
            reason: "not a PostgreSQL message",
        })
    }

    /// Report everything open as unanswered (or cut, with `status`), at `ts`.
    fn close_all(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(mut ex) = self.startup.take() {
            ex.status = Status::NoResponse;
            Self::finish(ex, ts, out);
        }
        for p in self.pending.drain(..) {
            if let Pending::Query(mut ex) | Pending::Execute(mut ex) = p {
                if ex.status == Status::Ok {
                    ex.status = Status::NoResponse;
                }
                Self::finish(ex, ts, out);
            }
        }
    }
}

impl Dissector for PostgresqlDissector {
    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        if let Some(t) = self.tls.as_mut() {
            let p = t.feed(dir, data, ts, out);
            if matches!(p, Progress::Finished | Progress::Error(_)) {
                self.done = true;
            }
            return p;
        }
        let mut at = 0;
        let side = dir.index();
        // The rest of a streamed message (DataRow, CopyData, or one over the cap), counted at
        // its header.
        let passed = self.skip[side].min(data.len());
        self.skip[side] -= passed;
        at += passed;
        while at < data.len() && !self.done {
            if dir == Direction::ToServer && self.phase == Phase::Startup {
                let (Some(len), Some(code)) = (be32(data, at), be32(data, at + 4)) else {
                    return Progress::Incomplete {
                        consumed: at,
                        needed: 8,
                    };
                };
                let len = len as usize;
                if !(8..=10_000).contains(&len) {
                    return self.bad(out);
                }
                let Some(body) = data.get(at + 8..at + len) else {
                    return Progress::Incomplete {
                        consumed: at,
                        needed: at + len - data.len(),
                    };
                };
                self.startup(code, body, ts, out);
                at += len;
                continue;
            }
            if let Phase::Negotiating { gss } = self.phase {
                if dir == Direction::ToServer {
                    // The client does not speak before the answer: not what was expected.
                    return self.bad(out);
                }
                match (data[at], gss) {
                    (b'S', false) => {
                        let mut tls = Box::<TlsDissector>::default();
                        let p = tls.feed_from(dir, data, at + 1, ts, out);
                        self.tls = Some(tls);
                        if matches!(p, Progress::Finished | Progress::Error(_)) {
                            self.done = true;
                        }
                        return p;
                    }
                    (b'G', true) => {
                        out.anomaly(Anomaly::GssEncrypted);
                        self.done = true;
                        return Progress::Finished;
                    }
                    (b'N', _) => {
                        self.phase = Phase::Startup;
                        at += 1;
                        continue;
                    }
                    _ => return self.bad(out),
                }
            }
            let Some((kind, len)) = message(data, at) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: 5usize.saturating_sub(data.len() - at),
                };
            };
            if len < 4 || !(kind.is_ascii_alphanumeric()) {
                return self.bad(out);
            }
            let total = 1 + len;
            // DataRow (the server's `D`; the client's is Describe) and CopyData pass unread.
            let row = kind == b'D' && dir == Direction::ToClient;
            let streamed = row || kind == b'd' || len - 4 > MAX_MESSAGE;
            if streamed {
                // Counted at its header, passed as it comes.
                if row {
                    if let Some(ex) = self.current()
                        && let Some(db) = ex.db.as_mut()
                    {
                        let r = db.response.get_or_insert_with(DbResponse::default);
                        r.returned_rows = Some(r.returned_rows.unwrap_or(0) + 1);
                    }
                } else if kind == b'd' {
                    if let Some(pg) = self.current().and_then(|e| e.postgresql.as_mut()) {
                        pg.copy_bytes = Some(pg.copy_bytes.unwrap_or(0) + (len - 4) as u64);
                    }
                } else {
                    out.anomaly(Anomaly::MessageTooLarge);
                    if let Some(ex) = self.current() {
                        ex.add_anomaly(Anomaly::MessageTooLarge.name());
                    }
                    if dir == Direction::ToServer {
                        // Its reply still comes: keep the pairing with an unnamed exchange.
                        self.client(kind, &[], ts, out);
                    }
                }
                let here = (data.len() - at).min(total);
                self.skip[side] = total - here;
                at += here;
                continue;
            }
            let Some(body) = data.get(at + 5..at + total) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: at + total - data.len(),
                };
            };
            match dir {
                Direction::ToServer => self.client(kind, body, ts, out),
                Direction::ToClient => self.server(kind, body, ts, out),
            }
            at += total;
        }
        if self.done {
            Progress::Finished
        } else {
            Progress::Done
        }
    }

    fn gap(&mut self, dir: Direction, len: u64, ts: u64, out: &mut Emitter<'_>) {
        if let Some(t) = self.tls.as_mut() {
            t.gap(dir, len, ts, out);
            return;
        }
        out.anomaly(Anomaly::Gap);
        // Framing is lost: what is open is cut, and the flow is given up.
        for p in self.pending.iter_mut() {
            if let Pending::Query(ex) | Pending::Execute(ex) = p {
                ex.status = Status::Incomplete;
                ex.add_anomaly(Anomaly::Gap.name());
            }
        }
        self.close_all(ts, out);
        self.done = true;
    }

    fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.startup.is_none()
    }

    fn close(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(t) = self.tls.as_mut() {
            t.close(ts, out);
            return;
        }
        self.close_all(ts, out);
    }

    fn held_bytes(&self) -> usize {
        let sql: usize = self
            .statements
            .iter()
            .chain(self.portals.iter())
            .map(|(k, v)| k.capacity() + v.text.capacity() + 64)
            .sum();
        sql + self.pending.len() * EXCHANGE_ESTIMATE
            + self.startup.as_ref().map_or(0, |_| EXCHANGE_ESTIMATE)
            + self.tls.as_ref().map_or(0, |t| t.held_bytes())
    }
}

#[cfg(test)]
mod tests;
