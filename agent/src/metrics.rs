//! The agent's own metrics (Prometheus text format on `/metrics`), with the `prometheus` crate.
//! Workers hold handles to their labelled series and update them with atomic adds; gauges
//! that describe state (spool size, subscriptions) are set by the worker's housekeeping once a
//! second and at scrape time.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use sinks::SinkMetrics;

pub struct Metrics {
    pub registry: Registry,
    pub packets: IntCounterVec,
    pub bytes: IntCounterVec,
    pub kernel_packets: IntCounterVec,
    pub kernel_drops: IntCounterVec,
    pub kernel_freezes: IntCounterVec,
    pub spool_bytes: IntGaugeVec,
    pub spool_segments: IntGaugeVec,
    pub spool_oldest_age_seconds: IntGaugeVec,
    pub spool_write_errors: IntCounterVec,
    pub spool_segments_deleted: IntCounterVec,
    pub dissected_packets: IntCounter,
    pub exchanges: IntCounterVec,
    pub flows_active: IntGaugeVec,
    /// `tapwire_pipeline_memory_bytes{worker}`.
    pub pipeline_memory: IntGaugeVec,
    pub subscriptions: IntGauge,
    pub dissection_active: IntGauge,
    pub subscriber_drops: IntCounter,
    pub pipeline_drops: IntCounterVec,
    /// `tapwire_sink_filter_dropped_total{sink}`.
    pub sink_filter_dropped: IntCounterVec,
    /// `tapwire_dissect_anomalies_total{protocol,name}`.
    pub anomalies: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub sinks: SinkMetrics,
    pub route_overflow: IntCounter,
    pub spool_limit: IntGauge,
    /// `tapwire_tls_tracing`: 1 while the TLS plaintext source's probes are attached (0
    /// always in a build without the `tls` feature).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_tracing: IntGauge,
    /// `tapwire_tls_libraries_attached`: library files with probes.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_libraries: IntGauge,
    /// `tapwire_tls_libraries_over_cap`: library files the last scan found past the cap.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_libraries_over_cap: IntGauge,
    /// `tapwire_tls_processes_unsupported{reason}`: processes whose executable does TLS the
    /// tracer cannot follow.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_unsupported: IntGaugeVec,
    /// `tapwire_tls_execs_lost_total`: exec events not seen at once (the rescan finds them).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_execs_lost: IntCounter,
    /// `tapwire_tls_attach_failures_total{reason}`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_attach_failures: IntCounterVec,
    /// `tapwire_tls_connections_total{picked_up}`: TLS connections whose plaintext was fed,
    /// at their start or mid-stream (open before the probes attached to their process).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls_connections: IntCounterVec,
    /// `tapwire_tls_chunks_total{outcome}` and `tapwire_tls_bytes_total{outcome}`.
    pub tls_chunks: IntCounterVec,
    pub tls_bytes: IntCounterVec,
}

/// The outcomes `tapwire_tls_chunks_total` counts: dissected (handed to the pipeline),
/// duplicate (the other end of a connection traced on this node), unbound (no socket known),
/// lost (the ring buffer or the agent's queue was full), bad (a record the parser refused),
/// unordered (released before its reordering window ended: the window's cap was reached).
pub const TLS_CHUNK_OUTCOMES: [&str; 6] = [
    "dissected",
    "duplicate",
    "unbound",
    "lost",
    "bad",
    "unordered",
];

