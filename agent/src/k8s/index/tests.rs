//! The index on hand-made records: IP reuse, ambiguity, services, nodes, owners, expiry.

use super::*;

const S: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(uid: &str, name: &str, addr: &str, since: u64) -> PodInfo {
    PodInfo {
        uid: uid.into(),
        namespace: "shop".into(),
        name: name.into(),
        node: Some("node-a".into()),
        ips: vec![ip(addr)],
        since,
        labels: [
            ("app".to_string(), "web".to_string()),
            ("secret".into(), "x".into()),
        ]
        .into(),
        ..PodInfo::default()
    }
}

fn index() -> Index {
    Index::new(vec!["app".into()], 60 * S)
}

fn pod_name(v: &K8s) -> Option<&str> {
    v.pod.as_ref().map(|p| p.name.as_str())
}

#[test]
fn a_reused_address_names_the_pod_that_held_it_at_the_time() {
    let mut ix = index();
    ix.apply_pod(pod("u1", "web-1", "10.1.0.5", 100 * S), 100 * S);
    ix.delete_pod("u1", 200 * S);
    ix.apply_pod(pod("u2", "web-2", "10.1.0.5", 210 * S), 210 * S);
    let a = ip("10.1.0.5");
    assert_eq!(pod_name(&ix.resolve(a, None, 150 * S)), Some("web-1"));
    assert_eq!(pod_name(&ix.resolve(a, None, 220 * S)), Some("web-2"));
    // Between the two: nobody held it.
    assert_eq!(ix.resolve(a, None, 205 * S).resolution, Resolution::Unknown);
    // Before the first pod existed: not a later pod either.
    assert_eq!(ix.resolve(a, None, 50 * S).resolution, Resolution::Unknown);
    // After the grace period the old claim is forgotten, the new one stays.
    ix.expire(300 * S);
    assert_eq!(ix.resolve(a, None, 150 * S).resolution, Resolution::Unknown);
    assert_eq!(pod_name(&ix.resolve(a, None, 320 * S)), Some("web-2"));
    assert_eq!(ix.counts()[0], ("pods", 1));
}

#[test]
fn overlapping_claims_are_ambiguous_and_name_no_pod() {
    let mut ix = index();
    ix.apply_pod(pod("u1", "web-1", "10.1.0.5", 100 * S), 100 * S);
    ix.apply_pod(pod("u2", "web-2", "10.1.0.5", 150 * S), 150 * S);
    let v = ix.resolve(ip("10.1.0.5"), None, 160 * S);
    assert_eq!(v.resolution, Resolution::Ambiguous);
    assert!(v.pod.is_none(), "no pod named");
    assert_eq!(
        v.namespace.as_ref().unwrap().name,
        "shop",
        "both are in shop"
    );
    // A third claimant in another namespace: nothing is named.
    let mut other = pod("u3", "api-1", "10.1.0.5", 150 * S);
    other.namespace = "billing".into();
    ix.apply_pod(other, 150 * S);
    let v = ix.resolve(ip("10.1.0.5"), None, 160 * S);
    assert_eq!(v.resolution, Resolution::Ambiguous);
    assert!(v.namespace.is_none() && v.workload.is_none());
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.0.5"), None, 120 * S)),
        Some("web-1")
    );
}

#[test]
fn a_pod_seen_without_an_address_claims_it_only_from_then() {
    let mut ix = index();
    ix.apply_pod(pod("u1", "old", "10.1.0.9", 10 * S), 10 * S);
    let mut p = pod("u2", "new", "10.1.0.9", 20 * S);
    p.ips.clear();
    ix.apply_pod(p.clone(), 40 * S);
    ix.delete_pod("u1", 45 * S);
    p.ips = vec![ip("10.1.0.9")];
    ix.apply_pod(p, 50 * S);
    // Created at 20 s, but still without an address at 40 s: before that, only the old pod.
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.0.9"), None, 38 * S)),
        Some("old")
    );
    // From 40 s until the old pod's deletion was seen (45 s) either could hold it.
    let v = ix.resolve(ip("10.1.0.9"), None, 42 * S);
    assert_eq!(v.resolution, Resolution::Ambiguous);
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.0.9"), None, 46 * S)),
        Some("new")
    );
}

#[test]
fn a_finished_pod_releases_its_address_at_its_end_time() {
    let mut ix = index();
    let mut p = pod("u1", "batch-x", "10.1.0.7", 10 * S);
    ix.apply_pod(p.clone(), 10 * S);
    p.ended = Some(30 * S);
    ix.apply_pod(p, 90 * S);
    ix.apply_pod(pod("u2", "next", "10.1.0.7", 40 * S), 95 * S);
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.0.7"), None, 20 * S)),
        Some("batch-x")
    );
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.0.7"), None, 60 * S)),
        Some("next")
    );
}

