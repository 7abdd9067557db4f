//! OTLP spans: one span per exchange, sent over gRPC or HTTP/protobuf.
//!
//! Spans are built as protobuf directly from the exchanges ([`proto`]: start and end are the
//! exchange's first request and last response byte, a W3C `traceparent` makes the span a
//! child in the caller's trace) and sent by [`export`]. Names, kinds, attributes and status
//! come from [`semconv`](crate::semconv).
//!
//! Delivery: [`OtlpSink::offer`] puts the exchange on a bounded queue ([`OtlpConfig::queue`]);
//! a full queue drops it (`tapwire_sink_dropped_total{sink="otlp",reason="queue_full"}`).
//! One exporter task takes batches of up to [`OtlpConfig::batch_size`] (or what arrived
//! within [`OtlpConfig::batch_timeout`]), encodes each once and exports it; transient
//! failures are retried with exponential backoff (the OTLP retry rules, `Retry-After` and gRPC
//! `RetryInfo` honoured, [`export`]) and a batch that still fails is counted as
//! `export_failed`; spans a receiver rejects in a partial success are counted as `rejected`.
//! gzip, TLS (CA, client certificate) and custom headers are configuration.
//!
//! The resource: with Kubernetes enrichment, the workload of the side the span is about (the
//! server of a server span, the client of a client, producer or consumer span; see
//! [`semconv::observed`]): `service.name` = the workload's name, `service.namespace` and
//! `k8s.namespace.name` = its namespace, `k8s.<kind>.name` = its name. Otherwise (and for the
//! spans of workloads past [`MAX_RESOURCES`]) `service.name` is the configured one. Every
//! resource also has `host.name`, `telemetry.sdk.name` = `tapwire` and
//! `OTEL_RESOURCE_ATTRIBUTES`; the scope is `tapwire` with the agent's version. A batch with
//! spans of several workloads is one request with one `ResourceSpans` per workload.

pub mod export;
pub mod proto;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use schemas::Exchange;
use tokio::sync::mpsc;

use crate::route::Routes;
use crate::semconv::{self, Options};
use crate::{Published, Sink, SinkMetrics};

const SINK: &str = "otlp";

/// Workload resources kept; spans of further workloads get the configured `service.name`.
pub const MAX_RESOURCES: usize = 1024;

/// `(namespace, kind, name)` of a span's workload.
type WorkloadKey = (String, String, String);
/// The same, borrowed from the exchange.
type WorkloadRef<'a> = (&'a str, &'a str, &'a str);

fn workload_of(ex: &Exchange) -> Option<WorkloadRef<'_>> {
    let k = semconv::observed(ex).k8s.as_deref()?;
    let w = k.workload.as_ref()?;
    let ns = k.namespace.as_ref()?;
    Some((&ns.name, &w.kind, &w.name))
}

/// The resource of each workload, built once.
struct Resources {
    default: Resource,
    by: HashMap<WorkloadKey, Resource>,
}

impl Resources {
    fn get(&mut self, cfg: &OtlpConfig, key: Option<WorkloadRef<'_>>) -> &Resource {
        let Some((ns, kind, name)) = key else {
            return &self.default;
        };
        let key = (ns.to_owned(), kind.to_owned(), name.to_owned());
        if !self.by.contains_key(&key) {
            if self.by.len() >= MAX_RESOURCES {
                return &self.default;
            }
            let r = workload_resource(cfg, &key);
            self.by.insert(key.clone(), r);
        }
        self.by.get(&key).unwrap_or(&self.default)
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

fn header_map(cfg: &OtlpConfig) -> Result<reqwest::header::HeaderMap, String> {
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in &cfg.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("sinks.otlp.headers: {k:?} is not a header name"))?;
        let val = reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| format!("sinks.otlp.headers.{k}: not a valid header value"))?;
        h.insert(name, val);
    }
    Ok(h)
}

