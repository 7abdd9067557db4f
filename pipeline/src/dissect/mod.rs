//! Dissector framework: the per-flow [`Dissector`] trait, [`Progress`], the [`Emitter`] that
//! turns parsed messages into [`Exchange`] events, what a protocol registers
//! ([`entry::ProtocolEntry`]), detection, and helpers shared by protocols (pairing, bodies,
//! HTTP fields, protobuf descriptors). The protocols themselves live in `protocols/`;
//! nothing here names one.
//!
//! A dissector instance lives for one flow and sees both directions in capture order. The
//! flow layer keeps the bytes a dissector did not consume (`Progress::Incomplete`) and feeds
//! them again with the next bytes, up to [`MAX_PENDING`] per direction; past that the bytes
//! are dropped and reported as a gap (`dissect.pending_overflow`).

pub mod anomaly;
pub mod body;
pub mod detect;
pub mod entry;
pub mod http_fields;
pub mod kafka_topics;
pub mod pairing;
pub mod protobuf;
pub mod sql;
#[cfg(test)]
pub(crate) mod testkit;

use std::collections::BTreeMap;
use std::net::IpAddr;

use schemas::{Exchange, Peer, Protocol, Transport};

/// Bytes a dissector may leave unconsumed per direction before the flow layer gives up on
/// them (an HTTP header block or a DNS-over-TCP message must fit).
pub const MAX_PENDING: usize = 128 * 1024;

/// Which way bytes travel, relative to the connection's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    pub fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// Why a dissector gave up on a flow: the bytes are not its protocol, or are beyond
/// recovery. The flow layer counts it (`dissector_errors`) and stops feeding the flow; the
/// dissector has counted the matching anomaly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not {}: {reason}", protocol.as_str())]
pub struct DissectError {
    pub protocol: Protocol,
    pub reason: &'static str,
}

/// What a dissector did with the bytes it was fed.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every byte was consumed.
    Done,
    /// `consumed` bytes were used; the rest must be fed again with at least `needed` more
    /// bytes (0 when unknown).
    Incomplete { consumed: usize, needed: usize },
    /// The flow cannot be dissected further; the flow layer stops feeding it.
    Error(DissectError),
    /// Everything there was to dissect is done (a TLS handshake reported; the rest is
    /// encrypted): the flow layer stops feeding it, and it is not an error.
    Finished,
}

/// The endpoints of a flow as the dissector sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowMeta {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub transport: Transport,
}

/// Counts anomalies by name across the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnomalyCounts(pub BTreeMap<&'static str, u64>);

impl AnomalyCounts {
    pub fn add(&mut self, name: &'static str) {
        *self.0.entry(name).or_insert(0) += 1;
    }
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Who owns a flow seen through a plaintext source (the TLS tracer), for the events' `process.*`
/// and `tls.established`. Packet flows have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOrigin {
    pub pid: u32,
    /// The program's name (`comm`), when known.
    pub executable: Option<String>,
}

/// Where a dissector puts its exchanges and anomalies.
pub struct Emitter<'a> {
    pub meta: FlowMeta,
    /// Set for flows from a plaintext source: every exchange gets its process and
    /// `tls.established`.
    pub origin: Option<&'a StreamOrigin>,
    pub anomalies: &'a mut AnomalyCounts,
    pub out: &'a mut Vec<Exchange>,
    /// Protobuf descriptors for gRPC message decoding, when the user gave some.
    pub descriptors: Option<&'a protobuf::Descriptors>,
    /// Kafka topic ids → names, shared by every flow of the configuration.
    pub topic_ids: Option<&'a kafka_topics::TopicIds>,
}

impl Emitter<'_> {
    /// A new exchange of this flow with its peers filled in.
    pub fn exchange(&self, protocol: Protocol, start_ts: u64) -> Exchange {
        let peer = |(ip, port): (IpAddr, u16)| Peer::new(ip_text(ip), port);
        let mut ex = Exchange::new(
            protocol,
            self.meta.transport,
            peer(self.meta.client),
            peer(self.meta.server),
            start_ts,
        );
        if let Some(o) = self.origin {
            ex.tls = Some(Box::new(schemas::Tls {
                established: Some(true),
                ..schemas::Tls::default()
            }));
            ex.process = Some(schemas::Process {
                pid: o.pid,
                executable: o
                    .executable
                    .as_ref()
                    .map(|name| schemas::ProcessExecutable { name: name.clone() }),
            });
        }
        ex
    }

    pub fn emit(&mut self, ex: Exchange) {
        self.out.push(ex);
    }

    /// Count an anomaly that is not tied to one exchange.
    pub fn anomaly(&mut self, a: impl anomaly::AnomalyName) {
        self.anomalies.add(a.name());
    }
}

/// An address in its canonical text form; IPv4 without the formatting machinery (this
/// runs twice per exchange).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if octet >= 100 {
                    s.push((b'0' + octet / 100) as char);
                }
                if octet >= 10 {
                    s.push((b'0' + (octet / 10) % 10) as char);
                }
                s.push((b'0' + octet % 10) as char);
            }
            s
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// A protocol parser for one flow (both directions).
pub trait Dissector: Send {
    /// Bytes of one direction, in stream order.
    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress;
    /// The start of a message (bytes left unconsumed by `feed`) is followed by lost bytes:
    /// use what is certain in it. `gap` is called right after. Default: nothing.
    fn cut(&mut self, _dir: Direction, _partial: &[u8], _ts: u64, _out: &mut Emitter<'_>) {}
    /// `len` bytes of one direction were lost: resynchronise or give up on what is in flight.
    fn gap(&mut self, dir: Direction, len: u64, ts: u64, out: &mut Emitter<'_>);
    /// Nothing is in flight (no request waiting for its response). A UDP flow whose
    /// dissector is idle is dropped at once. Default: never idle.
    fn is_idle(&self) -> bool {
        false
    }
    /// The flow ended (FIN/RST, idle timeout, end of input): flush what is pending.
    fn close(&mut self, ts: u64, out: &mut Emitter<'_>);
    /// Heap bytes this dissector holds (buffers, requests in flight, header lists, tables,
    /// kept bodies), from capacities and element sizes, for the pipeline's memory budget
    /// (`flow::FlowConfig::memory_budget`). Called after every packet of the flow: it must
    /// cost no more than walking what the dissector's caps allow it to hold.
    fn held_bytes(&self) -> usize;
}

/// Heap estimate of a request held in flight as an [`Exchange`]: the struct and its usual
/// strings (peers, names, a few fields).
pub const EXCHANGE_ESTIMATE: usize = std::mem::size_of::<Exchange>() + 256;
