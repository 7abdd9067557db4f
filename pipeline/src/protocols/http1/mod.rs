//! HTTP/1.0 and HTTP/1.1 (and HTTP/0.9 simple requests).
//!
//! Header blocks are parsed by `httparse`; message framing is ours (RFC 9112 §6): chunked
//! transfer coding (which wins over Content-Length, flagged `http.te_and_cl`), Content-Length,
//! close-delimited response bodies, and the responses that never have a body (HEAD, 1xx,
//! 204, 304, 2xx to CONNECT). Requests are paired with responses in order (pipelining), up
//! to `pairing::DEFAULT_IN_FLIGHT` in flight. Interim 1xx responses (100 Continue, 103) are
//! skipped; `101 Switching Protocols` and a 2xx answer to CONNECT end HTTP/1 parsing on the
//! flow: an upgrade to `h2c` goes on as HTTP/2, one to `websocket` as WebSocket messages
//! (`protocols::websocket`), other tunnels are not dissected.
//!
//! Limits: a header block is at most [`MAX_HEADER_BLOCK`] bytes and [`MAX_HEADERS`] fields;
//! beyond either the message is dropped and the side resynchronises (`http.header_too_large`).
//! Bodies are counted; one is kept (under `body.rs`'s caps) only when something will read it:
//! the GraphQL refiner, for a request that may be GraphQL (`graphql::may_be_request`), or the
//! content-coding check, for an encoded body.
//!
//! Loss: a gap inside a body of known length keeps the framing (the exchange is marked
//! `incomplete`); a gap anywhere else loses the message in flight and the side resynchronises
//! at the next line that starts a request (a method) or a response (`HTTP/1.`).

use schemas::l7::http::{Body, Http, HttpRequest, HttpResponse, Url};
use schemas::{Exchange, HeaderMap, NetworkProtocol, Protocol, Status, Transport};

use crate::dissect::body::{self, KeptBody};
use crate::dissect::entry::Detection;
use crate::dissect::entry::ProtocolEntry;
use crate::dissect::http_fields::{
    BodySource, REDACTED, check_coding, header_name, is_secret, split_target, traceparent,
};
use crate::dissect::pairing::{DEFAULT_IN_FLIGHT, Fifo};
use crate::dissect::{Direction, Dissector, Emitter, FlowMeta, Progress};
use crate::protocols::graphql;
use crate::protocols::http2::{Http2, Upgraded};
use crate::protocols::websocket::WebSocket;

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadChunkEnd = "http.bad_chunk_end",
        BadChunkSize = "http.bad_chunk_size",
        BadContentLength = "http.bad_content_length",
        BadTransferEncoding = "http.bad_transfer_encoding",
        ConflictingContentLength = "http.conflicting_content_length",
        Gap = "http.gap",
        HeaderTooLarge = "http.header_too_large",
        HeadersCut = "http.headers_cut",
        MalformedRequest = "http.malformed_request",
        MalformedResponse = "http.malformed_response",
        ResponseWithoutRequest = "http.response_without_request",
        TeAndCl = "http.te_and_cl",
        TooManyHeaders = "http.too_many_headers",
        TrailerTooLarge = "http.trailer_too_large",
    }
}

/// Largest header block (request/status line plus fields) accepted.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Most header fields in one message.
pub const MAX_HEADERS: usize = 96;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4096;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Http,
    tcp: true,
    udp: false,
    ports: &[80, 8080, 8000, 8008, 8888, 3000, 5000, 9000],
    detect,
    new: |meta: &FlowMeta| Box::new(Http1::new(meta)),
};

const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];

/// Does `data` start with a known method followed by a space (or could it, if short)?
fn method_prefix(data: &[u8]) -> Detection {
    for m in METHODS {
        if data.len() > m.len() {
            if data.starts_with(m) && data[m.len()] == b' ' {
                return Detection::FromClient;
            }
        } else if m.starts_with(data) && !data.is_empty() {
            return Detection::NeedMore;
        }
    }
    Detection::No
}

fn detect(data: &[u8], _t: Transport, _hinted: bool) -> Detection {
    match method_prefix(data) {
        Detection::No => {}
        d => return d,
    }
    const RESP: &[u8] = b"HTTP/1.";
    if data.len() >= RESP.len() {
        if data.starts_with(RESP) {
            return Detection::FromServer;
        }
    } else if RESP.starts_with(data) && !data.is_empty() {
        return Detection::NeedMore;
    }
    Detection::No
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Parse state of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Headers,
    Body(Framing, Chunk),
    /// After a gap that broke framing: look for the next message start.
    Resync,
    /// Upgraded or CONNECTed: not HTTP any more.
    Tunnel,
}

/// A request seen (headers at least) and waiting for, or holding, its response.
#[derive(Debug)]
struct Req {
    start_ts: u64,
    end_ts: u64,
    method: String,
    path: String,
    query: Option<String>,
    /// `None` when the request line was cut before the version.
    version: Option<&'static str>,
    headers: HeaderMap,
    body_size: u64,
    complete: bool,
    incomplete: bool,
    resp: Option<Resp>,
    /// The body (or its start), when its media type is one refiners read.
    body: Option<KeptBody>,
    /// `Content-Encoding` of the body.
    coding: Option<String>,
}

