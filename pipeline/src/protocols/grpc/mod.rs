//! gRPC: refines finished HTTP/2 exchanges whose content type is `application/grpc*`.
//!
//! Not a stream parser of its own (ARCHITECTURE.md §4): the HTTP/2 dissector hands each
//! stream's DATA bytes to a [`MessageScan`] per direction, which follows the 5-byte
//! length-prefixed message framing across frames, and [`refine`] turns the finished stream
//! into `rpc.*` and `grpc.*` fields. One exchange per RPC, whatever its streaming kind.
//!
//! With a user-supplied descriptor set ([`Descriptors`], `--proto-descriptor FILE`), whole
//! messages are decoded to JSON with `prost-reflect`: at most [`MAX_DECODED_MESSAGES`] per
//! direction, each at most [`MAX_MESSAGE_KEEP`] bytes (compressed ones are inflated when
//! `grpc-encoding` is gzip or deflate, capped as HTTP bodies are). Without descriptors nothing
//! is guessed about message content. A message that does not decode with its method's type is
//! an anomaly (`grpc.message_decode`), not an error of the exchange.

use prost_reflect::{DynamicMessage, MessageDescriptor};
use schemas::Exchange;
use schemas::l7::rpc::{Grpc, GrpcMessages, Rpc, RpcResponse, RpcSystem};

use crate::dissect::Emitter;
use crate::dissect::body;

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        CutMessage = "grpc.cut_message",
        MessageDecode = "grpc.message_decode",
    }
}

/// Messages decoded per direction of one RPC.
pub const MAX_DECODED_MESSAGES: usize = 8;
/// Largest message kept for decoding.
pub const MAX_MESSAGE_KEEP: usize = 64 * 1024;

/// Follows the length-prefixed message framing of one direction of one RPC.
#[derive(Debug, Default)]
pub struct MessageScan {
    pub count: u64,
    pub size: u64,
    pub compressed: u64,
    /// Prefix bytes of the message being read (up to 5).
    prefix: [u8; 5],
    have: usize,
    /// Payload bytes left in the current message.
    left: u64,
    /// Framing is lost (a gap): counting stops.
    lost: bool,
    /// Keep whole messages for decoding (descriptors are loaded).
    keep: bool,
    /// Kept messages: (compressed flag, bytes).
    pub kept: Vec<(bool, Vec<u8>)>,
    cur: Option<(bool, Vec<u8>)>,
}

impl MessageScan {
    /// Heap bytes held by kept messages.
    pub fn heap_bytes(&self) -> usize {
        self.kept
            .iter()
            .chain(self.cur.as_ref())
            .map(|(_, m)| m.capacity() + std::mem::size_of::<(bool, Vec<u8>)>())
            .sum()
    }
}

impl MessageScan {
    pub fn new(keep: bool) -> Self {
        MessageScan {
            keep,
            ..MessageScan::default()
        }
    }

    /// DATA bytes of the stream, in order.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if self.left > 0 {
                let n = (self.left.min(data.len() as u64)) as usize;
                if let Some((_, buf)) = self.cur.as_mut() {
                    buf.extend_from_slice(&data[..n]);
                }
                self.left -= n as u64;
                data = &data[n..];
                if self.left == 0 {
                    self.end_message();
                }
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let compressed = self.prefix[0] & 1 != 0;
                let len = crate::wire::be32(&self.prefix, 1).unwrap_or_default();
                self.size += u64::from(len);
                if compressed {
                    self.compressed += 1;
                }
                self.left = u64::from(len);
                let room = self.keep
                    && self.kept.len() < MAX_DECODED_MESSAGES
                    && (len as usize) <= MAX_MESSAGE_KEEP;
                // Grown as the bytes arrive, not reserved from the length prefix.
                self.cur = room.then(|| (compressed, Vec::new()));
                if len == 0 {
                    self.end_message();
                }
            }
        }
    }

    fn end_message(&mut self) {
        self.count += 1;
        if let Some(m) = self.cur.take() {
            self.kept.push(m);
        }
    }

    /// Bytes were lost: message boundaries are unknown from here on.
    pub fn gap(&mut self) {
        self.lost = true;
        self.cur = None;
    }

    /// Whether the stream ended in the middle of a message.
    pub fn mid_message(&self) -> bool {
        !self.lost && (self.left > 0 || self.have > 0)
    }

    fn summary(
        &self,
        desc: Option<&MessageDescriptor>,
        encoding: Option<&str>,
        ex: &mut Exchange,
        out: &mut Emitter<'_>,
    ) -> GrpcMessages {
        let mut decoded = Vec::new();
        if let Some(desc) = desc {
            for (compressed, bytes) in &self.kept {
                let plain = if *compressed {
                    match encoding.map(|e| body::decode(e, bytes)) {
                        Some(Ok(p)) => p,
                        _ => {
                            out.anomaly(Anomaly::MessageDecode);
                            ex.add_anomaly(Anomaly::MessageDecode.name());
                            continue;
                        }
                    }
                } else {
                    bytes.clone()
                };
                match DynamicMessage::decode(desc.clone(), plain.as_slice())
                    .ok()
                    .and_then(|m| serde_json::to_value(&m).ok())
                {
                    Some(v) => decoded.push(v),
                    None => {
                        out.anomaly(Anomaly::MessageDecode);
                        ex.add_anomaly(Anomaly::MessageDecode.name());
                    }
                }
            }
        }
        GrpcMessages {
            count: self.count,
            size: self.size,
            compressed: self.compressed,
            decoded,
        }
    }
}

