//! Protocol-specific event fields, one module per protocol family.

pub mod db;
pub mod dns;
pub mod graphql;
pub mod http;
pub mod messaging;
pub mod rpc;
pub mod tls;
pub mod websocket;
