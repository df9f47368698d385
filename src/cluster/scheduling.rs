//! Pure: what upstream 2.0's workload views say about a pod — its scheduling stage and
//! diagnosis, the GPU resources each container asks for, and the 2.0 classification of a
//! container's state (`success`, `not_ready`, `waiting`, `error`, `closed`, `failed`,
//! `unknown`, `terminating`) with the evidence behind it.
//!
//! The `PodCache` calls these once per pod change and keeps the results in the snapshot; the
//! workload list and `GET /v1/scheduling/pod` only read them. Nothing here touches an actor.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

use crate::vendor::ASSIGNED_NODE_ANNOTATION;

/// HAMi's resource names, used when `scheduling.resource_names` is empty.
pub const DEFAULT_RESOURCE_NAMES: [&str; 4] = [
    "nvidia.com/gpu",
    "nvidia.com/gpucores",
    "nvidia.com/gpumem",
    "nvidia.com/gpumem-percentage",
];

/// Longest `PodScheduled` condition message kept, in bytes.
pub const MAX_CONDITION_MESSAGE: usize = 16 * 1024;

/// The 2.0 container states (`ContainerReply.status` of `/v1/workloads`).
pub mod status {
    pub const SUCCESS: &str = "success";
    pub const NOT_READY: &str = "not_ready";
    pub const WAITING: &str = "waiting";
    pub const ERROR: &str = "error";
    pub const CLOSED: &str = "closed";
    pub const FAILED: &str = "failed";
    pub const UNKNOWN: &str = "unknown";
    pub const TERMINATING: &str = "terminating";
}

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

/// The evidence behind a container's state (upstream's `ContainerStatusDetail`). `None`
/// marks a value Kubernetes did not report, as opposed to `false`/`0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetail {
    /// `Running`, `Waiting`, `Terminated`, or empty without a status entry.
    pub container_state: String,
    pub reason: String,
    pub message: String,
    pub ready: Option<bool>,
    pub restart_count: i32,
    pub exit_code: Option<i32>,
    pub pod_phase: String,
    pub pod_ready: String,
    pub pod_ready_reason: String,
    pub pod_ready_message: String,
    /// Terminated, and the restart policy will run it again.
    pub restart_pending: bool,
    pub last_termination_reason: String,
    pub last_exit_code: Option<i32>,
    pub last_termination_message: String,
    pub pod_reason: String,
    pub pod_message: String,
}

/// One requested resource of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    pub name: String,
    pub value: String,
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
    pub status: &'static str,
    pub status_detail: StatusDetail,
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
    /// `(name, value)`, sorted by name; shown by the detail view only.
    pub constraints: Vec<(String, String)>,
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

fn phase(pod: &Pod) -> &str {
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
        let requested: Vec<ResourceRequest> = resources
            .iter()
            .filter_map(|name| Some(resource_request(name, container_quantity(container, name)?)))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let (status, status_detail) = container_status(pod, &container.name, kind);
        view.requests.push(ContainerRequest {
            container: container.name.clone(),
            kind,
            resources: requested,
            status,
            status_detail,
        });
    }
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
        name: name.to_string(),
        value,
        unit,
        kind,
        vendor: if kind == "raw" { "" } else { "NVIDIA" },
        positive: quantity_positive(quantity),
    }
}

