//! `GET /v1/scheduling/pod` (`SchedulingPodReply`) and the scheduling messages the workload
//! rows embed (`SchedulingPod`, `SchedulingContainerRequest`, `ContainerStatusDetail`), built
//! from the snapshot's [`crate::cluster::scheduling`] views and one [`PodEvents`] read.
//!
//! Field names and order follow upstream 2.0's `api/v1/scheduling*.proto` and
//! `container.proto`; times are RFC 3339 in the configured zone, empty when unknown.

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::cluster::scheduling::{ContainerRequest, SchedulingPod, StatusDetail};
use crate::cluster::scheduling_events::PodEvents;
use crate::cluster::snapshot::{ClusterSnapshot, PodRecord};
use crate::reply::request::{string, MessageSchema, ProtoRequest};
use crate::reply::times::rfc3339;

/// `GetSchedulingPodRequest`: the query of `GET /v1/scheduling/pod`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SchedulingPodRequest {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ProtoRequest for SchedulingPodRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[
            string("namespace", "namespace"),
            string("name", "name"),
            string("uid", "uid"),
        ],
    };
}

/// Why `GET /v1/scheduling/pod` has no pod to describe; [`crate::error`] gives each
/// upstream's status and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulingPodError {
    /// `namespace`, `name` or `uid` is missing (400 `POD_IDENTITY_REQUIRED`).
    #[error("namespace, name and uid are required")]
    IdentityRequired,
    /// No tracked GPU pod has that namespace and name (404 `POD_NOT_FOUND`). Pods that ask
    /// for no configured GPU resource are not tracked, so they answer this too.
    #[error("The selected Pod is no longer available")]
    NotFound,
    /// The name now belongs to a pod with another UID (409 `POD_RECREATED`).
    #[error("A different Pod now uses this name")]
    Recreated,
}

/// `ContainerStatusDetail`; the optional fields are left out when Kubernetes gave no value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetailReply {
    pub container_state: String,
    pub reason: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    pub restart_count: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub pod_phase: String,
    pub pod_ready: String,
    pub pod_ready_reason: String,
    pub pod_ready_message: String,
    pub restart_pending: bool,
    pub last_termination_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i32>,
    pub last_termination_message: String,
    pub pod_reason: String,
    pub pod_message: String,
}

impl From<&StatusDetail> for StatusDetailReply {
    fn from(d: &StatusDetail) -> Self {
        StatusDetailReply {
            container_state: d.container_state.clone(),
            reason: d.reason.clone(),
            message: d.message.clone(),
            ready: d.ready,
            restart_count: d.restart_count,
            exit_code: d.exit_code,
            pod_phase: d.pod_phase.clone(),
            pod_ready: d.pod_ready.clone(),
            pod_ready_reason: d.pod_ready_reason.clone(),
            pod_ready_message: d.pod_ready_message.clone(),
            restart_pending: d.restart_pending,
            last_termination_reason: d.last_termination_reason.clone(),
            last_exit_code: d.last_exit_code,
            last_termination_message: d.last_termination_message.clone(),
            pod_reason: d.pod_reason.clone(),
            pod_message: d.pod_message.clone(),
        }
    }
}

/// `SchedulingResource`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResourceReply {
    pub name: String,
    pub value: String,
    pub unit: String,
    pub kind: String,
    pub vendor: String,
}

/// `SchedulingContainerRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReply {
    pub container: String,
    pub container_kind: String,
    pub resources: Vec<ResourceReply>,
}

impl From<&ContainerRequest> for RequestReply {
    fn from(r: &ContainerRequest) -> Self {
        RequestReply {
            container: r.container.clone(),
            container_kind: r.kind.as_str().to_string(),
            resources: r
                .resources
                .iter()
                .map(|r| ResourceReply {
                    name: r.name.to_string(),
                    value: r.value.to_string(),
                    unit: r.unit.to_string(),
                    kind: r.kind.to_string(),
                    vendor: r.vendor.to_string(),
                })
                .collect(),
        }
    }
}

/// `SchedulingCondition`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionReply {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub transition_at: String,
    pub message_truncated: bool,
}

/// `SchedulingConstraint`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConstraintReply {
    pub name: String,
    pub value: String,
}

/// `SchedulingPod`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingPodReply {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub created_at: String,
    pub scheduler_name: String,
    pub node_name: String,
    pub stage: String,
    pub reason_codes: Vec<String>,
    pub reason_source: String,
    pub condition: Option<ConditionReply>,
    pub requests: Vec<RequestReply>,
    pub gates: Vec<String>,
    pub constraints: Vec<ConstraintReply>,
    pub preallocated: bool,
    pub allocated_containers: Vec<String>,
}

