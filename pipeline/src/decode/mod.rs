//! L2–L4 decoding: link layer → IP → TCP/UDP views over the packet bytes.
//!
//! Parsing is etherparse's lax slicer (`LaxSlicedPacket`), which accepts packets cut by the
//! snaplen and says so. What is ours: the link-layer dispatch (etherparse has no SLL2 and no
//! BSD null/loop headers, and no lax SLL entry), the IPv4/IPv6 fragment reassembly caps
//! (`defrag`), and the accounting of what was cut.
//!
//! Limits and failure behaviour: a packet that is not IPv4/IPv6 carrying TCP or UDP is counted
//! (`DecodeStats`) and skipped; a packet cut by the snaplen is used as far as it goes and the
//! number of missing payload bytes is reported with the segment (`missing`), so TCP reassembly
//! can turn it into a gap. Nothing here allocates per packet except fragment reassembly.

pub mod defrag;
mod shard;

pub use shard::shard_hash;

use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use defrag::{Defragmenter, FragInfo, FragOutcome};

/// Link-layer header type of a capture interface (pcap LINKTYPE_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1), with any 802.1Q/QinQ VLAN stack.
    Ethernet,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): 4-byte address family, then IP.
    Null,
    /// LINKTYPE_LINUX_SLL (113): 16-byte cooked header.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): 20-byte cooked header.
    LinuxSll2,
    /// LINKTYPE_RAW (101, and DLT_RAW 12/14 on some systems), IPV4 (228), IPV6 (229).
    RawIp,
}

impl LinkType {
    /// Map a pcap LINKTYPE value; `None` for link types tapwire cannot decode.
    pub fn from_linktype(value: u32) -> Option<LinkType> {
        Some(match value {
            1 => LinkType::Ethernet,
            0 | 108 => LinkType::Null,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            _ => return None,
        })
    }
}

/// TCP header flags tapwire uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Transport-layer view of one decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp { seq: u32, ack: u32, flags: TcpFlags },
    Udp,
}

/// One decoded TCP segment or UDP datagram.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Capture timestamp, Unix nanoseconds.
    pub ts: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub l4: L4,
    /// Payload bytes present in the capture.
    pub payload: &'a [u8],
    /// Payload bytes the packet carried on the wire but the capture cut off (snaplen).
    pub missing: u32,
}

/// Counters of the decode stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub packets: u64,
    pub bytes: u64,
    /// Packets cut by the snaplen (some bytes of the original missing).
    pub truncated: u64,
    /// Packets that are not IP (ARP, LLDP, …) or whose link header is unreadable.
    pub not_ip: u64,
    /// IP packets carrying neither TCP nor UDP (ICMP, …).
    pub not_tcp_udp: u64,
    /// IP packets whose TCP/UDP header is cut or malformed.
    pub bad_l4: u64,
    /// Fragments seen, datagrams reassembled, and fragments dropped by cap, timeout or error.
    pub fragments: u64,
    pub reassembled: u64,
    pub frag_dropped: u64,
}

impl DecodeStats {
    /// Add another decoder's counters (every field: the destructuring fails to build when
    /// one is added and not summed).
    pub fn add(&mut self, o: &DecodeStats) {
        let DecodeStats {
            packets,
            bytes,
            truncated,
            not_ip,
            not_tcp_udp,
            bad_l4,
            fragments,
            reassembled,
            frag_dropped,
        } = o;
        self.packets += packets;
        self.bytes += bytes;
        self.truncated += truncated;
        self.not_ip += not_ip;
        self.not_tcp_udp += not_tcp_udp;
        self.bad_l4 += bad_l4;
        self.fragments += fragments;
        self.reassembled += reassembled;
        self.frag_dropped += frag_dropped;
    }
}

/// Decoder state: counters and the fragment reassembly buffers.
#[derive(Debug, Default)]
pub struct Decoder {
    pub stats: DecodeStats,
    defrag: Defragmenter,
}

impl Decoder {
    pub fn new(defrag: Defragmenter) -> Self {
        Decoder {
            stats: DecodeStats::default(),
            defrag,
        }
    }

    /// End of input: drop fragments that never completed their datagram.
    pub fn finish(&mut self) {
        self.defrag.clear();
    }

    /// Fragment reassembly counters and state.
    pub fn defrag(&self) -> &Defragmenter {
        &self.defrag
    }

