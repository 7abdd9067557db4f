//! HTTP fields (`http.*`, `url.*`), shared by HTTP/1.x and HTTP/2 (and gRPC and GraphQL,
//! which refine HTTP exchanges).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::headers::HeaderMap;

/// `http.request.body.*` / `http.response.body.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Body {
    /// Body size in bytes after transfer decoding (chunk framing removed), before
    /// content decoding (gzip stays gzip), as the conventions define it.
    pub size: u64,
}

/// `http.request.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HttpRequest {
    /// Method as sent (`GET`, `POST`, …; unknown methods are kept verbatim). Absent only
    /// when an HTTP/2 `:method` came from a header-table entry tapwire did not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Request headers by lower-case name; secrets (`authorization`, `cookie`,
    /// `proxy-authorization`) are replaced by `REDACTED`.
    #[serde(default, skip_serializing_if = "HeaderMap::is_empty")]
    pub header: HeaderMap,
}

/// `http.response.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HttpResponse {
    /// Final status code (interim `1xx` other than `101` are never the status); absent
    /// only for HTTP/0.9 responses, which have no status line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Response headers by lower-case name; `set-cookie` values are replaced by `REDACTED`.
    #[serde(default, skip_serializing_if = "HeaderMap::is_empty")]
    pub header: HeaderMap,
}

/// `http.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Http {
    pub request: HttpRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

/// `url.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Url {
    /// Path of the request target, without the query (`*` for `OPTIONS *`, `host:port` for
    /// `CONNECT`). Absent only when an HTTP/2 `:path` came from a header-table entry tapwire
    /// did not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query string without the leading `?`, when the target had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `:scheme` of an HTTP/2 request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// `http2.*`: the HTTP/2 stream behind an exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Http2 {
    /// Stream id.
    pub stream_id: u32,
    /// Error code name (`CANCEL`, `REFUSED_STREAM`, …) when the stream was reset, or refused
    /// by a GOAWAY, before it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Who reset the stream: `client` or `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_by: Option<String>,
    /// The request came in a server push (`PUSH_PROMISE`), not from the client.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pushed: bool,
    /// Header fields left out because they referred to HPACK table entries tapwire did not see
    /// (capture joined mid-connection, or lost a header block). Their values are never guessed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_header_fields: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The table line's part of an HTTP, gRPC or GraphQL exchange: method, target and status,
/// then the RPC method and status or the GraphQL operation.
pub fn summary(ex: &crate::Exchange, s: &mut String) {
    use std::fmt::Write as _;
    let Some(http) = &ex.http else {
        return;
    };
    let path = ex
        .url
        .as_ref()
        .and_then(|u| u.path.as_deref())
        .unwrap_or("?");
    let query = ex
        .url
        .as_ref()
        .and_then(|u| u.query.as_deref())
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let status = http
        .response
        .as_ref()
        .and_then(|r| r.status_code)
        .map(|c| c.to_string())
        .unwrap_or_else(|| "-".into());
    let method = http.request.method.as_deref().unwrap_or("?");
    let _ = write!(s, "{method} {path}{query} -> {status}");
    if let Some(m) = ex.rpc.as_ref().and_then(|r| r.method.as_deref()) {
        let code = ex.rpc.as_ref().and_then(|r| r.response.as_ref());
        let _ = write!(
            s,
            " grpc {m} {}",
            code.map_or("-", |c| c.status_code.as_str())
        );
    }
    if let Some(g) = &ex.graphql {
        let _ = write!(
            s,
            " graphql {} {}",
            g.operation.kind.as_deref().unwrap_or("?"),
            g.operation.name.as_deref().unwrap_or("-")
        );
    }
}
