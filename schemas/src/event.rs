//! The exchange event: one request with its response, or one one-way message.
//!
//! Field names are OpenTelemetry semantic-convention attribute names nested on their dots
//! (`http.response.status_code` serialises as `{"http":{"response":{"status_code":200}}}`);
//! see ARCHITECTURE.md §4. Optional fields are omitted when unknown, never `null`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::l7::{
    db::Db, db::Redis, dns::Dns, graphql::Graphql, http::Http, http::Http2, http::Url,
    messaging::Amqp, messaging::Kafka, messaging::Messaging, rpc::Grpc, rpc::Rpc,
};
use crate::protocol::Protocol;

/// Outcome of an exchange (ARCHITECTURE.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A response came and reports success.
    Ok,
    /// The response reports a protocol-level failure.
    Error,
    /// The request got no response before the connection ended or the pairing timeout.
    NoResponse,
    /// Bytes of the exchange were lost (capture gap) or the connection was cut mid-message.
    Incomplete,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

/// One side of the connection (`client.*` or `server.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Peer {
    /// IP address in its canonical text form.
    pub address: String,
    pub port: u16,
    /// Kubernetes names of this address at the exchange's time; only when the agent enriches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<std::sync::Arc<crate::k8s::K8s>>,
}

impl Peer {
    /// An address and port with no Kubernetes names.
    pub fn new(address: impl Into<String>, port: u16) -> Peer {
        Peer {
            address: address.into(),
            port,
            k8s: None,
        }
    }
}

/// `network.protocol.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkProtocol {
    /// Application protocol version as sent (`1.0`, `1.1`, `2`).
    pub version: String,
}

/// `network.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Network {
    pub transport: Transport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<NetworkProtocol>,
}

/// tapwire's own fields (`tapwire.*`): what the dissector noticed but the conventions do not name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tapwire {
    /// Recoverable oddities seen while dissecting this exchange (e.g. `http.gap_in_body`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
}

impl Tapwire {
    fn is_empty(&self) -> bool {
        self.anomalies.is_empty()
    }
}

/// `tls.*`: what is known about the TLS session the exchange travelled in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tls {
    /// `tls.established`: true when the exchange was read as plaintext inside an established
    /// TLS session (the TLS plaintext source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established: Option<bool>,
}

/// `process.executable.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessExecutable {
    /// `process.executable.name`: the program's name (its `comm`, as `/proc/PID/comm` shows it).
    pub name: String,
}

/// `process.*`: the process on this node that owns the connection, where the source knows it
/// (the TLS plaintext source does; packets do not). When both ends are traced on one node, the
/// one whose plaintext was used (see ARCHITECTURE.md, "TLS plaintext").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Process {
    /// `process.pid`.
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<ProcessExecutable>,
}

/// One exchange event (the contract every sink and consumer relies on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Exchange {
    pub protocol: Protocol,
    /// First request byte (or the one-way message's first byte), Unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// Last response byte (or the one-way message's last byte), Unix nanoseconds.
    pub end_time_unix_nano: u64,
    pub client: Peer,
    pub server: Peer,
    pub network: Network,
    pub status: Status,
    /// W3C trace id (32 lower-case hex digits) from a `traceparent` the request carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The caller's span id (16 hex digits) from that `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<Http2>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<Rpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql: Option<Graphql>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<Db>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<Messaging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<Amqp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Kafka>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Tapwire::is_empty")]
    pub tapwire: Tapwire,
}

pub use crate::headers::HeaderMap;

impl Exchange {
    /// A new exchange with no protocol fields set.
    pub fn new(
        protocol: Protocol,
        transport: Transport,
        client: Peer,
        server: Peer,
        start_time_unix_nano: u64,
    ) -> Self {
        Exchange {
            protocol,
            start_time_unix_nano,
            end_time_unix_nano: start_time_unix_nano,
            client,
            server,
            network: Network {
                transport,
                protocol: None,
            },
            status: Status::Ok,
            trace_id: None,
            span_id: None,
            http: None,
            url: None,
            http2: None,
            rpc: None,
            grpc: None,
            graphql: None,
            dns: None,
            db: None,
            redis: None,
            messaging: None,
            amqp: None,
            kafka: None,
            tls: None,
            process: None,
            tapwire: Tapwire::default(),
        }
    }

    /// Record an anomaly once (repeats of the same name are not listed twice).
    pub fn add_anomaly(&mut self, name: &str) {
        if !self.tapwire.anomalies.iter().any(|a| a == name) {
            self.tapwire.anomalies.push(name.to_string());
        }
    }
}
