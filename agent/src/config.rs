//! The agent's configuration: a YAML file (`--config`), every key overridable by its flag or
//! `TAPWIRE_*` variable, and built-in defaults (README, "`tapwire run`, `watch` and `pcap`") so that `tapwire run`
//! needs none.
//!
//! ```yaml
//! interfaces: [eth0, "~^cali"]   # names, `~REGEX`, or `any` (the default)
//! workers: 2                     # per interface; default one per core
//! filter: "tcp or udp"           # capture filter (tcpdump syntax or `tcpdump -ddd` text)
//! listen: 0.0.0.0:9464
//! token_file: /etc/tapwire/token
//! snaplen: 262144                # bytes kept per packet
//! ring_size: 64MiB               # capture ring per worker
//! memory_budget: 256MiB          # per worker: flows, buffers, dissector state (largest closed past it)
//! skip_own_traffic: true         # never dissect the agent's own API and sink connections
//! tls:                           # TLS plaintext from OpenSSL through eBPF uprobes (--tls)
//!   mode: on-demand              # probes attached while someone subscribes; always; off
//! spool:
//!   dir: /var/lib/tapwire/spool
//!   limit: 1GiB
//! sinks:                         # standing subscriptions: dissection runs while one is set
//!   routes_per_server: 200       # http.route templates kept per server (then `/{path}`)
//!   prometheus:                  # RED histograms on /metrics (--red-metrics)
//!     enabled: true
//!     max_series: 2000           # label sets per metric (then `_other`)
//!     filter: 'protocol != "dns"'
//!   otlp:                        # one span per exchange
//!     endpoint: http://collector:4317      # or OTEL_EXPORTER_OTLP_ENDPOINT
//!     protocol: grpc             # or http/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL)
//!     headers: {x-api-key: "…"}  # plus OTEL_EXPORTER_OTLP_HEADERS
//!     compression: gzip          # or none
//!     timeout: 10s
//!     tls: {ca_file: /etc/ca.pem, cert_file: …, key_file: …, server_name: …}
//!     service_name: tapwire-observed      # or OTEL_SERVICE_NAME
//!     batch_size: 512
//!     batch_timeout: 1s
//!     queue: 8192
//!     max_retries: 5
//!     legacy_grpc_status_code: false
//!     filter: 'status != "ok"'
//!   kafka:                       # one JSON message per exchange
//!     brokers: kafka-0:9092,kafka-1:9092
//!     topic: tapwire.{protocol}  # or one name
//!     queue: 100000
//!     properties: {compression.type: lz4, acks: all, security.protocol: SASL_SSL}
//!                                # plus TAPWIRE_KAFKA_PROPERTIES (k=v,…; e.g. sasl.password)
//!     filter: 'protocol == "http"'
//! api:                           # caps on what API clients may hold open (429 past them)
//!   max_subscriptions: 64        # /v1/events streams at once
//!   max_replays: 4               # of them with `since` (each dissects the spool)
//!   max_exports: 2               # /v1/pcap downloads at once
//!   filter_budget: 50ms          # CEL time per event; a subscription over it is ended
//!   client_stall: 30s            # a replay or export whose client reads nothing this long ends
//!   public_metrics: false        # true: /metrics needs no token (events and pcap always do)
//! redact:                        # replaced by REDACTED in every output (defaults always apply:
//!   headers: [x-internal-id, "*tenant*"]   # authorization, cookies, *token*, *secret*, …;
//!   query_keys: [ssn]            # sig, Signature, access_token, …; see pipeline::redact)
//! kubernetes:                    # names peers after pods, services, workloads, nodes
//!   enabled: auto                # in a pod or with a kubeconfig; true, false
//!   kubeconfig: ~/.kube/config   # --kubeconfig; in a pod the service account is used
//!   labels: [app, app.kubernetes.io/name, app.kubernetes.io/version]   # k8s.pod.label.*
//!   grace: 10m                   # an ended pod's address keeps naming it this long
//! ```
//!
//! An unknown key or a bad value is one line naming the key (`spool.limit: not a size:
//! "lots"`), and `tapwire run` exits 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sinks::kafka::{KafkaConfig, KafkaFile};
use sinks::otlp::{OtlpConfig, OtlpFile};
use sinks::red::{PromFile, RedConfig};
use sinks::route::RouteConfig;
use sinks::settings::duration;

