//! MySQL and MariaDB client/server protocol (protocol 10, `CLIENT_PROTOCOL_41`).
//!
//! Hand-written: a packet is three length bytes and a sequence number, and no crate decodes a
//! captured conversation from both sides (the client crates speak it). SQL goes through
//! [`crate::dissect::sql`] (literals as `?`).
//!
//! Exchanges (ARCHITECTURE.md §4), `db.system.name` `mariadb` when the server's greeting says
//! so, else `mysql`:
//! - the connection (`COM_CONNECT`): the server's greeting to the OK or ERR that ends the
//!   authentication; the user and schema from the client's answer (never its auth data, nor
//!   the auth switch and more-data packets that follow). A client that asks for TLS
//!   (`CLIENT_SSL`) makes the connection a TLS handshake exchange (the TLS dissector, fed from
//!   here); one that negotiates compression is counted (`mysql.compressed`) and skipped;
//! - one per command: `COM_QUERY` (named by its SQL's first keyword), `COM_STMT_PREPARE`
//!   (`PREPARE` with the SQL), `COM_STMT_EXECUTE` (named by the prepared SQL: statement ids
//!   are tracked per connection, at most [`MAX_STATEMENTS`]), `COM_STMT_CLOSE` (no reply),
//!   `COM_INIT_DB` (which changes `db.namespace`), `COM_PING`, `COM_QUIT`, and the others by
//!   their command name; each ends at its OK or ERR, or at the end of its result set(s): rows
//!   are counted, never buffered, with or without `CLIENT_DEPRECATE_EOF`, multi-result
//!   statements included (`SERVER_MORE_RESULTS_EXISTS`);
//! - an ERR is an `error` with the error number as `db.response.status_code` and the SQLSTATE
//!   and message in `mysql.error`.
//!
//! Limits: a packet other than a row is read whole up to [`MAX_PACKET`] bytes (larger ones and
//! every row stream past; a command over the cap is reported without its SQL,
//! `mysql.packet_too_large`); commands are answered in order, one at a time (the protocol has
//! no pipelining), at most [`DEFAULT_IN_FLIGHT`] waiting. Bytes that are not packets end
//! dissection of the flow (`mysql.bad_packet`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use schemas::l7::db::{Db, DbCollection, DbQuery, DbResponse, DbSystem, Mysql, MysqlError, Named};
use schemas::{Exchange, Protocol, Status, Transport};

use crate::dissect::entry::{Detection, ProtocolEntry};
use crate::dissect::pairing::DEFAULT_IN_FLIGHT;
use crate::dissect::sql::{self, Summary};
use crate::dissect::{
    Direction, DissectError, Dissector, EXCHANGE_ESTIMATE, Emitter, FlowMeta, Progress,
};
use crate::protocols::tls::TlsDissector;
use crate::wire::cstr;

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadPacket = "mysql.bad_packet",
        Compressed = "mysql.compressed",
        Gap = "mysql.gap",
        PacketTooLarge = "mysql.packet_too_large",
        UnexpectedReply = "mysql.unexpected_reply",
    }
}

/// Largest packet read whole (greetings, SQL, errors, column definitions).
pub const MAX_PACKET: usize = 64 * 1024;
/// Prepared statements remembered per connection (their SQL with literals hidden).
pub const MAX_STATEMENTS: usize = 256;

const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_COMPRESS: u32 = 0x20;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x8;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Mysql,
    tcp: true,
    udp: false,
    ports: &[3306],
    detect,
    new: |_meta: &FlowMeta| Box::new(MysqlDissector::default()),
};

