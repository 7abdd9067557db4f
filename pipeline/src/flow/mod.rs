//! The flow table: both directions of a TCP connection or UDP conversation in one flow,
//! TCP reassembly per direction, protocol detection, and the flow's dissector.
//!
//! Keys are symmetric (the two endpoints in sorted order), so a flow's two directions meet in
//! one entry; the same order gives the symmetric hash the agent shards workers by.
//!
//! Who is the client:
//! 1. a SYN without ACK comes from the client, a SYN-ACK from the server;
//! 2. without a captured handshake, the first bytes either side sends are shown to the
//!    detectors, which say whether they are a request (sender = client) or a response
//!    (sender = server);
//! 3. a flow nothing detects is never dissected, so its roles do not matter; it is kept
//!    only to skip its packets cheaply (`opaque`).
//!
//! Limits (all in [`FlowConfig`]): `max_flows` (reaching it evicts the least recently seen
//! eighth of the table, counted in `evicted`), idle timeouts per transport (of capture
//! time), out-of-order bytes per flow and in total (see `reassembly`), unconsumed dissector
//! bytes per direction (`dissect::MAX_PENDING`), and detection attempts per flow.
//!
//! The memory budget (`memory_budget`, bytes per pipeline): after every packet a flow's
//! footprint is measured (its own record, unconsumed bytes, out-of-order bytes, and what its
//! dissector holds: `Dissector::held_bytes`, from capacities and element sizes); when the sum
//! over all flows passes the budget, the largest flows are closed (their exchanges emitted as
//! they stand) until it is under seven eighths of it, each counted in `memory_evicted`. The
//! caps above bound each piece; the budget bounds their sum, whatever mix of flows an
//! attacker opens.

pub mod reassembly;

use std::net::IpAddr;
use std::num::NonZeroU64;

use rustc_hash::FxHashMap;
use schemas::{Exchange, Transport};

use crate::decode::{L4, Segment};
use crate::dissect::detect::{Detected, detect};
use crate::dissect::entry::{Detection, ProtocolEntry};
use crate::dissect::{
    AnomalyCounts, Direction, Dissector, Emitter, FlowMeta, MAX_PENDING, Progress, StreamOrigin,
};
use reassembly::{Budget, Chunk, Reassembler, ReassemblyStats};

/// The delivery context of a flow from the table's fields: a macro, because a method would
/// borrow all of the table while the flow is borrowed from its map.
macro_rules! ctx {
    ($t:expr, $out:expr, $key:expr, $meta:expr, $origin:expr) => {
        Ctx {
            cfg: &$t.cfg,
            registry: $t.registry,
            stats: &mut $t.stats,
            anomalies: &mut $t.anomalies,
            out: $out,
            key: $key,
            meta: $meta,
            origin: $origin,
        }
    };
}

/// One chunk of a plaintext stream, as [`FlowTable::stream`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct StreamChunk<'a> {
    /// Unix nanoseconds (the source converts its clock).
    pub ts: u64,
    /// The connection as its owning process sees it: its own end, and its peer.
    pub local: Endpoint,
    pub peer: Endpoint,
    /// This stream's id (0 is the packet flows'); a new id is a new connection.
    pub stream: NonZeroU64,
    /// True when the owning process sent these bytes, false when it received them.
    pub sent: bool,
    /// Offset of `data[0]` in this direction of the stream.
    pub offset: u64,
    pub data: &'a [u8],
    /// Who owns the stream (copied into the flow when its first chunk arrives).
    pub origin: &'a StreamOrigin,
}