use crate::cli::RunArgs;
use crate::filter::Filter;
use crate::k8s::{K8sConfig, Mode};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interfaces: Option<Vec<String>>,
    workers: Option<usize>,
    filter: Option<String>,
    listen: Option<String>,
    token_file: Option<PathBuf>,
    snaplen: Option<u32>,
    ring_size: Option<String>,
    #[serde(default)]
    spool: SpoolFile,
    #[serde(default)]
    sinks: SinksFile,
    #[serde(default)]
    kubernetes: KubernetesFile,
    #[serde(default)]
    api: ApiFile,
    #[serde(default)]
    redact: RedactFile,
    memory_budget: Option<String>,
    skip_own_traffic: Option<bool>,
    #[serde(default)]
    tls: TlsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    mode: Option<String>,
}

/// When the TLS plaintext source has its probes attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// While dissection is active (a subscriber or a sink), as packets are dissected.
    OnDemand,
    /// From the start to the end of the run.
    Always,
    Off,
}

impl TlsMode {
    fn parse(text: &str) -> Result<TlsMode, String> {
        match text {
            "on-demand" => Ok(TlsMode::OnDemand),
            "always" => Ok(TlsMode::Always),
            "off" => Ok(TlsMode::Off),
            _ => Err(format!(
                "tls.mode: {text:?} is not on-demand, always or off"
            )),
        }
    }
}

/// A pipeline memory budget: a size from 4 MiB to 64 GiB.
pub fn memory_budget(text: &str) -> Result<usize, String> {
    let b = parse_size(text)?;
    if !(4 << 20..=64 << 30).contains(&b) {
        return Err(format!("{text:?} is not between 4MiB and 64GiB"));
    }
    usize::try_from(b).map_err(|_| format!("{text:?} is too large"))
}

/// Names, patterns and query keys `redact:` may add (each at most 256 bytes): they are
/// checked against every header of every exchange.
const MAX_REDACT_ENTRIES: usize = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactFile {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    query_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    max_subscriptions: Option<usize>,
    max_replays: Option<usize>,
    max_exports: Option<usize>,
    filter_budget: Option<String>,
    client_stall: Option<String>,
    public_metrics: Option<bool>,
}

/// What API clients may hold open, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiLimits {
    pub max_subscriptions: usize,
    pub max_replays: usize,
    pub max_exports: usize,
    /// CEL evaluation time per event.
    pub filter_budget: Duration,
    /// How long a replay or export waits for a client that reads nothing.
    pub client_stall: Duration,
    /// `/metrics` answers without the token (for scrapers); events and packets never do.
    pub public_metrics: bool,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_subscriptions: crate::demand::DEFAULT_MAX_SUBSCRIPTIONS,
            max_replays: 4,
            max_exports: 2,
            filter_budget: Duration::from_millis(50),
            client_stall: Duration::from_secs(30),
            public_metrics: false,
        }
    }
}

