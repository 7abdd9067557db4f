//! Capture workers: one blocking thread per ring (rings of one interface share a fanout
//! group), each spooling every packet and, only while someone subscribes, running the
//! pipeline on it and publishing the exchanges. A packet's steps in `Worker::run`: capture
//! (dedup, count), spool ([`Record`], `WorkerSpool::write`), dissect ([`on_demand`],
//! [`dissect`]) and publish ([`publish`]); ARCHITECTURE.md §2 follows it further.
//!
//! Per packet a worker does no allocation: the spool writes into its buffered file, the
//! cooked header for `any` captures is built in a reused buffer, and exchanges go out through
//! the hub's bounded queues. Housekeeping (kernel counters, spool caps, gauges) runs once a
//! second of wall time.

pub mod bpf;
pub mod dedup;
pub mod ring;
pub mod source;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipeline::Pipeline;
use pipeline::decode::LinkType;

use crate::demand::Hub;
use crate::metrics::Metrics;
use crate::spool::{SpoolConfig, WorkerSpool};
use ring::{Packet, Ring, RingConfig};
use source::Source;

/// pcap LINKTYPE values the spool writes.
const LINKTYPE_ETHERNET: u16 = 1;
const LINKTYPE_RAW: u16 = 101;
const LINKTYPE_LINUX_SLL2: u16 = 276;
use source::ARPHRD_NONE;

/// Stack of every thread that runs a pipeline (capture workers, and the API runtime's threads
/// that replay the spool and evaluate filters). Parsers never recurse on wire-controlled
/// depth without a cap; this is the room those caps were measured against, with a margin.
pub const PIPELINE_STACK: usize = 16 << 20;

/// What every worker shares.
pub struct Shared {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub stop: AtomicBool,
    /// `http.route` templates, shared by the sinks (and their overflow count).
    pub routes: Arc<sinks::route::Routes>,
    /// Every pipeline's configuration (the workers' and the `since` replays').
    pub pipeline: pipeline::Config,
}

/// One capture: its sources (one per worker), already open (so errors surface before any
/// thread starts).
pub struct Capture {
    pub label: String,
    pub rings: Vec<Box<dyn Source>>,
}

/// Open `workers` rings on `interface` (`None`: all, cooked) in one fanout group.
pub fn open(
    interface: Option<&str>,
    workers: usize,
    group: u16,
    base: &RingConfig,
) -> Result<Capture, ring::CaptureError> {
    let mut rings = Vec::new();
    for _ in 0..workers.max(1) {
        let cfg = RingConfig {
            interface: interface.map(str::to_string),
            fanout_group: (workers > 1).then_some(group),
            ..base.clone()
        };
        rings.push(Box::new(Ring::open(&cfg)?) as Box<dyn Source>);
    }
    Ok(Capture {
        label: interface.unwrap_or("any").to_string(),
        rings,
    })
}

/// Start one thread per ring; `first_worker` numbers their spool folders.
pub fn spawn(
    capture: Capture,
    first_worker: usize,
    workers_total: usize,
    spool: &SpoolConfig,
    shared: Arc<Shared>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for (i, ring) in capture.rings.into_iter().enumerate() {
        let index = first_worker + i;
        let snaplen = spool.snaplen as usize;
        let spool = WorkerSpool::open(spool, index, workers_total)?;
        let shared = shared.clone();
        let label = capture.label.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("tapwire-w{index}"))
                .stack_size(PIPELINE_STACK)
                .spawn(move || Worker::new(index, label, ring, spool, shared, snaplen).run())?,
        );
    }
    Ok(handles)
}

/// The pipeline's counters already added to the metrics (a new pipeline starts from zero).
#[derive(Default)]
pub(crate) struct Mirror {
    drops: rustc_hash::FxHashMap<&'static str, u64>,
    anomalies: pipeline::dissect::AnomalyCounts,
}

