//! From the tracer's chunks to the pipeline's plaintext streams ([`pipeline::Pipeline::stream`]).
//!
//! For each chunk: the TLS connection (`ConnId`: process, `SSL*`, generation) gets a stream id
//! and its owner (`process.pid`, `process.executable.name`: the `comm` the BPF program read
//! when the call returned, so a process that has exited since is still named); the timestamp moves from the monotonic clock to wall time; the chunk goes
//! to the pipeline as a stream chunk with its direction and offset.
//!
//! **Both ends on one node.** A client and a server traced on the same node hand over the same
//! plaintext twice (once written, once read). Each TCP connection (its two endpoints in either
//! order, and for loopback addresses its network namespace) has one owner, whose chunks are dissected; the other end's
//! are dropped and counted (`duplicate_*`). The owner is the client's end, told by the port:
//! the end whose own port is the higher (the client's ephemeral port, against the server's
//! listening port). Arrival order cannot decide it: the server's read of a request can reach
//! the ring buffer before the client's write of it returns, and its answer too. So a server
//! end's chunks are held for `HOLD_NS` (100 ms of the chunks' own clock, at most
//! `MAX_HELD_BYTES` in all) before they are dissected: if the client end shows up meanwhile it
//! owns the connection and the held chunks are duplicates; if not, the server end owns it
//! (only it is traced) and its chunks go on, late by the hold. A client end that shows up
//! later still (its process traced later) takes over: the server end's stream is forgotten
//! unemitted (`handovers`). So does any end when the owner has been silent for `STALE_NS`
//! (its connection closed and the addresses were reused). Two ends with ports the other way
//! round (a server on a high port) only swap which process the events name; each exchange is
//! still reported once.
//!
//! **Unbound chunks** (no socket seen for their `SSL*`: a connection older than the probes
//! whose reads OpenSSL served from its buffer) cannot be joined to a TCP connection: dropped
//! and counted.
//!
//! Caps: `MAX_STREAMS` connections tracked; when full the least recently seen eighth is
//! forgotten (counted in `forgotten`); a forgotten connection that speaks again becomes a new
//! stream, its first exchange possibly cut (as a flow picked up mid-stream is).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::NonZeroU64;

use pipeline::{Pipeline, StreamChunk, StreamOrigin};
use schemas::Exchange;

use crate::chunk::{Chunk, ConnId, Direction, Endpoints};

/// TLS connections tracked at once.
pub const MAX_STREAMS: usize = 65536;

/// How long a server end's chunks wait for their client end (see the module doc).
pub const HOLD_NS: u64 = 100_000_000;

/// An owner silent this long gives its connection up to the other end (the addresses were
/// reused by a new connection after the old one closed; nothing reports a close).
pub const STALE_NS: u64 = 30_000_000_000;

/// Most bytes held at once (chunks with their records, so many tiny chunks count too); past
/// it the oldest are decided early.
pub const MAX_HELD_BYTES: usize = 8 << 20;

/// How often the monotonic-to-wall offset is read again (the wall clock can be stepped).
const CLOCK_REFRESH_NS: u64 = 1_000_000_000;

/// Most connections remembered as open before the probes ([`Feed::opened_before`]).
pub const MAX_OPENED_BEFORE: usize = 65536;

/// How long such a connection is remembered when the table is full: one silent longer is
/// forgotten to make room (counted as picked up at its start if it speaks later).
pub const OPENED_BEFORE_TTL_NS: u64 = 600_000_000_000;

/// What a held chunk costs: its record, its data and its process name.
fn held_size(c: &Chunk) -> usize {
    std::mem::size_of::<Chunk>() + c.data.capacity() + c.comm.capacity()
}

/// What [`Feed::set_tap`] installs.
type Tap = Box<dyn FnMut(&StreamChunk<'_>)>;

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
    /// Connections whose server end was dissected until their client end showed up.
    pub handovers: u64,
    /// Server ends' chunks held to wait for their client end, and those decided before their
    /// time because `MAX_HELD_BYTES` was reached.
    pub held_chunks: u64,
    pub held_early: u64,
    /// Connections forgotten because `MAX_STREAMS` was reached.
    pub forgotten: u64,
    /// TCP connections whose plaintext was fed (once per connection, whichever ends are
    /// traced), and those among them open before the probes attached to their process
    /// ([`Feed::opened_before`]): picked up mid-stream.
    pub connections: u64,
    pub midstream: u64,
    /// Connections [`Feed::opened_before`] could not remember (`MAX_OPENED_BEFORE`).
    pub opened_before_over_cap: u64,
}