fn resolve_api(f: ApiFile) -> Result<ApiLimits, String> {
    let mut a = ApiLimits::default();
    let count = |key: &str, v: Option<usize>, default: usize| match v {
        None => Ok(default),
        Some(n) if (1..=10_000).contains(&n) => Ok(n),
        Some(n) => Err(format!("api.{key}: {n} is not between 1 and 10000")),
    };
    a.max_subscriptions = count(
        "max_subscriptions",
        f.max_subscriptions,
        a.max_subscriptions,
    )?;
    a.max_replays = count("max_replays", f.max_replays, a.max_replays)?;
    a.max_exports = count("max_exports", f.max_exports, a.max_exports)?;
    if let Some(t) = f.filter_budget {
        a.filter_budget = duration("api.filter_budget", &t)?;
    }
    if let Some(t) = f.client_stall {
        a.client_stall = duration("api.client_stall", &t)?;
    }
    a.public_metrics = f.public_metrics.unwrap_or(false);
    if a.filter_budget.is_zero() || a.client_stall.is_zero() {
        return Err("api: filter_budget and client_stall must be more than 0".into());
    }
    Ok(a)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesFile {
    /// `auto` (default), `true` or `false`.
    enabled: Option<serde_norway::Value>,
    kubeconfig: Option<PathBuf>,
    labels: Option<Vec<String>>,
    grace: Option<String>,
}

fn resolve_kubernetes(args: &RunArgs, f: KubernetesFile) -> Result<K8sConfig, String> {
    let mode = match &f.enabled {
        None => Mode::Auto,
        Some(serde_norway::Value::Bool(true)) => Mode::On,
        Some(serde_norway::Value::Bool(false)) => Mode::Off,
        Some(serde_norway::Value::String(s)) if s == "auto" => Mode::Auto,
        Some(other) => {
            let text = serde_norway::to_string(other).unwrap_or_default();
            return Err(format!(
                "kubernetes.enabled: {:?} is not true, false or auto",
                text.trim()
            ));
        }
    };
    let mut k = K8sConfig {
        mode,
        kubeconfig: args.kubeconfig.clone().or(f.kubeconfig),
        ..K8sConfig::default()
    };
    if let Some(labels) = f.labels {
        if let Some(bad) = labels.iter().find(|l| l.is_empty() || l.len() > 316) {
            return Err(format!("kubernetes.labels: {bad:?} is not a label key"));
        }
        k.labels = labels;
    }
    if let Some(g) = f.grace {
        k.grace = duration("kubernetes.grace", &g)?;
    }
    Ok(k)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinksFile {
    routes_per_server: Option<usize>,
    prometheus: Option<PromFile>,
    otlp: Option<OtlpFile>,
    kafka: Option<KafkaFile>,
}

/// A sink's configuration with its (already checked) CEL filter.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig<T> {
    pub config: T,
    pub filter: Option<String>,
}

/// The configured sinks (none by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sinks {
    pub routes: RouteConfig,
    pub prometheus: Option<SinkConfig<RedConfig>>,
    pub otlp: Option<SinkConfig<OtlpConfig>>,
    pub kafka: Option<SinkConfig<KafkaConfig>>,
}

fn resolve_sinks(args: &RunArgs, file: SinksFile) -> Result<Sinks, String> {
    let mut sinks = Sinks::default();
    if let Some(n) = file.routes_per_server {
        if !(1..=100_000).contains(&n) {
            return Err(format!(
                "sinks.routes_per_server: {n} is not between 1 and 100000"
            ));
        }
        sinks.routes.max_per_server = n;
    }
    // Flags win over the file; each sink resolves the rest (its environment variables,
    // defaults and checks) itself.
    let mut prom = file.prometheus.unwrap_or_default();
    prom.enabled = Some(args.red_metrics || prom.enabled.unwrap_or(false));
    let filter = prom.filter.clone();
    if let Some(config) = prom.resolve()? {
        sinks.prometheus = Some(SinkConfig {
            config,
            filter: check_filter("sinks.prometheus.filter", filter)?,
        });
    }
    let mut o = file.otlp.unwrap_or_default();
    o.endpoint = args.otlp_endpoint.clone().or(o.endpoint);
    o.protocol = args.otlp_protocol.clone().or(o.protocol);
    let filter = o.filter.clone();
    if let Some(config) = o.resolve()? {
        sinks.otlp = Some(SinkConfig {
            config,
            filter: check_filter("sinks.otlp.filter", filter)?,
        });
    }
    let mut k = file.kafka.unwrap_or_default();
    k.brokers = args.kafka_brokers.clone().or(k.brokers);
    k.topic = args.kafka_topic.clone().or(k.topic);
    let filter = k.filter.clone();
    if let Some(config) = k.resolve()? {
        sinks.kafka = Some(SinkConfig {
            config,
            filter: check_filter("sinks.kafka.filter", filter)?,
        });
    }
    Ok(sinks)
}

