//! OTLP spans: one span per exchange, sent with `opentelemetry-otlp`'s exporter over gRPC or
//! HTTP/protobuf.
//!
//! Spans are built as `SpanData` directly (the SDK's tracer cannot take an explicit span id or
//! packet timestamps): start and end are the exchange's first request and last response byte;
//! when the request carried a W3C `traceparent`, the span joins that trace with the caller's
//! span as its (remote) parent, otherwise it starts a new trace. Span ids are random.
//! Names, kinds, attributes and status come from [`semconv`](crate::semconv).
//!
//! Delivery: [`OtlpSink::offer`] puts the exchange on a bounded queue ([`OtlpConfig::queue`]);
//! a full queue drops it (`tapwire_sink_dropped_total{sink="otlp",reason="queue_full"}`).
//! One exporter task takes batches of up to [`OtlpConfig::batch_size`] (or what arrived
//! within [`OtlpConfig::batch_timeout`]) and exports them; the exporter retries transient
//! failures with exponential backoff (the OTLP retry rules, `Retry-After` and gRPC
//! `RetryInfo` honoured) and a batch that still fails is counted as `export_failed`.
//! gzip, TLS (CA, client certificate) and custom headers are configuration.
//!
//! The resource: with Kubernetes enrichment, the workload of the side the span is about (the
//! server of a server span, the client of a client, producer or consumer span; see
//! [`semconv::observed`]): `service.name` = the workload's name, `service.namespace` and
//! `k8s.namespace.name` = its namespace, `k8s.<kind>.name` = its name. Otherwise (and for the
//! spans of workloads past [`MAX_RESOURCES`]) `service.name` is the configured one. Every
//! resource also has `host.name`, `telemetry.sdk.name` = `tapwire` and
//! `OTEL_RESOURCE_ATTRIBUTES`; the scope is `tapwire` with the agent's version. A batch with
//! spans of several workloads is sent as one export per workload (one exporter, its resource
//! set before each), so a batch costs at most as many requests as it has workloads.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status as OtelStatus, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value as OtelValue};
use opentelemetry_otlp::{
    Compression, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use schemas::Exchange;
use tokio::sync::mpsc;

use crate::route::Routes;
use crate::semconv::{self, Kind, Options, Value};
use crate::{Published, Sink, SinkMetrics};

const SINK: &str = "otlp";

/// Workload resources kept; spans of further workloads get the configured `service.name`.
pub const MAX_RESOURCES: usize = 1024;

/// `(namespace, kind, name)` of a span's workload.
type WorkloadKey = (String, String, String);

fn workload_key(ex: &Exchange) -> Option<WorkloadKey> {
    let k = semconv::observed(ex).k8s.as_deref()?;
    let w = k.workload.as_ref()?;
    let ns = k.namespace.as_ref()?;
    Some((ns.name.clone(), w.kind.clone(), w.name.clone()))
}

/// The resource of each workload, built once.
struct Resources {
    default: Resource,
    by: HashMap<WorkloadKey, Resource>,
}

impl Resources {
    fn get(&mut self, cfg: &OtlpConfig, key: &Option<WorkloadKey>) -> &Resource {
        let Some(key) = key else { return &self.default };
        if !self.by.contains_key(key) {
            if self.by.len() >= MAX_RESOURCES {
                return &self.default;
            }
            self.by.insert(key.clone(), workload_resource(cfg, key));
        }
        self.by.get(key).unwrap_or(&self.default)
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
}

impl Transport {
    /// `grpc` or `http/protobuf` (the `OTEL_EXPORTER_OTLP_PROTOCOL` values).
    pub fn parse(s: &str) -> Result<Transport, String> {
        match s {
            "grpc" => Ok(Transport::Grpc),
            "http/protobuf" => Ok(Transport::HttpProtobuf),
            other => Err(format!(
                "{other:?} is not an OTLP protocol (grpc or http/protobuf)"
            )),
        }
    }
}

/// TLS material, read when the sink starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM CA bundle to trust (in addition to the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify instead of the endpoint's host.
    pub server_name: Option<String>,
}

/// The OTLP sink's configuration (the `sinks.otlp` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// `http(s)://host:port`; for HTTP/protobuf `/v1/traces` is added when no path is given.
    pub endpoint: String,
    pub transport: Transport,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub timeout: Duration,
    pub tls: Tls,
    pub service_name: String,
    pub host_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    pub batch_size: usize,
    pub batch_timeout: Duration,
    /// Exchanges queued for export before new ones are dropped.
    pub queue: usize,
    /// Retries of one batch after its first attempt.
    pub max_retries: usize,
    pub options: Options,
}

