//! HTTP/2 over cleartext TCP (RFC 9113), and the gRPC and GraphQL exchanges it carries.
//!
//! Connections are recognised by the client preface, by an HTTP/1 `Upgrade: h2c` answered
//! with `101` (the HTTP/1 dissector hands the flow over, the upgrading request being stream
//! 1), or, for connections already running when capture started, by frame structure
//! ([`frame::find_sync`]). Frames are read whole, except DATA payloads, which stream through
//! in whatever pieces arrive. Header blocks (HEADERS or PUSH_PROMISE plus CONTINUATION) are
//! decoded by [`hpack`], one decoder per direction.
//!
//! One exchange per stream that carries request headers (or a server push): request headers
//! and body, then the final response headers (interim `1xx` are skipped), body and trailers.
//! It is emitted when the response ends (`END_STREAM`), when either side resets the stream
//! (`http2.error_code`, `http2.reset_by`; `error` unless `NO_ERROR`), when a GOAWAY refuses it,
//! or when the connection closes. gRPC (`application/grpc*`) and GraphQL requests are refined
//! by [`crate::protocols::grpc`] and [`crate::protocols::graphql`].
//!
//! # Mid-connection pickup and loss
//!
//! Header values are never guessed (see [`hpack`] for the table rule). A field that refers to
//! a table entry tapwire did not see is left out and counted in
//! `http2.unknown_header_fields`; the rest of the block (static-table fields, literals,
//! entries inserted since pickup) is exact. A stream first seen after its request headers
//! (capture started, or a gap) becomes an `incomplete` exchange with what is certain: its id,
//! body sizes, the response status and trailers when seen. When a gap cuts a header block,
//! the fields decoded before the cut are kept and the exchange is marked `incomplete`; the
//! direction's table becomes untrusted. A gap inside a DATA payload keeps the framing; any
//! other gap loses it and the direction resynchronises on the next frame boundary.
//!
//! Limits: [`MAX_STREAMS`] open streams per connection (the oldest is emitted as
//! `incomplete` beyond it, `http2.stream_cap`); control and header frames larger than
//! [`MAX_FRAME_BUFFERED`] are skipped (`http2.frame_too_large`, header state lost); a header
//! block is at most [`MAX_HEADER_BLOCK`] bytes across its CONTINUATIONs and at most
//! [`MAX_FIELDS`] fields are kept per block. Request and response bodies are counted and,
//! for media types refiners read, kept up to `body::MAX_KEPT_BODY`.

pub mod frame;
pub mod hpack;

use std::borrow::Cow;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use schemas::l7::http::{Body, Http, Http2 as Http2Fields, HttpRequest, HttpResponse, Url};
use schemas::{Exchange, HeaderMap, NetworkProtocol, Protocol, Status, Transport};

use crate::dissect::body::{self, KeptBody};
use crate::dissect::entry::Detection;
use crate::dissect::entry::ProtocolEntry;
use crate::dissect::http_fields::{
    BodySource, REDACTED, check_coding, is_secret, split_target, traceparent,
};
use crate::dissect::{Direction, Dissector, Emitter, FlowMeta, Progress};
use crate::protocols::graphql;
use crate::protocols::grpc::{self, MessageScan};
use frame::{Header, Sync};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadFrame = "http2.bad_frame",
        BadPadding = "http2.bad_padding",
        BlockOfUnknownSide = "http2.block_of_unknown_side",
        FrameOverMaxSize = "http2.frame_over_max_size",
        FrameTooLarge = "http2.frame_too_large",
        Gap = "http2.gap",
        HeaderBlockTooLarge = "http2.header_block_too_large",
        HeaderListTooLarge = "http2.header_list_too_large",
        HpackError = "http2.hpack_error",
        InterruptedHeaderBlock = "http2.interrupted_header_block",
        MidFrameStart = "http2.mid_frame_start",
        OrphanContinuation = "http2.orphan_continuation",
        StreamCap = "http2.stream_cap",
        TooManyFields = "http2.too_many_fields",
        UnknownHeaderFields = "http2.unknown_header_fields",
    }
}

/// Open streams tracked per connection.
pub const MAX_STREAMS: usize = 1024;
/// Largest header block (HEADERS or PUSH_PROMISE plus CONTINUATIONs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Largest non-DATA frame read whole; larger ones are skipped.
pub const MAX_FRAME_BUFFERED: usize = 64 * 1024;
/// Header fields kept per block.
pub const MAX_FIELDS: usize = 128;
/// Ids of recently finished streams remembered, so their late frames are not taken for
/// streams that started before capture.
const RECENTLY_CLOSED: usize = 64;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Http,
    tcp: true,
    udp: false,
    ports: &[50051],
    detect,
    new: |meta: &FlowMeta| Box::new(Http2::new(meta)),
};

