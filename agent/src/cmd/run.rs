//! `tapwire run`: the agent. Opens the capture rings (errors name the interface and exit 2
//! before anything starts), starts one worker thread per ring, serves the API on a small
//! tokio runtime, and on SIGTERM or Ctrl-C stops the workers, which close their spool
//! segments and flush what their pipelines hold.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::api::{self, ApiState};
use crate::capture::{self, Shared, ring::RingConfig};
use crate::cli::RunArgs;
use crate::config::{Config, expand_interfaces};
use crate::metrics::Metrics;
use crate::sink_stage;
use crate::spool::SpoolConfig;
use sinks::route::Routes;

/// Why `tapwire run` stopped with an error: one line each, printed once by [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A configuration key, flag or variable is wrong (the message names it).
    #[error("{0}")]
    Config(String),
    #[error("token_file {0}: {1}")]
    Token(String, String),
    #[error(
        "listen {0}: an address other than loopback needs a token (token_file, --token-file or TAPWIRE_TOKEN)"
    )]
    OpenListen(SocketAddr),
    #[error("--read: {0}")]
    Read(String),
    #[error("capture: {0}")]
    Capture(String),
    #[cfg(not(feature = "libpcap"))]
    #[error("--libpcap: this build has no libpcap (the `libpcap` feature)")]
    NoLibpcap,
    #[error("--filter: {0}")]
    Filter(String),
    #[error("cannot start the API runtime: {0}")]
    Runtime(std::io::Error),
    #[error("spool {0}: {1}")]
    Spool(String, std::io::Error),
    /// The API could not listen, or failed while serving.
    #[error("{0}")]
    Api(String),
}