impl OtlpConfig {
    /// Defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>, transport: Transport) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.into(),
            transport,
            headers: Vec::new(),
            gzip: false,
            timeout: Duration::from_secs(10),
            tls: Tls::default(),
            service_name: "tapwire-observed".into(),
            host_name: String::new(),
            resource: Vec::new(),
            batch_size: 512,
            batch_timeout: Duration::from_secs(1),
            queue: 8192,
            max_retries: 5,
            options: Options::default(),
        }
    }

    /// Check without I/O; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let e = &self.endpoint;
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < "http://x".len() {
            return Err(format!(
                "sinks.otlp.endpoint: {e:?} is not an http:// or https:// URL"
            ));
        }
        if self.batch_size == 0 || self.batch_size > 65536 {
            return Err(format!(
                "sinks.otlp.batch_size: {} is not between 1 and 65536",
                self.batch_size
            ));
        }
        if self.queue < self.batch_size {
            return Err(format!(
                "sinks.otlp.queue: {} is smaller than batch_size {}",
                self.queue, self.batch_size
            ));
        }
        for (k, _) in &self.headers {
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(format!("sinks.otlp.headers: {k:?} is not a header name"));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err("sinks.otlp.tls: cert_file and key_file go together".into());
        }
        if self.service_name.is_empty() {
            return Err("sinks.otlp.service_name: empty".into());
        }
        Ok(())
    }

    fn traces_url(&self) -> String {
        let e = self.endpoint.trim_end_matches('/');
        match self.transport {
            Transport::Grpc => e.to_string(),
            Transport::HttpProtobuf => {
                let after_scheme = e.split_once("://").map_or(e, |(_, r)| r);
                if after_scheme.contains('/') {
                    e.to_string()
                } else {
                    format!("{e}/v1/traces")
                }
            }
        }
    }
}

fn read(path: &PathBuf, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("sinks.otlp.tls.{key}: {}: {e}", path.display()))
}

fn build_exporter(cfg: &OtlpConfig) -> Result<SpanExporter, String> {
    let retry = RetryPolicy::default()
        .with_max_retries(cfg.max_retries)
        .with_initial_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(8));
    let url = cfg.traces_url();
    let tls_wanted = url.starts_with("https://");
    let built = match cfg.transport {
        Transport::Grpc => {
            let mut meta = tonic::metadata::MetadataMap::new();
            for (k, v) in &cfg.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            format!("sinks.otlp.headers: {k:?} is not a gRPC metadata key")
                        })?;
                let val = v
                    .parse()
                    .map_err(|_| format!("sinks.otlp.headers.{k}: not a valid header value"))?;
                meta.insert(key, val);
            }
            let mut b = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url)
                .with_timeout(cfg.timeout)
                .with_metadata(meta)
                .with_retry_policy(retry);
            if cfg.gzip {
                b = b.with_compression(Compression::Gzip);
            }
            if tls_wanted {
                let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                if let Some(ca) = &cfg.tls.ca_file {
                    tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(
                        ca, "ca_file",
                    )?));
                }
                if let (Some(c), Some(k)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
                    tls = tls.identity(tonic::transport::Identity::from_pem(
                        read(c, "cert_file")?,
                        read(k, "key_file")?,
                    ));
                }
                if let Some(n) = &cfg.tls.server_name {
                    tls = tls.domain_name(n.clone());
                }
                b = b.with_tls_config(tls);
            }
            b.build()
        }
        Transport::HttpProtobuf => {
            // reqwest is built without a crypto provider (aws-lc stays out): use ring. It is
            // needed to build any client, TLS or not; a provider installed before is kept.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut client = reqwest::Client::builder().timeout(cfg.timeout);
            if tls_wanted {
                if let Some(ca) = &cfg.tls.ca_file {
                    let pem = read(ca, "ca_file")?;
                    for cert in reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| format!("sinks.otlp.tls.ca_file: {e}"))?
                    {
                        client = client.add_root_certificate(cert);
                    }
                }
                if let (Some(c), Some(k)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
                    let mut pem = read(c, "cert_file")?;
                    pem.extend(read(k, "key_file")?);
                    client = client.identity(
                        reqwest::Identity::from_pem(&pem)
                            .map_err(|e| format!("sinks.otlp.tls.cert_file: {e}"))?,
                    );
                }
                if cfg.tls.server_name.is_some() {
                    return Err(
                        "sinks.otlp.tls.server_name: only the grpc protocol can override the name"
                            .into(),
                    );
                }
            }
            let client = client
                .build()
                .map_err(|e| format!("sinks.otlp: HTTP client: {e}"))?;
            let mut b = SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(url)
                .with_timeout(cfg.timeout)
                .with_headers(cfg.headers.iter().cloned().collect::<HashMap<_, _>>())
                .with_retry_policy(retry);
            if cfg.gzip {
                b = b.with_compression(Compression::Gzip);
            }
            b.build()
        }
    };
    built.map_err(|e| format!("sinks.otlp: {e}"))
}