#[test]
fn names_carry_namespace_node_allowed_labels_and_workload() {
    let mut ix = index();
    let mut p = pod("u1", "web-7d9f8-abcde", "10.1.0.5", S);
    p.labels.insert("pod-template-hash".into(), "7d9f8".into());
    p.owner = Some(OwnerRef {
        kind: "ReplicaSet".into(),
        name: "web-7d9f8".into(),
        uid: "rs1".into(),
    });
    ix.apply_pod(p, S);
    // The replica set is not known yet: its name's shape names the deployment.
    let v = ix.resolve(ip("10.1.0.5"), None, 2 * S);
    assert_eq!(v.namespace.as_ref().unwrap().name, "shop");
    assert_eq!(v.node.as_ref().unwrap().name, "node-a");
    assert_eq!(v.deployment.as_ref().unwrap().name, "web");
    let pod = v.pod.as_ref().unwrap();
    assert_eq!(pod.label.len(), 1, "only allowed labels: {:?}", pod.label);
    // Once known, the replica set's own owner is used (here: a different deployment name).
    ix.apply_owner(OwnerInfo {
        uid: "rs1".into(),
        kind: "ReplicaSet".into(),
        name: "web-7d9f8".into(),
        owner: Some(OwnerRef {
            kind: "Deployment".into(),
            name: "storefront".into(),
            uid: "d1".into(),
        }),
    });
    let v = ix.resolve(ip("10.1.0.5"), None, 2 * S);
    assert_eq!(v.deployment.as_ref().unwrap().name, "storefront");
    assert_eq!(v.replicaset.as_ref().unwrap().name, "web-7d9f8");
    let w = v.workload.as_ref().unwrap();
    assert_eq!(
        (w.kind.as_str(), w.name.as_str()),
        ("deployment", "storefront")
    );
}

#[test]
fn job_and_cronjob_and_statefulset() {
    let mut ix = index();
    let mut p = pod("u1", "nightly-290-x", "10.1.0.8", S);
    p.owner = Some(OwnerRef {
        kind: "Job".into(),
        name: "nightly-290".into(),
        uid: "j1".into(),
    });
    ix.apply_pod(p, S);
    ix.apply_owner(OwnerInfo {
        uid: "j1".into(),
        kind: "Job".into(),
        name: "nightly-290".into(),
        owner: Some(OwnerRef {
            kind: "CronJob".into(),
            name: "nightly".into(),
            uid: "c1".into(),
        }),
    });
    let v = ix.resolve(ip("10.1.0.8"), None, 2 * S);
    assert_eq!(v.job.as_ref().unwrap().name, "nightly-290");
    assert_eq!(v.cronjob.as_ref().unwrap().name, "nightly");
    assert_eq!(v.workload.as_ref().unwrap().kind, "cronjob");

    let mut p = pod("u2", "db-0", "10.1.0.9", S);
    p.owner = Some(OwnerRef {
        kind: "StatefulSet".into(),
        name: "db".into(),
        uid: "s1".into(),
    });
    ix.apply_pod(p, S);
    let v = ix.resolve(ip("10.1.0.9"), None, 2 * S);
    assert_eq!(v.statefulset.as_ref().unwrap().name, "db");
    assert_eq!(v.workload.as_ref().unwrap().name, "db");
}

#[test]
fn services_by_cluster_ip_and_by_endpoint_port() {
    let mut ix = index();
    ix.apply_pod(pod("u1", "web-1", "10.1.0.5", S), S);
    ix.apply_service("shop", "web", vec![ip("10.96.0.10")]);
    let v = ix.resolve(ip("10.96.0.10"), Some(80), 2 * S);
    assert_eq!(v.service.as_ref().unwrap().name, "web");
    assert!(v.pod.is_none());
    ix.apply_slice(SliceInfo {
        namespace: "shop".into(),
        name: "web-abc".into(),
        service: "web".into(),
        ports: vec![8080],
        pods: vec!["web-1".into()],
    });
    let v = ix.resolve(ip("10.1.0.5"), None, 2 * S);
    assert_eq!(v.service.as_ref().unwrap().name, "web");
    // A second service on another port: the port picks; without one, none is named.
    ix.apply_slice(SliceInfo {
        namespace: "shop".into(),
        name: "web-metrics-x".into(),
        service: "web-metrics".into(),
        ports: vec![9090],
        pods: vec!["web-1".into()],
    });
    assert!(ix.resolve(ip("10.1.0.5"), None, 2 * S).service.is_none());
    let v = ix.resolve(ip("10.1.0.5"), Some(9090), 2 * S);
    assert_eq!(v.service.as_ref().unwrap().name, "web-metrics");
    ix.delete_slice("shop", "web-metrics-x");
    let v = ix.resolve(ip("10.1.0.5"), None, 2 * S);
    assert_eq!(v.service.as_ref().unwrap().name, "web");
    ix.delete_service("shop", "web");
    assert_eq!(
        ix.resolve(ip("10.96.0.10"), Some(80), 2 * S).resolution,
        Resolution::Unknown
    );
}

