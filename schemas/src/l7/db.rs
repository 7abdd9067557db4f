//! Database client fields (`db.*`), Redis's own (`redis.*`) and PostgreSQL's (`postgresql.*`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `db.system.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbSystem {
    /// `redis`, `postgresql`.
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
    /// The command with every argument value replaced by `?` (command and sub-command kept);
    /// SQL with its literals replaced by `?` (bind parameters stay `$1`).
    pub text: String,
}

/// `db.response.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbResponse {
    /// The error's code, only on errors: Redis's error prefix (`ERR`, `WRONGTYPE`, …),
    /// PostgreSQL's SQLSTATE (`42P01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    /// `db.response.returned_rows`: rows the server sent back (PostgreSQL `DataRow`s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned_rows: Option<u64>,
}

/// `db.collection.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DbCollection {
    /// The one table the query names (`orders`, `public.orders`).
    pub name: String,
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
    /// `db.namespace`: the database the connection was opened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<DbCollection>,
}

/// `postgresql.*`: what the conventions do not name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Postgresql {
    /// The startup's `user` and `application_name` (never a password: the authentication
    /// messages are not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// The last `CommandComplete` tag (`INSERT 0 3`, `SELECT 2`, `COPY 100`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_tag: Option<String>,
    /// The error's severity and message (`ERROR`, `relation "x" does not exist`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PostgresqlMessage>,
    /// Notices the server sent during the exchange.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<PostgresqlMessage>,
    /// COPY data bytes (either way), counted as they passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_bytes: Option<u64>,
}

/// `mysql.*`: what the conventions do not name (MySQL and MariaDB).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Mysql {
    /// The user the connection logged in as (never its auth data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The server's version string from its greeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<MysqlError>,
}

/// An ERR packet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MysqlError {
    /// The error number (`1146`).
    pub code: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    pub message: String,
}

/// An ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PostgresqlMessage {
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    pub message: String,
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
        (Some(r), _) if r.status_code.is_some() => r.status_code.as_deref().unwrap_or("-"),
        (Some(r), _) if r.returned_rows.is_some() => {
            let _ = write!(s, "{query} -> {} rows", r.returned_rows.unwrap_or(0));
            return;
        }
        (Some(_), _) => "-",
        (None, Some(r)) => r.rtype.as_str(),
        (None, None) => "-",
    };
    let _ = write!(s, "{query} -> {reply}");
}