/// Scheduling constraints shown by the detail view, sorted by name.
fn constraints(pod: &Pod) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for (key, value) in spec.node_selector.iter().flatten() {
        out.push((format!("nodeSelector.{key}"), value.clone()));
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
            out.push((key.to_string(), value.to_string()));
        }
    }
    let mut json = |name: &str, value: Result<String, serde_json::Error>| {
        if let Ok(text) = value {
            out.push((name.to_string(), text));
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
        out.push(("priorityClassName".to_string(), class.clone()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What the pod tells about every container: phase, reason, message, `Ready` condition,
/// deletion, restart policy.
struct PodContext<'a> {
    phase: &'a str,
    reason: &'a str,
    message: &'a str,
    deleting: bool,
    restart_policy: &'a str,
    ready: Option<(&'a str, &'a str, &'a str)>,
}

impl<'a> PodContext<'a> {
    fn of(pod: &'a Pod) -> Self {
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| {
                (
                    c.status.as_str(),
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.as_deref().unwrap_or_default(),
                )
            });
        PodContext {
            phase: phase(pod),
            reason: status.and_then(|s| s.reason.as_deref()).unwrap_or_default(),
            message: status
                .and_then(|s| s.message.as_deref())
                .unwrap_or_default(),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            restart_policy: pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                .unwrap_or_default(),
            ready,
        }
    }
}

/// Waiting reasons that are known failures; any other reason stays `waiting`.
fn is_waiting_error(reason: &str) -> bool {
    matches!(
        reason,
        "CrashLoopBackOff"
            | "ImagePullBackOff"
            | "ErrImagePull"
            | "InvalidImageName"
            | "ErrImageNeverPull"
            | "ImageInspectError"
            | "CreateContainerConfigError"
            | "CreateContainerError"
            | "RunContainerError"
            | "PreCreateHookError"
            | "PreStartHookError"
            | "PostStartHookError"
    )
}

/// Whether a terminated container runs again; an omitted policy is `Always`.
fn will_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Classifies one container from its status entry (if any) and the pod around it.
fn classify(
    pod: &PodContext<'_>,
    observed: Option<&ContainerStatus>,
) -> (&'static str, StatusDetail) {
    let mut detail = StatusDetail {
        pod_phase: pod.phase.to_string(),
        pod_reason: pod.reason.to_string(),
        pod_message: pod.message.to_string(),
        ..StatusDetail::default()
    };
    if let Some((status, reason, message)) = pod.ready {
        detail.pod_ready = status.to_string();
        detail.pod_ready_reason = reason.to_string();
        detail.pod_ready_message = message.to_string();
    }
    if let Some(observed) = observed {
        detail.ready = Some(observed.ready);
        detail.restart_count = observed.restart_count;
        if let Some(previous) = observed
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
        {
            detail.last_termination_reason = previous.reason.clone().unwrap_or_default();
            detail.last_termination_message = previous.message.clone().unwrap_or_default();
            detail.last_exit_code = Some(previous.exit_code);
        }
        let state = observed.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_some() {
            detail.container_state = "Running".into();
        } else if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
            detail.container_state = "Terminated".into();
            detail.reason = terminated.reason.clone().unwrap_or_default();
            detail.message = terminated.message.clone().unwrap_or_default();
            detail.exit_code = Some(terminated.exit_code);
        } else {
            // An empty state is Waiting, as the API defines it.
            detail.container_state = "Waiting".into();
            if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
                detail.reason = waiting.reason.clone().unwrap_or_default();
                detail.message = waiting.message.clone().unwrap_or_default();
            }
        }
    }
    // A lost node leaves stale Running/Ready data behind: never shown as healthy.
    let node_lost = pod.phase == "Unknown"
        || pod.reason == "NodeLost"
        || (detail.pod_ready == "Unknown" && detail.pod_ready_reason == "NodeStatusUnknown")
        || detail.reason == "ContainerStatusUnknown";
    if node_lost {
        return (status::UNKNOWN, detail);
    }
    if pod.deleting {
        return (status::TERMINATING, detail);
    }
    let Some(observed) = observed else {
        let status = if pod.phase == "Pending" {
            status::WAITING
        } else {
            status::UNKNOWN
        };
        return (status, detail);
    };
    let status = match (detail.container_state.as_str(), detail.exit_code) {
        ("Running", _) if observed.ready => status::SUCCESS,
        ("Running", _) => status::NOT_READY,
        ("Waiting", _) if is_waiting_error(&detail.reason) => status::ERROR,
        ("Waiting", _) => status::WAITING,
        ("Terminated", Some(code)) => {
            detail.restart_pending = will_restart(pod.restart_policy, code);
            match (detail.restart_pending, code == 0) {
                (true, true) => status::WAITING,
                (true, false) => status::ERROR,
                (false, true) => status::CLOSED,
                (false, false) => status::FAILED,
            }
        }
        _ => status::UNKNOWN,
    };
    (status, detail)
}

/// The 2.0 state of container `name` of the given kind. Init containers are read from
/// `initContainerStatuses`; a sidecar restarts as under `Always`, a completed init container
/// never restarts, and a running init container is not expected to be Ready.
pub fn container_status(
    pod: &Pod,
    name: &str,
    kind: ContainerKind,
) -> (&'static str, StatusDetail) {
    let status = pod.status.as_ref();
    let statuses = match kind {
        ContainerKind::Regular => status.and_then(|s| s.container_statuses.as_deref()),
        _ => status.and_then(|s| s.init_container_statuses.as_deref()),
    }
    .unwrap_or_default();
    let observed = statuses.iter().find(|s| s.name == name);
    let mut context = PodContext::of(pod);
    let terminated_ok = observed
        .and_then(|o| o.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    match kind {
        ContainerKind::Regular => {}
        ContainerKind::Sidecar => context.restart_policy = "Always",
        ContainerKind::Init if terminated_ok => context.restart_policy = "Never",
        ContainerKind::Init => {}
    }
    let (mut status, mut detail) = classify(&context, observed);
    let running = observed
        .and_then(|o| o.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    if kind == ContainerKind::Init && status == status::NOT_READY && running {
        status = status::SUCCESS;
        detail.ready = None;
    }
    (status, detail)
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

/// HAMi's filter reasons, matched as whole tokens of the scheduler's message.
const HAMI_REASONS: [&str; 16] = [
    "CardInsufficientMemory",
    "CardInsufficientCore",
    "CardComputeUnitsExhausted",
    "CardTimeSlicingExhausted",
    "NodeInsufficientDevice",
    "AllocatedCardsInsufficientRequest",
    "CardTypeMismatch",
    "CardUuidMismatch",
    "CardNotHealth",
    "CardCordoned",
    "ExclusiveDeviceAllocateConflict",
    "NumaNotFit",
    "CardMigTopologyInfeasible",
    "ResourceQuotaNotFit",
    "CardNotFoundCustomFilterRule",
    "ModeNotFit",
];

/// Phrases of kube-scheduler's messages and the reason each stands for.
const KUBE_PHRASES: [(&str, &str); 10] = [
    ("untolerated taint", "UntoleratedTaint"),
    ("didn't match pod's node affinity/selector", "NodeAffinity"),
    ("unbound immediate persistentvolumeclaims", "UnboundPVC"),
    ("volume node affinity conflict", "VolumeNodeAffinity"),
    ("were unschedulable", "NodeUnschedulable"),
    ("didn't match pod affinity rules", "PodAffinity"),
    ("didn't match pod anti-affinity rules", "PodAffinity"),
    (
        "didn't satisfy existing pods anti-affinity rules",
        "PodAffinity",
    ),
    ("too many pods", "TooManyPods"),
    ("didn't have free ports", "HostPortConflict"),
];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every `insufficient <resource>` of a message (case-insensitive, whole word): the byte
/// range of the match and the resource name as written.
fn insufficient_matches(message: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let lower = message.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("insufficient") {
        let start = from + found;
        from = start + 1;
        if start > 0 && is_word_byte(bytes[start - 1]) {
            continue;
        }
        let mut i = start + "insufficient".len();
        let spaces = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == spaces || i >= bytes.len() || !bytes[i].is_ascii_alphanumeric() {
            continue;
        }
        let name_start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'/' | b'-'))
        {
            i += 1;
        }
        out.push((start..i, &message[name_start..i]));
        from = i;
    }
    out
}

/// Tokens `[A-Za-z][A-Za-z0-9_]*` of a text, leftmost-longest as a regex would find them.
fn tokens(text: &str) -> BTreeSet<&str> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && is_word_byte(bytes[i]) {
                i += 1;
            }
            out.insert(&text[start..i]);
        } else {
            i += 1;
        }
    }
    out
}

