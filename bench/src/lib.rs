//! Synthetic but realistic captures for whole-process benchmarks.
//!
//! Many concurrent keep-alive HTTP/1.1 connections (full TCP handshakes and closes, varied
//! client addresses and ports, request templates from a typical REST service with headers,
//! `traceparent`, JSON bodies; responses 200/201/204/304/404/500 with Content-Length or chunked
//! bodies that span several segments) interleaved with DNS lookups over UDP (A and AAAA,
//! some NXDOMAIN). Everything is deterministic for a given seed.
//!
//! The other capture, [`generate_mix`], is the eight-protocol mix of short connections
//! (`mix.rs`).

use std::io::Write;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

mod mix;
pub use mix::{MixConfig, MixProtocol, MixSummary, WEIGHTS, generate_mix};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub http_exchanges: u64,
    /// One DNS lookup (query + response) per this many HTTP exchanges.
    pub dns_every: u64,
    /// Connections open at once.
    pub concurrency: usize,
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub packets: u64,
    pub bytes: u64,
    pub http_exchanges: u64,
    pub dns_lookups: u64,
    pub connections: u64,
}

const MSS: usize = 1448;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Conn {
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    cseq: u32,
    sseq: u32,
    left: u32,
}

struct Gen<W: Write> {
    w: PcapWriter<W>,
    rng: Rng,
    ts: u64,
    frame: Vec<u8>,
    sum: GenSummary,
}

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

impl<W: Write> Gen<W> {
    /// A pcap writer (Ethernet, microsecond timestamps) at a fixed start time.
    fn new(w: W, seed: u64) -> std::io::Result<Self> {
        Ok(Gen {
            w: PcapWriter::new(w).map_err(std::io::Error::other)?,
            rng: Rng(seed | 1),
            ts: 1_764_237_600_000_000_000,
            frame: Vec::with_capacity(2048),
            sum: GenSummary::default(),
        })
    }

