//! WebSocket (RFC 6455) after an HTTP/1.1 `101 Switching Protocols` with `Upgrade: websocket`:
//! the HTTP/1 dissector hands the connection's bytes here ([`WebSocket`]).
//!
//! One exchange per message (`protocol: websocket`): a text or binary message with its
//! continuation frames, a ping, a pong, a close; `websocket.direction` says who sent it,
//! `websocket.message.size` is its payload bytes (all its frames). Control frames between a
//! message's fragments are messages of their own. A close carries its code and reason (the
//! reason unmasked; at most 123 bytes by the RFC) and is an `error` for the protocol's error
//! codes (1002–2999). With `permessage-deflate` negotiated, a message whose first frame has
//! RSV1 set is `websocket.compressed` and its size is the compressed size: nothing is
//! inflated.
//!
//! Hand-written: frame headers are two to fourteen bytes, and the crates (`tungstenite`)
//! assemble whole messages in memory, which a sniffer must not. Payloads are never kept
//! (only a close's reason), so a message of any size costs nothing: frames stream past as
//! they come. Limits: a message's fragments are counted up to `u64`; a frame header that is
//! not WebSocket (a reserved opcode, a control frame over 125 bytes or fragmented) ends
//! dissection of the flow (`websocket.bad_frame`); a gap ends it too (framing is lost).

use schemas::l7::websocket::{Websocket as Fields, WebsocketClose, WebsocketMessage};
use schemas::{Exchange, Protocol, Status};

use crate::dissect::{Direction, DissectError, EXCHANGE_ESTIMATE, Emitter, Progress};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadFrame = "websocket.bad_frame",
        Gap = "websocket.gap",
    }
}

/// One direction's state.
#[derive(Debug, Default)]
struct Side {
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// The current frame's mask and how far into the payload it is (for a close's reason).
    mask: Option<[u8; 4]>,
    offset: u64,
    /// The current frame is a control frame: its payload is gathered (≤ 125 bytes).
    control: Option<(u8, Vec<u8>, u64)>,
    /// The data message being assembled: its opcode, start, size, compressed flag.
    message: Option<(u8, u64, u64, bool)>,
    /// The current frame ends the data message.
    fin: bool,
}

/// WebSocket state of one upgraded connection.
#[derive(Debug, Default)]
pub struct WebSocket {
    sides: [Side; 2],
    done: bool,
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        0x1 => "text",
        0x2 => "binary",
        0x8 => "close",
        0x9 => "ping",
        _ => "pong",
    }
}

impl WebSocket {
    pub fn new() -> WebSocket {
        WebSocket::default()
    }