impl Mirror {
    /// Add what the pipeline counted since the last call, by name (`Stats::cap_drops`, the
    /// anomaly names).
    pub(crate) fn catch_up(&mut self, m: &Metrics, p: &Pipeline) {
        let s = p.stats();
        for (cap, now) in s.cap_drops() {
            let seen = self.drops.entry(cap).or_insert(0);
            if now > *seen {
                m.pipeline_drops
                    .with_label_values(&[cap])
                    .inc_by(now - *seen);
                *seen = now;
            }
        }
        for (name, &count) in &s.anomalies.0 {
            let seen = self.anomalies.0.entry(name).or_insert(0);
            if count > *seen {
                m.anomaly(name, count - *seen);
                *seen = count;
            }
        }
    }
}

struct Worker {
    index: usize,
    label: String,
    ring: Box<dyn Source>,
    spool: WorkerSpool,
    shared: Arc<Shared>,
    pipe: Option<Pipeline>,
    out: Vec<schemas::Exchange>,
    /// Cooked header + packet for the pipeline (`any` captures).
    scratch: Vec<u8>,
    names: Vec<(i32, String)>,
    /// What of the pipeline's counters the metrics already have.
    mirror: Mirror,
    /// Copies of one packet seen on several interfaces (`any` only).
    dedup: dedup::Dedup,
    /// Bytes of a packet dissected (as the spool keeps them).
    snaplen: usize,
}

/// How a packet is recorded: (link type, link header built for the record, its length, bytes
/// of the packet it replaces). The cooked header for `any`; for Ethernet, the addresses plus
/// the VLAN tag the NIC stripped into the ring header (as libpcap restores it).
fn record_header(p: &Packet<'_>) -> (u16, [u8; 20], usize, usize) {
    let mut head = [0u8; 20];
    if p.cooked {
        (LINKTYPE_LINUX_SLL2, sll2(p), 20, 0)
    } else if p.hatype == ARPHRD_NONE {
        (LINKTYPE_RAW, head, 0, 0)
    } else if let (Some(tci), Some(macs)) = (p.vlan, p.data.get(..12)) {
        head[..12].copy_from_slice(macs);
        head[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        head[14..16].copy_from_slice(&tci.to_be_bytes());
        (LINKTYPE_ETHERNET, head, 16, 12)
    } else {
        (LINKTYPE_ETHERNET, head, 0, 0)
    }
}

/// The 20-byte LINKTYPE_LINUX_SLL2 header for a cooked packet.
fn sll2(p: &Packet<'_>) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&p.protocol.to_be_bytes());
    h[4..8].copy_from_slice(&p.ifindex.to_be_bytes());
    h[8..10].copy_from_slice(&p.hatype.to_be_bytes());
    h[10] = p.pkttype;
    h
}

/// A packet as the spool records it and the pipeline reads it.
struct Record<'a> {
    /// pcap LINKTYPE.
    link: u16,
    /// Link header built for the record (see [`record_header`]), `hlen` bytes of it.
    head: [u8; 20],
    hlen: usize,
    /// The packet's bytes after what the built header replaces.
    data: &'a [u8],
    /// Original length of the record.
    orig_len: u32,
}

impl<'a> Record<'a> {
    fn of(p: &Packet<'a>) -> Record<'a> {
        let (link, head, hlen, skip) = record_header(p);
        let data = p.data.get(skip..).unwrap_or_default();
        let orig_len = p.orig_len + hlen as u32 - skip as u32;
        Record {
            link,
            head,
            hlen,
            data,
            orig_len,
        }
    }

    fn prefix(&self) -> &[u8] {
        &self.head[..self.hlen]
    }
}

/// The interface's name, looked up once per interface.
fn interface_name(names: &mut Vec<(i32, String)>, ifindex: i32) -> &str {
    let at = match names.iter().position(|(i, _)| *i == ifindex) {
        Some(at) => at,
        None => {
            let n = ring::ifname(ifindex).unwrap_or_else(|| ifindex.to_string());
            names.push((ifindex, n));
            names.len() - 1
        }
    };
    names.get(at).map_or("", |(_, n)| n.as_str())
}

/// The worker's pipeline while someone subscribes (made on the first subscriber), `None`
/// otherwise (dropped, its counters caught up, when the last one leaves).
fn on_demand<'p>(
    pipe: &'p mut Option<Pipeline>,
    shared: &Shared,
    mirror: &mut Mirror,
) -> Option<&'p mut Pipeline> {
    if shared.hub.active() == 0 {
        if let Some(p) = pipe.take() {
            mirror.catch_up(&shared.metrics, &p);
            shared.metrics.dissection_active.set(0);
        }
        return None;
    }
    Some(pipe.get_or_insert_with(|| {
        shared.metrics.dissection_active.set(1);
        *mirror = Mirror::default();
        Pipeline::new(shared.pipeline.clone())
    }))
}

