//! [`ClusterSnapshot`] and the plain data it is made of: the node inventory with its indexes,
//! the tracked pods with their decoded allocations, and per-device usage.
//!
//! A snapshot is immutable and shared as `Arc`: the caches build a new one off to the side and
//! swap it in whole, so a reader (a handler, the refresher) keeps a consistent view for as
//! long as it holds it. Everything expensive (decoding, indexing, usage) is done here once per
//! change, never per request.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::cluster::scheduling::{SchedulingPod, StatusDetail};
use crate::device::{Device, DeviceAllocation};

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

/// Derived per-device usage: what the tracked pods' allocations hold on each device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceUsage {
    /// Number of allocations on this device.
    pub vgpu_used: i32,
    pub core_used: i32,
    /// MiB.
    pub memory_used: i32,
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

/// A container's state as the Go backend derived it from `status.containerStatuses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Pod `Running` and the container ready.
    Success,
    /// Pod `Failed` (such pods are dropped, so practically never seen).
    Failed,
    /// Any other case with a status entry.
    Unknown,
    /// No status entry yet (e.g. still pending): rendered `""`.
    NoStatus,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::NoStatus => "",
        }
    }
}

/// One regular container of a tracked pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub allocations: Vec<DeviceAllocation>,
    /// `nvidia.com/priority` for NVIDIA/DCU allocations, else empty.
    pub priority: String,
    pub state: ContainerState,
    /// Upstream 2.0's state of the container (`crate::cluster::scheduling::status`), shown by
    /// `/v1/workloads`; `state` keeps the 1.x vocabulary of `/v1/containers`.
    pub status: &'static str,
    /// The evidence behind `status`.
    pub status_detail: StatusDetail,
}

/// A pod carrying `hami.io/vgpu-node` and not terminated: what the caches keep of it (the
/// whole `Pod` is not stored; pods are the largest stream at scale).
#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// `spec.nodeName`.
    pub node_name: String,
    /// `lastTransitionTime` of `PodScheduled`, else when we first decoded the pod.
    pub create_time: Timestamp,
    pub containers: Vec<ContainerRecord>,
}

impl PodRecord {
    /// Containers with at least one decoded allocation.
    pub fn allocated_containers(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| !c.allocations.is_empty())
            .count()
    }
}

/// What every reader asks for: inventory, pods and usage from one consistent moment.
#[derive(Debug, Default)]
pub struct ClusterSnapshot {
    /// Increases with every publication; equal generations mean identical content.
    pub generation: u64,
    pub inventory: Arc<Inventory>,
    /// Sorted by namespace, then name.
    pub pods: Arc<Vec<Arc<PodRecord>>>,
    /// Aligned with `inventory.devices`.
    pub usage: Arc<Vec<DeviceUsage>>,
    /// Every non-terminated pod asking for a configured GPU resource or carrying a HAMi
    /// assignment, bound or not; sorted by creation time, then namespace, name, UID.
    pub scheduling: Arc<Vec<Arc<SchedulingPod>>>,
    /// Per-device compute in use as the card replies show it, made by the first reply that
    /// needs it ([`crate::reply::allocation::device_core_usage`]) and kept for the
    /// snapshot's life: a pass over ~40,000 allocations was a third of a 10,000-GPU card
    /// list's build, and `GET /v1/gpu` paid it for one card.
    pub core_usage: std::sync::OnceLock<Vec<crate::reply::allocation::CoreUsage>>,
}

impl ClusterSnapshot {
    /// Usage of the device at a flat index; zero for unknown indexes.
    pub fn usage_of(&self, flat: usize) -> DeviceUsage {
        self.usage.get(flat).copied().unwrap_or_default()
    }
}