    /// Report one message; `cut`: it did not end (a gap or the connection's end).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        dir: Direction,
        op: u8,
        start: u64,
        size: u64,
        compressed: bool,
        close: Option<&[u8]>,
        cut: bool,
        ts: u64,
        out: &mut Emitter<'_>,
    ) {
        let mut ex: Exchange = out.exchange(Protocol::Websocket, start);
        ex.end_time_unix_nano = ts.max(start);
        if cut {
            ex.status = Status::Incomplete;
        }
        let mut f = Fields {
            direction: match dir {
                Direction::ToServer => "client",
                Direction::ToClient => "server",
            }
            .into(),
            opcode: opcode_name(op).into(),
            message: WebsocketMessage { size },
            compressed: compressed.then_some(true),
            close: None,
        };
        if let Some(p) = close {
            let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
            let reason = p
                .get(2..)
                .filter(|r| !r.is_empty())
                .map(|r| String::from_utf8_lossy(r).into_owned());
            if code.is_some_and(|c| (1002..3000).contains(&c)) {
                ex.status = Status::Error;
            }
            f.close = Some(WebsocketClose { code, reason });
        }
        ex.websocket = Some(Box::new(f));
        out.emit(ex);
    }

    fn bad(&mut self, out: &mut Emitter<'_>) -> Progress {
        out.anomaly(Anomaly::BadFrame);
        self.done = true;
        Progress::Error(DissectError {
            protocol: Protocol::Websocket,
            reason: "not a WebSocket frame",
        })
    }

    /// Bytes of one direction, in stream order.
    pub fn feed(
        &mut self,
        dir: Direction,
        data: &[u8],
        ts: u64,
        out: &mut Emitter<'_>,
    ) -> Progress {
        let mut at = 0;
        let i = dir.index();
        while at < data.len() && !self.done {
            // Inside a frame's payload: count it (gather a control frame's).
            if self.sides[i].left > 0 {
                let side = &mut self.sides[i];
                let n = (side.left.min((data.len() - at) as u64)) as usize;
                if let Some((_, buf, _)) = side.control.as_mut() {
                    for (k, b) in data[at..at + n].iter().enumerate() {
                        let m = side
                            .mask
                            .map_or(0, |m| m[((side.offset + k as u64) % 4) as usize]);
                        buf.push(b ^ m);
                    }
                } else if let Some(msg) = side.message.as_mut() {
                    msg.2 += n as u64;
                }
                side.offset += n as u64;
                side.left -= n as u64;
                at += n;
                if side.left > 0 {
                    break;
                }
                self.frame_done(dir, ts, out);
                continue;
            }
            // A frame header.
            let head = &data[at..];
            let (Some(&b0), Some(&b1)) = (head.first(), head.get(1)) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: 2 - head.len(),
                };
            };
            let (fin, rsv1, op) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0f);
            let masked = b1 & 0x80 != 0;
            let (len, mut n) = match b1 & 0x7f {
                126 => match head.get(2..4) {
                    Some(l) => (u64::from(u16::from_be_bytes([l[0], l[1]])), 4),
                    None => {
                        return Progress::Incomplete {
                            consumed: at,
                            needed: 4 - head.len(),
                        };
                    }
                },
                127 => match head.get(2..10) {
                    Some(l) => {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(l);
                        (u64::from_be_bytes(b), 10)
                    }
                    None => {
                        return Progress::Incomplete {
                            consumed: at,
                            needed: 10 - head.len(),
                        };
                    }
                },
                l => (u64::from(l), 2),
            };
            let mask = if masked {
                let Some(m) = head.get(n..n + 4) else {
                    return Progress::Incomplete {
                        consumed: at,
                        needed: n + 4 - head.len(),
                    };
                };
                n += 4;
                Some([m[0], m[1], m[2], m[3]])
            } else {
                None
            };
            let control = op >= 0x8;
            if !matches!(op, 0x0..=0x2 | 0x8..=0xa)
                || (control && (!fin || len > 125))
                || len >> 63 != 0
            {
                return self.bad(out);
            }
            let side = &mut self.sides[i];
            side.mask = mask;
            side.offset = 0;
            side.left = len;
            side.fin = fin;
            side.control = None;
            if control {
                side.control = Some((op, Vec::with_capacity(len as usize), ts));
            } else if op == 0 {
                if side.message.is_none() {
                    // A continuation without its start: counted as a binary message.
                    side.message = Some((0x2, ts, 0, false));
                }
            } else {
                // A new message (one left unfinished is reported as it stands).
                if let Some((op, start, size, comp)) = side.message.take() {
                    Self::emit(dir, op, start, size, comp, None, true, ts, out);
                }
                self.sides[i].message = Some((op, ts, 0, rsv1));
            }
            at += n;
            if len == 0 {
                self.frame_done(dir, ts, out);
            }
        }
        if self.done {
            Progress::Finished
        } else {
            Progress::Done
        }
    }

    /// The current frame of `dir` is complete.
    fn frame_done(&mut self, dir: Direction, ts: u64, out: &mut Emitter<'_>) {
        let i = dir.index();
        if let Some((op, payload, start)) = self.sides[i].control.take() {
            let size = payload.len() as u64;
            let close = (op == 0x8).then_some(payload.as_slice());
            Self::emit(dir, op, start, size, false, close, false, ts, out);
            return;
        }
        if self.sides[i].fin
            && let Some((op, start, size, comp)) = self.sides[i].message.take()
        {
            Self::emit(dir, op, start, size, comp, None, false, ts, out);
        }
    }

    /// Bytes lost: framing is gone.
    pub fn gap(&mut self, _dir: Direction, _len: u64, ts: u64, out: &mut Emitter<'_>) {
        out.anomaly(Anomaly::Gap);
        self.flush(ts, out);
        self.done = true;
    }

    /// The connection ended: messages cut short are reported incomplete.
    pub fn close(&mut self, ts: u64, out: &mut Emitter<'_>) {
        self.flush(ts, out);
    }

    fn flush(&mut self, ts: u64, out: &mut Emitter<'_>) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            let i = dir.index();
            if let Some((op, start, size, comp)) = self.sides[i].message.take() {
                Self::emit(dir, op, start, size, comp, None, true, ts, out);
            }
            self.sides[i].control = None;
        }
    }

    pub fn held_bytes(&self) -> usize {
        self.sides
            .iter()
            .map(|s| s.control.as_ref().map_or(0, |c| c.1.capacity()))
            .sum::<usize>()
            + EXCHANGE_ESTIMATE
    }
}

impl crate::dissect::Dissector for WebSocket {
    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        WebSocket::feed(self, dir, data, ts, out)
    }
    fn gap(&mut self, dir: Direction, len: u64, ts: u64, out: &mut Emitter<'_>) {
        WebSocket::gap(self, dir, len, ts, out);
    }
    fn close(&mut self, ts: u64, out: &mut Emitter<'_>) {
        WebSocket::close(self, ts, out);
    }
    fn held_bytes(&self) -> usize {
        WebSocket::held_bytes(self)
    }
}

#[cfg(test)]
mod tests;
