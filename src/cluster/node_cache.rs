//! `NodeCache`: the actor that owns the device inventory.
//!
//! Fed by one watcher on every node of the cluster (selected or not: the name → UID map a
//! pod's node UID comes from covers every node, and vendors found by their own annotations
//! can only be seen on the full objects). Each event re-decodes only the node it carries
//! (pure [`node_entry`]); a changed state is published as a new immutable
//! `Arc<Inventory>` — at most once per [`PUBLISH_DELAY`] under a burst of events — to its
//! subscribers (the `PodCache`, which combines it with the pods). Messages: [`GetInventory`],
//! [`Subscribe`], [`SetIdentities`], and [`CatalogChanged`] from the `DeviceCatalogWatcher`.
//!
//! A second watcher, on HAMi-DRA's ResourceSlices (when the cluster serves them), adds each
//! slice's devices to the node it names ([`build_inventory_with_dra`]).
//!
//! HAMi's device configuration changes how Ascend nodes decode (which `commonWord`s are
//! registrations) and how allocations read (template shares, unconfigured models), so a new
//! catalog re-decodes every node from the (slimmed) objects kept for that purpose and
//! publishes a new inventory carrying it in its [`DeviceContext`]; no restart, no relist.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::ResourceSlice;
use kube::api::Api;
use kube::runtime::watcher::Event;

use crate::cluster::catalog_watcher::CatalogChanged;
use crate::cluster::inventory::{
    build_inventory_with_dra, device_context, node_entry, node_record, IdentityMap, Inventory,
    NodeEntry,
};
#[cfg(doc)]
use crate::cluster::publish::PUBLISH_DELAY;
use crate::cluster::publish::{Pending, Publisher};
use crate::cluster::watch::{
    self, CountedProblems, KeyedStore, StoreChange, WatchHealth, WatchItem, Watching,
};
use crate::config::NodeSelectors;
use crate::device::{AnnotationlessPodMode, DeviceContext};
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;
use crate::vendor::dra::{decode_slice, DraSlice};
use crate::vendor::{node_notes, NodeNotes};

/// Readiness source and metrics `resource` label of this cache.
pub const SOURCE: &str = "nodes";
/// Metrics `resource` label of the ResourceSlice watch (not a readiness source).
pub const SLICE_SOURCE: &str = "resourceslices";

/// The refresher learnt new exporter identities (replaces the previous map).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetIdentities(pub IdentityMap);

/// The current inventory; never waits for a watcher.
#[derive(Message)]
#[rtype(result = "Arc<Inventory>")]
pub struct GetInventory;

/// A new inventory was published.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct InventoryChanged(pub Arc<Inventory>);

/// Receive every future [`InventoryChanged`], starting with the current one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<InventoryChanged>);

/// A node as kept for re-decoding when the catalog changes: without its image list and
/// managed fields (the bulk of a node object), plus the notes read from it.
struct KeptNode {
    node: Node,
    name: String,
    notes: NodeNotes,
}

pub struct NodeCache {
    selectors: NodeSelectors,
    /// HAMi's catalog in effect (`None` until the watcher reports one) and
    /// `ascend.annotationless_pod_mode`; node facts are added at publication.
    decode_context: DeviceContext,
    /// Every node of the store, by store key, for re-decoding on a catalog change.
    kept: HashMap<String, KeptNode>,
    /// A relist is buffering; a catalog change meanwhile re-decodes once it is done.
    relisting: bool,
    redecode_after_relist: bool,
    metrics: SelfMetrics,
    /// Taken in `started`.
    events: Option<futures::stream::BoxStream<'static, WatchItem<Node>>>,
    /// For the recovery probe after watch errors; `None` in snapshot mode.
    api: Option<Api<Node>>,
    store: KeyedStore<NodeEntry>,
    identities: IdentityMap,
    published: Arc<Inventory>,
    subscribers: Vec<Recipient<InventoryChanged>>,
    pending: Pending,
    health: WatchHealth,
    /// HAMi-DRA's ResourceSlices, decoded (taken in `started`; `None` when DRA is off).
    slice_events: Option<futures::stream::BoxStream<'static, WatchItem<ResourceSlice>>>,
    slice_api: Option<Api<ResourceSlice>>,
    slices: KeyedStore<Arc<DraSlice>>,
    slice_health: WatchHealth,
    /// Problems already counted (`hami_webui_decode_errors_total`), so a republication
    /// does not count them again.
    counted: CountedProblems,
}

