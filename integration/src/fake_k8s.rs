//! A fake Kubernetes API server for the enrichment tests: list and watch of the core kinds,
//! answering with the API's JSON (list envelopes with `metadata.resourceVersion`, watch
//! streams of `{"type":…,"object":…}` lines, `BOOKMARK` events, an `ERROR` event carrying a
//! `410 Expired` Status, `403 Forbidden` Status bodies, and `PartialObjectMetadataList` when a
//! client asks for metadata only), and the pod proxy (`…/pods/NAME:PORT/proxy/…`) to given
//! addresses. Every request is recorded so tests can check what the client asked.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Default)]
struct Kind {
    objects: Vec<Value>,
    /// Namespace and name of every object in `objects`: adding a new one does not scan them.
    names: HashSet<(String, String)>,
    watchers: Vec<mpsc::UnboundedSender<String>>,
    forbidden: bool,
    /// The next watch (and any watch from an older version) answers 410 Expired.
    expired_below: u64,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    kinds: HashMap<String, Kind>,
    /// Method, path and query of every request.
    log: Vec<String>,
    /// `namespace/pod:port` → address the pod proxy forwards to.
    proxies: HashMap<String, SocketAddr>,
}

#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<Inner>>);

/// The list path of each kind the watchers use.
pub const PATHS: [(&str, &str, &str); 6] = [
    ("pods", "/api/v1/pods", "Pod"),
    ("services", "/api/v1/services", "Service"),
    (
        "endpointslices",
        "/apis/discovery.k8s.io/v1/endpointslices",
        "EndpointSlice",
    ),
    ("nodes", "/api/v1/nodes", "Node"),
    ("replicasets", "/apis/apps/v1/replicasets", "ReplicaSet"),
    ("jobs", "/apis/batch/v1/jobs", "Job"),
];

fn kind_of_path(path: &str) -> Option<&'static str> {
    PATHS
        .iter()
        .find(|(_, p, _)| *p == path)
        .map(|(k, _, _)| *k)
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// An object's namespace and name, borrowed (no allocation per comparison). Whether a kind
/// holds an object is answered by its `names` index: a bench loads thousands of pods, and
/// scanning every stored object per `put` took seconds of a core while the runs started.
fn key(o: &Value) -> (&str, &str) {
    let m = &o["metadata"];
    (
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or(""),
    )
}

