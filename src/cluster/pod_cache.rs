//! `PodCache`: the actor that owns the tracked pods and publishes the [`ClusterSnapshot`].
//!
//! Fed by a watcher on every pod; keeps only pods that have not terminated and that HAMi
//! placed (annotation `hami.io/vgpu-node`) or that ask for a GPU resource named in
//! `scheduling.resource_names` (pending pods included), as small decoded [`TrackedPod`]s
//! (pure [`track_pod`]): the [`PodRecord`] of a placed pod and the [`SchedulingPod`] view of a
//! GPU pod, not whole `Pod` objects. It subscribes to the `NodeCache`'s inventory
//! and, whenever pods or inventory change, builds a new snapshot aside — usage computed once
//! through the alias index — and swaps it in. Readers ask with [`GetSnapshot`] and get an
//! `Arc` clone at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use crate::cluster::node_cache::InventoryChanged;
use crate::cluster::scheduling::{self, ContainerKind, SchedulingPod, SchedulingResources};
use crate::cluster::snapshot::{
    compute_usage, ClusterSnapshot, ContainerRecord, ContainerState, Inventory, PodRecord,
};
use crate::cluster::watch::{self, KeyedStore, StoreChange, WatchHealth, WatchItem};
use crate::device::DeviceContext;
use crate::device::Vendor;
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;
use crate::vendor::{decode_pod_with, DecodeError, ASSIGNED_NODE_ANNOTATION};

/// Readiness source and metrics `resource` label of this cache.
pub const SOURCE: &str = "pods";

/// Longest a change waits before it is published: a burst of pod events costs one snapshot
/// build per interval, not one per event.
pub const PUBLISH_DELAY: Duration = Duration::from_millis(100);

/// What the cache keeps of one pod: its allocations when HAMi placed it, its scheduling
/// view when it asks for a GPU resource (or both).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedPod {
    pub record: Option<Arc<PodRecord>>,
    pub scheduling: Option<Arc<SchedulingPod>>,
}

/// Decodes one pod into what we keep of it; `None` when the pod is not tracked
/// (`Succeeded`/`Failed`, or neither placed by HAMi nor asking for one of `resources`).
/// `now` stands in for the scheduling time when the pod has no `PodScheduled` condition.
pub fn track_pod(
    pod: &Pod,
    now: Timestamp,
    resources: &SchedulingResources,
) -> (Option<TrackedPod>, Vec<(Vendor, DecodeError)>) {
    track_pod_with(pod, now, resources, &DeviceContext::default())
}