/// Flow-table limits.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Flows tracked at once.
    pub max_flows: usize,
    /// A TCP flow with no packet for this long (capture time) is closed.
    pub tcp_idle_ns: u64,
    /// A UDP flow with no packet for this long is closed.
    pub udp_idle_ns: u64,
    /// Out-of-order bytes buffered per direction of one flow.
    pub max_ooo_per_flow: usize,
    /// Out-of-order bytes buffered across all flows.
    pub max_ooo_total: usize,
    /// Data chunks per direction shown to the detectors before a flow is left undissected.
    pub max_detect_tries: u8,
    /// Protobuf descriptors for decoding gRPC messages (`--proto-descriptor`).
    pub descriptors: Option<std::sync::Arc<crate::dissect::protobuf::Descriptors>>,
    /// Kafka topic ids → names, shared by every flow and every pipeline made from this
    /// configuration (`dissect::kafka_topics`).
    pub topic_ids: std::sync::Arc<crate::dissect::kafka_topics::TopicIds>,
    /// Bytes all flows may hold together (see the module doc).
    pub memory_budget: usize,
    /// Endpoints never dissected (the agent's own API and sink connections): a flow with
    /// either end here is kept only to skip its packets. An address of `None` matches any.
    pub skip: std::sync::Arc<[(Option<IpAddr>, u16)]>,
}

/// The default memory budget of one pipeline.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            tcp_idle_ns: 300_000_000_000,
            udp_idle_ns: 30_000_000_000,
            max_ooo_per_flow: 1 << 20,
            max_ooo_total: 256 << 20,
            max_detect_tries: 4,
            descriptors: None,
            topic_ids: std::sync::Arc::default(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            skip: std::sync::Arc::new([]),
        }
    }
}

/// Counters of the flow stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub created: u64,
    /// Closed by FIN/RST or the end of input.
    pub closed: u64,
    pub timed_out: u64,
    /// Dropped because `max_flows` was reached.
    pub evicted: u64,
    /// Flows no detector recognised (not dissected).
    pub opaque: u64,
    /// Flows whose dissector gave up (`Progress::Error`).
    pub dissector_errors: u64,
    /// Times unconsumed bytes exceeded `MAX_PENDING` and were dropped.
    pub pending_overflow: u64,
    /// Flows seen without their TCP handshake.
    pub midstream: u64,
    /// Flows closed because all flows together passed `memory_budget`.
    pub memory_evicted: u64,
    /// Flows not dissected because an end is in `skip` (the agent's own connections).
    pub skipped: u64,
    /// Plaintext-stream bytes announced by an offset jump (lost before they reached the
    /// pipeline) and handed to the dissector as a gap.
    pub stream_gap_bytes: u64,
    /// Plaintext-stream bytes that arrived again (at offsets already delivered), dropped.
    pub stream_repeated_bytes: u64,
    pub reassembly: ReassemblyStats,
}

impl FlowStats {
    /// Add another table's counters (every field: the destructuring fails to build when one
    /// is added and not summed).
    pub fn add(&mut self, o: &FlowStats) {
        let FlowStats {
            created,
            closed,
            timed_out,
            evicted,
            opaque,
            dissector_errors,
            pending_overflow,
            midstream,
            memory_evicted,
            skipped,
            stream_gap_bytes,
            stream_repeated_bytes,
            reassembly,
        } = o;
        self.created += created;
        self.closed += closed;
        self.timed_out += timed_out;
        self.evicted += evicted;
        self.opaque += opaque;
        self.dissector_errors += dissector_errors;
        self.pending_overflow += pending_overflow;
        self.midstream += midstream;
        self.memory_evicted += memory_evicted;
        self.skipped += skipped;
        self.stream_gap_bytes += stream_gap_bytes;
        self.stream_repeated_bytes += stream_repeated_bytes;
        self.reassembly.add(reassembly);
    }
}

/// How often (capture time) idle flows are looked for.
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

/// An address and port.
pub type Endpoint = (IpAddr, u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    a: Endpoint,
    b: Endpoint,
    udp: bool,
    /// 0 for packet flows; a plaintext stream's id otherwise (the same connection seen through
    /// the TLS tracer is a flow of its own, next to its encrypted packets).
    stream: u64,
}

/// What a flow from a plaintext source keeps besides a packet flow's state.
struct StreamState {
    origin: StreamOrigin,
    /// Per side, the offset of the next byte expected.
    next: [u64; 2],
}

enum State {
    Detecting { tries: [u8; 2] },
    Active(Box<dyn Dissector>),
    Opaque,
}

