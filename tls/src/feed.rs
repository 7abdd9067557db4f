//! From the tracer's chunks to the pipeline's plaintext streams ([`pipeline::Pipeline::stream`]).
//!
//! For each chunk: the TLS connection (`ConnId`: process, `SSL*`, generation) gets a stream id
//! and its owner (`process.pid`, `process.executable.name`: the `comm` the BPF program read
//! when the call returned, so a process that has exited since is still named); the timestamp moves from the monotonic clock to wall time; the chunk goes
//! to the pipeline as a stream chunk with its direction and offset.
//!
//! **Both ends on one node.** A client and a server traced on the same node hand over the same
//! plaintext twice (once written, once read). Each TCP connection (its two endpoints, in either
//! order) is owned by the first traced connection that sends a chunk for it, and the other's
//! chunks are dropped and counted (`duplicate_*`). Under TLS the client speaks first in the
//! protocols tapwire dissects (the handshake is done before any plaintext, and the first
//! plaintext is the client's request), so the owner is the client side, as ARCHITECTURE.md
//! says events report.
//!
//! **Unbound chunks** (no socket seen for their `SSL*`: a connection older than the probes
//! whose reads OpenSSL served from its buffer) cannot be joined to a TCP connection: dropped
//! and counted.
//!
//! Caps: `MAX_STREAMS` connections tracked; when full the least recently seen eighth is
//! forgotten (counted in `forgotten`); a forgotten connection that speaks again becomes a new
//! stream, its first exchange possibly cut (as a flow picked up mid-stream is).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU64;

use pipeline::{Pipeline, StreamChunk, StreamOrigin};
use schemas::Exchange;

use crate::chunk::{Chunk, ConnId, Direction};

/// TLS connections tracked at once.
pub const MAX_STREAMS: usize = 65536;

/// How often the monotonic-to-wall offset is read again (the wall clock can be stepped).
const CLOCK_REFRESH_NS: u64 = 1_000_000_000;

/// Counters of the feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Chunks and bytes handed to the pipeline.
    pub chunks: u64,
    pub bytes: u64,
    /// Chunks of a TCP connection another traced process owns (both ends on this node).
    pub duplicate_chunks: u64,
    pub duplicate_bytes: u64,
    /// Chunks without a known socket, dropped.
    pub unbound_chunks: u64,
    /// Connections forgotten because `MAX_STREAMS` was reached.
    pub forgotten: u64,
}

/// A TCP connection: its network namespace and its endpoints in a fixed order, so both ends'
/// views meet.
type TcpKey = (u32, SocketAddr, SocketAddr);

struct Stream {
    id: NonZeroU64,
    tcp: TcpKey,
    origin: StreamOrigin,
    last_seen: u64,
}

/// Monotonic-to-wall clock conversion.
struct Clock {
    offset: i128,
    read_at_mono: u64,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it. (std exposes
    // neither clock's raw value, and the two must be read together.)
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(id, &mut ts)
    };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    fn new() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        Clock {
            offset: clock_ns(libc::CLOCK_REALTIME) - mono,
            read_at_mono: u64::try_from(mono).unwrap_or(0),
        }
    }

    fn wall(&mut self, mono: u64) -> u64 {
        if mono.saturating_sub(self.read_at_mono) > CLOCK_REFRESH_NS {
            *self = Clock::new();
        }
        u64::try_from(i128::from(mono) + self.offset).unwrap_or(0)
    }
}

/// Turns chunks into pipeline stream chunks (see the module doc).
pub struct Feed {
    clock: Clock,
    streams: HashMap<ConnId, Stream>,
    owners: HashMap<TcpKey, ConnId>,
    next_id: u64,
    pub stats: FeedStats,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    pub fn new() -> Feed {
        Feed {
            clock: Clock::new(),
            streams: HashMap::new(),
            owners: HashMap::new(),
            next_id: 0,
            stats: FeedStats::default(),
        }
    }

    /// TLS connections tracked now.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Hand one chunk to `pipe`; finished exchanges are appended to `out`.
    pub fn push(&mut self, c: &Chunk, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        let Some(ep) = c.endpoints else {
            self.stats.unbound_chunks += 1;
            return;
        };
        let tcp = if ep.local <= ep.peer {
            (ep.netns, ep.local, ep.peer)
        } else {
            (ep.netns, ep.peer, ep.local)
        };
        let ts = self.clock.wall(c.ts_mono_ns);
        if !self.streams.contains_key(&c.conn) {
            if self.streams.len() >= MAX_STREAMS {
                self.forget_oldest();
            }
            self.next_id += 1;
            let id = NonZeroU64::new(self.next_id).unwrap_or(NonZeroU64::MIN);
            let origin = StreamOrigin {
                pid: c.conn.pid,
                executable: (!c.comm.is_empty()).then(|| c.comm.clone()),
            };
            self.streams.insert(
                c.conn,
                Stream {
                    id,
                    tcp,
                    origin,
                    last_seen: ts,
                },
            );
        }
        let owner = *self.owners.entry(tcp).or_insert(c.conn);
        if owner != c.conn {
            self.stats.duplicate_chunks += 1;
            self.stats.duplicate_bytes += c.data.len() as u64;
            return;
        }
        let Some(st) = self.streams.get_mut(&c.conn) else {
            return;
        };
        st.last_seen = ts;
        self.stats.chunks += 1;
        self.stats.bytes += c.data.len() as u64;
        let chunk = StreamChunk {
            ts,
            local: (ep.local.ip(), ep.local.port()),
            peer: (ep.peer.ip(), ep.peer.port()),
            stream: st.id,
            sent: c.direction == Direction::Write,
            offset: c.offset,
            data: &c.data,
            origin: &st.origin,
        };
        pipe.stream(&chunk, out);
    }

