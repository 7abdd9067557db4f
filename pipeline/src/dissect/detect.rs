//! Protocol detection: content first, ports as a hint.
//!
//! A flow's first bytes in either direction go to each registry entry's detector (the flow
//! table is given the registry, `protocols::REGISTRY`); entries
//! whose ports match either end of the flow are asked first, so when content is ambiguous
//! the port decides. A detector also says which side sent the bytes (a request means the
//! sender is the client), which settles the roles of connections whose handshake was not
//! captured.

use schemas::Transport;

use super::entry::{Detection, ProtocolEntry};

/// Outcome of detection over the whole registry.
#[derive(Clone, Copy)]
pub enum Detected {
    Found(&'static ProtocolEntry, Detection),
    NeedMore,
    Unknown,
}

/// Run the detectors of `registry` on `data`, preferring the entries whose ports match.
pub fn detect(
    registry: &'static [ProtocolEntry],
    data: &[u8],
    transport: Transport,
    ports: (u16, u16),
) -> Detected {
    let fits = |e: &ProtocolEntry| match transport {
        Transport::Tcp => e.tcp,
        Transport::Udp => e.udp,
    };
    let hinted = |e: &ProtocolEntry| e.ports.contains(&ports.0) || e.ports.contains(&ports.1);
    let mut need_more = false;
    for pass in [true, false] {
        for entry in registry.iter().filter(|e| fits(e) && hinted(e) == pass) {
            match (entry.detect)(data, transport, pass) {
                Detection::No => {}
                Detection::NeedMore => need_more = true,
                d => return Detected::Found(entry, d),
            }
        }
    }
    if need_more {
        Detected::NeedMore
    } else {
        Detected::Unknown
    }
}
