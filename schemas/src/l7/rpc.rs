//! RPC fields (`rpc.*`) and gRPC's own (`grpc.*`), on HTTP/2 exchanges whose content type is
//! `application/grpc*`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `rpc.system.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RpcSystem {
    /// `grpc`.
    pub name: String,
}

/// `rpc.response.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RpcResponse {
    /// The status code's name (`OK`, `NOT_FOUND`, …), from `grpc-status` in the trailers or
    /// in a trailers-only response; a code outside the known ones is its number.
    pub status_code: String,
}

/// `rpc.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rpc {
    pub system: RpcSystem,
    /// `package.Service/Method`: `:path` without its leading `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RpcResponse>,
}

/// Length-prefixed messages one side sent (`grpc.request.*` / `grpc.response.*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GrpcMessages {
    /// Whole messages seen.
    pub count: u64,
    /// Their payload bytes (without the 5-byte prefixes).
    pub size: u64,
    /// How many had the compressed flag set.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compressed: u64,
    /// Messages decoded with the user's descriptor set, in order (at most
    /// `grpc::MAX_DECODED_MESSAGES`, each under a size cap). Absent without descriptors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decoded: Vec<serde_json::Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `grpc.*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Grpc {
    /// `grpc-message` from the trailers (percent-decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// `grpc-encoding` of the messages, when not `identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    pub request: GrpcMessages,
    pub response: GrpcMessages,
}

/// gRPC status names, indexed by their code.
pub const GRPC_STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The numeric gRPC code of a status name.
pub fn grpc_status_code(name: &str) -> Option<i64> {
    GRPC_STATUS_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as i64)
}
