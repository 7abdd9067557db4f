//! tapwire event types: the `Exchange` every dissector produces and every sink consumes,
//! and its JSON schema (checked in at `schemas/event.schema.json`).

pub mod event;
pub mod headers;
pub mod k8s;
pub mod l7;
pub mod protocol;
pub mod text;

pub use event::{
    Exchange, HeaderMap, Network, NetworkProtocol, Peer, Process, ProcessExecutable, Status, Tls,
    TlsAlert, TlsClient, TlsHash, TlsProtocol, TlsServer, TlsX509, Transport,
};
pub use protocol::{Family, Protocol, ProtocolInfo, Side};

/// The version of the event contract, sent with events that leave the node (the Kafka sink's
/// `tapwire.schema.version` header): the major number changes when a field changes meaning or
/// goes away, the minor number when fields are added.
pub const SCHEMA_VERSION: &str = "1.2";

/// The JSON schema of [`Exchange`], pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Exchange);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}