    /// Decode one captured frame and hand its TCP/UDP segment (if any) to `f`.
    /// `orig_len` is the frame's length on the wire (≥ `data.len()` when cut by the snaplen).
    pub fn decode<F: FnMut(&Segment<'_>)>(
        &mut self,
        link: LinkType,
        ts: u64,
        data: &[u8],
        orig_len: u32,
        mut f: F,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(orig_len.max(data.len() as u32));
        if (orig_len as usize) > data.len() {
            self.stats.truncated += 1;
        }
        if (orig_len as usize) <= data.len() && self.fast_path(link, ts, data, &mut f) {
            return;
        }
        let sliced = match link {
            LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).ok(),
            LinkType::RawIp => LaxSlicedPacket::from_ip(data).ok(),
            LinkType::Null => {
                // The family is in the capturing host's byte order; the IP version nibble
                // right after it is unambiguous.
                data.get(4..)
                    .and_then(|ip| LaxSlicedPacket::from_ip(ip).ok())
            }
            LinkType::LinuxSll => {
                // 16-byte header: packet type, ARPHRD, addr len, addr[8], protocol (BE).
                match (crate::wire::be16(data, 14), data.get(16..)) {
                    (Some(p), Some(rest)) => {
                        Some(LaxSlicedPacket::from_ether_type(EtherType(p), rest))
                    }
                    _ => None,
                }
            }
            LinkType::LinuxSll2 => {
                // 20-byte header: protocol (BE), reserved, ifindex, ARPHRD, type, addr len, addr[8].
                match (crate::wire::be16(data, 0), data.get(20..)) {
                    (Some(p), Some(rest)) => {
                        Some(LaxSlicedPacket::from_ether_type(EtherType(p), rest))
                    }
                    _ => None,
                }
            }
        };
        let Some(sliced) = sliced else {
            self.stats.not_ip += 1;
            return;
        };
        let (src, dst, payload) = match &sliced.net {
            Some(LaxNetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let p = v4.payload();
                if p.fragmented {
                    let info = FragInfo {
                        src: IpAddr::V4(h.source_addr()),
                        dst: IpAddr::V4(h.destination_addr()),
                        id: u32::from(h.identification()),
                        proto: p.ip_number.0,
                        offset: h.fragments_offset(),
                        more: h.more_fragments(),
                    };
                    self.fragment(ts, info, p.payload, p.incomplete, &mut f);
                    return;
                }
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    p,
                )
            }
            Some(LaxNetSlice::Ipv6(v6)) => {
                let h = v6.header();
                let p = v6.payload();
                if p.fragmented {
                    let frag = v6.extensions().clone().into_iter().find_map(|e| match e {
                        etherparse::Ipv6ExtensionSlice::Fragment(fr) => Some(fr.to_header()),
                        _ => None,
                    });
                    if let Some(fr) = frag {
                        let info = FragInfo {
                            src: IpAddr::V6(h.source_addr()),
                            dst: IpAddr::V6(h.destination_addr()),
                            id: fr.identification,
                            proto: p.ip_number.0,
                            offset: fr.fragment_offset,
                            more: fr.more_fragments,
                        };
                        self.fragment(ts, info, p.payload, p.incomplete, &mut f);
                    } else {
                        self.stats.bad_l4 += 1;
                    }
                    return;
                }
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    p,
                )
            }
            _ => {
                self.stats.not_ip += 1;
                return;
            }
        };
        // Bytes of the IP payload the capture cut off.
        let missing = if payload.incomplete {
            (orig_len as usize).saturating_sub(data.len()) as u32
        } else {
            0
        };
        match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => f(&Segment {
                ts,
                src,
                dst,
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                l4: L4::Tcp {
                    seq: tcp.sequence_number(),
                    ack: tcp.acknowledgment_number(),
                    flags: TcpFlags {
                        syn: tcp.syn(),
                        ack: tcp.ack(),
                        fin: tcp.fin(),
                        rst: tcp.rst(),
                    },
                },
                payload: tcp.payload(),
                missing,
            }),
            Some(TransportSlice::Udp(udp)) => f(&Segment {
                ts,
                src,
                dst,
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                l4: L4::Udp,
                payload: udp.payload(),
                missing,
            }),
            Some(_) => self.stats.not_tcp_udp += 1,
            None => {
                if matches!(payload.ip_number.0, 6 | 17) {
                    self.stats.bad_l4 += 1;
                } else {
                    self.stats.not_tcp_udp += 1;
                }
            }
        }
    }

    /// The common case, without etherparse's whole-packet slicer (whose large result is
    /// copied several times per packet): Ethernet with up to three VLAN tags, or raw IP,
    /// carrying a whole, unfragmented IPv4 packet or an IPv6 packet without extension
    /// headers, with TCP or UDP inside. Returns false (having done nothing) for anything
    /// else, which then takes the general path.
    fn fast_path<F: FnMut(&Segment<'_>)>(
        &mut self,
        link: LinkType,
        ts: u64,
        data: &[u8],
        f: &mut F,
    ) -> bool {
        let ip = match link {
            LinkType::Ethernet => {
                let mut off = 12;
                let mut tags = 0;
                loop {
                    let Some(et) = crate::wire::be16(data, off) else {
                        return false;
                    };
                    match et {
                        0x8100 | 0x88a8 | 0x9100 if tags < 3 => {
                            off += 4;
                            tags += 1;
                        }
                        0x0800 | 0x86dd => break,
                        _ => return false,
                    }
                }
                &data[off + 2..]
            }
            LinkType::RawIp => data,
            _ => return false,
        };
        match ip.first().map(|b| b >> 4) {
            Some(4) => {
                let Ok(h) = etherparse::Ipv4HeaderSlice::from_slice(ip) else {
                    return false;
                };
                let (hlen, total) = (h.slice().len(), usize::from(h.total_len()));
                if h.is_fragmenting_payload() || total > ip.len() || total < hlen {
                    return false;
                }
                let proto = h.protocol().0;
                if proto != 6 && proto != 17 {
                    return false;
                }
                let (src, dst) = (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                );
                decode_l4(ts, src, dst, proto, &ip[hlen..total], &mut self.stats, f);
                true
            }
            Some(6) => {
                let Ok(h) = etherparse::Ipv6HeaderSlice::from_slice(ip) else {
                    return false;
                };
                let end = 40 + usize::from(h.payload_length());
                let proto = h.next_header().0;
                if (proto != 6 && proto != 17) || end > ip.len() {
                    return false;
                }
                let (src, dst) = (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                );
                decode_l4(ts, src, dst, proto, &ip[40..end], &mut self.stats, f);
                true
            }
            _ => false,
        }
    }

    fn fragment<F: FnMut(&Segment<'_>)>(
        &mut self,
        ts: u64,
        info: FragInfo,
        payload: &[u8],
        cut: bool,
        f: &mut F,
    ) {
        self.stats.fragments += 1;
        if cut {
            // A fragment cut by the snaplen can never complete its datagram.
            self.stats.frag_dropped += 1;
            return;
        }
        let (src, dst, proto) = (info.src, info.dst, info.proto);
        match self.defrag.add(ts, info, payload) {
            FragOutcome::Pending => {}
            FragOutcome::Dropped => self.stats.frag_dropped += 1,
            FragOutcome::Complete(buf) => {
                self.stats.reassembled += 1;
                decode_l4(ts, src, dst, proto, &buf, &mut self.stats, f);
                self.defrag.recycle(buf);
            }
        }
    }
}

/// Decode a reassembled IP payload as TCP or UDP.
fn decode_l4<F: FnMut(&Segment<'_>)>(
    ts: u64,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    data: &[u8],
    stats: &mut DecodeStats,
    f: &mut F,
) {
    match proto {
        6 => match etherparse::TcpSlice::from_slice(data) {
            Ok(tcp) => f(&Segment {
                ts,
                src,
                dst,
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                l4: L4::Tcp {
                    seq: tcp.sequence_number(),
                    ack: tcp.acknowledgment_number(),
                    flags: TcpFlags {
                        syn: tcp.syn(),
                        ack: tcp.ack(),
                        fin: tcp.fin(),
                        rst: tcp.rst(),
                    },
                },
                payload: tcp.payload(),
                missing: 0,
            }),
            Err(_) => stats.bad_l4 += 1,
        },
        17 => match etherparse::UdpSlice::from_slice_lax(data) {
            Ok(udp) => f(&Segment {
                ts,
                src,
                dst,
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
                l4: L4::Udp,
                payload: udp.payload(),
                missing: 0,
            }),
            Err(_) => stats.bad_l4 += 1,
        },
        _ => stats.not_tcp_udp += 1,
    }
}

#[cfg(test)]
mod tests;
