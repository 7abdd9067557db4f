//! Sinks: where exchanges go when nobody is watching — OTLP spans ([`otlp`]), Prometheus RED
//! metrics ([`red`]) and Kafka messages ([`kafka`]).
//!
//! A sink is a standing subscription. Its configuration is validated without I/O (a bad key is
//! one line naming it), building it connects lazily, and [`Sink::offer`] never blocks the
//! capture worker that calls it: OTLP has a bounded queue in front of its exporter task, Kafka
//! hands the message to librdkafka's bounded queue, and RED metrics are a few atomic adds.
//! Everything a sink cannot deliver is counted in [`SinkMetrics`] by sink and reason, so
//! `offered = delivered + dropped + still queued` holds at every scrape.
//!
//! [`semconv`] names spans and labels per the OpenTelemetry conventions and [`route`] makes the
//! bounded `http.route` templates both read.

pub mod kafka;
pub mod otlp;
pub mod red;
pub mod route;
pub mod semconv;
pub mod settings;

use std::sync::Arc;

use bytes::Bytes;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use schemas::Exchange;

/// One exchange on its way to subscribers and sinks: shared (sinks that queue it keep a
/// reference, never a copy) and serialised to its JSON line at most once, when someone
/// first asks.
pub struct Published {
    ex: Arc<Exchange>,
    line: Option<Option<Bytes>>,
}

impl Published {
    pub fn new(ex: Exchange) -> Self {
        Published::shared(Arc::new(ex))
    }

    /// An exchange already shared (a sink's filter stage hands it on).
    pub fn shared(ex: Arc<Exchange>) -> Self {
        Published { ex, line: None }
    }

    /// The exchange.
    pub fn exchange(&self) -> &Arc<Exchange> {
        &self.ex
    }

    /// Its JSON line (with the trailing newline), or `None` if it cannot be serialised
    /// (never for a valid event).
    pub fn json(&mut self) -> Option<&Bytes> {
        let ex = &self.ex;
        self.line.get_or_insert_with(|| json_line(ex)).as_ref()
    }
}

/// An exchange's JSON line, with its trailing newline.
pub fn json_line(ex: &Exchange) -> Option<Bytes> {
    // Most lines are a few hundred bytes: start there rather than growing from nothing.
    let mut v = Vec::with_capacity(512);
    schemas::text::write_json_line(ex, &mut v).ok()?;
    Some(Bytes::from(v))
}

/// A standing consumer of exchanges.
pub trait Sink: Send + Sync {
    /// Short name used in metrics and messages (`otlp`, `kafka`, `prometheus`).
    fn name(&self) -> &'static str;
    /// Take one exchange. Never blocks; what cannot be queued is dropped and counted.
    fn offer(&self, ev: &mut Published);
    /// Exchanges taken but not yet delivered or dropped (for `tapwire_sink_queued`).
    fn queued(&self) -> u64 {
        0
    }
    /// Stop taking exchanges and deliver what is queued, waiting at most `timeout`.
    fn flush(&self, _timeout: std::time::Duration) {}
}

/// Delivery counters shared by every sink, labelled by sink.
#[derive(Clone)]
pub struct SinkMetrics {
    /// `tapwire_sink_offered_total{sink}`: exchanges handed to the sink.
    pub offered: IntCounterVec,
    /// `tapwire_sink_delivered_total{sink}`: exchanges the receiver acknowledged.
    pub delivered: IntCounterVec,
    /// `tapwire_sink_dropped_total{sink,reason}`: exchanges lost, and why.
    pub dropped: IntCounterVec,
    /// `tapwire_sink_queued{sink}`: exchanges waiting in the sink's queue.
    pub queued: IntGaugeVec,
}

impl SinkMetrics {
    /// The families, registered in `r`.
    pub fn new(r: &Registry) -> prometheus::Result<SinkMetrics> {
        let offered = IntCounterVec::new(
            Opts::new(
                "tapwire_sink_offered_total",
                "Exchanges handed to a sink (after its filter).",
            ),
            &["sink"],
        )?;
        let delivered = IntCounterVec::new(
            Opts::new(
                "tapwire_sink_delivered_total",
                "Exchanges a sink's receiver acknowledged (OTLP export accepted, Kafka delivery report OK, metric recorded).",
            ),
            &["sink"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "tapwire_sink_dropped_total",
                "Exchanges a sink lost, by reason (queue_full, export_failed, a librdkafka error name, ...).",
            ),
            &["sink", "reason"],
        )?;
        let queued = IntGaugeVec::new(
            Opts::new(
                "tapwire_sink_queued",
                "Exchanges waiting in a sink's queue.",
            ),
            &["sink"],
        )?;
        r.register(Box::new(offered.clone()))?;
        r.register(Box::new(delivered.clone()))?;
        r.register(Box::new(dropped.clone()))?;
        r.register(Box::new(queued.clone()))?;
        Ok(SinkMetrics {
            offered,
            delivered,
            dropped,
            queued,
        })
    }

    /// The offered and delivered counters of one sink, looked up once (the per-exchange path
    /// then only adds). Its `queue_full` drop series starts at 0, so alerts see a series
    /// before the first loss.
    pub fn of(&self, sink: &str) -> (prometheus::IntCounter, prometheus::IntCounter) {
        self.dropped.with_label_values(&[sink, "queue_full"]);
        (
            self.offered.with_label_values(&[sink]),
            self.delivered.with_label_values(&[sink]),
        )
    }

    /// Count `n` exchanges of `sink` lost for `reason`.
    pub fn drop_n(&self, sink: &str, reason: &str, n: u64) {
        self.dropped.with_label_values(&[sink, reason]).inc_by(n);
    }
}

/// A key for one connection: `client:port>server:port` (Kafka message key, log lines).
pub fn connection_key(ex: &Exchange) -> String {
    format!(
        "{}:{}>{}:{}",
        ex.client.address, ex.client.port, ex.server.address, ex.server.port
    )
}

/// The exchanges of one of the project's recorded fixtures (`tests/golden/<file>`), for the
/// sinks' unit tests.
#[cfg(test)]
pub(crate) fn golden(file: &str) -> Vec<Exchange> {
    let path = format!(
        "{}/../pipeline/tests/golden/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a golden line is an Exchange"))
        .collect()
}
