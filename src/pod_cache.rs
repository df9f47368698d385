//! `PodCache`: the actor that owns the tracked pods and publishes the [`ClusterSnapshot`].
//!
//! Fed by a watcher on every pod; keeps only pods that HAMi placed (annotation
//! `hami.io/vgpu-node`) and that have not terminated, as small decoded [`PodRecord`]s (pure
//! [`pod_record`]), not whole `Pod` objects. It subscribes to the `NodeCache`'s inventory
//! and, whenever pods or inventory change, builds a new snapshot aside — usage computed once
//! through the alias index — and swaps it in. Readers ask with [`GetSnapshot`] and get an
//! `Arc` clone at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use crate::device::Vendor;
use crate::node_cache::InventoryChanged;
use crate::readiness::ReadinessBoard;
use crate::snapshot::{
    compute_usage, ClusterSnapshot, ContainerRecord, ContainerState, Inventory, PodRecord,
};
use crate::telemetry::SelfMetrics;
use crate::vendor::{decode_pod, DecodeError, ASSIGNED_NODE_ANNOTATION};
use crate::watch::{self, KeyedStore, StoreChange, WatchHealth, WatchItem};

/// Readiness source and metrics `resource` label of this cache.
pub const SOURCE: &str = "pods";

/// Longest a change waits before it is published: a burst of pod events costs one snapshot
/// build per interval, not one per event.
pub const PUBLISH_DELAY: Duration = Duration::from_millis(100);

/// Decodes one pod into what we keep of it; `None` when the pod is not tracked (no
/// `hami.io/vgpu-node`, or `Succeeded`/`Failed`). `now` stands in for the scheduling time
/// when the pod has no `PodScheduled` condition.
pub fn pod_record(pod: &Pod, now: Timestamp) -> (Option<PodRecord>, Vec<(Vendor, DecodeError)>) {
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
    let decoded = decode_pod(pod);
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
            ContainerRecord {
                name: c.name,
                image: c.image,
                allocations: c.allocations,
                priority: c.priority,
                state,
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

/// Builds a snapshot from an inventory and the tracked pods.
pub fn build_snapshot<'a>(
    generation: u64,
    inventory: Arc<Inventory>,
    pods: impl Iterator<Item = &'a Arc<PodRecord>>,
) -> ClusterSnapshot {
    let mut pods: Vec<Arc<PodRecord>> = pods.cloned().collect();
    pods.sort_by(|a, b| {
        (a.namespace.as_str(), a.name.as_str(), a.uid.as_str()).cmp(&(
            b.namespace.as_str(),
            b.name.as_str(),
            b.uid.as_str(),
        ))
    });
    let usage = compute_usage(&inventory, &pods);
    ClusterSnapshot {
        generation,
        inventory,
        pods: Arc::new(pods),
        usage: Arc::new(usage),
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
    store: KeyedStore<Arc<PodRecord>>,
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
            inventory: Arc::new(Inventory::default()),
            published: Arc::new(ClusterSnapshot::default()),
            generation: 0,
            dirty: false,
            publish_scheduled: false,
            health: WatchHealth::new(SOURCE, board, metrics),
        }
    }

    fn publish(&mut self) {
        self.publish_scheduled = false;
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.generation += 1;
        let snapshot = build_snapshot(
            self.generation,
            Arc::clone(&self.inventory),
            self.store.values(),
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

    fn decode(&self, pod: &Pod) -> (String, Option<Arc<PodRecord>>) {
        let key = watch::object_key(pod);
        // Keep the first-seen time of a pod that has no PodScheduled condition.
        let now = self
            .store
            .get(&key)
            .map(|r| r.create_time)
            .unwrap_or_else(Timestamp::now);
        let (record, errors) = pod_record(pod, now);
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
