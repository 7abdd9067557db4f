//! One count per packet on `any` captures: a packet crossing the host (pod veth, bridge,
//! uplink) is seen once per interface it crosses. Each copy has the same fingerprint —
//! addresses, IP identification (IPv4) or payload length (IPv6), protocol, the first 16 bytes
//! of the transport header (ports, sequence and acknowledgement numbers) and a hash of up to
//! 32 payload bytes; TTL and checksums, which forwarding changes, are left out. A fingerprint
//! seen again on *another* interface within [`WINDOW_NS`] is a copy and is skipped (counted).
//! A retransmission on the same interface is never a copy.
//!
//! Limits: a direct-mapped table of [`SLOTS`] fingerprints per worker (a collision only
//! forgets an older fingerprint, so a copy may then be kept, never a distinct packet lost).
//! Copies reach the same worker because the fanout hash is over the same addresses and ports.

use std::hash::Hasher;

use rustc_hash::FxHasher;

/// Fingerprints remembered per worker.
pub const SLOTS: usize = 8192;
/// How far apart two copies of one packet may be seen.
pub const WINDOW_NS: u64 = 2_000_000;

#[derive(Clone, Copy, Default)]
struct Slot {
    fp: u64,
    ts: u64,
    ifindex: i32,
}

pub struct Dedup {
    slots: Box<[Slot]>,
    /// Copies skipped.
    pub copies: u64,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            copies: 0,
        }
    }
}

/// The fingerprint of an IP packet (`l3` starts at the IP header); `None` for anything else.
fn fingerprint(l3: &[u8]) -> Option<u64> {
    let mut h = FxHasher::default();
    let l4 = match l3.first()? >> 4 {
        4 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let hdr = l3.get(..20)?;
            h.write(&hdr[2..6]); // total length, identification
            h.write(&hdr[6..8]); // flags, fragment offset
            h.write_u8(hdr[9]); // protocol
            h.write(&hdr[12..20]); // addresses
            l3.get(ihl..)?
        }
        6 => {
            let hdr = l3.get(..40)?;
            h.write(&hdr[4..7]); // payload length, next header
            h.write(&hdr[8..40]); // addresses
            &l3[40..]
        }
        _ => return None,
    };
    h.write(&l4[..l4.len().min(16)]);
    h.write(l4.get(16..l4.len().min(48)).unwrap_or_default());
    Some(h.finish() | 1)
}

impl Dedup {
    /// Whether this packet is a copy of one just seen on another interface.
    pub fn is_copy(&mut self, l3: &[u8], ts: u64, ifindex: i32) -> bool {
        let Some(fp) = fingerprint(l3) else {
            return false;
        };
        let slot = &mut self.slots[(fp as usize) & (SLOTS - 1)];
        if slot.fp == fp && slot.ifindex != ifindex && ts.saturating_sub(slot.ts) <= WINDOW_NS {
            self.copies += 1;
            return true;
        }
        *slot = Slot { fp, ts, ifindex };
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(id: u16, ttl: u8) -> Vec<u8> {
        let mut p = vec![
            0x45,
            0,
            0,
            32,
            (id >> 8) as u8,
            id as u8,
            0,
            0,
            ttl,
            17,
            0xab,
            0xcd,
        ];
        p.extend([10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend([0x30, 0x39, 0x27, 0x0f, 0, 12, 0, 0, b'd', b'a', b't', b'a']);
        p
    }

    #[test]
    fn copies_on_other_interfaces_within_the_window() {
        let mut d = Dedup::default();
        assert!(!d.is_copy(&udp(1, 64), 1_000, 3));
        assert!(
            d.is_copy(&udp(1, 63), 1_500, 4),
            "forwarded copy: other interface, TTL - 1"
        );
        assert!(
            !d.is_copy(&udp(1, 64), 2_000, 3),
            "same interface: a retransmission"
        );
        assert!(!d.is_copy(&udp(2, 64), 2_100, 4), "another packet");
        assert!(
            !d.is_copy(&udp(2, 64), 2_100 + WINDOW_NS + 1, 5),
            "too late to be a copy"
        );
        assert!(!d.is_copy(b"\x00\x01", 0, 1), "not IP");
        assert_eq!(d.copies, 1);
    }
}