struct Flow {
    /// Side 0 sends from `key.a`, side 1 from `key.b`.
    client_is_a: Option<bool>,
    reasm: [Reassembler; 2],
    pending: [Vec<u8>; 2],
    state: State,
    last_ts: u64,
    /// Any payload seen (decides whether a new SYN starts a new connection).
    had_data: bool,
    saw_syn: bool,
    /// Bytes this flow held when last measured (its part of `FlowTable::held`).
    held: usize,
    /// Set for flows from a plaintext source.
    stream: Option<Box<StreamState>>,
}

/// A flow's record (its table slot and its box), before anything it buffers.
const FLOW_RECORD: usize = std::mem::size_of::<Flow>()
    + std::mem::size_of::<FlowKey>()
    + std::mem::size_of::<Box<Flow>>()
    + 16;

impl Flow {
    /// What the flow holds now.
    fn measure(&self) -> usize {
        let dissector = match &self.state {
            State::Active(d) => std::mem::size_of_val(&**d) + d.held_bytes(),
            _ => 0,
        };
        let stream = self.stream.as_ref().map_or(0, |st| {
            std::mem::size_of::<StreamState>()
                + st.origin.executable.as_ref().map_or(0, |e| e.capacity())
        });
        FLOW_RECORD
            + stream
            + self.pending[0].capacity()
            + self.pending[1].capacity()
            + self.reasm[0].buffered()
            + self.reasm[1].buffered()
            + dissector
    }
}

impl Flow {
    fn new(cfg: &FlowConfig, ts: u64) -> Self {
        Flow {
            client_is_a: None,
            reasm: [
                Reassembler::new(cfg.max_ooo_per_flow),
                Reassembler::new(cfg.max_ooo_per_flow),
            ],
            pending: [Vec::new(), Vec::new()],
            state: State::Detecting { tries: [0, 0] },
            last_ts: ts,
            had_data: false,
            saw_syn: false,
            held: 0,
            stream: None,
        }
    }
}

/// The flow table with its caps and counters.
pub struct FlowTable {
    cfg: FlowConfig,
    /// The protocols detection tries (the protocols' `REGISTRY` in a pipeline).
    registry: &'static [ProtocolEntry],
    /// Boxed: the table holds keys and pointers (64 bytes a slot), so its spare slots (an
    /// eighth to a half of them) and its copy while it grows cost little.
    flows: FxHashMap<FlowKey, Box<Flow>>,
    budget: Budget,
    pub stats: FlowStats,
    pub anomalies: AnomalyCounts,
    last_sweep: u64,
    /// Bytes all flows hold (the sum of their `held`).
    held: usize,
}

impl FlowTable {
    pub fn new(cfg: FlowConfig, registry: &'static [ProtocolEntry]) -> Self {
        let budget = Budget {
            used: 0,
            max: cfg.max_ooo_total,
        };
        FlowTable {
            cfg,
            registry,
            flows: FxHashMap::default(),
            budget,
            stats: FlowStats::default(),
            anomalies: AnomalyCounts::default(),
            last_sweep: 0,
            held: 0,
        }
    }

    /// Flows currently tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Out-of-order bytes buffered across all flows.
    pub fn buffered_bytes(&self) -> usize {
        self.budget.used
    }

    /// Bytes all flows hold, as the memory budget counts them.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Re-measure `key`'s flow after a packet; past the budget, close the largest flows.
    fn account(&mut self, key: &FlowKey, ts: u64, out: &mut Vec<Exchange>) {
        if let Some(flow) = self.flows.get_mut(key) {
            let now = flow.measure();
            let before = std::mem::replace(&mut flow.held, now);
            self.held_changed(before, now, ts, out);
        }
    }

    /// A flow's footprint went from `before` to `now` bytes: update the total and shed
    /// flows past the budget.
    fn held_changed(&mut self, before: usize, now: usize, ts: u64, out: &mut Vec<Exchange>) {
        self.held = self.held - before.min(self.held) + now;
        if self.held > self.cfg.memory_budget {
            self.shed(ts, out);
        }
    }

