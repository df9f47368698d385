//! Pure: what upstream 2.0's workload views say about a pod — its scheduling stage, the GPU
//! resources each container asks for ([`SchedulingPod`]), why it waits ([`diagnosis`]) and
//! the 2.0 state of each container ([`status`]).
//!
//! The `PodCache` calls these once per pod change and keeps the results in the snapshot; the
//! workload list and `GET /v1/scheduling/pod` only read them. Nothing here touches an actor.

pub mod diagnosis;
pub mod quantity;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;

use crate::vendor::ASSIGNED_NODE_ANNOTATION;
pub use diagnosis::scheduling_reasons;
use quantity::{quantity_decimal, quantity_positive};
pub use status::{container_status, StatusDetail, WorkloadStatus};

/// HAMi's resource names, used when `scheduling.resource_names` is empty.
pub const DEFAULT_RESOURCE_NAMES: [&str; 4] = [
    "nvidia.com/gpu",
    "nvidia.com/gpucores",
    "nvidia.com/gpumem",
    "nvidia.com/gpumem-percentage",
];

/// Longest `PodScheduled` condition message kept, in bytes.
pub const MAX_CONDITION_MESSAGE: usize = 16 * 1024;

/// The exact resource names that make a pod a GPU pod (`scheduling.resource_names`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingResources {
    /// Sorted, so requests list their resources by name as upstream does.
    names: BTreeSet<String>,
}

impl Default for SchedulingResources {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl SchedulingResources {
    /// The configured names; HAMi's defaults when none are configured.
    pub fn new(configured: &[String]) -> Self {
        let names = if configured.is_empty() {
            DEFAULT_RESOURCE_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            configured.iter().map(|s| s.trim().to_string()).collect()
        };
        Self { names }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }
}

/// Where a container sits in the pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerKind {
    Regular,
    Init,
    /// An init container with `restartPolicy: Always`.
    Sidecar,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Init => "init",
            Self::Sidecar => "sidecar",
        }
    }
}

/// One requested resource of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// Shared with every other request of the same name and value (`cluster::interning`).
    pub name: Arc<str>,
    pub value: Arc<str>,
    pub unit: &'static str,
    /// `count`, `core`, `memory`, `memory_percentage`, or `raw`.
    pub kind: &'static str,
    /// Provider of a classified resource (`NVIDIA`), empty for raw ones.
    pub vendor: &'static str,
    /// The quantity is above zero.
    pub positive: bool,
}

/// The GPU resources one container asks for, and its observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequest {
    pub container: String,
    pub kind: ContainerKind,
    pub resources: Vec<ResourceRequest>,
    pub status: WorkloadStatus,
    /// Most containers read alike (running, ready, never restarted): one shared value each.
    pub status_detail: Arc<StatusDetail>,
}

impl ContainerRequest {
    /// Some resource is asked for in a positive quantity.
    pub fn is_positive(&self) -> bool {
        self.resources.iter().any(|r| r.positive)
    }
}

/// The pod's `PodScheduled` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingCondition {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub transition_at: Option<Timestamp>,
    pub message_truncated: bool,
}

/// A pod that asks for a configured GPU resource (or carries a HAMi assignment), as the
/// scheduling views show it. Read-only; never part of allocation accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub created_at: Option<Timestamp>,
    pub scheduler_name: String,
    pub node_name: String,
    /// `waiting`, `gated`, `bound`, `unknown`, `terminating` or `finished`.
    pub stage: &'static str,
    pub reason_codes: Vec<&'static str>,
    /// `hami`, `kubernetes`, `mixed` or `unknown`.
    pub reason_source: &'static str,
    pub condition: Option<SchedulingCondition>,
    /// Regular containers first, then init containers, in spec order.
    pub requests: Vec<ContainerRequest>,
    pub gates: Vec<String>,
    /// `(name, value)`, sorted by name; shown by the detail view only. The values (pods of
    /// one workload carry the same tolerations and affinity) are shared between pods.
    pub constraints: Vec<(Arc<str>, Arc<str>)>,
    /// HAMi wrote `hami.io/vgpu-node` (a reservation, not a binding).
    pub preallocated: bool,
}

