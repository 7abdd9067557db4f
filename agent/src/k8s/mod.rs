//! Kubernetes enrichment: names the client and server of every exchange (`client.k8s.*`,
//! `server.k8s.*`) after the pod, namespace, node, workload and service that held each
//! address *at the exchange's start time*, with a resolution status.
//!
//! - [`index`]: the address history (hand-written; see its doc for why and its caps).
//! - [`watch`]: kube's watchers over pods, services, endpoint slices, nodes, and the
//!   metadata of replica sets and jobs, feeding the index.
//!
//! `tapwire watch --cluster`, in the `cmd` module, reuses the client set-up below.
//!
//! Configuration (`kubernetes:` in the config file): `enabled: auto` (the default) turns it on
//! inside a pod (the service account, `KUBERNETES_SERVICE_HOST`) or when a kubeconfig is
//! given (`kubeconfig:` or `--kubeconfig`); `true` also tries `KUBECONFIG` and
//! `~/.kube/config`, and a missing configuration is then an error at start; `false` turns it
//! off. A configuration that cannot be loaded stops the agent before it captures (exit 2); an
//! API server that cannot be reached or refuses (RBAC) does not: see [`watch`].
//!
//! Lookups happen on the capture worker under a read lock: two hash lookups and two `Arc`
//! clones per exchange. Watch events take the write lock briefly, one object at a time.

pub mod index;
mod watch;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};
use schemas::Exchange;
use schemas::k8s::Resolution;

use index::Index;

/// Whether enrichment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// In a pod, or with a kubeconfig given.
    #[default]
    Auto,
    On,
    Off,
}

/// `kubernetes:` of the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct K8sConfig {
    pub mode: Mode,
    pub kubeconfig: Option<PathBuf>,
    /// Pod labels copied to `k8s.pod.label.<key>`.
    pub labels: Vec<String>,
    /// How long an ended pod's addresses keep naming it (exchanges replayed from the spool
    /// and late ones): at least the spool's age is best.
    pub grace: Duration,
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            mode: Mode::Auto,
            kubeconfig: None,
            labels: vec![
                "app".into(),
                "app.kubernetes.io/name".into(),
                "app.kubernetes.io/version".into(),
            ],
            grace: Duration::from_secs(600),
        }
    }
}

/// `tapwire_k8s_*`.
pub struct K8sMetrics {
    /// `[side][resolution]`: client/server × resolved/unknown/ambiguous.
    resolutions: [[IntCounter; 3]; 2],
    objects: IntGaugeVec,
    dropped: IntCounterVec,
    synced: IntGaugeVec,
    watch_errors: IntCounterVec,
}

/// The kinds the watchers list (labels of the per-resource metrics).
pub const RESOURCES: [&str; 6] = [
    "pods",
    "services",
    "endpointslices",
    "nodes",
    "replicasets",
    "jobs",
];

impl K8sMetrics {
    pub fn new(r: &Registry) -> K8sMetrics {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            r.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let res = vec(
            "tapwire_k8s_resolutions_total",
            "Exchange peers named by Kubernetes enrichment, by side and resolution.",
            &["side", "resolution"],
        );
        let side = |s: &str| {
            [
                Resolution::Resolved,
                Resolution::Unknown,
                Resolution::Ambiguous,
            ]
            .map(|r| res.with_label_values(&[s, r.as_str()]))
        };
        let m = K8sMetrics {
            resolutions: [side("client"), side("server")],
            objects: gauge(
                "tapwire_k8s_objects",
                "Records in the enrichment index, by kind (pods include ended ones in their grace period).",
                &["kind"],
            ),
            dropped: vec(
                "tapwire_k8s_dropped_total",
                "Records the enrichment index did not keep, by cap.",
                &["reason"],
            ),
            synced: gauge(
                "tapwire_k8s_synced",
                "1 once a resource is listed and watched, 0 before.",
                &["resource"],
            ),
            watch_errors: vec(
                "tapwire_k8s_watch_errors_total",
                "Failed list or watch requests to the API server, by resource (retried with backoff).",
                &["resource"],
            ),
        };
        for r in RESOURCES {
            m.synced.with_label_values(&[r]).set(0);
            m.watch_errors.with_label_values(&[r]);
        }
        for r in ["pods_cap", "ip_history_cap", "objects_cap"] {
            m.dropped.with_label_values(&[r]);
        }
        m
    }
}