/// The running sink: a bounded queue in front of the exporter task.
pub struct OtlpSink {
    tx: mpsc::Sender<Arc<Exchange>>,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    counters: SinkMetrics,
    offered: prometheus::IntCounter,
    queued: Arc<AtomicU64>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    handle: tokio::runtime::Handle,
}

impl OtlpSink {
    /// Build the exporter (no connection is made yet) and start its task on `rt`.
    pub fn start(
        cfg: OtlpConfig,
        routes: Arc<Routes>,
        counters: SinkMetrics,
        rt: &tokio::runtime::Handle,
    ) -> Result<OtlpSink, String> {
        cfg.validate()?;
        let mut exporter = {
            let _in_rt = rt.enter();
            build_exporter(&cfg)?
        };
        exporter.set_resource(&resource(&cfg));
        let (tx, rx) = mpsc::channel(cfg.queue);
        let queued = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = rt.spawn(export_loop(
            rx,
            stopped,
            exporter,
            cfg,
            routes,
            counters.clone(),
            queued.clone(),
        ));
        Ok(OtlpSink {
            tx,
            stop: std::sync::Mutex::new(Some(stop)),
            offered: counters.of(SINK).0,
            counters,
            queued,
            task: std::sync::Mutex::new(Some(task)),
            handle: rt.clone(),
        })
    }
}

fn resource(cfg: &OtlpConfig) -> Resource {
    Resource::builder_empty()
        .with_attributes(base_attributes(cfg))
        .with_service_name(cfg.service_name.clone())
        .build()
}

fn workload_resource(cfg: &OtlpConfig, (ns, kind, name): &WorkloadKey) -> Resource {
    let mut attrs = base_attributes(cfg);
    attrs.push(KeyValue::new("service.namespace", ns.clone()));
    attrs.push(KeyValue::new("k8s.namespace.name", ns.clone()));
    if matches!(
        kind.as_str(),
        "deployment" | "statefulset" | "daemonset" | "job" | "cronjob" | "replicaset"
    ) {
        attrs.push(KeyValue::new(format!("k8s.{kind}.name"), name.clone()));
    }
    Resource::builder_empty()
        .with_attributes(attrs)
        .with_service_name(name.clone())
        .build()
}

fn base_attributes(cfg: &OtlpConfig) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("telemetry.sdk.name", "tapwire"),
        KeyValue::new("telemetry.sdk.language", "rust"),
        KeyValue::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    if !cfg.host_name.is_empty() {
        attrs.push(KeyValue::new("host.name", cfg.host_name.clone()));
    }
    for (k, v) in &cfg.resource {
        attrs.push(KeyValue::new(k.clone(), v.clone()));
    }
    attrs
}