/// As [`track_pod`], reading allocations with the device configuration in `context` (the
/// catalog names the Ascend words whose annotations exist besides the built-in ones).
pub fn track_pod_with(
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
    let (record, errors) = pod_record_with(pod, now, context);
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
/// when the pod has no `PodScheduled` condition.
pub fn pod_record(pod: &Pod, now: Timestamp) -> (Option<PodRecord>, Vec<(Vendor, DecodeError)>) {
    pod_record_with(pod, now, &DeviceContext::default())
}

/// As [`pod_record`], with the device configuration in `context`.
pub fn pod_record_with(
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
    if !placed || phase == "Succeeded" || phase == "Failed" {
        return (None, Vec::new());
    }
    let decoded = decode_pod_with(pod, context);
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
            ContainerRecord {
                name: c.name,
                image: c.image,
                allocations: c.allocations,
                priority: c.priority,
                state,
                status,
                status_detail,
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

/// Builds a snapshot from an inventory and the placed pods (no scheduling views).
pub fn build_snapshot<'a>(
    generation: u64,
    inventory: Arc<Inventory>,
    pods: impl Iterator<Item = &'a Arc<PodRecord>>,
) -> ClusterSnapshot {
    build_with_scheduling(generation, inventory, pods.cloned().collect(), Vec::new())
}

/// Builds a snapshot from an inventory and everything the cache tracks.
pub fn build_tracked_snapshot<'a>(
    generation: u64,
    inventory: Arc<Inventory>,
    tracked: impl Iterator<Item = &'a TrackedPod>,
) -> ClusterSnapshot {
    let mut pods = Vec::new();
    let mut views = Vec::new();
    for t in tracked {
        pods.extend(t.record.iter().cloned());
        views.extend(t.scheduling.iter().cloned());
    }
    build_with_scheduling(generation, inventory, pods, views)
}

fn build_with_scheduling(
    generation: u64,
    inventory: Arc<Inventory>,
    mut pods: Vec<Arc<PodRecord>>,
    mut scheduling: Vec<Arc<SchedulingPod>>,
) -> ClusterSnapshot {
    pods.sort_by(|a, b| {
        (a.namespace.as_str(), a.name.as_str(), a.uid.as_str()).cmp(&(
            b.namespace.as_str(),
            b.name.as_str(),
            b.uid.as_str(),
        ))
    });
    // Oldest first: the order the workload list's pending rows start from.
    scheduling.sort_by(|a, b| {
        (a.created_at, &a.namespace, &a.name, &a.uid).cmp(&(
            b.created_at,
            &b.namespace,
            &b.name,
            &b.uid,
        ))
    });
    let usage = compute_usage(&inventory, &pods);
    ClusterSnapshot {
        generation,
        inventory,
        pods: Arc::new(pods),
        usage: Arc::new(usage),
        scheduling: Arc::new(scheduling),
        core_usage: Default::default(),
    }
}

/// The current cluster snapshot; never waits for a watcher.
#[derive(Message)]
#[rtype(result = "Arc<ClusterSnapshot>")]
pub struct GetSnapshot;

pub struct PodCache {
    metrics: SelfMetrics,
    events: Option<futures::stream::BoxStream<'static, WatchItem<Pod>>>,
    api: Option<Api<Pod>>,
    store: KeyedStore<Arc<TrackedPod>>,
    /// `scheduling.resource_names`: which pods count as GPU pods.
    resources: SchedulingResources,
    inventory: Arc<Inventory>,
    published: Arc<ClusterSnapshot>,
    generation: u64,
    dirty: bool,
    publish_scheduled: bool,
    health: WatchHealth,
}

impl PodCache {
    pub fn new(
        metrics: SelfMetrics,
        board: Arc<ReadinessBoard>,
        events: futures::stream::BoxStream<'static, WatchItem<Pod>>,
        api: Option<Api<Pod>>,
    ) -> Self {
        Self {
            metrics: metrics.clone(),
            events: Some(events),
            api,
            store: KeyedStore::default(),
            resources: SchedulingResources::default(),
            inventory: Arc::new(Inventory::default()),
            published: Arc::new(ClusterSnapshot::default()),
            generation: 0,
            dirty: false,
            publish_scheduled: false,
            health: WatchHealth::new(SOURCE, board, metrics),
        }
    }

    /// Tracks pods asking for these resources (`scheduling.resource_names`), not HAMi's
    /// defaults.
    pub fn with_scheduling_resources(mut self, resources: SchedulingResources) -> Self {
        self.resources = resources;
        self
    }

    fn publish(&mut self) {
        self.publish_scheduled = false;
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.generation += 1;
        let snapshot = build_tracked_snapshot(
            self.generation,
            Arc::clone(&self.inventory),
            self.store.values().map(|t| t.as_ref()),
        );
        let containers: usize = snapshot.pods.iter().map(|p| p.allocated_containers()).sum();
        self.metrics
            .cache_objects
            .with_label_values(&["pods"])
            .set(snapshot.pods.len() as i64);
        self.metrics
            .cache_objects
            .with_label_values(&["containers"])
            .set(containers as i64);
        self.metrics.mark_cache_change(SOURCE);
        self.published = Arc::new(snapshot);
    }

    fn schedule_publish(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        if !self.publish_scheduled {
            self.publish_scheduled = true;
            ctx.run_later(PUBLISH_DELAY, |act, _| act.publish());
        }
    }

    fn decode(&self, pod: &Pod) -> (String, Option<Arc<TrackedPod>>) {
        let key = watch::object_key(pod);
        // Keep the first-seen time of a pod that has no PodScheduled condition.
        let now = self
            .store
            .get(&key)
            .and_then(|t| t.record.as_ref())
            .map(|r| r.create_time)
            .unwrap_or_else(Timestamp::now);
        // Pods decoded before a catalog arrived are read again only when they change.
        let (record, errors) = track_pod_with(pod, now, &self.resources, &self.inventory.context);
        for (vendor, error) in errors {
            self.metrics.count_decode_error(vendor, error.kind());
            tracing::debug!(
                pod = %pod.metadata.name.as_deref().unwrap_or_default(),
                namespace = %pod.metadata.namespace.as_deref().unwrap_or_default(),
                vendor = vendor.provider(), %error, "pod annotation not decoded"
            );
        }
        (key, record.map(Arc::new))
    }
}

impl Actor for PodCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(events) = self.events.take() {
            ctx.add_stream(events);
        }
    }
}

impl StreamHandler<WatchItem<Pod>> for PodCache {
    fn handle(&mut self, item: WatchItem<Pod>, ctx: &mut Context<Self>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                if self.health.on_error(&error) {
                    if let Some(api) = self.api.clone() {
                        ctx.spawn(
                            watch::until_listable(api)
                                .into_actor(self)
                                .map(|_, act, _| act.health.restored()),
                        );
                    }
                }
                return;
            }
        };
        self.health.on_event(&event);
        // Taken out for the call so the decoder may borrow the rest of `self`.
        let mut store = std::mem::take(&mut self.store);
        let change = store.apply(event, |object| self.decode(object), watch::object_key);
        self.store = store;
        match change {
            StoreChange::Changed => self.schedule_publish(ctx),
            StoreChange::RelistDone => {
                self.dirty = true;
                self.publish();
                self.health.on_synced(self.store.len());
            }
            StoreChange::RelistStarted | StoreChange::Unchanged => {}
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(resource = SOURCE, "pod watch stream ended");
    }
}

impl Handler<InventoryChanged> for PodCache {
    type Result = ();
    /// Published at once: the node cache already coalesced its changes, and a reader that
    /// saw `/readyz` turn 200 must find the inventory in the next snapshot it asks for.
    fn handle(&mut self, msg: InventoryChanged, _: &mut Context<Self>) {
        self.inventory = msg.0;
        self.dirty = true;
        self.publish();
    }
}

impl Handler<GetSnapshot> for PodCache {
    type Result = Arc<ClusterSnapshot>;
    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        Arc::clone(&self.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let track = |p: &Pod| track_pod(p, Timestamp::UNIX_EPOCH, &resources).0;
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
            track_pod(&p, Timestamp::UNIX_EPOCH, &resources).0.unwrap()
        };
        let tracked = [
            view("b", "2026-01-01T00:00:02Z"),
            view("a", "2026-01-01T00:00:03Z"),
            view("c", "2026-01-01T00:00:01Z"),
        ];
        let snapshot = build_tracked_snapshot(1, Arc::new(Inventory::default()), tracked.iter());
        let names: Vec<_> = snapshot
            .scheduling
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["c", "b", "a"]);
        assert!(snapshot.pods.is_empty());
    }
}
