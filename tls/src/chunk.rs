//! One record of the tracer's ring buffer: a header (`struct chunk_hdr` in `bpf/tls.bpf.c`,
//! host byte order) and up to `CHUNK_CAP` bytes of plaintext.
//!
//! The record comes from our own BPF program, but a mismatch between the object and this
//! parser must still not crash the agent: every field is read with the checked readers, and a
//! record shorter than its header says is an error the tracer counts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pipeline::wire::{array, ne16, ne32, ne64};

/// Bytes of the header before the data (`sizeof(struct chunk_hdr)`).
pub const HEADER_LEN: usize = 104;
/// Largest data part of one chunk (`CHUNK_CAP`); larger calls arrive as several chunks.
pub const CHUNK_CAP: usize = 16384;
/// Most chunks one TLS call is split into (`MAX_CHUNKS`); bytes past them are counted as
/// truncated and appear as a gap in the connection's offsets.
pub const MAX_CHUNKS: usize = 16;

const FLAG_UNBOUND: u8 = 1;
const FLAG_NEW_CONN: u8 = 2;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Which way the plaintext went, from the traced process's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The process handed it to `SSL_write`: it goes to the peer.
    Write,
    /// The process got it from `SSL_read`: it came from the peer.
    Read,
}

/// One TLS connection as the tracer knows it: a process, its `SSL*`, and the generation of
/// that pointer's binding (it changes when the pointer is reused for another socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub pid: u32,
    pub ssl: u64,
    pub generation: u32,
}

/// The TCP connection a TLS connection runs over, from the traced process's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The socket's network namespace (its inode number): the same addresses in two
    /// namespaces (127.0.0.1 in two pods) are two connections.
    pub netns: u32,
}

/// One piece of plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// When the TLS call returned, `CLOCK_MONOTONIC` nanoseconds.
    pub ts_mono_ns: u64,
    pub conn: ConnId,
    pub tid: u32,
    pub direction: Direction,
    /// Offset of `data[0]` in this direction of the connection. Every byte the program moved
    /// advances it, so a jump from the previous chunk's end is lost or truncated plaintext.
    pub offset: u64,
    /// The first chunk of this connection (or of a new generation of its `SSL*`).
    pub new_connection: bool,
    /// `None` when no socket was seen for this `SSL*` yet (a connection older than the probes
    /// whose reads OpenSSL served from its buffer).
    pub endpoints: Option<Endpoints>,
    /// The process's name (its main thread's `comm`) when the call returned; empty if unset.
    pub comm: String,
    pub data: Vec<u8>,
}

/// Why a ring-buffer record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("record shorter than a chunk header")]
    ShortHeader,
    #[error("record shorter than its data length")]
    ShortData,
    #[error("data length over the chunk cap")]
    OverCap,
}