impl Sink for OtlpSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn offer(&self, ev: &mut Published) {
        self.offered.inc();
        // Counted before it is sent, so the exporter never takes away more than was added.
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(ev.exchange().clone()).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.counters.drop_n(SINK, "queue_full", 1);
        }
    }

    fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    fn flush(&self, timeout: Duration) {
        // Closing the queue ends the task once it has exported what was queued.
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(task) = task else { return };
        self.handle.block_on(async {
            let _ = tokio::time::timeout(timeout, task).await;
        });
    }
}

async fn export_loop(
    mut rx: mpsc::Receiver<Arc<Exchange>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    mut exporter: SpanExporter,
    cfg: OtlpConfig,
    routes: Arc<Routes>,
    counters: SinkMetrics,
    queued: Arc<AtomicU64>,
) {
    let scope = InstrumentationScope::builder("tapwire")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let mut ids = IdGen::new();
    let mut warned = false;
    let mut resources = Resources {
        default: resource(&cfg),
        by: HashMap::new(),
    };
    let delivered = counters.of(SINK).1;
    let mut batch: Vec<Arc<Exchange>> = Vec::with_capacity(cfg.batch_size);
    loop {
        batch.clear();
        // Wait for the first exchange, then fill the batch until it is full or the timeout.
        // Once told to stop, the queue closes and what it holds is still exported.
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = &mut stopped, if !rx.is_closed() => {
                rx.close();
                rx.recv().await
            }
        };
        match first {
            Some(e) => batch.push(e),
            None => break,
        }
        let deadline = tokio::time::Instant::now() + cfg.batch_timeout;
        while batch.len() < cfg.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        // One export per workload in the batch, in the order they first appear.
        let mut groups: Vec<(Option<WorkloadKey>, Vec<SpanData>)> = Vec::new();
        let mut slot: HashMap<Option<WorkloadKey>, usize> = HashMap::new();
        for e in &batch {
            let key = workload_key(e);
            let i = *slot.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[i]
                .1
                .push(span_data(e, &routes, cfg.options, &scope, &mut ids));
        }
        for (key, spans) in groups {
            let n = spans.len() as u64;
            exporter.set_resource(resources.get(&cfg, &key));
            let result = exporter.export(spans).await;
            queued.fetch_sub(n, Ordering::Relaxed);
            match result {
                Ok(()) => {
                    delivered.inc_by(n);
                    warned = false;
                }
                Err(e) => {
                    counters.drop_n(SINK, "export_failed", n);
                    if !warned {
                        eprintln!(
                            "tapwire: sinks.otlp: export to {} failed, {n} spans lost (counted in tapwire_sink_dropped_total): {e}",
                            cfg.endpoint
                        );
                        warned = true;
                    }
                }
            }
        }
    }
    let _ = exporter.shutdown();
}

/// Random span and trace ids (splitmix64 seeded from the clock, the process and a counter):
/// unique enough for ids, never zero.
struct IdGen(u64);

static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

