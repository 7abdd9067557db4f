//! `tapwire watch --cluster`: one live view of every agent in the cluster.
//!
//! Finds the agents' pods through the Kubernetes API (the kubeconfig, `--kubeconfig`, or the
//! in-cluster service account) by label (`--agents-selector`, in `--agents-namespace` or every
//! namespace), and subscribes to each one's `/v1/events` through the API server's pod proxy
//! (`/api/v1/namespaces/NS/pods/NAME:PORT/proxy/v1/events`), so no port of the nodes needs to
//! be reachable; the agent token goes in `X-Tapwire-Token`, because the API server keeps the
//! `Authorization` header for itself. `--namespace NS` adds a filter, evaluated by each agent,
//! for exchanges whose client or server is in `NS`.
//!
//! Merging: each event waits [`REORDER`] after it arrives, in a heap ordered by its start
//! time, so the output is in time order across agents as long as no agent's stream lags the
//! others by more than that. The heap holds at most [`MAX_PENDING`] events; past it, the
//! earliest goes out at once. An agent that cannot be reached is named once on stderr and
//! skipped (tried again, silently, at each re-list). The pods are listed again every
//! [`RELIST`], so agents that start later (a rolling update of the DaemonSet) are followed
//! too. The command ends (exit 0) when every stream has ended and no new agent is found, and
//! exits 2 when no agent could be found or reached.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::WatchArgs;
use crate::output::Printer;

/// How long an event waits for earlier ones from slower agents.
pub const REORDER: Duration = Duration::from_millis(1000);
/// How often the agents' pods are listed again (agents that started since are followed).
pub const RELIST: Duration = Duration::from_secs(30);
/// Events held for reordering before the earliest is printed regardless.
pub const MAX_PENDING: usize = 100_000;
/// The agent's API port when its pod does not name one (`http-metrics`).
const DEFAULT_PORT: i32 = 9464;

/// An agent's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub port: i32,
}

/// An agent's pod: `(namespace, name)`.
type Key = (String, String);

enum Msg {
    Event(u64, String),
    Notice(String),
    Failed(Key, String),
    Ended(Key),
}

/// Where an agent's stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Live,
    /// The agent closed it (it shut down): not followed again.
    Ended,
    /// It could not be reached: tried again at the next re-list, named only once.
    Failed,
}

pub fn run(args: &WatchArgs) -> ExitCode {
    let rt = match super::run::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tapwire: cannot start a runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut printer = Printer::new();
    let out = |o: Out| match o {
        Out::Event(line) => printer.print(&line),
        Out::Warn(w) => {
            eprintln!("tapwire: {w}");
            true
        }
    };
    match rt.block_on(watch_cluster(args, out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tapwire: {e}");
            ExitCode::from(2)
        }
    }
}

/// The filter each agent applies: `--filter` and `--namespace` together.
pub fn cluster_filter(
    filter: Option<&str>,
    namespace: Option<&str>,
) -> Result<Option<String>, String> {
    let ns = match namespace {
        None => None,
        Some(ns) => {
            let ok = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(format!(
                    "--namespace {ns:?}: not a Kubernetes namespace name"
                ));
            }
            Some(format!(
                "(has(client.k8s.namespace) && client.k8s.namespace.name == \"{ns}\" || \
                 has(server.k8s.namespace) && server.k8s.namespace.name == \"{ns}\")"
            ))
        }
    };
    Ok(match (filter, ns) {
        (None, ns) => ns,
        (Some(f), None) => Some(f.to_string()),
        (Some(f), Some(ns)) => Some(format!("{ns} && ({f})")),
    })
}

async fn client(args: &WatchArgs) -> Result<Client, String> {
    let cfg = crate::k8s::K8sConfig {
        mode: crate::k8s::Mode::On,
        kubeconfig: args.kubeconfig.clone(),
        ..crate::k8s::K8sConfig::default()
    };
    let mut kc = crate::k8s::client_config(&cfg)
        .await?
        .ok_or("kubernetes: no configuration")?;
    // The pod proxy answers 503 for an agent that does not answer: name it and move on,
    // rather than the client's default of retrying for minutes.
    kc.default_retry = false;
    let server = kc.cluster_url.to_string();
    Client::try_from(kc).map_err(|e| {
        format!(
            "kubernetes: client for {server}: {}",
            crate::k8s::one_line(&e)
        )
    })
}