/// Is this content type gRPC's?
pub fn is_grpc(content_type: &str) -> bool {
    let t = content_type.trim_start().as_bytes();
    t.get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
}

/// The name of a gRPC status code.
pub fn status_name(code: &str) -> String {
    match code
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| schemas::l7::rpc::GRPC_STATUS_NAMES.get(n))
    {
        Some(n) => (*n).to_string(),
        None => code.trim().to_string(),
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let Some(&[h, l]) = b.get(i + 1..i + 3)
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the HTTP/2 dissector knows of a finished gRPC stream.
pub struct Finished<'a> {
    /// `:path`, when known.
    pub path: Option<&'a str>,
    /// `grpc-status`, from trailers or a trailers-only response.
    pub status: Option<&'a str>,
    pub message: Option<&'a str>,
    pub encoding: Option<&'a str>,
    pub request: &'a MessageScan,
    pub response: &'a MessageScan,
}

/// Turn a finished HTTP exchange into a gRPC one.
pub fn refine(ex: &mut Exchange, f: Finished<'_>, out: &mut Emitter<'_>) {
    ex.protocol = schemas::Protocol::Grpc;
    let method = f.path.map(|p| p.strip_prefix('/').unwrap_or(p).to_string());
    let status_code = f.status.map(status_name);
    if status_code.as_deref().is_some_and(|c| c != "OK") && ex.status == schemas::Status::Ok {
        ex.status = schemas::Status::Error;
    }
    let types = method
        .as_deref()
        .and_then(|m| out.descriptors.and_then(|d| d.method(m)));
    let encoding = f.encoding.filter(|e| !e.eq_ignore_ascii_case("identity"));
    let request = f
        .request
        .summary(types.as_ref().map(|t| &t.0), encoding, ex, out);
    let response = f
        .response
        .summary(types.as_ref().map(|t| &t.1), encoding, ex, out);
    if f.request.mid_message() || f.response.mid_message() {
        ex.add_anomaly(Anomaly::CutMessage.name());
    }
    ex.rpc = Some(Box::new(Rpc {
        system: RpcSystem {
            name: "grpc".into(),
        },
        method,
        response: status_code.map(|status_code| RpcResponse { status_code }),
    }));
    ex.grpc = Some(Box::new(Grpc {
        status_message: f.message.filter(|m| !m.is_empty()).map(percent_decode),
        encoding: encoding.map(str::to_string),
        request,
        response,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_across_pieces() {
        let mut s = MessageScan::new(true);
        let mut bytes = vec![0, 0, 0, 0, 3, b'a', b'b', b'c'];
        bytes.extend([1, 0, 0, 0, 0]); // empty, compressed
        bytes.extend([0, 0, 0, 0, 2, b'x']);
        for piece in bytes.chunks(3) {
            s.push(piece);
        }
        assert_eq!((s.count, s.size, s.compressed), (2, 5, 1));
        assert!(s.mid_message());
        s.push(b"y");
        assert_eq!(s.count, 3);
        assert!(!s.mid_message());
        assert_eq!(s.kept[0], (false, b"abc".to_vec()));
        assert_eq!(s.kept[2], (false, b"xy".to_vec()));
        s.gap();
        s.push(&[0, 0, 0, 0, 1, 7]);
        assert_eq!(s.count, 3, "no counting after lost framing");
    }

    #[test]
    fn status_names_and_messages() {
        assert_eq!(status_name("0"), "OK");
        assert_eq!(status_name("5"), "NOT_FOUND");
        assert_eq!(status_name("16"), "UNAUTHENTICATED");
        assert_eq!(status_name("42"), "42");
        assert_eq!(percent_decode("not%20found%3A%20x"), "not found: x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(
            percent_decode("%+f%zz%4"),
            "%+f%zz%4",
            "only two hex digits decode"
        );
        assert!(
            !is_grpc("app\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}"),
            "no panic inside a character"
        );
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("application/grpc"));
        assert!(!is_grpc("application/json"));
    }
}