impl Req {
    /// A complete, body-less request from its request line (HTTP/0.9, or a line cut by a gap).
    fn from_line(
        method: &str,
        target: &str,
        version: Option<&'static str>,
        start_ts: u64,
        ts: u64,
    ) -> Req {
        let (path, query) = split_target(target);
        Req {
            start_ts,
            end_ts: ts,
            method: method.to_string(),
            path,
            query,
            version,
            headers: HeaderMap::new(),
            body_size: 0,
            complete: true,
            incomplete: false,
            resp: None,
            body: None,
            coding: None,
        }
    }
}

#[derive(Debug, Default)]
struct Resp {
    end_ts: u64,
    status: Option<u16>,
    headers: HeaderMap,
    body_size: u64,
    complete: bool,
    incomplete: bool,
    /// The body (or its start), when its media type is one refiners read.
    body: Option<KeptBody>,
    /// `Content-Encoding` of the body.
    coding: Option<String>,
}

/// HTTP/1 dissector state for one connection.
pub struct Http1 {
    req_state: State,
    resp_state: State,
    /// Requests in order; the first without a complete response is the one being answered.
    inflight: Fifo<Req>,
    /// Index in `inflight` of the request whose body is being received.
    req_body_of: Option<usize>,
    /// Response in progress (headers parsed, body not complete).
    resp_cur: Option<Resp>,
    /// Timestamp of the first byte of the message being parsed, per direction.
    msg_start: [Option<u64>; 2],
    /// An HTTP/0.9 simple request is in flight: the response is raw bytes until close.
    http09: bool,
    /// The tunnel was opened by CONNECT (it may carry plain HTTP).
    connect_tunnel: bool,
    /// A request asked to upgrade to h2c and its answer has not come yet.
    h2c_pending: bool,
    /// The client has sent bytes through the CONNECT tunnel.
    tunnel_client_spoke: bool,
    /// After `101 Switching Protocols` to h2c: the connection is HTTP/2 from here on.
    h2: Option<Box<Http2>>,
    /// After `101 Switching Protocols` to `websocket`: WebSocket messages from here on.
    ws: Option<Box<WebSocket>>,
    meta: FlowMeta,
}

impl Http1 {
    pub fn new(meta: &FlowMeta) -> Self {
        Http1 {
            h2c_pending: false,
            tunnel_client_spoke: false,
            h2: None,
            ws: None,
            meta: *meta,
            req_state: State::Headers,
            resp_state: State::Headers,
            inflight: Fifo::new(DEFAULT_IN_FLIGHT),
            req_body_of: None,
            resp_cur: None,
            msg_start: [None, None],
            http09: false,
            connect_tunnel: false,
        }
    }

    /// Emit every request at the front whose exchange is finished.
    fn flush_done(&mut self, out: &mut Emitter<'_>) {
        while self
            .inflight
            .front_mut()
            .is_some_and(|r| r.complete && r.resp.as_ref().is_some_and(|p| p.complete))
        {
            if let Some(r) = self.inflight.pop() {
                self.req_body_of = self.req_body_of.and_then(|i| i.checked_sub(1));
                let ex = build(r, out);
                out.emit(ex);
            }
        }
    }

    /// The request the next response answers (first one without a response).
    fn answered_index(&mut self) -> Option<usize> {
        self.inflight.iter_mut().position(|r| r.resp.is_none())
    }