fn check_filter(key: &str, f: Option<String>) -> Result<Option<String>, String> {
    if let Some(text) = &f {
        Filter::compile(text).map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(f)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpoolFile {
    dir: Option<PathBuf>,
    limit: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Interface names or `~REGEX` patterns; empty: every interface.
    pub interfaces: Vec<String>,
    pub workers: usize,
    pub filter: Option<String>,
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub spool_dir: PathBuf,
    pub spool_limit: u64,
    /// The spool limit as written (for messages).
    pub spool_limit_text: String,
    pub snaplen: u32,
    /// 1 MiB blocks per capture ring.
    pub ring_blocks: u32,
    pub sinks: Sinks,
    pub kubernetes: K8sConfig,
    pub api: ApiLimits,
    /// What is replaced by `REDACTED` in every exchange (the defaults plus `redact:`).
    pub redaction: pipeline::redact::Redaction,
    /// Bytes each worker's pipeline may hold (flows, buffers, dissector state).
    pub memory_budget: usize,
    /// Never dissect the agent's own API and sink connections.
    pub skip_own_traffic: bool,
    /// The TLS plaintext source's mode (`tls.mode`, `--tls`).
    pub tls: TlsMode,
}

impl Config {
    /// The endpoints of the agent's own connections: the API's listen address, and each
    /// sink's collector or brokers as they resolve now (a name that does not resolve is left
    /// out: its traffic is dissected like any other).
    pub fn own_endpoints(&self) -> Vec<(Option<std::net::IpAddr>, u16)> {
        use std::net::ToSocketAddrs;
        let mut out = Vec::new();
        let ip = self.listen.ip();
        out.push(((!ip.is_unspecified()).then_some(ip), self.listen.port()));
        let mut targets: Vec<String> = Vec::new();
        if let Some(o) = &self.sinks.otlp {
            let url = &o.config.endpoint;
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            let authority = rest.split('/').next().unwrap_or(rest);
            let default = if scheme == "https" { 443 } else { 80 };
            targets.push(
                if authority
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    authority.to_string()
                } else {
                    format!("{authority}:{default}")
                },
            );
        }
        if let Some(k) = &self.sinks.kafka {
            targets.extend(k.config.brokers.split(',').map(|b| b.trim().to_string()));
        }
        for t in targets {
            if let Ok(addrs) = t.to_socket_addrs() {
                out.extend(addrs.map(|a| (Some(a.ip()), a.port())));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// `64MiB`, `1GiB`, `500MB`, `4096`: bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "not a size: {s:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

fn read_file(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_norway::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().replace('\n', " ")))
}

impl Config {
    /// Flags and environment over the file over the defaults.
    pub fn resolve(args: &RunArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let interfaces = if args.interface.is_empty() {
            file.interfaces.unwrap_or_default()
        } else {
            args.interface.clone()
        };
        let interfaces = if interfaces.iter().any(|i| i == "any") {
            Vec::new()
        } else {
            interfaces
        };
        let workers = args
            .workers
            .or(file.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if workers == 0 || workers > 256 {
            return Err(format!("workers: {workers} is not between 1 and 256"));
        }
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9464".into());
        let listen = listen_text
            .parse()
            .map_err(|_| format!("listen: not an address:port: {listen_text:?}"))?;
        let spool_limit_text = args
            .spool_limit
            .clone()
            .or(file.spool.limit)
            .unwrap_or_else(|| "1GiB".into());
        let spool_limit = parse_size(&spool_limit_text).map_err(|e| format!("spool.limit: {e}"))?;
        if spool_limit < 1 << 20 {
            return Err(format!(
                "spool.limit: {spool_limit_text:?} is under the 1MiB minimum"
            ));
        }
        let snaplen = args.snaplen.or(file.snaplen).unwrap_or(262_144);
        if !(64..=262_144).contains(&snaplen) {
            return Err(format!("snaplen: {snaplen} is not between 64 and 262144"));
        }
        let ring_text = args
            .ring_size
            .clone()
            .or(file.ring_size)
            .unwrap_or_else(|| "64MiB".into());
        let ring = parse_size(&ring_text).map_err(|e| format!("ring_size: {e}"))?;
        let ring_blocks = u32::try_from(ring >> 20).unwrap_or(u32::MAX);
        if !(8..=4096).contains(&ring_blocks) {
            return Err(format!(
                "ring_size: {ring_text:?} is not between 8MiB and 4GiB"
            ));
        }
        let sinks = resolve_sinks(args, file.sinks)?;
        let kubernetes = resolve_kubernetes(args, file.kubernetes)?;
        let api = resolve_api(file.api)?;
        let r = file.redact;
        if let Some(bad) = r
            .headers
            .iter()
            .chain(&r.query_keys)
            .find(|n| n.trim().is_empty() || n.trim() == "**")
        {
            return Err(format!("redact: {bad:?} is not a name or *pattern*"));
        }
        if r.headers.len() + r.query_keys.len() > MAX_REDACT_ENTRIES {
            return Err(format!(
                "redact: more than {MAX_REDACT_ENTRIES} names, patterns and query keys"
            ));
        }
        if let Some(long) = r
            .headers
            .iter()
            .chain(&r.query_keys)
            .find(|n| n.len() > 256)
        {
            let head: String = long.chars().take(32).collect();
            return Err(format!("redact: {head:?}… is longer than 256 bytes"));
        }
        let redaction = pipeline::redact::Redaction::with(&r.headers, &r.query_keys);
        let memory_budget = match &file.memory_budget {
            None => pipeline::flow::DEFAULT_MEMORY_BUDGET,
            Some(t) => memory_budget(t).map_err(|e| format!("memory_budget: {e}"))?,
        };
        let tls = match args.tls.as_deref().or(file.tls.mode.as_deref()) {
            None => TlsMode::OnDemand,
            Some(t) => TlsMode::parse(t)?,
        };
        Ok(Config {
            tls,
            skip_own_traffic: file.skip_own_traffic.unwrap_or(true),
            memory_budget,
            api,
            redaction,
            sinks,
            kubernetes,
            snaplen,
            ring_blocks,
            interfaces,
            workers,
            filter: args.filter.clone().or(file.filter),
            listen,
            token_file: args.token_file.clone().or(file.token_file),
            spool_dir: args
                .spool_dir
                .clone()
                .or(file.spool.dir)
                .unwrap_or_else(|| PathBuf::from("tapwire-spool")),
            spool_limit,
            spool_limit_text,
        })
    }
}

/// Interface names for the configured patterns: names as given, `~REGEX` expanded over the
/// host's interfaces (`/sys/class/net`). Empty: every interface (`any`).
pub fn expand_interfaces(patterns: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in patterns {
        match p.strip_prefix('~') {
            None => out.push(p.clone()),
            Some(re) => {
                let re = regex::Regex::new(re)
                    .map_err(|e| format!("interfaces: bad pattern {p:?}: {e}"))?;
                let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
                    .map_err(|e| format!("interfaces: cannot list interfaces: {e}"))?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| re.is_match(n))
                    .collect();
                names.sort();
                if names.is_empty() {
                    return Err(format!("interfaces: no interface matches {p:?}"));
                }
                out.extend(names);
            }
        }
    }
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use sinks::otlp::Transport;

    fn args(extra: &[&str]) -> RunArgs {
        let mut v = vec!["tapwire", "run"];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v).unwrap().command {
            crate::cli::Command::Run(a) => a,
            _ => unreachable!(),
        }
    }

    fn file(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "tapwire-config-{}-{}.yaml",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_file_and_flags_in_that_order() {
        let c = Config::resolve(&args(&[])).unwrap();
        assert_eq!((c.interfaces.len(), c.spool_limit), (0, 1 << 30));
        assert_eq!(c.listen, "127.0.0.1:9464".parse().unwrap());
        let f = file("interfaces: [eth0]\nworkers: 3\nspool:\n  dir: /tmp/x\n  limit: 64MiB\n");
        let c = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(
            (c.interfaces, c.workers, c.spool_limit),
            (vec!["eth0".to_string()], 3, 64 << 20)
        );
        let c = Config::resolve(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--workers",
            "1",
            "-i",
            "lo",
        ]))
        .unwrap();
        assert_eq!(
            (c.interfaces, c.workers),
            (vec!["lo".to_string()], 1),
            "flags win"
        );
    }

    #[test]
    fn a_bad_key_or_value_is_named() {
        let f = file("spool:\n  limt: 1GiB\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.contains("limt") && !e.contains('\n'), "{e}");
        let f = file("spool:\n  limit: lots\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.starts_with("spool.limit: not a size"), "{e}");
        let e = Config::resolve(&args(&["--listen", "nowhere"])).unwrap_err();
        assert!(e.starts_with("listen:"), "{e}");
        let e = Config::resolve(&args(&["--workers", "0"])).unwrap_err();
        assert!(e.starts_with("workers:"), "{e}");
        let e = Config::resolve(&args(&["--ring-size", "1MiB"])).unwrap_err();
        assert!(e.starts_with("ring_size:"), "{e}");
        let e = Config::resolve(&args(&["--snaplen", "10"])).unwrap_err();
        assert!(e.starts_with("snaplen:"), "{e}");
        let c = Config::resolve(&args(&["--snaplen", "128", "--ring-size", "16MiB"])).unwrap();
        assert_eq!((c.snaplen, c.ring_blocks), (128, 16));
        let many: Vec<String> = (0..1100).map(|i| format!("x-h{i}")).collect();
        let f = file(&format!("redact:\n  headers: [{}]\n", many.join(", ")));
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.starts_with("redact: more than 1024"), "{e}");
        let f = file(&format!("redact:\n  query_keys: [{}]\n", "k".repeat(300)));
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(
            e.contains("longer than 256 bytes") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn kubernetes_section_and_flag() {
        let c = Config::resolve(&args(&[])).unwrap();
        assert_eq!(c.kubernetes, K8sConfig::default());
        let f = file(
            "kubernetes:\n  enabled: true\n  labels: [team]\n  grace: 90s\n  kubeconfig: /etc/kc\n",
        );
        let c = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(c.kubernetes.mode, Mode::On);
        assert_eq!(c.kubernetes.labels, vec!["team".to_string()]);
        assert_eq!(c.kubernetes.grace, Duration::from_secs(90));
        assert_eq!(
            c.kubernetes.kubeconfig.as_deref(),
            Some(Path::new("/etc/kc"))
        );
        let c = Config::resolve(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--kubeconfig",
            "/k",
        ]))
        .unwrap();
        assert_eq!(c.kubernetes.kubeconfig.as_deref(), Some(Path::new("/k")));
        let f = file("kubernetes:\n  enabled: sometimes\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.starts_with("kubernetes.enabled:"), "{e}");
        let f = file("kubernetes:\n  enabled: false\n  grace: soon\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.starts_with("kubernetes.grace:"), "{e}");
    }

    #[test]
    fn own_endpoints_are_the_api_and_the_sinks() {
        let c = Config::resolve(&args(&[
            "--listen",
            "0.0.0.0:9464",
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
            "--kafka-brokers",
            "127.0.0.1:9092,127.0.0.2:9093",
        ]))
        .unwrap();
        assert!(c.skip_own_traffic, "on by default");
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            c.own_endpoints(),
            vec![
                (None, 9464),
                (ip("127.0.0.1"), 4317),
                (ip("127.0.0.1"), 9092),
                (ip("127.0.0.2"), 9093)
            ]
        );
        assert_eq!(c.tls, TlsMode::OnDemand, "on by default, on demand");
        let f = file("skip_own_traffic: false\n");
        let c = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert!(!c.skip_own_traffic);
    }

    #[test]
    fn tls_mode_from_file_and_flag() {
        let f = file("tls: {mode: always}\n");
        let path = f.to_str().unwrap();
        let c = Config::resolve(&args(&["--config", path])).unwrap();
        assert_eq!(c.tls, TlsMode::Always);
        let c = Config::resolve(&args(&["--config", path, "--tls", "off"])).unwrap();
        assert_eq!(c.tls, TlsMode::Off);
        let e = Config::resolve(&args(&["--tls", "sometimes"])).unwrap_err();
        assert_eq!(e, "tls.mode: \"sometimes\" is not on-demand, always or off");
        let f = file("tls: {mode: always, probes: 3}\n");
        let e = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap_err();
        assert!(e.contains("probes"), "{e}");
    }

    #[test]
    fn interface_patterns() {
        assert_eq!(
            expand_interfaces(&["~^lo$".into()]).unwrap(),
            vec!["lo".to_string()]
        );
        assert!(
            expand_interfaces(&["~^nosuch-if".into()])
                .unwrap_err()
                .contains("no interface matches")
        );
        assert!(expand_interfaces(&["~(".into()]).is_err());
    }

    #[test]
    fn sinks_from_flags_and_file() {
        let c = Config::resolve(&args(&[])).unwrap();
        assert_eq!(c.sinks, Sinks::default(), "no sink unless asked");
        let f = file(
            "sinks:\n  routes_per_server: 50\n  prometheus: {enabled: true, max_series: 10}\n  \
             otlp:\n    endpoint: http://collector:4318\n    protocol: http/protobuf\n    \
             headers: {x-api-key: k}\n    compression: gzip\n    batch_timeout: 250ms\n  \
             kafka:\n    brokers: k0:9092\n    properties: {linger.ms: 5, enable.idempotence: true}\n",
        );
        let c = Config::resolve(&args(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(c.sinks.routes.max_per_server, 50);
        assert_eq!(c.sinks.prometheus.as_ref().unwrap().config.max_series, 10);
        let o = &c.sinks.otlp.as_ref().unwrap().config;
        assert_eq!(o.transport, Transport::HttpProtobuf);
        assert!(o.gzip);
        assert_eq!(o.batch_timeout, Duration::from_millis(250));
        assert!(o.headers.contains(&("x-api-key".into(), "k".into())));
        let k = &c.sinks.kafka.as_ref().unwrap().config;
        assert_eq!(k.topic, "tapwire.exchanges");
        assert!(k.properties.contains(&("linger.ms".into(), "5".into())));
        assert!(
            k.properties
                .contains(&("enable.idempotence".into(), "true".into()))
        );
        let c = Config::resolve(&args(&[
            "--config",
            f.to_str().unwrap(),
            "--otlp-endpoint",
            "http://other:4317",
            "--otlp-protocol",
            "grpc",
            "--kafka-topic",
            "t.{protocol}",
        ]))
        .unwrap();
        let o = &c.sinks.otlp.as_ref().unwrap().config;
        assert_eq!(
            (o.endpoint.as_str(), o.transport),
            ("http://other:4317", Transport::Grpc),
            "flags win"
        );
        assert_eq!(c.sinks.kafka.unwrap().config.topic, "t.{protocol}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