/// The server's greeting: a packet with sequence 0, protocol version 10, and a NUL-terminated
/// printable version string.
fn detect(data: &[u8], t: Transport, _hinted: bool) -> Detection {
    if t != Transport::Tcp {
        return Detection::No;
    }
    // Length (3 bytes), sequence 0, protocol 10, then the version up to its NUL.
    let (Some(head), Some(&protocol)) = (data.get(..4), data.get(4)) else {
        let short_ok = data.get(3).is_none_or(|seq| *seq == 0);
        return if short_ok {
            Detection::NeedMore
        } else {
            Detection::No
        };
    };
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    if head[3] != 0 || protocol != 10 || !(30..=1024).contains(&len) {
        return Detection::No;
    }
    let version = data.get(5..data.len().min(4 + len)).unwrap_or_default();
    let printable = |v: &[u8]| v.iter().all(|b| (0x20..0x7f).contains(b));
    match version.iter().position(|b| *b == 0) {
        Some(end) if end > 0 && printable(version.get(..end).unwrap_or_default()) => {
            Detection::FromServer
        }
        None if version.len() < 64 && printable(version) => Detection::NeedMore,
        _ => Detection::No,
    }
}

/// What the client's command waits for.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Expect {
    /// The first packet of the reply: OK, ERR, or a result set's column count.
    #[default]
    First,
    /// `n` column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions (without `CLIENT_DEPRECATE_EOF`).
    ColumnsEof,
    /// Rows until the terminating EOF (or OK).
    Rows,
    /// A prepare's parameter and column definitions (`n` packets, each block with its EOF).
    PrepareDefs(u64),
}

/// A command waiting for its reply.
#[derive(Debug)]
struct Command {
    ex: Box<Exchange>,
    code: u8,
    expect: Expect,
    /// COM_STMT_PREPARE: the SQL (literals hidden), remembered under the id the reply gives.
    prepare: Option<Arc<Summary>>,
    /// COM_INIT_DB: the schema it switches to.
    schema: Option<String>,
}

/// MySQL dissector state for one connection.
#[derive(Debug, Default)]
pub struct MysqlDissector {
    system: &'static str,
    /// The greeting's capabilities, then the ones the client kept.
    caps: u32,
    schema: Option<String>,
    /// The connection exchange, from the greeting to the end of authentication.
    connect: Option<Box<Exchange>>,
    /// The client answered the greeting (later packets before `ready` are auth data).
    responded: bool,
    /// Authentication is over (commands follow).
    ready: bool,
    commands: VecDeque<Command>,
    statements: HashMap<u32, Arc<Summary>>,
    tls: Option<Box<TlsDissector>>,
    /// Bytes of a streamed packet still to pass, per direction.
    skip: [usize; 2],
    done: bool,
}