impl SchedulingPod {
    /// Whether the workload list shows this pod's requests: bound, or still on its way to a
    /// node (a terminating or finished unbound pod is not).
    pub fn listed(&self) -> bool {
        !self.node_name.is_empty() || matches!(self.stage, "waiting" | "gated" | "unknown")
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map_or("", String::as_str)
}

pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The positive-or-not quantity of `name` in a container's requests, else its limits.
fn container_quantity<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    let resources = container.resources.as_ref()?;
    resources
        .requests
        .as_ref()
        .and_then(|m| m.get(name))
        .or_else(|| resources.limits.as_ref().and_then(|m| m.get(name)))
        .map(|q| q.0.as_str())
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> + '_ {
    let spec = pod.spec.as_ref();
    spec.map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(
            spec.and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default()
                .iter(),
        )
}

/// A pod the scheduling views track: it carries a HAMi assignment, or some container asks
/// for a configured resource in a positive quantity (requests or limits).
pub fn is_candidate(pod: &Pod, resources: &SchedulingResources) -> bool {
    if !annotation(pod, ASSIGNED_NODE_ANNOTATION).is_empty() {
        return true;
    }
    all_containers(pod).any(|c| {
        let Some(r) = c.resources.as_ref() else {
            return false;
        };
        resources.iter().any(|name| {
            [r.requests.as_ref(), r.limits.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|m| m.get(name))
                .any(|q| quantity_positive(&q.0))
        })
    })
}

/// Where the pod is on its way to a node. A `nodeName` proves assignment; a `PodScheduled`
/// condition alone, or a phase past `Pending` without one, is `unknown`.
pub fn scheduling_stage(pod: &Pod) -> &'static str {
    if pod.metadata.deletion_timestamp.is_some() {
        return "terminating";
    }
    let phase = phase(pod);
    if phase == "Succeeded" || phase == "Failed" {
        return "finished";
    }
    let spec = pod.spec.as_ref();
    if spec
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
    {
        return "bound";
    }
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True")
        });
    if scheduled || (!phase.is_empty() && phase != "Pending") {
        return "unknown";
    }
    if spec
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
    {
        return "gated";
    }
    "waiting"
}

/// The scheduling view of a pod. `None` when it is no candidate.
pub fn scheduling_pod(pod: &Pod, resources: &SchedulingResources) -> Option<SchedulingPod> {
    if !is_candidate(pod, resources) {
        return None;
    }
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let stage = scheduling_stage(pod);
    let mut view = SchedulingPod {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
        scheduler_name: spec
            .and_then(|s| s.scheduler_name.clone())
            .unwrap_or_default(),
        node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        stage,
        reason_codes: Vec::new(),
        reason_source: "unknown",
        condition: None,
        requests: Vec::new(),
        gates: spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .map(|g| g.iter().map(|g| g.name.clone()).collect())
            .unwrap_or_default(),
        constraints: constraints(pod),
        preallocated: !annotation(pod, ASSIGNED_NODE_ANNOTATION).is_empty(),
    };
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(condition) = condition {
        let raw = condition.message.as_deref().unwrap_or_default();
        let (message, truncated) = bounded_text(raw, MAX_CONDITION_MESSAGE);
        view.condition = Some(SchedulingCondition {
            status: condition.status.clone(),
            reason: condition.reason.clone().unwrap_or_default(),
            message,
            transition_at: condition.last_transition_time.as_ref().map(|t| t.0),
            message_truncated: truncated,
        });
        if stage == "waiting" && condition.status == "False" {
            (view.reason_codes, view.reason_source) = scheduling_reasons(raw, resources);
        }
    }
    if stage == "gated" {
        (view.reason_codes, view.reason_source) = (vec!["SchedulingGated"], "kubernetes");
    } else if stage == "waiting" && view.reason_codes.is_empty() {
        view.reason_codes = vec!["NoFeedback"];
    }
    let regular = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    let kinds = regular
        .iter()
        .map(|c| (c, ContainerKind::Regular))
        .chain(init.iter().map(|c| {
            let always = c.restart_policy.as_deref() == Some("Always");
            (
                c,
                if always {
                    ContainerKind::Sidecar
                } else {
                    ContainerKind::Init
                },
            )
        }));
    for (container, kind) in kinds {
        let mut requested: Vec<ResourceRequest> = resources
            .iter()
            .filter_map(|name| Some(resource_request(name, container_quantity(container, name)?)))
            .collect();
        requested.shrink_to_fit();
        if requested.is_empty() {
            continue;
        }
        let (status, status_detail) = container_status(pod, &container.name, kind);
        view.requests.push(ContainerRequest {
            container: container.name.clone(),
            kind,
            resources: requested,
            status,
            status_detail: Arc::new(status_detail),
        });
    }
    // Kept for the pod's life, one per GPU pod: no growth slack (a `Vec` of these grew to
    // four slots, 1.4 KB per pod, 36 MB at 26,000 pods).
    view.requests.shrink_to_fit();
    view.constraints.shrink_to_fit();
    Some(view)
}

