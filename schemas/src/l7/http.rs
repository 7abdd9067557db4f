//! HTTP fields (`http.*`, `url.*`), shared by HTTP/1.x and HTTP/2 (and gRPC and GraphQL,
//! which refine HTTP exchanges).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::HeaderMap;

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
    /// Method as sent (`GET`, `POST`, …; unknown methods are kept verbatim).
    pub method: String,
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
    /// `CONNECT`).
    pub path: String,
    /// Query string without the leading `?`, when the target had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}