/// The running agents' pods, sorted by node.
pub async fn find_agents(client: &Client, args: &WatchArgs) -> Result<Vec<Agent>, String> {
    let api: Api<Pod> = match &args.agents_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let pods = api
        .list(&ListParams::default().labels(&args.agents_selector))
        .await
        .map_err(|e| {
            format!(
                "kubernetes: cannot list the agents' pods ({}): {}",
                args.agents_selector,
                crate::k8s::one_line(&e)
            )
        })?;
    let mut agents: Vec<Agent> = pods
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let spec = p.spec.unwrap_or_default();
            let port = spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some("http-metrics"))
                .map_or(DEFAULT_PORT, |p| p.container_port);
            Agent {
                namespace: p.metadata.namespace.unwrap_or_default(),
                pod: p.metadata.name.unwrap_or_default(),
                node: spec.node_name.unwrap_or_default(),
                port,
            }
        })
        .collect();
    agents.sort_by(|a, b| (&a.node, &a.pod).cmp(&(&b.node, &b.pod)));
    Ok(agents)
}

/// The pod-proxy path of an agent's event stream.
pub fn proxy_path(a: &Agent, filter: Option<&str>, since: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if let Some(f) = filter {
        q.append_pair("filter", f);
    }
    if let Some(s) = since {
        q.append_pair("since", s);
    }
    let q = q.finish();
    format!(
        "/api/v1/namespaces/{}/pods/{}:{}/proxy/v1/events{}{q}",
        a.namespace,
        a.pod,
        a.port,
        if q.is_empty() { "" } else { "?" }
    )
}

async fn follow(
    client: Client,
    agent: Agent,
    path: String,
    token: Option<String>,
    tx: mpsc::Sender<Msg>,
) {
    let mut req = axum::http::Request::get(path);
    if let Some(t) = token {
        req = req.header(crate::api::TOKEN_HEADER, t);
    }
    let name = format!("{}/{} on {}", agent.namespace, agent.pod, agent.node);
    let key = (agent.namespace.clone(), agent.pod.clone());
    let req = match req.body(Vec::new()) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Msg::Failed(key, format!("{name}: {e}"))).await;
            return;
        }
    };
    let body = match client.request_stream(req).await {
        Ok(b) => b,
        Err(e) => {
            let _ = tx
                .send(Msg::Failed(
                    key,
                    format!("{name}: {}", crate::k8s::one_line(&e)),
                ))
                .await;
            return;
        }
    };
    let mut lines = std::pin::pin!(body.lines());
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let why = format!("{name}: stream cut: {}", crate::k8s::one_line(&e));
                let _ = tx.send(Msg::Notice(why)).await;
                break;
            }
        };
        let msg = if line.starts_with("{\"notice\"") {
            Msg::Notice(format!("{name}: {line}"))
        } else {
            let ts = start_time(&line);
            Msg::Event(ts, line)
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::Ended(key)).await;
}

/// `start_time_unix_nano` of an event line (0 when absent: it goes out first).
fn start_time(line: &str) -> u64 {
    #[derive(serde::Deserialize)]
    struct T {
        start_time_unix_nano: u64,
    }
    serde_json::from_str::<T>(line).map_or(0, |t| t.start_time_unix_nano)
}

/// What the merged view prints: events on stdout, the rest on stderr.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Event(String),
    Warn(String),
}

/// Merge every agent's stream into `out` (which returns false to stop), looking for new
/// agents every [`RELIST`].
pub async fn watch_cluster(args: &WatchArgs, out: impl FnMut(Out) -> bool) -> Result<(), String> {
    watch_cluster_every(args, RELIST, out).await
}