/// Per-device usage, one pass over every allocation with an index lookup each:
/// O(allocations × uuid length), not O(devices × containers).
pub fn compute_usage(inventory: &Inventory, pods: &[Arc<PodRecord>]) -> Vec<DeviceUsage> {
    let mut usage = vec![DeviceUsage::default(); inventory.device_count()];
    let allocations = pods
        .iter()
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.allocations.iter());
    for allocation in allocations {
        if let Some(slot) = inventory
            .match_allocation(&allocation.uuid)
            .and_then(|flat| usage.get_mut(flat))
        {
            slot.vgpu_used = slot.vgpu_used.saturating_add(1);
            // With HAMi's catalog, the interpreted share (template slices), as the card list
            // shows it; without one that is the decoded figure, read directly.
            let cores = if inventory.context.catalog.is_some() {
                crate::reply::allocation::allocation_cores(inventory, allocation).0
            } else {
                allocation.usedcores
            };
            slot.core_used = slot.core_used.saturating_add(cores);
            slot.memory_used = slot.memory_used.saturating_add(allocation.usedmem);
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Vendor;

    pub(crate) fn device(node: &str, id: &str, alias: &str) -> Device {
        Device {
            id: id.into(),
            alias_id: alias.into(),
            node_name: node.into(),
            node_uid: format!("uid-{node}"),
            device_type: "T".into(),
            count: 10,
            devmem: 1000,
            devcore: 100,
            health: true,
            mode: "hami-core".into(),
            vendor: Vendor::Dcu,
            index: 0,
            numa: 0,
            driver: String::new(),
        }
    }

    fn node(name: &str, devices: Vec<Device>) -> Arc<NodeRecord> {
        Arc::new(NodeRecord {
            uid: format!("uid-{name}"),
            name: name.into(),
            ip: String::new(),
            is_schedulable: true,
            is_ready: true,
            os_image: String::new(),
            kernel_version: String::new(),
            container_runtime_version: String::new(),
            kubelet_version: String::new(),
            kube_proxy_version: String::new(),
            operating_system: String::new(),
            architecture: String::new(),
            creation_timestamp: None,
            devices,
        })
    }

    fn pod(uuids: &[(&str, i32, i32)]) -> Arc<PodRecord> {
        Arc::new(PodRecord {
            uid: "p".into(),
            name: "p".into(),
            namespace: "ns".into(),
            node_name: "n".into(),
            create_time: Timestamp::UNIX_EPOCH,
            containers: vec![ContainerRecord {
                name: "c".into(),
                image: "i".into(),
                allocations: uuids
                    .iter()
                    .map(|(u, mem, cores)| DeviceAllocation {
                        uuid: u.to_string(),
                        alloc_type: "DCU".into(),
                        usedmem: *mem,
                        usedcores: *cores,
                        ..DeviceAllocation::default()
                    })
                    .collect(),
                priority: String::new(),
                state: ContainerState::NoStatus,
                status: crate::cluster::scheduling::status::WAITING,
                status_detail: StatusDetail::default(),
            }],
        })
    }

    #[test]
    fn alias_prefixes_do_not_leak_between_numbered_devices() {
        let inventory = Inventory::build(
            vec![node(
                "n",
                vec![device("n", "d1", "n-dcu-1"), device("n", "d10", "n-dcu-10")],
            )],
            HashMap::new(),
        );
        let usage = compute_usage(
            &inventory,
            &[pod(&[("n-dcu-10", 100, 30), ("n-dcu-1", 50, 20)])],
        );
        assert_eq!(
            usage[0],
            DeviceUsage {
                vgpu_used: 1,
                core_used: 20,
                memory_used: 50
            }
        );
        assert_eq!(
            usage[1],
            DeviceUsage {
                vgpu_used: 1,
                core_used: 30,
                memory_used: 100
            }
        );
    }

    #[test]
    fn legacy_mig_uuid_matches_its_gpu() {
        let inventory = Inventory::build(
            vec![node("n", vec![device("n", "GPU-a", "GPU-a")])],
            HashMap::new(),
        );
        assert_eq!(inventory.match_allocation("GPU-a[1-0]"), Some(0));
        assert_eq!(inventory.match_allocation("GPU-ab"), None);
    }

    #[test]
    fn empty_alias_matches_nothing() {
        let inventory =
            Inventory::build(vec![node("n", vec![device("n", "x", "")])], HashMap::new());
        let usage = compute_usage(&inventory, &[pod(&[("anything", 1, 1)])]);
        assert_eq!(usage[0], DeviceUsage::default());
    }

    #[test]
    fn indexes_find_nodes_and_devices() {
        let inventory = Inventory::build(
            vec![
                node("b", vec![device("b", "d2", "a2")]),
                node("a", vec![device("a", "d1", "a1")]),
            ],
            HashMap::from([("other".to_string(), "uid-other".to_string())]),
        );
        assert_eq!(inventory.nodes[0].name, "a", "sorted by name");
        assert_eq!(
            inventory
                .device(inventory.device_index_by_id("d2").unwrap())
                .unwrap()
                .id,
            "d2"
        );
        assert_eq!(inventory.node_by_uid("uid-b").unwrap().name, "b");
        assert_eq!(inventory.node_uid("other"), "uid-other");
        assert_eq!(inventory.node_uid("nope"), "");
    }
}