/// `persistentvolumeclaim(s) "<name>" not found`, case-insensitive.
fn mentions_missing_pvc(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let skip_spaces = |mut i: usize| {
        let from = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        (i > from).then_some(i)
    };
    let mut from = 0;
    while let Some(found) = lower[from..].find("persistentvolumeclaim") {
        let start = from + found;
        from = start + 1;
        if start > 0 && is_word_byte(bytes[start - 1]) {
            continue;
        }
        let mut i = start + "persistentvolumeclaim".len();
        if bytes.get(i) == Some(&b's') {
            i += 1;
        }
        let Some(mut i) = skip_spaces(i) else {
            continue;
        };
        if !matches!(bytes.get(i), Some(b'"' | b'\'')) {
            continue;
        }
        i += 1;
        let name_start = i;
        while i < bytes.len() && !matches!(bytes[i], b'"' | b'\'' | b'\r' | b'\n') {
            i += 1;
        }
        if i == name_start || !matches!(bytes.get(i), Some(b'"' | b'\'')) {
            continue;
        }
        let Some(i) = skip_spaces(i + 1) else {
            continue;
        };
        if !lower[i..].starts_with("not") {
            continue;
        }
        let Some(i) = skip_spaces(i + 3) else {
            continue;
        };
        if lower[i..].starts_with("found") && !bytes.get(i + 5).is_some_and(|b| is_word_byte(*b)) {
            return true;
        }
    }
    false
}

