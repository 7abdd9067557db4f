//! The application protocols and the one table that describes each: its name in events and
//! metrics, its semantic-convention [`Family`] (which part of the event holds its fields, which
//! table summary, span shape and RED metric it gets), and the system name the conventions give
//! it (`db.system.name`, `rpc.system.name`, `messaging.system`).
//!
//! Adding a protocol to an existing family is one variant and one row of [`Protocol::info`]:
//! the table printer, the span mapping and the RED metrics read the family and the event's
//! family fields, never the protocol. A protocol of a new family (TLS handshakes, say) adds a
//! [`Family`] variant, and the compiler then lists every place that must decide what it prints
//! and exports (ARCHITECTURE.md §5).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Application protocol of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
    Graphql,
    Dns,
    Kafka,
    Redis,
    Amqp,
    Tls,
    Postgresql,
    Websocket,
    Mysql,
}

/// The semantic-convention area of a protocol: which of the event's parts carry its fields
/// and how sinks describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `http.*`, `url.*` (GraphQL adds `graphql.*`): server spans, `http_server_*` metrics.
    Http,
    /// `rpc.*` carried over HTTP (gRPC): server spans, `rpc_server_*` metrics.
    Rpc,
    /// `db.*`: client spans, `db_client_*` metrics.
    Db,
    /// `messaging.*`: producer, consumer and client spans, `messaging_client_*` metrics.
    Messaging,
    /// `dns.*`: client spans, `dns_lookup_*` metrics.
    Dns,
    /// `tls.*` (handshakes): client spans, `tls_handshake_*` metrics.
    Tls,
    /// `websocket.*` (messages of an upgraded HTTP connection): producer spans (the sender),
    /// `websocket_message_*` metrics.
    Websocket,
}

/// The side of a connection a span or metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Family {
    /// The side whose workload is a span's `service.name` and a metric's `k8s_*` labels, as if
    /// that side had reported them: the server of request-serving protocols, the client of
    /// databases, brokers and resolvers (which tapwire sees from their callers).
    pub fn observed(self) -> Side {
        match self {
            Family::Http | Family::Rpc | Family::Tls | Family::Websocket => Side::Server,
            Family::Db | Family::Messaging | Family::Dns => Side::Client,
        }
    }
}

/// One row of the protocol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// The lower-case name in events (`protocol`), metrics and anomaly names.
    pub name: &'static str,
    pub family: Family,
    /// The conventions' system name (`db.system.name`, `rpc.system.name`,
    /// `messaging.system`), when the family has one.
    pub system: Option<&'static str>,
}

impl Protocol {
    /// Every protocol, in declaration order.
    pub const ALL: [Protocol; 11] = [
        Protocol::Http,
        Protocol::Grpc,
        Protocol::Graphql,
        Protocol::Dns,
        Protocol::Kafka,
        Protocol::Redis,
        Protocol::Amqp,
        Protocol::Tls,
        Protocol::Postgresql,
        Protocol::Websocket,
        Protocol::Mysql,
    ];

    /// The protocol's row of the table.
    pub const fn info(self) -> ProtocolInfo {
        const fn row(
            name: &'static str,
            family: Family,
            system: Option<&'static str>,
        ) -> ProtocolInfo {
            ProtocolInfo {
                name,
                family,
                system,
            }
        }
        match self {
            Protocol::Http => row("http", Family::Http, None),
            Protocol::Grpc => row("grpc", Family::Rpc, Some("grpc")),
            Protocol::Graphql => row("graphql", Family::Http, None),
            Protocol::Dns => row("dns", Family::Dns, None),
            Protocol::Kafka => row("kafka", Family::Messaging, Some("kafka")),
            Protocol::Redis => row("redis", Family::Db, Some("redis")),
            Protocol::Amqp => row("amqp", Family::Messaging, Some("rabbitmq")),
            Protocol::Tls => row("tls", Family::Tls, None),
            Protocol::Postgresql => row("postgresql", Family::Db, Some("postgresql")),
            Protocol::Websocket => row("websocket", Family::Websocket, None),
            Protocol::Mysql => row("mysql", Family::Db, Some("mysql")),
        }
    }

    /// The lower-case name used in events and metrics.
    pub const fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The protocol's semantic-convention family.
    pub const fn family(self) -> Family {
        self.info().family
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_protocol_as_its_json_form() {
        for p in Protocol::ALL {
            let json = serde_json::to_string(&p).expect("serialises");
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            let back: Protocol = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, p);
        }
    }

    #[test]
    fn all_lists_every_variant_once_in_order() {
        // The JSON schema lists every variant the derive saw; ALL must be exactly that list.
        let schema = serde_json::to_value(schemars::schema_for!(Protocol)).expect("serialises");
        let names: Vec<&str> = schema["enum"]
            .as_array()
            .expect("an enum schema")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let all: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, all);
    }
}