/// Only the metadata, as `PartialObjectMetadata` (what `metadata_watcher` asks for).
fn partial(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

impl FakeApi {
    /// Serve on 127.0.0.1 (a free port); returns the base URL.
    pub async fn serve(&self) -> String {
        self.serve_at("127.0.0.1:0").await
    }

    /// Serve on `addr`; returns the base URL.
    pub async fn serve_at(&self, addr: &str) -> String {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    pub fn log(&self) -> Vec<String> {
        self.with(|i| i.log.clone())
    }

    /// Route the pod proxy of `namespace/pod:port` to `to`.
    pub fn proxy(&self, pod: &str, to: SocketAddr) {
        self.with(|i| i.proxies.insert(pod.to_string(), to));
    }

    fn event(i: &mut Inner, kind: &str, ty: &str, mut obj: Value) {
        i.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(i.rv.to_string());
        let k = i.kinds.entry(kind.to_string()).or_default();
        let (namespace, name) = key(&obj);
        let owned = (namespace.to_string(), name.to_string());
        if k.names.contains(&owned) {
            k.objects.retain(|o| key(o) != (namespace, name));
        }
        if ty != "DELETED" {
            k.objects.push(obj.clone());
            k.names.insert(owned);
        } else {
            k.names.remove(&owned);
        }
        let line = json!({"type": ty, "object": obj}).to_string() + "\n";
        k.watchers.retain(|w| w.send(line.clone()).is_ok());
    }

    /// Add or replace an object (an `ADDED` or `MODIFIED` watch event).
    pub fn put(&self, kind: &str, obj: Value) {
        self.with(|i| {
            let exists = i.kinds.get(kind).is_some_and(|k| {
                let (namespace, name) = key(&obj);
                k.names.contains(&(namespace.to_string(), name.to_string()))
            });
            Self::event(i, kind, if exists { "MODIFIED" } else { "ADDED" }, obj)
        });
    }

    /// Delete an object (a `DELETED` watch event).
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        self.with(|i| {
            let k = i.kinds.entry(kind.to_string()).or_default();
            if let Some(o) = k.objects.iter().find(|o| key(o) == (namespace, name)) {
                let o = o.clone();
                Self::event(i, kind, "DELETED", o);
            }
        });
    }

    /// Remove an object without telling the watchers (it went while they were away).
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        self.with(|i| {
            i.rv += 1;
            let k = i.kinds.entry(kind.to_string()).or_default();
            k.objects.retain(|o| key(o) != (namespace, name));
            k.names.remove(&(namespace.to_string(), name.to_string()));
        });
    }

    /// A `BOOKMARK` to every watcher of `kind`; returns its resourceVersion.
    pub fn bookmark(&self, kind: &str) -> u64 {
        self.with(|i| {
            i.rv += 1;
            let rv = i.rv;
            let api_kind = PATHS.iter().find(|p| p.0 == kind).unwrap().2;
            let line = json!({"type": "BOOKMARK", "object": {"kind": api_kind, "apiVersion": "v1",
                "metadata": {"resourceVersion": rv.to_string(),
                             "annotations": {"k8s.io/initial-events-end": "false"}}}})
            .to_string()
                + "\n";
            let k = i.kinds.entry(kind.to_string()).or_default();
            k.watchers.retain(|w| w.send(line.clone()).is_ok());
            rv
        })
    }

    /// End the watch streams of `kind` (the server's timeout): clients resume from the last
    /// resourceVersion they saw.
    pub fn close_watches(&self, kind: &str) {
        self.with(|i| {
            i.kinds
                .entry(kind.to_string())
                .or_default()
                .watchers
                .clear()
        });
    }

    /// Compact history: an `ERROR` 410 to the current watchers, and 410 for any watch that
    /// resumes from an older version, so clients must list again.
    pub fn expire(&self, kind: &str) {
        self.with(|i| {
            i.rv += 1;
            let rv = i.rv;
            let line = json!({"type": "ERROR", "object": status(410, "Expired",
                &format!("too old resource version: 1 ({rv})"))})
            .to_string()
                + "\n";
            let k = i.kinds.entry(kind.to_string()).or_default();
            k.expired_below = rv;
            for w in k.watchers.drain(..) {
                let _ = w.send(line.clone());
            }
        });
    }

    /// Answer `kind`'s requests with `403 Forbidden` (or stop).
    pub fn forbid(&self, kind: &str, on: bool) {
        self.with(|i| {
            let k = i.kinds.entry(kind.to_string()).or_default();
            k.forbidden = on;
            if on {
                k.watchers.clear();
            }
        });
    }
}