impl IdGen {
    fn new() -> IdGen {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let c = SEED_COUNTER.fetch_add(1, Ordering::Relaxed);
        IdGen(t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        loop {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    }
}

fn to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The span of one exchange.
fn span_data(
    ex: &Exchange,
    routes: &Routes,
    opts: Options,
    scope: &InstrumentationScope,
    ids: &mut IdGen,
) -> SpanData {
    let view = semconv::span(ex, routes, opts);
    let parent = ex
        .trace_id
        .as_deref()
        .and_then(|t| TraceId::from_hex(t).ok())
        .zip(ex.span_id.as_deref().and_then(|s| SpanId::from_hex(s).ok()))
        .filter(|(t, s)| *t != TraceId::INVALID && *s != SpanId::INVALID);
    let (trace_id, parent_span_id, remote) = match parent {
        Some((t, s)) => (t, s, true),
        None => {
            let hi = u128::from(ids.next()) << 64;
            (
                TraceId::from(hi | u128::from(ids.next())),
                SpanId::INVALID,
                false,
            )
        }
    };
    let span_id = SpanId::from(ids.next());
    SpanData {
        span_context: SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id,
        parent_span_is_remote: remote,
        span_kind: match view.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
            Kind::Producer => SpanKind::Producer,
            Kind::Consumer => SpanKind::Consumer,
        },
        name: Cow::Owned(view.name),
        start_time: to_time(ex.start_time_unix_nano),
        end_time: to_time(ex.end_time_unix_nano.max(ex.start_time_unix_nano)),
        attributes: view
            .attributes
            .into_iter()
            .map(|(k, v)| {
                KeyValue::new(
                    k,
                    match v {
                        Value::Str(s) => OtelValue::String(s.into()),
                        Value::Int(i) => OtelValue::I64(i),
                        Value::Bool(b) => OtelValue::Bool(b),
                        Value::StrList(l) => OtelValue::Array(Array::String(
                            l.into_iter().map(StringValue::from).collect(),
                        )),
                    },
                )
            })
            .collect(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match view.error {
            Some(d) => OtelStatus::Error {
                description: Cow::Owned(d),
            },
            None => OtelStatus::Unset,
        },
        instrumentation_scope: scope.clone(),
    }
}

/// The keys under `sinks.otlp:` in the agent's configuration (flags already merged in by
/// the agent: they win over the file).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpFile {
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub compression: Option<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub tls: TlsFile,
    pub service_name: Option<String>,
    pub batch_size: Option<usize>,
    pub batch_timeout: Option<String>,
    pub queue: Option<usize>,
    pub max_retries: Option<usize>,
    pub legacy_grpc_status_code: Option<bool>,
    /// A CEL filter (checked by the agent, which evaluates it).
    pub filter: Option<String>,
}

/// `sinks.otlp.tls:`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl OtlpFile {
    /// The sink's configuration, or `None` when no endpoint is set anywhere (keys, then the
    /// OpenTelemetry SDK's environment variables: `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`,
    /// `_PROTOCOL`, `_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`). Other keys
    /// without an endpoint are an error naming it.
    pub fn resolve(self) -> Result<Option<OtlpConfig>, String> {
        use crate::settings::{duration, env, key_values};
        let o = self;
        let endpoint = o
            .endpoint
            .map(|e| (e, false))
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").map(|e| (e, true)))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|e| (e, false)));
        let Some((endpoint, verbatim)) = endpoint else {
            if o.protocol.is_some() || o.filter.is_some() || !o.headers.is_empty() {
                return Err(
                    "sinks.otlp.endpoint: missing (or set OTEL_EXPORTER_OTLP_ENDPOINT)".into(),
                );
            }
            return Ok(None);
        };
        let proto = o
            .protocol
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "grpc".into());
        let transport =
            Transport::parse(&proto).map_err(|e| format!("sinks.otlp.protocol: {e}"))?;
        // A signal-specific endpoint is used as given; a base endpoint gets `/v1/traces`.
        let endpoint = if verbatim && transport == Transport::HttpProtobuf {
            endpoint
        } else {
            endpoint.trim_end_matches('/').to_string()
        };
        let mut c = OtlpConfig::new(endpoint, transport);
        c.headers = o.headers.into_iter().collect();
        if let Some(h) = env("OTEL_EXPORTER_OTLP_HEADERS") {
            for (k, v) in key_values("OTEL_EXPORTER_OTLP_HEADERS", &h)? {
                if !c.headers.iter().any(|(e, _)| e.eq_ignore_ascii_case(&k)) {
                    c.headers.push((k, v));
                }
            }
        }
        c.gzip = match o.compression.as_deref() {
            None | Some("none") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(format!(
                    "sinks.otlp.compression: {other:?} is not gzip or none"
                ));
            }
        };
        if let Some(t) = o.timeout {
            c.timeout = duration("sinks.otlp.timeout", &t)?;
        }
        if let Some(t) = o.batch_timeout {
            c.batch_timeout = duration("sinks.otlp.batch_timeout", &t)?;
        }
        c.tls = Tls {
            ca_file: o.tls.ca_file,
            cert_file: o.tls.cert_file,
            key_file: o.tls.key_file,
            server_name: o.tls.server_name,
        };
        if let Some(n) = o.service_name.or_else(|| env("OTEL_SERVICE_NAME")) {
            c.service_name = n;
        }
        c.host_name = env("NODE_NAME")
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        if let Some(r) = env("OTEL_RESOURCE_ATTRIBUTES") {
            c.resource = key_values("OTEL_RESOURCE_ATTRIBUTES", &r)?;
        }
        if let Some(n) = o.batch_size {
            c.batch_size = n;
        }
        if let Some(n) = o.queue {
            c.queue = n;
        }
        if let Some(n) = o.max_retries {
            c.max_retries = n;
        }
        c.options.legacy_grpc_status_code = o.legacy_grpc_status_code.unwrap_or(false);
        c.validate()?;
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let ok = OtlpConfig::new("http://127.0.0.1:4317", Transport::Grpc);
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: &dyn Fn(&mut OtlpConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().expect_err("rejected")
        };
        assert!(bad(&|c| c.endpoint = "collector:4317".into()).starts_with("sinks.otlp.endpoint:"));
        assert!(bad(&|c| c.batch_size = 0).starts_with("sinks.otlp.batch_size:"));
        assert!(bad(&|c| c.queue = 10).starts_with("sinks.otlp.queue:"));
        assert!(
            bad(&|c| c.headers = vec![("bad name".into(), "v".into())])
                .starts_with("sinks.otlp.headers:")
        );
        assert!(bad(&|c| c.tls.cert_file = Some("/x".into())).starts_with("sinks.otlp.tls:"));
        assert_eq!(
            Transport::parse("http/json"),
            Err("\"http/json\" is not an OTLP protocol (grpc or http/protobuf)".into())
        );
    }

    #[test]
    fn http_endpoints_get_the_traces_path() {
        let c = |e: &str| OtlpConfig::new(e, Transport::HttpProtobuf).traces_url();
        assert_eq!(c("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(c("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(c("https://h/otlp/v1/traces"), "https://h/otlp/v1/traces");
        assert_eq!(
            OtlpConfig::new("http://h:4317", Transport::Grpc).traces_url(),
            "http://h:4317"
        );
    }

    #[test]
    fn a_traceparent_makes_the_span_a_child_in_that_trace() {
        let evs = crate::golden("http1/nginx-keepalive-pipelining.ndjson");
        let routes = Routes::default();
        let scope = InstrumentationScope::builder("tapwire").build();
        let mut ids = IdGen::new();
        let with = evs.iter().find(|e| e.trace_id.is_some()).expect("traced");
        let s = span_data(with, &routes, Options::default(), &scope, &mut ids);
        assert_eq!(
            s.span_context.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
        );
        assert_eq!(
            s.parent_span_id,
            SpanId::from_hex("00f067aa0ba902b7").expect("hex")
        );
        assert!(s.parent_span_is_remote);
        assert_ne!(s.span_context.span_id(), s.parent_span_id);
        assert_eq!(s.start_time, to_time(with.start_time_unix_nano));
        assert_eq!(s.end_time, to_time(with.end_time_unix_nano));
        let without = evs.iter().find(|e| e.trace_id.is_none()).expect("untraced");
        let a = span_data(without, &routes, Options::default(), &scope, &mut ids);
        let b = span_data(without, &routes, Options::default(), &scope, &mut ids);
        assert_eq!(a.parent_span_id, SpanId::INVALID);
        assert_ne!(
            a.span_context.trace_id(),
            b.span_context.trace_id(),
            "a new trace each"
        );
        assert_eq!(a.span_kind, SpanKind::Server);

        // A Kafka Produce whose record carried a traceparent header joins that trace.
        let produce = crate::golden("kafka/tansu-confluent.ndjson")
            .into_iter()
            .find(|e| e.trace_id.is_some())
            .expect("the Produce with a traceparent record header");
        let k = span_data(&produce, &routes, Options::default(), &scope, &mut ids);
        assert_eq!(k.span_kind, SpanKind::Producer);
        assert_eq!(k.name, "send orders");
        assert_eq!(
            k.span_context.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex")
        );
        assert_eq!(
            k.parent_span_id,
            SpanId::from_hex("b7ad6b7169203331").expect("hex")
        );
    }
}
