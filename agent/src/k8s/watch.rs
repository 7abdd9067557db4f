//! The watchers: list and watch pods, services, endpoint slices, nodes, and the metadata of
//! replica sets and jobs (kube's `watcher`, which re-lists on `410 Gone`, resumes from
//! bookmarks, and backs off on errors), each feeding compact records into the [`Index`].
//!
//! A re-list (after `410 Gone` or a lost connection) replaces the kind's records: an object
//! missing from it was deleted while the watch was down, and ends at the time of the re-list.
//! Errors never stop capture: each refused resource is named once on stderr (`tapwire:
//! kubernetes: …`, with the API's message, e.g. a `403` for missing RBAC; an unreachable API
//! server once for all), counted in `tapwire_k8s_watch_errors_total{resource}` (and
//! `tapwire_k8s_synced{resource}` drops to 0), retried with backoff, and said once more when
//! it recovers. Until a kind is listed, addresses it would name stay `unknown`.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client};

use super::index::{Index, OwnerInfo, OwnerRef, PodInfo, SliceInfo};
use super::{Enricher, now_ns};

/// One watched kind: how its objects become index records.
trait Indexed: Sized {
    const RESOURCE: &'static str;
    type Key: Eq + Hash + Clone;
    fn key(&self) -> Self::Key;
    fn apply(self, ix: &mut Index, now: u64);
    fn remove(key: &Self::Key, ix: &mut Index, now: u64);
    /// The keys the index holds for this kind (to find what a re-list no longer has).
    fn keys(ix: &Index) -> Vec<Self::Key>;
}

/// Start every watcher on the current tokio runtime.
pub fn spawn(client: Client, en: Arc<Enricher>) {
    let cfg = watcher::Config::default().any_semantic();
    tokio::spawn(follow(
        watch_stream(Api::<Pod>::all(client.clone()), cfg.clone()).default_backoff(),
        en.clone(),
    ));
    tokio::spawn(follow(
        watch_stream(Api::<Service>::all(client.clone()), cfg.clone()).default_backoff(),
        en.clone(),
    ));
    tokio::spawn(follow(
        watch_stream(Api::<EndpointSlice>::all(client.clone()), cfg.clone()).default_backoff(),
        en.clone(),
    ));
    tokio::spawn(follow(
        watch_stream(Api::<Node>::all(client.clone()), cfg.clone()).default_backoff(),
        en.clone(),
    ));
    tokio::spawn(follow(
        watch_stream(
            Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
            cfg.clone(),
        )
        .default_backoff(),
        en.clone(),
    ));
    tokio::spawn(follow(
        watch_stream(Api::<PartialObjectMeta<Job>>::all(client), cfg).default_backoff(),
        en.clone(),
    ));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            en.write().expire(now_ns());
            en.refresh_gauges();
        }
    });
}

async fn follow<T, S>(stream: S, en: Arc<Enricher>)
where
    T: Indexed,
    S: Stream<Item = Result<Event<T>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut listing: Option<HashSet<T::Key>> = None;
    let mut failing = false;
    let synced = en.metrics.synced.with_label_values(&[T::RESOURCE]);
    let errors = en.metrics.watch_errors.with_label_values(&[T::RESOURCE]);
    while let Some(item) = stream.next().await {
        let now = now_ns();
        match item {
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(o)) => {
                if let Some(seen) = listing.as_mut() {
                    seen.insert(o.key());
                }
                o.apply(&mut en.write(), now);
            }
            Ok(Event::InitDone) => {
                let seen = listing.take().unwrap_or_default();
                {
                    let mut ix = en.write();
                    for k in T::keys(&ix) {
                        if !seen.contains(&k) {
                            T::remove(&k, &mut ix, now);
                        }
                    }
                }
                synced.set(1);
                if T::RESOURCE == "pods" {
                    en.pods_synced.store(true, Ordering::Relaxed);
                }
                if failing {
                    eprintln!("tapwire: kubernetes: watching {} again", T::RESOURCE);
                    failing = false;
                    // A later outage is said again.
                    en.unreachable.store(false, Ordering::Relaxed);
                }
            }
            Ok(Event::Apply(o)) => o.apply(&mut en.write(), now),
            Ok(Event::Delete(o)) => T::remove(&o.key(), &mut en.write(), now),
            Err(e) => {
                errors.inc();
                // Not current until a list succeeds again (what the alert reads).
                synced.set(0);
                if !failing {
                    failing = true;
                    en.report(T::RESOURCE, &e);
                }
            }
        }
    }
}

fn nanos(t: &Time) -> u64 {
    u64::try_from(t.0.as_nanosecond()).unwrap_or(0)
}

fn ns_name(m: &ObjectMeta) -> (String, String) {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn controller(m: &ObjectMeta) -> Option<OwnerRef> {
    m.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        })
}

impl Indexed for Pod {
    const RESOURCE: &'static str = "pods";
    type Key = String;
    fn key(&self) -> String {
        self.metadata.uid.clone().unwrap_or_default()
    }
    fn apply(self, ix: &mut Index, now: u64) {
        ix.apply_pod(pod_info(self, now), now);
    }
    fn remove(key: &String, ix: &mut Index, now: u64) {
        ix.delete_pod(key, now);
    }
    fn keys(ix: &Index) -> Vec<String> {
        ix.live_pods()
    }
}

