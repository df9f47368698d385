//! `PodCache`: the actor that owns the tracked pods and publishes the [`ClusterSnapshot`].
//!
//! Fed by a watcher on every pod; keeps only pods that have not terminated and that HAMi
//! placed (annotation `hami.io/vgpu-node`) or that ask for a GPU resource named in
//! `scheduling.resource_names` (pending pods included), each decoded once per change into a
//! [`TrackedPod`]. It subscribes to the `NodeCache`'s inventory and, whenever pods or
//! inventory change, builds a new snapshot aside ([`ClusterSnapshot::build`], usage computed
//! once) and swaps it in. Readers ask with [`GetSnapshot`] and get an `Arc` clone at once.

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use crate::cluster::inventory::Inventory;
use crate::cluster::node_cache::InventoryChanged;
use crate::cluster::publish::{Pending, Publisher};
use crate::cluster::scheduling::SchedulingResources;
use crate::cluster::snapshot::ClusterSnapshot;
use crate::cluster::tracked_pod::{self, track_pod, TrackedPod};
use crate::cluster::watch::{self, KeyedStore, StoreChange, WatchHealth, WatchItem, Watching};
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;

/// Readiness source and metrics `resource` label of this cache.
pub const SOURCE: &str = "pods";

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
    pending: Pending,
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
            pending: Pending::default(),
            health: WatchHealth::new(SOURCE, board, metrics),
        }
    }

    /// Tracks pods asking for these resources (`scheduling.resource_names`), not HAMi's
    /// defaults.
    pub fn with_scheduling_resources(mut self, resources: SchedulingResources) -> Self {
        self.resources = resources;
        self
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
        let (record, errors) = track_pod(pod, now, &self.resources, &self.inventory.context);
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

impl Publisher for PodCache {
    fn pending(&mut self) -> &mut Pending {
        &mut self.pending
    }

    fn publish(&mut self) {
        self.generation += 1;
        let (pods, views) = tracked_pod::split(self.store.values().map(|t| t.as_ref()));
        let snapshot =
            ClusterSnapshot::build(self.generation, Arc::clone(&self.inventory), pods, views);
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
}

impl Watching<Pod> for PodCache {
    fn health(&mut self) -> &mut WatchHealth {
        &mut self.health
    }

    fn api(&self) -> Option<Api<Pod>> {
        self.api.clone()
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
                self.on_watch_error(&error, ctx);
                return;
            }
        };
        self.health.on_event(&event);
        // Taken out for the call so the decoder may borrow the rest of `self`.
        let mut store = std::mem::take(&mut self.store);
        let change = store.apply(event, |object| self.decode(object), watch::object_key);
        self.store = store;
        match change {
            StoreChange::Changed => self.publish_soon(ctx),
            StoreChange::RelistDone => {
                self.publish_now();
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
        self.publish_now();
    }
}

impl Handler<GetSnapshot> for PodCache {
    type Result = Arc<ClusterSnapshot>;
    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        Arc::clone(&self.published)
    }
}