impl RunError {
    /// 1 when the machine could not give what any run needs (threads), 2 for everything the
    /// user can fix (configuration, interfaces, permissions, addresses).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Runtime(_) => 1,
            _ => 2,
        }
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapwire: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn start(args: RunArgs) -> Result<(), RunError> {
    let cfg = Config::resolve(&args).map_err(RunError::Config)?;
    let token = match &cfg.token_file {
        None => std::env::var("TAPWIRE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                return Err(RunError::Token(
                    path.display().to_string(),
                    "the file is empty".into(),
                ));
            }
            Err(e) => return Err(RunError::Token(path.display().to_string(), e.to_string())),
        },
    };
    // Events and raw packets are never served off the node's loopback without a credential.
    if token.is_none() && !cfg.listen.ip().is_loopback() {
        return Err(RunError::OpenListen(cfg.listen));
    }
    let workers = cfg.workers;
    let spool = SpoolConfig {
        dir: cfg.spool_dir.clone(),
        limit_bytes: cfg.spool_limit,
        segment_bytes: (cfg.spool_limit / 16).clamp(1 << 20, 64 << 20),
        snaplen: cfg.snaplen,
        ..SpoolConfig::default()
    };
    let interfaces: Vec<Option<String>> =
        match expand_interfaces(&cfg.interfaces).map_err(RunError::Config)? {
            v if v.is_empty() => vec![None],
            v => v.into_iter().map(Some).collect(),
        };
    let group_base = (std::process::id() & 0x7fff) as u16;
    let mut captures = Vec::new();
    if let Some(path) = &args.read {
        let f = capture::source::FileSource::open(path, args.recorded_speed)
            .map_err(|e| RunError::Read(e.to_string()))?;
        captures.push(capture::Capture {
            label: "file".into(),
            rings: vec![Box::new(f)],
        });
    }
    for (i, iface) in interfaces
        .iter()
        .enumerate()
        .filter(|_| args.read.is_none())
    {
        if args.libpcap {
            #[cfg(feature = "libpcap")]
            {
                let p = capture::source::PcapSource::open(
                    iface.as_deref(),
                    cfg.snaplen,
                    cfg.filter.as_deref(),
                )
                .map_err(|e| RunError::Capture(e.to_string()))?;
                captures.push(capture::Capture {
                    label: iface.clone().unwrap_or_else(|| "any".into()),
                    rings: vec![Box::new(p)],
                });
                continue;
            }
            #[cfg(not(feature = "libpcap"))]
            return Err(RunError::NoLibpcap);
        }
        let filter = cfg
            .filter
            .as_deref()
            .map(|f| capture::bpf::compile(f, iface.is_none()))
            .transpose()
            .map_err(|e| RunError::Filter(e.to_string()))?
            .map(Arc::from);
        let ring = RingConfig {
            filter,
            block_nr: cfg.ring_blocks,
            ..RingConfig::default()
        };
        let c = capture::open(
            iface.as_deref(),
            workers,
            group_base.wrapping_add(i as u16),
            &ring,
        )
        .map_err(|e| RunError::Capture(e.to_string()))?;
        captures.push(c);
    }
    let rt = runtime().map_err(RunError::Runtime)?;
    let metrics = Arc::new(Metrics::new());
    metrics
        .spool_limit
        .set(i64::try_from(cfg.spool_limit).unwrap_or(i64::MAX));
    let routes = Arc::new(Routes::new(cfg.sinks.routes));
    let mut hub =
        sink_stage::build(&cfg.sinks, &metrics, &routes, rt.handle()).map_err(RunError::Config)?;
    hub.set_max_subscriptions(cfg.api.max_subscriptions);
    let enricher = rt
        .block_on(crate::k8s::start(&cfg.kubernetes, &metrics.registry))
        .map_err(RunError::Config)?;
    let k8s_line = match enricher {
        Some(en) => {
            let line = format!(", Kubernetes names from {}", en.server());
            if args.read.is_some() {
                // A file is read in a few seconds: give it names from its first packet.
                let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !en.ready() && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            hub.set_enricher(en);
            line
        }
        None => String::new(),
    };
    let shared = Arc::new(Shared {
        hub: Arc::new(hub),
        metrics,
        stop: AtomicBool::new(false),
        routes,
        pipeline: pipeline::Config {
            redaction: Arc::new(cfg.redaction.clone()),
            flow: pipeline::flow::FlowConfig {
                memory_budget: cfg.memory_budget,
                skip: if cfg.skip_own_traffic {
                    cfg.own_endpoints().into()
                } else {
                    Arc::new([])
                },
                ..Default::default()
            },
            ..pipeline::Config::default()
        },
    });
    let total: usize = captures.iter().map(|c| c.rings.len()).sum();
    // A capture file is the whole input: this host's live TLS plaintext is not mixed into it.
    #[cfg(feature = "tls")]
    let tls_mode = if args.read.is_some() {
        crate::config::TlsMode::Off
    } else {
        cfg.tls
    };
    // The TLS plaintext's folder is one more share of the spool's cap.
    #[cfg(feature = "tls")]
    let shares = total + usize::from(tls_mode != crate::config::TlsMode::Off);
    #[cfg(not(feature = "tls"))]
    let shares = total;
    let labels: Vec<String> = captures.iter().map(|c| c.label.clone()).collect();
    let mut handles = Vec::new();
    let mut first = 0;
    for c in captures {
        let n = c.rings.len();
        let spawned = capture::spawn(c, first, shares, &spool, shared.clone());
        first += n;
        match spawned {
            Ok(h) => handles.extend(h),
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                return Err(RunError::Spool(spool.dir.display().to_string(), e));
            }
        }
    }
    #[cfg(feature = "tls")]
    let tls_spool = if tls_mode == crate::config::TlsMode::Off {
        None
    } else {
        match crate::spool::WorkerSpool::open_folder(&spool, "tls", shares) {
            Ok(s) => Some(s),
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                return Err(RunError::Spool(spool.dir.display().to_string(), e));
            }
        }
    };
    #[cfg(feature = "tls")]
    match crate::tls_source::spawn(tls_mode, shared.clone(), tls_spool) {
        Ok(h) => handles.extend(h),
        Err(e) => eprintln!("tapwire: TLS plaintext off: cannot start its thread: {e}"),
    }
    #[cfg(not(feature = "tls"))]
    if cfg.tls != crate::config::TlsMode::Off && args.read.is_none() {
        eprintln!("tapwire: TLS plaintext off: this build has no TLS tracer (the `tls` feature)");
    }
    let state = Arc::new(ApiState {
        shared: shared.clone(),
        interfaces: labels.clone(),
        workers: total,
        spool_dir: spool.dir.display().to_string(),
        token,
        limits: cfg.api.clone(),
        replays: Arc::default(),
        exports: Arc::default(),
    });
    let listen: SocketAddr = cfg.listen;
    let hub = shared.hub.clone();
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("--listen {listen}: {e}"))?;
        eprintln!(
            "tapwire: capturing on {} with {total} worker(s), spool {} (cap {}), API on http://{listen}{}{k8s_line}",
            labels.join(","),
            state.spool_dir,
            cfg.spool_limit_text,
            sink_stage::describe(&cfg.sinks),
        );
        let (stopping, stop) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .into_future();
        let mut server = tokio::spawn(server);
        tokio::select! {
            r = &mut server => return r.map_err(|e| format!("API: {e}"))?.map_err(|e| format!("API: {e}")),
            _ = shutdown() => {}
        }
        // End the event streams, or open subscriptions would hold the server up.
        hub.close_all();
        let _ = stopping.send(());
        // A client that reads nothing cannot hold the agent up: its connection is dropped
        // after the grace period.
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(r) => r.map_err(|e| format!("API: {e}"))?.map_err(|e| format!("API: {e}")),
            Err(_) => {
                server.abort();
                eprintln!(
                    "tapwire: API: connections still open {}s after the signal were closed",
                    SHUTDOWN_GRACE.as_secs()
                );
                Ok(())
            }
        }
    });
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    // The workers have flushed their pipelines into the sinks; deliver what they queued.
    for sink in shared.hub.sinks() {
        sink.flush(std::time::Duration::from_secs(5));
        let left = sink.queued();
        if left > 0 {
            eprintln!(
                "tapwire: sinks.{}: {left} exchanges still queued at shutdown were not delivered",
                sink.name()
            );
        }
    }
    rt.shutdown_background();
    served.map_err(RunError::Api)
}

/// How long open API connections may take to finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The small tokio runtime of the API, the sinks' tasks and the Kubernetes watchers (and of
/// `watch --cluster`).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(capture::PIPELINE_STACK)
        .enable_all()
        .build()
}

/// SIGTERM or Ctrl-C.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
