//! GraphQL fields (`graphql.*`) on HTTP exchanges that carry a GraphQL operation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `graphql.operation.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Operation {
    /// `query`, `mutation` or `subscription`; absent when the document did not parse or was
    /// not sent (a persisted query by hash only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The operation's name (the one `operationName` selects); absent for anonymous ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `graphql.errors.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Errors {
    /// Entries in the response's `errors` (summed over a batch).
    pub count: u64,
}

/// `graphql.persisted_query.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PersistedQuery {
    /// `extensions.persistedQuery.sha256Hash`.
    pub sha256_hash: String,
}

/// `graphql.batch.*`: a JSON array of operations in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Batch {
    /// Operations in the array (`graphql.operation` describes the first).
    pub size: u64,
}

/// `graphql.*`. Variables are never copied (they can hold secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Graphql {
    pub operation: Operation,
    /// Absent when no response body was read (none, cut, or not JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Errors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persisted_query: Option<PersistedQuery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
}
