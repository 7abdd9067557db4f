//! HTTP/2 frame headers and payloads (RFC 9113 §4 and §6), as checked views over bytes.
//!
//! Nothing here allocates or panics: every length is checked against the bytes present once,
//! and a payload that contradicts its frame type is a [`FrameError`].

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length.
pub const HEADER_LEN: usize = 9;
/// `SETTINGS_MAX_FRAME_SIZE` initial value; resynchronisation accepts nothing larger.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

/// `SETTINGS_HEADER_TABLE_SIZE`.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
/// `SETTINGS_MAX_FRAME_SIZE`.
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// Why a frame's payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("padding longer than the frame")]
    Padding,
    #[error("payload too short for its frame type")]
    Short,
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Header {
    /// The header at the start of `b`, when 9 bytes are there.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let h = b.get(..HEADER_LEN)?;
        Some(Header {
            len: crate::wire::be24(h, 0)?,
            kind: h[3],
            flags: h[4],
            stream: crate::wire::be32(h, 5)? & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Could this be a real frame header? Strict: a known type, the flags that type
    /// defines, the stream and length rules it must follow, the reserved bit clear, and no
    /// more than `max_len`. Used to find frame boundaries in bytes of unknown alignment.
    pub fn plausible(raw: &[u8], max_len: u32) -> Option<Header> {
        let h = Header::parse(raw)?;
        if raw[5] & 0x80 != 0 || h.len > max_len {
            return None;
        }
        let on_stream = h.stream != 0;
        let (flags_ok, rule_ok) = match h.kind {
            DATA => (h.flags & !(END_STREAM | PADDED) == 0, on_stream),
            HEADERS => (
                h.flags & !(END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG) == 0,
                on_stream && h.len > 0,
            ),
            PRIORITY => (h.flags == 0, on_stream && h.len == 5),
            RST_STREAM => (h.flags == 0, on_stream && h.len == 4),
            SETTINGS => (
                h.flags & !ACK == 0,
                !on_stream && h.len % 6 == 0 && (!h.has(ACK) || h.len == 0),
            ),
            PUSH_PROMISE => (
                h.flags & !(END_HEADERS | PADDED) == 0,
                on_stream && h.len >= 4,
            ),
            PING => (h.flags & !ACK == 0, !on_stream && h.len == 8),
            GOAWAY => (h.flags == 0, !on_stream && h.len >= 8),
            WINDOW_UPDATE => (h.flags == 0, h.len == 4),
            CONTINUATION => (h.flags & !END_HEADERS == 0, on_stream && h.len > 0),
            _ => (false, false),
        };
        (flags_ok && rule_ok).then_some(h)
    }
}

/// Where frames start in `data`, whose alignment is unknown (capture joined mid-stream, or
/// after lost bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// A frame starts here: its header is plausible and it ends exactly at the end of the
    /// bytes or where another plausible header starts.
    At(usize),
    /// The first candidate is here, but more bytes are needed to confirm it.
    NeedMore(usize),
    /// No frame starts in these bytes.
    None,
}

/// Find the first frame boundary in `data`. The first plausible header wins: when its frame
/// does not end inside `data` yet, the answer is to wait for more bytes (a later candidate
/// could sit in its payload), so a resumed search starts right at it and costs nothing.
pub fn find_sync(data: &[u8]) -> Sync {
    for at in 0..data.len() {
        if data.len() - at < HEADER_LEN {
            return Sync::NeedMore(at);
        }
        let Some(h) = Header::plausible(&data[at..], DEFAULT_MAX_FRAME) else {
            continue;
        };
        let end = at + HEADER_LEN + h.len as usize;
        if end == data.len() {
            return Sync::At(at);
        }
        if end + HEADER_LEN <= data.len() {
            if Header::plausible(&data[end..], DEFAULT_MAX_FRAME).is_some() {
                return Sync::At(at);
            }
            continue;
        }
        return Sync::NeedMore(at);
    }
    Sync::None
}

/// A HEADERS payload without its padding and priority fields: the header block fragment.
pub fn headers_fragment<'a>(h: &Header, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    let body = unpad(h, payload)?;
    if h.has(PRIORITY_FLAG) {
        body.get(5..).ok_or(FrameError::Short)
    } else {
        Ok(body)
    }
}

/// A PUSH_PROMISE payload: (promised stream id, header block fragment).
pub fn push_promise<'a>(h: &Header, payload: &'a [u8]) -> Result<(u32, &'a [u8]), FrameError> {
    let body = unpad(h, payload)?;
    let id = crate::wire::be32(body, 0).ok_or(FrameError::Short)? & 0x7fff_ffff;
    Ok((id, &body[4..]))
}

/// The payload without the pad-length byte and the padding, when `PADDED` is set.
pub fn unpad<'a>(h: &Header, payload: &'a [u8]) -> Result<&'a [u8], FrameError> {
    if !h.has(PADDED) {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(FrameError::Padding)?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(FrameError::Padding)?;
    Ok(&rest[..keep])
}

