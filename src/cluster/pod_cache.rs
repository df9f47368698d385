//! `PodCache`: the actor that owns the tracked pods and publishes the [`ClusterSnapshot`].
//!
//! Fed by a watcher on every pod; keeps only pods that have not terminated and that HAMi
//! placed (annotation `hami.io/vgpu-node`) or that ask for a GPU resource named in
//! `scheduling.resource_names` (pending pods included), each decoded once per change into a
//! [`TrackedPod`]. It subscribes to the `NodeCache`'s inventory and, whenever pods or
//! inventory change, builds a new snapshot aside ([`ClusterSnapshot::build`], usage computed
//! once) and swaps it in. Readers ask with [`GetSnapshot`] and get an `Arc` clone at once.
//!
//! A second watcher, on HAMi-DRA's ResourceClaims (when the cluster serves them), keeps the
//! allocated claims; the snapshot joins them to the pods they are reserved for.

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::ResourceClaim;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use crate::cluster::claims::snapshot_with_claims;
use crate::cluster::interning::PodInterner;
use crate::cluster::inventory::Inventory;
use crate::cluster::node_cache::InventoryChanged;
use crate::cluster::publish::{Pending, Publisher};
use crate::cluster::scheduling::SchedulingResources;
use crate::cluster::snapshot::ClusterSnapshot;
use crate::cluster::tracked_pod::{self, track_pod, TrackedPod};
use crate::cluster::watch::{
    self, CountedProblems, KeyedStore, StoreChange, WatchHealth, WatchItem, Watching,
};
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;
use crate::vendor::dra::{decode_claim, DraClaim};

/// Readiness source and metrics `resource` label of this cache.
pub const SOURCE: &str = "pods";
/// Metrics `resource` label of the ResourceClaim watch (not a readiness source).
pub const CLAIM_SOURCE: &str = "resourceclaims";

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
    /// HAMi-DRA's allocated ResourceClaims (taken in `started`; `None` when DRA is off).
    claim_events: Option<futures::stream::BoxStream<'static, WatchItem<ResourceClaim>>>,
    claim_api: Option<Api<ResourceClaim>>,
    claims: KeyedStore<Arc<DraClaim>>,
    claim_health: WatchHealth,
    counted: CountedProblems,
    /// One copy of the values that repeat across pods.
    interner: PodInterner,
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
            health: WatchHealth::new(SOURCE, Arc::clone(&board), metrics.clone()),
            claim_events: None,
            claim_api: None,
            claims: KeyedStore::default(),
            claim_health: WatchHealth::new(CLAIM_SOURCE, board, metrics),
            counted: CountedProblems::default(),
            interner: PodInterner::default(),
        }
    }

    /// Joins HAMi-DRA's ResourceClaims from this stream to the pods (not a readiness source:
    /// a cluster without DRA is as ready as one with it).
    pub fn with_resource_claims(
        mut self,
        events: futures::stream::BoxStream<'static, WatchItem<ResourceClaim>>,
        api: Option<Api<ResourceClaim>>,
    ) -> Self {
        self.claim_events = Some(events);
        self.claim_api = api;
        self
    }

    fn decode_claim(&self, claim: &ResourceClaim) -> (String, Option<Arc<DraClaim>>) {
        let (decoded, errors) = decode_claim(claim);
        for (vendor, error) in errors {
            self.metrics.count_decode_error(vendor, error.kind());
            tracing::debug!(claim = %claim.metadata.name.as_deref().unwrap_or_default(), %error, "ResourceClaim share not decoded");
        }
        (watch::object_key(claim), decoded.map(Arc::new))
    }

    /// Tracks pods asking for these resources (`scheduling.resource_names`), not HAMi's
    /// defaults.
    pub fn with_scheduling_resources(mut self, resources: SchedulingResources) -> Self {
        self.resources = resources;
        self
    }

    /// `previous` is what the cache keeps of the pod now: a pod without a `PodScheduled`
    /// condition keeps the time it was first seen.
    fn decode(
        &mut self,
        pod: &Pod,
        previous: Option<&Arc<TrackedPod>>,
    ) -> (String, Option<Arc<TrackedPod>>) {
        let key = watch::object_key(pod);
        let now = previous
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
        let record = record.map(|mut tracked| {
            self.interner.share(&mut tracked);
            Arc::new(tracked)
        });
        (key, record)
    }
}

impl Publisher for PodCache {
    fn pending(&mut self) -> &mut Pending {
        &mut self.pending
    }

    fn publish(&mut self) {
        self.generation += 1;
        let (pods, views) = tracked_pod::split(self.store.values().map(|t| t.as_ref()));
        let claims: Vec<Arc<DraClaim>> = self.claims.values().cloned().collect();
        let (snapshot, problems) = snapshot_with_claims(
            self.generation,
            Arc::clone(&self.inventory),
            pods,
            views,
            &claims,
        );
        for (vendor, error) in problems {
            if self.counted.first_time(&error.to_string()) {
                self.metrics.count_decode_error(vendor, error.kind());
                tracing::debug!(%error, "ResourceClaim share not joined");
            }
        }
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
        if let Some(events) = self.claim_events.take() {
            ctx.add_stream(events);
        }
    }
}

impl Watching<ResourceClaim> for PodCache {
    fn health(&mut self) -> &mut WatchHealth {
        &mut self.claim_health
    }

    fn api(&self) -> Option<Api<ResourceClaim>> {
        self.claim_api.clone()
    }
}

impl StreamHandler<WatchItem<ResourceClaim>> for PodCache {
    fn handle(&mut self, item: WatchItem<ResourceClaim>, ctx: &mut Context<Self>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                Watching::<ResourceClaim>::on_watch_error(self, &error, ctx);
                return;
            }
        };
        self.claim_health.on_event(&event);
        let mut claims = std::mem::take(&mut self.claims);
        let change = claims.apply(event, |c, _| self.decode_claim(c), watch::object_key);
        self.claims = claims;
        match change {
            StoreChange::Changed => self.publish_soon(ctx),
            StoreChange::RelistDone => {
                self.publish_now();
                self.claim_health.on_synced(self.claims.len());
            }
            StoreChange::RelistStarted | StoreChange::Unchanged => {}
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(resource = CLAIM_SOURCE, "ResourceClaim watch stream ended");
    }
}

impl StreamHandler<WatchItem<Pod>> for PodCache {
    fn handle(&mut self, item: WatchItem<Pod>, ctx: &mut Context<Self>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                Watching::<Pod>::on_watch_error(self, &error, ctx);
                return;
            }
        };
        self.health.on_event(&event);
        // Taken out for the call so the decoder may borrow the rest of `self`.
        let mut store = std::mem::take(&mut self.store);
        let change = store.apply(
            event,
            |object, previous| self.decode(object, previous),
            watch::object_key,
        );
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
