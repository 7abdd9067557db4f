//! Enrichment against the fake API server (`integration/src/fake_k8s.rs`): the real watcher code, a kubeconfig
//! file, and objects in the API's JSON shapes (what `kubectl get -o json` prints, including
//! `managedFields`, `ownerReferences`, `podIPs` and endpoint `targetRef`s).

use std::time::Duration;

use prometheus::Registry;
use schemas::k8s::{K8s, Resolution};
use schemas::{Exchange, Peer, Protocol, Transport};
use serde_json::{Value, json};

use super::*;
use tapwire_integration::fake_k8s::{self, FakeApi, objects};

const UTC0: &str = "2026-11-27T10:00:00Z";

/// A running pod of a deployment's replica set, as the API returns it.
pub fn pod(name: &str, uid: &str, ip: &str, rs: Option<(&str, &str)>, created: &str) -> Value {
    let mut labels =
        json!({"app": "web", "team": "shop-core", "app.kubernetes.io/version": "1.4.2"});
    if let Some((rs_name, _)) = rs {
        labels["pod-template-hash"] = json!(rs_name.rsplit('-').next().unwrap());
    }
    let owner = rs.map(|(n, u)| ("ReplicaSet", n, u));
    objects::pod("shop", name, uid, ip, "node-b", owner, labels, created)
}

fn replicaset(name: &str, uid: &str, deployment: &str) -> Value {
    objects::replicaset("shop", name, uid, deployment)
}

fn service() -> Value {
    objects::service("shop", "web", "10.96.14.7", 80, 8080)
}

fn slice(pods: &[(&str, &str, &str)]) -> Value {
    objects::slice("shop", "web", pods, 8080)
}

fn node(name: &str, ip: &str) -> Value {
    objects::node(name, ip)
}

fn exchange(client: &str, server: &str, port: u16, at: u64) -> Exchange {
    Exchange::new(
        Protocol::Http,
        Transport::Tcp,
        Peer::new(client, 40000),
        Peer::new(server, port),
        at,
    )
}

/// An RFC 3339 time as Unix nanoseconds (the API's timestamps).
fn unix_nanos(rfc3339: &str) -> u64 {
    let t: k8s_openapi::jiff::Timestamp = rfc3339.parse().unwrap();
    u64::try_from(t.as_nanosecond()).unwrap()
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn names(en: &Enricher, client: &str, server: &str, port: u16, at: u64) -> (Arc<K8s>, Arc<K8s>) {
    let mut ex = exchange(client, server, port, at);
    en.enrich(&mut ex);
    (ex.client.k8s.unwrap(), ex.server.k8s.unwrap())
}

fn pod_of(k: &K8s) -> Option<String> {
    k.pod.as_ref().map(|p| p.name.clone())
}

fn metric(r: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for fam in r.gather() {
        if fam.name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let ok = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if ok {
                return if fam.get_field_type() == prometheus::proto::MetricType::COUNTER {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                };
            }
        }
    }
    f64::NAN
}