/// A TCP connection: its network namespace (loopback connections only) and its endpoints in
/// a fixed order, so both ends' views meet.
type TcpKey = (u32, SocketAddr, SocketAddr);

/// Which end of a TCP connection is dissected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    conn: ConnId,
    /// False while a server end's chunks are held, waiting for its client end.
    decided: bool,
}

impl Owner {
    fn decided(conn: ConnId) -> Owner {
        Owner {
            conn,
            decided: true,
        }
    }

    fn pending(conn: ConnId) -> Owner {
        Owner {
            conn,
            decided: false,
        }
    }
}

struct Stream {
    id: NonZeroU64,
    /// The TCP connection it belongs to: its own endpoints' key, or the key of the other end
    /// it was matched with across a DNAT (see [`Feed::canonical`]).
    tcp: TcpKey,
    /// Its own endpoints' key, when that differs from `tcp`.
    alias: Option<TcpKey>,
    /// The client's endpoint of its connection (with the namespace, as in [`TcpKey`]).
    client: (u32, SocketAddr),
    /// Its own end and its peer (as `Pipeline::stream` was given them).
    local: SocketAddr,
    peer: SocketAddr,
    origin: StreamOrigin,
    last_seen: u64,
}

/// Monotonic-to-wall clock conversion.
struct Clock {
    offset: i128,
    read_at_mono: u64,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock chunks are stamped with).