/// Run the pipeline on a recorded packet (cut to the spool's snaplen, so a replay sees the
/// same bytes); exchanges are appended to `out`.
fn dissect(
    pl: &mut Pipeline,
    rec: &Record<'_>,
    ts: u64,
    snaplen: usize,
    scratch: &mut Vec<u8>,
    out: &mut Vec<schemas::Exchange>,
) {
    let data = &rec.data[..rec.data.len().min(snaplen.saturating_sub(rec.hlen))];
    let lt = LinkType::from_linktype(u32::from(rec.link)).unwrap_or(LinkType::Ethernet);
    if rec.hlen > 0 {
        scratch.clear();
        scratch.extend_from_slice(rec.prefix());
        scratch.extend_from_slice(data);
        pl.packet(lt, ts, scratch, rec.orig_len, out);
    } else {
        pl.packet(lt, ts, data, rec.orig_len, out);
    }
}

/// Count and hand the exchanges to the hub.
pub(crate) fn publish(shared: &Shared, out: &mut Vec<schemas::Exchange>) {
    for ex in out.drain(..) {
        shared
            .metrics
            .exchanges
            .with_label_values(&[ex.protocol.as_str()])
            .inc();
        shared.hub.publish(ex);
    }
}

impl Worker {
    fn new(
        index: usize,
        label: String,
        ring: Box<dyn Source>,
        spool: WorkerSpool,
        shared: Arc<Shared>,
        snaplen: usize,
    ) -> Self {
        Worker {
            index,
            label,
            ring,
            spool,
            shared,
            pipe: None,
            out: Vec::new(),
            scratch: Vec::with_capacity(1 << 16),
            names: Vec::new(),
            mirror: Mirror::default(),
            dedup: dedup::Dedup::default(),
            snaplen,
        }
    }

    fn run(mut self) {
        let m = self.shared.metrics.clone();
        let packets = m.packets.with_label_values(&[&self.label]);
        let bytes = m.bytes.with_label_values(&[&self.label]);
        let mut last = Instant::now();
        let mut last_ts = 0u64;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let Worker {
                ring,
                spool,
                shared,
                pipe,
                out,
                scratch,
                names,
                mirror,
                dedup,
                snaplen,
                ..
            } = &mut self;
            let snaplen = *snaplen;
            ring.next_batch(100, &mut |p| {
                // 1. capture: drop the copy a bridge shows of a veth's packet, count.
                if p.cooked && dedup.is_copy(p.data, p.ts, p.ifindex) {
                    return;
                }
                packets.inc();
                bytes.inc_by(u64::from(p.orig_len));
                last_ts = p.ts;
                // 2. spool, always.
                let rec = Record::of(&p);
                spool.write(
                    p.ifindex as u64,
                    rec.link,
                    interface_name(names, p.ifindex),
                    p.ts,
                    rec.prefix(),
                    rec.data,
                    rec.orig_len,
                );
                // 3. dissect, only while someone subscribes.
                let Some(pl) = on_demand(pipe, shared, mirror) else {
                    return;
                };
                shared.metrics.dissected_packets.inc();
                dissect(pl, &rec, p.ts, snaplen, scratch, out);
                // 4. publish.
                publish(shared, out);
            });
            // The last subscriber may leave while no packet comes: drop the pipeline then too.
            on_demand(&mut self.pipe, &self.shared, &mut self.mirror);
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                self.housekeeping(last_ts);
            }
        }
        if let Some(mut p) = self.pipe.take() {
            p.finish(&mut self.out);
            self.mirror.catch_up(&self.shared.metrics, &p);
            publish(&self.shared, &mut self.out);
        }
        let _ = self.spool.close();
        self.housekeeping(last_ts);
    }

    fn housekeeping(&mut self, now_ts: u64) {
        let m = &self.shared.metrics;
        let k = self.ring.stats();
        m.kernel_packets
            .with_label_values(&[&self.label])
            .inc_by(k.packets);
        m.kernel_drops
            .with_label_values(&[&self.label])
            .inc_by(k.drops);
        m.kernel_freezes
            .with_label_values(&[&self.label])
            .inc_by(k.freezes);
        let w = self.index.to_string();
        spool_housekeeping(m, &w, &mut self.spool, now_ts);
        let dup = m.duplicates.with_label_values(&[&self.label]);
        dup.inc_by(self.dedup.copies.saturating_sub(dup.get()));
        let flows = self.pipe.as_ref().map_or(0, |p| p.flows());
        m.flows_active.with_label_values(&[&w]).set(flows as i64);
        let held = self.pipe.as_ref().map_or(0, |p| p.held_bytes());
        m.pipeline_memory
            .with_label_values(&[&w])
            .set(i64::try_from(held).unwrap_or(i64::MAX));
        if let Some(p) = &self.pipe {
            self.mirror.catch_up(m, p);
        }
    }
}