    fn on_request_headers(&mut self, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Parsed {
        let mut hbuf = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut hbuf);
        let n = match req.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(Anomaly::TooManyHeaders),
            Err(_) => return self.http09_request(data, ts, out),
        };
        let method = req.method.unwrap_or_default().to_string();
        let target = req.path.unwrap_or_default();
        let (path, query) = split_target(target);
        let version = Some(if req.version == Some(0) { "1.0" } else { "1.1" });
        let (headers, mut framing_hdr) = collect_headers(req.headers, true, out);
        let mut framing = match framing_hdr.body(false) {
            Ok(f) => f,
            Err(a) => return Parsed::Bad(a),
        };
        if framing_hdr.te_and_cl {
            out.anomaly(Anomaly::TeAndCl);
        }
        // A request body is never close-delimited.
        if framing == Framing::UntilClose {
            framing = Framing::None;
        }
        if wants_h2c(&headers) {
            self.h2c_pending = true;
        }
        let start_ts = self.msg_start[0].take().unwrap_or(ts);
        let r = Req {
            start_ts,
            end_ts: ts,
            method,
            path,
            query,
            version,
            headers,
            body_size: 0,
            complete: framing == Framing::None,
            incomplete: false,
            resp: None,
            body: framing_hdr.keep.then(KeptBody::default),
            coding: framing_hdr.coding.take(),
        };
        self.push_request(r, out);
        Parsed::Headers(n, framing)
    }

    /// `GET /path` with no version: HTTP/0.9; the response is the bytes until close.
    fn http09_request(&mut self, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Parsed {
        let Some(eol) = data.iter().position(|&b| b == b'\n') else {
            return Parsed::Partial;
        };
        let line = String::from_utf8_lossy(&data[..eol]);
        let line = line.trim_end_matches('\r');
        let mut parts = line.split(' ');
        let (Some(method), Some(target), None) = (parts.next(), parts.next(), parts.next()) else {
            return Parsed::Bad(Anomaly::MalformedRequest);
        };
        if !is_token(method) || target.is_empty() {
            return Parsed::Bad(Anomaly::MalformedRequest);
        }
        let start_ts = self.msg_start[0].take().unwrap_or(ts);
        let r = Req::from_line(method, target, Some("0.9"), start_ts, ts);
        self.push_request(r, out);
        self.http09 = true;
        Parsed::Headers(eol + 1, Framing::None)
    }

    fn push_request(&mut self, r: Req, out: &mut Emitter<'_>) {
        if let Some(old) = self.inflight.push(r) {
            out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
            let ex = build(old, out);
            out.emit(ex);
            self.req_body_of = self.req_body_of.and_then(|i| i.checked_sub(1));
        }
    }

    fn on_response_headers(&mut self, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Parsed {
        let mut hbuf = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut hbuf);
        let n = match resp.parse(data) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(Anomaly::TooManyHeaders),
            Err(_) => return Parsed::Bad(Anomaly::MalformedResponse),
        };
        let code = resp.code.unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            // Interim response: not the status, not an exchange.
            self.msg_start[1] = None;
            return Parsed::Headers(n, Framing::None);
        }
        let (headers, mut framing_hdr) = collect_headers(resp.headers, false, out);
        let upgrade_h2c = code == 101 && wants_h2c(&headers);
        let upgrade_ws = code == 101 && upgrades_to(&headers, "websocket");
        let idx = self.answered_index();
        let answered = idx.and_then(|i| self.inflight.iter_mut().nth(i));
        // The body is read later by the GraphQL refiner, only for a request that may be
        // GraphQL (with no request to go by it is kept), and by the content-coding check,
        // only when it is encoded.
        let read_later = answered.as_ref().is_none_or(|r| {
            graphql::may_be_request(
                &r.method,
                r.query.as_deref(),
                r.headers.first("content-type"),
                r.body.as_ref(),
                r.coding.as_deref(),
                r.complete,
            )
        });
        let method = answered.map(|r| r.method.as_str());
        let mut framing = match framing_hdr.body(true) {
            Ok(f) => f,
            Err(a) => return Parsed::Bad(a),
        };
        let tunnel = code == 101 || (method == Some("CONNECT") && (200..300).contains(&code));
        if method == Some("HEAD") || code == 204 || code == 304 || tunnel {
            framing = Framing::None;
        }
        if framing_hdr.te_and_cl {
            out.anomaly(Anomaly::TeAndCl);
        }
        if idx.is_none() {
            out.anomaly(Anomaly::ResponseWithoutRequest);
        }
        self.msg_start[1] = None;
        self.resp_cur = Some(Resp {
            end_ts: ts,
            status: Some(code),
            headers,
            body_size: 0,
            complete: false,
            incomplete: false,
            body: (framing_hdr.keep && (read_later || framing_hdr.coding.is_some()))
                .then(KeptBody::default),
            coding: framing_hdr.coding.take(),
        });
        if code == 101
            && self.h2c_pending
            && upgrade_h2c
            && let Some(i) = idx
            && let Some(r) = self.inflight.remove(i)
        {
            // The upgrading request is stream 1 of the HTTP/2 connection that starts here.
            self.h2c_pending = false;
            self.msg_start[1] = None;
            self.resp_cur = None;
            self.resp_state = State::Tunnel;
            self.req_state = State::Tunnel;
            let up = Upgraded {
                start_ts: r.start_ts,
                end_ts: r.end_ts,
                method: r.method,
                path: r.path,
                query: r.query,
                headers: r.headers,
                body_size: r.body_size,
                body: r.body,
                coding: r.coding,
                complete: r.complete && !r.incomplete,
            };
            self.h2 = Some(Box::new(Http2::upgraded(&self.meta, up)));
            return Parsed::Tunnel(n);
        }
        if code != 101 {
            self.h2c_pending = false;
        }
        if tunnel {
            self.connect_tunnel = code != 101;
            self.resp_state = State::Tunnel;
            self.req_state = State::Tunnel;
            self.finish_response(ts, out);
            if upgrade_ws {
                self.flush_done(out);
                self.ws = Some(Box::new(WebSocket::new()));
            }
            return Parsed::Tunnel(n);
        }
        Parsed::Headers(n, framing)
    }

    /// The current response is complete: attach it to its request.
    fn finish_response(&mut self, ts: u64, out: &mut Emitter<'_>) {
        let Some(mut resp) = self.resp_cur.take() else {
            return;
        };
        resp.end_ts = resp.end_ts.max(ts);
        resp.complete = true;
        // Without a request to pair with, the response is dropped (counted when its headers
        // were seen).
        if let Some(i) = self.answered_index() {
            if let Some(r) = self.inflight.iter_mut().nth(i) {
                r.resp = Some(resp);
            }
            self.flush_done(out);
        }
    }

    fn finish_request(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(i) = self.req_body_of.take()
            && let Some(r) = self.inflight.iter_mut().nth(i)
        {
            r.complete = true;
            r.end_ts = ts;
        }
        self.flush_done(out);
    }

    /// `n` body bytes of one direction: `data` when present, `None` when lost in a gap.
    fn body_bytes(&mut self, dir: Direction, n: u64, data: Option<&[u8]>, ts: u64) {
        let (size, end, kept) = match dir {
            Direction::ToServer => {
                let Some(r) = self
                    .req_body_of
                    .and_then(|i| self.inflight.iter_mut().nth(i))
                else {
                    return;
                };
                (&mut r.body_size, &mut r.end_ts, &mut r.body)
            }
            Direction::ToClient => {
                let Some(r) = self.resp_cur.as_mut() else {
                    return;
                };
                (&mut r.body_size, &mut r.end_ts, &mut r.body)
            }
        };
        *size += n;
        *end = ts;
        if let Some(k) = kept {
            match data {
                Some(d) => k.push(d),
                None => k.truncated = true,
            }
        }
    }

    fn mark_incomplete(&mut self, dir: Direction) {
        match dir {
            Direction::ToServer => {
                if let Some(r) = self
                    .req_body_of
                    .and_then(|i| self.inflight.iter_mut().nth(i))
                {
                    r.incomplete = true;
                }
            }
            Direction::ToClient => {
                if let Some(r) = self.resp_cur.as_mut() {
                    r.incomplete = true;
                }
            }
        }
    }

    /// Parse as much of one direction as possible.
    fn run(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        let mut pos = 0;
        loop {
            let state = match dir {
                Direction::ToServer => self.req_state,
                Direction::ToClient => self.resp_state,
            };
            let rest = &data[pos..];
            if rest.is_empty() {
                return Progress::Done;
            }
            let next = match state {
                State::Tunnel => {
                    // A CONNECT tunnel that carries plain HTTP (a proxy's cleartext traffic)
                    // goes on being parsed; anything else (TLS, WebSocket) is left alone.
                    if self.connect_tunnel
                        && dir == Direction::ToClient
                        && !self.tunnel_client_spoke
                    {
                        // An HTTP/2 server speaks first (its SETTINGS): hold its first bytes
                        // until the client shows what the tunnel carries.
                        return if rest.len() <= 4096 {
                            Progress::Incomplete {
                                consumed: pos,
                                needed: 1,
                            }
                        } else {
                            Progress::Done
                        };
                    }
                    if dir == Direction::ToServer {
                        self.tunnel_client_spoke = true;
                    }
                    if self.connect_tunnel
                        && dir == Direction::ToServer
                        && rest.starts_with(b"PRI * HTTP/2.0")
                    {
                        // HTTP/2 with prior knowledge through the tunnel (gRPC via a proxy).
                        self.connect_tunnel = false;
                        let h2 = self.h2.insert(Box::new(Http2::new(&self.meta)));
                        return match h2.feed(dir, rest, ts, out) {
                            Progress::Incomplete { consumed, needed } => Progress::Incomplete {
                                consumed: pos + consumed,
                                needed,
                            },
                            p => p,
                        };
                    }
                    if self.connect_tunnel
                        && dir == Direction::ToServer
                        && b"PRI * HTTP/2.0".starts_with(rest)
                    {
                        return Progress::Incomplete {
                            consumed: pos,
                            needed: 14 - rest.len(),
                        };
                    }
                    if self.connect_tunnel
                        && dir == Direction::ToServer
                        && method_prefix(rest) == Detection::FromClient
                    {
                        self.connect_tunnel = false;
                        self.resp_state = State::Headers;
                        State::Headers
                    } else {
                        return Progress::Done;
                    }
                }
                State::Resync => match find_message_start(rest, dir) {
                    Some(off) => {
                        pos += off;
                        State::Headers
                    }
                    None => {
                        // Keep a short tail: a message start may straddle the boundary.
                        let keep = rest.len().min(16);
                        return Progress::Incomplete {
                            consumed: data.len() - keep,
                            needed: 1,
                        };
                    }
                },
                State::Headers => {
                    // Tolerate blank lines between messages (RFC 9112 §2.2).
                    let skip = rest
                        .iter()
                        .take_while(|&&b| b == b'\r' || b == b'\n')
                        .count();
                    if skip > 0 {
                        pos += skip;
                        continue;
                    }
                    if dir == Direction::ToServer
                        && self.h2c_pending
                        && self.req_body_of.is_none()
                        && (rest.starts_with(b"PRI * HTTP/2.0")
                            || b"PRI * HTTP/2.0".starts_with(rest))
                    {
                        // The HTTP/2 preface before the 101 was seen: hold it for HTTP/2.
                        return Progress::Incomplete {
                            consumed: pos,
                            needed: 1,
                        };
                    }
                    if dir == Direction::ToClient && self.http09 {
                        self.http09 = false;
                        self.resp_cur = Some(Resp {
                            end_ts: ts,
                            status: None,
                            headers: HeaderMap::new(),
                            body_size: 0,
                            complete: false,
                            incomplete: false,
                            ..Default::default()
                        });
                        State::Body(Framing::UntilClose, Chunk::Size)
                    } else {
                        self.msg_start[dir.index()].get_or_insert(ts);
                        let parsed = match dir {
                            Direction::ToServer => self.on_request_headers(rest, ts, out),
                            Direction::ToClient => self.on_response_headers(rest, ts, out),
                        };
                        match parsed {
                            Parsed::Partial => {
                                if rest.len() > MAX_HEADER_BLOCK {
                                    out.anomaly(Anomaly::HeaderTooLarge);
                                    self.msg_start[dir.index()] = None;
                                    pos = data.len();
                                    State::Resync
                                } else {
                                    return Progress::Incomplete {
                                        consumed: pos,
                                        needed: 1,
                                    };
                                }
                            }
                            Parsed::Bad(a) => {
                                out.anomaly(a);
                                self.msg_start[dir.index()] = None;
                                pos += 1;
                                State::Resync
                            }
                            Parsed::Tunnel(n) => {
                                pos += n;
                                if let Some(ws) = self.ws.as_mut() {
                                    return match ws.feed(
                                        dir,
                                        data.get(pos..).unwrap_or_default(),
                                        ts,
                                        out,
                                    ) {
                                        Progress::Incomplete { consumed, needed } => {
                                            Progress::Incomplete {
                                                consumed: pos + consumed,
                                                needed,
                                            }
                                        }
                                        p => p,
                                    };
                                }
                                if let Some(h2) = self.h2.as_mut() {
                                    return match h2.feed(
                                        dir,
                                        data.get(pos..).unwrap_or_default(),
                                        ts,
                                        out,
                                    ) {
                                        Progress::Incomplete { consumed, needed } => {
                                            Progress::Incomplete {
                                                consumed: pos + consumed,
                                                needed,
                                            }
                                        }
                                        p => p,
                                    };
                                }
                                State::Tunnel
                            }
                            Parsed::Headers(n, framing) => {
                                pos += n;
                                if dir == Direction::ToServer {
                                    let last = self.inflight.len().checked_sub(1);
                                    if framing == Framing::None {
                                        self.flush_done(out);
                                    } else {
                                        self.req_body_of = last;
                                    }
                                }
                                match (dir, framing) {
                                    (Direction::ToClient, Framing::None) => {
                                        if self.resp_cur.is_some() {
                                            self.finish_response(ts, out);
                                        }
                                        State::Headers
                                    }
                                    (_, Framing::None) => State::Headers,
                                    (_, Framing::Length(0)) => {
                                        self.end_body(dir, ts, out);
                                        State::Headers
                                    }
                                    (_, f) => State::Body(f, Chunk::Size),
                                }
                            }
                        }
                    }
                }
                State::Body(framing, chunk) => {
                    match self.body(dir, framing, chunk, rest, ts, out) {
                        BodyStep::Consumed(n, next) => {
                            pos += n;
                            next
                        }
                        BodyStep::NeedMore => {
                            return Progress::Incomplete {
                                consumed: pos,
                                needed: 1,
                            };
                        }
                    }
                }
            };
            match dir {
                Direction::ToServer => self.req_state = next,
                Direction::ToClient => self.resp_state = next,
            }
        }
    }

    fn end_body(&mut self, dir: Direction, ts: u64, out: &mut Emitter<'_>) {
        match dir {
            Direction::ToServer => self.finish_request(ts, out),
            Direction::ToClient => self.finish_response(ts, out),
        }
    }

    fn body(
        &mut self,
        dir: Direction,
        framing: Framing,
        chunk: Chunk,
        rest: &[u8],
        ts: u64,
        out: &mut Emitter<'_>,
    ) -> BodyStep {
        match framing {
            Framing::None => BodyStep::Consumed(0, State::Headers),
            Framing::UntilClose => {
                self.body_bytes(dir, rest.len() as u64, Some(rest), ts);
                BodyStep::Consumed(rest.len(), State::Body(framing, chunk))
            }
            Framing::Length(left) => {
                let n = (rest.len() as u64).min(left);
                self.body_bytes(dir, n, Some(&rest[..n as usize]), ts);
                if n == left {
                    self.end_body(dir, ts, out);
                    BodyStep::Consumed(n as usize, State::Headers)
                } else {
                    BodyStep::Consumed(n as usize, State::Body(Framing::Length(left - n), chunk))
                }
            }
            Framing::Chunked => match chunk {
                Chunk::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        BodyStep::Consumed(n, State::Body(framing, Chunk::Trailers))
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        BodyStep::Consumed(n, State::Body(framing, Chunk::Data(size)))
                    }
                    Ok(httparse::Status::Partial) if rest.len() <= MAX_LINE => BodyStep::NeedMore,
                    _ => {
                        out.anomaly(Anomaly::BadChunkSize);
                        self.mark_incomplete(dir);
                        self.end_body(dir, ts, out);
                        BodyStep::Consumed(0, State::Resync)
                    }
                },
                Chunk::Data(left) => {
                    let n = (rest.len() as u64).min(left);
                    self.body_bytes(dir, n, Some(&rest[..n as usize]), ts);
                    let next = if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    };
                    BodyStep::Consumed(n as usize, State::Body(framing, next))
                }
                Chunk::DataEnd => {
                    if rest.starts_with(b"\r\n") {
                        BodyStep::Consumed(2, State::Body(framing, Chunk::Size))
                    } else if rest.starts_with(b"\n") {
                        BodyStep::Consumed(1, State::Body(framing, Chunk::Size))
                    } else if rest == b"\r" {
                        BodyStep::NeedMore
                    } else {
                        out.anomaly(Anomaly::BadChunkEnd);
                        BodyStep::Consumed(0, State::Body(framing, Chunk::Size))
                    }
                }
                Chunk::Trailers => match rest.iter().position(|&b| b == b'\n') {
                    Some(eol) => {
                        let line_empty = eol == 0 || (eol == 1 && rest[0] == b'\r');
                        if line_empty {
                            self.end_body(dir, ts, out);
                            BodyStep::Consumed(eol + 1, State::Headers)
                        } else {
                            BodyStep::Consumed(eol + 1, State::Body(framing, Chunk::Trailers))
                        }
                    }
                    None if rest.len() <= MAX_LINE => BodyStep::NeedMore,
                    None => {
                        out.anomaly(Anomaly::TrailerTooLarge);
                        self.end_body(dir, ts, out);
                        BodyStep::Consumed(rest.len(), State::Resync)
                    }
                },
            },
        }
    }
}

