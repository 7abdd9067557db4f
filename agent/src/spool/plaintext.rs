//! The TLS plaintext source's records in the spool, so a `since` replay and `tapwire pcap`
//! include decrypted connections.
//!
//! Each plaintext chunk the source dissected is one packet on its own interface,
//! [`INTERFACE`] (`LINKTYPE_RAW`): an IPv4 or IPv6 + TCP segment from the end that wrote the
//! bytes to the end that read them, with the connection's real addresses and ports, the
//! chunk's byte offset as its sequence number (low 32 bits) and the bytes as its payload, so
//! Wireshark, tshark and `tapwire dissect` read the exported file as the cleartext
//! connection. Its `opt_comment` says what the packet cannot: `tapwire-tls stream=<id>
//! sent=<0|1> offset=<n> pid=<pid> exe=<name>`, from which the replay rebuilds the stream
//! (`tls.established`, `process.*`) exactly as the live source fed it.
//!
//! Limits: a chunk longer than [`MAX_RECORD`] bytes is several records. The records are
//! the owner's copy only (one per exchange, as dissected live). The spool's caps and privacy
//! rules apply to them as to packets: the `tls/` folder is one share of the cap, `0700`, its
//! files `0600`.

use std::net::IpAddr;
use std::num::NonZeroU64;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pipeline::{StreamChunk, StreamOrigin};

/// The interface the records are on.
pub const INTERFACE: &str = "tls-plaintext";
/// The spool's key for that interface (capture interfaces use their index).
pub const IFACE_KEY: u64 = u64::MAX;
/// `LINKTYPE_RAW`: the packet starts with its IPv4 or IPv6 header.
pub const LINK_RAW: u16 = 101;
/// Most plaintext bytes in one record (an IPv4 packet holds 65535 bytes in all).
pub const MAX_RECORD: usize = 60_000;

/// What starts the comment of a plaintext record's packet.
pub const TAG: &str = "tapwire-tls ";

/// One record's packet and comment, for each piece of `chunk`; `packet` is the caller's
/// buffer, reused from chunk to chunk.
pub fn encode(chunk: &StreamChunk<'_>, packet: &mut Vec<u8>, mut f: impl FnMut(&[u8], &[u8])) {
    let (src, dst) = if chunk.sent {
        (chunk.local, chunk.peer)
    } else {
        (chunk.peer, chunk.local)
    };
    let exe: String = chunk
        .origin
        .executable
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    let mut offset = chunk.offset;
    for piece in chunk.data.chunks(MAX_RECORD) {
        let builder = match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            // One socket has one family: nothing to write for a mixed pair.
            _ => return,
        };
        let tcp = builder
            .tcp(src.1, dst.1, offset as u32, u16::MAX)
            .psh()
            .ack(0);
        packet.clear();
        if tcp.write(packet, piece).is_err() {
            return;
        }
        let comment = format!(
            "{TAG}stream={} sent={} offset={offset} pid={} exe={exe}",
            chunk.stream,
            u8::from(chunk.sent),
            chunk.origin.pid
        );
        f(packet, comment.as_bytes());
        offset += piece.len() as u64;
    }
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub stream: NonZeroU64,
    pub sent: bool,
    pub offset: u64,
    pub origin: StreamOrigin,
    pub local: (IpAddr, u16),
    pub peer: (IpAddr, u16),
    pub data: &'a [u8],
}

impl Record<'_> {
    /// As the live source handed it to the pipeline, at `ts`.
    pub fn chunk(&self, ts: u64) -> StreamChunk<'_> {
        StreamChunk {
            ts,
            local: self.local,
            peer: self.peer,
            stream: self.stream,
            sent: self.sent,
            offset: self.offset,
            data: self.data,
            origin: &self.origin,
        }
    }
}