/// [`watch_cluster`] with another re-list interval (tests).
pub async fn watch_cluster_every(
    args: &WatchArgs,
    relist_every: Duration,
    mut out: impl FnMut(Out) -> bool,
) -> Result<(), String> {
    let filter = cluster_filter(args.filter.as_deref(), args.namespace.as_deref())?;
    let client = client(args).await?;
    let agents = find_agents(&client, args).await?;
    if agents.is_empty() {
        return Err(format!(
            "no running tapwire agents found (pods labelled {} in {})",
            args.agents_selector,
            args.agents_namespace
                .as_deref()
                .map_or("every namespace".into(), |n| format!("namespace {n}"))
        ));
    }
    out(Out::Warn(format!(
        "watching {} agent(s) on {}",
        agents.len(),
        agents
            .iter()
            .map(|a| a.node.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )));
    let (tx, mut rx) = mpsc::channel::<Msg>(4096);
    let mut streams: HashMap<Key, Stream> = HashMap::new();
    let mut named: HashSet<Key> = HashSet::new();
    let follow_one = |a: &Agent, streams: &mut HashMap<Key, Stream>| {
        streams.insert((a.namespace.clone(), a.pod.clone()), Stream::Live);
        let path = proxy_path(a, filter.as_deref(), args.since.as_deref());
        tokio::spawn(follow(
            client.clone(),
            a.clone(),
            path,
            args.agent.token.clone(),
            tx.clone(),
        ));
    };
    for a in &agents {
        follow_one(a, &mut streams);
    }
    let mut heap: BinaryHeap<Reverse<(u64, u64, Instant, String)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut relist = tokio::time::interval_at(Instant::now() + relist_every, relist_every);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Event(ts, line)) => {
                    seq += 1;
                    heap.push(Reverse((ts, seq, Instant::now() + REORDER, line)));
                    if heap.len() > MAX_PENDING
                        && let Some(Reverse((_, _, _, line))) = heap.pop()
                        && !out(Out::Event(line))
                    {
                        return Ok(());
                    }
                }
                Some(Msg::Notice(n)) => {
                    out(Out::Warn(n));
                }
                Some(Msg::Failed(key, why)) => {
                    if named.insert(key.clone()) {
                        out(Out::Warn(format!("agent {why} (skipped)")));
                    }
                    streams.insert(key, Stream::Failed);
                }
                Some(Msg::Ended(key)) => {
                    streams.insert(key, Stream::Ended);
                }
                None => break,
            },
            _ = relist.tick() => {
                // Agents that started since (a rolling update), and another try for the
                // unreachable ones.
                if let Ok(now) = find_agents(&client, args).await {
                    for a in &now {
                        match streams.get(&(a.namespace.clone(), a.pod.clone())) {
                            None => {
                                out(Out::Warn(format!("following {}/{} on {}", a.namespace, a.pod, a.node)));
                                follow_one(a, &mut streams);
                            }
                            Some(Stream::Failed) => follow_one(a, &mut streams),
                            Some(_) => {}
                        }
                    }
                }
            }
            _ = tick.tick() => {}
        }
        let mut live = streams.values().filter(|s| **s == Stream::Live).count();
        if live == 0 {
            // Before ending: agents that appeared meanwhile.
            if let Ok(now) = find_agents(&client, args).await {
                let fresh: Vec<&Agent> = now
                    .iter()
                    .filter(|a| !streams.contains_key(&(a.namespace.clone(), a.pod.clone())))
                    .collect();
                for a in fresh {
                    out(Out::Warn(format!(
                        "following {}/{} on {}",
                        a.namespace, a.pod, a.node
                    )));
                    follow_one(a, &mut streams);
                    live += 1;
                }
            }
        }
        let now = Instant::now();
        while heap
            .peek()
            .is_some_and(|Reverse((_, _, due, _))| *due <= now || live == 0)
        {
            let Some(Reverse((_, _, _, line))) = heap.pop() else {
                break;
            };
            if !out(Out::Event(line)) {
                return Ok(());
            }
        }
        if live == 0 && heap.is_empty() {
            break;
        }
    }
    while let Some(Reverse((_, _, _, line))) = heap.pop() {
        if !out(Out::Event(line)) {
            return Ok(());
        }
    }
    if streams.values().all(|s| *s == Stream::Failed) {
        return Err(format!(
            "none of the {} agents could be reached",
            streams.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
