//! What a protocol gives the framework: a [`ProtocolEntry`] (name, transports, port hints,
//! content detector, constructor), and the [`Detection`] verdict its detector returns.

use schemas::{Protocol, Transport};

use super::{Dissector, FlowMeta};

/// A detector's verdict on the first bytes one side sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// Not this protocol.
    No,
    /// This protocol; the bytes come from the client (a request).
    FromClient,
    /// This protocol; the bytes come from the server (a response).
    FromServer,
    /// Could be this protocol; more bytes are needed to tell.
    NeedMore,
}

/// One dissectable protocol, as listed in `protocols::REGISTRY`.
pub struct ProtocolEntry {
    pub protocol: Protocol,
    pub tcp: bool,
    pub udp: bool,
    /// Ports that hint at this protocol (either end of the flow).
    pub ports: &'static [u16],
    /// Looks at the first bytes one side sent; `hinted` when a port of the flow is one of
    /// `ports` (a detector may then accept weaker evidence).
    pub detect: fn(&[u8], Transport, bool) -> Detection,
    pub new: fn(&FlowMeta) -> Box<dyn Dissector>,
}
