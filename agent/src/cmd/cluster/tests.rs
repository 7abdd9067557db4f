//! `watch --cluster` against the fake API server: agents found by label, reached through the
//! pod proxy with the token header, streams merged in time order, an unreachable agent named
//! once and skipped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use tapwire_integration::fake_k8s::{self, FakeApi};

use super::*;
use crate::cli::{Cli, Command};

fn agent_pod(name: &str, node: &str, ip: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "tapwire", "uid": format!("u-{name}"),
            "creationTimestamp": "2026-11-27T10:00:00Z",
            "labels": {"app.kubernetes.io/name": "tapwire", "app.kubernetes.io/instance": "tapwire",
                       "controller-revision-hash": "6c9f7d"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "tapwire",
                "uid": "ds-1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": node, "hostNetwork": true, "serviceAccountName": "tapwire",
            "containers": [{"name": "agent", "image": "ghcr.io/tapwire/tapwire:0.1.0",
                "ports": [{"name": "http-metrics", "containerPort": 9464, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": ip,
            "startTime": "2026-11-27T10:00:00Z"}})
}

/// An agent's `/v1/events`: the given lines, with what each request asked recorded.
async fn fake_agent(lines: Vec<String>, seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/events",
        axum::routing::get(move |req: axum::extract::Request| {
            let lines = lines.clone();
            let seen = seen.clone();
            async move {
                let token = req
                    .headers()
                    .get("x-tapwire-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock()
                    .unwrap()
                    .push(format!("{} token={token}", req.uri().query().unwrap_or("")));
                lines.join("\n") + "\n"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An agent whose stream sends `first`, waits `hold`, sends `then` and ends.
async fn slow_agent(first: String, hold: Duration, then: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/events",
        axum::routing::get(move || {
            let (first, then) = (first.clone(), then.clone());
            async move {
                let parts = futures_util::stream::unfold(0, move |i| {
                    let (first, then) = (first.clone(), then.clone());
                    async move {
                        match i {
                            0 => Some((Ok::<_, std::io::Error>(first + "\n"), 1)),
                            1 => {
                                tokio::time::sleep(hold).await;
                                Some((Ok(then + "\n"), 2))
                            }
                            _ => None,
                        }
                    }
                });
                axum::body::Body::from_stream(parts)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn event(ts: u64, path: &str) -> String {
    json!({"protocol": "http", "start_time_unix_nano": ts, "end_time_unix_nano": ts + 1000,
        "client": {"address": "10.244.1.9", "port": 40000},
        "server": {"address": "10.244.1.5", "port": 8080, "k8s": {"resolution": "resolved",
            "namespace": {"name": "shop"}}},
        "network": {"transport": "tcp"}, "status": "ok",
        "http": {"request": {"method": "GET"}}, "url": {"path": path}})
    .to_string()
}

/// The `url.path` of each event printed, in order.
fn paths_of(got: &[Out]) -> Vec<String> {
    got.iter()
        .filter_map(|o| match o {
            Out::Event(l) => Some(
                serde_json::from_str::<serde_json::Value>(l).unwrap()["url"]["path"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            Out::Warn(_) => None,
        })
        .collect()
}

fn watch_args(extra: &[&str]) -> WatchArgs {
    let mut argv = vec!["tapwire", "watch", "--cluster"];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Watch(w) => w,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_merged_in_time_order_and_an_unreachable_one_is_named_once() {
    let api = FakeApi::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = fake_agent(
        vec![
            event(1_000, "/a1"),
            event(3_000, "/a3"),
            event(5_000, "/a5"),
        ],
        seen.clone(),
    )
    .await;
    let b = fake_agent(
        vec![
            event(2_000, "/b2"),
            r#"{"notice":"dropped","count":2}"#.to_string(),
            event(4_000, "/b4"),
        ],
        seen.clone(),
    )
    .await;
    api.put("pods", agent_pod("tapwire-a", "node-a", "192.168.49.2"));
    api.put("pods", agent_pod("tapwire-b", "node-b", "192.168.49.3"));
    api.put("pods", agent_pod("tapwire-c", "node-c", "192.168.49.4"));
    // Not an agent: never asked.
    let mut other = agent_pod("web-1", "node-a", "10.244.1.5");
    other["metadata"]["labels"] = json!({"app": "web"});
    api.put("pods", other);
    api.proxy("tapwire/tapwire-a:9464", a);
    api.proxy("tapwire/tapwire-b:9464", b);
    // tapwire-c's address answers nothing.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    api.proxy("tapwire/tapwire-c:9464", closed);
    let url = api.serve().await;
    let kc = fake_k8s::kubeconfig(
        &std::env::temp_dir().join(format!("tapwire-cluster-{}/kubeconfig", std::process::id())),
        &url,
    );
    let args = watch_args(&[
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--namespace",
        "shop",
        "--filter",
        "status != \"ok\"",
        "--since",
        "5m",
        "--token",
        "agent-token",
    ]);
    let mut got = Vec::new();
    watch_cluster(&args, |o| {
        got.push(o);
        true
    })
    .await
    .unwrap();
    let paths = paths_of(&got);
    assert_eq!(
        paths,
        ["/a1", "/b2", "/a3", "/b4", "/a5"],
        "time order across agents"
    );
    let warns: Vec<&String> = got
        .iter()
        .filter_map(|o| match o {
            Out::Warn(w) => Some(w),
            Out::Event(_) => None,
        })
        .collect();
    assert_eq!(warns[0], "watching 3 agent(s) on node-a, node-b, node-c");
    let c: Vec<_> = warns.iter().filter(|w| w.contains("tapwire-c")).collect();
    assert_eq!(c.len(), 1, "{warns:?}");
    assert!(
        c[0].starts_with("agent tapwire/tapwire-c on node-c: ") && c[0].ends_with("(skipped)"),
        "{}",
        c[0]
    );
    assert!(
        warns
            .iter()
            .any(|w| w.starts_with("tapwire/tapwire-b on node-b: {\"notice\"")),
        "{warns:?}"
    );
    // Each agent got the combined filter, the replay window and the token in its header.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(s.split(' ').next().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert!(
            q["filter"].contains(r#"server.k8s.namespace.name == "shop""#),
            "{s}"
        );
        assert!(q["filter"].ends_with(r#"&& (status != "ok")"#), "{s}");
        assert_eq!(q["since"], "5m");
        assert!(s.ends_with("token=agent-token"), "{s}");
    }
    // The agents' pods were listed by label, once.
    let log = api.log();
    assert!(
        log.iter().any(|l| l.starts_with("GET /api/v1/pods?")
            && l.contains("labelSelector=app.kubernetes.io%2Fname%3Dtapwire")),
        "{log:?}"
    );
}

#[test]
fn the_namespace_filter_is_checked_and_combined() {
    assert_eq!(cluster_filter(None, None).unwrap(), None);
    assert_eq!(
        cluster_filter(Some("x"), None).unwrap().as_deref(),
        Some("x")
    );
    let f = cluster_filter(None, Some("shop")).unwrap().unwrap();
    let compiled = crate::filter::Filter::compile(&f).unwrap();
    let mut ex = schemas::Exchange::new(
        schemas::Protocol::Http,
        schemas::Transport::Tcp,
        schemas::Peer::new("10.0.0.1", 1),
        schemas::Peer::new("10.0.0.2", 80),
        1,
    );
    assert!(
        !compiled.matches_event(&ex),
        "no names: not in the namespace"
    );
    let mut k = schemas::k8s::K8s::bare(schemas::k8s::Resolution::Resolved);
    k.namespace = schemas::k8s::Name::of("shop");
    ex.client.k8s = Some(Arc::new(k));
    assert!(compiled.matches_event(&ex), "the client is in it");
    let e = cluster_filter(None, Some("Shop\"||true")).unwrap_err();
    assert!(e.starts_with("--namespace"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_agents_is_an_error_naming_the_selector() {
    let api = FakeApi::default();
    let url = api.serve().await;
    let kc = fake_k8s::kubeconfig(
        &std::env::temp_dir().join(format!(
            "tapwire-cluster-none-{}/kubeconfig",
            std::process::id()
        )),
        &url,
    );
    let args = watch_args(&[
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--agents-namespace",
        "obs",
    ]);
    let e = watch_cluster(&args, |_| true).await.unwrap_err();
    assert_eq!(
        e,
        "no running tapwire agents found (pods labelled app.kubernetes.io/name=tapwire in namespace obs)"
    );
    assert!(
        api.log()
            .iter()
            .any(|l| l.starts_with("GET /api/v1/namespaces/obs/pods?"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_starts_later_is_followed_too() {
    let api = FakeApi::default();
    let a = slow_agent(
        event(1_000, "/a1"),
        Duration::from_millis(1500),
        event(3_000, "/a3"),
    )
    .await;
    let b = fake_agent(vec![event(2_000, "/b2")], Arc::new(Mutex::new(Vec::new()))).await;
    api.put("pods", agent_pod("tapwire-a", "node-a", "192.168.49.2"));
    api.proxy("tapwire/tapwire-a:9464", a);
    api.proxy("tapwire/tapwire-b:9464", b);
    let url = api.serve().await;
    let kc = fake_k8s::kubeconfig(
        &std::env::temp_dir().join(format!(
            "tapwire-cluster-later-{}/kubeconfig",
            std::process::id()
        )),
        &url,
    );
    let args = watch_args(&["--kubeconfig", kc.to_str().unwrap()]);
    // tapwire-b's pod appears while tapwire-a streams (a rolling update's new pod).
    let later = api.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        later.put("pods", agent_pod("tapwire-b", "node-b", "192.168.49.3"));
    });
    let mut got = Vec::new();
    watch_cluster_every(&args, Duration::from_millis(500), |o| {
        got.push(o);
        true
    })
    .await
    .unwrap();
    let paths = paths_of(&got);
    assert_eq!(paths, ["/a1", "/b2", "/a3"]);
    assert!(
        got.contains(&Out::Warn("following tapwire/tapwire-b on node-b".into())),
        "{got:?}"
    );
}