/// Enforce a spool's caps at `now_ts`, flush it, and export its gauges and counters under
/// the `worker` label (a worker's index, or `tls` for the TLS plaintext's folder).
pub(crate) fn spool_housekeeping(m: &Metrics, worker: &str, spool: &mut WorkerSpool, now_ts: u64) {
    spool.enforce(now_ts);
    spool.flush();
    m.spool_bytes
        .with_label_values(&[worker])
        .set(spool.bytes() as i64);
    m.spool_segments
        .with_label_values(&[worker])
        .set(spool.segments().len() as i64);
    let oldest = spool.segments().first().map(|g| g.first_ts);
    let age = oldest.map_or(0, |o| now_ts.saturating_sub(o) / 1_000_000_000);
    m.spool_oldest_age_seconds
        .with_label_values(&[worker])
        .set(age as i64);
    let errs = m.spool_write_errors.with_label_values(&[worker]);
    errs.inc_by(spool.stats.write_errors.saturating_sub(errs.get()));
    let del = m.spool_segments_deleted.with_label_values(&[worker]);
    del.inc_by(spool.stats.segments_deleted.saturating_sub(del.get()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(data: &[u8], vlan: Option<u16>, cooked: bool) -> Packet<'_> {
        Packet {
            ts: 1,
            data,
            orig_len: data.len() as u32,
            ifindex: 3,
            pkttype: 4,
            hatype: 1,
            protocol: 0x0800,
            vlan,
            cooked,
        }
    }

    #[test]
    fn a_stripped_vlan_tag_is_restored_and_cooked_packets_get_sll2() {
        let frame: Vec<u8> = (0u8..12).chain([0x08, 0x00, 0x45]).collect();
        let (link, head, hlen, skip) = record_header(&packet(&frame, Some(0x200a), false));
        assert_eq!((link, hlen, skip), (LINKTYPE_ETHERNET, 16, 12));
        let mut rec = head[..hlen].to_vec();
        rec.extend_from_slice(&frame[skip..]);
        assert_eq!(&rec[..12], &frame[..12], "addresses kept");
        assert_eq!(
            &rec[12..16],
            &[0x81, 0x00, 0x20, 0x0a],
            "802.1Q tag, priority and VID 10"
        );
        assert_eq!(
            &rec[16..],
            &[0x08, 0x00, 0x45],
            "then the original EtherType and payload"
        );
        assert_eq!(record_header(&packet(&frame, None, false)).2, 0);
        let (link, head, hlen, skip) = record_header(&packet(&frame[14..], None, true));
        assert_eq!((link, hlen, skip), (LINKTYPE_LINUX_SLL2, 20, 0));
        assert_eq!(&head[0..2], &[0x08, 0x00]);
        assert_eq!(&head[4..8], &3i32.to_be_bytes());
        assert_eq!(head[10], 4, "direction (outgoing)");
    }
}
