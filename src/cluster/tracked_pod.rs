//! What the `PodCache` keeps of one pod ([`TrackedPod`]), decoded once per pod change by the
//! pure [`track_pod`]: the [`PodRecord`] of a pod HAMi placed (its containers and decoded
//! allocations) and the [`SchedulingPod`] view of a pod asking for a GPU resource — not the
//! whole `Pod`, since pods are the largest stream at scale.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::cluster::scheduling::{self, ContainerKind, SchedulingPod, SchedulingResources};
#[cfg(doc)]
use crate::cluster::snapshot::ClusterSnapshot;
use crate::cluster::snapshot::{ContainerRecord, ContainerState, PodRecord};
use crate::device::{DeviceContext, Vendor};
use crate::vendor::{decode_pod, DecodeError, ASSIGNED_NODE_ANNOTATION};

/// What the cache keeps of one pod: its allocations when HAMi placed it, its scheduling
/// view when it asks for a GPU resource (or both).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedPod {
    pub record: Option<Arc<PodRecord>>,
    pub scheduling: Option<Arc<SchedulingPod>>,
}

/// Decodes one pod into what we keep of it; `None` when the pod is not tracked
/// (`Succeeded`/`Failed`, or neither placed by HAMi nor asking for one of `resources`).
/// `now` stands in for the scheduling time when the pod has no `PodScheduled` condition;
/// `context` is HAMi's device configuration (the catalog names the Ascend words whose
/// annotations exist besides the built-in ones).
pub fn track_pod(
    pod: &Pod,
    now: Timestamp,
    resources: &SchedulingResources,
    context: &DeviceContext,
) -> (Option<TrackedPod>, Vec<(Vendor, DecodeError)>) {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return (None, Vec::new());
    }
    let (record, errors) = pod_record(pod, now, context);
    let scheduling = scheduling::scheduling_pod(pod, resources);
    if record.is_none() && scheduling.is_none() {
        return (None, errors);
    }
    let tracked = TrackedPod {
        record: record.map(Arc::new),
        scheduling: scheduling.map(Arc::new),
    };
    (Some(tracked), errors)
}

/// Decodes the allocations of one pod; `None` when the pod is not tracked (no
/// `hami.io/vgpu-node`, or `Succeeded`/`Failed`). `now` stands in for the scheduling time
/// when the pod has no `PodScheduled` condition; `context` as for [`track_pod`].
pub fn pod_record(
    pod: &Pod,
    now: Timestamp,
    context: &DeviceContext,
) -> (Option<PodRecord>, Vec<(Vendor, DecodeError)>) {
    let meta = &pod.metadata;
    let placed = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ASSIGNED_NODE_ANNOTATION));
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
    let mut claims = container_claims(pod);
    // A pod on a node that uses ResourceClaims may hold HAMi-DRA devices: the join with
    // the claims, when the snapshot is built, tells.
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let claiming = bound && !claims.is_empty();
    if !(placed || claiming) || phase == "Succeeded" || phase == "Failed" {
        return (None, Vec::new());
    }
    let decoded = decode_pod(pod, context);
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let containers = decoded
        .containers
        .into_iter()
        .map(|c| {
            let state = match statuses.iter().find(|s| s.name == c.name) {
                None => ContainerState::NoStatus,
                Some(s) if phase == "Running" && s.ready => ContainerState::Success,
                Some(_) => ContainerState::Unknown,
            };
            let (status, status_detail) =
                scheduling::container_status(pod, &c.name, ContainerKind::Regular);
            let claims = claims.remove(&c.name).unwrap_or_default();
            ContainerRecord {
                name: c.name,
                image: c.image,
                allocations: c.allocations,
                priority: c.priority,
                state,
                status,
                status_detail: Arc::new(status_detail),
                claims,
            }
        })
        .collect();
    let create_time = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    let record = PodRecord {
        uid: meta.uid.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        create_time,
        containers,
    };
    (Some(record), decoded.errors)
}