pub fn monotonic_ns() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
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
    owners: HashMap<TcpKey, Owner>,
    /// Each client endpoint's connection, and whether a client end registered it: how a
    /// server end finds its client end across a Service's DNAT.
    by_client: HashMap<(u32, SocketAddr), (TcpKey, bool)>,
    /// An end's own key → the key of the connection it was matched with.
    aliases: HashMap<TcpKey, TcpKey>,
    /// Server ends' chunks waiting for their client end, oldest first.
    held: VecDeque<Chunk>,
    held_bytes: usize,
    next_id: u64,
    /// Connections open when the probes attached to their process (each end's view, as in
    /// [`Endpoints`]), with when they were noted (monotonic).
    opened_before: HashMap<(u32, SocketAddr, SocketAddr), u64>,
    pub stats: FeedStats,
    /// Sees every chunk handed to the pipeline (the agent spools them).
    tap: Option<Tap>,
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
            by_client: HashMap::new(),
            aliases: HashMap::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            next_id: 0,
            opened_before: HashMap::new(),
            stats: FeedStats::default(),
            tap: None,
        }
    }

    /// Call `tap` with every chunk handed to the pipeline: the owner's copy of each
    /// connection, in the order dissected.
    pub fn set_tap(&mut self, tap: impl FnMut(&StreamChunk<'_>) + 'static) {
        self.tap = Some(Box::new(tap));
    }

    /// Note a TCP connection that was open when the probes attached to its process
    /// ([`crate::sockets::established`]): when its plaintext arrives it counts as picked up
    /// mid-stream. `now` is monotonic nanoseconds.
    pub fn opened_before(&mut self, e: Endpoints, now: u64) {
        if self.opened_before.len() >= MAX_OPENED_BEFORE {
            self.opened_before
                .retain(|_, at| now.saturating_sub(*at) < OPENED_BEFORE_TTL_NS);
        }
        if self.opened_before.len() >= MAX_OPENED_BEFORE {
            self.stats.opened_before_over_cap += 1;
            return;
        }
        self.opened_before.insert((e.netns, e.local, e.peer), now);
    }

    /// A TCP connection's plaintext arrives for the first time: counted, and as picked up
    /// mid-stream when it was open before the probes (either end's view).
    fn first_seen(&mut self, ep: &Endpoints) {
        self.stats.connections += 1;
        let mine = self.opened_before.remove(&(ep.netns, ep.local, ep.peer));
        let theirs = self.opened_before.remove(&(ep.netns, ep.peer, ep.local));
        if mine.is_some() || theirs.is_some() {
            self.stats.midstream += 1;
        }
    }

    /// TLS connections tracked now.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Hand one chunk to `pipe`; finished exchanges are appended to `out`.
    pub fn push(&mut self, c: Chunk, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        let Some(ep) = c.endpoints else {
            self.stats.unbound_chunks += 1;
            return;
        };
        // Loopback addresses name a connection only within its network namespace; others
        // name it across namespaces (a pod's address is the same seen from either end).
        let netns = if ep.local.ip().is_loopback() || ep.peer.ip().is_loopback() {
            ep.netns
        } else {
            0
        };
        let own = if ep.local <= ep.peer {
            (netns, ep.local, ep.peer)
        } else {
            (netns, ep.peer, ep.local)
        };
        let client_end = ep.local.port() > ep.peer.port();
        let client = (netns, if client_end { ep.local } else { ep.peer });
        let ts = self.clock.wall(c.ts_mono_ns);
        // A stream keeps the connection it was matched with while its endpoints stay; new
        // endpoints under the same identity (an `SSL*` and a socket both reused at the same
        // addresses by a new connection) are matched again.
        let known = self
            .streams
            .get(&c.conn)
            .map(|st| (st.tcp, st.alias.unwrap_or(st.tcp)));
        let tcp = match known {
            Some((tcp, key)) if key == own => tcp,
            _ => self.canonical(own, client, client_end),
        };
        if let Some(st) = self.streams.get_mut(&c.conn)
            && known.is_some_and(|(_, key)| key != own)
        {
            st.tcp = tcp;
            st.alias = (tcp != own).then_some(own);
            st.client = client;
            st.local = ep.local;
            st.peer = ep.peer;
        }
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
                    alias: (tcp != own).then_some(own),
                    client,
                    local: ep.local,
                    peer: ep.peer,
                    origin,
                    last_seen: ts,
                },
            );
        }
        match self.owners.get(&tcp).copied() {
            None if client_end => {
                self.first_seen(&ep);
                self.owners.insert(tcp, Owner::decided(c.conn));
            }
            None => {
                self.first_seen(&ep);
                self.owners.insert(tcp, Owner::pending(c.conn));
                self.hold(c, pipe, out);
                return;
            }
            Some(o) if o.conn == c.conn => {
                if !o.decided {
                    // Its earlier chunks are held: keep the order.
                    self.hold(c, pipe, out);
                    return;
                }
            }
            // This end takes the connection over: it is the client end of a connection whose
            // server end came first, or the owner went quiet long ago (its connection most
            // likely closed and the addresses belong to a new one whose other end is not
            // traced).
            Some(o) if client_end || self.stale(&o.conn, ts) => {
                self.owners.insert(tcp, Owner::decided(c.conn));
                if o.decided {
                    // The old owner was dissected (a server end had waited its hold out):
                    // forget its stream, unemitted; this one goes on from its first chunk.
                    // (An undecided one's held chunks become duplicates when they settle.)
                    if let Some(old) = self.streams.get(&o.conn) {
                        let at = |a: SocketAddr| (a.ip(), a.port());
                        pipe.forget_stream(at(old.local), at(old.peer), old.id);
                    }
                    self.stats.handovers += 1;
                }
            }
            Some(_) => {
                self.duplicate(&c);
                return;
            }
        }
        self.feed(&c, ep, ts, pipe, out);
    }

    /// Hand a chunk whose connection this end owns to the pipeline; `ts` is its wall time.
    fn feed(
        &mut self,
        c: &Chunk,
        ep: Endpoints,
        ts: u64,
        pipe: &mut Pipeline,
        out: &mut Vec<Exchange>,
    ) {
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
        if let Some(tap) = self.tap.as_mut() {
            tap(&chunk);
        }
        pipe.stream(&chunk, out);
    }

    /// Whether `conn` has sent nothing for [`STALE_NS`] before `ts` (wall clock).
    fn stale(&self, conn: &ConnId, ts: u64) -> bool {
        self.streams
            .get(conn)
            .is_none_or(|st| st.last_seen.saturating_add(STALE_NS) < ts)
    }

    fn duplicate(&mut self, c: &Chunk) {
        self.stats.duplicate_chunks += 1;
        self.stats.duplicate_bytes += c.data.len() as u64;
    }

    /// Keep a server end's chunk for [`HOLD_NS`], in case its client end is traced too.
    fn hold(&mut self, c: Chunk, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        let now = c.ts_mono_ns;
        self.held_bytes += held_size(&c);
        self.held.push_back(c);
        self.stats.held_chunks += 1;
        // Past the cap, the oldest are decided now rather than later.
        while self.held_bytes > MAX_HELD_BYTES
            && let Some(old) = self.held.pop_front()
        {
            self.held_bytes -= held_size(&old).min(self.held_bytes);
            self.stats.held_early += 1;
            self.settle(&old, pipe, out);
        }
        self.release(now, pipe, out);
    }

    /// Decide the held chunks older than [`HOLD_NS`] at `now_mono_ns` (`CLOCK_MONOTONIC`): a
    /// server end whose client end did not show up owns its connection. Call it after each
    /// poll, so held chunks are not kept longer when nothing else arrives.
    pub fn release(&mut self, now_mono_ns: u64, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        while let Some(front) = self.held.front()
            && front.ts_mono_ns.saturating_add(HOLD_NS) <= now_mono_ns
        {
            let Some(c) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= held_size(&c).min(self.held_bytes);
            self.settle(&c, pipe, out);
        }
    }

    /// End of input: decide every held chunk now.
    pub fn finish(&mut self, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        self.release(u64::MAX, pipe, out);
    }

    /// A held chunk's time is up: feed it if its end still owns the connection (deciding so),
    /// or count it as a duplicate if the client end took over.
    fn settle(&mut self, c: &Chunk, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        let Some(ep) = c.endpoints else {
            return;
        };
        let Some(st) = self.streams.get(&c.conn) else {
            // Forgotten meanwhile (the table was full).
            self.duplicate(c);
            return;
        };
        match self.owners.get_mut(&st.tcp) {
            Some(o) if o.conn == c.conn => {
                let deciding = !o.decided;
                o.decided = true;
                let ts = self.clock.wall(c.ts_mono_ns);
                self.feed(c, ep, ts, pipe, out);
                if deciding {
                    // Its later chunks go now too, before any that arrives from here on (which
                    // is fed at once): the stream stays in order.
                    self.feed_held_of(c.conn, pipe, out);
                }
            }
            _ => self.duplicate(c),
        }
    }

    /// Take every held chunk of `conn` out of the queue, in order, and feed it.
    fn feed_held_of(&mut self, conn: ConnId, pipe: &mut Pipeline, out: &mut Vec<Exchange>) {
        let all = std::mem::take(&mut self.held);
        for h in all {
            match h.endpoints {
                Some(ep) if h.conn == conn => {
                    self.held_bytes -= held_size(&h).min(self.held_bytes);
                    let ts = self.clock.wall(h.ts_mono_ns);
                    self.feed(&h, ep, ts, pipe, out);
                }
                _ => self.held.push_back(h),
            }
        }
    }

    /// The key of the connection an end with endpoints key `own` belongs to. Usually `own`;
    /// but a client that connected to a Service's virtual address (a ClusterIP, rewritten by
    /// DNAT to a pod's) sees another peer than the server sees: the two ends still share the
    /// client's endpoint. So an end whose own key is new, and whose client endpoint a traced
    /// end of the other kind (client against server) registered, joins that end's
    /// connection. (Two client ends sharing an ephemeral port towards different servers stay
    /// two connections; a server end behind SNAT cannot be matched, and is reported too.)
    fn canonical(&mut self, own: TcpKey, client: (u32, SocketAddr), client_end: bool) -> TcpKey {
        if self.owners.contains_key(&own) {
            return own;
        }
        if let Some(&t) = self.aliases.get(&own) {
            return t;
        }
        match self.by_client.get(&client) {
            Some(&(other, was_client))
                if other != own && was_client != client_end && self.owners.contains_key(&other) =>
            {
                self.aliases.insert(own, other);
                other
            }
            _ => {
                self.by_client.insert(client, (own, client_end));
                own
            }
        }
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
            let Some(s) = self.streams.remove(&k) else {
                continue;
            };
            if let Some(a) = s.alias {
                self.aliases.remove(&a);
            }
            if self.owners.get(&s.tcp).is_some_and(|o| o.conn == k) {
                self.owners.remove(&s.tcp);
                if self
                    .by_client
                    .get(&s.client)
                    .is_some_and(|(t, _)| *t == s.tcp)
                {
                    self.by_client.remove(&s.client);
                }
            }
            self.stats.forgotten += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Endpoints;

    /// curl (pid 10) at C talks to a server (pid 20) at S.
    const C: &str = "10.0.0.1:40000";
    const S: &str = "10.0.0.2:443";
    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const RESP: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

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

    /// A feed, the pipeline it feeds and what came out.
    #[derive(Default)]
    struct Rig {
        feed: Feed,
        pipe: Pipeline,
        out: Vec<Exchange>,
    }

    impl Rig {
        fn push(&mut self, c: Chunk) {
            self.feed.push(c, &mut self.pipe, &mut self.out);
        }

        /// Chunk `data` at `offset`, sent (`Write`) or received by `pid` at `local`.
        fn say(
            &mut self,
            pid: u32,
            local: &str,
            peer: &str,
            dir: Direction,
            offset: u64,
            data: &[u8],
        ) {
            self.push(chunk(pid, local, peer, dir, offset, data));
        }

        fn finish(&mut self) {
            self.feed.finish(&mut self.pipe, &mut self.out);
            self.pipe.finish(&mut self.out);
        }

        fn pids(&self) -> Vec<Option<u32>> {
            self.out
                .iter()
                .map(|e| e.process.as_ref().map(|p| p.pid))
                .collect()
        }
    }

    #[test]
    fn a_connection_open_before_the_probes_counts_once_as_midstream() {
        let mut r = Rig::default();
        let at = |a: &str| a.parse::<SocketAddr>().unwrap();
        // The server's view of the old connection was noted; another connection was not.
        r.feed.opened_before(
            Endpoints {
                local: at(S),
                peer: at(C),
                netns: 1,
            },
            5,
        );
        // Both ends traced: one connection, picked up mid-stream (found from the client's
        // view too).
        r.say(10, C, S, Direction::Write, 0, REQ);
        r.say(20, S, C, Direction::Read, 0, REQ);
        r.say(20, S, C, Direction::Write, 0, RESP);
        r.say(10, C, S, Direction::Read, 0, RESP);
        r.say(11, "10.0.0.1:40001", S, Direction::Write, 0, REQ);
        r.finish();
        assert_eq!((r.feed.stats.connections, r.feed.stats.midstream), (2, 1));
        // Remembered once: the same endpoints later are a new connection.
        assert!(r.feed.opened_before.is_empty());
    }

    #[test]
    fn the_table_of_old_connections_is_capped_and_ages_when_full() {
        let mut f = Feed::new();
        let e = |port: u16, netns: u32| Endpoints {
            local: SocketAddr::from(([10, 0, 0, 1], port)),
            peer: SocketAddr::from(([10, 0, 0, 2], 443)),
            netns,
        };
        for i in 0..MAX_OPENED_BEFORE {
            f.opened_before(e(i as u16, i as u32 >> 16), 0);
        }
        f.opened_before(e(1, 7), 1);
        assert_eq!(f.stats.opened_before_over_cap, 1);
        assert_eq!(f.opened_before.len(), MAX_OPENED_BEFORE);
        // Past the time to live, the old ones make room.
        f.opened_before(e(1, 7), OPENED_BEFORE_TTL_NS);
        assert_eq!(f.opened_before.len(), 1);
    }

    #[test]
    fn both_ends_traced_yield_each_exchange_once_from_the_client() {
        let mut r = Rig::default();
        // The client writes, the server reads and answers, the client reads.
        r.say(10, C, S, Direction::Write, 0, REQ);
        r.say(20, S, C, Direction::Read, 0, REQ);
        r.say(20, S, C, Direction::Write, 0, RESP);
        r.say(10, C, S, Direction::Read, 0, RESP);
        assert_eq!(r.pids(), [Some(10)], "{:?}", r.out);
        assert_eq!(r.out[0].client.port, 40000);
        let exe = r.out[0]
            .process
            .as_ref()
            .and_then(|p| p.executable.as_ref());
        assert_eq!(exe.map(|e| e.name.as_str()), Some("curl"));
        let st = r.feed.stats;
        assert_eq!((st.chunks, st.duplicate_chunks, st.handovers), (2, 2, 0));
        // Wall time, not the monotonic clock.
        assert!(r.out[0].start_time_unix_nano > 1_600_000_000_000_000_000);
    }

    #[test]
    fn a_service_address_rewritten_by_dnat_still_meets_the_server_end() {
        // The client connected to a ClusterIP (10.96.0.10:443); DNAT sent it to the pod at
        // 10.0.1.5:8443, which sees the client's own endpoint as its peer.
        const VIP: &str = "10.96.0.10:443";
        const POD: &str = "10.0.1.5:8443";
        for server_first in [false, true] {
            let mut r = Rig::default();
            if server_first {
                r.say(20, POD, C, Direction::Read, 0, REQ);
                r.say(20, POD, C, Direction::Write, 0, RESP);
            }
            r.say(10, C, VIP, Direction::Write, 0, REQ);
            r.say(10, C, VIP, Direction::Read, 0, RESP);
            if !server_first {
                r.say(20, POD, C, Direction::Read, 0, REQ);
                r.say(20, POD, C, Direction::Write, 0, RESP);
            }
            r.feed.finish(&mut r.pipe, &mut r.out);
            r.finish();
            assert_eq!(r.pids(), [Some(10)], "{:?}", r.out);
            // The client's view: the Service's address, which enrichment names.
            assert_eq!(r.out[0].server.address, "10.96.0.10");
            assert_eq!(r.out[0].server.port, 443);
            assert_eq!(r.feed.stats.duplicate_chunks, 2, "{:?}", r.feed.stats);
        }
        // Two clients that share an ephemeral port towards different servers stay two
        // connections.
        let mut r = Rig::default();
        r.say(10, C, VIP, Direction::Write, 0, REQ);
        r.say(10, C, VIP, Direction::Read, 0, RESP);
        r.say(11, C, S, Direction::Write, 0, REQ);
        r.say(11, C, S, Direction::Read, 0, RESP);
        r.finish();
        assert_eq!(r.pids().len(), 2, "{:?}", r.out);
    }

    #[test]
    fn a_server_identity_reused_by_a_new_connection_meets_its_new_client() {
        // nginx (pid 20) serves two connections one after the other with the same `SSL*` and
        // socket addresses reused (one identity). The first client is not traced: nginx's
        // end reports it. The second is: it reports its own, once.
        const C2: &str = "10.0.0.1:40002";
        let mut r = Rig::default();
        r.say(20, S, C, Direction::Read, 0, REQ);
        r.say(20, S, C, Direction::Write, 0, RESP);
        r.feed.release(u64::MAX, &mut r.pipe, &mut r.out);
        r.say(11, C2, S, Direction::Write, 0, REQ);
        r.say(20, S, C2, Direction::Read, REQ.len() as u64, REQ);
        r.say(20, S, C2, Direction::Write, RESP.len() as u64, RESP);
        r.say(11, C2, S, Direction::Read, 0, RESP);
        r.feed.finish(&mut r.pipe, &mut r.out);
        r.finish();
        let mut pids = r.pids();
        pids.sort();
        assert_eq!(pids, [Some(11), Some(20)], "{:?}", r.out);
        assert_eq!(r.feed.stats.duplicate_chunks, 2, "{:?}", r.feed.stats);
    }

    #[test]
    fn the_server_end_seen_first_waits_for_the_client() {
        let mut r = Rig::default();
        // The server's read and its answer reach the feed before the client's write.
        r.say(20, S, C, Direction::Read, 0, REQ);
        r.say(20, S, C, Direction::Write, 0, RESP);
        r.say(10, C, S, Direction::Write, 0, REQ);
        r.say(10, C, S, Direction::Read, 0, RESP);
        r.feed.finish(&mut r.pipe, &mut r.out);
        // The server end never reached the pipeline; only the client's stream is there.
        assert_eq!(r.pipe.flows(), 1);
        r.finish();
        assert_eq!(r.pids(), [Some(10)], "{:?}", r.out);
        assert_eq!(r.out[0].status, schemas::Status::Ok);
        let st = r.feed.stats;
        assert_eq!(
            (st.held_chunks, st.duplicate_chunks, st.handovers),
            (2, 2, 0)
        );
    }

    #[test]
    fn a_server_traced_alone_is_dissected_after_the_hold_and_a_late_client_takes_over() {
        let mut r = Rig::default();
        r.say(20, S, C, Direction::Read, 0, REQ);
        r.say(20, S, C, Direction::Write, 0, RESP);
        assert!(r.out.is_empty(), "held for the hold time");
        r.feed.release(1_000 + HOLD_NS - 1, &mut r.pipe, &mut r.out);
        assert!(r.out.is_empty());
        r.feed.release(1_000 + HOLD_NS, &mut r.pipe, &mut r.out);
        assert_eq!(r.pids(), [Some(20)], "{:?}", r.out);
        assert_eq!((r.out[0].client.port, r.out[0].server.port), (40000, 443));
        // Its client end, traced later, owns the connection from then on: the server's
        // stream is forgotten and later chunks from the server end are duplicates.
        let req2 = b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
        r.say(10, C, S, Direction::Write, 0, req2);
        r.say(20, S, C, Direction::Read, REQ.len() as u64, req2);
        assert_eq!(
            (r.feed.stats.handovers, r.feed.stats.duplicate_chunks),
            (1, 1)
        );
        assert_eq!(r.pipe.flows(), 1);
    }

    #[test]
    fn held_chunks_are_capped_in_bytes_with_their_records() {
        let mut r = Rig::default();
        // A server end alone, sending one-byte chunks faster than its hold ends.
        for i in 0..100_000u64 {
            let mut c = chunk(20, S, C, Direction::Write, i, b"x");
            c.ts_mono_ns = 1_000;
            r.push(c);
        }
        assert!(r.feed.held_bytes <= MAX_HELD_BYTES);
        assert!(r.feed.held.len() * std::mem::size_of::<Chunk>() <= MAX_HELD_BYTES);
        assert!(r.feed.stats.held_early > 0, "{:?}", r.feed.stats);
        // Deciding the first chunk early sent the others on, in order, and nothing repeated.
        assert_eq!(r.feed.stats.chunks, 100_000);
        assert!(r.feed.held.is_empty());
        assert_eq!(r.pipe.stats().flows.stream_repeated_bytes, 0);
        assert_eq!(r.pipe.stats().flows.stream_gap_bytes, 0);
    }

    #[test]
    fn reused_addresses_after_a_long_silence_belong_to_the_new_connection() {
        let mut r = Rig::default();
        r.say(10, C, S, Direction::Write, 0, REQ);
        // Much later, a new connection on the same addresses, traced only at the server.
        let mut late = chunk(30, S, C, Direction::Read, 0, REQ);
        late.ts_mono_ns += STALE_NS + 1;
        r.push(late);
        let st = r.feed.stats;
        assert_eq!((st.chunks, st.duplicate_chunks, st.handovers), (2, 0, 1));
    }

    /// Chunks of `REQ` from (pid, netns, local, peer, direction), in that order.
    fn in_namespaces(chunks: &[(u32, u32, &str, &str, Direction)]) -> FeedStats {
        let mut r = Rig::default();
        for &(pid, netns, local, peer, dir) in chunks {
            let mut c = chunk(pid, local, peer, dir, 0, REQ);
            if let Some(e) = c.endpoints.as_mut() {
                e.netns = netns;
            }
            r.push(c);
        }
        r.finish();
        r.feed.stats
    }

    #[test]
    fn loopback_addresses_in_two_namespaces_are_two_connections() {
        let (a, b) = ("127.0.0.1:40000", "127.0.0.1:8080");
        let st = in_namespaces(&[
            (10, 1, a, b, Direction::Write),
            (20, 2, a, b, Direction::Write),
        ]);
        assert_eq!((st.chunks, st.duplicate_chunks), (2, 0));
    }

    #[test]
    fn two_namespaces_on_one_node_meet_on_their_own_addresses() {
        // A client pod and a server pod on one node: the same connection from two network
        // namespaces, by the pods' addresses.
        let (c, s) = ("10.1.0.5:40000", "10.1.0.6:443");
        let st = in_namespaces(&[
            (10, 1, c, s, Direction::Write),
            (20, 2, s, c, Direction::Read),
        ]);
        assert_eq!((st.chunks, st.duplicate_chunks), (1, 1));
    }

    #[test]
    fn unbound_chunks_are_counted_and_the_table_is_capped() {
        let mut r = Rig::default();
        let mut c = chunk(1, C, S, Direction::Write, 0, b"x");
        c.endpoints = None;
        r.push(c);
        assert_eq!(r.feed.stats.unbound_chunks, 1);
        for i in 0..(MAX_STREAMS as u32 + 10) {
            let port = 1024 + (i % 60000) as u16;
            let local = format!("10.1.{}.1:{port}", i / 60000);
            r.say(i, &local, S, Direction::Write, 0, b"");
            assert!(r.feed.streams() <= MAX_STREAMS);
        }
        assert!(r.feed.stats.forgotten >= 10, "{:?}", r.feed.stats);
        assert!(r.feed.owners.len() <= MAX_STREAMS);
    }
}