/// The transport (no connection is made yet; gRPC must be called inside the runtime).
fn build_exporter(cfg: &OtlpConfig) -> Result<export::Exporter, String> {
    let url = cfg.traces_url();
    let tls_wanted = url.starts_with("https://");
    match cfg.transport {
        Transport::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &cfg.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            format!("sinks.otlp.headers: {k:?} is not a gRPC metadata key")
                        })?;
                let val = v
                    .parse()
                    .map_err(|_| format!("sinks.otlp.headers.{k}: not a valid header value"))?;
                metadata.insert(key, val);
            }
            let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| format!("sinks.otlp.endpoint: {url:?}: {e}"))?
                .timeout(cfg.timeout)
                .connect_timeout(cfg.timeout);
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
                endpoint = endpoint
                    .tls_config(tls)
                    .map_err(|e| format!("sinks.otlp.tls: {e}"))?;
            }
            let mut client = tonic::client::Grpc::new(endpoint.connect_lazy());
            if cfg.gzip {
                client = client
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            }
            Ok(export::Exporter::Grpc {
                client,
                metadata,
                timeout: cfg.timeout,
            })
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
            Ok(export::Exporter::Http {
                client,
                url,
                headers: header_map(cfg)?,
                gzip: cfg.gzip,
            })
        }
    }
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
        let exporter = {
            let _in_rt = rt.enter();
            build_exporter(&cfg)?
        };
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
    let mut attributes = base_attributes(cfg);
    set(
        &mut attributes,
        proto::kv("service.name", cfg.service_name.clone()),
    );
    Resource {
        attributes,
        ..Resource::default()
    }
}

fn workload_resource(cfg: &OtlpConfig, (ns, kind, name): &WorkloadKey) -> Resource {
    let mut attributes = base_attributes(cfg);
    set(&mut attributes, proto::kv("service.namespace", ns.clone()));
    set(&mut attributes, proto::kv("k8s.namespace.name", ns.clone()));
    if matches!(
        kind.as_str(),
        "deployment" | "statefulset" | "daemonset" | "job" | "cronjob" | "replicaset"
    ) {
        set(
            &mut attributes,
            proto::kv(format!("k8s.{kind}.name"), name.clone()),
        );
    }
    set(&mut attributes, proto::kv("service.name", name.clone()));
    Resource {
        attributes,
        ..Resource::default()
    }
}

/// Set an attribute, replacing one of the same key (keys are unique in a resource).
fn set(attrs: &mut Vec<KeyValue>, kv: KeyValue) {
    attrs.retain(|a| a.key != kv.key);
    attrs.push(kv);
}

