//! RED metrics (rate, errors, duration) for Prometheus, named as OpenTelemetry's semantic
//! conventions name them once translated to Prometheus (dots become underscores, the unit is a
//! suffix):
//!
//! | metric | from | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | HTTP, GraphQL | `http_request_method`, `http_response_status_code`, `http_route`, `error_type`, `server_address`, `server_port` |
//! | `http_server_request_body_size_bytes`, `http_server_response_body_size_bytes` | HTTP, GraphQL | the same |
//! | `rpc_server_call_duration_seconds` | gRPC (the `rpc` family) | `rpc_system_name`, `rpc_method`, `rpc_response_status_code`, `server_address`, `server_port` |
//! | `db_client_operation_duration_seconds` | Redis (every `db` family protocol) | `db_system_name`, `db_operation_name`, `db_response_status_code`, `server_address`, `server_port` |
//! | `messaging_client_operation_duration_seconds` | Kafka, RabbitMQ (the `messaging` family) | `messaging_system`, `messaging_operation_name`, `messaging_operation_type`, `messaging_destination_name`, `error_type`, `server_address`, `server_port` |
//! | `dns_lookup_duration_seconds` | DNS | `dns_question_type`, `dns_response_code`, `server_address` |
//! | `websocket_message_size_bytes` | WebSocket messages (tapwire's) | `websocket_direction`, `websocket_opcode`, `error_type` (a close's error code), `server_address`, `server_port` |
//! | `tls_handshake_duration_seconds` | TLS handshakes (tapwire's: the conventions have none) | `tls_client_server_name`, `tls_protocol_version`, `error_type` (the alert of a failed handshake), `server_address`, `server_port` |
//!
//! And one gauge: `tls_server_certificate_not_after_seconds` (`tls_client_server_name`,
//! `tls_server_subject`, `server_address`, `server_port`), the Unix time the certificate a server
//! last showed expires (TLS ≤ 1.2 handshakes: 1.3 encrypts it), for expiry alerts; at most
//! [`RedConfig::max_series`] series, the rest counted in the overflow counter.
//!
//! Every metric also has `k8s_namespace_name` and `k8s_workload_name`: the Kubernetes
//! namespace and workload of the side the metric is about (the server for `*_server_*`, the
//! client for `*_client_*` and `dns_lookup_*`; see [`observed`]), empty without enrichment or
//! when the address is not a pod's.
//!
//! Buckets are the conventions' advisory boundaries (the database ones for `db_*`); body sizes
//! use powers of four from 64 B to 64 MiB. A request that got no response is counted with
//! `error_type="no_response"`. Durations are first request byte to last response byte.
//!
//! Cardinality: each metric keeps at most [`RedConfig::max_series`] label sets; an exchange that
//! would add one more is recorded with every label `_other` (one extra series) and counted in
//! `tapwire_metric_series_overflow_total{metric}`. Routes come from the shared, bounded
//! [`Routes`](crate::route::Routes). Recording is a hash lookup and atomic adds on the capture
//! worker: no queue, nothing to drop, and no allocation for a series already seen (its key is
//! a hash of the label values, checked against the values it keeps; numbers are formatted on
//! the stack).

use std::hash::Hasher;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts,
    Registry,
};
use rustc_hash::{FxHashMap, FxHasher};
use schemas::{Exchange, Family};

use crate::route::Routes;
use crate::semconv::{
    error_type, http_method, http_route, messaging_operation, observed, system, workload_labels,
};
use crate::{Published, Sink, SinkMetrics};

/// The label value an overflowing label set is recorded under.
pub const OTHER: &str = "_other";

