//! Which worker a frame belongs to: a symmetric hash of its flow, for spreading one capture
//! over several pipelines (`tapwire dissect --workers N`) the way the kernel's fanout hash
//! spreads the agent's rings.
//!
//! Both directions of a flow hash alike (the two endpoints are ordered before hashing). TCP is
//! hashed by addresses and ports. UDP and every IP fragment are hashed by the address pair and
//! protocol only, so a datagram's fragments (only the first one carries the ports) meet the
//! unfragmented datagrams of their flow in one worker. A TCP segment fragmented by IP (rare: TCP
//! sizes its segments to the path) may go to another worker than its flow; that flow then sees
//! a gap, as it would under a capture that lost the fragments. Frames that are not IP hash to 0.
//! Nothing here allocates; every read is bounds-checked.

use std::hash::Hasher;

use rustc_hash::FxHasher;

use super::LinkType;
use crate::wire::be16;

/// The IP packet inside a frame of `link`, if the link header can be read.
fn ip_of(link: LinkType, data: &[u8]) -> Option<&[u8]> {
    match link {
        LinkType::Ethernet => {
            let mut off = 12;
            for _ in 0..4 {
                match be16(data, off)? {
                    0x8100 | 0x88a8 | 0x9100 => off += 4,
                    0x0800 | 0x86dd => return data.get(off + 2..),
                    _ => return None,
                }
            }
            None
        }
        LinkType::RawIp => Some(data),
        LinkType::Null => data.get(4..),
        LinkType::LinuxSll => data.get(16..),
        LinkType::LinuxSll2 => data.get(20..),
    }
}

/// The symmetric flow hash of a frame (see the module doc).
pub fn shard_hash(link: LinkType, data: &[u8]) -> u64 {
    let Some(ip) = ip_of(link, data) else {
        return 0;
    };
    let (src, dst, proto, l4): (&[u8], &[u8], u8, Option<&[u8]>) = match ip.first().map(|b| b >> 4)
    {
        Some(4) => {
            let hlen = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
            let (Some(src), Some(dst), Some(&proto), Some(frag)) =
                (ip.get(12..16), ip.get(16..20), ip.get(9), be16(ip, 6))
            else {
                return 0;
            };
            // More fragments, or an offset: a fragment.
            let fragment = frag & 0x3fff != 0;
            let l4 = (!fragment && hlen >= 20).then(|| ip.get(hlen..)).flatten();
            (src, dst, proto, l4)
        }
        Some(6) => {
            let (Some(src), Some(dst), Some(&next)) = (ip.get(8..24), ip.get(24..40), ip.get(6))
            else {
                return 0;
            };
            // Extension headers (fragments among them): by addresses and protocol only.
            (src, dst, next, ip.get(40..))
        }
        _ => return 0,
    };
    let ports = match (proto, l4) {
        (6, Some(l4)) => be16(l4, 0).zip(be16(l4, 2)),
        _ => None,
    };
    let (sp, dp) = ports.unwrap_or((0, 0));
    let (a, b) = if (src, sp) <= (dst, dp) {
        ((src, sp), (dst, dp))
    } else {
        ((dst, dp), (src, sp))
    };
    let mut h = FxHasher::default();
    h.write(a.0);
    h.write_u16(a.1);
    h.write(b.0);
    h.write_u16(b.1);
    h.write_u8(proto);
    // FxHash's low bits are weak; fold the high half in before the caller takes a modulus.
    let x = h.finish();
    x ^ (x >> 29) ^ (x >> 47)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, 1, 1000)
            .write(&mut v, b"x")
            .unwrap();
        v
    }

    #[test]
    fn both_directions_hash_alike_and_flows_spread() {
        let a = tcp([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let b = tcp([10, 0, 0, 2], 80, [10, 0, 0, 1], 40000);
        assert_eq!(
            shard_hash(LinkType::Ethernet, &a),
            shard_hash(LinkType::Ethernet, &b)
        );
        let mut per = [0u32; 4];
        for port in 0..4000u16 {
            let f = tcp([10, 0, 0, 1], 30000 + port, [10, 0, 0, 2], 80);
            per[(shard_hash(LinkType::Ethernet, &f) % 4) as usize] += 1;
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
    }

    #[test]
    fn udp_and_fragments_hash_by_addresses() {
        let mut udp = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 53], 64)
            .udp(5353, 53)
            .write(&mut udp, b"q")
            .unwrap();
        let mut frag = udp.clone();
        frag[6] = 0x00;
        frag[7] = 0x10; // offset 16 bytes: a later fragment, no ports in it
        frag.truncate(20);
        assert_eq!(
            shard_hash(LinkType::RawIp, &udp),
            shard_hash(LinkType::RawIp, &frag)
        );
    }

    #[test]
    fn short_and_odd_frames_hash_to_something_without_panicking() {
        for len in 0..80 {
            let f = tcp([10, 0, 0, 1], 1, [10, 0, 0, 2], 2);
            for link in [
                LinkType::Ethernet,
                LinkType::RawIp,
                LinkType::Null,
                LinkType::LinuxSll,
                LinkType::LinuxSll2,
            ] {
                let _ = shard_hash(link, f.get(..len).unwrap_or(&f));
            }
        }
        assert_eq!(shard_hash(LinkType::Ethernet, &[0; 14]), 0);
    }
}
