//! Protocol-specific event fields, one module per protocol family.

pub mod db;
pub mod dns;
pub mod http;
pub mod messaging;
