//! The protocol registry: one line per protocol.
//!
//! Each entry names the protocol, its transports, the ports that hint at it, its content
//! detector and its constructor. Detection (`detect.rs`) tries content first; ports only
//! order the candidates.

use schemas::Protocol;

use super::detect::Detection;
use super::{Dissector, FlowMeta};

/// One dissectable protocol.
pub struct ProtocolEntry {
    pub protocol: Protocol,
    pub tcp: bool,
    pub udp: bool,
    /// Ports that hint at this protocol (either end of the flow).
    pub ports: &'static [u16],
    /// Looks at the first bytes one side sent; `hinted` when a port of the flow is one of
    /// `ports` (a detector may then accept weaker evidence).
    pub detect: fn(&[u8], schemas::Transport, bool) -> Detection,
    pub new: fn(&FlowMeta) -> Box<dyn Dissector>,
}

/// Every protocol tapwire dissects; detection tries them in this order after port hints.
#[rustfmt::skip]
pub static REGISTRY: &[ProtocolEntry] = &[
    super::http1::ENTRY,
    super::dns::ENTRY,
    super::redis::ENTRY,
    super::amqp::ENTRY,
    super::http2::ENTRY,
    super::kafka::ENTRY,
];
