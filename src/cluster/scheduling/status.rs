//! The 2.0 classification of a container's state ([`WorkloadStatus`]) and the evidence
//! behind it ([`StatusDetail`]), from the container's status entry and the pod around it.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::Serialize;

use super::{phase, ContainerKind};

/// The status words of upstream 2.0's workload rows (`ContainerReply.status` of
/// `/v1/workloads`): a container's state, or `pending` for a GPU request not bound to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadStatus {
    /// Running and ready.
    Success,
    /// Running, not ready.
    NotReady,
    /// Not started yet, or about to restart after a clean exit.
    Waiting,
    /// A known failure while waiting, or about to restart after a failed exit.
    Error,
    /// Exited 0 and will not run again.
    Closed,
    /// Exited non-zero and will not run again.
    Failed,
    /// No trustworthy state (a lost node, no status entry outside `Pending`).
    Unknown,
    /// The pod is being deleted.
    Terminating,
    /// A GPU request not bound to a node (request rows only).
    Pending,
}

impl WorkloadStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::NotReady => "not_ready",
            Self::Waiting => "waiting",
            Self::Error => "error",
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::Terminating => "terminating",
            Self::Pending => "pending",
        }
    }

    /// The states the workload list groups as `abnormal`.
    pub fn is_abnormal(self) -> bool {
        matches!(
            self,
            Self::Error | Self::Failed | Self::NotReady | Self::Unknown
        )
    }
}

impl std::fmt::Display for WorkloadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The evidence behind a container's state (upstream's `ContainerStatusDetail`). `None`
/// marks a value Kubernetes did not report, as opposed to `false`/`0`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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
) -> (WorkloadStatus, StatusDetail) {
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
        return (WorkloadStatus::Unknown, detail);
    }
    if pod.deleting {
        return (WorkloadStatus::Terminating, detail);
    }
    let Some(observed) = observed else {
        let status = if pod.phase == "Pending" {
            WorkloadStatus::Waiting
        } else {
            WorkloadStatus::Unknown
        };
        return (status, detail);
    };
    let status = match (detail.container_state.as_str(), detail.exit_code) {
        ("Running", _) if observed.ready => WorkloadStatus::Success,
        ("Running", _) => WorkloadStatus::NotReady,
        ("Waiting", _) if is_waiting_error(&detail.reason) => WorkloadStatus::Error,
        ("Waiting", _) => WorkloadStatus::Waiting,
        ("Terminated", Some(code)) => {
            detail.restart_pending = will_restart(pod.restart_policy, code);
            match (detail.restart_pending, code == 0) {
                (true, true) => WorkloadStatus::Waiting,
                (true, false) => WorkloadStatus::Error,
                (false, true) => WorkloadStatus::Closed,
                (false, false) => WorkloadStatus::Failed,
            }
        }
        _ => WorkloadStatus::Unknown,
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
) -> (WorkloadStatus, StatusDetail) {
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
    if kind == ContainerKind::Init && status == WorkloadStatus::NotReady && running {
        status = WorkloadStatus::Success;
        detail.ready = None;
    }
    (status, detail)
}
