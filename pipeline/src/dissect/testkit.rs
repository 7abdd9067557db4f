//! Test support shared by the dissectors' unit tests: feed a dissector the way the flow
//! layer does (bytes it did not consume are kept and fed again with the next piece).

use std::net::{IpAddr, Ipv4Addr};

use schemas::{Exchange, Transport};

use super::{AnomalyCounts, Direction, Dissector, Emitter, FlowMeta, Progress};

/// A client 10.0.0.1:50000 talking to 10.0.0.2 on `server_port`.
pub fn meta(transport: Transport, server_port: u16) -> FlowMeta {
    FlowMeta {
        client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 50000),
        server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), server_port),
        transport,
    }
}

/// `n` copies of `base`, each with one byte changed (a xorshift sequence from `seed` picks the
/// byte and its value): the hostile-input loops of the dissectors' tests.
pub fn mutations(base: &[u8], n: usize, mut seed: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..n).map(move |_| {
        let mut m = base.to_vec();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if !m.is_empty() {
            let i = (seed as usize) % m.len();
            m[i] = (seed >> 40) as u8;
        }
        m
    })
}

/// Drives one dissector through both directions of a flow.
pub struct Driver<D: Dissector> {
    pub d: D,
    pub meta: FlowMeta,
    pub pending: [Vec<u8>; 2],
    pub out: Vec<Exchange>,
    pub anomalies: AnomalyCounts,
    pub ts: u64,
    /// Most unconsumed bytes the flow layer had to hold at once.
    pub peak: usize,
    /// gRPC descriptors the emitter offers.
    pub descriptors: Option<super::protobuf::Descriptors>,
    /// The dissector said it is finished: later bytes are not fed (as the flow layer does).
    pub finished: bool,
    /// Kafka topic ids learned (shared by a configuration's flows in the pipeline).
    pub topic_ids: super::kafka_topics::TopicIds,
}

impl<D: Dissector> Driver<D> {
    pub fn new(d: D, meta: FlowMeta) -> Self {
        Driver {
            d,
            meta,
            pending: [Vec::new(), Vec::new()],
            out: Vec::new(),
            anomalies: AnomalyCounts::default(),
            ts: 0,
            peak: 0,
            descriptors: None,
            finished: false,
            topic_ids: Default::default(),
        }
    }

    /// Feed `bytes` in pieces of `step`; false once the dissector gives up on the flow.
    pub fn try_send(&mut self, dir: Direction, bytes: &[u8], step: usize) -> bool {
        for piece in bytes.chunks(step.max(1)) {
            self.ts += 1;
            if self.finished {
                continue;
            }
            let buf = &mut self.pending[dir.index()];
            buf.extend_from_slice(piece);
            let mut em = Emitter {
                origin: None,
                meta: self.meta,
                anomalies: &mut self.anomalies,
                out: &mut self.out,
                descriptors: self.descriptors.as_ref(),
                topic_ids: Some(&self.topic_ids),
            };
            match self.d.feed(dir, buf, self.ts, &mut em) {
                Progress::Done => buf.clear(),
                Progress::Incomplete { consumed, .. } => {
                    buf.drain(..consumed);
                }
                Progress::Error(_) => return false,
                Progress::Finished => {
                    self.finished = true;
                    buf.clear();
                }
            }
            self.peak = self.peak.max(buf.len());
        }
        true
    }

    /// Feed `bytes` in pieces of `step`; the dissector must not give up.
    pub fn send(&mut self, dir: Direction, bytes: &[u8], step: usize) {
        assert!(self.try_send(dir, bytes, step), "the dissector gave up");
    }

    /// `len` bytes lost: what was held unconsumed is cut, then the gap.
    pub fn gap(&mut self, dir: Direction, len: u64) {
        let mut em = Emitter {
            origin: None,
            meta: self.meta,
            anomalies: &mut self.anomalies,
            out: &mut self.out,
            descriptors: self.descriptors.as_ref(),
            topic_ids: Some(&self.topic_ids),
        };
        let held = std::mem::take(&mut self.pending[dir.index()]);
        if !held.is_empty() {
            self.d.cut(dir, &held, self.ts, &mut em);
        }
        self.d.gap(dir, len, self.ts, &mut em);
    }

    /// End of the flow: the exchanges, the anomalies, and the peak held bytes.
    pub fn close(mut self) -> (Vec<Exchange>, AnomalyCounts, usize) {
        let mut em = Emitter {
            origin: None,
            meta: self.meta,
            anomalies: &mut self.anomalies,
            out: &mut self.out,
            descriptors: self.descriptors.as_ref(),
            topic_ids: Some(&self.topic_ids),
        };
        self.d.close(self.ts + 1, &mut em);
        (self.out, self.anomalies, self.peak)
    }
}
