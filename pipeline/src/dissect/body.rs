//! Message bodies kept for later refinement (GraphQL and gRPC read them), and their capped
//! content decoding.
//!
//! A body is kept only when its media type is one a refiner reads (JSON, GraphQL, text, form
//! data) and only up to [`MAX_KEPT_BODY`] bytes; beyond that the kept copy is marked
//! `truncated` and the body is still counted. Content decoding (gzip, deflate, br; the
//! `flate2` and `brotli-decompressor` crates) produces at most [`MAX_DECODED_BODY`] bytes, so a
//! decompression bomb costs at most that much memory.

use std::io::Read;

/// Bytes of one body kept per message.
pub const MAX_KEPT_BODY: usize = 64 * 1024;
/// Bytes a kept body may decode to.
pub const MAX_DECODED_BODY: usize = 1 << 20;

/// Why a kept body could not be content-decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The decoded body exceeds [`MAX_DECODED_BODY`] (the first bytes are still returned by
    /// [`decode`] through `Ok` when the caller accepts a prefix).
    #[error("decoded body exceeds {MAX_DECODED_BODY} bytes")]
    TooLarge,
    /// The bytes are not valid for their coding (or were cut: the kept copy is truncated).
    #[error("body is not valid {0}")]
    Corrupt(&'static str),
    /// A coding tapwire does not decode (`compress`, `zstd`, …).
    #[error("unsupported content coding {0:?}")]
    Unsupported(String),
}

/// A body (or its first [`MAX_KEPT_BODY`] bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptBody {
    pub bytes: Vec<u8>,
    /// The body was longer than what is kept (or bytes were lost in a gap).
    pub truncated: bool,
}

impl KeptBody {
    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Append body bytes, keeping at most [`MAX_KEPT_BODY`].
    pub fn push(&mut self, data: &[u8]) {
        let room = MAX_KEPT_BODY.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Is a body of this media type (a `Content-Type` value) worth keeping?
pub fn worth_keeping(content_type: &str) -> bool {
    let t = content_type.trim_start().to_ascii_lowercase();
    t.contains("json")
        || t.contains("graphql")
        || t.starts_with("text/")
        || t.starts_with("application/x-www-form-urlencoded")
}

/// Decode `data` for the `Content-Encoding` value `coding` (codings applied in order, so they
/// are undone in reverse), producing at most [`MAX_DECODED_BODY`] bytes.
pub fn decode(coding: &str, data: &[u8]) -> Result<Vec<u8>, BodyError> {
    let mut cur = data.to_vec();
    for c in coding.rsplit(',').map(str::trim).filter(|c| !c.is_empty()) {
        cur = decode_one(&c.to_ascii_lowercase(), &cur)?;
    }
    Ok(cur)
}

fn read_capped(r: impl Read, what: &'static str) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    match r.take(MAX_DECODED_BODY as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > MAX_DECODED_BODY => Err(BodyError::TooLarge),
        Ok(_) => Ok(out),
        Err(_) => Err(BodyError::Corrupt(what)),
    }
}

fn decode_one(coding: &str, data: &[u8]) -> Result<Vec<u8>, BodyError> {
    match coding {
        "identity" => Ok(data.to_vec()),
        "gzip" | "x-gzip" => read_capped(flate2::read::GzDecoder::new(data), "gzip"),
        // RFC 9110 says zlib-wrapped; some servers send raw deflate.
        "deflate" => read_capped(flate2::read::ZlibDecoder::new(data), "deflate")
            .or_else(|_| read_capped(flate2::read::DeflateDecoder::new(data), "deflate")),
        "br" => read_capped(brotli_decompressor::Decompressor::new(data, 4096), "br"),
        other => Err(BodyError::Unsupported(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let text = b"{\"query\":\"{ user { id } }\"}".repeat(20);
        assert_eq!(decode("gzip", &gzip(&text)).unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(decode("deflate", &z.finish().unwrap()).unwrap(), text);
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(&text).unwrap();
        assert_eq!(decode("deflate", &raw.finish().unwrap()).unwrap(), text);
        assert_eq!(decode("identity", &text).unwrap(), text);
    }

    #[test]
    fn bomb_is_capped_and_corrupt_is_reported() {
        let bomb = gzip(&vec![0u8; MAX_DECODED_BODY + 10]);
        assert!(bomb.len() < 10_000);
        assert_eq!(decode("gzip", &bomb), Err(BodyError::TooLarge));
        let mut bad = gzip(b"hello world, hello world");
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        assert!(matches!(decode("gzip", &bad), Err(BodyError::Corrupt(_))));
        assert!(matches!(
            decode("zstd", b"x"),
            Err(BodyError::Unsupported(_))
        ));
    }

    #[test]
    fn kept_body_is_capped() {
        let mut k = KeptBody::default();
        k.push(&vec![1; MAX_KEPT_BODY - 1]);
        assert!(!k.truncated);
        k.push(&[2, 3]);
        assert_eq!(k.bytes.len(), MAX_KEPT_BODY);
        assert!(k.truncated);
    }
}