async fn handle(State(api): State<FakeApi>, req: Request) -> Response {
    let mut path = req.uri().path().to_string();
    let mut query = req.uri().query().unwrap_or("").to_string();
    api.with(|i| i.log.push(format!("{} {path}?{query}", req.method())));
    if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
        // A namespaced list (`/api/v1/namespaces/NS/pods`), else the pod proxy.
        match rest.split_once('/') {
            Some((ns, "pods")) => {
                let ns = ns.to_string();
                query = format!("{query}&namespace={ns}");
                path = "/api/v1/pods".into();
            }
            _ => return proxy(&api, rest, &query, req).await,
        }
    }
    let Some(kind) = kind_of_path(&path) else {
        return (
            StatusCode::NOT_FOUND,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .to_string(),
        )
            .into_response();
    };
    let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let meta_only = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=PartialObjectMetadata"));
    let json_response = |code: StatusCode, body: String| {
        (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let api_kind = PATHS.iter().find(|p| p.0 == kind).unwrap().2;
    let mut inner = api.0.lock().unwrap();
    let rv = inner.rv;
    let k = inner.kinds.entry(kind.to_string()).or_default();
    if k.forbidden {
        let msg = format!(
            "{kind} is forbidden: User \"system:serviceaccount:tapwire:tapwire\" cannot {} resource \"{kind}\" in API group \"\" at the cluster scope",
            if q.contains_key("watch") {
                "watch"
            } else {
                "list"
            }
        );
        return json_response(
            StatusCode::FORBIDDEN,
            status(403, "Forbidden", &msg).to_string(),
        );
    }
    let shape = |o: &Value| if meta_only { partial(o) } else { o.clone() };
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = q
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if from < k.expired_below {
            let e = json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
            return json_response(StatusCode::OK, e.to_string() + "\n");
        }
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        k.watchers.push(tx);
        drop(inner);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|l| (l, rx)) },
            );
        let body = Body::from_stream(stream_meta(stream, meta_only));
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    // `labelSelector` with `key=value` terms (what the clients here send).
    let selector: Vec<(String, String)> = q
        .get("labelSelector")
        .map(|sel| {
            sel.split(',')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let ns_path = q.get("namespace");
    let items: Vec<Value> = k
        .objects
        .iter()
        .filter(|o| {
            selector
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][k] == json!(v))
        })
        .filter(|o| ns_path.is_none_or(|n| o["metadata"]["namespace"] == json!(n)))
        .map(shape)
        .collect();
    let list_kind = if meta_only {
        "PartialObjectMetadataList".to_string()
    } else {
        format!("{api_kind}List")
    };
    let body = json!({"kind": list_kind, "apiVersion": if meta_only { "meta.k8s.io/v1" } else { "v1" },
        "metadata": {"resourceVersion": rv.to_string()}, "items": items});
    json_response(StatusCode::OK, body.to_string())
}

/// Watch lines as the body stream, rewritten to metadata-only objects when asked.
fn stream_meta(
    lines: impl futures_util::Stream<Item = String> + Send + 'static,
    meta_only: bool,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> + Send + 'static {
    use futures_util::StreamExt;
    lines.map(move |line| {
        if !meta_only {
            return Ok(line);
        }
        let mut v: Value = serde_json::from_str(&line).unwrap();
        if v["type"] != "ERROR" && v["type"] != "BOOKMARK" {
            v["object"] = partial(&v["object"]);
        }
        Ok(v.to_string() + "\n")
    })
}

/// `/api/v1/namespaces/NS/pods/NAME:PORT/proxy/REST`: forward a GET to the pod's address.
async fn proxy(api: &FakeApi, rest: &str, query: &str, req: Request) -> Response {
    let mut parts = rest.splitn(4, '/');
    let (Some(ns), Some("pods"), Some(pod), Some(tail)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(path) = tail.strip_prefix("proxy") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(to) = api.with(|i| i.proxies.get(&format!("{ns}/{pod}")).copied()) else {
        let s = status(404, "NotFound", &format!("pods \"{pod}\" not found"));
        return (StatusCode::NOT_FOUND, s.to_string()).into_response();
    };
    // Like the API server: its own `Authorization` is not passed on, other headers are.
    let token = req.headers().get("x-tapwire-token").cloned();
    let url = format!(
        "http://{to}{path}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    // The API server's proxy answers 503 when the pod does not answer.
    let (tx, rx) = mpsc::unbounded_channel::<Result<Vec<u8>, std::io::Error>>();
    let status_code = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_defaults();
        let mut r = agent.get(&url);
        if let Some(t) = token {
            r = r.header("x-tapwire-token", t.to_str().unwrap_or(""));
        }
        match r.call() {
            Ok(resp) => {
                let code = resp.status().as_u16();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut body = resp.into_body().into_reader();
                    let mut buf = vec![0u8; 16384];
                    loop {
                        match body.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tx.send(Ok(buf[..n].to_vec())).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
                code
            }
            Err(ureq::Error::StatusCode(c)) => c,
            Err(e) => {
                let s = status(
                    503,
                    "ServiceUnavailable",
                    &format!("error trying to reach service: {e}"),
                );
                let _ = tx.send(Ok(s.to_string().into_bytes()));
                503
            }
        }
    })
    .await
    .unwrap_or(503);
    let code = StatusCode::from_u16(status_code).unwrap_or(StatusCode::BAD_GATEWAY);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (code, Body::from_stream(stream)).into_response()
}

/// Write a kubeconfig at `path` for the API server at `url` (a bearer token user, as a
/// service account's), creating its folder; returns `path`.
pub fn kubeconfig(path: &std::path::Path, url: &str) -> std::path::PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: test\n  context:\n    cluster: fake\n    user: tapwire\n\
             users:\n- name: tapwire\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .unwrap();
    path.to_path_buf()
}