impl Chunk {
    /// Read one ring-buffer record.
    pub fn parse(rec: &[u8]) -> Result<Chunk, ChunkError> {
        let short = ChunkError::ShortHeader;
        let len = ne32(rec, 32).ok_or(short)? as usize;
        if len > CHUNK_CAP {
            return Err(ChunkError::OverCap);
        }
        let data = rec
            .get(HEADER_LEN..HEADER_LEN + len)
            .ok_or(ChunkError::ShortData)?;
        let flags = *rec.get(41).ok_or(short)?;
        let endpoints = if flags & FLAG_UNBOUND != 0 {
            None
        } else {
            let family = ne16(rec, 84).ok_or(short)?;
            let saddr: [u8; 16] = array(rec, 48).ok_or(short)?;
            let daddr: [u8; 16] = array(rec, 64).ok_or(short)?;
            let ip = |a: [u8; 16]| -> Option<IpAddr> {
                match family {
                    AF_INET => Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()),
                    AF_INET6 => Some(Ipv6Addr::from(a).into()),
                    _ => None,
                }
            };
            let sport = ne16(rec, 80).ok_or(short)?;
            let dport = ne16(rec, 82).ok_or(short)?;
            match (ip(saddr), ip(daddr)) {
                (Some(s), Some(d)) => Some(Endpoints {
                    local: SocketAddr::new(s, sport),
                    peer: SocketAddr::new(d, dport),
                    netns: ne32(rec, 44).ok_or(short)?,
                }),
                _ => None,
            }
        };
        Ok(Chunk {
            ts_mono_ns: ne64(rec, 0).ok_or(short)?,
            conn: ConnId {
                pid: ne32(rec, 24).ok_or(short)?,
                ssl: ne64(rec, 8).ok_or(short)?,
                generation: ne32(rec, 36).ok_or(short)?,
            },
            tid: ne32(rec, 28).ok_or(short)?,
            direction: if rec.get(40).ok_or(short)? & 1 == 0 {
                Direction::Write
            } else {
                Direction::Read
            },
            offset: ne64(rec, 16).ok_or(short)?,
            new_connection: flags & FLAG_NEW_CONN != 0,
            endpoints,
            comm: {
                let raw: [u8; 16] = array(rec, 88).ok_or(short)?;
                // NUL-padded: the name is what comes before the first NUL (all 16 if none).
                let name = raw.split(|b| *b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(name).into_owned()
            },
            data: data.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record laid out as `struct chunk_hdr` + data.
    fn record(dir: u8, flags: u8, family: u16, data: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; HEADER_LEN];
        r[0..8].copy_from_slice(&7u64.to_ne_bytes());
        r[8..16].copy_from_slice(&0xdead_beefu64.to_ne_bytes());
        r[16..24].copy_from_slice(&100u64.to_ne_bytes());
        r[24..28].copy_from_slice(&42u32.to_ne_bytes());
        r[28..32].copy_from_slice(&43u32.to_ne_bytes());
        r[32..36].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        r[36..40].copy_from_slice(&1u32.to_ne_bytes());
        r[40] = dir;
        r[41] = flags;
        r[44..48].copy_from_slice(&4026531840u32.to_ne_bytes());
        r[48..52].copy_from_slice(&[127, 0, 0, 1]);
        r[64..68].copy_from_slice(&[10, 0, 0, 2]);
        r[80..82].copy_from_slice(&40000u16.to_ne_bytes());
        r[82..84].copy_from_slice(&443u16.to_ne_bytes());
        r[84..86].copy_from_slice(&family.to_ne_bytes());
        r[88..92].copy_from_slice(b"curl");
        r.extend_from_slice(data);
        r
    }

    #[test]
    fn a_bound_ipv4_write() {
        let c = Chunk::parse(&record(0, FLAG_NEW_CONN, AF_INET, b"GET / HTTP/1.1\r\n")).unwrap();
        assert_eq!(c.direction, Direction::Write);
        assert_eq!(
            c.conn,
            ConnId {
                pid: 42,
                ssl: 0xdead_beef,
                generation: 1
            }
        );
        assert_eq!((c.tid, c.offset, c.ts_mono_ns), (43, 100, 7));
        assert!(c.new_connection);
        let e = c.endpoints.unwrap();
        assert_eq!(e.local.to_string(), "127.0.0.1:40000");
        assert_eq!(e.peer.to_string(), "10.0.0.2:443");
        assert_eq!(e.netns, 4026531840);
        assert_eq!(c.comm, "curl");
        assert_eq!(c.data, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn a_name_of_all_sixteen_bytes_has_no_nul() {
        let mut r = record(0, 0, AF_INET, b"");
        r[88..104].copy_from_slice(b"sixteen-bytes-ok");
        assert_eq!(Chunk::parse(&r).unwrap().comm, "sixteen-bytes-ok");
        r[88..104].copy_from_slice(&[0; 16]);
        assert_eq!(Chunk::parse(&r).unwrap().comm, "");
    }

    #[test]
    fn an_unbound_read_has_no_endpoints() {
        let c = Chunk::parse(&record(1, FLAG_UNBOUND, 0, b"x")).unwrap();
        assert_eq!(c.direction, Direction::Read);
        assert_eq!(c.endpoints, None);
    }

    #[test]
    fn broken_records_are_errors() {
        assert_eq!(Chunk::parse(&[0; 10]), Err(ChunkError::ShortHeader));
        let mut r = record(0, 0, AF_INET, b"abcd");
        r.truncate(HEADER_LEN + 2);
        assert_eq!(Chunk::parse(&r), Err(ChunkError::ShortData));
        let mut r = record(0, 0, AF_INET, b"");
        r[32..36].copy_from_slice(&(CHUNK_CAP as u32 + 1).to_ne_bytes());
        assert_eq!(Chunk::parse(&r), Err(ChunkError::OverCap));
    }
}