/// The preface, or frames from their first byte: a whole chain of plausible frames that
/// ends exactly with the bytes. The first header block tells requests (`:method`, `:path`
/// first) from responses (`:status`).
fn detect(data: &[u8], _t: Transport, _hinted: bool) -> Detection {
    if data.len() >= frame::PREFACE.len() {
        if data.starts_with(frame::PREFACE) {
            return Detection::FromClient;
        }
    } else if frame::PREFACE.starts_with(data) && data.len() >= 3 {
        return Detection::NeedMore;
    }
    let mut at = 0;
    let mut sender = None;
    let mut frames = 0;
    while at < data.len() {
        let Some(h) = Header::plausible(&data[at..], frame::DEFAULT_MAX_FRAME) else {
            return if data.len() - at < frame::HEADER_LEN && frames > 0 {
                Detection::NeedMore
            } else {
                Detection::No
            };
        };
        let end = at + frame::HEADER_LEN + h.len as usize;
        if end > data.len() {
            return if frames > 0 || h.kind == frame::HEADERS {
                Detection::NeedMore
            } else {
                Detection::No
            };
        }
        if sender.is_none() {
            sender = match h.kind {
                frame::HEADERS => frame::headers_fragment(&h, &data[at + 9..end])
                    .ok()
                    .and_then(first_field_side),
                frame::PUSH_PROMISE => Some(Detection::FromServer),
                _ => None,
            };
        }
        frames += 1;
        at = end;
    }
    sender.unwrap_or(Detection::FromClient)
}