/// The few fields of a pod the index keeps.
pub(super) fn pod_info(p: Pod, now: u64) -> PodInfo {
    let (namespace, name) = ns_name(&p.metadata);
    let spec = p.spec.unwrap_or_default();
    let status = p.status.unwrap_or_default();
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|a| a.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    let mut ports: Vec<u16> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .flat_map(|p| [Some(p.container_port), p.host_port])
        .flatten()
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let created = p.metadata.creation_timestamp.as_ref().map_or(0, nanos);
    let started = status.start_time.as_ref().map_or(0, nanos);
    // A pod that finished (Succeeded/Failed) keeps `podIP` in its status, but the address
    // is free for another pod: it ends when its last container finished.
    let ended = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")).then(|| {
        status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(nanos)
            .max()
            .filter(|&t| t > 0 && t <= now)
            .unwrap_or(now)
    });
    PodInfo {
        uid: p.metadata.uid.clone().unwrap_or_default(),
        owner: controller(&p.metadata),
        labels: p.metadata.labels.unwrap_or_default(),
        namespace,
        name,
        node: spec.node_name,
        ips,
        host_network: spec.host_network.unwrap_or(false),
        ports,
        since: created.max(started),
        ended,
    }
}

impl Indexed for Service {
    const RESOURCE: &'static str = "services";
    type Key = (String, String);
    fn key(&self) -> (String, String) {
        ns_name(&self.metadata)
    }
    fn apply(self, ix: &mut Index, _now: u64) {
        let (ns, name) = ns_name(&self.metadata);
        let spec = self.spec.unwrap_or_default();
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|s| s.parse().ok())
            .collect();
        ips.sort();
        ips.dedup();
        ix.apply_service(&ns, &name, ips);
    }
    fn remove(key: &(String, String), ix: &mut Index, _now: u64) {
        ix.delete_service(&key.0, &key.1);
    }
    fn keys(ix: &Index) -> Vec<(String, String)> {
        ix.service_keys()
    }
}

impl Indexed for EndpointSlice {
    const RESOURCE: &'static str = "endpointslices";
    type Key = (String, String);
    fn key(&self) -> (String, String) {
        ns_name(&self.metadata)
    }
    fn apply(self, ix: &mut Index, _now: u64) {
        let (namespace, name) = ns_name(&self.metadata);
        let Some(service) = self
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned()
        else {
            return;
        };
        let pods = self
            .endpoints
            .iter()
            .filter_map(|e| e.target_ref.as_ref())
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .filter_map(|r| r.name.clone())
            .collect();
        let ports = self
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
            .collect();
        ix.apply_slice(SliceInfo {
            namespace,
            name,
            service,
            ports,
            pods,
        });
    }
    fn remove(key: &(String, String), ix: &mut Index, _now: u64) {
        ix.delete_slice(&key.0, &key.1);
    }
    fn keys(ix: &Index) -> Vec<(String, String)> {
        ix.slice_keys()
    }
}

impl Indexed for Node {
    const RESOURCE: &'static str = "nodes";
    type Key = String;
    fn key(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }
    fn apply(self, ix: &mut Index, _now: u64) {
        let name = self.key();
        let ips = self
            .status
            .and_then(|s| s.addresses)
            .unwrap_or_default()
            .iter()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        ix.apply_node(&name, ips);
    }
    fn remove(key: &String, ix: &mut Index, _now: u64) {
        ix.delete_node(key);
    }
    fn keys(ix: &Index) -> Vec<String> {
        ix.node_names()
    }
}

/// Replica sets and jobs share one owner table; a re-list of one kind must not remove the
/// other's, so each keeps to its own kind.
fn owner_apply(m: &ObjectMeta, kind: &str, ix: &mut Index) {
    ix.apply_owner(OwnerInfo {
        uid: m.uid.clone().unwrap_or_default(),
        kind: kind.to_string(),
        name: m.name.clone().unwrap_or_default(),
        owner: controller(m),
    });
}

impl Indexed for PartialObjectMeta<ReplicaSet> {
    const RESOURCE: &'static str = "replicasets";
    type Key = String;
    fn key(&self) -> String {
        self.metadata.uid.clone().unwrap_or_default()
    }
    fn apply(self, ix: &mut Index, _now: u64) {
        owner_apply(&self.metadata, "ReplicaSet", ix);
    }
    fn remove(key: &String, ix: &mut Index, _now: u64) {
        ix.delete_owner(key);
    }
    fn keys(ix: &Index) -> Vec<String> {
        ix.owner_uids("ReplicaSet")
    }
}

impl Indexed for PartialObjectMeta<Job> {
    const RESOURCE: &'static str = "jobs";
    type Key = String;
    fn key(&self) -> String {
        self.metadata.uid.clone().unwrap_or_default()
    }
    fn apply(self, ix: &mut Index, _now: u64) {
        owner_apply(&self.metadata, "Job", ix);
    }
    fn remove(key: &String, ix: &mut Index, _now: u64) {
        ix.delete_owner(key);
    }
    fn keys(ix: &Index) -> Vec<String> {
        ix.owner_uids("Job")
    }
}
