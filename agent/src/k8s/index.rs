//! The in-memory index that names an IP address at a point in time.
//!
//! Hand-written: no crate keeps an address's *history*. kube's reflector `Store` holds the
//! current objects only, so an exchange replayed from the spool, or one that ended just as its
//! pod was deleted, would be named after whichever pod holds the address *now* — the wrong one
//! after IP reuse. The watchers (`watch.rs`) feed this index compact records (a few strings per
//! object, never whole objects), and it keeps, per address:
//!
//! - **claims**: which pod held the address from when (`max(creationTimestamp,
//!   status.startTime, the last time the pod was seen without an address)`) until when (the
//!   time its deletion or terminal phase was seen, or the containers' finish time if earlier).
//!   A lookup takes the claims covering the exchange's start time: one is `resolved`, several
//!   are `ambiguous` (no pod is named; the namespace and workload are when all share them),
//!   none falls through to services and nodes.
//! - ended claims are kept for `grace` after they end, then forgotten (`expire`).
//!
//! Then a service's cluster IP names the service; a node address (or a host-network pod's)
//! names the node, and the host-network pod itself when exactly one on that node declares the
//! exchange's server port. Anything else is `unknown`.
//!
//! Limits: at most [`MAX_PODS`] pod records, [`MAX_OBJECTS`] records of each other kind, and
//! [`MAX_CLAIMS_PER_IP`] claims per address (the oldest ended claim goes first); reaching one
//! is counted in `drops`, never an error.
//! Cluster IPs and node addresses are taken as they are now (they are rarely reused).
//! Each lookup costs two hash lookups (FxHash: the keys come from the API server, not the
//! wire) and an `Arc` clone: the names of a pod are built once
//! per change of the pod, its owners or its services, not per exchange.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use schemas::k8s::{K8s, Name, Pod, Resolution, Workload};

/// Pod records kept (live and recently ended) before new pods are not indexed.
pub const MAX_PODS: usize = 250_000;
/// Records kept per other kind (replica sets and jobs, services, endpoint slices, nodes).
pub const MAX_OBJECTS: usize = 250_000;
/// Claims kept per address (one per pod that held it within the grace period).
pub const MAX_CLAIMS_PER_IP: usize = 8;

/// A controller reference (`metadata.ownerReferences[controller=true]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// What the index needs of a pod.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// Declared container ports (names a host-network pod by its server port).
    pub ports: Vec<u16>,
    /// Earliest time the pod can hold its addresses (Unix ns).
    pub since: u64,
    /// When the pod stopped holding its addresses: terminal phase (Unix ns).
    pub ended: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub owner: Option<OwnerRef>,
}

/// A replica set or job: the step between a pod and its workload.
#[derive(Debug, Clone)]
pub struct OwnerInfo {
    pub uid: String,
    pub kind: String,
    pub name: String,
    pub owner: Option<OwnerRef>,
}

/// What the index needs of an endpoint slice.
#[derive(Debug, Clone, Default)]
pub struct SliceInfo {
    pub namespace: String,
    pub name: String,
    /// `kubernetes.io/service-name`.
    pub service: String,
    pub ports: Vec<u16>,
    /// Names of the pods behind the endpoints (`targetRef` of kind Pod).
    pub pods: Vec<String>,
}

/// One pod's hold on an address.
#[derive(Debug, Clone)]
struct Claim {
    uid: String,
    from: u64,
    until: Option<u64>,
}

impl Claim {
    fn covers(&self, t: u64) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }
}

struct PodRec {
    namespace: String,
    name: String,
    node: Option<String>,
    ips: Vec<IpAddr>,
    host_network: bool,
    ports: Vec<u16>,
    labels: BTreeMap<String, String>,
    /// `pod-template-hash`, kept whatever the allow-list (it names an unknown replica set's
    /// deployment).
    template_hash: Option<String>,
    owner: Option<OwnerRef>,
    /// Seen without an address at this time (a lower bound for when it got one).
    seen_bare: Option<u64>,
    ended: Option<u64>,
    /// The services this pod backs, with their endpoint ports.
    services: Vec<(String, Vec<u16>)>,
    view: Arc<K8s>,
    /// When it backs several services: the names for each port that picks exactly one of
    /// them (built with `view`, so a lookup never allocates).
    port_views: Vec<(u16, Arc<K8s>)>,
}

