//! The exchange event: one request with its response, or one one-way message.
//!
//! Field names are OpenTelemetry semantic-convention attribute names nested on their dots
//! (`http.response.status_code` serialises as `{"http":{"response":{"status_code":200}}}`);
//! see ARCHITECTURE.md §4. Optional fields are omitted when unknown, never `null`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::l7::{
    db::Db, db::Mysql, db::Postgresql, db::Redis, dns::Dns, graphql::Graphql, http::Http,
    http::Http2, http::Url, messaging::Amqp, messaging::Kafka, messaging::Messaging, rpc::Grpc,
    rpc::Rpc, websocket::Websocket,
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

/// `tls.*`: what is known about the TLS session the exchange travelled in, or (a `tls`
/// exchange) what its handshake said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tls {
    /// `tls.established`: true when the exchange was read as plaintext inside an established
    /// TLS session (the TLS plaintext source), or the handshake completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established: Option<bool>,
    /// `tls.protocol.*`: the version the server chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TlsProtocol>,
    /// `tls.cipher`: the cipher suite the server chose, by its IANA name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// `tls.next_protocol`: the ALPN protocol the server selected (where visible: TLS ≤ 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_protocol: Option<String>,
    /// `tls.resumed`: the session was resumed (an abbreviated TLS 1.2 handshake, or a TLS 1.3
    /// pre-shared key the server accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<TlsClient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<TlsServer>,
    /// `tls.alert.*`: the alert that ended a failed handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<TlsAlert>,
}

/// `tls.protocol.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsProtocol {
    /// `tls.protocol.name`: `tls` or `ssl`.
    pub name: String,
    /// `tls.protocol.version`: `1.0` … `1.3` (`3.0` for SSL 3).
    pub version: String,
}

/// `tls.client.*`: what the ClientHello offered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsClient {
    /// `tls.client.server_name`: the SNI (absent when none was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// `tls.client.next_protocols`: the ALPN protocols offered, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_protocols: Vec<String>,
    /// `tls.client.ja3`: the JA3 hash (MD5 of version, ciphers, extensions, groups, formats).
    pub ja3: String,
    /// `tls.client.ja4`: the JA4 fingerprint (`t13d1516h2_8daaf6152771_b186095e22b6`).
    pub ja4: String,
}

/// `tls.server.*`: the server's leaf certificate (visible in TLS ≤ 1.2 only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsServer {
    /// `tls.server.subject` and `tls.server.issuer`: distinguished names (RFC 4514 form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `tls.server.not_before` and `tls.server.not_after`: validity, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `tls.server.x509.alternative_names`: the DNS names and addresses the certificate is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<TlsX509>,
    /// `tls.server.hash.sha256`: SHA-256 of the certificate (DER), upper-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<TlsHash>,
}

/// `tls.server.x509.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsX509 {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternative_names: Vec<String>,
}

/// `tls.server.hash.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsHash {
    pub sha256: String,
}

/// `tls.alert.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TlsAlert {
    /// `warning` or `fatal`.
    pub level: String,
    /// The RFC 8446 name (`handshake_failure`, `protocol_version`, …).
    pub description: String,
    /// Which side sent it: `client` or `server`.
    pub sender: String,
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

// Each protocol's part larger than a few words is boxed: an exchange moves through queues,
// vectors and sinks by value, and with every part inline it was 2264 bytes, most of them the
// `None`s of other protocols (moving them was a tenth of `tapwire dissect`'s time). Boxed, it is
// 384 bytes; the JSON is the same (a test keeps it under 512).
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
    pub http: Option<Box<Http>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Box<Url>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<Box<Http2>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<Box<Rpc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Box<Grpc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql: Option<Box<Graphql>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Box<Dns>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<Box<Db>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgresql: Option<Box<Postgresql>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<Box<Mysql>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<Box<Websocket>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<Box<Messaging>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<Box<Amqp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<Box<Kafka>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<Tls>>,
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
            postgresql: None,
            mysql: None,
            websocket: None,
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

#[cfg(test)]
mod size {
    /// Exchanges move by value through every queue and sink: a protocol part added inline
    /// (instead of boxed) would make every one of them pay for it.
    #[test]
    fn an_exchange_stays_small() {
        let n = std::mem::size_of::<super::Exchange>();
        assert!(n <= 512, "Exchange is {n} bytes: box the new part");
    }
}
