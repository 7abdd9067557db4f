//! The protocols and their registry: one module and one [`REGISTRY`] line per protocol.
//!
//! This is the only file that names every protocol. A protocol module depends on the
//! dissector framework (`crate::dissect`) and, where it refines another protocol's exchanges,
//! on that protocol (`http1` and `http2` hand GraphQL bodies to `graphql`, `http2` hands
//! gRPC streams to `grpc`); it never imports this file. Detection
//! ([`crate::dissect::detect`]) tries content first; ports only order the candidates.
//!
//! Adding a protocol: a folder here with a `pub const ENTRY: ProtocolEntry`, one `mod` line
//! and one `REGISTRY` line below (ARCHITECTURE.md, "Adding a protocol").

pub mod amqp;
pub mod dns;
pub mod graphql;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod kafka;
pub mod mysql;
pub mod postgresql;
pub mod redis;
pub mod tls;
pub mod websocket;

use crate::dissect::entry::ProtocolEntry;

/// Every protocol tapwire dissects on its own (gRPC and GraphQL refine HTTP exchanges);
/// detection tries them in this order after port hints.
#[rustfmt::skip]
pub static REGISTRY: &[ProtocolEntry] = &[
    http1::ENTRY,
    dns::ENTRY,
    redis::ENTRY,
    amqp::ENTRY,
    http2::ENTRY,
    kafka::ENTRY,
    tls::ENTRY,
    postgresql::ENTRY,
    mysql::ENTRY,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::dissect::anomaly::Common;
    use crate::dissect::http_fields::BodyAnomaly;

    #[test]
    fn anomaly_names_are_unique_and_shaped_protocol_dot_name() {
        let all: Vec<&str> = [
            Common::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
            BodyAnomaly::ALL.iter().map(|a| a.name()).collect(),
            super::amqp::Anomaly::ALL.iter().map(|a| a.name()).collect(),
            super::tls::Anomaly::ALL.iter().map(|a| a.name()).collect(),
            super::websocket::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::mysql::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::postgresql::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::dns::Anomaly::ALL.iter().map(|a| a.name()).collect(),
            super::graphql::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::grpc::Anomaly::ALL.iter().map(|a| a.name()).collect(),
            super::http1::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::http2::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::kafka::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
            super::redis::Anomaly::ALL
                .iter()
                .map(|a| a.name())
                .collect(),
        ]
        .concat();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a name is listed twice");
        for name in all {
            let (protocol, rest) = name.split_once('.').expect("protocol.name");
            assert!(
                !protocol.is_empty()
                    && !rest.is_empty()
                    && name.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b"._".contains(&b)),
                "{name}"
            );
        }
    }
}
