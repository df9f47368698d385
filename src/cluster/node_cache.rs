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
//! HAMi's device configuration changes how Ascend nodes decode (which `commonWord`s are
//! registrations) and how allocations read (template shares, unconfigured models), so a new
//! catalog re-decodes every node from the (slimmed) objects kept for that purpose and
//! publishes a new inventory carrying it in its [`DeviceContext`]; no restart, no relist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher::Event;

use crate::catalog::{CatalogChanged, DeviceCatalog};
use crate::cluster::snapshot::{Inventory, NodeRecord};
use crate::cluster::watch::{self, KeyedStore, StoreChange, WatchHealth, WatchItem};
use crate::config::NodeSelectors;
use crate::device::AnnotationlessPodMode;
use crate::device::{DeviceContext, Vendor};
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;
use crate::vendor::{decode_node_devices_with, node_notes, DecodeError, NodeNotes};

/// Readiness source and metrics `resource` label of this cache.
pub const SOURCE: &str = "nodes";

/// Longest a change waits before it is published: coalesces bursts of node events into one
/// rebuild of the indexes.
pub const PUBLISH_DELAY: Duration = Duration::from_millis(100);

/// What the cache keeps per node: its name (for the UID map) and, when some vendor selects
/// it, its decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEntry {
    pub name: String,
    pub uid: String,
    pub record: Option<Arc<NodeRecord>>,
}

/// Decodes one node: which vendors select it and their devices. A vendor with a configured
/// (or default) selector selects the node when the selector matches, devices or not, as Go
/// did; a vendor without one selects it only when its own annotations yield devices. A
/// vendor's malformed annotation is returned as an error and costs only that vendor's
/// devices.
pub fn node_entry(
    node: &Node,
    selectors: &NodeSelectors,
) -> (NodeEntry, Vec<(Vendor, DecodeError)>) {
    node_entry_with(node, selectors, &DeviceContext::default())
}

/// As [`node_entry`], decoding with HAMi's device configuration in `context`.
pub fn node_entry_with(
    node: &Node,
    selectors: &NodeSelectors,
    context: &DeviceContext,
) -> (NodeEntry, Vec<(Vendor, DecodeError)>) {
    use kube::core::SelectorExt;
    let meta = &node.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let empty = Default::default();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let mut selected = false;
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for vendor in Vendor::ALL {
        let by_selector = match selectors.get(vendor) {
            Some(selector) if selector.matches(labels) => true,
            Some(_) => continue,
            None => false,
        };
        match decode_node_devices_with(vendor, node, context) {
            Ok(found) => {
                selected |= by_selector || !found.is_empty();
                devices.extend(found);
            }
            Err(error) => {
                selected |= by_selector;
                errors.push((vendor, error));
            }
        }
    }
    let record = selected.then(|| Arc::new(node_record(node, name.clone(), uid.clone(), devices)));
    (NodeEntry { name, uid, record }, errors)
}

fn node_record(
    node: &Node,
    name: String,
    uid: String,
    devices: Vec<crate::device::Device>,
) -> NodeRecord {
    let status = node.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    let field = |f: fn(&k8s_openapi::api::core::v1::NodeSystemInfo) -> &String| {
        info.map(|i| f(i).clone()).unwrap_or_default()
    };
    let ip = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default();
    let is_ready = status
        .and_then(|s| s.conditions.as_ref())
        .map(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false);
    NodeRecord {
        uid,
        name,
        ip,
        is_schedulable: !node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        is_ready,
        os_image: field(|i| &i.os_image),
        kernel_version: field(|i| &i.kernel_version),
        container_runtime_version: field(|i| &i.container_runtime_version),
        kubelet_version: field(|i| &i.kubelet_version),
        kube_proxy_version: field(|i| &i.kube_proxy_version),
        operating_system: field(|i| &i.operating_system),
        architecture: field(|i| &i.architecture),
        creation_timestamp: node.metadata.creation_timestamp.as_ref().map(|t| t.0),
        devices,
    }
}

/// Builds the published inventory from the cache's entries.
pub fn build_inventory<'a>(entries: impl Iterator<Item = &'a NodeEntry>) -> Inventory {
    build_identified_inventory(entries, &IdentityMap::new())
}

/// Exporter identities learnt by the refresher: `(node, alias id)` → `(id, device type)`.
/// The Go backend showed Ascend devices under their `vdie_id`, DCU under the exporter's
/// `device_id`, MLU and Metax full GPUs under the exporter's `uuid` and model; applying the
/// same ids here keeps the REST lists, `/metrics` labels and the frontend's PromQL in step.
pub type IdentityMap = HashMap<(String, String), (String, String)>;