/// The ResourceClaims each regular container uses, by container name: a container's
/// `resources.claims` names an entry of the pod's `spec.resourceClaims`, which names the
/// claim directly or through a template (then `status.resourceClaimStatuses` has the name
/// of the claim made from it).
fn container_claims(pod: &Pod) -> HashMap<String, Vec<String>> {
    let Some(spec) = pod.spec.as_ref() else {
        return HashMap::new();
    };
    let Some(pod_claims) = spec.resource_claims.as_deref().filter(|c| !c.is_empty()) else {
        return HashMap::new();
    };
    let generated = pod
        .status
        .as_ref()
        .and_then(|s| s.resource_claim_statuses.as_deref())
        .unwrap_or_default();
    let claim_name = |entry: &str| -> Option<String> {
        let declared = pod_claims.iter().find(|c| c.name == entry)?;
        declared.resource_claim_name.clone().or_else(|| {
            generated
                .iter()
                .find(|g| g.name == entry)
                .and_then(|g| g.resource_claim_name.clone())
        })
    };
    spec.containers
        .iter()
        .filter_map(|container| {
            let names: Vec<String> = container
                .resources
                .as_ref()
                .and_then(|r| r.claims.as_deref())
                .unwrap_or_default()
                .iter()
                .filter_map(|c| claim_name(&c.name))
                .collect();
            (!names.is_empty()).then(|| (container.name.clone(), names))
        })
        .collect()
}

/// The placed pods and the scheduling views of `tracked`, as [`ClusterSnapshot::build`]
/// takes them.
pub fn split<'a>(
    tracked: impl Iterator<Item = &'a TrackedPod>,
) -> (Vec<Arc<PodRecord>>, Vec<Arc<SchedulingPod>>) {
    let mut pods = Vec::new();
    let mut views = Vec::new();
    for t in tracked {
        pods.extend(t.record.iter().cloned());
        views.extend(t.scheduling.iter().cloned());
    }
    (pods, views)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::inventory::Inventory;
    use crate::cluster::snapshot::ClusterSnapshot;
    use serde_json::json;

    fn pod(annotations: serde_json::Value, limits: serde_json::Value, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "annotations": annotations},
            "spec": {"containers": [{"name": "main", "resources": {"limits": limits}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn tracks_placed_pods_and_pending_gpu_requests_only() {
        let placed = json!({"hami.io/vgpu-node": "n", "hami.io/vgpu-devices-allocated": "GPU-a,NVIDIA,10,1:;"});
        let gpu = json!({"nvidia.com/gpu": "1"});
        let resources = SchedulingResources::default();
        let context = DeviceContext::default();
        let track = |p: &Pod| track_pod(p, Timestamp::UNIX_EPOCH, &resources, &context).0;
        let both = track(&pod(placed.clone(), gpu.clone(), "Running")).unwrap();
        assert!(both.record.is_some() && both.scheduling.is_some());
        let pending = track(&pod(json!({}), gpu.clone(), "Pending")).unwrap();
        assert!(pending.record.is_none());
        assert_eq!(pending.scheduling.unwrap().stage, "waiting");
        assert!(track(&pod(json!({}), json!({"cpu": "1"}), "Running")).is_none());
        assert!(track(&pod(json!({}), json!({"nvidia.com/gpu": "0"}), "Pending")).is_none());
        assert!(track(&pod(placed, gpu, "Succeeded")).is_none());
    }

    #[test]
    fn snapshots_list_scheduling_views_oldest_first() {
        let resources = SchedulingResources::default();
        let view = |name: &str, created: &str| {
            let p: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created},
                "spec": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
                "status": {"phase": "Pending"}
            }))
            .unwrap();
            track_pod(
                &p,
                Timestamp::UNIX_EPOCH,
                &resources,
                &DeviceContext::default(),
            )
            .0
            .unwrap()
        };
        let tracked = [
            view("b", "2026-01-01T00:00:02Z"),
            view("a", "2026-01-01T00:00:03Z"),
            view("c", "2026-01-01T00:00:01Z"),
        ];
        let (pods, views) = split(tracked.iter());
        let snapshot = ClusterSnapshot::build(1, Arc::new(Inventory::default()), pods, views);
        let names: Vec<_> = snapshot
            .scheduling
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["c", "b", "a"]);
        assert!(snapshot.pods.is_empty());
    }
}