    /// Close the largest flows until the table holds under 7/8 of its budget.
    fn shed(&mut self, ts: u64, out: &mut Vec<Exchange>) {
        let target = self.cfg.memory_budget / 8 * 7;
        let mut sizes: Vec<(usize, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.held, *k)).collect();
        sizes.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        for (_, k) in sizes {
            if self.held <= target {
                break;
            }
            self.close(&k, ts, out);
            self.stats.memory_evicted += 1;
        }
    }

    /// Take a flow out of the table, and its bytes out of the totals (the memory budget's
    /// and the out-of-order budget's: a flow that became opaque may still hold out-of-order
    /// bytes from before).
    fn remove(&mut self, key: &FlowKey) -> Option<Box<Flow>> {
        let mut flow = self.flows.remove(key)?;
        self.held -= flow.held.min(self.held);
        if matches!(flow.state, State::Opaque) {
            for r in flow.reasm.iter_mut() {
                r.release(&mut self.budget);
            }
        }
        Some(flow)
    }

    /// Process one decoded segment; finished exchanges are appended to `out`.
    pub fn segment(&mut self, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        self.sweep_if_due(seg.ts, out);
        let src = (seg.src, seg.src_port);
        let dst = (seg.dst, seg.dst_port);
        let udp = matches!(seg.l4, L4::Udp);
        let (key, side) = if src <= dst {
            (
                FlowKey {
                    a: src,
                    b: dst,
                    udp,
                    stream: 0,
                },
                0usize,
            )
        } else {
            (
                FlowKey {
                    a: dst,
                    b: src,
                    udp,
                    stream: 0,
                },
                1usize,
            )
        };
        match seg.l4 {
            L4::Udp => self.udp(key, side, seg, out),
            L4::Tcp { seq, ack, flags } => {
                // A new connection on a reused tuple: close the old one first.
                if flags.syn
                    && !flags.ack
                    && let Some(f) = self.flows.get(&key)
                    && (f.had_data || f.reasm.iter().any(|r| r.finished()))
                {
                    self.close(&key, seg.ts, out);
                    self.stats.closed += 1;
                }
                // A bare ACK/FIN/RST (e.g. the last ACK after a close) starts nothing.
                let starts = flags.syn || !seg.payload.is_empty() || seg.missing > 0;
                self.make_room(&key, starts, seg.ts, out);
                let Some(flow) = lookup(
                    &mut self.flows,
                    &self.cfg,
                    &mut self.stats,
                    key,
                    seg.ts,
                    starts,
                ) else {
                    return;
                };
                flow.last_ts = seg.ts;
                if matches!(flow.state, State::Opaque) {
                    if flags.rst || flags.fin {
                        self.remove(&key);
                        self.stats.closed += 1;
                    } else if flow.held == 0 {
                        self.account(&key, seg.ts, out);
                    }
                    return;
                }
                if flags.syn {
                    flow.saw_syn = true;
                    if flow.client_is_a.is_none() {
                        // SYN from the client, SYN-ACK from the server.
                        flow.client_is_a = Some((side == 0) != flags.ack);
                    }
                    flow.reasm[side].syn(seq);
                } else if !flow.saw_syn && !flow.had_data && !seg.payload.is_empty() {
                    self.stats.midstream += 1;
                }
                if !seg.payload.is_empty() || seg.missing > 0 {
                    flow.had_data = true;
                }
                let meta = meta_of(&key, flow.client_is_a, Transport::Tcp);
                let mut ctx = ctx!(self, out, &key, meta, None);
                let Flow {
                    reasm,
                    pending,
                    state,
                    client_is_a,
                    ..
                } = flow;
                let [r0, r1] = reasm;
                let (mine, theirs) = if side == 0 { (r0, r1) } else { (r1, r0) };
                let mut rs = std::mem::take(&mut ctx.stats.reassembly);
                if flags.ack {
                    theirs.acked(ack, &mut self.budget, &mut rs, &mut |c| {
                        ctx.chunk(state, pending, client_is_a, 1 - side, c, seg.ts)
                    });
                }
                mine.segment(
                    seq,
                    seg.payload,
                    seg.missing,
                    flags.fin,
                    &mut self.budget,
                    &mut rs,
                    &mut |c| ctx.chunk(state, pending, client_is_a, side, c, seg.ts),
                );
                ctx.stats.reassembly = rs;
                let done = flags.rst || (mine.finished() && theirs.finished());
                if done {
                    self.close(&key, seg.ts, out);
                    self.stats.closed += 1;
                } else {
                    // Measured while the flow is at hand: no second lookup per packet.
                    let now = flow.measure();
                    let before = std::mem::replace(&mut flow.held, now);
                    self.held_changed(before, now, seg.ts, out);
                }
            }
        }
    }

    /// Process one chunk of a plaintext stream (a TLS connection's bytes as its program wrote or
    /// read them); finished exchanges are appended to `out`.
    ///
    /// The stream is a flow of its own (keyed by `chunk.stream` besides its endpoints), created
    /// by its first chunk and closed when idle for the TCP timeout or at [`FlowTable::finish`].
    /// Offsets say where each chunk belongs: a jump forward is a gap (bytes lost upstream,
    /// handed to the dissector as packet loss is), bytes at offsets already delivered are
    /// dropped. Nothing is buffered for reordering: the source delivers each connection in order.
    pub fn stream(&mut self, chunk: &StreamChunk<'_>, out: &mut Vec<Exchange>) {
        self.sweep_if_due(chunk.ts, out);
        let (src, dst) = if chunk.sent {
            (chunk.local, chunk.peer)
        } else {
            (chunk.peer, chunk.local)
        };
        let (a, b, side) = if src <= dst {
            (src, dst, 0usize)
        } else {
            (dst, src, 1usize)
        };
        let key = FlowKey {
            a,
            b,
            udp: false,
            stream: chunk.stream.get(),
        };
        self.make_room(&key, true, chunk.ts, out);
        let Some(flow) = lookup(
            &mut self.flows,
            &self.cfg,
            &mut self.stats,
            key,
            chunk.ts,
            true,
        ) else {
            return;
        };
        flow.last_ts = chunk.ts;
        let st = flow.stream.get_or_insert_with(|| {
            Box::new(StreamState {
                origin: chunk.origin.clone(),
                next: [0, 0],
            })
        });
        if matches!(flow.state, State::Opaque) {
            if flow.held == 0 {
                self.account(&key, chunk.ts, out);
            }
            return;
        }
        // This side's expected offset (`side` is 0 or 1, chosen above; no index).
        let [n0, n1] = &mut st.next;
        let expected = if side == 0 { n0 } else { n1 };
        let next = *expected;
        let end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if end <= next {
            self.stats.stream_repeated_bytes += chunk.data.len() as u64;
            return;
        }
        let skip = next.saturating_sub(chunk.offset);
        self.stats.stream_repeated_bytes += skip;
        // `skip` < data.len() here, since end > next.
        let data = chunk.data.get(skip as usize..).unwrap_or_default();
        let gap = chunk.offset.saturating_sub(next);
        *expected = end;
        flow.had_data = true;
        let meta = meta_of(&key, flow.client_is_a, Transport::Tcp);
        let Flow {
            pending,
            state,
            client_is_a,
            stream,
            ..
        } = flow;
        let mut ctx = ctx!(
            self,
            out,
            &key,
            meta,
            stream.as_deref().map(|st| &st.origin)
        );
        if gap > 0 {
            ctx.stats.stream_gap_bytes += gap;
            ctx.chunk(state, pending, client_is_a, side, Chunk::Gap(gap), chunk.ts);
        }
        ctx.chunk(
            state,
            pending,
            client_is_a,
            side,
            Chunk::Data(data),
            chunk.ts,
        );
        self.account(&key, chunk.ts, out);
    }

    /// Forget a plaintext stream without emitting what it holds (its connection is now read
    /// through another stream: the other end of the same connection, traced on this node).
    /// Returns whether it was tracked.
    pub fn forget_stream(&mut self, local: Endpoint, peer: Endpoint, stream: NonZeroU64) -> bool {
        let (a, b) = if local <= peer {
            (local, peer)
        } else {
            (peer, local)
        };
        let key = FlowKey {
            a,
            b,
            udp: false,
            stream: stream.get(),
        };
        let gone = self.remove(&key);
        if let Some(mut flow) = gone {
            for r in flow.reasm.iter_mut() {
                r.release(&mut self.budget);
            }
            self.stats.closed += 1;
            true
        } else {
            false
        }
    }

    fn udp(&mut self, key: FlowKey, side: usize, seg: &Segment<'_>, out: &mut Vec<Exchange>) {
        self.make_room(&key, true, seg.ts, out);
        let Some(flow) = lookup(
            &mut self.flows,
            &self.cfg,
            &mut self.stats,
            key,
            seg.ts,
            true,
        ) else {
            return;
        };
        flow.last_ts = seg.ts;
        if matches!(flow.state, State::Opaque) || seg.payload.is_empty() {
            if flow.held == 0 {
                self.account(&key, seg.ts, out);
            }
            return;
        }
        flow.had_data = true;
        let meta = meta_of(&key, flow.client_is_a, Transport::Udp);
        let mut ctx = ctx!(self, out, &key, meta, None);
        let Flow {
            pending,
            state,
            client_is_a,
            ..
        } = flow;
        ctx.chunk(
            state,
            pending,
            client_is_a,
            side,
            Chunk::Data(seg.payload),
            seg.ts,
        );
        // Datagrams are whole messages: nothing carries over to the next one.
        pending[side].clear();
        if seg.missing > 0 {
            ctx.anomalies
                .add(crate::dissect::anomaly::Common::TruncatedDatagram.name());
        }
        // A UDP flow with nothing in flight holds no state worth keeping (one DNS lookup per
        // source port is the common case): drop it now rather than at the idle timeout.
        if let State::Active(d) = state
            && d.is_idle()
        {
            self.remove(&key);
            self.stats.closed += 1;
        } else {
            self.account(&key, seg.ts, out);
        }
    }

    /// Before a lookup that may create `key`: evict if the table is full.
    fn make_room(&mut self, key: &FlowKey, create: bool, ts: u64, out: &mut Vec<Exchange>) {
        if create && self.flows.len() >= self.cfg.max_flows && !self.flows.contains_key(key) {
            self.evict(ts, out);
        }
    }

    /// Evict the least recently seen eighth of the table (amortised O(1) per insert).
    fn evict(&mut self, ts: u64, out: &mut Vec<Exchange>) {
        let mut ages: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last_ts, *k)).collect();
        let n = (ages.len() / 8).max(1);
        ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, k) in ages.into_iter().take(n) {
            self.close(&k, ts, out);
            self.stats.evicted += 1;
        }
    }

    /// Sweep when [`SWEEP_EVERY_NS`] of capture time passed since the last sweep.
    #[inline]
    fn sweep_if_due(&mut self, ts: u64, out: &mut Vec<Exchange>) {
        if ts >= self.last_sweep.saturating_add(SWEEP_EVERY_NS) {
            self.sweep(ts, out);
        }
    }

    /// Close flows idle past their timeout.
    pub fn sweep(&mut self, now: u64, out: &mut Vec<Exchange>) {
        self.last_sweep = now;
        let (tcp_idle, udp_idle) = (self.cfg.tcp_idle_ns, self.cfg.udp_idle_ns);
        let idle: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(k, f)| {
                let limit = if k.udp { udp_idle } else { tcp_idle };
                now.saturating_sub(f.last_ts) >= limit
            })
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            self.close(&k, now, out);
            self.stats.timed_out += 1;
        }
    }

    /// Close every flow (end of input).
    pub fn finish(&mut self, out: &mut Vec<Exchange>) {
        self.finish_each(out, usize::MAX, |_| {});
    }

    /// Close every flow (end of input), handing `out` to `each` whenever it holds `batch`
    /// exchanges or more, so that closing many flows does not build all their exchanges
    /// at once.
    pub fn finish_each(
        &mut self,
        out: &mut Vec<Exchange>,
        batch: usize,
        mut each: impl FnMut(&mut Vec<Exchange>),
    ) {
        let mut keys: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last_ts, *k)).collect();
        // Close in order of last activity so output order does not depend on hashing.
        keys.sort_unstable_by_key(|(ts, k)| (*ts, k.a, k.b, k.udp, k.stream));
        for (ts, k) in keys {
            self.close(&k, ts, out);
            self.stats.closed += 1;
            if out.len() >= batch {
                each(out);
            }
        }
    }

    /// Flush a flow's reassembly and dissector, then drop it.
    fn close(&mut self, key: &FlowKey, ts: u64, out: &mut Vec<Exchange>) {
        let Some(mut flow) = self.remove(key) else {
            return;
        };
        let transport = if key.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let meta = meta_of(key, flow.client_is_a, transport);
        let Flow {
            reasm,
            pending,
            state,
            client_is_a,
            stream,
            ..
        } = &mut *flow;
        let origin = stream.as_deref().map(|st| &st.origin);
        let mut ctx = ctx!(self, out, key, meta, origin);
        if !matches!(state, State::Opaque) {
            let mut rs = std::mem::take(&mut ctx.stats.reassembly);
            for (side, r) in reasm.iter_mut().enumerate() {
                r.flush(&mut self.budget, &mut rs, &mut |c| {
                    ctx.chunk(state, pending, client_is_a, side, c, ts)
                });
            }
            ctx.stats.reassembly = rs;
        }
        for r in reasm.iter_mut() {
            r.release(&mut self.budget);
        }
        if let State::Active(d) = state {
            let meta = meta_of(key, *client_is_a, transport);
            let mut em = Emitter {
                meta,
                origin: ctx.origin,
                anomalies: ctx.anomalies,
                out: ctx.out,
                descriptors: ctx.cfg.descriptors.as_deref(),
                topic_ids: Some(&ctx.cfg.topic_ids),
            };
            // A message start the flow ended in the middle of: use what is certain in it.
            for (side, held) in pending.iter().enumerate() {
                if !held.is_empty() {
                    d.cut(direction(*client_is_a, side), held, ts, &mut em);
                }
            }
            d.close(ts, &mut em);
        }
    }
}