    fn write(&mut self) -> std::io::Result<()> {
        self.ts += 3_000 + self.rng.below(20_000);
        let p = PcapPacket::new(
            Duration::from_nanos(self.ts),
            self.frame.len() as u32,
            &self.frame,
        );
        self.w.write_packet(&p).map_err(std::io::Error::other)?;
        self.sum.packets += 1;
        self.sum.bytes += self.frame.len() as u64;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        from_client: bool,
        c: &Conn,
        seq: u32,
        ack: u32,
        flags: &str,
        payload: &[u8],
    ) -> std::io::Result<()> {
        let (src, dst, smac, dmac) = if from_client {
            (c.client, c.server, CLIENT_MAC, SERVER_MAC)
        } else {
            (c.server, c.client, SERVER_MAC, CLIENT_MAC)
        };
        let mut b = PacketBuilder::ethernet2(smac, dmac)
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 65535);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'F' => b.fin(),
                'A' => b.ack(ack),
                'P' => b.psh(),
                _ => b,
            };
        }
        self.frame.clear();
        b.write(&mut self.frame, payload)
            .map_err(std::io::Error::other)?;
        self.write()
    }

    /// Send `data` in MSS-sized segments, each acknowledged by the peer.
    fn stream(&mut self, from_client: bool, c: &mut Conn, data: &[u8]) -> std::io::Result<()> {
        for seg in data.chunks(MSS) {
            let (seq, ack) = if from_client {
                (c.cseq, c.sseq)
            } else {
                (c.sseq, c.cseq)
            };
            self.tcp(from_client, c, seq, ack, "AP", seg)?;
            if from_client {
                c.cseq = c.cseq.wrapping_add(seg.len() as u32);
            } else {
                c.sseq = c.sseq.wrapping_add(seg.len() as u32);
            }
        }
        let (seq, ack) = if from_client {
            (c.sseq, c.cseq)
        } else {
            (c.cseq, c.sseq)
        };
        self.tcp(!from_client, c, seq, ack, "A", &[])
    }

    /// Open a connection (the handshake) to `port`, or to one of the HTTP ports.
    fn open(&mut self, n: u64, port: Option<u16>) -> std::io::Result<Conn> {
        let mut c = self.conn(n, port);
        self.handshake(&mut c)?;
        Ok(c)
    }

    /// A new connection's endpoints and sequence numbers (no packets yet).
    fn conn(&mut self, n: u64, port: Option<u16>) -> Conn {
        let r = self.rng.next();
        Conn {
            client: (
                [
                    10,
                    1 + (r % 200) as u8,
                    (r >> 8) as u8,
                    1 + (r >> 16) as u8 % 250,
                ],
                32768 + (r >> 24) as u16 % 28000,
            ),
            server: (
                [10, 96, (n % 16) as u8, 10 + (r >> 40) as u8 % 20],
                port.unwrap_or([80, 8080, 8000, 3000][(r >> 48) as usize % 4]),
            ),
            cseq: (r >> 7) as u32,
            sseq: (r >> 29) as u32,
            left: 1 + self.rng.below(40) as u32,
        }
    }

    /// The three-way handshake.
    fn handshake(&mut self, c: &mut Conn) -> std::io::Result<()> {
        let (cs, ss) = (c.cseq, c.sseq);
        self.tcp(true, c, cs, 0, "S", &[])?;
        self.tcp(false, c, ss, cs.wrapping_add(1), "SA", &[])?;
        c.cseq = cs.wrapping_add(1);
        c.sseq = ss.wrapping_add(1);
        self.tcp(true, c, c.cseq, c.sseq, "A", &[])?;
        self.sum.connections += 1;
        Ok(())
    }

    fn close(&mut self, c: &Conn) -> std::io::Result<()> {
        self.tcp(true, c, c.cseq, c.sseq, "FA", &[])?;
        self.tcp(false, c, c.sseq, c.cseq.wrapping_add(1), "FA", &[])?;
        self.tcp(
            true,
            c,
            c.cseq.wrapping_add(1),
            c.sseq.wrapping_add(1),
            "A",
            &[],
        )
    }

    fn exchange(
        &mut self,
        c: &mut Conn,
        req: &mut Vec<u8>,
        resp: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        self.http_messages(req, resp)?;
        self.stream(true, c, req)?;
        self.stream(false, c, resp)?;
        self.sum.http_exchanges += 1;
        Ok(())
    }

    /// One HTTP/1.1 request and its response.
    fn http_messages(&mut self, req: &mut Vec<u8>, resp: &mut Vec<u8>) -> std::io::Result<()> {
        let r = self.rng.next();
        let id = r % 100_000;
        req.clear();
        resp.clear();
        let (method, path, body_len) = match r % 10 {
            0..=4 => ("GET", format!("/api/v1/users/{id}"), 0),
            5 => (
                "GET",
                format!("/api/v1/orders/{id}/items?limit=20&page={}", r % 7),
                0,
            ),
            6 => (
                "POST",
                "/api/v1/orders".to_string(),
                120 + (r >> 20) as usize % 600,
            ),
            7 => (
                "PUT",
                format!("/api/v1/users/{id}/profile"),
                200 + (r >> 20) as usize % 300,
            ),
            8 => ("GET", "/healthz".to_string(), 0),
            _ => ("DELETE", format!("/api/v1/sessions/{:08x}", r as u32), 0),
        };
        write!(
            req,
            "{method} {path} HTTP/1.1\r\nHost: api.shop.svc.cluster.local\r\nUser-Agent: okhttp/4.12.0\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n"
        )?;
        if r.is_multiple_of(3) {
            write!(
                req,
                "traceparent: 00-{:016x}{:016x}-{:016x}-01\r\n",
                self.rng.next(),
                self.rng.next(),
                self.rng.next()
            )?;
        }
        if body_len > 0 {
            write!(
                req,
                "Content-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
            )?;
            req.extend(std::iter::repeat_n(b'x', body_len));
        } else {
            req.extend_from_slice(b"\r\n");
        }
        let (code, reason) = match (r >> 32) % 20 {
            0 => (404, "Not Found"),
            1 => (500, "Internal Server Error"),
            2 if method == "DELETE" => (204, "No Content"),
            3 if method == "POST" => (201, "Created"),
            _ => (200, "OK"),
        };
        write!(
            resp,
            "HTTP/1.1 {code} {reason}\r\nServer: nginx/1.22.1\r\nDate: Thu, 27 Nov 2026 10:00:00 GMT\r\nContent-Type: application/json\r\n"
        )?;
        let len = if code == 204 {
            0
        } else if (r >> 40).is_multiple_of(25) {
            3_000 + (r >> 45) as usize % 9_000
        } else {
            80 + (r >> 45) as usize % 700
        };
        if code != 204 && (r >> 50).is_multiple_of(5) {
            resp.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let mut left = len;
            while left > 0 {
                let n = left.min(1000);
                write!(resp, "{n:x}\r\n")?;
                resp.extend(std::iter::repeat_n(b'{', n));
                resp.extend_from_slice(b"\r\n");
                left -= n;
            }
            resp.extend_from_slice(b"0\r\n\r\n");
        } else {
            write!(resp, "Content-Length: {len}\r\n\r\n")?;
            resp.extend(std::iter::repeat_n(b'{', len));
        }
        Ok(())
    }

    fn dns(&mut self, n: u64) -> std::io::Result<()> {
        let r = self.rng.next();
        let client = [
            10,
            1 + (r % 200) as u8,
            (r >> 8) as u8,
            1 + (r >> 16) as u8 % 250,
        ];
        let server = [10, 96, 0, 10];
        let port = 32768 + (r >> 24) as u16 % 28000;
        let id = (r >> 40) as u16;
        let aaaa = r.is_multiple_of(2);
        let nx = r.is_multiple_of(17);
        let name = format!("svc-{}.shop.svc.cluster.local", n % 500);
        let mut q = Vec::with_capacity(80);
        q.extend(id.to_be_bytes());
        q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.push(0);
        q.extend([0, if aaaa { 28 } else { 1 }, 0, 1]);
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = if nx { 0x83 } else { 0x80 };
        if !nx {
            a[7] = 1;
            a.extend([0xc0, 12, 0, if aaaa { 28 } else { 1 }, 0, 1, 0, 0, 0, 30]);
            if aaaa {
                a.extend([
                    0,
                    16,
                    0xfd,
                    0,
                    0,
                    0x96,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (n >> 8) as u8,
                    n as u8,
                ]);
            } else {
                a.extend([0, 4, 10, 96, (n >> 8) as u8, n as u8]);
            }
        }
        for (from, to, sp, dp, payload, smac, dmac) in [
            (client, server, port, 53, &q, CLIENT_MAC, SERVER_MAC),
            (server, client, 53, port, &a, SERVER_MAC, CLIENT_MAC),
        ] {
            self.frame.clear();
            PacketBuilder::ethernet2(smac, dmac)
                .ipv4(from, to, 64)
                .udp(sp, dp)
                .write(&mut self.frame, payload)
                .map_err(std::io::Error::other)?;
            self.write()?;
        }
        self.sum.dns_lookups += 1;
        Ok(())
    }
}