/// Read a record back: `None` when the comment is not one of ours or the packet is not an
/// IP + TCP packet.
pub fn decode<'a>(packet: &'a [u8], comment: &[u8]) -> Option<Record<'a>> {
    let comment = std::str::from_utf8(comment).ok()?.strip_prefix(TAG)?;
    let (mut stream, mut sent, mut offset, mut pid, mut exe) = (None, None, None, None, None);
    for field in comment.split(' ') {
        let (k, v) = field.split_once('=')?;
        match k {
            "stream" => stream = v.parse::<u64>().ok().and_then(NonZeroU64::new),
            "sent" => sent = Some(v == "1"),
            "offset" => offset = v.parse::<u64>().ok(),
            "pid" => pid = v.parse::<u32>().ok(),
            "exe" => exe = Some(v),
            _ => {}
        }
    }
    let p = SlicedPacket::from_ip(packet).ok()?;
    let (src, dst) = match p.net? {
        NetSlice::Ipv4(v4) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
        ),
        NetSlice::Ipv6(v6) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Tcp(tcp)) = p.transport else {
        return None;
    };
    let (src, dst) = ((src, tcp.source_port()), (dst, tcp.destination_port()));
    let sent = sent?;
    let (local, peer) = if sent { (src, dst) } else { (dst, src) };
    Some(Record {
        stream: stream?,
        sent,
        offset: offset?,
        origin: StreamOrigin {
            pid: pid?,
            executable: exe.filter(|e| !e.is_empty()).map(str::to_string),
        },
        local,
        peer,
        data: tcp.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_the_chunks_they_were() {
        let origin = StreamOrigin {
            pid: 4242,
            executable: Some("curl".into()),
        };
        let body: Vec<u8> = (0..150_000u32).map(|i| i as u8).collect();
        for (local, peer) in [
            (
                ("10.0.0.2".parse().unwrap(), 40000),
                ("10.96.0.10".parse().unwrap(), 443),
            ),
            (
                ("fd00::2".parse().unwrap(), 40000),
                ("fd00::1".parse().unwrap(), 8443),
            ),
        ] {
            for sent in [true, false] {
                let chunk = StreamChunk {
                    ts: 1,
                    local,
                    peer,
                    stream: NonZeroU64::new(7).unwrap(),
                    sent,
                    offset: 5_000_000_000,
                    data: &body,
                    origin: &origin,
                };
                let mut back = Vec::new();
                encode(&chunk, &mut Vec::new(), |packet, comment| {
                    let r = decode(packet, comment).expect("decodes");
                    back.push((r.offset, r.data.to_vec(), r.local, r.peer, r.sent, r.origin));
                });
                assert_eq!(back.len(), 3, "150 000 bytes: three records");
                let mut at = chunk.offset;
                let mut all = Vec::new();
                for (offset, data, l, p, s, o) in back {
                    assert_eq!((offset, l, p, s), (at, local, peer, sent));
                    assert_eq!(o, origin);
                    at += data.len() as u64;
                    all.extend(data);
                }
                assert_eq!(all, body);
            }
        }
    }

    #[test]
    fn other_packets_and_comments_are_not_records() {
        let origin = StreamOrigin {
            pid: 1,
            executable: None,
        };
        let chunk = StreamChunk {
            ts: 1,
            local: ("10.0.0.2".parse().unwrap(), 40000),
            peer: ("10.0.0.1".parse().unwrap(), 443),
            stream: NonZeroU64::new(1).unwrap(),
            sent: true,
            offset: 0,
            data: b"GET / HTTP/1.1\r\n\r\n",
            origin: &origin,
        };
        encode(&chunk, &mut Vec::new(), |packet, comment| {
            assert!(decode(packet, b"a comment").is_none());
            assert!(decode(&packet[..10], comment).is_none());
            assert!(decode(packet, b"tapwire-tls stream=0 sent=1 offset=0 pid=1").is_none());
            let r = decode(packet, comment).unwrap();
            assert_eq!(r.origin.executable, None);
        });
    }
}
