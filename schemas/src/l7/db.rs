//! Database client fields (`db.*`) and Redis's own (`redis.*`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `db.system.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbSystem {
    /// `redis`.
    pub name: String,
}

/// A `{name}` leaf (`db.operation.name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Named {
    pub name: String,
}

/// `db.query.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbQuery {
    /// The command with every argument value replaced by `?` (command and sub-command kept).
    pub text: String,
}

/// `db.response.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbResponse {
    /// Error prefix of an error reply (`ERR`, `WRONGTYPE`, `NOAUTH`, …); only on errors.
    pub status_code: String,
}

/// `db.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Db {
    pub system: DbSystem,
    /// Upper-case command (`GET`, `INCRBY`, …); for pushed messages the push kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<DbQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<DbResponse>,
}

/// `redis.response.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RedisResponse {
    /// RESP type of the reply: `simple_string`, `error`, `integer`, `bulk_string`, `array`,
    /// `null`, `map`, `set`, `double`, `boolean`, `big_number`, `verbatim_string`,
    /// `bulk_error`, `push`.
    #[serde(rename = "type")]
    pub rtype: String,
}

/// `redis.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Redis {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RedisResponse>,
}

/// The table line's part of a database exchange (Redis today): the query text or operation,
/// and the error code or reply type.
pub fn summary(ex: &crate::Exchange, s: &mut String) {
    use std::fmt::Write as _;
    let Some(db) = &ex.db else {
        return;
    };
    let query = db
        .query
        .as_ref()
        .map(|q| q.text.as_str())
        .or(db.operation.as_ref().map(|o| o.name.as_str()))
        .unwrap_or("?");
    let reply = match (
        &db.response,
        ex.redis.as_ref().and_then(|r| r.response.as_ref()),
    ) {
        (Some(err), _) => err.status_code.as_str(),
        (None, Some(r)) => r.rtype.as_str(),
        (None, None) => "-",
    };
    let _ = write!(s, "{query} -> {reply}");
}