/// The series key of a label set: a hash of its values, each followed by a byte that UTF-8
/// never contains (so `["ab", ""]` and `["a", "b"]` differ).
fn series_hash(labels: &[&str]) -> u64 {
    let mut h = FxHasher::default();
    for l in labels {
        h.write(l.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// `a == b`, byte by byte: label values are short, and a `memcmp` call per value cost more
/// than the loop (most of `red_record`'s time in the bench's profile).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// A series' label values, kept.
type Labels = Box<[Box<str>]>;

/// Series by [`series_hash`]; each keeps its label values, to tell apart two label sets whose
/// hashes collide.
struct Series<T> {
    by: FxHashMap<u64, Vec<(Labels, T)>>,
    len: usize,
}

impl<T> Series<T> {
    fn new() -> Self {
        Series {
            by: FxHashMap::default(),
            len: 0,
        }
    }

    fn get(&self, hash: u64, labels: &[&str]) -> Option<&T> {
        self.by.get(&hash)?.iter().find_map(|(kept, t)| {
            (kept.len() == labels.len() && kept.iter().zip(labels).all(|(k, l)| same(k, l)))
                .then_some(t)
        })
    }

    fn insert(&mut self, hash: u64, labels: &[&str], t: T) {
        let kept = labels.iter().map(|l| Box::from(*l)).collect();
        self.by.entry(hash).or_default().push((kept, t));
        self.len += 1;
    }
}

/// Duration buckets of the HTTP, RPC, messaging and DNS conventions (seconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Duration buckets of the database conventions (seconds).
const DB_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
/// Body size buckets (bytes).
const SIZE_BUCKETS: [f64; 11] = [
    64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// Limits of the metrics sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedConfig {
    /// Label sets per metric before new ones become `_other`.
    pub max_series: usize,
}

impl Default for RedConfig {
    fn default() -> Self {
        RedConfig { max_series: 2000 }
    }
}

/// One histogram metric and the label sets it keeps (at most `max_series`).
struct Metric {
    hist: HistogramVec,
    labels: usize,
    /// The series recorded so far: the cap's count, and handles that skip the registry's own
    /// lookup (and its allocations) on every observation.
    series: Mutex<Series<Histogram>>,
    /// The `_other` series, made on the first overflow.
    other: OnceLock<Histogram>,
    /// `tapwire_metric_series_overflow_total` of this metric.
    overflow: IntCounter,
}

/// The RED histograms, registered in the agent's registry.
pub struct RedMetrics {
    cfg: RedConfig,
    routes: Arc<Routes>,
    http_duration: Metric,
    http_request_size: Metric,
    http_response_size: Metric,
    rpc_duration: Metric,
    db_duration: Metric,
    messaging_duration: Metric,
    dns_duration: Metric,
    tls_duration: Metric,
    websocket_size: Metric,
    certificates: Certificates,
    offered: IntCounter,
    delivered: IntCounter,
}

/// `tls_server_certificate_not_after_seconds`: one gauge per certificate seen, capped.
struct Certificates {
    gauge: GaugeVec,
    series: Mutex<Series<Gauge>>,
    overflow: IntCounter,
}

impl Certificates {
    fn new(r: &Registry, overflow: &IntCounterVec) -> prometheus::Result<Certificates> {
        let name = "tls_server_certificate_not_after_seconds";
        let gauge = GaugeVec::new(
            Opts::new(
                name,
                "When the certificate a TLS server last showed expires (Unix seconds; TLS 1.2 and older handshakes, whose certificate is not encrypted).",
            ),
            &[
                "tls_client_server_name",
                "tls_server_subject",
                "server_address",
                "server_port",
            ],
        )?;
        r.register(Box::new(gauge.clone()))?;
        Ok(Certificates {
            gauge,
            series: Mutex::new(Series::new()),
            overflow: overflow.with_label_values(&[name]),
        })
    }

    fn set(&self, labels: &[&str; 4], value: f64, cap: usize) {
        let hash = series_hash(labels);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = series.get(hash, labels) {
            g.set(value);
        } else if series.len < cap {
            let g = self.gauge.with_label_values(labels);
            g.set(value);
            series.insert(hash, labels, g);
        } else {
            self.overflow.inc();
        }
    }
}

/// `2029-03-10T03:11:07Z` as Unix seconds (the form the TLS dissector writes), by the
/// days-from-civil algorithm.
fn unix_seconds(t: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

const HTTP_LABELS: [&str; 8] = [
    "http_request_method",
    "http_response_status_code",
    "http_route",
    "error_type",
    "server_address",
    "server_port",
    "k8s_namespace_name",
    "k8s_workload_name",
];

fn metric(
    r: &Registry,
    overflow: &IntCounterVec,
    name: &'static str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> prometheus::Result<Metric> {
    let hist = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(hist.clone()))?;
    Ok(Metric {
        hist,
        labels: labels.len(),
        series: Mutex::new(Series::new()),
        other: OnceLock::new(),
        overflow: overflow.with_label_values(&[name]),
    })
}

impl RedMetrics {
    pub fn new(
        r: &Registry,
        cfg: RedConfig,
        routes: Arc<Routes>,
        counters: SinkMetrics,
    ) -> prometheus::Result<RedMetrics> {
        let overflow = IntCounterVec::new(
            Opts::new(
                "tapwire_metric_series_overflow_total",
                "Exchanges recorded under the `_other` label set because their metric had reached its series cap.",
            ),
            &["metric"],
        )?;
        r.register(Box::new(overflow.clone()))?;
        let (offered, delivered) = counters.of("prometheus");
        Ok(RedMetrics {
            cfg,
            routes,
            http_duration: metric(
                r,
                &overflow,
                "http_server_request_duration_seconds",
                "Duration of HTTP server requests seen on the wire.",
                &DURATION_BUCKETS,
                &HTTP_LABELS,
            )?,
            http_request_size: metric(
                r,
                &overflow,
                "http_server_request_body_size_bytes",
                "Size of HTTP server request bodies (after transfer decoding).",
                &SIZE_BUCKETS,
                &HTTP_LABELS,
            )?,
            http_response_size: metric(
                r,
                &overflow,
                "http_server_response_body_size_bytes",
                "Size of HTTP server response bodies (after transfer decoding).",
                &SIZE_BUCKETS,
                &HTTP_LABELS,
            )?,
            rpc_duration: metric(
                r,
                &overflow,
                "rpc_server_call_duration_seconds",
                "Duration of RPCs (gRPC) seen on the wire.",
                &DURATION_BUCKETS,
                &[
                    "rpc_system_name",
                    "rpc_method",
                    "rpc_response_status_code",
                    "server_address",
                    "server_port",
                    "k8s_namespace_name",
                    "k8s_workload_name",
                ],
            )?,
            db_duration: metric(
                r,
                &overflow,
                "db_client_operation_duration_seconds",
                "Duration of database operations (Redis commands) seen on the wire.",
                &DB_BUCKETS,
                &[
                    "db_system_name",
                    "db_operation_name",
                    "db_response_status_code",
                    "server_address",
                    "server_port",
                    "k8s_namespace_name",
                    "k8s_workload_name",
                ],
            )?,
            messaging_duration: metric(
                r,
                &overflow,
                "messaging_client_operation_duration_seconds",
                "Duration of messaging operations (Kafka requests, AMQP methods) seen on the wire.",
                &DURATION_BUCKETS,
                &[
                    "messaging_system",
                    "messaging_operation_name",
                    "messaging_operation_type",
                    "messaging_destination_name",
                    "error_type",
                    "server_address",
                    "server_port",
                    "k8s_namespace_name",
                    "k8s_workload_name",
                ],
            )?,
            dns_duration: metric(
                r,
                &overflow,
                "dns_lookup_duration_seconds",
                "Duration of DNS lookups seen on the wire.",
                &DURATION_BUCKETS,
                &[
                    "dns_question_type",
                    "dns_response_code",
                    "server_address",
                    "k8s_namespace_name",
                    "k8s_workload_name",
                ],
            )?,
            tls_duration: metric(
                r,
                &overflow,
                "tls_handshake_duration_seconds",
                "Duration of TLS handshakes seen on the wire (ClientHello to the server's last handshake record), by server name and outcome.",
                &DURATION_BUCKETS,
                &[
                    "tls_client_server_name",
                    "tls_protocol_version",
                    "error_type",
                    "server_address",
                    "server_port",
                    "k8s_namespace_name",
                    "k8s_workload_name",
                ],
            )?,
            websocket_size: metric(
                r,
                &overflow,
                "websocket_message_size_bytes",
                "Size of WebSocket messages seen on the wire, by sender and opcode.",
                &SIZE_BUCKETS,
                &[
                    "websocket_direction",
                    "websocket_opcode",
                    "error_type",
                    "server_address",
                    "server_port",
                    "k8s_namespace_name",
                    "k8s_workload_name",
                ],
            )?,
            certificates: Certificates::new(r, &overflow)?,
            offered,
            delivered,
        })
    }

    /// Record one exchange.
    pub fn record(&self, ex: &Exchange) {
        let secs = ex
            .end_time_unix_nano
            .saturating_sub(ex.start_time_unix_nano) as f64
            / 1e9;
        let mut port_buf = itoa::Buffer::new();
        let port = port_buf.format(ex.server.port);
        let addr = ex.server.address.as_str();
        let err = error_type(ex).unwrap_or_default();
        let (ns, wl) = workload_labels(observed(ex));
        match ex.protocol.family() {
            Family::Http => {
                let (method, _) = http_method(ex);
                let route = http_route(ex, &self.routes);
                let route = route.as_deref().unwrap_or_default();
                let resp = ex.http.as_ref().and_then(|h| h.response.as_ref());
                let mut code_buf = itoa::Buffer::new();
                let code = resp
                    .and_then(|r| r.status_code)
                    .map_or("", |c| code_buf.format(c));
                let labels = [method, code, route, &err, addr, port, ns, wl];
                // The three HTTP families share their label set: one key for all three.
                let hash = series_hash(&labels);
                self.observe_key(&self.http_duration, hash, &labels, secs);
                if let Some(b) = ex.http.as_ref().and_then(|h| h.request.body.as_ref()) {
                    self.observe_key(&self.http_request_size, hash, &labels, b.size as f64);
                }
                if let Some(b) = resp.and_then(|r| r.body.as_ref()) {
                    self.observe_key(&self.http_response_size, hash, &labels, b.size as f64);
                }
            }
            Family::Rpc => {
                let rpc = ex.rpc.as_ref();
                let method = rpc.and_then(|r| r.method.as_deref()).unwrap_or_default();
                let status = rpc
                    .and_then(|r| r.response.as_ref())
                    .map(|r| r.status_code.as_str())
                    .unwrap_or(&err);
                let labels = [system(ex), method, status, addr, port, ns, wl];
                self.observe(&self.rpc_duration, &labels, secs);
            }
            Family::Db => {
                let db = ex.db.as_ref();
                let op = db
                    .and_then(|d| d.operation.as_ref())
                    .map(|o| o.name.as_str())
                    .unwrap_or_default();
                let code = db
                    .and_then(|d| d.response.as_ref())
                    .and_then(|r| r.status_code.as_deref())
                    .unwrap_or_default();
                let labels = [system(ex), op, code, addr, port, ns, wl];
                self.observe(&self.db_duration, &labels, secs);
            }
            Family::Messaging => {
                let m = ex.messaging.as_ref();
                let (op, ty) = match messaging_operation(ex) {
                    Some((op, ty, _)) => (op, ty.unwrap_or_default()),
                    None => (String::new(), ""),
                };
                let dest = m
                    .and_then(|m| m.destination.as_ref())
                    .map(|d| d.name.as_str())
                    .unwrap_or_default();
                let labels = [system(ex), &op, ty, dest, &err, addr, port, ns, wl];
                self.observe(&self.messaging_duration, &labels, secs);
            }
            Family::Dns => {
                let d = ex.dns.as_ref();
                let qtype = d
                    .and_then(|d| d.question.as_ref())
                    .map(|q| q.qtype.as_str())
                    .unwrap_or_default();
                let rcode = d.and_then(|d| d.response_code.as_deref()).unwrap_or(&err);
                let labels = [qtype, rcode, addr, ns, wl];
                self.observe(&self.dns_duration, &labels, secs);
            }
            Family::Websocket => {
                let w = ex.websocket.as_ref();
                let (dir, op) = w.map_or(("", ""), |w| (w.direction.as_str(), w.opcode.as_str()));
                let size = w.map_or(0, |w| w.message.size) as f64;
                let labels = [dir, op, &err, addr, port, ns, wl];
                self.observe(&self.websocket_size, &labels, size);
            }
            Family::Tls => {
                let t = ex.tls.as_ref();
                let sni = t
                    .and_then(|t| t.client.as_ref())
                    .and_then(|c| c.server_name.as_deref())
                    .unwrap_or_default();
                let version = t
                    .and_then(|t| t.protocol.as_ref())
                    .map(|p| p.version.as_str())
                    .unwrap_or_default();
                let labels = [sni, version, &err, addr, port, ns, wl];
                self.observe(&self.tls_duration, &labels, secs);
                let server = t.and_then(|t| t.server.as_ref());
                if let Some(s) = server
                    && let Some(at) = s.not_after.as_deref().and_then(unix_seconds)
                {
                    let subject = s.subject.as_deref().unwrap_or_default();
                    self.certificates.set(
                        &[sni, subject, addr, port],
                        at as f64,
                        self.cfg.max_series,
                    );
                }
            }
        }
    }

    fn observe(&self, f: &Metric, labels: &[&str], v: f64) {
        self.observe_key(f, series_hash(labels), labels, v);
    }

    /// Observe `v` in the series of `labels`, whose [`series_hash`] is `hash`.
    fn observe_key(&self, f: &Metric, hash: u64, labels: &[&str], v: f64) {
        debug_assert_eq!(labels.len(), f.labels);
        {
            let mut series = f.series.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = series.get(hash, labels) {
                // Atomic adds: cheap enough to do under the lock (no handle clone).
                h.observe(v);
                return;
            }
            if series.len < self.cfg.max_series {
                let h = f.hist.with_label_values(labels);
                h.observe(v);
                series.insert(hash, labels, h);
                return;
            }
        }
        f.overflow.inc();
        f.other
            .get_or_init(|| f.hist.with_label_values(&vec![OTHER; f.labels]))
            .observe(v);
    }
}

impl Sink for RedMetrics {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn offer(&self, ev: &mut Published) {
        self.offered.inc();
        self.record(ev.exchange());
        self.delivered.inc();
    }
}

/// The keys under `sinks.prometheus:` in the agent's configuration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromFile {
    pub enabled: Option<bool>,
    pub max_series: Option<usize>,
    /// A CEL filter (checked by the agent, which evaluates it).
    pub filter: Option<String>,
}

impl PromFile {
    /// The sink's configuration, or `None` when it is not enabled.
    pub fn resolve(self) -> Result<Option<RedConfig>, String> {
        if !self.enabled.unwrap_or(false) {
            return Ok(None);
        }
        let mut c = RedConfig::default();
        if let Some(n) = self.max_series {
            if !(1..=1_000_000).contains(&n) {
                return Err(format!(
                    "sinks.prometheus.max_series: {n} is not between 1 and 1000000"
                ));
            }
            c.max_series = n;
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden;
    use crate::route::RouteConfig;

    #[test]
    fn label_sets_sharing_a_hash_stay_apart() {
        assert_ne!(series_hash(&["a", "b"]), series_hash(&["ab", ""]));
        let mut s = Series::new();
        s.insert(7, &["a", "b"], 1);
        s.insert(7, &["ab", ""], 2);
        assert_eq!(s.get(7, &["a", "b"]), Some(&1));
        assert_eq!(s.get(7, &["ab", ""]), Some(&2));
        assert_eq!(s.get(7, &["a", ""]), None);
        assert_eq!(s.get(8, &["a", "b"]), None);
        assert_eq!(s.len, 2);
    }

    fn red(max_series: usize) -> (Registry, RedMetrics) {
        let r = Registry::new();
        let counters = SinkMetrics::new(&r).expect("registers");
        let m = RedMetrics::new(
            &r,
            RedConfig { max_series },
            Arc::new(Routes::new(RouteConfig::default())),
            counters,
        )
        .expect("registers");
        (r, m)
    }

    fn text(r: &Registry) -> String {
        let mut s = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&r.gather(), &mut s)
            .expect("encodes");
        s
    }

    #[test]
    fn known_label_sets_add_no_series() {
        let (_r, m) = red(2000);
        let kept = |f: &Metric| f.series.lock().map(|s| s.len).unwrap_or_default();
        let files = [
            "http1/nginx-keepalive-pipelining.ndjson",
            "redis/redis-server-mixed.ndjson",
        ];
        let record = || {
            for f in files {
                for e in golden(f) {
                    m.record(&e);
                }
            }
        };
        record();
        let (http, db) = (kept(&m.http_duration), kept(&m.db_duration));
        assert!(http > 1 && db > 1, "{http} {db}");
        record();
        assert_eq!((kept(&m.http_duration), kept(&m.db_duration)), (http, db));
    }

    #[test]
    fn every_protocol_lands_in_its_histogram() {
        let (r, m) = red(2000);
        for f in [
            "http1/nginx-keepalive-pipelining.ndjson",
            "grpc/grpcio-bookshop.ndjson",
            "redis/redis-server-mixed.ndjson",
            "kafka/tansu-confluent.ndjson",
            "amqp/rabbitmq-pika.ndjson",
            "dns/dnsmasq-records.ndjson",
            "graphql/strawberry-graphql-h1.ndjson",
            "tls/nginx-tls.ndjson",
            "postgresql/postgres-psql-psycopg.ndjson",
            "websocket/websockets-echo.ndjson",
        ] {
            for e in golden(f) {
                m.record(&e);
            }
        }
        let t = text(&r);
        let want = [
            r#"http_server_request_duration_seconds_count{error_type="",http_request_method="GET",http_response_status_code="200",http_route="/index.html",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="80"} 3"#,
            r#"http_server_request_duration_seconds_count{error_type="500",http_request_method="GET",http_response_status_code="500",http_route="/fail",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="80"} 1"#,
            r#"http_server_request_body_size_bytes_count{error_type="",http_request_method="POST",http_response_status_code="201",http_route="/upload",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="80"} 2"#,
            r#"rpc_server_call_duration_seconds_count{k8s_namespace_name="",k8s_workload_name="",rpc_method="tapwire.test.Bookshop/GetBook",rpc_response_status_code="NOT_FOUND",rpc_system_name="grpc",server_address="10.77.0.1",server_port="50051"} 1"#,
            r#"db_client_operation_duration_seconds_count{db_operation_name="INCR",db_response_status_code="ERR",db_system_name="redis",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="6379"} 1"#,
            r#"messaging_client_operation_duration_seconds_count{error_type="",k8s_namespace_name="",k8s_workload_name="",messaging_destination_name="orders",messaging_operation_name="send",messaging_operation_type="send",messaging_system="kafka",server_address="10.77.0.1",server_port="9092"} 2"#,
            r#"messaging_client_operation_duration_seconds_count{error_type="",k8s_namespace_name="",k8s_workload_name="",messaging_destination_name="orders",messaging_operation_name="basic.publish",messaging_operation_type="send",messaging_system="rabbitmq",server_address="10.77.0.1",server_port="5672"} 6"#,
            r#"dns_lookup_duration_seconds_count{dns_question_type="A",dns_response_code="NXDOMAIN",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1"} 1"#,
            r#"http_server_request_duration_seconds_count{error_type="",http_request_method="POST",http_response_status_code="200",http_route="/graphql",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="8000"}"#,
            r#"db_client_operation_duration_seconds_count{db_operation_name="STARTUP",db_response_status_code="28P01",db_system_name="postgresql",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="5432"} 1"#,
            r#"websocket_message_size_bytes_count{error_type="1011",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="8765",websocket_direction="server",websocket_opcode="close"} 1"#,
            r#"tls_handshake_duration_seconds_count{error_type="",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="443",tls_client_server_name="shop.tapwire.test",tls_protocol_version="1.3"} 3"#,
            r#"tls_handshake_duration_seconds_count{error_type="protocol_version",k8s_namespace_name="",k8s_workload_name="",server_address="10.77.0.1",server_port="8443",tls_client_server_name="shop.tapwire.test",tls_protocol_version=""} 1"#,
            // The fixture's certificate: valid 825 days from its recording.
            r#"tls_server_certificate_not_after_seconds{server_address="10.77.0.1",server_port="443",tls_client_server_name="shop.tapwire.test",tls_server_subject="O=tapwire fixtures, CN=shop.tapwire.test"} 1867806667"#,
        ];
        for w in want {
            assert!(t.contains(w), "missing {w}\n{t}");
        }
        assert!(!t.contains("=\"_other\""), "no cap reached");
    }

    #[test]
    fn certificate_times_read_back() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(unix_seconds("2026-12-06T03:30:00Z"), Some(1_796_527_800));
        assert_eq!(unix_seconds("2026-13-06T03:30:00Z"), None);
        assert_eq!(unix_seconds("garbage"), None);
    }

    #[test]
    fn a_database_metric_takes_its_system_from_the_event() {
        let (r, m) = red(2000);
        let mut ex = golden("redis/redis-server-mixed.ndjson").remove(1);
        ex.db.as_mut().expect("a db part").system.name = "postgresql".into();
        m.record(&ex);
        assert!(text(&r).contains(r#"db_system_name="postgresql""#));
    }

    #[test]
    fn kubernetes_labels_name_the_side_the_metric_is_about() {
        use schemas::k8s::{K8s, Name, Resolution, Workload};
        let named = |ns: &str, wl: &str| {
            let mut k = K8s::bare(Resolution::Resolved);
            k.namespace = Name::of(ns);
            k.workload = Some(Workload {
                name: wl.into(),
                kind: "deployment".into(),
            });
            Some(Arc::new(k))
        };
        let (r, m) = red(2000);
        let mut http = golden("http1/nginx-keepalive-pipelining.ndjson").remove(0);
        http.client.k8s = named("shop", "checkout");
        http.server.k8s = named("shop", "web");
        m.record(&http);
        let mut redis = golden("redis/redis-server-mixed.ndjson").remove(0);
        redis.client.k8s = named("shop", "cart");
        redis.server.k8s = named("data", "redis");
        m.record(&redis);
        let t = text(&r);
        assert!(
            t.contains(
                r#"http_route="/index.html",k8s_namespace_name="shop",k8s_workload_name="web","#
            ),
            "HTTP server metrics: the server's workload\n{t}"
        );
        assert!(
            t.contains(
                r#"db_system_name="redis",k8s_namespace_name="shop",k8s_workload_name="cart","#
            ),
            "client metrics: the client's workload\n{t}"
        );
    }

    #[test]
    fn a_full_metric_records_new_label_sets_as_other() {
        let (r, m) = red(2);
        let evs = golden("http1/nginx-keepalive-pipelining.ndjson");
        for e in &evs {
            m.record(e);
        }
        let t = text(&r);
        let series = t
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .count();
        assert_eq!(series, 3, "two admitted label sets and `_other`\n{t}");
        assert!(t.contains(r#"http_server_request_duration_seconds_count{error_type="_other",http_request_method="_other",http_response_status_code="_other",http_route="_other",k8s_namespace_name="_other",k8s_workload_name="_other",server_address="_other",server_port="_other"}"#));
        let over: u64 = m.http_duration.overflow.get();
        assert!(over > 0);
        let total: u64 = evs.len() as u64;
        let counted = t
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
        assert_eq!(
            counted, total,
            "nothing is lost by the cap, only relabelled"
        );
    }
}