    /// Forget the least recently seen eighth of the connections.
    fn forget_oldest(&mut self) {
        let mut ages: Vec<(u64, ConnId)> = self
            .streams
            .iter()
            .map(|(k, s)| (s.last_seen, *k))
            .collect();
        let n = (ages.len() / 8).max(1);
        ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, k) in ages.into_iter().take(n) {
            if let Some(s) = self.streams.remove(&k)
                && self.owners.get(&s.tcp) == Some(&k)
            {
                self.owners.remove(&s.tcp);
            }
            self.stats.forgotten += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Endpoints;

    fn chunk(pid: u32, local: &str, peer: &str, dir: Direction, offset: u64, data: &[u8]) -> Chunk {
        Chunk {
            ts_mono_ns: 1_000 + offset,
            conn: ConnId {
                pid,
                ssl: 0x1000 + u64::from(pid),
                generation: 0,
            },
            tid: pid,
            direction: dir,
            offset,
            new_connection: offset == 0,
            endpoints: Some(Endpoints {
                local: local.parse().unwrap(),
                peer: peer.parse().unwrap(),
                netns: 1,
            }),
            comm: if pid == 10 {
                "curl".into()
            } else {
                String::new()
            },
            data: data.to_vec(),
        }
    }

    #[test]
    fn both_ends_traced_yield_each_exchange_once_from_the_first_speaker() {
        let mut feed = Feed::new();
        let mut pipe = Pipeline::default();
        let mut out = Vec::new();
        let (c, s) = ("10.0.0.1:40000", "10.0.0.2:443");
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let resp = b"HTTP/1.1 204 No Content\r\n\r\n";
        // The client writes, the server reads and answers, the client reads.
        feed.push(
            &chunk(10, c, s, Direction::Write, 0, req),
            &mut pipe,
            &mut out,
        );
        feed.push(
            &chunk(20, s, c, Direction::Read, 0, req),
            &mut pipe,
            &mut out,
        );
        feed.push(
            &chunk(20, s, c, Direction::Write, 0, resp),
            &mut pipe,
            &mut out,
        );
        feed.push(
            &chunk(10, c, s, Direction::Read, 0, resp),
            &mut pipe,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].process.as_ref().map(|p| p.pid), Some(10));
        assert_eq!(out[0].client.port, 40000);
        let exe = out[0].process.as_ref().and_then(|p| p.executable.as_ref());
        assert_eq!(exe.map(|e| e.name.as_str()), Some("curl"));
        assert_eq!(feed.stats.duplicate_chunks, 2);
        assert_eq!(feed.stats.chunks, 2);
        // Wall time, not the monotonic clock.
        assert!(out[0].start_time_unix_nano > 1_600_000_000_000_000_000);
    }

    #[test]
    fn the_same_addresses_in_two_namespaces_are_two_connections() {
        let mut feed = Feed::new();
        let mut pipe = Pipeline::default();
        let mut out = Vec::new();
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for (pid, netns) in [(10, 1), (20, 2)] {
            let mut c = chunk(
                pid,
                "127.0.0.1:40000",
                "127.0.0.1:8080",
                Direction::Write,
                0,
                req,
            );
            if let Some(e) = c.endpoints.as_mut() {
                e.netns = netns;
            }
            feed.push(&c, &mut pipe, &mut out);
        }
        assert_eq!(feed.stats.chunks, 2);
        assert_eq!(feed.stats.duplicate_chunks, 0);
    }

    #[test]
    fn unbound_chunks_are_counted_and_the_table_is_capped() {
        let mut feed = Feed::new();
        let mut pipe = Pipeline::default();
        let mut out = Vec::new();
        let mut c = chunk(1, "10.0.0.1:1", "10.0.0.2:443", Direction::Write, 0, b"x");
        c.endpoints = None;
        feed.push(&c, &mut pipe, &mut out);
        assert_eq!(feed.stats.unbound_chunks, 1);
        for i in 0..(MAX_STREAMS as u32 + 10) {
            let mut c = chunk(i, "10.0.0.1:1", "10.0.0.2:443", Direction::Write, 0, b"");
            let port = 1024 + (i % 60000) as u16;
            let host = i / 60000;
            c.endpoints = Some(Endpoints {
                local: format!("10.1.{host}.1:{port}").parse().unwrap(),
                peer: "10.0.0.2:443".parse().unwrap(),
                netns: 1,
            });
            feed.push(&c, &mut pipe, &mut out);
            assert!(feed.streams() <= MAX_STREAMS);
        }
        assert!(feed.stats.forgotten >= 10, "{:?}", feed.stats);
        assert!(feed.owners.len() <= MAX_STREAMS);
    }
}