enum Parsed {
    Partial,
    Bad(Anomaly),
    Headers(usize, Framing),
    Tunnel(usize),
}

enum BodyStep {
    Consumed(usize, State),
    NeedMore,
}

/// Framing-relevant header facts.
#[derive(Default)]
struct FramingHeaders {
    content_length: Option<Result<u64, ()>>,
    chunked: bool,
    te_present: bool,
    te_and_cl: bool,
    /// The media type is one whose body is kept (`body::worth_keeping`).
    keep: bool,
    coding: Option<String>,
}

impl FramingHeaders {
    fn body(&self, response: bool) -> Result<Framing, Anomaly> {
        if self.te_present {
            // Chunked must be the final coding; otherwise a response is close-delimited
            // and a request is unframeable.
            return Ok(if self.chunked {
                Framing::Chunked
            } else if response {
                Framing::UntilClose
            } else {
                return Err(Anomaly::BadTransferEncoding);
            });
        }
        match self.content_length {
            Some(Ok(n)) => Ok(Framing::Length(n)),
            Some(Err(())) => Err(Anomaly::BadContentLength),
            None if response => Ok(Framing::UntilClose),
            None => Ok(Framing::None),
        }
    }
}

fn collect_headers(
    raw: &[httparse::Header<'_>],
    request: bool,
    out: &mut Emitter<'_>,
) -> (HeaderMap, FramingHeaders) {
    // One allocation for the block's fields (`raw`, at most `MAX_HEADERS` of them).
    let mut map = HeaderMap::with_capacity(raw.len());
    let mut f = FramingHeaders::default();
    for h in raw {
        let name = header_name(h.name);
        // Valid UTF-8 is the rule; only the exception pays for the lossy copy.
        let lossy;
        let value = match std::str::from_utf8(h.value) {
            Ok(v) => v.trim(),
            Err(_) => {
                lossy = String::from_utf8_lossy(h.value);
                lossy.trim()
            }
        };
        match name.as_ref() {
            "content-length" => {
                let parsed = value.parse::<u64>().map_err(|_| ());
                f.content_length = match f.content_length {
                    Some(Ok(old)) if parsed != Ok(old) => {
                        out.anomaly(Anomaly::ConflictingContentLength);
                        Some(Err(()))
                    }
                    _ => Some(parsed),
                };
            }
            "content-type" => f.keep = body::worth_keeping(value),
            "content-encoding" => f.coding = Some(value.to_string()),
            "transfer-encoding" => {
                f.te_present = true;
                // Empty list elements are ignored (RFC 9110 §5.6.1).
                f.chunked = value
                    .rsplit(',')
                    .map(str::trim)
                    .find(|c| !c.is_empty())
                    .is_some_and(|last| last.eq_ignore_ascii_case("chunked"));
            }
            _ => {}
        }
        let value = if is_secret(&name, request) {
            REDACTED.to_string()
        } else {
            value.to_string()
        };
        map.push(name, value);
    }
    f.te_and_cl = f.te_present && f.content_length.is_some();
    (map, f)
}

/// Offset of the first line in `data` that starts a request (`dir` to server) or a
/// response (to client).
fn find_message_start(data: &[u8], dir: Direction) -> Option<usize> {
    let starts = |at: &[u8]| match dir {
        Direction::ToServer => method_prefix(at) == Detection::FromClient,
        Direction::ToClient => at.starts_with(b"HTTP/1."),
    };
    if starts(data) {
        return Some(0);
    }
    data.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .find(|&i| starts(&data[i..]))
}

/// A method tapwire recognises.
fn is_token(s: &str) -> bool {
    METHODS.contains(&s.as_bytes())
}

/// The first line of a message cut by a gap (up to the end of the bytes if it has no end).
fn first_line(partial: &[u8]) -> Option<&str> {
    let eol = partial
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(partial.len());
    std::str::from_utf8(&partial[..eol])
        .ok()
        .map(|l| l.trim_end_matches('\r'))
}

/// An `Upgrade` header offering (or accepting) h2c.
/// Whether `Upgrade` names `protocol`.
fn upgrades_to(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get_all("upgrade")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(protocol))
}