#[test]
fn node_addresses_and_host_network_pods_name_the_node() {
    let mut ix = index();
    ix.apply_node("node-a", vec![ip("192.168.1.10")]);
    let mut p = pod("u1", "node-exporter-x", "192.168.1.10", S);
    p.host_network = true;
    p.ports = vec![9100];
    ix.apply_pod(p, S);
    let v = ix.resolve(ip("192.168.1.10"), Some(22), 2 * S);
    assert_eq!(v.node.as_ref().unwrap().name, "node-a");
    assert!(v.pod.is_none());
    let v = ix.resolve(ip("192.168.1.10"), Some(9100), 2 * S);
    assert_eq!(pod_name(&v), Some("node-exporter-x"));
    // A host-network pod's address is never a pod claim (no ambiguity with the node).
    assert!(ix.claims.is_empty());
    ix.delete_pod("u1", 3 * S);
    assert!(
        ix.resolve(ip("192.168.1.10"), Some(9100), 4 * S)
            .pod
            .is_none()
    );
}

#[test]
fn the_claims_per_address_are_capped_and_counted() {
    let mut ix = index();
    for i in 0..(MAX_CLAIMS_PER_IP as u64 + 3) {
        let uid = format!("u{i}");
        ix.apply_pod(
            pod(&uid, &uid, "10.1.0.5", (10 * i + 1) * S),
            (10 * i + 1) * S,
        );
        ix.delete_pod(&uid, (10 * i + 5) * S);
    }
    assert_eq!(ix.claims[&ip("10.1.0.5")].len(), MAX_CLAIMS_PER_IP);
    assert_eq!(ix.drops.ip_history_cap, 3);
    // The newest claims are the ones kept.
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.0.5"), None, 103 * S)),
        Some("u10")
    );
    assert_eq!(
        ix.resolve(ip("10.1.0.5"), None, 3 * S).resolution,
        Resolution::Unknown
    );
}

#[test]
fn the_pod_records_are_capped_and_counted_and_expiry_makes_room() {
    let mut ix = Index::with_caps(vec![], 60 * S, 3, 10);
    for i in 0..5u64 {
        let uid = format!("u{i}");
        ix.apply_pod(pod(&uid, &uid, &format!("10.1.1.{i}"), S), S);
    }
    assert_eq!(ix.counts()[0], ("pods", 3));
    assert_eq!(ix.drops.pods_cap, 2);
    assert_eq!(
        ix.resolve(ip("10.1.1.4"), None, 2 * S).resolution,
        Resolution::Unknown
    );
    // Updates of indexed pods are not new records.
    ix.apply_pod(pod("u0", "u0", "10.1.1.0", S), 2 * S);
    assert_eq!(ix.drops.pods_cap, 2);
    ix.delete_pod("u1", 3 * S);
    ix.expire(100 * S);
    ix.apply_pod(pod("u4", "u4", "10.1.1.4", 101 * S), 101 * S);
    assert_eq!(
        pod_name(&ix.resolve(ip("10.1.1.4"), None, 102 * S)),
        Some("u4")
    );
}

#[test]
fn other_kinds_are_capped_and_counted_and_a_slice_update_moves_a_pod_out() {
    let mut ix = Index::with_caps(vec![], 60 * S, 10, 2);
    ix.apply_service("shop", "a", vec![ip("10.96.0.1")]);
    ix.apply_service("shop", "b", vec![ip("10.96.0.2")]);
    ix.apply_service("shop", "c", vec![ip("10.96.0.3")]);
    ix.apply_service("shop", "a", vec![ip("10.96.0.1")]);
    ix.apply_node("n1", vec![ip("192.168.0.1")]);
    ix.apply_node("n2", vec![ip("192.168.0.2")]);
    ix.apply_node("n3", vec![ip("192.168.0.3")]);
    assert_eq!(ix.drops.objects_cap, 2, "service c and node n3");
    assert_eq!(
        ix.resolve(ip("10.96.0.3"), None, S).resolution,
        Resolution::Unknown
    );
    assert_eq!(
        ix.resolve(ip("10.96.0.1"), None, S)
            .service
            .as_ref()
            .unwrap()
            .name,
        "a"
    );

    ix.apply_pod(pod("u1", "web-1", "10.1.0.5", S), S);
    let web = |pods: Vec<String>| SliceInfo {
        namespace: "shop".into(),
        name: "web-x".into(),
        service: "web".into(),
        ports: vec![80],
        pods,
    };
    ix.apply_slice(web(vec!["web-1".into()]));
    assert!(ix.resolve(ip("10.1.0.5"), None, 2 * S).service.is_some());
    // The same slice without the pod (it became unready): no service named any more.
    ix.apply_slice(web(vec![]));
    assert!(ix.resolve(ip("10.1.0.5"), None, 2 * S).service.is_none());
    assert!(ix.slices_of_pod.is_empty());
}
