//! The device inventory: every selected node with its decoded devices ([`NodeRecord`]),
//! indexed for the lookups handlers and the refresher make ([`Inventory`]), and the pure
//! functions the `NodeCache` builds it with — one node decoded per event ([`node_entry`]),
//! the whole rebuilt on publication ([`build_inventory`]) with the exporter identities the
//! refresher learnt ([`IdentityMap`]).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

use crate::catalog::DeviceCatalog;
use crate::config::NodeSelectors;
use crate::device::{AnnotationlessPodMode, Device, DeviceContext, DraSource, Vendor};
use crate::vendor::dra::DraSlice;
use crate::vendor::{
    cordoned_ids, decode_node_devices, DecodeError, NodeNotes, DEVICE_CORDON_ANNOTATION,
};

/// A node selected by some vendor's node selector (or carrying a vendor's devices), with the
/// fields the node list shows.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub uid: String,
    pub name: String,
    /// First `InternalIP` address, else empty.
    pub ip: String,
    pub is_schedulable: bool,
    pub is_ready: bool,
    pub os_image: String,
    pub kernel_version: String,
    pub container_runtime_version: String,
    pub kubelet_version: String,
    pub kube_proxy_version: String,
    pub operating_system: String,
    pub architecture: String,
    pub creation_timestamp: Option<Timestamp>,
    /// This node's devices, from every vendor whose decoder found some.
    pub devices: Vec<Device>,
}

/// All selected nodes and their devices, indexed for the lookups handlers and the refresher
/// make. Built whole by [`Inventory::build`]; never mutated afterwards.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Sorted by node name.
    pub nodes: Vec<Arc<NodeRecord>>,
    /// `(node index, device index within the node)`, in node order: the device order every
    /// per-device vector (such as usage) follows.
    pub devices: Vec<(usize, usize)>,
    node_by_uid: HashMap<String, usize>,
    node_by_name: HashMap<String, usize>,
    device_by_id: HashMap<String, usize>,
    device_by_alias: HashMap<String, usize>,
    /// DRA devices by their address in a ResourceSlice, which claims' results name.
    device_by_dra: HashMap<DraSource, usize>,
    /// Name → UID of every node in the cluster, selected or not: a pod's node UID comes from
    /// here (the Go backend fetched it from the API server once per container).
    node_uids: HashMap<String, String>,
    /// HAMi's device configuration and node facts allocations are interpreted against
    /// (set by the node cache after [`Inventory::build`]).
    pub context: Arc<crate::device::DeviceContext>,
}

impl Inventory {
    pub fn build(mut nodes: Vec<Arc<NodeRecord>>, node_uids: HashMap<String, String>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uid.cmp(&b.uid)));
        let mut inventory = Inventory {
            node_uids,
            ..Inventory::default()
        };
        for (n, node) in nodes.iter().enumerate() {
            inventory.node_by_uid.entry(node.uid.clone()).or_insert(n);
            inventory.node_by_name.entry(node.name.clone()).or_insert(n);
            for (d, device) in node.devices.iter().enumerate() {
                let flat = inventory.devices.len();
                inventory.devices.push((n, d));
                inventory
                    .device_by_id
                    .entry(device.id.clone())
                    .or_insert(flat);
                if let Some(source) = &device.dra {
                    inventory
                        .device_by_dra
                        .entry(source.clone())
                        .or_insert(flat);
                }
                // An empty alias would match every allocation (Go quirk); it matches none.
                if !device.alias_id.is_empty() {
                    inventory
                        .device_by_alias
                        .entry(device.alias_id.clone())
                        .or_insert(flat);
                }
            }
        }
        inventory.nodes = nodes;
        inventory
    }

    /// The device at a flat index of [`Inventory::devices`].
    pub fn device(&self, flat: usize) -> Option<&Device> {
        let (n, d) = *self.devices.get(flat)?;
        self.nodes.get(n)?.devices.get(d)
    }

    pub fn iter_devices(&self) -> impl Iterator<Item = &Device> + '_ {
        self.nodes.iter().flat_map(|n| n.devices.iter())
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    pub fn node_by_uid(&self, uid: &str) -> Option<&Arc<NodeRecord>> {
        self.nodes.get(*self.node_by_uid.get(uid)?)
    }

    pub fn node_by_name(&self, name: &str) -> Option<&Arc<NodeRecord>> {
        self.nodes.get(*self.node_by_name.get(name)?)
    }

    /// Flat index of the device with this id.
    pub fn device_index_by_id(&self, id: &str) -> Option<usize> {
        self.device_by_id.get(id).copied()
    }

    /// Flat index of the device whose alias equals `alias` exactly.
    pub fn device_index_by_alias(&self, alias: &str) -> Option<usize> {
        self.device_by_alias.get(alias).copied()
    }

    /// Flat index of the DRA device a claim's allocation result names.
    pub fn device_index_by_dra(&self, source: &DraSource) -> Option<usize> {
        self.device_by_dra.get(source).copied()
    }

    /// UID of any node of the cluster by name; empty when unknown.
    pub fn node_uid(&self, name: &str) -> &str {
        self.node_uids.get(name).map_or("", String::as_str)
    }

    /// The device an allocation uuid refers to. Go matched by prefix, so `node-dcu-1` also
    /// took `node-dcu-10`'s allocations; here the alias must equal the uuid, or be a prefix
    /// followed by a separator, a character that is neither letter nor digit (legacy MIG
    /// uuids `GPU-…[1-0]`). The longest such alias wins.
    pub fn match_allocation(&self, uuid: &str) -> Option<usize> {
        if let Some(flat) = self.device_index_by_alias(uuid) {
            return Some(flat);
        }
        uuid.char_indices()
            .rev()
            .filter(|(i, c)| *i > 0 && !c.is_alphanumeric())
            .find_map(|(i, _)| self.device_index_by_alias(&uuid[..i]))
    }
}

