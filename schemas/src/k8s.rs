//! Kubernetes names of one side of an exchange (`client.k8s.*`, `server.k8s.*`), filled by the
//! agent's enrichment (`agent/src/k8s/`). Names follow the OpenTelemetry `k8s.*` resource
//! attributes (`k8s.pod.name`, `k8s.namespace.name`, `k8s.deployment.name`, …, and
//! `k8s.pod.label.<key>`), nested on their dots like every other field.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How an IP address was matched to the cluster's objects at the exchange's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Exactly one pod, service or node owned the address at that time.
    Resolved,
    /// Nothing in the cluster owned the address at that time (outside the cluster, or the
    /// owner was gone longer than the grace period), or the cluster's objects are not known yet.
    Unknown,
    /// More than one pod claimed the address at that time; no pod is named, only the
    /// namespace and workload they all share (if any).
    Ambiguous,
}

impl Resolution {
    /// The lower-case name used in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Resolved => "resolved",
            Resolution::Unknown => "unknown",
            Resolution::Ambiguous => "ambiguous",
        }
    }
}

/// A `{name}` leaf (`k8s.namespace.name`, `k8s.deployment.name`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Name {
    pub name: String,
}

impl Name {
    pub fn of(name: impl Into<String>) -> Option<Name> {
        Some(Name { name: name.into() })
    }
}

/// `k8s.pod.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pod {
    pub name: String,
    pub uid: String,
    /// `k8s.pod.label.<key>`: only the labels on the agent's allow-list.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label: BTreeMap<String, String>,
}

/// The pod's top-level controller, whatever its kind (`deployment`, `statefulset`,
/// `daemonset`, `job`, `cronjob`, `replicaset`, or another controller's kind in lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    pub name: String,
    pub kind: String,
}

/// `client.k8s` / `server.k8s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct K8s {
    pub resolution: Resolution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Name>,
    /// The pod's node, or the node itself for a node address or a host-network pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicaset: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemonset: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cronjob: Option<Name>,
    /// The service the address belongs to: its cluster IP, or the pod behind it (through the
    /// service's endpoint slices; with several, the one whose port is the exchange's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Name>,
}

impl K8s {
    /// Nothing known, with this resolution.
    pub fn bare(resolution: Resolution) -> K8s {
        K8s {
            resolution,
            pod: None,
            namespace: None,
            node: None,
            workload: None,
            deployment: None,
            replicaset: None,
            statefulset: None,
            daemonset: None,
            job: None,
            cronjob: None,
            service: None,
        }
    }
}