/// The outcomes `tapwire_tls_bytes_total` counts: as for chunks, and truncated (bytes past
/// the per-call cap of 16 chunks).
pub const TLS_BYTE_OUTCOMES: [&str; 4] = ["dissected", "duplicate", "lost", "truncated"];

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let dissected_packets = IntCounter::new(
            "tapwire_dissected_packets_total",
            "Packets decoded and dissected (only while someone subscribes).",
        )
        .expect("valid metric");
        r.register(Box::new(dissected_packets.clone()))
            .expect("registered once");
        let subscriptions = IntGauge::new("tapwire_subscriptions_active", "Live subscriptions.")
            .expect("valid metric");
        r.register(Box::new(subscriptions.clone()))
            .expect("registered once");
        let dissection_active = IntGauge::new(
            "tapwire_dissection_active",
            "1 while at least one subscription makes the workers dissect, else 0.",
        )
        .expect("valid metric");
        r.register(Box::new(dissection_active.clone()))
            .expect("registered once");
        let subscriber_drops = IntCounter::new(
            "tapwire_subscriber_dropped_events_total",
            "Events dropped because a subscriber's queue was full.",
        )
        .expect("valid metric");
        r.register(Box::new(subscriber_drops.clone()))
            .expect("registered once");
        let route_overflow = IntCounter::new(
            "tapwire_route_overflow_total",
            "HTTP routes recorded as `/{path}` because their server had reached its template cap.",
        )
        .expect("valid metric");
        r.register(Box::new(route_overflow.clone()))
            .expect("registered once");
        let spool_limit = IntGauge::new(
            "tapwire_spool_limit_bytes",
            "The spool's size cap (spool.limit).",
        )
        .expect("valid metric");
        r.register(Box::new(spool_limit.clone()))
            .expect("registered once");
        let tls_tracing = IntGauge::new(
            "tapwire_tls_tracing",
            "1 while the TLS plaintext source's eBPF probes are attached (tls.mode), else 0.",
        )
        .expect("valid metric");
        r.register(Box::new(tls_tracing.clone()))
            .expect("registered once");
        let tls_libraries = IntGauge::new(
            "tapwire_tls_libraries_attached",
            "Files with the TLS plaintext source's probes attached: libssl libraries, Go programs, programs with OpenSSL linked in.",
        )
        .expect("valid metric");
        r.register(Box::new(tls_libraries.clone()))
            .expect("registered once");
        let tls_libraries_over_cap = IntGauge::new(
            "tapwire_tls_libraries_over_cap",
            "TLS library files the last scan found but did not attach: past the cap of 256.",
        )
        .expect("valid metric");
        r.register(Box::new(tls_libraries_over_cap.clone()))
            .expect("registered once");
        let m = Metrics {
            tls_tracing,
            tls_libraries,
            tls_libraries_over_cap,
            tls_unsupported: gauge_vec(
                &r,
                "tapwire_tls_processes_unsupported",
                "Processes whose executable does TLS the TLS plaintext source cannot follow, by reason: go_too_old, go_version_unknown, stripped_static_tls, architecture, malformed, no_returns, unreadable.",
                &["reason"],
            ),
            tls_connections: counter_vec(
                &r,
                "tapwire_tls_connections_total",
                "TCP connections whose TLS plaintext was dissected, by when it was picked up: at_start, or midstream (open before the probes attached to its process; its first exchange may be cut).",
                &["picked_up"],
            ),
            tls_execs_lost: {
                let c = IntCounter::new(
                    "tapwire_tls_execs_lost_total",
                    "Program starts the TLS plaintext source's exec queue had no room for (followed at the next rescan instead).",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("registered once");
                c
            },
            tls_attach_failures: counter_vec(
                &r,
                "tapwire_tls_attach_failures_total",
                "Files the TLS plaintext source found but could not attach to, by reason: no_functions, exited, refused.",
                &["reason"],
            ),
            tls_chunks: counter_vec(
                &r,
                "tapwire_tls_chunks_total",
                "Plaintext chunks from the TLS plaintext source, by outcome: dissected, duplicate (the other end of a connection traced on this node), unbound (no socket known), lost (ring buffer or queue full), bad (refused record), unordered (released early from the full reordering window; counted again as dissected or duplicate).",
                &["outcome"],
            ),
            tls_bytes: counter_vec(
                &r,
                "tapwire_tls_bytes_total",
                "Plaintext bytes from the TLS plaintext source, by outcome: dissected, duplicate, lost, truncated (past the per-call cap).",
                &["outcome"],
            ),
            spool_limit,
            sinks: SinkMetrics::new(&r).expect("registered once"),
            route_overflow,
            packets: counter_vec(
                &r,
                "tapwire_capture_packets_total",
                "Packets captured.",
                &["interface"],
            ),
            bytes: counter_vec(
                &r,
                "tapwire_capture_bytes_total",
                "Bytes captured (on the wire).",
                &["interface"],
            ),
            kernel_packets: counter_vec(
                &r,
                "tapwire_kernel_packets_total",
                "Packets the kernel passed to the capture rings.",
                &["interface"],
            ),
            kernel_drops: counter_vec(
                &r,
                "tapwire_kernel_drops_total",
                "Packets the kernel dropped because a capture ring was full.",
                &["interface"],
            ),
            kernel_freezes: counter_vec(
                &r,
                "tapwire_kernel_queue_freezes_total",
                "Times a capture ring's queue froze.",
                &["interface"],
            ),
            spool_bytes: gauge_vec(
                &r,
                "tapwire_spool_bytes",
                "Bytes in the spool.",
                &["worker"],
            ),
            spool_segments: gauge_vec(
                &r,
                "tapwire_spool_segments",
                "Closed segments in the spool.",
                &["worker"],
            ),
            spool_oldest_age_seconds: gauge_vec(
                &r,
                "tapwire_spool_oldest_age_seconds",
                "Age of the oldest packet in the spool.",
                &["worker"],
            ),
            spool_write_errors: counter_vec(
                &r,
                "tapwire_spool_write_errors_total",
                "Spool writes that failed (spooling pauses, capture goes on).",
                &["worker"],
            ),
            spool_segments_deleted: counter_vec(
                &r,
                "tapwire_spool_segments_deleted_total",
                "Segments deleted by the size or age cap.",
                &["worker"],
            ),
            exchanges: counter_vec(
                &r,
                "tapwire_exchanges_total",
                "Exchanges dissected.",
                &["protocol"],
            ),
            pipeline_memory: gauge_vec(
                &r,
                "tapwire_pipeline_memory_bytes",
                "Bytes a worker's pipeline holds as its memory budget counts them (flows, their buffers and dissector state, IP fragments).",
                &["worker"],
            ),
            flows_active: gauge_vec(
                &r,
                "tapwire_flows_active",
                "Flows tracked by a worker's pipeline.",
                &["worker"],
            ),
            pipeline_drops: counter_vec(
                &r,
                "tapwire_pipeline_drops_total",
                "What the pipeline's caps dropped, by cap: flows evicted (max_flows), flows closed over the memory budget (memory_budget), out-of-order bytes over the reassembly caps, unconsumed dissector bytes over 128 KiB, IP fragments evicted or timed out.",
                &["cap"],
            ),
            sink_filter_dropped: counter_vec(
                &r,
                "tapwire_sink_filter_dropped_total",
                "Exchanges dropped before a sink's filter because its filter stage was behind (they were never offered to the sink).",
                &["sink"],
            ),
            anomalies: counter_vec(
                &r,
                "tapwire_dissect_anomalies_total",
                "Oddities the dissectors met and counted instead of failing (malformed input, caps reached, refused nesting, unknown header-table entries), by protocol and name.",
                &["protocol", "name"],
            ),
            duplicates: counter_vec(
                &r,
                "tapwire_capture_duplicates_total",
                "Copies of a packet seen again on another interface (any), skipped.",
                &["interface"],
            ),
            dissected_packets,
            subscriptions,
            dissection_active,
            subscriber_drops,
            registry: r,
        };
        m.touch();
        m
    }

    /// Series that exist before their first event (so rates and alerts see a 0, not nothing).
    fn touch(&self) {
        for (cap, _) in pipeline::Stats::default().cap_drops() {
            self.pipeline_drops.with_label_values(&[cap]);
        }
        for o in TLS_CHUNK_OUTCOMES {
            self.tls_chunks.with_label_values(&[o]);
        }
        for o in TLS_BYTE_OUTCOMES {
            self.tls_bytes.with_label_values(&[o]);
        }
        for p in ["at_start", "midstream"] {
            self.tls_connections.with_label_values(&[p]);
        }
    }

    /// Add `n` to the counter of an anomaly named `protocol.name` (as the pipeline names
    /// them: `http2.header_list_too_large`, `amqp.table_too_deep`).
    pub fn anomaly(&self, full: &str, n: u64) {
        let (protocol, name) = full.split_once('.').unwrap_or(("pipeline", full));
        self.anomalies
            .with_label_values(&[protocol, name])
            .inc_by(n);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut s);
        s
    }
}