/// Whether a header block's first field is a request or a response pseudo-header (static
/// table indices 1–7 and 8–14), when it says.
fn first_field_side(block: &[u8]) -> Option<Detection> {
    let mut b = *block.first()?;
    if b & 0xe0 == 0x20 {
        return None; // a size update first: do not guess
    }
    if b & 0x80 != 0 {
        b &= 0x7f;
    } else if b & 0xc0 == 0x40 {
        b &= 0x3f;
    } else {
        b &= 0x0f;
    }
    match b {
        1..=7 => Some(Detection::FromClient),
        8..=14 => Some(Detection::FromServer),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing seen yet on this side: the preface, or frames, or bytes to resync in.
    Start,
    Frames,
    Resync,
}

/// Which end sent something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// The rest of a DATA frame's payload.
#[derive(Debug)]
struct DataRun {
    stream: u32,
    data_left: u64,
    pad_left: u64,
    end_stream: bool,
}

/// A header block waiting for its CONTINUATIONs.
#[derive(Debug)]
struct Block {
    stream: u32,
    promised: Option<u32>,
    end_stream: bool,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Side {
    hpack: hpack::Decoder,
    mode: Mode,
    data: Option<DataRun>,
    /// Bytes left of a frame being skipped.
    skip: u64,
    block: Option<Block>,
    /// `SETTINGS_MAX_FRAME_SIZE` the peer allows this side.
    max_frame: u32,
}

impl Side {
    fn new() -> Self {
        Side {
            hpack: hpack::Decoder::mid_connection(),
            mode: Mode::Start,
            data: None,
            skip: 0,
            block: None,
            max_frame: frame::DEFAULT_MAX_FRAME,
        }
    }

    /// Framing lost: resynchronise, and forget the header table.
    fn lose(&mut self) {
        self.mode = Mode::Resync;
        self.data = None;
        self.skip = 0;
        self.block = None;
        self.hpack.lose();
    }
}

/// Decoded header block: pseudo-headers, fields, and how many were unknown.
#[derive(Debug, Default)]
struct Head {
    method: Option<String>,
    path: Option<String>,
    scheme: Option<String>,
    status: Option<u16>,
    headers: HeaderMap,
    unknown: u32,
    /// Fields left out by the decoded header-list cap (`hpack::MAX_HEADER_LIST`).
    over_cap: u32,
    /// Decoded bytes kept in `headers` (name + value + 32 per field).
    bytes: usize,
}

impl Head {
    fn field(&mut self, f: hpack::Field, dropped: &mut bool) {
        let (name, value) = match f {
            hpack::Field::Known { name, value } => (name, value),
            hpack::Field::Unknown => {
                self.unknown += 1;
                return;
            }
            hpack::Field::OverCap => {
                self.over_cap += 1;
                return;
            }
        };
        match name.as_ref() {
            ":method" => self.method = Some(value),
            ":path" => self.path = Some(value),
            ":scheme" => self.scheme = Some(value),
            ":status" => self.status = value.parse().ok(),
            ":authority" | ":protocol" => {}
            _ if self.headers.len() >= MAX_FIELDS => *dropped = true,
            n => {
                let value = if is_secret(n, true) || is_secret(n, false) {
                    REDACTED.to_string()
                } else {
                    value
                };
                self.bytes += n.len() + value.len() + 32;
                self.headers.push(name, value);
            }
        }
    }

    fn is_request(&self) -> bool {
        self.method.is_some() || self.path.is_some() || self.scheme.is_some()
    }
}

/// One direction of a stream.
#[derive(Debug, Default)]
struct Part {
    head: Option<Head>,
    trailers: Option<Head>,
    body_size: u64,
    kept: Option<KeptBody>,
    coding: Option<String>,
    content_type: Option<String>,
    grpc: Option<MessageScan>,
    ended: bool,
}

impl Part {
    /// Take a (non-interim) header block: the head first, then trailers. Further trailer
    /// blocks add to the trailers within the same caps as one block (`MAX_FIELDS` fields,
    /// `hpack::MAX_HEADER_LIST` bytes); what does not fit is counted as over the cap.
    fn take(&mut self, head: Head, keep_grpc: bool) {
        if self.head.is_some() {
            match &mut self.trailers {
                Some(t) => {
                    t.unknown += head.unknown;
                    t.over_cap += head.over_cap;
                    for (n, v) in head.headers.iter() {
                        let size = n.len() + v.len() + 32;
                        if t.headers.len() >= MAX_FIELDS || t.bytes + size > hpack::MAX_HEADER_LIST
                        {
                            t.over_cap += 1;
                            continue;
                        }
                        t.bytes += size;
                        t.headers.push(Cow::Owned(n.to_string()), v.to_string());
                    }
                }
                None => self.trailers = Some(head),
            }
            return;
        }
        if let Some(ct) = head.headers.first("content-type") {
            if grpc::is_grpc(ct) {
                self.grpc = Some(MessageScan::new(keep_grpc));
            } else if body::worth_keeping(ct) {
                self.kept = Some(KeptBody::default());
            }
            self.content_type = Some(ct.to_string());
        }
        self.coding = head.headers.first("content-encoding").map(str::to_string);
        self.head = Some(head);
    }

    fn data(&mut self, bytes: Option<&[u8]>, n: u64) {
        self.body_size += n;
        match bytes {
            Some(b) => {
                if let Some(k) = &mut self.kept {
                    k.push(b);
                }
                if let Some(g) = &mut self.grpc {
                    g.push(b);
                }
            }
            None => {
                if let Some(k) = &mut self.kept {
                    k.truncated = true;
                }
                if let Some(g) = &mut self.grpc {
                    g.gap();
                }
            }
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        let t = self.trailers.as_ref().and_then(|t| t.headers.first(name));
        t.or_else(|| self.head.as_ref().and_then(|h| h.headers.first(name)))
    }
}

#[derive(Debug)]
struct Stream {
    id: u32,
    start_ts: u64,
    end_ts: u64,
    /// Request headers were seen (not a stream picked up mid-way).
    pushed: bool,
    req: Part,
    resp: Part,
    incomplete: bool,
    reset: Option<(u32, Role)>,
    refused: Option<u32>,
}

impl Stream {
    fn new(id: u32, ts: u64) -> Self {
        Stream {
            id,
            start_ts: ts,
            end_ts: ts,
            pushed: false,
            req: Part::default(),
            resp: Part::default(),
            incomplete: false,
            reset: None,
            refused: None,
        }
    }
}

/// What an HTTP/1 request that upgraded to h2c hands over as stream 1.
#[derive(Debug)]
pub struct Upgraded {
    pub start_ts: u64,
    pub end_ts: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body_size: u64,
    pub body: Option<KeptBody>,
    pub coding: Option<String>,
    pub complete: bool,
}

/// HTTP/2 dissector state for one connection.
pub struct Http2 {
    sides: [Side; 2],
    streams: FxHashMap<u32, Stream>,
    closed: VecDeque<u32>,
    /// The flow's roles are the other way round (decided by the first request or response
    /// header block, or the preface).
    swapped: Option<bool>,
    /// The connection was seen from its start (preface or h2c upgrade).
    known_start: bool,
    /// Streams the client reset while the server may still have frames for them in flight:
    /// they end at the server's next frame for another stream (or their own end).
    draining: Vec<u32>,
}

impl Http2 {
    pub fn new(_meta: &FlowMeta) -> Self {
        Http2 {
            sides: [Side::new(), Side::new()],
            streams: FxHashMap::default(),
            closed: VecDeque::new(),
            swapped: None,
            known_start: false,
            draining: Vec::new(),
        }
    }

    /// The connection after an HTTP/1 `Upgrade: h2c` and its `101`: the upgrading request is
    /// stream 1, whose response comes in HTTP/2 frames.
    pub fn upgraded(meta: &FlowMeta, req: Upgraded) -> Self {
        let mut h = Http2::new(meta);
        h.known_start = true;
        h.swapped = Some(false);
        for s in &mut h.sides {
            s.hpack = hpack::Decoder::new();
        }
        let (path, query) = (req.path, req.query);
        let mut st = Stream::new(1, req.start_ts);
        st.end_ts = req.end_ts;
        st.req = Part {
            head: Some(Head {
                method: Some(req.method),
                path: Some(match query {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                }),
                scheme: None,
                status: None,
                headers: req.headers,
                ..Head::default()
            }),
            body_size: req.body_size,
            kept: req.body,
            coding: req.coding,
            ended: true,
            ..Part::default()
        };
        st.incomplete = !req.complete;
        h.streams.insert(1, st);
        h
    }

    /// The roles are now known: `swapped` when the flow's are the other way round. What
    /// was attributed before (by the flow's roles) moves to its side.
    fn decide(&mut self, swapped: bool) {
        self.swapped = Some(swapped);
        if swapped {
            for s in self.streams.values_mut() {
                std::mem::swap(&mut s.req, &mut s.resp);
            }
        }
    }

    fn role(&self, dir: Direction) -> Role {
        let d = if self.swapped == Some(true) {
            dir.reverse()
        } else {
            dir
        };
        match d {
            Direction::ToServer => Role::Client,
            Direction::ToClient => Role::Server,
        }
    }

    /// The stream `id`, created when new (`None` for frames of a stream that just ended).
    fn stream(&mut self, id: u32, ts: u64, out: &mut Emitter<'_>) -> Option<&mut Stream> {
        if !self.streams.contains_key(&id) {
            if self.closed.contains(&id) {
                return None;
            }
            if self.streams.len() >= MAX_STREAMS
                && let Some(&oldest) = self.streams.keys().min()
            {
                out.anomaly(Anomaly::StreamCap);
                if let Some(mut s) = self.streams.remove(&oldest) {
                    s.incomplete = true;
                    self.emit(s, out);
                }
            }
            self.streams.insert(id, Stream::new(id, ts));
        }
        self.streams.get_mut(&id)
    }

    fn finish(&mut self, id: u32, out: &mut Emitter<'_>) {
        if let Some(s) = self.streams.remove(&id) {
            self.emit(s, out);
        }
    }

    fn emit(&mut self, s: Stream, out: &mut Emitter<'_>) {
        self.draining.retain(|&d| d != s.id);
        if self.closed.len() >= RECENTLY_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(s.id);
        let ex = self.build(s, out);
        out.emit(ex);
    }

    /// Parse as much of one direction as possible.
    fn run(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        let d = dir.index();
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            match self.sides[d].mode {
                Mode::Start => {
                    if rest.len() < frame::PREFACE.len() && frame::PREFACE.starts_with(rest) {
                        return Progress::Incomplete {
                            consumed: pos,
                            needed: frame::PREFACE.len() - rest.len(),
                        };
                    }
                    if rest.starts_with(frame::PREFACE) {
                        pos += frame::PREFACE.len();
                        if self.swapped.is_none() {
                            self.decide(dir == Direction::ToClient);
                        }
                        if !self.known_start {
                            self.known_start = true;
                            // The server speaks after the preface: both tables are fresh.
                            if self.sides[1 - d].mode == Mode::Start {
                                self.sides[1 - d].hpack = hpack::Decoder::new();
                            }
                            self.sides[d].hpack = hpack::Decoder::new();
                        }
                        self.sides[d].mode = Mode::Frames;
                    } else if rest.len() < frame::HEADER_LEN {
                        return Progress::Incomplete {
                            consumed: pos,
                            needed: frame::HEADER_LEN - rest.len(),
                        };
                    } else if Header::plausible(rest, u32::MAX).is_some() {
                        self.sides[d].mode = Mode::Frames;
                    } else {
                        self.sides[d].mode = Mode::Resync;
                        out.anomaly(Anomaly::MidFrameStart);
                    }
                }
                Mode::Resync => match frame::find_sync(rest) {
                    Sync::At(at) => {
                        pos += at;
                        self.sides[d].mode = Mode::Frames;
                    }
                    Sync::NeedMore(at) => {
                        return Progress::Incomplete {
                            consumed: pos + at,
                            needed: 0,
                        };
                    }
                    Sync::None => return Progress::Done,
                },
                Mode::Frames => {
                    if let Some(run) = &mut self.sides[d].data {
                        let n = (run.data_left.min(rest.len() as u64)) as usize;
                        let stream = run.stream;
                        run.data_left -= n as u64;
                        let pad = (run.pad_left.min((rest.len() - n) as u64)) as usize;
                        run.pad_left -= pad as u64;
                        let done = run.data_left == 0 && run.pad_left == 0;
                        let end_stream = run.end_stream;
                        if done {
                            self.sides[d].data = None;
                        }
                        if n > 0 {
                            self.data_bytes(dir, stream, Some(&rest[..n]), n as u64, ts, out);
                        }
                        pos += n + pad;
                        if done && end_stream {
                            self.end_stream(dir, stream, ts, out);
                        }
                        continue;
                    }
                    if self.sides[d].skip > 0 {
                        let n = self.sides[d].skip.min(rest.len() as u64);
                        self.sides[d].skip -= n;
                        pos += n as usize;
                        continue;
                    }
                    let Some(h) = Header::parse(rest) else {
                        return Progress::Incomplete {
                            consumed: pos,
                            needed: frame::HEADER_LEN - rest.len(),
                        };
                    };
                    if !self.draining.is_empty() && self.role(dir) == Role::Server {
                        self.drain(h.stream, out);
                    }
                    if h.kind == frame::DATA {
                        if h.stream == 0 {
                            // Resynchronise past this header, not onto it again.
                            self.bad_frame(dir, Anomaly::BadFrame, out);
                            pos += 1;
                            continue;
                        }
                        let mut pad = 0u64;
                        let mut hdr = frame::HEADER_LEN;
                        if h.has(frame::PADDED) {
                            let Some(&p) = rest.get(frame::HEADER_LEN) else {
                                return Progress::Incomplete {
                                    consumed: pos,
                                    needed: 1,
                                };
                            };
                            if u32::from(p) >= h.len {
                                self.bad_frame(dir, Anomaly::BadPadding, out);
                                pos += 1;
                                continue;
                            }
                            pad = u64::from(p);
                            hdr += 1;
                        }
                        let data_left = u64::from(h.len) - (hdr - frame::HEADER_LEN) as u64 - pad;
                        pos += hdr;
                        self.touch(h.stream, ts, out);
                        self.sides[d].data = Some(DataRun {
                            stream: h.stream,
                            data_left,
                            pad_left: pad,
                            end_stream: h.has(frame::END_STREAM),
                        });
                        if data_left == 0 && pad == 0 {
                            self.sides[d].data = None;
                            if h.has(frame::END_STREAM) {
                                self.end_stream(dir, h.stream, ts, out);
                            }
                        }
                        continue;
                    }
                    let total = frame::HEADER_LEN + h.len as usize;
                    if h.len as usize > MAX_FRAME_BUFFERED {
                        out.anomaly(Anomaly::FrameTooLarge);
                        let side = &mut self.sides[d];
                        if matches!(
                            h.kind,
                            frame::HEADERS | frame::PUSH_PROMISE | frame::CONTINUATION
                        ) {
                            side.hpack.lose();
                            side.block = None;
                            self.mark_stream_incomplete(h.stream);
                        }
                        self.sides[d].skip = u64::from(h.len);
                        pos += frame::HEADER_LEN;
                        continue;
                    }
                    if rest.len() < total {
                        return Progress::Incomplete {
                            consumed: pos,
                            needed: total - rest.len(),
                        };
                    }
                    let payload = &rest[frame::HEADER_LEN..total];
                    pos += total;
                    self.frame(dir, h, payload, ts, out);
                }
            }
        }
        Progress::Done
    }

    /// The server sent a frame of `stream`: client-reset streams other than it are over.
    fn drain(&mut self, stream: u32, out: &mut Emitter<'_>) {
        let done: Vec<u32> = self
            .draining
            .iter()
            .copied()
            .filter(|&id| id != stream)
            .collect();
        self.draining.retain(|&id| id == stream);
        for id in done {
            self.finish(id, out);
        }
    }

    fn bad_frame(&mut self, dir: Direction, anomaly: Anomaly, out: &mut Emitter<'_>) {
        out.anomaly(anomaly);
        self.sides[dir.index()].lose();
        self.mark_all_incomplete();
    }

    fn mark_stream_incomplete(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.incomplete = true;
        }
    }

    fn mark_all_incomplete(&mut self) {
        for s in self.streams.values_mut() {
            s.incomplete = true;
        }
    }

    /// A frame of `stream` was seen at `ts`.
    fn touch(&mut self, stream: u32, ts: u64, out: &mut Emitter<'_>) {
        if let Some(s) = self.stream(stream, ts, out) {
            s.end_ts = s.end_ts.max(ts);
        }
    }

    fn data_bytes(
        &mut self,
        dir: Direction,
        stream: u32,
        bytes: Option<&[u8]>,
        n: u64,
        ts: u64,
        out: &mut Emitter<'_>,
    ) {
        let role = self.role(dir);
        let Some(s) = self.stream(stream, ts, out) else {
            return;
        };
        s.end_ts = s.end_ts.max(ts);
        match role {
            Role::Client => s.req.data(bytes, n),
            Role::Server => s.resp.data(bytes, n),
        }
        if bytes.is_none() {
            s.incomplete = true;
        }
    }

    fn end_stream(&mut self, dir: Direction, stream: u32, ts: u64, out: &mut Emitter<'_>) {
        let role = self.role(dir);
        let Some(s) = self.stream(stream, ts, out) else {
            return;
        };
        s.end_ts = s.end_ts.max(ts);
        match role {
            Role::Client => s.req.ended = true,
            Role::Server => {
                s.resp.ended = true;
                self.finish(stream, out);
            }
        }
    }

    /// A whole non-DATA frame.
    fn frame(&mut self, dir: Direction, h: Header, payload: &[u8], ts: u64, out: &mut Emitter<'_>) {
        let d = dir.index();
        if self.sides[d].block.is_some() && h.kind != frame::CONTINUATION {
            // RFC 9113 §6.10: nothing may interleave with a header block.
            out.anomaly(Anomaly::InterruptedHeaderBlock);
            self.sides[d].block = None;
            self.sides[d].hpack.lose();
        }
        match h.kind {
            frame::HEADERS => {
                let Ok(fragment) = frame::headers_fragment(&h, payload) else {
                    self.bad_frame(dir, Anomaly::BadPadding, out);
                    return;
                };
                self.block_start(dir, h, None, fragment, ts, out);
            }
            frame::PUSH_PROMISE => {
                let Ok((promised, fragment)) = frame::push_promise(&h, payload) else {
                    self.bad_frame(dir, Anomaly::BadPadding, out);
                    return;
                };
                self.block_start(dir, h, Some(promised), fragment, ts, out);
            }
            frame::CONTINUATION => {
                let side = &mut self.sides[d];
                match &mut side.block {
                    Some(b) if b.stream == h.stream => {
                        if b.buf.len() + payload.len() > MAX_HEADER_BLOCK {
                            out.anomaly(Anomaly::HeaderBlockTooLarge);
                            side.block = None;
                            side.hpack.lose();
                            self.mark_stream_incomplete(h.stream);
                            return;
                        }
                        b.buf.extend_from_slice(payload);
                    }
                    _ => {
                        // The block's start was lost (or never sent): its inserts are unknown.
                        out.anomaly(Anomaly::OrphanContinuation);
                        side.block = None;
                        side.hpack.lose();
                        self.mark_stream_incomplete(h.stream);
                        return;
                    }
                }
                if h.has(frame::END_HEADERS)
                    && let Some(b) = self.sides[d].block.take()
                {
                    self.block_done(dir, b, ts, false, out);
                }
            }
            frame::RST_STREAM => {
                let code = frame::u32_at(payload, 0).unwrap_or(0);
                let role = self.role(dir);
                if let Some(s) = self.streams.get_mut(&h.stream) {
                    s.end_ts = s.end_ts.max(ts);
                    s.reset.get_or_insert((code, role));
                    if role == Role::Client && !s.resp.ended {
                        if !self.draining.contains(&h.stream) {
                            self.draining.push(h.stream);
                        }
                    } else {
                        self.finish(h.stream, out);
                    }
                }
            }
            frame::SETTINGS if !h.has(frame::ACK) => {
                for (id, value) in frame::settings(payload) {
                    if id == frame::SETTINGS_MAX_FRAME_SIZE {
                        // What this side allows the other to send.
                        self.sides[1 - d].max_frame = value;
                    }
                }
            }
            frame::GOAWAY => {
                let last = frame::u32_at(payload, 0).unwrap_or(u32::MAX) & 0x7fff_ffff;
                let code = frame::u32_at(payload, 4).unwrap_or(0);
                // Streams the other side opened above `last` were not processed.
                let opened_by_peer_odd = self.role(dir) == Role::Server;
                let mut refused: Vec<u32> = self
                    .streams
                    .values()
                    .filter(|s| s.id > last && (s.id % 2 == 1) == opened_by_peer_odd)
                    .map(|s| s.id)
                    .collect();
                refused.sort_unstable();
                for id in refused {
                    if let Some(s) = self.streams.get_mut(&id) {
                        s.refused = Some(code);
                        s.end_ts = s.end_ts.max(ts);
                    }
                    self.finish(id, out);
                }
            }
            _ => {} // PRIORITY, PING, WINDOW_UPDATE, SETTINGS ACK, unknown types
        }
        if h.len > self.sides[d].max_frame.max(frame::DEFAULT_MAX_FRAME) {
            out.anomaly(Anomaly::FrameOverMaxSize);
        }
    }

    fn block_start(
        &mut self,
        dir: Direction,
        h: Header,
        promised: Option<u32>,
        fragment: &[u8],
        ts: u64,
        out: &mut Emitter<'_>,
    ) {
        let b = Block {
            stream: h.stream,
            promised,
            end_stream: h.kind == frame::HEADERS && h.has(frame::END_STREAM),
            buf: fragment.to_vec(),
        };
        self.touch(h.stream, ts, out);
        if h.has(frame::END_HEADERS) {
            self.block_done(dir, b, ts, false, out);
        } else {
            self.sides[dir.index()].block = Some(b);
        }
    }

    /// A complete (or, when `cut`, truncated by a gap) header block.
    fn block_done(&mut self, dir: Direction, b: Block, ts: u64, cut: bool, out: &mut Emitter<'_>) {
        let d = dir.index();
        let mut head = Head::default();
        let mut dropped = false;
        let r = self.sides[d]
            .hpack
            .decode(&b.buf, |f| head.field(f, &mut dropped));
        if dropped {
            out.anomaly(Anomaly::TooManyFields);
        }
        if head.over_cap > 0 {
            out.anomaly(Anomaly::HeaderListTooLarge);
        }
        if r.is_err() && !cut {
            out.anomaly(Anomaly::HpackError);
        }
        let broken = r.is_err() || cut;
        if self.swapped.is_none() {
            let from_server = if b.promised.is_some() {
                // Only a server sends PUSH_PROMISE.
                Some(true)
            } else if head.is_request() {
                Some(false)
            } else if head.status.is_some() || head.headers.first("grpc-status").is_some() {
                // A response, or gRPC trailers.
                Some(true)
            } else {
                None
            };
            match from_server {
                Some(f) => self.decide(f == (dir == Direction::ToServer)),
                None => {
                    // Trailers of unknown origin before the roles are known: a field on the
                    // wrong side would be a wrong value, so the block is left out.
                    out.anomaly(Anomaly::BlockOfUnknownSide);
                    if let Some(s) = self.streams.get_mut(&b.stream) {
                        s.incomplete = true;
                    }
                    return;
                }
            }
        }
        let role = self.role(dir);
        let keep_grpc = out.descriptors.is_some();
        if let Some(promised) = b.promised {
            // A server push: the promised stream's request.
            let Some(s) = self.stream(promised, ts, out) else {
                return;
            };
            s.pushed = true;
            s.incomplete |= broken;
            s.req.take(head, keep_grpc);
            s.req.ended = true;
            return;
        }
        let Some(s) = self.stream(b.stream, ts, out) else {
            return;
        };
        s.end_ts = s.end_ts.max(ts);
        s.incomplete |= broken;
        match role {
            Role::Client => {
                s.req.take(head, keep_grpc);
                if b.end_stream {
                    s.req.ended = true;
                }
            }
            Role::Server => {
                let interim = head
                    .status
                    .is_some_and(|c| (100..200).contains(&c) && c != 101);
                if interim && s.resp.head.is_none() {
                    return;
                }
                s.resp.take(head, keep_grpc);
                if b.end_stream {
                    s.resp.ended = true;
                    self.finish(b.stream, out);
                }
            }
        }
    }

    /// Turn a finished stream into its exchange.
    fn build(&self, s: Stream, out: &mut Emitter<'_>) -> Exchange {
        let mut ex = out.exchange(Protocol::Http, s.start_ts);
        if self.swapped == Some(true) {
            std::mem::swap(&mut ex.client, &mut ex.server);
        }
        ex.end_time_unix_nano = s.end_ts;
        ex.network.protocol = Some(NetworkProtocol {
            version: "2".into(),
        });
        let req_head = s.req.head.as_ref();
        let seen_request = req_head.is_some();
        if let Some((t, sp)) = req_head.and_then(|h| traceparent(&h.headers)) {
            ex.trace_id = Some(t);
            ex.span_id = Some(sp);
        }
        let unknown = [&s.req.head, &s.req.trailers, &s.resp.head, &s.resp.trailers]
            .iter()
            .filter_map(|h| h.as_ref())
            .map(|h| h.unknown)
            .sum::<u32>();
        if unknown > 0 {
            ex.add_anomaly(Anomaly::UnknownHeaderFields.name());
        }
        let error_code = s.reset.map(|(c, _)| c).or(s.refused);
        let reset_error = error_code.is_some_and(|c| c != 0);
        let status = s.resp.head.as_ref().and_then(|h| h.status);
        ex.status = if reset_error {
            Status::Error
        } else if s.resp.head.is_none() {
            if s.incomplete || !seen_request {
                Status::Incomplete
            } else {
                Status::NoResponse
            }
        } else if s.incomplete || !seen_request || (!s.resp.ended && s.reset.is_none()) {
            Status::Incomplete
        } else if status.is_some_and(|c| c >= 400) {
            Status::Error
        } else {
            Status::Ok
        };
        check_coding(&s.req.kept, s.req.coding.as_deref(), &mut ex, out);
        check_coding(&s.resp.kept, s.resp.coding.as_deref(), &mut ex, out);
        let path = req_head.and_then(|h| h.path.as_deref());
        let scheme = req_head.and_then(|h| h.scheme.clone());
        if path.is_some() || scheme.is_some() {
            let (path, query) = match path.map(split_target) {
                Some((p, q)) => (Some(p), q),
                None => (None, None),
            };
            ex.url = Some(Box::new(Url {
                path,
                query,
                scheme,
            }));
        }
        let merged = |part: &Part| {
            let mut m = part
                .head
                .as_ref()
                .map(|h| h.headers.clone())
                .unwrap_or_default();
            if let Some(t) = &part.trailers {
                for (n, v) in t.headers.iter() {
                    m.push(Cow::Owned(n.to_string()), v.to_string());
                }
            }
            m
        };
        ex.http = Some(Box::new(Http {
            request: HttpRequest {
                method: req_head.and_then(|h| h.method.clone()),
                body: Some(Body {
                    size: s.req.body_size,
                }),
                header: merged(&s.req),
            },
            response: s.resp.head.as_ref().map(|h| HttpResponse {
                status_code: h.status,
                body: Some(Body {
                    size: s.resp.body_size,
                }),
                header: merged(&s.resp),
            }),
        }));
        ex.http2 = Some(Box::new(Http2Fields {
            stream_id: s.id,
            error_code: error_code.map(frame::error_name),
            reset_by: s.reset.map(|(_, r)| r.as_str().to_string()),
            pushed: s.pushed,
            unknown_header_fields: unknown,
        }));
        let grpc_status = s.resp.header("grpc-status");
        if s.req.grpc.is_some() || s.resp.grpc.is_some() || grpc_status.is_some() {
            let empty = MessageScan::default();
            grpc::refine(
                &mut ex,
                grpc::Finished {
                    path,
                    status: grpc_status,
                    message: s.resp.header("grpc-message"),
                    encoding: s
                        .req
                        .header("grpc-encoding")
                        .or(s.resp.header("grpc-encoding")),
                    request: s.req.grpc.as_ref().unwrap_or(&empty),
                    response: s.resp.grpc.as_ref().unwrap_or(&empty),
                },
                out,
            );
        } else if seen_request {
            let (_, query) = path.map(split_target).unwrap_or_default();
            graphql::refine(
                &mut ex,
                &graphql::HttpParts {
                    method: req_head.and_then(|h| h.method.as_deref()),
                    query: query.as_deref(),
                    request_type: s.req.content_type.as_deref(),
                    request_body: BodySource {
                        kept: &s.req.kept,
                        coding: s.req.coding.as_deref(),
                    },
                    response_body: BodySource {
                        kept: &s.resp.kept,
                        coding: s.resp.coding.as_deref(),
                    },
                },
                out,
            );
        }
        ex
    }
}

impl Head {
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Head>()
            + [&self.method, &self.path, &self.scheme]
                .iter()
                .map(|s| s.as_ref().map_or(0, String::capacity))
                .sum::<usize>()
            + self.headers.heap_bytes()
    }
}