/// A 32-bit big-endian value at `at` in `payload`.
pub fn u32_at(payload: &[u8], at: usize) -> Option<u32> {
    crate::wire::be32(payload, at)
}

/// SETTINGS parameters (identifier, value).
pub fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload
        .chunks_exact(6)
        .filter_map(|c| Some((crate::wire::be16(c, 0)?, crate::wire::be32(c, 2)?)))
}

/// The name of an HTTP/2 error code (RFC 9113 §7).
pub fn error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    match NAMES.get(code as usize) {
        Some(n) => (*n).to_string(),
        None => format!("0x{code:x}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame's bytes (shared with the dissector's tests).
    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_fields() {
        let f = frame(HEADERS, END_HEADERS | END_STREAM, 0x8000_0003, b"\x82");
        let h = Header::parse(&f).unwrap();
        assert_eq!(
            (h.len, h.kind, h.stream),
            (1, HEADERS, 3),
            "reserved bit masked"
        );
        assert!(h.has(END_STREAM) && h.has(END_HEADERS) && !h.has(PADDED));
        assert!(
            Header::plausible(&f, DEFAULT_MAX_FRAME).is_none(),
            "reserved bit set"
        );
        assert!(Header::parse(&f[..8]).is_none());
    }

    #[test]
    fn per_type_rules() {
        let ok = |f: Vec<u8>| Header::plausible(&f, DEFAULT_MAX_FRAME).is_some();
        assert!(ok(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0])));
        assert!(!ok(frame(SETTINGS, 0, 1, &[])), "SETTINGS on a stream");
        assert!(
            !ok(frame(SETTINGS, ACK, 0, &[0; 6])),
            "SETTINGS ACK with a payload"
        );
        assert!(ok(frame(PING, ACK, 0, &[0; 8])));
        assert!(!ok(frame(PING, 0, 0, &[0; 7])));
        assert!(ok(frame(PRIORITY, 0, 5, &[0; 5])));
        assert!(ok(frame(RST_STREAM, 0, 5, &[0, 0, 0, 8])));
        assert!(!ok(frame(RST_STREAM, 0, 0, &[0, 0, 0, 8])));
        assert!(ok(frame(GOAWAY, 0, 0, &[0; 8])));
        assert!(ok(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0])));
        assert!(ok(frame(CONTINUATION, END_HEADERS, 1, &[0x82])));
        assert!(!ok(frame(DATA, 0, 0, b"x")), "DATA on stream 0");
        assert!(!ok(frame(DATA, 0x40, 1, b"x")), "undefined flag");
        assert!(!ok(frame(0x0a, 0, 1, b"x")), "unknown type");
    }

    #[test]
    fn padding_and_priority_are_stripped() {
        let payload = [2u8, 0, 0, 0, 1, 16, 0x82, 0x86, 0, 0];
        let h = Header {
            len: payload.len() as u32,
            kind: HEADERS,
            flags: PADDED | PRIORITY_FLAG | END_HEADERS,
            stream: 1,
        };
        assert_eq!(headers_fragment(&h, &payload).unwrap(), &[0x82, 0x86]);
        let bad = [9u8, 0x82];
        assert_eq!(headers_fragment(&h, &bad), Err(FrameError::Padding));
        let pp = Header {
            len: 6,
            kind: PUSH_PROMISE,
            flags: END_HEADERS,
            stream: 1,
        };
        assert_eq!(
            push_promise(&pp, &[0, 0, 0, 2, 0x82, 0x87]).unwrap(),
            (2, &[0x82, 0x87][..])
        );
        assert_eq!(push_promise(&pp, &[0, 0]), Err(FrameError::Short));
    }

    #[test]
    fn sync_finds_frame_boundaries() {
        let mut bytes = b"tail of an earlier frame".to_vec();
        let start = bytes.len();
        bytes.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        bytes.extend(frame(HEADERS, END_HEADERS, 3, &[0x82, 0x86]));
        assert_eq!(find_sync(&bytes), Sync::At(start));
        // Cut inside the first header: the bytes from a possible header start are kept.
        assert!(matches!(find_sync(&bytes[..start + 4]), Sync::NeedMore(at) if at <= start));
        let text = b"no frames in this text at all, none";
        assert!(
            matches!(find_sync(text), Sync::NeedMore(at) if at > text.len() - 9),
            "only a tail too short to judge is kept"
        );
        let settings: Vec<(u16, u32)> =
            settings(&[0, 1, 0, 0, 0x10, 0, 0, 5, 0, 0, 0x40, 0]).collect();
        assert_eq!(settings, vec![(1, 4096), (5, 16384)]);
        assert_eq!(error_name(8), "CANCEL");
        assert_eq!(error_name(0x99), "0x99");
    }
}
