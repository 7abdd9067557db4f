//! Sending one encoded `ExportTraceServiceRequest`: over gRPC (tonic's client, the request's
//! bytes passed through as they are) or HTTP/protobuf (reqwest), with gzip, TLS, custom
//! headers, a timeout per attempt and the OTLP exporter's retry rules.
//!
//! The request is encoded once ([`super::proto`]); a retry sends the same bytes again, so
//! retrying costs no re-encoding and no copy of the batch.
//!
//! Retries (the OTLP specification's "Retryable Response Codes" and throttling):
//! - gRPC: `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//!   `DATA_LOSS`, and `RESOURCE_EXHAUSTED` only when the server says when to retry (a
//!   `google.rpc.RetryInfo` detail, read with `tonic-types`); every other code is final.
//! - HTTP: 429, 502, 503 and 504 (honouring `Retry-After` in seconds or as an HTTP date),
//!   and a connection that fails or times out; every other status is final.
//! - Waits grow from 250 ms to at most 8 s, each with up to half of it added at random
//!   (jitter); a delay the server asks for is used instead, up to [`MAX_SERVER_DELAY`].
//!
//! A final failure is returned as one line (the caller counts the batch as lost). A partial
//! success (`rejected_spans`) is returned as the number rejected.

use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

const INITIAL_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(8);
/// The longest wait a server's `Retry-After` or `RetryInfo` is granted.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(30);

/// Bytes of an HTTP response body read at most.
pub const MAX_RESPONSE: usize = 64 * 1024;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How one attempt ended.
#[derive(Debug, PartialEq)]
pub enum Attempt {
    /// Accepted; the number of spans the receiver rejected (a partial success).
    Accepted(u64),
    /// Worth another try, after the server's delay if it gave one.
    Retry(String, Option<Duration>),
    /// Final.
    Failed(String),
}

/// The transport of one sink.
pub enum Exporter {
    Grpc {
        client: tonic::client::Grpc<Channel>,
        metadata: tonic::metadata::MetadataMap,
        timeout: Duration,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
        gzip: bool,
    },
}

impl Exporter {
    /// Send `body` (an encoded request), retrying up to `max_retries` times.
    /// `Ok(rejected)` once accepted, or the last error.
    pub async fn export(&mut self, body: Bytes, max_retries: usize) -> Result<u64, String> {
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            let (error, asked) = match self.once(body.clone()).await {
                Attempt::Accepted(rejected) => return Ok(rejected),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry(e, asked) => (e, asked),
            };
            if attempt >= max_retries {
                return Err(error);
            }
            attempt += 1;
            let wait = asked.map_or_else(|| backoff.next(), |d| d.min(MAX_SERVER_DELAY));
            tokio::time::sleep(wait).await;
        }
    }

    async fn once(&mut self, body: Bytes) -> Attempt {
        match self {
            Exporter::Grpc {
                client,
                metadata,
                timeout,
            } => {
                if let Err(e) = client.ready().await {
                    return Attempt::Retry(format!("not ready: {e}"), None);
                }
                let mut req = tonic::Request::new(body);
                *req.metadata_mut() = metadata.clone();
                req.set_timeout(*timeout);
                let path = PathAndQuery::from_static(EXPORT_PATH);
                match client.unary(req, path, PassThrough).await {
                    Ok(resp) => Attempt::Accepted(rejected(resp.get_ref())),
                    Err(status) => grpc_outcome(&status),
                }
            }
            Exporter::Http {
                client,
                url,
                headers,
                gzip,
            } => {
                let mut req = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .header("content-type", "application/x-protobuf");
                if *gzip {
                    match gzip_bytes(&body) {
                        Ok(z) => req = req.header("content-encoding", "gzip").body(z),
                        Err(e) => return Attempt::Failed(format!("gzip: {e}")),
                    }
                } else {
                    req = req.body(body);
                }
                let resp = match req.send().await {
                    Ok(r) => r,
                    // Refused, reset, timed out: the collector may be back soon.
                    Err(e) => return Attempt::Retry(without_url(e), None),
                };
                let status = resp.status().as_u16();
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, SystemTime::now()));
                let body = response_body(resp).await;
                http_outcome(status, after, &body)
            }
        }
    }
}

/// The first [`MAX_RESPONSE`] bytes of a response body (an `ExportTraceServiceResponse` is
/// a few bytes; a collector that sends more cannot make the sink hold it).
async fn response_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_RESPONSE.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if body.len() >= MAX_RESPONSE {
            break;
        }
    }
    body
}

/// A reqwest error without the URL (it is in the sink's configuration already).
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

fn rejected(r: &ExportTraceServiceResponse) -> u64 {
    r.partial_success
        .as_ref()
        .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
}

/// What a gRPC error status means for the batch.
pub fn grpc_outcome(s: &Status) -> Attempt {
    let line = format!("{:?}: {}", s.code(), s.message());
    let asked = s.get_details_retry_info().and_then(|r| r.retry_delay);
    match s.code() {
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Attempt::Retry(line, asked),
        Code::ResourceExhausted if asked.is_some() => Attempt::Retry(line, asked),
        _ => Attempt::Failed(line),
    }
}