fn wants_h2c(headers: &HeaderMap) -> bool {
    headers
        .get_all("upgrade")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
}

/// Turn a finished (or abandoned) request into its exchange.
fn build(r: Req, out: &mut Emitter<'_>) -> Exchange {
    let mut ex = out.exchange(Protocol::Http, r.start_ts);
    ex.network.protocol = r.version.map(|v| NetworkProtocol {
        version: v.to_string(),
    });
    if let Some((t, s)) = traceparent(&r.headers) {
        ex.trace_id = Some(t);
        ex.span_id = Some(s);
    }
    let mut incomplete = r.incomplete || !r.complete;
    ex.end_time_unix_nano = r.end_ts;
    check_coding(&r.body, r.coding.as_deref(), &mut ex, out);
    let response = r.resp.map(|p| {
        incomplete |= p.incomplete || !p.complete;
        ex.end_time_unix_nano = ex.end_time_unix_nano.max(p.end_ts);
        check_coding(&p.body, p.coding.as_deref(), &mut ex, out);
        (p.status, p.body_size, p.headers, p.body, p.coding)
    });
    ex.status = match &response {
        None if incomplete => Status::Incomplete,
        None => Status::NoResponse,
        Some(_) if incomplete => Status::Incomplete,
        Some((Some(code), ..)) if *code >= 400 => Status::Error,
        Some(_) => Status::Ok,
    };
    let no_body = None;
    let (resp_kept, resp_coding) = match &response {
        Some((.., kept, coding)) => (kept, coding.as_deref()),
        None => (&no_body, None),
    };
    graphql::refine(
        &mut ex,
        &graphql::HttpParts {
            method: Some(r.method.as_str()),
            query: r.query.as_deref(),
            request_type: r.headers.first("content-type"),
            request_body: BodySource {
                kept: &r.body,
                coding: r.coding.as_deref(),
            },
            response_body: BodySource {
                kept: resp_kept,
                coding: resp_coding,
            },
        },
        out,
    );
    ex.http = Some(Box::new(Http {
        request: HttpRequest {
            method: Some(r.method),
            body: Some(Body { size: r.body_size }),
            header: r.headers,
        },
        response: response.map(|(status, size, header, ..)| HttpResponse {
            status_code: status,
            body: Some(Body { size }),
            header,
        }),
    }));
    ex.url = Some(Box::new(Url {
        path: Some(r.path),
        query: r.query,
        scheme: None,
    }));
    ex
}