/// Write `flows` HTTP/1 connections that stay open: each has its handshake, a request, and the
/// response's headers with the first 1000 bytes of a 100 kB body (the rest never comes). For
/// measuring what an open flow costs (`tapwire dissect`'s peak RSS over the flow count).
pub fn generate_open<W: Write>(w: W, flows: u64, seed: u64) -> std::io::Result<GenSummary> {
    let mut g = Gen::new(w, seed)?;
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    for n in 0..flows {
        let mut c = g.conn(n, Some(80));
        c.client = distinct_client(n);
        g.handshake(&mut c)?;
        g.http_messages(&mut req, &mut resp)?;
        g.stream(true, &mut c, &req)?;
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
        let mut part = head.to_vec();
        part.extend(std::iter::repeat_n(b'{', 1000));
        g.stream(false, &mut c, &part)?;
        g.sum.http_exchanges += 1;
    }
    let mut w = g.w.into_writer();
    w.flush()?;
    Ok(g.sum)
}

/// Client `n` of a capture whose every connection has a client of its own (the generator's
/// random addresses could repeat a 4-tuple): distinct for `n` below 50 × 2^24.
fn distinct_client(n: u64) -> ([u8; 4], u16) {
    (
        [
            10,
            200 + (n >> 24) as u8 % 50,
            (n >> 16) as u8,
            (n >> 8) as u8,
        ],
        1024 + (n % 256) as u16 * 200,
    )
}

/// `syns` SYNs from distinct clients to one HTTP server, none answered: a SYN flood, every
/// packet a new flow, for what the flow table holds under one (its caps keep it flat).
pub fn generate_syn_flood<W: Write>(w: W, syns: u64, seed: u64) -> std::io::Result<GenSummary> {
    let mut g = Gen::new(w, seed)?;
    for n in 0..syns {
        let mut c = g.conn(n, Some(80));
        c.client = distinct_client(n);
        let seq = c.cseq;
        g.tcp(true, &c, seq, 0, "S", &[])?;
        g.sum.connections += 1;
    }
    let mut w = g.w.into_writer();
    w.flush()?;
    Ok(g.sum)
}

/// Write a pcap (Ethernet, microsecond timestamps) following `cfg` to `w`.
pub fn generate<W: Write>(w: W, cfg: &GenConfig) -> std::io::Result<GenSummary> {
    let mut g = Gen::new(w, cfg.seed)?;
    let mut conns: Vec<Conn> = Vec::new();
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    while n < cfg.http_exchanges {
        if conns.len() < cfg.concurrency.max(1) {
            let c = g.open(g.sum.connections, None)?;
            conns.push(c);
            continue;
        }
        let i = g.rng.below(conns.len() as u64) as usize;
        g.exchange(&mut conns[i], &mut req, &mut resp)?;
        n += 1;
        if cfg.dns_every > 0 && n.is_multiple_of(cfg.dns_every) {
            g.dns(n)?;
        }
        conns[i].left -= 1;
        if conns[i].left == 0 {
            let c = conns.swap_remove(i);
            g.close(&c)?;
        }
    }
    for c in conns {
        g.close(&c)?;
    }
    let mut w = g.w.into_writer();
    w.flush()?;
    Ok(g.sum)
}