impl NodeCache {
    pub fn new(
        selectors: NodeSelectors,
        metrics: SelfMetrics,
        board: Arc<ReadinessBoard>,
        events: futures::stream::BoxStream<'static, WatchItem<Node>>,
        api: Option<Api<Node>>,
    ) -> Self {
        Self {
            selectors,
            decode_context: DeviceContext::default(),
            kept: HashMap::new(),
            relisting: false,
            redecode_after_relist: false,
            metrics: metrics.clone(),
            events: Some(events),
            api,
            store: KeyedStore::default(),
            identities: IdentityMap::new(),
            published: Arc::new(Inventory::default()),
            subscribers: Vec::new(),
            pending: Pending::default(),
            health: WatchHealth::new(SOURCE, Arc::clone(&board), metrics.clone()),
            slice_events: None,
            slice_api: None,
            slices: KeyedStore::default(),
            slice_health: WatchHealth::new(SLICE_SOURCE, board, metrics),
            counted: CountedProblems::default(),
        }
    }

    /// Adds the devices of HAMi-DRA's ResourceSlices from this stream (not a readiness
    /// source: a cluster without DRA is as ready as one with it).
    pub fn with_resource_slices(
        mut self,
        events: futures::stream::BoxStream<'static, WatchItem<ResourceSlice>>,
        api: Option<Api<ResourceSlice>>,
    ) -> Self {
        self.slice_events = Some(events);
        self.slice_api = api;
        self
    }

    fn decode_slice(&mut self, slice: &ResourceSlice) -> (String, Option<Arc<DraSlice>>) {
        let (decoded, errors) = decode_slice(slice);
        for (vendor, error) in errors {
            self.metrics.count_decode_error(vendor, error.kind());
            tracing::debug!(slice = %slice.metadata.name.as_deref().unwrap_or_default(), %error, "ResourceSlice device not decoded");
        }
        (watch::object_key(slice), decoded.map(Arc::new))
    }

    /// How annotation-less Ascend pods on `hami-vnpu-core=true` nodes are read
    /// (`ascend.annotationless_pod_mode`).
    pub fn with_annotationless_pod_mode(mut self, policy: AnnotationlessPodMode) -> Self {
        self.decode_context.annotationless_pod_mode = policy;
        self
    }

    fn decode(&mut self, node: &Node) -> (String, Option<NodeEntry>) {
        let (entry, errors) = node_entry(node, &self.selectors, &self.decode_context);
        for (vendor, error) in errors {
            self.metrics.count_decode_error(vendor, error.kind());
            tracing::debug!(node = %entry.name, vendor = vendor.provider(), %error, "node annotation not decoded");
        }
        let key = watch::object_key(node);
        self.kept.insert(
            key.clone(),
            KeptNode {
                node: slimmed(node),
                name: entry.name.clone(),
                notes: node_notes(node),
            },
        );
        (key, Some(entry))
    }

    /// Decodes every kept node again (the catalog changed) and schedules a publication even
    /// when no device changed: unconfigured flags and allocation shapes read the catalog.
    fn redecode_all(&mut self, ctx: &mut Context<Self>) {
        let nodes: Vec<Node> = self.kept.values().map(|k| k.node.clone()).collect();
        let mut store = std::mem::take(&mut self.store);
        for node in nodes {
            store.apply(
                Event::Apply(node),
                |object, _| self.decode(object),
                watch::object_key,
            );
        }
        self.store = store;
        self.publish_soon(ctx);
    }
}

impl Publisher for NodeCache {
    fn pending(&mut self) -> &mut Pending {
        &mut self.pending
    }

    fn publish(&mut self) {
        let context = device_context(
            self.decode_context.catalog.clone(),
            self.decode_context.annotationless_pod_mode,
            self.kept.values().map(|k| (k.name.as_str(), &k.notes)),
        );
        let slices: Vec<&DraSlice> = self.slices.values().map(|s| s.as_ref()).collect();
        let kept = &self.kept;
        let selectors_skipped = |name: &str| {
            kept.values().find(|k| k.name == name).map(|k| {
                node_record(
                    &k.node,
                    k.name.clone(),
                    k.node.metadata.uid.clone().unwrap_or_default(),
                    Vec::new(),
                )
            })
        };
        let (inventory, problems) = build_inventory_with_dra(
            self.store.values(),
            &slices,
            selectors_skipped,
            &self.identities,
            Arc::new(context),
        );
        for (vendor, error) in problems {
            if self.counted.first_time(&error.to_string()) {
                self.metrics.count_decode_error(vendor, error.kind());
                tracing::debug!(%error, "ResourceSlice devices not shown");
            }
        }
        let inventory = Arc::new(inventory);
        self.metrics
            .cache_objects
            .with_label_values(&["nodes"])
            .set(inventory.nodes.len() as i64);
        self.metrics
            .cache_objects
            .with_label_values(&["devices"])
            .set(inventory.device_count() as i64);
        self.metrics.mark_cache_change(SOURCE);
        self.published = Arc::clone(&inventory);
        self.subscribers.retain(|s| s.connected());
        for subscriber in &self.subscribers {
            subscriber.do_send(InventoryChanged(Arc::clone(&inventory)));
        }
    }
}

