//! tapwire's packet pipeline: capture files in, [`schemas::Exchange`] events out.
//!
//! Stages: [`source`] (pcap/pcapng files, streamed) → [`decode`] (link layer to TCP/UDP,
//! IP defragmentation) → [`flow`] (flow table, TCP reassembly, detection) → the
//! [`protocols`] (one dissector each, listed in [`protocols::REGISTRY`]), built on the
//! [`dissect`] framework (the `Dissector` trait, detection, pairing, bodies). [`Pipeline`] ties them together for one worker; it is
//! single-threaded and shares nothing, so the agent runs one per worker thread with flows
//! sharded by the symmetric flow hash.
//!
//! A second entry, [`Pipeline::stream`], takes plaintext streams (a TLS connection's bytes as
//! its program wrote or read them, from the `tls` crate) into the same flow table and
//! dissectors: each stream is a flow of its own, ordered by its offsets.

pub mod decode;
pub mod dissect;
pub mod flow;
pub mod protocols;
pub mod redact;
pub mod source;
pub mod wire;

pub use dissect::StreamOrigin;
pub use flow::{Endpoint, StreamChunk};

use schemas::Exchange;

use decode::defrag::{DefragStats, Defragmenter};
use decode::{DecodeStats, Decoder, LinkType};
use dissect::AnomalyCounts;
use flow::{FlowConfig, FlowStats, FlowTable};

/// Pipeline limits, and the redaction applied to every exchange.
#[derive(Debug, Clone)]
pub struct Config {
    pub flow: FlowConfig,
    pub defrag: DefragConfig,
    pub redaction: std::sync::Arc<redact::Redaction>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flow: FlowConfig::default(),
            defrag: DefragConfig::default(),
            // Built once per process: compiling the patterns costs more than dissecting a
            // small capture, and every default pipeline shares them.
            redaction: redact::Redaction::shared_default(),
        }
    }
}

/// Fragment reassembly limits (see `decode::defrag`).
#[derive(Debug, Clone)]
pub struct DefragConfig {
    pub max_bytes: usize,
    pub max_datagrams: usize,
    pub timeout_ns: u64,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_bytes: decode::defrag::DEFAULT_MAX_BYTES,
            max_datagrams: decode::defrag::DEFAULT_MAX_DATAGRAMS,
            timeout_ns: decode::defrag::DEFAULT_TIMEOUT_NS,
        }
    }
}

/// Every counter of the pipeline, for summaries and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub decode: DecodeStats,
    pub defrag: DefragStats,
    pub flows: FlowStats,
    pub anomalies: AnomalyCounts,
    pub exchanges: u64,
}

impl Stats {
    /// Every drop a cap forced, by the cap's name: the `cap` label of the agent's
    /// `tapwire_pipeline_drops_total` and the names `tapwire dissect`'s summary prints. The
    /// one list both read, so a new cap is added here once.
    pub fn cap_drops(&self) -> [(&'static str, u64); 6] {
        [
            ("max_flows", self.flows.evicted),
            ("memory_budget", self.flows.memory_evicted),
            ("reassembly_ooo", self.flows.reassembly.ooo_overflow),
            ("dissector_pending", self.flows.pending_overflow),
            ("defrag_evicted", self.defrag.evicted),
            ("defrag_timed_out", self.defrag.timed_out),
        ]
    }

    /// Add another pipeline's counters to these (one capture read by several workers).
    pub fn add(&mut self, o: &Stats) {
        self.decode.add(&o.decode);
        self.defrag.add(&o.defrag);
        self.flows.add(&o.flows);
        for (k, v) in &o.anomalies.0 {
            *self.anomalies.0.entry(k).or_default() += v;
        }
        self.exchanges += o.exchanges;
    }
}

/// One worker's pipeline: decoder, flow table and dissectors.
pub struct Pipeline {
    decoder: Decoder,
    flows: FlowTable,
    redaction: std::sync::Arc<redact::Redaction>,
    verdicts: redact::Verdicts,
    exchanges: u64,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new(Config::default())
    }
}