impl Req {
    /// What the request owns beyond its own size (its slot is counted by the queue).
    fn heap_bytes(&self) -> usize {
        self.method.capacity()
            + self.path.capacity()
            + self.query.as_ref().map_or(0, String::capacity)
            + self.headers.heap_bytes()
            + self.body.as_ref().map_or(0, KeptBody::heap_bytes)
            + self.coding.as_ref().map_or(0, String::capacity)
            + self.resp.as_ref().map_or(0, Resp::heap_bytes)
    }
}

impl Resp {
    /// What the response owns beyond its own size (it lives inline in a request or `Http1`).
    fn heap_bytes(&self) -> usize {
        self.headers.heap_bytes()
            + self.body.as_ref().map_or(0, KeptBody::heap_bytes)
            + self.coding.as_ref().map_or(0, String::capacity)
    }
}

impl Dissector for Http1 {
    fn held_bytes(&self) -> usize {
        if let Some(ws) = &self.ws {
            return ws.held_bytes();
        }
        match &self.h2 {
            Some(h2) => h2.held_bytes(),
            None => {
                self.inflight.held_bytes(Req::heap_bytes)
                    + self.resp_cur.as_ref().map_or(0, Resp::heap_bytes)
            }
        }
    }

    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        if let Some(ws) = self.ws.as_mut() {
            return ws.feed(dir, data, ts, out);
        }
        match self.h2.as_mut() {
            Some(h2) => h2.feed(dir, data, ts, out),
            None => self.run(dir, data, ts, out),
        }
    }

    fn cut(&mut self, dir: Direction, partial: &[u8], ts: u64, out: &mut Emitter<'_>) {
        if self.ws.is_some() {
            return;
        }
        if let Some(h2) = self.h2.as_mut() {
            return h2.cut(dir, partial, ts, out);
        }
        // A header block cut by the snaplen or a loss: keep its first line.
        let state = match dir {
            Direction::ToServer => self.req_state,
            Direction::ToClient => self.resp_state,
        };
        if state != State::Headers {
            return;
        }
        let Some(line) = first_line(partial) else {
            return;
        };
        let mut parts = line.splitn(3, ' ');
        let (a, b, c) = (parts.next(), parts.next(), parts.next());
        match dir {
            Direction::ToServer => {
                // Method and target are certain once the space after the target was seen.
                let (Some(method), Some(target), Some(version)) = (a, b, c) else {
                    return;
                };
                if !is_token(method)
                    || !"HTTP/1.".starts_with(version) && !version.starts_with("HTTP/1.")
                {
                    return;
                }
                let version = match version {
                    "HTTP/1.0" => Some("1.0"),
                    "HTTP/1.1" => Some("1.1"),
                    _ => None,
                };
                let start_ts = self.msg_start[0].take().unwrap_or(ts);
                let mut r = Req::from_line(method, target, version, start_ts, ts);
                r.incomplete = true;
                self.push_request(r, out);
                out.anomaly(Anomaly::HeadersCut);
            }
            Direction::ToClient => {
                let (Some(version), Some(code)) = (a, b) else {
                    return;
                };
                let Ok(code) = code.parse::<u16>() else {
                    return;
                };
                if !version.starts_with("HTTP/1.") || (100..200).contains(&code) {
                    return;
                }
                self.msg_start[1] = None;
                self.resp_cur = Some(Resp {
                    end_ts: ts,
                    status: Some(code),
                    headers: HeaderMap::new(),
                    body_size: 0,
                    complete: false,
                    incomplete: true,
                    ..Default::default()
                });
                out.anomaly(Anomaly::HeadersCut);
                // The body's framing is unknown: wait for the next message.
                self.resp_state = State::Resync;
                self.finish_response(ts, out);
            }
        }
    }

    fn gap(&mut self, dir: Direction, len: u64, ts: u64, out: &mut Emitter<'_>) {
        if let Some(ws) = self.ws.as_mut() {
            return ws.gap(dir, len, ts, out);
        }
        if let Some(h2) = self.h2.as_mut() {
            return h2.gap(dir, len, ts, out);
        }
        out.anomaly(Anomaly::Gap);
        let state = match dir {
            Direction::ToServer => &mut self.req_state,
            Direction::ToClient => &mut self.resp_state,
        };
        let keeps_framing = match *state {
            State::Tunnel => return,
            State::Body(Framing::UntilClose, _) => true,
            State::Body(Framing::Length(left), c) if left > len => {
                *state = State::Body(Framing::Length(left - len), c);
                true
            }
            State::Body(Framing::Length(left), _) if left == len => {
                *state = State::Headers;
                self.body_bytes(dir, len, None, ts);
                self.mark_incomplete(dir);
                self.end_body(dir, ts, out);
                return;
            }
            State::Body(Framing::Chunked, Chunk::Data(left)) if left > len => {
                *state = State::Body(Framing::Chunked, Chunk::Data(left - len));
                true
            }
            _ => false,
        };
        if keeps_framing {
            self.body_bytes(dir, len, None, ts);
            self.mark_incomplete(dir);
            return;
        }
        // Framing lost: give up on the message in flight on this side.
        let was = *state;
        *state = State::Resync;
        self.msg_start[dir.index()] = None;
        match dir {
            Direction::ToServer => {
                if let Some(i) = self.req_body_of.take()
                    && let Some(r) = self.inflight.iter_mut().nth(i)
                {
                    r.incomplete = true;
                    r.complete = true;
                }
            }
            Direction::ToClient => {
                // A response in progress, or (between messages) the one the oldest waiting
                // request was owed: either is lost. Already in resync: nothing new is lost.
                let waiting = self.answered_index().is_some();
                if self.resp_cur.is_some() || (was == State::Headers && waiting) {
                    let mut resp = self.resp_cur.take().unwrap_or(Resp {
                        end_ts: ts,
                        status: None,
                        headers: HeaderMap::new(),
                        body_size: 0,
                        complete: false,
                        incomplete: true,
                        ..Default::default()
                    });
                    resp.incomplete = true;
                    self.resp_cur = Some(resp);
                    self.finish_response(ts, out);
                }
            }
        }
        self.flush_done(out);
    }

    fn close(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if let Some(ws) = self.ws.as_mut() {
            return ws.close(ts, out);
        }
        if let Some(h2) = self.h2.as_mut() {
            return h2.close(ts, out);
        }
        // A close-delimited response ends here; anything else cut is incomplete.
        if let State::Body(framing, _) = self.resp_state {
            if framing != Framing::UntilClose {
                self.mark_incomplete(Direction::ToClient);
            }
            self.finish_response(ts, out);
        } else if self.resp_cur.is_some() {
            self.finish_response(ts, out);
        }
        if let State::Body(..) = self.req_state {
            self.mark_incomplete(Direction::ToServer);
            self.finish_request(ts, out);
        }
        self.flush_done(out);
        for r in self.inflight.drain().collect::<Vec<_>>() {
            let ex = build(r, out);
            out.emit(ex);
        }
    }
}

#[cfg(test)]
mod tests;