struct SvcRec {
    ips: Vec<IpAddr>,
    view: Arc<K8s>,
}

/// Counters of the index's caps (`tapwire_k8s_dropped_total{reason}`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drops {
    pub pods_cap: u64,
    pub ip_history_cap: u64,
    /// Owners, services, endpoint slices or nodes past [`MAX_OBJECTS`].
    pub objects_cap: u64,
}

/// See the module doc.
pub struct Index {
    max_pods: usize,
    max_objects: usize,
    labels: Vec<String>,
    grace: u64,
    pods: HashMap<String, PodRec>,
    pods_by_name: HashMap<(String, String), Vec<String>>,
    claims: HashMap<IpAddr, Vec<Claim>>,
    owners: HashMap<String, OwnerInfo>,
    /// Owner uid → the pods it controls (rebuilt when the owner changes).
    owned: HashMap<String, Vec<String>>,
    services: HashMap<(String, String), SvcRec>,
    service_ips: HashMap<IpAddr, (String, String)>,
    slices: HashMap<(String, String), SliceInfo>,
    /// `(namespace, pod name)` → the slices that list it.
    slices_of_pod: HashMap<(String, String), Vec<String>>,
    nodes: HashMap<String, Vec<IpAddr>>,
    node_ips: HashMap<IpAddr, String>,
    node_views: HashMap<String, Arc<K8s>>,
    /// Host-network pods by node.
    host_pods: HashMap<String, Vec<String>>,
    pub drops: Drops,
    unknown: Arc<K8s>,
    ambiguous: Arc<K8s>,
}

impl Index {
    /// An empty index keeping the pod labels in `labels`, and ended claims for `grace_ns`.
    pub fn new(labels: Vec<String>, grace_ns: u64) -> Index {
        Index::with_caps(labels, grace_ns, MAX_PODS, MAX_OBJECTS)
    }

    /// The same with other caps (tests).
    pub fn with_caps(
        labels: Vec<String>,
        grace_ns: u64,
        max_pods: usize,
        max_objects: usize,
    ) -> Index {
        Index {
            max_pods,
            max_objects,
            labels,
            grace: grace_ns,
            pods: HashMap::default(),
            pods_by_name: HashMap::default(),
            claims: HashMap::default(),
            owners: HashMap::default(),
            owned: HashMap::default(),
            services: HashMap::default(),
            service_ips: HashMap::default(),
            slices: HashMap::default(),
            slices_of_pod: HashMap::default(),
            nodes: HashMap::default(),
            node_ips: HashMap::default(),
            node_views: HashMap::default(),
            host_pods: HashMap::default(),
            drops: Drops::default(),
            unknown: Arc::new(K8s::bare(Resolution::Unknown)),
            ambiguous: Arc::new(K8s::bare(Resolution::Ambiguous)),
        }
    }