/// A length-encoded integer at the start of `b`: (value, its size).
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let n = match first {
        0xfb => return Some((0, 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        0xff => return None,
        v => return Some((u64::from(v), 1)),
    };
    let bytes = b.get(1..1 + n)?;
    let v = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    Some((v, 1 + n))
}

fn command_name(code: u8) -> String {
    match code {
        0x01 => "COM_QUIT",
        0x02 => "COM_INIT_DB",
        0x03 => "COM_QUERY",
        0x04 => "COM_FIELD_LIST",
        0x05 => "COM_CREATE_DB",
        0x06 => "COM_DROP_DB",
        0x07 => "COM_REFRESH",
        0x09 => "COM_STATISTICS",
        0x0a => "COM_PROCESS_INFO",
        0x0c => "COM_PROCESS_KILL",
        0x0d => "COM_DEBUG",
        0x0e => "COM_PING",
        0x11 => "COM_CHANGE_USER",
        0x12 => "COM_BINLOG_DUMP",
        0x16 => "COM_STMT_PREPARE",
        0x17 => "COM_STMT_EXECUTE",
        0x18 => "COM_STMT_SEND_LONG_DATA",
        0x19 => "COM_STMT_CLOSE",
        0x1a => "COM_STMT_RESET",
        0x1b => "COM_SET_OPTION",
        0x1c => "COM_STMT_FETCH",
        0x1f => "COM_RESET_CONNECTION",
        other => return format!("COM_0x{other:02x}"),
    }
    .into()
}

impl MysqlDissector {
    fn db(&self, op: Option<String>) -> Db {
        Db {
            system: DbSystem {
                name: if self.system.is_empty() {
                    "mysql"
                } else {
                    self.system
                }
                .into(),
            },
            operation: op.map(|name| Named { name }),
            namespace: self.schema.clone(),
            ..Db::default()
        }
    }

    fn finish(ex: Box<Exchange>, ts: u64, out: &mut Emitter<'_>) {
        let mut ex = *ex;
        ex.end_time_unix_nano = ts.max(ex.start_time_unix_nano);
        out.emit(ex);
    }

    fn fail(ex: &mut Exchange, body: &[u8]) {
        ex.status = Status::Error;
        let code = body.get(1..3).map(|c| u16::from_le_bytes([c[0], c[1]]));
        let (sqlstate, message) = match body.get(3) {
            Some(b'#') => (
                body.get(4..9)
                    .map(|s| String::from_utf8_lossy(s).into_owned()),
                body.get(9..),
            ),
            _ => (None, body.get(3..)),
        };
        if let Some(db) = ex.db.as_mut() {
            db.response
                .get_or_insert_with(DbResponse::default)
                .status_code = code.map(|c| c.to_string());
        }
        let m = ex.mysql.get_or_insert_with(Default::default);
        m.error = Some(MysqlError {
            code: code.unwrap_or(0),
            sqlstate,
            message: message
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default(),
        });
    }

    /// The server's greeting.
    fn greeting(&mut self, body: &[u8], ts: u64, out: &mut Emitter<'_>) {
        let Some((version, rest)) = body.get(1..).and_then(cstr) else {
            return;
        };
        self.system = if version.to_ascii_lowercase().contains("mariadb") {
            "mariadb"
        } else {
            "mysql"
        };
        // Connection id (4), auth data part 1 (8), filler, capabilities low, charset, status,
        // capabilities high.
        let low = rest
            .get(13..15)
            .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
        let high = rest
            .get(18..20)
            .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
        self.caps = u32::from(low) | u32::from(high) << 16;
        let mut ex = out.exchange(Protocol::Mysql, ts);
        ex.db = Some(Box::new(self.db(Some("COM_CONNECT".into()))));
        ex.mysql = Some(Box::new(Mysql {
            server_version: Some(version),
            ..Mysql::default()
        }));
        self.connect = Some(Box::new(ex));
    }

    /// The client's handshake response (or its SSL request).
    fn handshake_response(&mut self, body: &[u8], out: &mut Emitter<'_>) {
        let caps = body
            .get(..4)
            .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        if caps & CLIENT_PROTOCOL_41 == 0 {
            out.anomaly(Anomaly::BadPacket);
            return;
        }
        self.caps &= caps;
        if caps & CLIENT_SSL != 0 && body.len() <= 32 {
            // An SSL request: TLS from here on; its handshake is the exchange.
            self.tls = Some(Box::default());
            self.connect = None;
            return;
        }
        let Some((user, rest)) = body.get(32..).and_then(cstr) else {
            return;
        };
        // The auth response, never read: skip it by its length.
        let rest = match lenenc(rest) {
            Some((n, size)) => rest.get(size + n as usize..).unwrap_or_default(),
            None => rest,
        };
        if caps & CLIENT_CONNECT_WITH_DB != 0
            && let Some((schema, _)) = cstr(rest)
            && !schema.is_empty()
        {
            self.schema = Some(schema);
        }
        let schema = self.schema.clone();
        if let Some(ex) = self.connect.as_mut() {
            if let Some(db) = ex.db.as_mut() {
                db.namespace = schema;
            }
            ex.mysql.get_or_insert_with(Default::default).user = Some(user);
        }
    }

    /// A whole packet from the client.
    fn client(&mut self, body: &[u8], too_large: bool, ts: u64, out: &mut Emitter<'_>) {
        if !self.ready {
            if self.connect.is_some() && !self.responded {
                self.responded = true;
                self.handshake_response(body, out);
            }
            // Auth switch responses and more auth data: never read.
            return;
        }
        let Some(&code) = body.first() else { return };
        let text = || String::from_utf8_lossy(body.get(1..).unwrap_or_default()).into_owned();
        let mut ex = out.exchange(Protocol::Mysql, ts);
        let (mut prepare, mut schema) = (None, None);
        let summary = match code {
            0x03 | 0x16 if !too_large => Some(Arc::new(sql::summarize(&text()))),
            0x17 => body
                .get(1..5)
                .map(|i| u32::from_le_bytes([i[0], i[1], i[2], i[3]]))
                .and_then(|id| self.statements.get(&id))
                .cloned(),
            _ => None,
        };
        if too_large {
            out.anomaly(Anomaly::PacketTooLarge);
            ex.add_anomaly(Anomaly::PacketTooLarge.name());
        }
        let op = match (code, &summary) {
            (0x16, Some(s)) => {
                prepare = Some(Arc::clone(s));
                Some("PREPARE".to_string())
            }
            (0x03 | 0x17, Some(s)) => s.operation.clone(),
            _ => Some(command_name(code)),
        };
        let mut db = self.db(op);
        if let Some(s) = summary {
            db.query = Some(DbQuery {
                text: s.text.clone(),
            });
            db.collection = s.collection.clone().map(|name| DbCollection { name });
        }
        if code == 0x02 {
            schema = Some(text());
        }
        ex.db = Some(Box::new(db));
        ex.mysql = Some(Box::new(Mysql::default()));
        match code {
            // No reply: one-way.
            0x01 | 0x19 | 0x18 => {
                if code == 0x19
                    && let Some(id) = body.get(1..5)
                {
                    self.statements
                        .remove(&u32::from_le_bytes([id[0], id[1], id[2], id[3]]));
                }
                out.emit(ex);
            }
            _ => {
                if self.commands.len() >= DEFAULT_IN_FLIGHT
                    && let Some(old) = self.commands.pop_front()
                {
                    out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
                    let mut e = old.ex;
                    e.status = Status::NoResponse;
                    Self::finish(e, ts, out);
                }
                self.commands.push_back(Command {
                    ex: Box::new(ex),
                    code,
                    expect: Expect::First,
                    prepare,
                    schema,
                });
            }
        }
    }

    /// Add a row to the command being answered.
    fn row(&mut self) {
        if let Some(c) = self.commands.front_mut()
            && let Some(db) = c.ex.db.as_mut()
        {
            let r = db.response.get_or_insert_with(DbResponse::default);
            r.returned_rows = Some(r.returned_rows.unwrap_or(0) + 1);
        }
    }

    /// The command at the front is answered.
    fn answered(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(c) = self.commands.pop_front() {
            if c.ex.status == Status::Ok
                && let Some(s) = c.schema
            {
                self.schema = Some(s);
            }
            Self::finish(c.ex, ts, out);
        }
    }

    /// A whole packet from the server.
    fn server(&mut self, body: &[u8], ts: u64, out: &mut Emitter<'_>) {
        let first = body.first().copied();
        if !self.ready {
            if self.connect.is_none() && self.system.is_empty() {
                self.greeting(body, ts, out);
                return;
            }
            match first {
                Some(0x00) => {
                    self.ready = true;
                    if self.caps & CLIENT_COMPRESS != 0 {
                        out.anomaly(Anomaly::Compressed);
                        self.done = true;
                    }
                    if let Some(ex) = self.connect.take() {
                        Self::finish(ex, ts, out);
                    }
                }
                Some(0xff) => {
                    if let Some(mut ex) = self.connect.take() {
                        Self::fail(&mut ex, body);
                        Self::finish(ex, ts, out);
                    }
                    self.done = true;
                }
                // Auth switch request, more auth data: part of the connection.
                _ => {}
            }
            return;
        }
        let deprecate_eof = self.caps & CLIENT_DEPRECATE_EOF != 0;
        let eof =
            first == Some(0xfe) && body.len() < 0xff_ffff && (deprecate_eof || body.len() < 9);
        let Some(c) = self.commands.front_mut() else {
            out.anomaly(Anomaly::UnexpectedReply);
            return;
        };
        match c.expect {
            Expect::First => match first {
                Some(0xff) => {
                    Self::fail(&mut c.ex, body);
                    self.answered(ts, out);
                }
                Some(0x00) if c.code == 0x16 => {
                    // STMT_PREPARE_OK: statement id, columns, parameters.
                    let id = body
                        .get(1..5)
                        .map(|i| u32::from_le_bytes([i[0], i[1], i[2], i[3]]));
                    let cols = body
                        .get(5..7)
                        .map_or(0, |v| u16::from_le_bytes([v[0], v[1]]));
                    let params = body
                        .get(7..9)
                        .map_or(0, |v| u16::from_le_bytes([v[0], v[1]]));
                    if let (Some(id), Some(sql)) = (id, c.prepare.take())
                        && (self.statements.len() < MAX_STATEMENTS
                            || self.statements.contains_key(&id))
                    {
                        self.statements.insert(id, sql);
                    }
                    // Each block of definitions ends with an EOF unless it is deprecated.
                    let blocks = u64::from(cols > 0) + u64::from(params > 0);
                    let defs = u64::from(cols)
                        + u64::from(params)
                        + if deprecate_eof { 0 } else { blocks };
                    if defs == 0 {
                        self.answered(ts, out);
                    } else if let Some(c) = self.commands.front_mut() {
                        c.expect = Expect::PrepareDefs(defs);
                    }
                }
                Some(0x00) | Some(0xfe) => {
                    // OK (or an EOF-style OK): ends this result; more may follow.
                    let more = ok_status(body) & SERVER_MORE_RESULTS_EXISTS != 0;
                    if !more {
                        self.answered(ts, out);
                    }
                }
                _ => match lenenc(body) {
                    Some((n, _)) if n > 0 => c.expect = Expect::Columns(n),
                    _ => {
                        out.anomaly(Anomaly::BadPacket);
                        self.answered(ts, out);
                    }
                },
            },
            Expect::Columns(n) => {
                let left = n.saturating_sub(1);
                c.expect = if left > 0 {
                    Expect::Columns(left)
                } else if deprecate_eof {
                    Expect::Rows
                } else {
                    Expect::ColumnsEof
                };
            }
            Expect::ColumnsEof => c.expect = Expect::Rows,
            Expect::Rows => {
                if first == Some(0xff) {
                    Self::fail(&mut c.ex, body);
                    self.answered(ts, out);
                } else if eof {
                    let more = ok_status(body) & SERVER_MORE_RESULTS_EXISTS != 0;
                    if more {
                        c.expect = Expect::First;
                    } else {
                        self.answered(ts, out);
                    }
                } else {
                    self.row();
                }
            }
            Expect::PrepareDefs(n) => {
                if n > 1 {
                    c.expect = Expect::PrepareDefs(n - 1);
                } else {
                    self.answered(ts, out);
                }
            }
        }
    }

    fn bad(&mut self, ts: u64, out: &mut Emitter<'_>) -> Progress {
        out.anomaly(Anomaly::BadPacket);
        self.close_all(ts, out);
        self.done = true;
        Progress::Error(DissectError {
            protocol: Protocol::Mysql,
            reason: "not a MySQL packet",
        })
    }

    fn close_all(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(mut ex) = self.connect.take() {
            ex.status = Status::NoResponse;
            Self::finish(ex, ts, out);
        }
        for c in self.commands.drain(..) {
            let mut ex = c.ex;
            if ex.status == Status::Ok {
                ex.status = Status::NoResponse;
            }
            Self::finish(ex, ts, out);
        }
    }
}

/// The status flags of an OK packet (0x00: affected rows, last insert id, status) or an EOF
/// (0xfe: warnings, status; or the OK form of `CLIENT_DEPRECATE_EOF`).
fn ok_status(body: &[u8]) -> u16 {
    let flags = |b: &[u8], at: usize| {
        b.get(at..at + 2)
            .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
    };
    if body.first() == Some(&0xfe) && body.len() < 9 {
        return flags(body, 3);
    }
    let rest = body.get(1..).unwrap_or_default();
    let Some((_, a)) = lenenc(rest) else { return 0 };
    let Some((_, b)) = rest.get(a..).and_then(lenenc) else {
        return 0;
    };
    flags(rest, a + b)
}

impl Dissector for MysqlDissector {
    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        if let Some(t) = self.tls.as_mut() {
            let p = t.feed(dir, data, ts, out);
            if matches!(p, Progress::Finished | Progress::Error(_)) {
                self.done = true;
            }
            return p;
        }
        let side = dir.index();
        let mut at = self.skip[side].min(data.len());
        self.skip[side] -= at;
        while at < data.len() && !self.done {
            let Some(head) = data.get(at..at + 4) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: at + 4 - data.len(),
                };
            };
            let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
            let total = 4 + len;
            // A row (or any packet over the cap) streams past, counted at its header.
            let rowish = dir == Direction::ToClient
                && self.ready
                && self
                    .commands
                    .front()
                    .is_some_and(|c| c.expect == Expect::Rows)
                && data.get(at + 4).is_some_and(|b| *b != 0xff && *b != 0xfe);
            if rowish || len > MAX_PACKET {
                if rowish {
                    self.row();
                } else if dir == Direction::ToServer {
                    let first = data
                        .get(at + 4..(at + 5).min(data.len()))
                        .unwrap_or_default();
                    self.client(first, true, ts, out);
                } else {
                    out.anomaly(Anomaly::PacketTooLarge);
                }
                let here = (data.len() - at).min(total);
                self.skip[side] = total - here;
                at += here;
                continue;
            }
            let Some(body) = data.get(at + 4..at + total) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: at + total - data.len(),
                };
            };
            // A new command starts a new sequence: its packet number is 0.
            if dir == Direction::ToServer && self.ready && head[3] != 0 {
                at += total;
                continue;
            }
            match dir {
                Direction::ToServer => self.client(body, false, ts, out),
                Direction::ToClient => self.server(body, ts, out),
            }
            at += total;
            if let Some(t) = self.tls.as_mut() {
                let p = t.feed_from(dir, data, at, ts, out);
                if matches!(p, Progress::Finished | Progress::Error(_)) {
                    self.done = true;
                }
                return p;
            }
        }
        if self.done {
            if self.tls.is_none() && self.connect.is_none() && self.commands.is_empty() {
                return Progress::Finished;
            }
            return self.bad(ts, out);
        }
        Progress::Done
    }

    fn gap(&mut self, dir: Direction, len: u64, ts: u64, out: &mut Emitter<'_>) {
        if let Some(t) = self.tls.as_mut() {
            t.gap(dir, len, ts, out);
            return;
        }
        out.anomaly(Anomaly::Gap);
        for c in self.commands.iter_mut() {
            c.ex.status = Status::Incomplete;
            c.ex.add_anomaly(Anomaly::Gap.name());
        }
        self.close_all(ts, out);
        self.done = true;
    }

    fn is_idle(&self) -> bool {
        self.commands.is_empty() && self.connect.is_none()
    }

    fn close(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(t) = self.tls.as_mut() {
            t.close(ts, out);
            return;
        }
        self.close_all(ts, out);
    }

    fn held_bytes(&self) -> usize {
        self.statements
            .values()
            .map(|v| v.text.capacity() + 64)
            .sum::<usize>()
            + self.commands.len() * EXCHANGE_ESTIMATE
            + self.connect.as_ref().map_or(0, |_| EXCHANGE_ESTIMATE)
            + self.tls.as_ref().map_or(0, |t| t.held_bytes())
    }
}

#[cfg(test)]
mod tests;