async fn start_on(api: &FakeApi, registry: &Registry, dir: &std::path::Path) -> Arc<Enricher> {
    let url = api.serve().await;
    let kubeconfig = fake_k8s::kubeconfig(&dir.join("kubeconfig"), &url);
    let cfg = K8sConfig {
        kubeconfig: Some(kubeconfig),
        ..K8sConfig::default()
    };
    start(&cfg, registry)
        .await
        .unwrap()
        .expect("enrichment on with a kubeconfig")
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tapwire-k8s-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_update_delete_and_ip_reuse_through_list_and_watch() {
    let api = FakeApi::default();
    api.put(
        "pods",
        pod(
            "web-5d8f7-abcde",
            "p-1",
            "10.244.1.5",
            Some(("web-5d8f7", "rs-1")),
            UTC0,
        ),
    );
    api.put("pods", pod("client-0", "p-c", "10.244.1.9", None, UTC0));
    api.put("replicasets", replicaset("web-5d8f7", "rs-1", "web"));
    api.put("services", service());
    api.put(
        "endpointslices",
        slice(&[("web-5d8f7-abcde", "p-1", "10.244.1.5")]),
    );
    api.put("nodes", node("node-b", "192.168.49.3"));
    let registry = Registry::new();
    let en = start_on(&api, &registry, &tempdir("watch")).await;
    wait_for("the first list", || en.ready()).await;
    wait_for("every kind listed", || {
        RESOURCES
            .iter()
            .all(|r| metric(&registry, "tapwire_k8s_synced", &[("resource", r)]) == 1.0)
    })
    .await;
    let t0 = unix_nanos(UTC0) + 60_000_000_000;

    // client pod → service cluster IP; the pod behind it by its address.
    let (c, s) = names(&en, "10.244.1.9", "10.96.14.7", 80, t0);
    assert_eq!(pod_of(&c).as_deref(), Some("client-0"));
    assert_eq!(c.namespace.as_ref().unwrap().name, "shop");
    assert_eq!(s.service.as_ref().unwrap().name, "web");
    let (_, s) = names(&en, "10.244.1.9", "10.244.1.5", 8080, t0);
    assert_eq!(s.resolution, Resolution::Resolved);
    assert_eq!(pod_of(&s).as_deref(), Some("web-5d8f7-abcde"));
    assert_eq!(s.deployment.as_ref().unwrap().name, "web");
    assert_eq!(s.replicaset.as_ref().unwrap().name, "web-5d8f7");
    assert_eq!(s.service.as_ref().unwrap().name, "web");
    assert_eq!(s.node.as_ref().unwrap().name, "node-b");
    let labels = &s.pod.as_ref().unwrap().label;
    assert_eq!(
        labels.get("app.kubernetes.io/version").map(String::as_str),
        Some("1.4.2")
    );
    assert!(
        !labels.contains_key("team"),
        "not on the allow-list: {labels:?}"
    );
    // The node's address, and something outside the cluster.
    let (c, s) = names(&en, "192.168.49.3", "1.1.1.1", 53, t0);
    assert_eq!(c.node.as_ref().unwrap().name, "node-b");
    assert!(c.pod.is_none());
    assert_eq!(s.resolution, Resolution::Unknown);

    // Update: a new label value arrives through the watch.
    let mut p = pod(
        "web-5d8f7-abcde",
        "p-1",
        "10.244.1.5",
        Some(("web-5d8f7", "rs-1")),
        UTC0,
    );
    p["metadata"]["labels"]["app.kubernetes.io/version"] = json!("1.5.0");
    api.put("pods", p);
    wait_for("the update", || {
        let (_, s) = names(&en, "10.244.1.9", "10.244.1.5", 8080, t0);
        s.pod.as_ref().unwrap().label["app.kubernetes.io/version"] == "1.5.0"
    })
    .await;

    // Delete, then a new pod reuses the address: each exchange keeps its own pod.
    let before_delete = now_ns();
    api.delete("pods", "shop", "web-5d8f7-abcde");
    wait_for("the delete", || {
        names(&en, "10.244.1.9", "10.244.1.5", 8080, now_ns())
            .1
            .resolution
            == Resolution::Unknown
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let created = k8s_openapi::jiff::Timestamp::now().to_string();
    let reuse_at = now_ns();
    api.put(
        "pods",
        pod(
            "web-5d8f7-fghij",
            "p-2",
            "10.244.1.5",
            Some(("web-5d8f7", "rs-1")),
            &created,
        ),
    );
    wait_for("the new pod", || {
        pod_of(&names(&en, "10.244.1.9", "10.244.1.5", 8080, now_ns()).1).as_deref()
            == Some("web-5d8f7-fghij")
    })
    .await;
    let (_, old) = names(&en, "10.244.1.9", "10.244.1.5", 8080, before_delete);
    assert_eq!(
        pod_of(&old).as_deref(),
        Some("web-5d8f7-abcde"),
        "the pod that held it then"
    );
    let (_, new) = names(
        &en,
        "10.244.1.9",
        "10.244.1.5",
        8080,
        reuse_at + 2_000_000_000,
    );
    assert_eq!(pod_of(&new).as_deref(), Some("web-5d8f7-fghij"));

    // Each peer's resolution is counted.
    assert!(
        metric(
            &registry,
            "tapwire_k8s_resolutions_total",
            &[("side", "server"), ("resolution", "resolved")]
        ) >= 4.0
    );
    assert!(
        metric(
            &registry,
            "tapwire_k8s_resolutions_total",
            &[("side", "server"), ("resolution", "unknown")]
        ) >= 2.0
    );
    // Every request went through the kubeconfig's server, lists with watches after them.
    let log = api.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/v1/pods?") && l.contains("watch=true")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /apis/apps/v1/replicasets?")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_resume_and_410_gone_relists_and_ends_what_went_missing() {
    let api = FakeApi::default();
    api.put("pods", pod("a", "p-a", "10.244.2.1", None, UTC0));
    api.put("pods", pod("b", "p-b", "10.244.2.2", None, UTC0));
    let registry = Registry::new();
    let en = start_on(&api, &registry, &tempdir("relist")).await;
    wait_for("the first list", || en.ready()).await;
    let pod_lists = || {
        api.log()
            .iter()
            .filter(|l| l.starts_with("GET /api/v1/pods?") && !l.contains("watch="))
            .count()
    };
    assert_eq!(pod_lists(), 1);

    // A bookmark, then the server ends the watch: the client resumes from the bookmark.
    wait_for("the watch", || {
        api.log()
            .iter()
            .any(|l| l.contains("/api/v1/pods?") && l.contains("watch=true"))
    })
    .await;
    let rv = api.bookmark("pods");
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.close_watches("pods");
    wait_for("a watch resumed from the bookmark", || {
        api.log()
            .iter()
            .any(|l| l.contains("/api/v1/pods?") && l.contains(&format!("resourceVersion={rv}")))
    })
    .await;
    assert_eq!(pod_lists(), 1, "a bookmark resume is not a re-list");

    // Pod b goes while the watch is away, then history is compacted (410 Gone).
    let t_before = now_ns();
    api.forget("pods", "shop", "b");
    api.put("pods", pod("c", "p-c", "10.244.2.3", None, UTC0));
    api.expire("pods");
    wait_for("a re-list after 410", || pod_lists() >= 2).await;
    wait_for("b ended by the re-list", || {
        names(&en, "10.244.2.1", "10.244.2.2", 80, now_ns())
            .1
            .resolution
            == Resolution::Unknown
    })
    .await;
    // What b did before it went is still b's; a and c are there.
    assert_eq!(
        pod_of(&names(&en, "10.244.2.1", "10.244.2.2", 80, t_before).1).as_deref(),
        Some("b")
    );
    let (a, c) = names(&en, "10.244.2.1", "10.244.2.3", 80, now_ns());
    assert_eq!(
        (pod_of(&a).as_deref(), pod_of(&c).as_deref()),
        (Some("a"), Some("c"))
    );
    wait_for("pods synced again", || {
        metric(&registry, "tapwire_k8s_synced", &[("resource", "pods")]) == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_resource_is_counted_and_the_rest_still_names_exchanges() {
    let api = FakeApi::default();
    api.put("pods", pod("web-1", "p-1", "10.244.3.1", None, UTC0));
    api.put("nodes", node("node-c", "192.168.49.4"));
    api.forbid("nodes", true);
    let registry = Registry::new();
    let en = start_on(&api, &registry, &tempdir("denied")).await;
    wait_for("the pods", || en.ready()).await;
    wait_for("the denial counted", || {
        metric(
            &registry,
            "tapwire_k8s_watch_errors_total",
            &[("resource", "nodes")],
        ) >= 1.0
    })
    .await;
    assert_eq!(
        metric(&registry, "tapwire_k8s_synced", &[("resource", "nodes")]),
        0.0
    );
    let (c, s) = names(&en, "10.244.3.1", "192.168.49.4", 10250, now_ns());
    assert_eq!(pod_of(&c).as_deref(), Some("web-1"));
    assert_eq!(s.resolution, Resolution::Unknown, "nodes are not known");
    // Access granted: the retry lists them.
    api.forbid("nodes", false);
    wait_for("nodes after the retry", || {
        names(&en, "10.244.3.1", "192.168.49.4", 10250, now_ns())
            .1
            .node
            .is_some()
    })
    .await;
    assert_eq!(
        metric(&registry, "tapwire_k8s_synced", &[("resource", "nodes")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_kubeconfig_outside_a_pod_enrichment_is_off_and_a_bad_one_is_an_error() {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return;
    }
    let registry = Registry::new();
    assert!(
        start(&K8sConfig::default(), &registry)
            .await
            .unwrap()
            .is_none()
    );
    let dir = tempdir("bad");
    let bad = dir.join("kubeconfig");
    std::fs::write(&bad, "clusters: [").unwrap();
    let cfg = K8sConfig {
        kubeconfig: Some(bad.clone()),
        ..K8sConfig::default()
    };
    let e = start(&cfg, &registry).await.err().unwrap();
    assert!(
        e.starts_with(&format!("kubernetes.kubeconfig {}:", bad.display())),
        "{e}"
    );
    assert!(!e.contains('\n'));
}