/// What an HTTP response means for the batch.
pub fn http_outcome(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Attempt {
    match status {
        200..=299 => Attempt::Accepted(
            ExportTraceServiceResponse::decode(body)
                .map(|r| rejected(&r))
                .unwrap_or(0),
        ),
        429 | 502 | 503 | 504 => Attempt::Retry(format!("HTTP {status}"), retry_after),
        _ => Attempt::Failed(format!("HTTP {status}")),
    }
}

/// A `Retry-After` value: seconds, or an HTTP date (a date in the past is 0).
pub fn retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn gzip_bytes(b: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(b.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    z.write_all(b)?;
    z.finish()
}

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Backoff {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos().into())
            | 1;
        Backoff {
            next: INITIAL_DELAY,
            seed,
        }
    }

    fn next(&mut self) -> Duration {
        // xorshift: jitter needs no more than this.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        let half = u64::try_from(base.as_millis() / 2).unwrap_or(0).max(1);
        base + Duration::from_millis(self.seed % half)
    }
}

/// The gRPC codec of an already encoded request: its bytes go out as they are; the
/// response is decoded.
struct PassThrough;

struct BytesOut;
struct ResponseIn;

impl Codec for PassThrough {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = BytesOut;
    type Decoder = ResponseIn;

    fn encoder(&mut self) -> BytesOut {
        BytesOut
    }

    fn decoder(&mut self) -> ResponseIn {
        ResponseIn
    }
}

impl Encoder for BytesOut {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseIn {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let n = src.remaining();
        ExportTraceServiceResponse::decode(src.copy_to_bytes(n))
            .map(Some)
            .map_err(|e| Status::internal(format!("response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    #[test]
    fn grpc_codes_retry_as_the_otlp_specification_says() {
        for c in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(
                matches!(grpc_outcome(&Status::new(c, "x")), Attempt::Retry(_, None)),
                "{c:?}"
            );
        }
        for c in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(
                matches!(grpc_outcome(&Status::new(c, "x")), Attempt::Failed(_)),
                "{c:?}"
            );
        }
        // RESOURCE_EXHAUSTED with RetryInfo: throttled, retried after the delay asked.
        let throttled = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            grpc_outcome(&throttled),
            Attempt::Retry(
                "ResourceExhausted: slow down".into(),
                Some(Duration::from_secs(3))
            )
        );
    }

    #[test]
    fn http_statuses_retry_after_what_the_server_asks() {
        let ok = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(http_outcome(200, None, &ok), Attempt::Accepted(2));
        assert_eq!(http_outcome(200, None, b""), Attempt::Accepted(0));
        for s in [429, 502, 503, 504] {
            assert!(matches!(
                http_outcome(s, None, b""),
                Attempt::Retry(_, None)
            ));
        }
        assert_eq!(
            http_outcome(503, Some(Duration::from_secs(2)), b""),
            Attempt::Retry("HTTP 503".into(), Some(Duration::from_secs(2)))
        );
        for s in [400, 401, 403, 404, 413, 500] {
            assert_eq!(
                http_outcome(s, None, b""),
                Attempt::Failed(format!("HTTP {s}"))
            );
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        // RFC 9110's example date is 784111777 in Unix time: 10 s after this `now`.
        let now = now - Duration::from_secs(10);
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                now + Duration::from_secs(60)
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-1", now), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let mut b = Backoff::new();
        let mut base = INITIAL_DELAY;
        for _ in 0..10 {
            let d = b.next();
            assert!(d >= base && d <= base + base / 2, "{d:?} for {base:?}");
            base = (base * 2).min(MAX_DELAY);
        }
    }

    /// A collector on loopback that answers each request with the next of `replies` (then
    /// 200), one connection per request; returns its URL and the requests' bodies.
    async fn collector(
        replies: Vec<&'static str>,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/v1/traces", l.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut replies = replies.into_iter();
            while let Ok((mut c, _)) = l.accept().await {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let n = c.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    req.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&req).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break Some(req[end + 4..end + 4 + len].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                let _ = tx.send(body);
                let head = replies.next().unwrap_or("200 OK");
                let reply =
                    format!("HTTP/1.1 {head}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = c.write_all(reply.as_bytes()).await;
            }
        });
        (url, rx)
    }

    fn http(url: String) -> Exporter {
        Exporter::Http {
            client: reqwest::Client::builder().build().expect("client"),
            url,
            headers: reqwest::header::HeaderMap::new(),
            gzip: false,
        }
    }

    #[test]
    fn a_response_body_is_read_up_to_its_cap() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let big = tonic::codegen::http::Response::new(vec![7u8; 3 * MAX_RESPONSE + 5]);
        let small = tonic::codegen::http::Response::new(vec![7u8; 10]);
        rt.block_on(async {
            assert_eq!(response_body(big.into()).await.len(), MAX_RESPONSE);
            assert_eq!(response_body(small.into()).await, vec![7u8; 10]);
        });
    }

    #[test]
    fn a_throttled_export_is_sent_again_and_a_final_error_is_not() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // 503 asking for no wait, then 200: accepted on the second attempt, same bytes.
            let (url, mut seen) =
                collector(vec!["503 Service Unavailable\r\nretry-after: 0"]).await;
            let body = Bytes::from_static(b"\x0a\x00");
            assert_eq!(http(url).export(body.clone(), 1).await, Ok(0));
            assert_eq!(seen.recv().await.as_deref(), Some(&body[..]));
            assert_eq!(seen.recv().await.as_deref(), Some(&body[..]));

            // Throttled past its retries: the last error.
            let (url, _seen) = collector(vec!["429 Too Many Requests\r\nretry-after: 0"; 2]).await;
            assert_eq!(
                http(url).export(body.clone(), 1).await,
                Err("HTTP 429".into())
            );

            // 400 is final: one attempt only.
            let (url, mut seen) = collector(vec!["400 Bad Request"]).await;
            assert_eq!(
                http(url).export(body.clone(), 3).await,
                Err("HTTP 400".into())
            );
            assert!(seen.recv().await.is_some());
            assert!(seen.try_recv().is_err(), "not sent again");
        });
    }
}