/// Reason codes of a `PodScheduled=False` message and who gave them: HAMi's filter reasons
/// (whole tokens), kube-scheduler's resource shortages, missing claims and known phrases.
pub fn scheduling_reasons(
    message: &str,
    resources: &SchedulingResources,
) -> (Vec<&'static str>, &'static str) {
    if message.trim().is_empty() {
        return (Vec::new(), "unknown");
    }
    let insufficient = insufficient_matches(message);
    let mut stripped = String::with_capacity(message.len());
    let mut at = 0;
    for (range, _) in &insufficient {
        stripped.push_str(&message[at..range.start]);
        at = range.end;
    }
    stripped.push_str(&message[at..]);
    let found = tokens(&stripped);
    let mut codes: Vec<&'static str> = HAMI_REASONS
        .into_iter()
        .filter(|code| found.contains(code))
        .collect();
    let hami = !codes.is_empty();
    let mut kube = false;
    let shortage = |code: &str| {
        insufficient.iter().any(|(_, name)| {
            let name = name.trim_end_matches('.');
            match (code, name.to_ascii_lowercase().as_str()) {
                ("InsufficientCPU", "cpu") | ("InsufficientHostMemory", "memory") => true,
                ("ExtendedResourceUnavailable", "cpu" | "memory") => false,
                ("ExtendedResourceUnavailable", _) => resources.contains(name),
                _ => false,
            }
        })
    };
    for code in [
        "InsufficientCPU",
        "InsufficientHostMemory",
        "ExtendedResourceUnavailable",
    ] {
        if shortage(code) {
            codes.push(code);
            kube = true;
        }
    }
    if mentions_missing_pvc(message) {
        codes.push("PVCNotFound");
        kube = true;
    }
    let lower = message.to_lowercase();
    for (phrase, code) in KUBE_PHRASES {
        if lower.contains(phrase) && !codes.contains(&code) {
            codes.push(code);
            kube = true;
        }
    }
    match (hami, kube) {
        (true, true) => (codes, "mixed"),
        (true, false) => (codes, "hami"),
        (false, true) => (codes, "kubernetes"),
        (false, false) => (vec!["UnknownSchedulingReason"], "unknown"),
    }
}

/// The value of a Kubernetes quantity as a decimal number (`1k` → 1000, `512Mi` →
/// 536870912, `0.5` → 0.5); `None` when it does not parse.
fn quantity_value(text: &str) -> Option<f64> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(digits.parse::<i32>().ok()?)
        }
    };
    Some(number * scale)
}

/// A quantity above zero.
pub fn quantity_positive(text: &str) -> bool {
    quantity_value(text).is_some_and(|v| v > 0.0)
}

/// A quantity as a plain decimal (upstream's `AsDec().String()` for classified resources).
fn quantity_decimal(text: &str) -> Option<String> {
    let value = quantity_value(text)?;
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        return Some(format!("{}", value as i64));
    }
    Some(format!("{value}"))
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
        (s, d.restart_pending)
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
            "terminating"
        );
        if let Some(s) = p.status.as_mut() {
            s.reason = Some("NodeLost".into());
        }
        assert_eq!(
            container_status(&p, "main", ContainerKind::Regular).0,
            "unknown"
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
        assert_eq!(status, "success");
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
        assert_eq!(view.requests[1].resources[0].value, "512");
        let names: Vec<_> = view.requests[0]
            .resources
            .iter()
            .map(|r| r.name.as_str())
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