/// The flow of `key`, created when `create` (one hash lookup either way).
fn lookup<'a>(
    flows: &'a mut FxHashMap<FlowKey, Box<Flow>>,
    cfg: &FlowConfig,
    stats: &mut FlowStats,
    key: FlowKey,
    ts: u64,
    create: bool,
) -> Option<&'a mut Flow> {
    match flows.entry(key) {
        std::collections::hash_map::Entry::Occupied(o) => Some(o.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) if create => {
            stats.created += 1;
            let mut flow = Flow::new(cfg, ts);
            let skipped = |(ip, port): Endpoint| {
                cfg.skip
                    .iter()
                    .any(|(i, p)| *p == port && i.is_none_or(|i| i == ip))
            };
            if !cfg.skip.is_empty() && (skipped(key.a) || skipped(key.b)) {
                stats.skipped += 1;
                flow.state = State::Opaque;
            }
            Some(v.insert(Box::new(flow)))
        }
        std::collections::hash_map::Entry::Vacant(_) => None,
    }
}

fn meta_of(key: &FlowKey, client_is_a: Option<bool>, transport: Transport) -> FlowMeta {
    // Until the roles are known, the lower port is taken as the server's.
    let a_client = client_is_a.unwrap_or(key.a.1 > key.b.1);
    let (client, server) = if a_client {
        (key.a, key.b)
    } else {
        (key.b, key.a)
    };
    FlowMeta {
        client,
        server,
        transport,
    }
}