/// As [`build_identified_inventory`], carrying `context` (HAMi's catalog and node facts).
pub fn build_inventory_with<'a>(
    entries: impl Iterator<Item = &'a NodeEntry>,
    identities: &IdentityMap,
    context: Arc<DeviceContext>,
) -> Inventory {
    let mut inventory = build_identified_inventory(entries, identities);
    inventory.context = context;
    inventory
}

/// The [`DeviceContext`] of an inventory: the catalog in effect, the policy for
/// annotation-less Ascend pods, and the node facts read from every node.
pub fn device_context<'a>(
    catalog: Option<Arc<DeviceCatalog>>,
    policy: AnnotationlessPodMode,
    notes: impl Iterator<Item = (&'a str, &'a NodeNotes)>,
) -> DeviceContext {
    let mut context = DeviceContext {
        catalog,
        annotationless_pod_mode: policy,
        ..DeviceContext::default()
    };
    for (node, notes) in notes {
        if let Some(value) = &notes.vnpu_core {
            context
                .node_vnpu_core
                .insert(node.to_string(), value.clone());
        }
        for (gpu, profiles) in &notes.mig_profiles {
            context
                .mig_profiles
                .insert((node.to_string(), gpu.clone()), profiles.clone());
        }
    }
    context
}

/// As [`build_inventory`], with exporter identities applied to the devices they name.
pub fn build_identified_inventory<'a>(
    entries: impl Iterator<Item = &'a NodeEntry>,
    identities: &IdentityMap,
) -> Inventory {
    let mut records = Vec::new();
    let mut uids = HashMap::new();
    for entry in entries {
        uids.insert(entry.name.clone(), entry.uid.clone());
        let Some(record) = &entry.record else {
            continue;
        };
        let renamed =
            |d: &crate::device::Device| identities.get(&(d.node_name.clone(), d.alias_id.clone()));
        if identities.is_empty() || !record.devices.iter().any(|d| renamed(d).is_some()) {
            records.push(Arc::clone(record));
            continue;
        }
        let mut record = NodeRecord::clone(record);
        for device in &mut record.devices {
            if let Some((id, device_type)) = renamed(device) {
                device.id.clone_from(id);
                if !device_type.is_empty() {
                    device.device_type.clone_from(device_type);
                }
            }
        }
        records.push(Arc::new(record));
    }
    Inventory::build(records, uids)
}

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
    dirty: bool,
    publish_scheduled: bool,
    health: WatchHealth,
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
            dirty: false,
            publish_scheduled: false,
            health: WatchHealth::new(SOURCE, board, metrics),
        }
    }

    /// How annotation-less Ascend pods on `hami-vnpu-core=true` nodes are read
    /// (`ascend.annotationless_pod_mode`).
    pub fn with_annotationless_pod_mode(mut self, policy: AnnotationlessPodMode) -> Self {
        self.decode_context.annotationless_pod_mode = policy;
        self
    }

    fn publish(&mut self) {
        self.publish_scheduled = false;
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let context = device_context(
            self.decode_context.catalog.clone(),
            self.decode_context.annotationless_pod_mode,
            self.kept.values().map(|k| (k.name.as_str(), &k.notes)),
        );
        let inventory = Arc::new(build_inventory_with(
            self.store.values(),
            &self.identities,
            Arc::new(context),
        ));
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

    fn schedule_publish(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        if !self.publish_scheduled {
            self.publish_scheduled = true;
            ctx.run_later(PUBLISH_DELAY, |act, _| act.publish());
        }
    }

    fn decode(&mut self, node: &Node) -> (String, Option<NodeEntry>) {
        let (entry, errors) = node_entry_with(node, &self.selectors, &self.decode_context);
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
                |object| self.decode(object),
                watch::object_key,
            );
        }
        self.store = store;
        self.schedule_publish(ctx);
    }
}

impl Actor for NodeCache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(events) = self.events.take() {
            ctx.add_stream(events);
        }
    }
}

impl StreamHandler<WatchItem<Node>> for NodeCache {
    fn handle(&mut self, item: WatchItem<Node>, ctx: &mut Context<Self>) {
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
        let deleted = match &event {
            Event::Delete(node) => Some(watch::object_key(node)),
            _ => None,
        };
        // Taken out for the call so the decoder may borrow the rest of `self`.
        let mut store = std::mem::take(&mut self.store);
        let change = store.apply(event, |object| self.decode(object), watch::object_key);
        self.store = store;
        if let Some(key) = deleted {
            self.kept.remove(&key);
        }
        match change {
            StoreChange::Changed => self.schedule_publish(ctx),
            StoreChange::RelistDone => {
                self.relisting = false;
                let store = &self.store;
                self.kept.retain(|key, _| store.get(key).is_some());
                if std::mem::take(&mut self.redecode_after_relist) {
                    self.redecode_all(ctx);
                }
                self.dirty = true;
                self.publish();
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
            self.schedule_publish(ctx);
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