impl Part {
    fn heap_bytes(&self) -> usize {
        self.head.as_ref().map_or(0, Head::heap_bytes)
            + self.trailers.as_ref().map_or(0, Head::heap_bytes)
            + self.kept.as_ref().map_or(0, KeptBody::heap_bytes)
            + self.coding.as_ref().map_or(0, String::capacity)
            + self.content_type.as_ref().map_or(0, String::capacity)
            + self.grpc.as_ref().map_or(0, MessageScan::heap_bytes)
    }
}

impl Dissector for Http2 {
    fn held_bytes(&self) -> usize {
        let sides: usize = self
            .sides
            .iter()
            .map(|s| s.hpack.heap_bytes() + s.block.as_ref().map_or(0, |b| b.buf.capacity()))
            .sum();
        let streams: usize = self
            .streams
            .values()
            .map(|s| std::mem::size_of::<Stream>() + 8 + s.req.heap_bytes() + s.resp.heap_bytes())
            .sum();
        sides + streams + self.closed.capacity() * 4 + self.draining.capacity() * 4
    }

    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        self.run(dir, data, ts, out)
    }

    fn cut(&mut self, dir: Direction, partial: &[u8], ts: u64, out: &mut Emitter<'_>) {
        // A header frame cut by lost bytes: the fields before the cut are certain.
        let d = dir.index();
        if self.sides[d].mode != Mode::Frames || self.sides[d].data.is_some() {
            return;
        }
        let Some(h) = Header::parse(partial) else {
            return;
        };
        let payload = &partial[frame::HEADER_LEN..];
        let start = match h.kind {
            frame::HEADERS => {
                let mut skip = usize::from(h.has(frame::PADDED));
                if h.has(frame::PRIORITY_FLAG) {
                    skip += 5;
                }
                payload.get(skip..).map(|f| Block {
                    stream: h.stream,
                    promised: None,
                    end_stream: false,
                    buf: f.to_vec(),
                })
            }
            frame::CONTINUATION => self.sides[d].block.take().map(|mut b| {
                b.buf.extend_from_slice(payload);
                b.end_stream = false;
                b
            }),
            _ => None,
        };
        if let Some(b) = start {
            self.block_done(dir, b, ts, true, out);
        }
    }

    fn gap(&mut self, dir: Direction, len: u64, ts: u64, out: &mut Emitter<'_>) {
        let d = dir.index();
        let side = &mut self.sides[d];
        if let Some(run) = &mut side.data
            && len <= run.data_left + run.pad_left
        {
            // Inside one DATA payload: the framing holds.
            let from_data = len.min(run.data_left);
            run.data_left -= from_data;
            run.pad_left -= len - from_data;
            let (stream, done, end) = (
                run.stream,
                run.data_left == 0 && run.pad_left == 0,
                run.end_stream,
            );
            if done {
                side.data = None;
            }
            self.data_bytes(dir, stream, None, from_data, ts, out);
            if done && end {
                self.end_stream(dir, stream, ts, out);
            }
            return;
        }
        if side.skip >= len {
            side.skip -= len;
            return;
        }
        out.anomaly(Anomaly::Gap);
        side.lose();
        self.mark_all_incomplete();
    }

    fn close(&mut self, _ts: u64, out: &mut Emitter<'_>) {
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.finish(id, out);
        }
    }
}

#[cfg(test)]
mod tests;
