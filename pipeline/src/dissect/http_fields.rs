//! Helpers every HTTP version shares: header names, secret redaction, `traceparent`, and
//! content decoding of kept bodies.

use std::borrow::Cow;

use schemas::{Exchange, HeaderMap};

use super::Emitter;
use super::body::{self, BodyError, KeptBody};

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum BodyAnomaly {
        BadContentEncoding = "http.bad_content_encoding",
        BodyDecodeCap = "http.body_decode_cap",
    }
}

/// Header values never copied out: replaced by this.
pub use crate::redact::REDACTED;

/// `url.path` and `url.query` of a request target.
pub(crate) fn split_target(target: &str) -> (String, Option<String>) {
    match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    }
}

pub(crate) fn is_secret(name: &str, request: bool) -> bool {
    if request {
        matches!(name, "authorization" | "cookie" | "proxy-authorization")
    } else {
        name == "set-cookie"
    }
}

/// Lower-case names of common header fields, shared instead of copied per message.
macro_rules! common_names {
    ($($n:literal),* $(,)?) => {
        fn common_name(lower: &str) -> Option<&'static str> {
            match lower {
                $($n => Some($n),)*
                _ => None,
            }
        }
    };
}

common_names!(
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "access-control-allow-origin",
    "age",
    "authorization",
    "b3",
    "baggage",
    "cache-control",
    "connection",
    "content-encoding",
    "content-language",
    "content-length",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "host",
    "if-modified-since",
    "if-none-match",
    "keep-alive",
    "last-modified",
    "location",
    "origin",
    "pragma",
    "proxy-authorization",
    "range",
    "referer",
    "server",
    "set-cookie",
    "strict-transport-security",
    "te",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
    "x-content-type-options",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-frame-options",
    "x-request-id",
    "sw8",
);

/// A header name in lower case: a shared `'static` name when it is a common one.
pub(crate) fn header_name(raw: &str) -> Cow<'static, str> {
    let mut buf = [0u8; 40];
    if let Some(b) = buf.get_mut(..raw.len()) {
        b.copy_from_slice(raw.as_bytes());
        b.make_ascii_lowercase();
        if let Some(name) = std::str::from_utf8(b).ok().and_then(common_name) {
            return Cow::Borrowed(name);
        }
    }
    Cow::Owned(raw.to_ascii_lowercase())
}

/// `traceparent: 00-<trace id>-<parent id>-<flags>` → (trace id, span id).
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<(String, String)> {
    parse_traceparent(headers.first("traceparent")?)
}

/// A W3C `traceparent` value (from any protocol's headers) → (trace id, span id); `None`
/// unless it is well formed with non-zero ids.
pub(crate) fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let mut it = v.trim().split('-');
    let (ver, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(ver, 2) || ver == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()))
}

/// The content of a kept body, content-decoded (capped); `None` when nothing was kept or the
/// kept copy is cut (a prefix of a compressed body does not decode).
pub(crate) fn decoded_body<'a>(
    kept: &'a Option<KeptBody>,
    coding: Option<&str>,
) -> Option<Result<Cow<'a, [u8]>, BodyError>> {
    let k = kept
        .as_ref()
        .filter(|k| !k.truncated && !k.bytes.is_empty())?;
    Some(match coding {
        Some(c) => body::decode(c, &k.bytes).map(Cow::Owned),
        None => Ok(Cow::Borrowed(&k.bytes)),
    })
}

/// A kept body and its `Content-Encoding`, decoded only when a refiner asks.
#[derive(Clone, Copy)]
pub struct BodySource<'a> {
    pub kept: &'a Option<KeptBody>,
    pub coding: Option<&'a str>,
}

impl<'a> BodySource<'a> {
    /// The whole body, content-decoded; `None` when not kept whole or not decodable.
    pub fn decoded(&self) -> Option<Cow<'a, [u8]>> {
        decoded_body(self.kept, self.coding).and_then(Result::ok)
    }
}

/// A kept, content-encoded body must decode: a body that does not is reported on the exchange
/// (`http.bad_content_encoding`, `http.body_decode_cap`).
pub(crate) fn check_coding(
    kept: &Option<KeptBody>,
    coding: Option<&str>,
    ex: &mut Exchange,
    out: &mut Emitter<'_>,
) {
    let Some(c) = coding else { return };
    let anomaly = match decoded_body(kept, Some(c)) {
        Some(Err(BodyError::Corrupt(_))) => BodyAnomaly::BadContentEncoding,
        Some(Err(BodyError::TooLarge)) => BodyAnomaly::BodyDecodeCap,
        _ => return,
    };
    out.anomaly(anomaly);
    ex.add_anomaly(anomaly.name());
}

/// A header name from raw bytes (HTTP/2 literals), lower-cased.
pub(crate) fn header_name_bytes(raw: &[u8]) -> Cow<'static, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => header_name(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(raw).to_ascii_lowercase()),
    }
}
