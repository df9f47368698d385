//! [`ClusterSnapshot`] and the plain data it is made of: the node [`Inventory`], the tracked
//! pods with their decoded allocations, and per-device usage.
//!
//! A snapshot is immutable and shared as `Arc`: the caches build a new one off to the side and
//! swap it in whole, so a reader (a handler, the refresher) keeps a consistent view for as
//! long as it holds it. Everything expensive (decoding, indexing, usage) is done here once per
//! change, never per request.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::cluster::allocation::allocation_cores;
pub use crate::cluster::inventory::{Inventory, NodeRecord};
use crate::cluster::scheduling::{SchedulingPod, StatusDetail, WorkloadStatus};
use crate::device::{AllocationFacts, DeviceAllocation};

/// Derived per-device usage: what the tracked pods' allocations hold on each device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceUsage {
    /// Number of allocations on this device.
    pub vgpu_used: i32,
    /// The compute the allocations hold, as the card replies show it: with HAMi's catalog
    /// the interpreted share of each slice (0 when unknown, as upstream), without one the
    /// figure decoded from the pod ([`allocation_cores`]).
    pub core_used: i32,
    /// MiB.
    pub memory_used: i32,
    /// Some allocation's compute share is not known (`coreUsedKnown: false`).
    pub cores_unknown: bool,
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
    pub status: WorkloadStatus,
    /// The evidence behind `status`; shared as in the scheduling view's requests.
    pub status_detail: Arc<StatusDetail>,
    /// Names of the ResourceClaims (in the pod's namespace) the container uses; their
    /// HAMi-DRA shares join `allocations` when the snapshot is built.
    pub claims: Vec<String>,
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
/// Complete when built: no reader fills anything in later.
#[derive(Debug, Default)]
pub struct ClusterSnapshot {
    /// Increases with every publication; equal generations mean identical content.
    pub generation: u64,
    /// When it was built (and, published right after, superseded the one before): how
    /// long a reply built from an older one has been out of date.
    pub published: Option<std::time::Instant>,
    pub inventory: Arc<Inventory>,
    /// Sorted by namespace, then name.
    pub pods: Arc<Vec<Arc<PodRecord>>>,
    /// Aligned with `inventory.devices`.
    pub usage: Arc<Vec<DeviceUsage>>,
    /// Every non-terminated pod asking for a configured GPU resource or carrying a HAMi
    /// assignment, bound or not; sorted by creation time, then namespace, name, UID.
    pub scheduling: Arc<Vec<Arc<SchedulingPod>>>,
}

impl ClusterSnapshot {
    /// The snapshot of an inventory, the placed pods and the scheduling views: sorted, and
    /// with per-device usage computed once here (a pass over ~40,000 allocations at 10,000
    /// GPUs), so that no request pays for it.
    pub fn build(
        generation: u64,
        inventory: Arc<Inventory>,
        mut pods: Vec<Arc<PodRecord>>,
        mut scheduling: Vec<Arc<SchedulingPod>>,
    ) -> Self {
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
            published: Some(std::time::Instant::now()),
            inventory,
            pods: Arc::new(pods),
            usage: Arc::new(usage),
            scheduling: Arc::new(scheduling),
        }
    }

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
    // DRA shares are counted per claim (`crate::cluster::claims`), not per pod sharing one.
    for allocation in allocations.filter(|a| !matches!(a.facts, AllocationFacts::Dra(_))) {
        if let Some(slot) = inventory
            .match_allocation(&allocation.uuid)
            .and_then(|flat| usage.get_mut(flat))
        {
            slot.vgpu_used = slot.vgpu_used.saturating_add(1);
            let (cores, known) = allocation_cores(inventory, allocation);
            slot.core_used = slot.core_used.saturating_add(cores);
            slot.cores_unknown |= !known;
            slot.memory_used = slot.memory_used.saturating_add(allocation.usedmem);
        }
    }
    usage
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::device::{Device, Vendor};

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
            cordoned: false,
            dra: None,
        }
    }

    fn node(name: &str, devices: Vec<Device>) -> Arc<NodeRecord> {
        Arc::new(NodeRecord {
            devices,
            ..node_record(name)
        })
    }

    pub(crate) fn node_record(name: &str) -> NodeRecord {
        NodeRecord {
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
            devices: Vec::new(),
        }
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
                status: WorkloadStatus::Waiting,
                status_detail: Default::default(),
                claims: Vec::new(),
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
                memory_used: 50,
                cores_unknown: false,
            }
        );
        assert_eq!(
            usage[1],
            DeviceUsage {
                vgpu_used: 1,
                core_used: 30,
                memory_used: 100,
                cores_unknown: false,
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