fn time(value: Option<jiff::Timestamp>, zone: &TimeZone) -> String {
    value.map(|t| rfc3339(t, zone)).unwrap_or_default()
}

/// The `SchedulingPod` message of a view; `record` is the same pod's allocations, if HAMi
/// placed it. `detail` adds the constraints (the workload rows leave them out, as upstream's
/// list does).
pub fn scheduling_pod_reply(
    pod: &SchedulingPod,
    record: Option<&PodRecord>,
    detail: bool,
    zone: &TimeZone,
) -> SchedulingPodReply {
    // Only a bound pod has allocations worth naming.
    let allocated_containers = match record {
        Some(record) if !pod.node_name.is_empty() => record
            .containers
            .iter()
            .filter(|c| !c.allocations.is_empty())
            .map(|c| c.name.clone())
            .collect(),
        _ => Vec::new(),
    };
    SchedulingPodReply {
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        uid: pod.uid.clone(),
        created_at: time(pod.created_at, zone),
        scheduler_name: pod.scheduler_name.clone(),
        node_name: pod.node_name.clone(),
        stage: pod.stage.to_string(),
        reason_codes: pod.reason_codes.iter().map(|c| c.to_string()).collect(),
        reason_source: pod.reason_source.to_string(),
        condition: pod.condition.as_ref().map(|c| ConditionReply {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            transition_at: time(c.transition_at, zone),
            message_truncated: c.message_truncated,
        }),
        requests: pod.requests.iter().map(RequestReply::from).collect(),
        gates: pod.gates.clone(),
        constraints: if detail {
            pod.constraints
                .iter()
                .map(|(name, value)| ConstraintReply {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect()
        } else {
            Vec::new()
        },
        preallocated: pod.preallocated,
        allocated_containers,
    }
}

/// `SchedulingEvent`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReply {
    pub uid: String,
    pub reason: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub message: String,
    pub source: String,
    pub last_observed_at: String,
    pub count: i32,
    pub message_truncated: bool,
}

/// `SchedulingPodReply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingDetailReply {
    pub pod: Option<SchedulingPodReply>,
    pub events: Vec<EventReply>,
    pub event_status: String,
    pub events_incomplete: bool,
    pub events_fetched_at: String,
}

/// Checks the identity and finds the pod's view: all three parts required, the name must
/// exist in the namespace, with the same UID.
pub fn find_scheduling_pod<'a>(
    snapshot: &'a ClusterSnapshot,
    request: &SchedulingPodRequest,
) -> Result<&'a SchedulingPod, SchedulingPodError> {
    if request.namespace.is_empty() || request.name.is_empty() || request.uid.is_empty() {
        return Err(SchedulingPodError::IdentityRequired);
    }
    let mut same_name = snapshot
        .scheduling
        .iter()
        .filter(|p| p.namespace == request.namespace && p.name == request.name)
        .peekable();
    if same_name.peek().is_none() {
        return Err(SchedulingPodError::NotFound);
    }
    same_name
        .find(|p| p.uid == request.uid)
        .map(|p| p.as_ref())
        .ok_or(SchedulingPodError::Recreated)
}

/// `GET /v1/scheduling/pod`: the pod part from `snapshot` (taken after the events were
/// read, so a binding that happened meanwhile shows), the events from `events`.
pub fn scheduling_detail(
    snapshot: &ClusterSnapshot,
    request: &SchedulingPodRequest,
    events: &PodEvents,
    zone: &TimeZone,
) -> Result<SchedulingDetailReply, SchedulingPodError> {
    let pod = find_scheduling_pod(snapshot, request)?;
    let record = snapshot.pods.iter().find(|p| p.uid == pod.uid);
    Ok(SchedulingDetailReply {
        pod: Some(scheduling_pod_reply(
            pod,
            record.map(|r| r.as_ref()),
            true,
            zone,
        )),
        events: events
            .items
            .iter()
            .map(|e| EventReply {
                uid: e.uid.clone(),
                reason: e.reason.clone(),
                event_type: e.type_.clone(),
                message: e.message.clone(),
                source: e.source.clone(),
                last_observed_at: time(e.last_observed_at, zone),
                count: e.count,
                message_truncated: e.message_truncated,
            })
            .collect(),
        event_status: events.status.to_string(),
        events_incomplete: events.incomplete,
        events_fetched_at: time(events.fetched_at, zone),
    })
}