    /// Records held, by kind (`tapwire_k8s_objects{kind}`).
    pub fn counts(&self) -> [(&'static str, usize); 5] {
        [
            ("pods", self.pods.len()),
            ("owners", self.owners.len()),
            ("services", self.services.len()),
            ("endpointslices", self.slices.len()),
            ("nodes", self.nodes.len()),
        ]
    }

    /// The names of `ip` at time `t` (Unix ns); `port` is the exchange's port on that side
    /// when it is the server (it picks among several services or host-network pods).
    pub fn resolve(&self, ip: IpAddr, port: Option<u16>, t: u64) -> Arc<K8s> {
        if let Some(claims) = self.claims.get(&ip) {
            let mut hit: Option<&str> = None;
            for c in claims.iter().filter(|c| c.covers(t)) {
                match hit {
                    Some(uid) if uid != c.uid => return self.ambiguous_at(claims, t),
                    _ => hit = Some(&c.uid),
                }
            }
            if let Some(rec) = hit.and_then(|uid| self.pods.get(uid)) {
                return pod_view(rec, port);
            }
        }
        if let Some(key) = self.service_ips.get(&ip)
            && let Some(svc) = self.services.get(key)
        {
            return svc.view.clone();
        }
        if let Some(node) = self.node_ips.get(&ip) {
            if let Some(port) = port
                && let Some(rec) = self.host_pod_on(node, port)
            {
                return rec.view.clone();
            }
            if let Some(v) = self.node_views.get(node) {
                return v.clone();
            }
        }
        self.unknown.clone()
    }

    /// Several pods claimed the address at `t`: no pod is named, but the namespace (and
    /// workload) they all share is (a rollout's old and new pod, a job's retries).
    fn ambiguous_at(&self, claims: &[Claim], t: u64) -> Arc<K8s> {
        let mut views = claims
            .iter()
            .filter(|c| c.covers(t))
            .filter_map(|c| self.pods.get(&c.uid))
            .map(|r| &r.view);
        let Some(first) = views.next() else {
            return self.ambiguous.clone();
        };
        let (mut ns, mut wl) = (first.namespace.clone(), first.workload.clone());
        for v in views {
            if v.namespace != ns {
                ns = None;
            }
            if v.workload != wl {
                wl = None;
            }
        }
        if ns.is_none() {
            return self.ambiguous.clone();
        }
        let mut v = K8s::bare(Resolution::Ambiguous);
        v.namespace = ns;
        v.workload = wl;
        Arc::new(v)
    }

    fn host_pod_on(&self, node: &str, port: u16) -> Option<&PodRec> {
        let mut found = None;
        for uid in self.host_pods.get(node)? {
            let Some(rec) = self.pods.get(uid) else {
                continue;
            };
            if rec.ended.is_none() && rec.ports.contains(&port) {
                if found.is_some() {
                    return None;
                }
                found = Some(rec);
            }
        }
        found
    }

    /// A pod was added or changed (`now`: when it was seen, Unix ns).
    pub fn apply_pod(&mut self, p: PodInfo, now: u64) {
        if !self.pods.contains_key(&p.uid) {
            if self.pods.len() >= self.max_pods {
                self.drops.pods_cap += 1;
                return;
            }
            let rec = PodRec {
                services: self.services_of(&p.namespace, &p.name),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                node: None,
                ips: Vec::new(),
                host_network: false,
                ports: Vec::new(),
                labels: BTreeMap::new(),
                template_hash: None,
                owner: None,
                seen_bare: None,
                ended: None,
                view: self.unknown.clone(),
                port_views: Vec::new(),
            };
            self.pods.insert(p.uid.clone(), rec);
            self.pods_by_name
                .entry((p.namespace.clone(), p.name.clone()))
                .or_default()
                .push(p.uid.clone());
        }
        self.update_pod(p, now);
    }

    fn update_pod(&mut self, p: PodInfo, now: u64) {
        let uid = p.uid.as_str();
        let Some(rec) = self.pods.get_mut(uid) else {
            return;
        };
        if rec.ended.is_some() {
            // A terminal pod never holds an address again.
            return;
        }
        if p.ips.is_empty() && !p.host_network {
            rec.seen_bare = Some(now);
        }
        let from = p.since.max(rec.seen_bare.unwrap_or(0));
        let old_ips = std::mem::replace(&mut rec.ips, p.ips.clone());
        let was_host = rec.host_network;
        let old_node = std::mem::replace(&mut rec.node, p.node.clone());
        rec.host_network = p.host_network;
        rec.ports = p.ports;
        rec.template_hash = p.labels.get("pod-template-hash").cloned();
        rec.labels = p
            .labels
            .into_iter()
            .filter(|(k, _)| self.labels.iter().any(|a| a == k))
            .collect();
        let old_owner = std::mem::replace(&mut rec.owner, p.owner);
        let new_owner = rec.owner.as_ref().map(|o| o.uid.clone());
        rec.ended = p.ended;
        if old_owner.as_ref().map(|o| &o.uid) != new_owner.as_ref() {
            if let Some(o) = old_owner {
                self.unown(&o.uid, uid);
            }
            if let Some(o) = new_owner {
                self.owned.entry(o).or_default().push(uid.to_string());
            }
        }
        // Claims: end the ones for addresses it no longer holds, start the new ones.
        let end = p.ended.unwrap_or(now);
        if !was_host {
            for ip in &old_ips {
                if p.ended.is_some() || p.host_network || !p.ips.contains(ip) {
                    self.end_claim(*ip, uid, end);
                }
            }
        }
        if !p.host_network && p.ended.is_none() {
            for ip in &p.ips {
                if was_host || !old_ips.contains(ip) {
                    self.add_claim(*ip, uid, from);
                }
            }
        }
        // A host-network pod's address is its node's.
        if was_host
            && let Some(n) = &old_node
            && let Some(v) = self.host_pods.get_mut(n)
        {
            v.retain(|u| u != uid);
        }
        if p.host_network
            && p.ended.is_none()
            && let Some(n) = &p.node
        {
            self.host_pods
                .entry(n.clone())
                .or_default()
                .push(uid.to_string());
            for ip in &p.ips {
                self.node_ips.entry(*ip).or_insert_with(|| n.clone());
            }
            self.node_view(n);
        }
        self.rebuild(uid);
    }

    fn add_claim(&mut self, ip: IpAddr, uid: &str, from: u64) {
        let list = self.claims.entry(ip).or_default();
        if list.len() >= MAX_CLAIMS_PER_IP {
            // Forget the claim that ended first (a live one only when all are live).
            let victim = list
                .iter()
                .enumerate()
                .min_by_key(|(_, c)| c.until.unwrap_or(u64::MAX))
                .map(|(i, _)| i)
                .unwrap_or(0);
            list.remove(victim);
            self.drops.ip_history_cap += 1;
        }
        list.push(Claim {
            uid: uid.to_string(),
            from,
            until: None,
        });
    }

    fn end_claim(&mut self, ip: IpAddr, uid: &str, at: u64) {
        if let Some(list) = self.claims.get_mut(&ip) {
            for c in list
                .iter_mut()
                .filter(|c| c.uid == uid && c.until.is_none())
            {
                c.until = Some(at.max(c.from));
            }
        }
    }

    /// A pod was deleted (or is missing from a re-list), seen at `now`.
    pub fn delete_pod(&mut self, uid: &str, now: u64) {
        let Some(rec) = self.pods.get_mut(uid) else {
            return;
        };
        if rec.ended.is_some() {
            return;
        }
        rec.ended = Some(now);
        let ips = rec.ips.clone();
        let host = rec.host_network.then(|| rec.node.clone()).flatten();
        if let Some(n) = host {
            if let Some(v) = self.host_pods.get_mut(&n) {
                v.retain(|u| u != uid);
            }
        } else {
            for ip in ips {
                self.end_claim(ip, uid, now);
            }
        }
    }

    /// The uids of every pod not yet ended (to find the ones a re-list no longer has).
    pub fn live_pods(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, r)| r.ended.is_none())
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Forget what ended more than the grace period before `now`.
    pub fn expire(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.grace);
        self.claims.retain(|_, list| {
            list.retain(|c| c.until.is_none_or(|u| u >= cutoff));
            !list.is_empty()
        });
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, r)| r.ended.is_some_and(|e| e < cutoff))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in gone {
            if let Some(rec) = self.pods.remove(&uid) {
                if let Some(o) = &rec.owner {
                    self.unown(&o.uid, &uid);
                }
                let key = (rec.namespace, rec.name);
                if let Some(v) = self.pods_by_name.get_mut(&key) {
                    v.retain(|u| *u != uid);
                    if v.is_empty() {
                        self.pods_by_name.remove(&key);
                    }
                }
            }
        }
    }

    /// A replica set or job was added or changed.
    pub fn apply_owner(&mut self, o: OwnerInfo) {
        let uid = o.uid.clone();
        let changed = self
            .owners
            .get(&uid)
            .is_none_or(|old| old.owner != o.owner || old.name != o.name);
        if !self.owners.contains_key(&uid) && self.owners.len() >= self.max_objects {
            self.drops.objects_cap += 1;
            return;
        }
        self.owners.insert(uid.clone(), o);
        if changed {
            self.rebuild_owned_by(&uid);
        }
    }

    /// A replica set or job was deleted. Its pods keep the names they had.
    pub fn delete_owner(&mut self, uid: &str) {
        self.owners.remove(uid);
    }

    /// The uids of the owners of one kind (`ReplicaSet`, `Job`).
    pub fn owner_uids(&self, kind: &str) -> Vec<String> {
        self.owners
            .iter()
            .filter(|(_, o)| o.kind == kind)
            .map(|(u, _)| u.clone())
            .collect()
    }

    fn rebuild_owned_by(&mut self, owner_uid: &str) {
        for uid in self.owned.get(owner_uid).cloned().unwrap_or_default() {
            self.rebuild(&uid);
        }
    }

    fn unown(&mut self, owner_uid: &str, pod_uid: &str) {
        if let Some(v) = self.owned.get_mut(owner_uid) {
            v.retain(|u| u != pod_uid);
            if v.is_empty() {
                self.owned.remove(owner_uid);
            }
        }
    }

    /// A service was added or changed.
    pub fn apply_service(&mut self, namespace: &str, name: &str, ips: Vec<IpAddr>) {
        let key = (namespace.to_string(), name.to_string());
        if !self.services.contains_key(&key) && self.services.len() >= self.max_objects {
            self.drops.objects_cap += 1;
            return;
        }
        self.delete_service(namespace, name);
        for ip in &ips {
            self.service_ips.insert(*ip, key.clone());
        }
        let mut view = K8s::bare(Resolution::Resolved);
        view.namespace = Name::of(namespace);
        view.service = Name::of(name);
        self.services.insert(
            key,
            SvcRec {
                ips,
                view: Arc::new(view),
            },
        );
    }

    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(old) = self.services.remove(&key) {
            for ip in old.ips {
                if self.service_ips.get(&ip) == Some(&key) {
                    self.service_ips.remove(&ip);
                }
            }
        }
    }

    pub fn service_keys(&self) -> Vec<(String, String)> {
        self.services.keys().cloned().collect()
    }

    /// An endpoint slice was added or changed.
    pub fn apply_slice(&mut self, s: SliceInfo) {
        let key = (s.namespace.clone(), s.name.clone());
        if !self.slices.contains_key(&key) && self.slices.len() >= self.max_objects {
            self.drops.objects_cap += 1;
            return;
        }
        let mut touched = self.remove_slice(&key);
        for pod in &s.pods {
            self.slices_of_pod
                .entry((s.namespace.clone(), pod.clone()))
                .or_default()
                .push(s.name.clone());
        }
        touched.extend(s.pods.iter().cloned());
        let ns = s.namespace.clone();
        self.slices.insert(key, s);
        self.refresh_services(&ns, touched);
    }

    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        let touched = self.remove_slice(&key);
        self.refresh_services(namespace, touched);
    }

    /// Take a slice out of the index; returns the pods it listed.
    fn remove_slice(&mut self, key: &(String, String)) -> Vec<String> {
        let Some(old) = self.slices.remove(key) else {
            return Vec::new();
        };
        for pod in &old.pods {
            let pk = (old.namespace.clone(), pod.clone());
            if let Some(v) = self.slices_of_pod.get_mut(&pk) {
                v.retain(|n| *n != old.name);
                if v.is_empty() {
                    self.slices_of_pod.remove(&pk);
                }
            }
        }
        old.pods
    }

    pub fn slice_keys(&self) -> Vec<(String, String)> {
        self.slices.keys().cloned().collect()
    }

    fn services_of(&self, namespace: &str, pod: &str) -> Vec<(String, Vec<u16>)> {
        let mut out: Vec<(String, Vec<u16>)> = Vec::new();
        let key = (namespace.to_string(), pod.to_string());
        for name in self.slices_of_pod.get(&key).into_iter().flatten() {
            let Some(s) = self.slices.get(&(namespace.to_string(), name.clone())) else {
                continue;
            };
            match out.iter_mut().find(|(n, _)| *n == s.service) {
                Some((_, ports)) => ports.extend(&s.ports),
                None => out.push((s.service.clone(), s.ports.clone())),
            }
        }
        out.sort();
        out
    }

    fn refresh_services(&mut self, namespace: &str, mut pods: Vec<String>) {
        pods.sort();
        pods.dedup();
        for pod in pods {
            let services = self.services_of(namespace, &pod);
            let key = (namespace.to_string(), pod);
            let uids = self.pods_by_name.get(&key).cloned().unwrap_or_default();
            for uid in uids {
                if let Some(rec) = self.pods.get_mut(&uid)
                    && rec.ended.is_none()
                    && rec.services != services
                {
                    rec.services = services.clone();
                    self.rebuild(&uid);
                }
            }
        }
    }

    /// A node was added or changed.
    pub fn apply_node(&mut self, name: &str, ips: Vec<IpAddr>) {
        if !self.nodes.contains_key(name) && self.nodes.len() >= self.max_objects {
            self.drops.objects_cap += 1;
            return;
        }
        self.delete_node(name);
        for ip in &ips {
            self.node_ips.insert(*ip, name.to_string());
        }
        self.nodes.insert(name.to_string(), ips);
        self.node_view(name);
    }

    pub fn delete_node(&mut self, name: &str) {
        if let Some(ips) = self.nodes.remove(name) {
            for ip in ips {
                if self.node_ips.get(&ip).is_some_and(|n| n == name) {
                    self.node_ips.remove(&ip);
                }
            }
        }
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    fn node_view(&mut self, name: &str) {
        self.node_views.entry(name.to_string()).or_insert_with(|| {
            let mut v = K8s::bare(Resolution::Resolved);
            v.node = Name::of(name);
            Arc::new(v)
        });
    }

    /// Rebuild the names of one pod (after it, its owner or its services changed).
    fn rebuild(&mut self, uid: &str) {
        let Some(rec) = self.pods.get(uid) else {
            return;
        };
        let mut v = K8s::bare(Resolution::Resolved);
        v.pod = Some(Pod {
            name: rec.name.clone(),
            uid: uid.to_string(),
            label: rec.labels.clone(),
        });
        v.namespace = Name::of(rec.namespace.as_str());
        v.node = rec.node.as_deref().and_then(Name::of);
        if let [(svc, _)] = rec.services.as_slice() {
            v.service = Name::of(svc.as_str());
        }
        self.name_workload(rec, &mut v);
        let mut port_views = Vec::new();
        if rec.services.len() > 1 {
            let mut ports: Vec<u16> = rec.services.iter().flat_map(|(_, p)| p).copied().collect();
            ports.sort_unstable();
            ports.dedup();
            for port in ports {
                let mut matching = rec.services.iter().filter(|(_, p)| p.contains(&port));
                if let (Some((svc, _)), None) = (matching.next(), matching.next()) {
                    let mut pv = v.clone();
                    pv.service = Name::of(svc.as_str());
                    port_views.push((port, Arc::new(pv)));
                }
            }
        }
        let view = Arc::new(v);
        if let Some(rec) = self.pods.get_mut(uid) {
            rec.view = view;
            rec.port_views = port_views;
        }
    }

    /// Walk the controller chain: pod → replica set → deployment, pod → job → cron job,
    /// pod → stateful set / daemon set. An unknown replica set falls back on the
    /// `pod-template-hash` naming rule (`<deployment>-<hash>`).
    fn name_workload(&self, rec: &PodRec, v: &mut K8s) {
        let Some(owner) = &rec.owner else { return };
        let mut top = (owner.kind.as_str(), owner.name.as_str());
        set_kind(v, top.0, top.1);
        match self.owners.get(&owner.uid) {
            Some(o) => {
                if let Some(up) = &o.owner {
                    set_kind(v, &up.kind, &up.name);
                    top = (up.kind.as_str(), up.name.as_str());
                }
            }
            None if owner.kind == "ReplicaSet" => {
                if let Some(hash) = &rec.template_hash
                    && let Some(dep) = owner
                        .name
                        .strip_suffix(hash.as_str())
                        .and_then(|s| s.strip_suffix('-'))
                {
                    set_kind(v, "Deployment", dep);
                    top = ("Deployment", dep);
                }
            }
            None => {}
        }
        v.workload = Some(Workload {
            name: top.1.to_string(),
            kind: top.0.to_ascii_lowercase(),
        });
    }
}

fn set_kind(v: &mut K8s, kind: &str, name: &str) {
    let slot = match kind {
        "Deployment" => &mut v.deployment,
        "ReplicaSet" => &mut v.replicaset,
        "StatefulSet" => &mut v.statefulset,
        "DaemonSet" => &mut v.daemonset,
        "Job" => &mut v.job,
        "CronJob" => &mut v.cronjob,
        _ => return,
    };
    *slot = Name::of(name);
}

/// A pod's names, with the service picked by the server port when it backs several.
fn pod_view(rec: &PodRec, port: Option<u16>) -> Arc<K8s> {
    port.and_then(|port| rec.port_views.iter().find(|(p, _)| *p == port))
        .map_or_else(|| rec.view.clone(), |(_, v)| v.clone())
}

#[cfg(test)]
mod tests;