fn resource_request(name: &str, quantity: &str) -> ResourceRequest {
    let (kind, unit) = match name {
        "nvidia.com/gpu" => ("count", ""),
        "nvidia.com/gpucores" => ("core", "%"),
        "nvidia.com/gpumem" => ("memory", "MiB"),
        "nvidia.com/gpumem-percentage" => ("memory_percentage", "%"),
        _ => ("raw", ""),
    };
    let value = if kind == "raw" {
        quantity.trim().to_string()
    } else {
        quantity_decimal(quantity).unwrap_or_else(|| quantity.trim().to_string())
    };
    ResourceRequest {
        name: name.into(),
        value: value.into(),
        unit,
        kind,
        vendor: if kind == "raw" { "" } else { "NVIDIA" },
        positive: quantity_positive(quantity),
    }
}

/// Scheduling constraints shown by the detail view, sorted by name.
fn constraints(pod: &Pod) -> Vec<(Arc<str>, Arc<str>)> {
    let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for (key, value) in spec.node_selector.iter().flatten() {
        out.push((format!("nodeSelector.{key}").into(), value.as_str().into()));
    }
    for key in [
        "nvidia.com/use-gputype",
        "nvidia.com/nouse-gputype",
        "nvidia.com/use-gpuuuid",
        "nvidia.com/nouse-gpuuuid",
        "hami.io/node-scheduler-policy",
        "hami.io/gpu-scheduler-policy",
        "nvidia.com/numa-bind",
    ] {
        let value = annotation(pod, key);
        if !value.is_empty() {
            out.push((key.into(), value.into()));
        }
    }
    let mut json = |name: &str, value: Result<String, serde_json::Error>| {
        if let Ok(text) = value {
            out.push((name.into(), text.into()));
        }
    };
    if let Some(affinity) = &spec.affinity {
        json("affinity", serde_json::to_string(affinity));
    }
    if let Some(tolerations) = spec.tolerations.as_ref().filter(|t| !t.is_empty()) {
        json("tolerations", serde_json::to_string(tolerations));
    }
    if let Some(spread) = spec
        .topology_spread_constraints
        .as_ref()
        .filter(|t| !t.is_empty())
    {
        json("topologySpreadConstraints", serde_json::to_string(spread));
    }
    if let Some(class) = spec.priority_class_name.as_ref().filter(|c| !c.is_empty()) {
        out.push(("priorityClassName".into(), class.as_str().into()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Cuts `value` to at most `max` bytes on a character boundary.
pub fn bounded_text(value: &str, max: usize) -> (String, bool) {
    if value.len() <= max {
        return (value.to_string(), false);
    }
    let mut end = max;
    while end > 0 && !value.is_char_boundary(end) {
        end -= 1;
    }
    (value[..end].to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn gpu_pod(extra_spec: serde_json::Value, status: serde_json::Value) -> Pod {
        let mut spec = json!({"schedulerName": "hami-scheduler", "containers": [{"name": "main",
            "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpucores": "5", "nvidia.com/gpumem": "256"}}}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        pod(
            json!({"metadata": {"name": "p", "namespace": "dev", "uid": "u",
                                "creationTimestamp": "2026-01-01T00:00:00Z"},
                   "spec": spec, "status": status}),
        )
    }

    fn classify_one(
        phase: &str,
        policy: &str,
        observed: serde_json::Value,
    ) -> (&'static str, bool) {
        let mut spec = json!({});
        if !policy.is_empty() {
            spec = json!({"restartPolicy": policy});
        }
        let mut status = json!({"phase": phase});
        if !observed.is_null() {
            let mut entry = observed;
            entry["name"] = json!("main");
            entry["image"] = json!("");
            entry["imageID"] = json!("");
            entry["restartCount"] = entry.get("restartCount").cloned().unwrap_or(json!(0));
            entry["ready"] = entry.get("ready").cloned().unwrap_or(json!(false));
            status["containerStatuses"] = json!([entry]);
        }
        let p = gpu_pod(spec, status);
        let (s, d) = container_status(&p, "main", ContainerKind::Regular);
        (s.as_str(), d.restart_pending)
    }

    #[test]
    fn container_states_classify_like_upstream() {
        let running = |ready: bool| json!({"ready": ready, "state": {"running": {}}});
        let waiting = |reason: &str| json!({"state": {"waiting": {"reason": reason}}});
        let terminated = |code: i32| json!({"state": {"terminated": {"exitCode": code}}});
        let table: Vec<(&str, &str, serde_json::Value, &str, bool)> = vec![
            ("Running", "", running(true), "success", false),
            ("Running", "", running(false), "not_ready", false),
            ("Pending", "", running(true), "success", false),
            (
                "Running",
                "",
                waiting("ContainerCreating"),
                "waiting",
                false,
            ),
            ("Running", "", waiting("CrashLoopBackOff"), "error", false),
            ("Running", "", waiting("ImagePullBackOff"), "error", false),
            (
                "Running",
                "",
                waiting("RuntimeErrorRecoveryPending"),
                "waiting",
                false,
            ),
            ("Running", "", json!({}), "waiting", false),
            ("Pending", "", serde_json::Value::Null, "waiting", false),
            ("Running", "", serde_json::Value::Null, "unknown", false),
            ("Running", "Never", terminated(0), "closed", false),
            ("Running", "Never", terminated(1), "failed", false),
            ("Running", "OnFailure", terminated(0), "closed", false),
            ("Running", "OnFailure", terminated(1), "error", true),
            ("Running", "Always", terminated(0), "waiting", true),
            ("Running", "Always", terminated(1), "error", true),
            ("Running", "", terminated(0), "waiting", true),
            ("Unknown", "", running(true), "unknown", false),
        ];
        for (phase, policy, observed, want, pending) in table {
            let label = format!("{phase} {policy} {observed}");
            assert_eq!(
                classify_one(phase, policy, observed),
                (want, pending),
                "{label}"
            );
        }
    }

    #[test]
    fn deletion_is_terminating_but_a_lost_node_is_unknown() {
        let mut p = gpu_pod(
            json!({}),
            json!({"phase": "Running", "containerStatuses": [{"name": "main", "ready": true,
                   "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}]}),
        );
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(
            container_status(&p, "main", ContainerKind::Regular).0,
            WorkloadStatus::Terminating
        );
        if let Some(s) = p.status.as_mut() {
            s.reason = Some("NodeLost".into());
        }
        assert_eq!(
            container_status(&p, "main", ContainerKind::Regular).0,
            WorkloadStatus::Unknown
        );
    }

    #[test]
    fn detail_keeps_past_termination_apart_from_the_current_state() {
        let p = gpu_pod(
            json!({}),
            json!({"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                   "containerStatuses": [{"name": "main", "ready": true, "restartCount": 2, "image": "", "imageID": "",
                     "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        let (status, detail) = container_status(&p, "main", ContainerKind::Regular);
        assert_eq!(status, WorkloadStatus::Success);
        assert_eq!(detail.ready, Some(true));
        assert_eq!(detail.pod_ready, "False");
        assert_eq!(detail.last_exit_code, Some(137));
        assert_eq!(detail.last_termination_reason, "OOMKilled");
        assert_eq!(detail.reason, "");
    }

    #[test]
    fn stages_follow_assignment_and_gates() {
        let stage = |spec: serde_json::Value, status: serde_json::Value| {
            scheduling_stage(&gpu_pod(spec, status))
        };
        assert_eq!(stage(json!({}), json!({"phase": "Pending"})), "waiting");
        assert_eq!(stage(json!({}), json!({})), "waiting");
        assert_eq!(
            stage(
                json!({"schedulingGates": [{"name": "x/hold"}]}),
                json!({"phase": "Pending"})
            ),
            "gated"
        );
        assert_eq!(
            stage(json!({"nodeName": "n"}), json!({"phase": "Pending"})),
            "bound"
        );
        assert_eq!(
            stage(
                json!({}),
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]})
            ),
            "unknown"
        );
        assert_eq!(stage(json!({}), json!({"phase": "Failed"})), "finished");
        assert_eq!(stage(json!({}), json!({"phase": "Unknown"})), "unknown");
    }

    #[test]
    fn reasons_are_whole_tokens_and_known_phrases() {
        let resources = SchedulingResources::default();
        let table = [
            (
                "0/2 nodes: 1 1/1 CardInsufficientMemory, 1 NodeInsufficientDevice",
                "CardInsufficientMemory,NodeInsufficientDevice",
                "hami",
            ),
            (
                "1 CardInsufficientCore, 1 Insufficient cpu",
                "CardInsufficientCore,InsufficientCPU",
                "mixed",
            ),
            (
                "node had untolerated taint; Insufficient memory",
                "InsufficientHostMemory,UntoleratedTaint",
                "kubernetes",
            ),
            (
                "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                "ExtendedResourceUnavailable",
                "kubernetes",
            ),
            (
                "persistentvolumeclaim \"data\" not found",
                "PVCNotFound",
                "kubernetes",
            ),
            (
                "prefixCardInsufficientMemorySuffix",
                "UnknownSchedulingReason",
                "unknown",
            ),
            ("", "", "unknown"),
        ];
        for (message, codes, source) in table {
            let (got, from) = scheduling_reasons(message, &resources);
            assert_eq!(
                (got.join(","), from),
                (codes.to_string(), source),
                "{message}"
            );
        }
    }

    #[test]
    fn requests_keep_container_kinds_and_units() {
        let p = gpu_pod(
            json!({"initContainers": [
                {"name": "setup", "resources": {"requests": {"nvidia.com/gpumem": "512"}}},
                {"name": "side", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                {"name": "plain"}]}),
            json!({"phase": "Pending"}),
        );
        let view = scheduling_pod(&p, &SchedulingResources::default()).unwrap();
        let kinds: Vec<_> = view
            .requests
            .iter()
            .map(|r| (r.container.as_str(), r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("main", ContainerKind::Regular),
                ("setup", ContainerKind::Init),
                ("side", ContainerKind::Sidecar)
            ]
        );
        assert_eq!(view.requests[1].resources[0].unit, "MiB");
        assert_eq!(view.requests[1].resources[0].value.as_ref(), "512");
        let names: Vec<_> = view.requests[0]
            .resources
            .iter()
            .map(|r| r.name.as_ref())
            .collect();
        assert_eq!(
            names,
            ["nvidia.com/gpu", "nvidia.com/gpucores", "nvidia.com/gpumem"]
        );
        assert_eq!(view.reason_codes, ["NoFeedback"]);

        let custom = SchedulingResources::new(&["custom.io/accelerator".to_string()]);
        assert!(
            scheduling_pod(&p, &custom).is_none(),
            "no configured resource"
        );
    }

    #[test]
    fn quantities_parse_in_every_kubernetes_form() {
        assert_eq!(quantity_decimal("1k").as_deref(), Some("1000"));
        assert_eq!(quantity_decimal("0.5").as_deref(), Some("0.5"));
        assert_eq!(quantity_decimal("1Ki").as_deref(), Some("1024"));
        assert_eq!(quantity_decimal("2e3").as_deref(), Some("2000"));
        assert!(quantity_positive("1"));
        assert!(!quantity_positive("0"));
        assert!(!quantity_positive("junk"));
    }

    #[test]
    fn bounded_text_cuts_on_character_boundaries() {
        let (text, cut) = bounded_text("显显显", 4);
        assert_eq!((text.as_str(), cut), ("显", true));
        assert_eq!(bounded_text("abc", 3), ("abc".to_string(), false));
    }
}
