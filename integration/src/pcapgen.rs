//! Capture files written by the tests themselves: TCP connections (handshake, data in both
//! directions, FIN) and UDP datagrams over Ethernet and IPv4, as classic pcap. The hostile
//! input suite builds its attacks with it, so every case is generated, never checked in.

use std::net::Ipv4Addr;

/// A pcap file being written in memory.
pub struct Pcap {
    out: Vec<u8>,
    ts_us: u64,
}

impl Default for Pcap {
    fn default() -> Self {
        Pcap::new()
    }
}

/// One TCP connection's state (sequence numbers of both sides).
pub struct Tcp {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    seq: [u32; 2],
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;

impl Pcap {
    pub fn new() -> Pcap {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&262_144u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
        Pcap {
            out,
            ts_us: 1_790_000_000_000_000,
        }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    /// Write it to `path`.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, &self.out)
    }

    fn frame(&mut self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) {
        self.ts_us += 10;
        let mut f = Vec::with_capacity(34 + l4.len());
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = (20 + l4.len()) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let mut sum = 0u32;
        for c in ip.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        let (sec, usec) = (self.ts_us / 1_000_000, self.ts_us % 1_000_000);
        self.out.extend_from_slice(&(sec as u32).to_le_bytes());
        self.out.extend_from_slice(&(usec as u32).to_le_bytes());
        self.out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&f);
    }

    fn tcp_segment(&mut self, c: &mut Tcp, to_server: bool, flags: u8, payload: &[u8]) {
        let (s, d) = if to_server {
            (c.client, c.server)
        } else {
            (c.server, c.client)
        };
        let (me, them) = if to_server { (0, 1) } else { (1, 0) };
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&s.1.to_be_bytes());
        h[2..4].copy_from_slice(&d.1.to_be_bytes());
        h[4..8].copy_from_slice(&c.seq[me].to_be_bytes());
        h[8..12].copy_from_slice(&c.seq[them].to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let mut seg = h.to_vec();
        seg.extend_from_slice(payload);
        self.frame(s.0, d.0, 6, &seg);
        let advance = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        c.seq[me] = c.seq[me].wrapping_add(advance);
    }

    /// A new connection (three-way handshake) from `client` to `server`.
    pub fn connect(&mut self, client: (Ipv4Addr, u16), server: (Ipv4Addr, u16)) -> Tcp {
        let mut c = Tcp {
            client,
            server,
            seq: [1000, 5000],
        };
        self.tcp_segment(&mut c, true, SYN, &[]);
        self.tcp_segment(&mut c, false, SYN | ACK, &[]);
        self.tcp_segment(&mut c, true, ACK, &[]);
        c
    }

    /// Data from the client (`to_server`) or the server, in segments of at most 1400 bytes.
    pub fn send(&mut self, c: &mut Tcp, to_server: bool, data: &[u8]) {
        for chunk in data.chunks(1400) {
            self.tcp_segment(c, to_server, ACK | PSH, chunk);
        }
    }

    /// Both sides close.
    pub fn close(&mut self, c: &mut Tcp) {
        self.tcp_segment(c, true, FIN | ACK, &[]);
        self.tcp_segment(c, false, FIN | ACK, &[]);
        self.tcp_segment(c, true, ACK, &[]);
    }

    /// One UDP datagram.
    pub fn udp(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        let mut h = Vec::with_capacity(8 + payload.len());
        h.extend_from_slice(&src.1.to_be_bytes());
        h.extend_from_slice(&dst.1.to_be_bytes());
        h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(payload);
        self.frame(src.0, dst.0, 17, &h);
    }
}

/// The `n`-th client address of a test (10.99.x.y), for flows that must be distinct.
pub fn client(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a63_0000 | (n & 0xffff))
}

/// The test server's address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