impl Watching<Node> for NodeCache {
    fn health(&mut self) -> &mut WatchHealth {
        &mut self.health
    }

    fn api(&self) -> Option<Api<Node>> {
        self.api.clone()
    }
}

impl Actor for NodeCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(events) = self.events.take() {
            ctx.add_stream(events);
        }
        if let Some(events) = self.slice_events.take() {
            ctx.add_stream(events);
        }
    }
}

impl Watching<ResourceSlice> for NodeCache {
    fn health(&mut self) -> &mut WatchHealth {
        &mut self.slice_health
    }

    fn api(&self) -> Option<Api<ResourceSlice>> {
        self.slice_api.clone()
    }
}

impl StreamHandler<WatchItem<ResourceSlice>> for NodeCache {
    fn handle(&mut self, item: WatchItem<ResourceSlice>, ctx: &mut Context<Self>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                Watching::<ResourceSlice>::on_watch_error(self, &error, ctx);
                return;
            }
        };
        self.slice_health.on_event(&event);
        let mut slices = std::mem::take(&mut self.slices);
        let change = slices.apply(event, |s, _| self.decode_slice(s), watch::object_key);
        self.slices = slices;
        match change {
            StoreChange::Changed => self.publish_soon(ctx),
            StoreChange::RelistDone => {
                self.publish_now();
                self.slice_health.on_synced(self.slices.len());
            }
            StoreChange::RelistStarted | StoreChange::Unchanged => {}
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(resource = SLICE_SOURCE, "ResourceSlice watch stream ended");
    }
}

impl StreamHandler<WatchItem<Node>> for NodeCache {
    fn handle(&mut self, item: WatchItem<Node>, ctx: &mut Context<Self>) {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                Watching::<Node>::on_watch_error(self, &error, ctx);
                return;
            }
        };
        self.health.on_event(&event);
        let deleted = match &event {
            Event::Delete(node) => Some(watch::object_key(node)),
            _ => None,
        };
        // Taken out for the call so the decoder may borrow the rest of `self`.
        let mut store = std::mem::take(&mut self.store);
        let change = store.apply(event, |object, _| self.decode(object), watch::object_key);
        self.store = store;
        if let Some(key) = deleted {
            self.kept.remove(&key);
        }
        match change {
            StoreChange::Changed => self.publish_soon(ctx),
            StoreChange::RelistDone => {
                self.relisting = false;
                let store = &self.store;
                self.kept.retain(|key, _| store.get(key).is_some());
                if std::mem::take(&mut self.redecode_after_relist) {
                    self.redecode_all(ctx);
                }
                self.publish_now();
                self.health.on_synced(self.store.len());
            }
            StoreChange::RelistStarted => self.relisting = true,
            StoreChange::Unchanged => {}
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        tracing::warn!(resource = SOURCE, "node watch stream ended");
    }
}

impl Handler<GetInventory> for NodeCache {
    type Result = Arc<Inventory>;
    fn handle(&mut self, _: GetInventory, _: &mut Context<Self>) -> Self::Result {
        Arc::clone(&self.published)
    }
}

impl Handler<SetIdentities> for NodeCache {
    type Result = ();
    fn handle(&mut self, msg: SetIdentities, ctx: &mut Context<Self>) {
        if msg.0 != self.identities {
            self.identities = msg.0;
            self.publish_soon(ctx);
        }
    }
}

impl Handler<CatalogChanged> for NodeCache {
    type Result = ();
    fn handle(&mut self, msg: CatalogChanged, ctx: &mut Context<Self>) {
        let next = msg.0.catalog.clone();
        let same = match (&self.decode_context.catalog, &next) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.decode_context.catalog = next;
        if self.relisting {
            self.redecode_after_relist = true;
        }
        self.redecode_all(ctx);
    }
}

/// A copy of `node` without what no decoder reads and what makes nodes large.
fn slimmed(node: &Node) -> Node {
    let mut node = node.clone();
    node.metadata.managed_fields = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
    }
    node
}

impl Handler<Subscribe> for NodeCache {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        msg.0.do_send(InventoryChanged(Arc::clone(&self.published)));
        self.subscribers.push(msg.0);
    }
}