/// What chunk delivery needs besides the flow's own fields.
struct Ctx<'a> {
    cfg: &'a FlowConfig,
    registry: &'static [ProtocolEntry],
    stats: &'a mut FlowStats,
    anomalies: &'a mut AnomalyCounts,
    out: &'a mut Vec<Exchange>,
    key: &'a FlowKey,
    meta: FlowMeta,
    /// The flow's owner when it comes from a plaintext source.
    origin: Option<&'a StreamOrigin>,
}

impl Ctx<'_> {
    /// Hand one reassembled chunk of side `side` to detection or the dissector.
    fn chunk(
        &mut self,
        state: &mut State,
        pending: &mut [Vec<u8>; 2],
        client_is_a: &mut Option<bool>,
        side: usize,
        chunk: Chunk<'_>,
        ts: u64,
    ) {
        if let State::Detecting { tries } = state {
            let data = match chunk {
                Chunk::Gap(_) => {
                    pending[side].clear();
                    return;
                }
                Chunk::Data(d) => d,
            };
            let transport = self.meta.transport;
            let ports = (self.key.a.1, self.key.b.1);
            let probe: &[u8] = if pending[side].is_empty() {
                data
            } else {
                pending[side].extend_from_slice(data);
                &pending[side]
            };
            match detect(self.registry, probe, transport, ports) {
                Detected::Found(entry, how) => {
                    if client_is_a.is_none() {
                        let sender_is_a = side == 0;
                        *client_is_a = Some(match how {
                            Detection::FromServer => !sender_is_a,
                            _ => sender_is_a,
                        });
                    }
                    self.meta = meta_of(self.key, *client_is_a, transport);
                    *state = State::Active((entry.new)(&self.meta));
                    // Feed what detection looked at (held in `pending` or `data`).
                    let held = std::mem::take(&mut pending[side]);
                    let bytes: &[u8] = if held.is_empty() { data } else { &held };
                    self.feed(state, pending, *client_is_a, side, bytes, ts);
                }
                Detected::NeedMore if pending[side].len() < 4096 => {
                    if pending[side].is_empty() {
                        pending[side].extend_from_slice(data);
                    }
                }
                _ => {
                    pending[side].clear();
                    tries[side] += 1;
                    if tries[side] >= self.cfg.max_detect_tries
                        || transport == Transport::Udp && tries[side] >= 1
                    {
                        *state = State::Opaque;
                        pending[0] = Vec::new();
                        pending[1] = Vec::new();
                        self.stats.opaque += 1;
                    }
                }
            }
            return;
        }
        match chunk {
            Chunk::Data(d) => self.feed(state, pending, *client_is_a, side, d, ts),
            Chunk::Gap(len) => {
                if let State::Active(dis) = state {
                    let dir = direction(*client_is_a, side);
                    let mut em = Emitter {
                        meta: self.meta,
                        origin: self.origin,
                        anomalies: self.anomalies,
                        out: self.out,
                        descriptors: self.cfg.descriptors.as_deref(),
                        topic_ids: Some(&self.cfg.topic_ids),
                    };
                    if !pending[side].is_empty() {
                        dis.cut(dir, &pending[side], ts, &mut em);
                        pending[side].clear();
                    }
                    dis.gap(dir, len, ts, &mut em);
                }
            }
        }
    }

    fn feed(
        &mut self,
        state: &mut State,
        pending: &mut [Vec<u8>; 2],
        client_is_a: Option<bool>,
        side: usize,
        data: &[u8],
        ts: u64,
    ) {
        let State::Active(dis) = state else { return };
        let dir = direction(client_is_a, side);
        let mut em = Emitter {
            meta: self.meta,
            origin: self.origin,
            anomalies: self.anomalies,
            out: self.out,
            descriptors: self.cfg.descriptors.as_deref(),
            topic_ids: Some(&self.cfg.topic_ids),
        };
        let buf = &mut pending[side];
        let progress = if buf.is_empty() {
            let p = dis.feed(dir, data, ts, &mut em);
            if let Progress::Incomplete { consumed, .. } = p {
                buf.extend_from_slice(data.get(consumed..).unwrap_or_default());
            }
            p
        } else {
            buf.extend_from_slice(data);
            let p = dis.feed(dir, buf, ts, &mut em);
            match p {
                Progress::Done => buf.clear(),
                Progress::Incomplete { consumed, .. } => {
                    buf.drain(..consumed.min(buf.len()));
                }
                Progress::Error(_) | Progress::Finished => {}
            }
            p
        };
        match progress {
            Progress::Error(_) => {
                self.stats.dissector_errors += 1;
                *state = State::Opaque;
                pending[0] = Vec::new();
                pending[1] = Vec::new();
            }
            // The rest of the flow passes without being looked at.
            Progress::Finished => {
                *state = State::Opaque;
                pending[0] = Vec::new();
                pending[1] = Vec::new();
            }
            _ if buf.len() > MAX_PENDING => {
                let lost = buf.len() as u64;
                *buf = Vec::new();
                self.stats.pending_overflow += 1;
                em.anomaly(crate::dissect::anomaly::Common::PendingOverflow);
                dis.gap(dir, lost, ts, &mut em);
            }
            _ => {}
        }
    }
}

fn direction(client_is_a: Option<bool>, side: usize) -> Direction {
    if client_is_a.unwrap_or(true) == (side == 0) {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

#[cfg(test)]
mod tests;