/// Exporter identities learnt by the refresher: `(node, alias id)` → `(id, device type)`.
/// The Go backend showed Ascend devices under their `vdie_id`, DCU under the exporter's
/// `device_id`, MLU and Metax full GPUs under the exporter's `uuid` and model; applying the
/// same ids here keeps the REST lists, `/metrics` labels and the frontend's PromQL in step.
pub type IdentityMap = HashMap<(String, String), (String, String)>;

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
/// devices. `context` is HAMi's device configuration (which Ascend words register devices).
pub fn node_entry(
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
        match decode_node_devices(vendor, node, context) {
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
    if let Some(cordon) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEVICE_CORDON_ANNOTATION))
    {
        let ids = cordoned_ids(cordon);
        for device in &mut devices {
            device.cordoned = ids.contains(device.id.as_str());
        }
    }
    let record = selected.then(|| Arc::new(node_record(node, name.clone(), uid.clone(), devices)));
    (NodeEntry { name, uid, record }, errors)
}

/// What the node list shows of a node, with these devices.
pub fn node_record(
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

/// The published inventory of the cache's entries: exporter identities applied to the
/// devices they name, and `context` (HAMi's catalog and node facts) carried for readers.
pub fn build_inventory<'a>(
    entries: impl Iterator<Item = &'a NodeEntry>,
    identities: &IdentityMap,
    context: Arc<DeviceContext>,
) -> Inventory {
    build_inventory_with_dra(entries, &[], |_| None, identities, context).0
}

/// [`build_inventory`] with the devices of HAMi-DRA ResourceSlices added to their nodes. A
/// node no vendor selector selected is listed when a slice gives it devices, its record
/// made by `unselected`; a slice for a node the cluster does not have is returned as a
/// problem (its devices have nowhere to be shown).
pub fn build_inventory_with_dra<'a>(
    entries: impl Iterator<Item = &'a NodeEntry>,
    slices: &[&DraSlice],
    unselected: impl Fn(&str) -> Option<NodeRecord>,
    identities: &IdentityMap,
    context: Arc<DeviceContext>,
) -> (Inventory, Vec<(Vendor, DecodeError)>) {
    let mut dra: HashMap<&str, Vec<&Device>> = HashMap::new();
    for slice in slices {
        dra.entry(slice.node.as_str())
            .or_default()
            .extend(slice.devices.iter());
    }
    let mut records = Vec::new();
    let mut uids = HashMap::new();
    for entry in entries {
        uids.insert(entry.name.clone(), entry.uid.clone());
        let extra = dra.remove(entry.name.as_str()).unwrap_or_default();
        let record = match &entry.record {
            Some(record) => Arc::clone(record),
            None if !extra.is_empty() => match unselected(&entry.name) {
                Some(record) => Arc::new(record),
                None => continue,
            },
            None => continue,
        };
        let renamed =
            |d: &crate::device::Device| identities.get(&(d.node_name.clone(), d.alias_id.clone()));
        let renames = !identities.is_empty() && record.devices.iter().any(|d| renamed(d).is_some());
        if !renames && extra.is_empty() {
            records.push(record);
            continue;
        }
        let mut record = NodeRecord::clone(&record);
        for device in &mut record.devices {
            if let Some((id, device_type)) = renamed(device) {
                device.id.clone_from(id);
                if !device_type.is_empty() {
                    device.device_type.clone_from(device_type);
                }
            }
        }
        record.devices.extend(extra.into_iter().map(|d| Device {
            node_uid: entry.uid.clone(),
            ..d.clone()
        }));
        records.push(Arc::new(record));
    }
    let problems = dra
        .into_iter()
        .flat_map(|(node, devices)| devices.first().map(|d| (node, d.vendor)))
        .map(|(node, vendor)| {
            let node = if node.is_empty() { "(none)" } else { node };
            (
                vendor,
                DecodeError::UnknownNode {
                    node: node.chars().take(64).collect(),
                },
            )
        })
        .collect();
    let mut inventory = Inventory::build(records, uids);
    inventory.context = context;
    (inventory, problems)
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