/// Names exchanges' peers from the index the watchers keep.
pub struct Enricher {
    index: RwLock<Index>,
    metrics: K8sMetrics,
    pods_synced: AtomicBool,
    /// A connection failure has been reported (said once for all resources).
    unreachable: AtomicBool,
    server: String,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Enricher {
    pub fn new(cfg: &K8sConfig, registry: &Registry, server: String) -> Enricher {
        let grace = u64::try_from(cfg.grace.as_nanos()).unwrap_or(u64::MAX);
        Enricher {
            index: RwLock::new(Index::new(cfg.labels.clone(), grace)),
            metrics: K8sMetrics::new(registry),
            pods_synced: AtomicBool::new(false),
            unreachable: AtomicBool::new(false),
            server,
        }
    }

    /// Set `client.k8s` and `server.k8s` for the exchange's start time.
    pub fn enrich(&self, ex: &mut Exchange) {
        let t = ex.start_time_unix_nano;
        let (c, s) = {
            let ix = self.index.read().unwrap_or_else(|e| e.into_inner());
            let look = |addr: &str, port| match addr.parse::<IpAddr>() {
                Ok(ip) => Some(ix.resolve(ip, port, t)),
                Err(_) => None,
            };
            (
                look(&ex.client.address, None),
                look(&ex.server.address, Some(ex.server.port)),
            )
        };
        for (side, v) in [(0, &c), (1, &s)] {
            if let Some(v) = v {
                let r = match v.resolution {
                    Resolution::Resolved => 0,
                    Resolution::Unknown => 1,
                    Resolution::Ambiguous => 2,
                };
                self.metrics.resolutions[side][r].inc();
            }
        }
        ex.client.k8s = c;
        ex.server.k8s = s;
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether the pods have been listed once (before that, every address is `unknown`).
    pub fn ready(&self) -> bool {
        self.pods_synced.load(Ordering::Relaxed)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_gauges(&self) {
        let ix = self.index.read().unwrap_or_else(|e| e.into_inner());
        for (kind, n) in ix.counts() {
            self.metrics
                .objects
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (reason, n) in [
            ("pods_cap", ix.drops.pods_cap),
            ("ip_history_cap", ix.drops.ip_history_cap),
            ("objects_cap", ix.drops.objects_cap),
        ] {
            let c = self.metrics.dropped.with_label_values(&[reason]);
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// Say once what failed: a connection failure once for all resources, an API refusal
    /// (403, 404, …) once per resource.
    fn report(&self, resource: &str, e: &kube::runtime::watcher::Error) {
        use kube::runtime::watcher::Error as W;
        let api = match e {
            W::InitialListFailed(kube::Error::Api(s))
            | W::WatchStartFailed(kube::Error::Api(s))
            | W::WatchFailed(kube::Error::Api(s)) => Some(format!(
                "{} {}: {}",
                s.code,
                s.reason,
                s.message.replace('\n', " ")
            )),
            W::WatchError(s) => Some(format!("{} {}: {}", s.code, s.reason, s.message)),
            _ => None,
        };
        match api {
            Some(msg) => eprintln!(
                "tapwire: kubernetes: cannot watch {resource} at {}: {msg} (retrying; exchanges go out without these names meanwhile)",
                self.server
            ),
            None => {
                if !self.unreachable.swap(true, Ordering::Relaxed) {
                    let text = chain(e);
                    eprintln!(
                        "tapwire: kubernetes: API server {} unreachable: {text} (retrying; capturing without Kubernetes names meanwhile)",
                        self.server
                    );
                }
            }
        }
    }
}

/// An error and its causes as one line, without the wrappers' own repeats
/// (`failed to perform initial object list: ServiceError: client error (Connect): tcp
/// connect error: Connection refused (os error 111)` becomes its last three parts).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = one_line(c);
        if !parts.last().is_some_and(|p| p.ends_with(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    if parts.is_empty() {
        return one_line(e);
    }
    parts.join(": ")
}

/// An error as one line (some carry a YAML parser's multi-line context).
pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Load the client configuration `cfg` asks for: `Ok(None)` when enrichment is off.
pub async fn client_config(cfg: &K8sConfig) -> Result<Option<kube::Config>, String> {
    if cfg.mode == Mode::Off {
        return Ok(None);
    }
    if let Some(path) = &cfg.kubeconfig {
        let bad = |e: &dyn std::fmt::Display| {
            format!("kubernetes.kubeconfig {}: {}", path.display(), one_line(e))
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
        let c = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| bad(&e))?;
        return Ok(Some(c));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return kube::Config::incluster()
            .map(Some)
            .map_err(|e| format!("kubernetes: in-cluster configuration: {}", one_line(&e)));
    }
    match cfg.mode {
        Mode::On => kube::Config::infer()
            .await
            .map(Some)
            .map_err(|e| format!("kubernetes: no configuration found: {}", one_line(&e))),
        _ => Ok(None),
    }
}

/// Start enrichment on the current runtime when `cfg` asks for it.
pub async fn start(cfg: &K8sConfig, registry: &Registry) -> Result<Option<Arc<Enricher>>, String> {
    let Some(kc) = client_config(cfg).await? else {
        return Ok(None);
    };
    let server = kc.cluster_url.to_string();
    let client = kube::Client::try_from(kc)
        .map_err(|e| format!("kubernetes: client for {server}: {}", one_line(&e)))?;
    let en = Arc::new(Enricher::new(cfg, registry, server));
    watch::spawn(client, en.clone());
    Ok(Some(en))
}

#[cfg(test)]
mod tests;