impl Pipeline {
    pub fn new(cfg: Config) -> Self {
        let d = cfg.defrag;
        Pipeline {
            decoder: Decoder::new(Defragmenter::new(
                d.max_bytes,
                d.max_datagrams,
                d.timeout_ns,
            )),
            flows: FlowTable::new(cfg.flow, protocols::REGISTRY),
            redaction: cfg.redaction,
            verdicts: redact::Verdicts::default(),
            exchanges: 0,
        }
    }

    /// Process one captured frame; finished exchanges are appended to `out`.
    pub fn packet(
        &mut self,
        link: LinkType,
        ts: u64,
        data: &[u8],
        orig_len: u32,
        out: &mut Vec<Exchange>,
    ) {
        let before = out.len();
        let flows = &mut self.flows;
        self.decoder
            .decode(link, ts, data, orig_len, |seg| flows.segment(seg, out));
        self.done(before, out);
    }

    /// Count and redact the exchanges from `before` on.
    fn done(&mut self, before: usize, out: &mut [Exchange]) {
        for ex in out.get_mut(before..).unwrap_or_default() {
            self.redaction.apply_with(ex, &mut self.verdicts);
        }
        self.exchanges += (out.len() - before) as u64;
    }

    /// Process one chunk of a plaintext stream (see [`FlowTable::stream`]); finished exchanges
    /// are appended to `out`, redacted as packet exchanges are.
    pub fn stream(&mut self, chunk: &StreamChunk<'_>, out: &mut Vec<Exchange>) {
        let before = out.len();
        self.flows.stream(chunk, out);
        self.done(before, out);
    }

    /// Forget a plaintext stream without emitting what it holds (see
    /// [`FlowTable::forget_stream`]).
    pub fn forget_stream(
        &mut self,
        local: Endpoint,
        peer: Endpoint,
        stream: std::num::NonZeroU64,
    ) -> bool {
        self.flows.forget_stream(local, peer, stream)
    }

    /// End of input: close every flow and flush what is pending.
    pub fn finish(&mut self, out: &mut Vec<Exchange>) {
        self.finish_each(out, usize::MAX, |_| {});
    }

    /// [`Pipeline::finish`], handing the exchanges to `each` (redacted, counted) in batches
    /// of about `batch`, so that many open flows at the end are not all turned into
    /// exchanges at once. `out` is empty afterwards unless `each` leaves exchanges in it.
    pub fn finish_each(
        &mut self,
        out: &mut Vec<Exchange>,
        batch: usize,
        mut each: impl FnMut(&mut Vec<Exchange>),
    ) {
        self.decoder.finish();
        let mut before = out.len();
        let (flows, redaction, verdicts, exchanges) = (
            &mut self.flows,
            &self.redaction,
            &mut self.verdicts,
            &mut self.exchanges,
        );
        let mut hand = |out: &mut Vec<Exchange>| {
            for ex in out.get_mut(before..).unwrap_or_default() {
                redaction.apply_with(ex, verdicts);
            }
            *exchanges += (out.len() - before) as u64;
            each(out);
            before = out.len();
        };
        flows.finish_each(out, batch, &mut hand);
        hand(out);
    }

    /// Flows currently tracked.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Bytes held in reassembly and defragmentation buffers.
    pub fn buffered_bytes(&self) -> usize {
        self.flows.buffered_bytes() + self.decoder.defrag().held_bytes()
    }

    /// Bytes the pipeline holds as its memory budget counts them: every flow (record,
    /// buffers, dissector state), IP fragments awaiting reassembly and the redaction memo.
    pub fn held_bytes(&self) -> usize {
        self.flows.held_bytes() + self.decoder.defrag().held_bytes() + self.verdicts.held_bytes()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            decode: self.decoder.stats.clone(),
            defrag: self.decoder.defrag().stats.clone(),
            flows: self.flows.stats.clone(),
            anomalies: self.flows.anomalies.clone(),
            exchanges: self.exchanges,
        }
    }
}