/// Objects in the API's JSON shapes (what `kubectl get -o json` prints: `managedFields`,
/// `ownerReferences`, `podIPs`, endpoint `targetRef`s, …), for the fake server's tests.
pub mod objects {
    use serde_json::{Value, json};

    fn managed_fields(manager: &str, at: &str) -> Value {
        json!([{"manager": manager, "operation": "Update", "apiVersion": "v1", "time": at,
                "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}])
    }

    /// A controller reference: `(kind, name, uid)`.
    pub type Owner<'a> = (&'a str, &'a str, &'a str);

    /// A running pod.
    #[allow(clippy::too_many_arguments)]
    pub fn pod(
        namespace: &str,
        name: &str,
        uid: &str,
        ip: &str,
        node: &str,
        owner: Option<Owner>,
        labels: Value,
        created: &str,
    ) -> Value {
        let owners = match owner {
            Some((kind, oname, ouid)) => {
                let api = if kind == "Job" { "batch/v1" } else { "apps/v1" };
                json!([{"apiVersion": api, "kind": kind, "name": oname, "uid": ouid,
                        "controller": true, "blockOwnerDeletion": true}])
            }
            None => json!([]),
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1",
                "creationTimestamp": created, "labels": labels, "ownerReferences": owners,
                "managedFields": managed_fields("kube-controller-manager", created)},
            "spec": {"nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always",
                "containers": [{"name": "main", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "resources": {}, "terminationMessagePath": "/dev/termination-log"}]},
            "status": {"phase": "Running", "hostIP": "192.168.49.3",
                "hostIPs": [{"ip": "192.168.49.3"}], "podIP": ip, "podIPs": [{"ip": ip}],
                "startTime": created, "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": created}],
                "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                    "image": "nginx:1.27", "imageID": "docker.io/library/nginx@sha256:00",
                    "containerID": "containerd://0a", "started": true,
                    "state": {"running": {"startedAt": created}}}]}
        })
    }

    /// A replica set owned by a deployment.
    pub fn replicaset(namespace: &str, name: &str, uid: &str, deployment: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace, "uid": uid,
                "creationTimestamp": "2026-11-27T10:00:00Z", "labels": {"app": deployment},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                    "uid": format!("d-{deployment}"), "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": deployment}}},
            "status": {"replicas": 2, "readyReplicas": 2}})
    }

    /// A ClusterIP service.
    pub fn service(namespace: &str, name: &str, cluster_ip: &str, port: u16, target: u16) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("svc-{name}"),
                "creationTimestamp": "2026-11-27T10:00:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": {"app": name},
                "ports": [{"name": "main", "port": port, "protocol": "TCP", "targetPort": target}]},
            "status": {"loadBalancer": {}}})
    }

    /// The endpoint slice of `service`: pods `(name, uid, ip)` on `port`.
    pub fn slice(namespace: &str, service: &str, pods: &[(&str, &str, &str)], port: u16) -> Value {
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|(name, uid, ip)| {
                json!({"addresses": [ip],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "node-b",
                "targetRef": {"kind": "Pod", "name": name, "namespace": namespace, "uid": uid}})
            })
            .collect();
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": format!("{service}-x7k2p"), "namespace": namespace,
                "uid": format!("es-{service}"), "generateName": format!("{service}-"),
                "creationTimestamp": "2026-11-27T10:00:00Z",
                "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                           "kubernetes.io/service-name": service},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service,
                    "uid": format!("svc-{service}"), "controller": true, "blockOwnerDeletion": true}]},
            "endpoints": endpoints,
            "ports": [{"name": "main", "port": port, "protocol": "TCP"}]})
    }

    /// A node with one internal address.
    pub fn node(name: &str, ip: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("n-{name}"), "creationTimestamp": "2026-11-27T10:00:00Z",
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.33.1", "containerRuntimeVersion": "containerd://2.0.5"}}})
    }
}