/// The attributes of every resource (`OTEL_RESOURCE_ATTRIBUTES` last, so they win over the
/// defaults; the caller's `service.name` and workload attributes win over them).
fn base_attributes(cfg: &OtlpConfig) -> Vec<KeyValue> {
    let mut attrs = vec![
        proto::kv("telemetry.sdk.name", "tapwire"),
        proto::kv("telemetry.sdk.language", "rust"),
        proto::kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    if !cfg.host_name.is_empty() {
        attrs.push(proto::kv("host.name", cfg.host_name.clone()));
    }
    for (k, v) in &cfg.resource {
        set(&mut attrs, proto::kv(k.clone(), v.clone()));
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
    mut exporter: export::Exporter,
    cfg: OtlpConfig,
    routes: Arc<Routes>,
    counters: SinkMetrics,
    queued: Arc<AtomicU64>,
) {
    let scope = proto::scope();
    let mut ids = proto::IdGen::new();
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
        let n = batch.len() as u64;
        let body = encode(&batch, &routes, &cfg, &scope, &mut ids, &mut resources);
        // The exchanges are in the request now: free them before waiting on the network.
        batch.clear();
        let result = exporter.export(body, cfg.max_retries).await;
        queued.fetch_sub(n, Ordering::Relaxed);
        match result {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                delivered.inc_by(n - rejected);
                if rejected > 0 {
                    counters.drop_n(SINK, "rejected", rejected);
                }
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

/// The encoded request for `batch` under `cfg`'s resource, as the exporter task sends it
/// (the benchmarks measure this).
pub fn request(batch: &[Arc<Exchange>], routes: &Routes, cfg: &OtlpConfig) -> Bytes {
    let mut resources = Resources {
        default: resource(cfg),
        by: HashMap::new(),
    };
    encode(
        batch,
        routes,
        cfg,
        &proto::scope(),
        &mut proto::IdGen::new(),
        &mut resources,
    )
}

/// One encoded request for a batch: a `ResourceSpans` per workload, in the order they first
/// appear.
fn encode(
    batch: &[Arc<Exchange>],
    routes: &Routes,
    cfg: &OtlpConfig,
    scope: &opentelemetry_proto::tonic::common::v1::InstrumentationScope,
    ids: &mut proto::IdGen,
    resources: &mut Resources,
) -> Bytes {
    let mut groups: Vec<(Option<WorkloadRef<'_>>, Vec<Span>)> = Vec::new();
    let mut slot: HashMap<Option<WorkloadRef<'_>>, usize> = HashMap::new();
    for e in batch {
        let key = workload_of(e);
        let i = *slot.entry(key).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        if let Some((_, spans)) = groups.get_mut(i) {
            spans.push(proto::span(e, routes, cfg.options, ids));
        }
    }
    let req = ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(key, spans)| proto::resource_spans(resources.get(cfg, key), scope, spans))
            .collect(),
    };
    Bytes::from(req.encode_to_vec())
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
        use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
        let evs = crate::golden("http1/nginx-keepalive-pipelining.ndjson");
        let routes = Routes::default();
        let mut ids = proto::IdGen::new();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let with = evs.iter().find(|e| e.trace_id.is_some()).expect("traced");
        let s = proto::span(with, &routes, Options::default(), &mut ids);
        assert_eq!(hex(&s.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&s.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(s.flags, 0x301, "sampled, the parent known to be remote");
        assert_eq!(s.span_id.len(), 8);
        assert_ne!(s.span_id, s.parent_span_id);
        assert_eq!(s.start_time_unix_nano, with.start_time_unix_nano);
        assert_eq!(s.end_time_unix_nano, with.end_time_unix_nano);
        let without = evs.iter().find(|e| e.trace_id.is_none()).expect("untraced");
        let a = proto::span(without, &routes, Options::default(), &mut ids);
        let b = proto::span(without, &routes, Options::default(), &mut ids);
        assert!(a.parent_span_id.is_empty());
        assert_eq!(
            a.flags, 0x101,
            "sampled, a root: its parent is known not to be remote"
        );
        assert_eq!(a.trace_id.len(), 16);
        assert_ne!(a.trace_id, b.trace_id, "a new trace each");
        assert_eq!(a.kind, SpanKind::Server as i32);

        // A Kafka Produce whose record carried a traceparent header joins that trace.
        let produce = crate::golden("kafka/tansu-confluent.ndjson")
            .into_iter()
            .find(|e| e.trace_id.is_some())
            .expect("the Produce with a traceparent record header");
        let k = proto::span(&produce, &routes, Options::default(), &mut ids);
        assert_eq!(k.kind, SpanKind::Producer as i32);
        assert_eq!(k.name, "send orders");
        assert_eq!(hex(&k.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&k.parent_span_id), "b7ad6b7169203331");
    }

    #[test]
    fn a_batch_is_one_request_with_a_resource_per_workload() {
        use opentelemetry_proto::tonic::common::v1::any_value;
        let mut evs = crate::golden("http1/nginx-keepalive-pipelining.ndjson");
        assert!(evs.len() >= 3);
        let name = |ex: &mut Exchange, ns: &str, w: &str| {
            let k: schemas::k8s::K8s = serde_json::from_value(serde_json::json!({
                "resolution": "resolved",
                "namespace": {"name": ns},
                "workload": {"kind": "deployment", "name": w},
            }))
            .expect("k8s names");
            ex.server.k8s = Some(Arc::new(k));
        };
        name(&mut evs[0], "shop", "cart");
        name(&mut evs[2], "shop", "cart");
        let batch: Vec<Arc<Exchange>> = evs.into_iter().map(Arc::new).collect();
        let mut cfg = OtlpConfig::new("http://127.0.0.1:4317", Transport::Grpc);
        cfg.resource = vec![
            ("deployment.environment.name".into(), "prod".into()),
            ("service.name".into(), "overridden".into()),
        ];
        let body = request(&batch, &Routes::default(), &cfg);
        let req = ExportTraceServiceRequest::decode(body).expect("a request");
        let attrs = |rs: &opentelemetry_proto::tonic::trace::v1::ResourceSpans| {
            rs.resource
                .as_ref()
                .expect("a resource")
                .attributes
                .iter()
                .map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (kv.key.clone(), v)
                })
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(req.resource_spans.len(), 2, "cart first, then the rest");
        let cart = attrs(&req.resource_spans[0]);
        assert_eq!(cart["service.name"], "cart");
        assert_eq!(cart["k8s.namespace.name"], "shop");
        assert_eq!(cart["k8s.deployment.name"], "cart");
        assert_eq!(cart["deployment.environment.name"], "prod");
        let rest = attrs(&req.resource_spans[1]);
        assert_eq!(rest["service.name"], "tapwire-observed");
        assert_eq!(rest["telemetry.sdk.name"], "tapwire");
        let spans = |i: usize| req.resource_spans[i].scope_spans[0].spans.len();
        assert_eq!(spans(0), 2);
        assert_eq!(spans(0) + spans(1), batch.len());
        let scope = req.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .expect("scope");
        assert_eq!(scope.name, "tapwire");
        // Keys are unique in each resource.
        for rs in &req.resource_spans {
            let keys = &rs.resource.as_ref().expect("a resource").attributes;
            assert_eq!(keys.len(), attrs(rs).len());
        }
    }
}
