//! HAMi-DRA claims joined to pods and devices when a snapshot is built: a container's claim
//! (resolved from the pod's `spec.resourceClaims` when the pod was decoded) contributes one
//! [`DeviceAllocation`] per device share the claim was allocated, provided the claim is
//! reserved for that pod; each share counts in its device's usage once, however many pods
//! share the claim, and whether or not those pods still exist.
//!
//! Claims change independently of pods, so the join happens here and not when a pod is
//! decoded; only pods whose containers name a claim are rebuilt.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::inventory::Inventory;
use crate::cluster::scheduling::SchedulingPod;
use crate::cluster::snapshot::{ClusterSnapshot, PodRecord};
use crate::device::{AllocationFacts, DeviceAllocation, DraFacts, DraSource, Vendor};
use crate::vendor::dra::{driver_vendor, DraClaim, DraResult};
use crate::vendor::DecodeError;

/// One device share of one claim, for the device's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimShare {
    /// Flat index of the device in the inventory.
    pub device: usize,
    pub cores: i32,
    /// MiB.
    pub memory: i32,
}

/// The pods with their claims' shares attached, the shares for device usage, and the
/// results that name no known device.
#[derive(Debug, Default)]
pub struct ClaimJoin {
    pub pods: Vec<Arc<PodRecord>>,
    pub shares: Vec<ClaimShare>,
    pub problems: Vec<(Vendor, DecodeError)>,
}

/// The allocation a container holds for one claim result, and the device it is on.
fn allocation(
    inventory: &Inventory,
    claim: &DraClaim,
    result: &DraResult,
) -> (DeviceAllocation, Option<usize>) {
    let source = DraSource {
        driver: result.driver.clone(),
        pool: result.pool.clone(),
        device: result.device.clone(),
    };
    let flat = inventory.device_index_by_dra(&source);
    let device = flat.and_then(|f| inventory.device(f));
    let vendor = driver_vendor(&result.driver);
    let allocation = DeviceAllocation {
        // A device no slice publishes is still shown, by its DRA address.
        uuid: device.map_or_else(
            || format!("{}/{}", result.pool, result.device),
            |d| d.alias_id.clone(),
        ),
        alloc_type: vendor.map(|v| v.provider().to_string()).unwrap_or_default(),
        // No consumed capacity: the claim holds the whole device.
        usedmem: result
            .memory_mib
            .unwrap_or_else(|| device.map_or(0, |d| d.devmem)),
        usedcores: result
            .cores
            .unwrap_or_else(|| device.map_or(0, |d| d.devcore)),
        facts: AllocationFacts::Dra(DraFacts {
            claim: format!("{}/{}", claim.namespace, claim.name),
            share_id: result.share_id.clone(),
        }),
    };
    (allocation, flat)
}

/// [`ClusterSnapshot::build`] with HAMi-DRA claims: each claim's shares join the containers
/// of the pods it is reserved for, and count in their devices' usage once (however many
/// pods share the claim). Also returns what could not be joined (a result naming a device no
/// slice publishes).
pub fn snapshot_with_claims(
    generation: u64,
    inventory: Arc<Inventory>,
    pods: Vec<Arc<PodRecord>>,
    scheduling: Vec<Arc<SchedulingPod>>,
    claims: &[Arc<DraClaim>],
) -> (ClusterSnapshot, Vec<(Vendor, DecodeError)>) {
    let joined = attach_claims(&inventory, pods, claims);
    let mut snapshot = ClusterSnapshot::build(generation, inventory, joined.pods, scheduling);
    if !joined.shares.is_empty() {
        // Just built: the only reference, so nothing is copied.
        let usage = Arc::make_mut(&mut snapshot.usage);
        for share in &joined.shares {
            if let Some(slot) = usage.get_mut(share.device) {
                slot.vgpu_used = slot.vgpu_used.saturating_add(1);
                slot.core_used = slot.core_used.saturating_add(share.cores);
                slot.memory_used = slot.memory_used.saturating_add(share.memory);
            }
        }
    }
    (snapshot, joined.problems)
}

/// Joins `claims` to `pods` and to the inventory's DRA devices.
pub fn attach_claims(
    inventory: &Inventory,
    pods: Vec<Arc<PodRecord>>,
    claims: &[Arc<DraClaim>],
) -> ClaimJoin {
    if claims.is_empty() {
        return ClaimJoin {
            pods,
            ..ClaimJoin::default()
        };
    }
    let mut join = ClaimJoin::default();
    let mut by_name: HashMap<(&str, &str), &DraClaim> = HashMap::with_capacity(claims.len());
    for claim in claims {
        by_name.insert((claim.namespace.as_str(), claim.name.as_str()), claim);
        for result in &claim.results {
            let (allocation, flat) = allocation(inventory, claim, result);
            match flat {
                Some(device) => join.shares.push(ClaimShare {
                    device,
                    cores: allocation.usedcores,
                    memory: allocation.usedmem,
                }),
                None => join.problems.push((
                    driver_vendor(&result.driver).unwrap_or(Vendor::Nvidia),
                    DecodeError::UnknownDevice {
                        device: format!("{}/{}/{}", result.driver, result.pool, result.device),
                    },
                )),
            }
        }
    }
    join.pods = pods
        .into_iter()
        .map(|pod| {
            if pod.containers.iter().all(|c| c.claims.is_empty()) {
                return pod;
            }
            let mut joined = PodRecord::clone(&pod);
            for container in &mut joined.containers {
                for name in &container.claims {
                    let Some(claim) = by_name.get(&(pod.namespace.as_str(), name.as_str())) else {
                        continue;
                    };
                    if !claim.reserved_for_pod(&pod.name, &pod.uid) {
                        continue;
                    }
                    for result in &claim.results {
                        container
                            .allocations
                            .push(allocation(inventory, claim, result).0);
                    }
                }
            }
            Arc::new(joined)
        })
        .collect();
    join
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::inventory::NodeRecord;
    use crate::cluster::snapshot::{ContainerRecord, ContainerState};
    use crate::vendor::dra::ClaimConsumer;

    fn dra_device(uuid: &str, name: &str) -> crate::device::Device {
        crate::device::Device {
            devmem: 81920,
            devcore: 100,
            dra: Some(DraSource {
                driver: "hami-core-gpu.project-hami.io".into(),
                pool: "gpu-1".into(),
                device: name.into(),
            }),
            ..crate::cluster::snapshot::tests::device("gpu-1", uuid, uuid)
        }
    }

    fn inventory() -> Arc<Inventory> {
        let node = NodeRecord {
            uid: "uid-gpu-1".into(),
            name: "gpu-1".into(),
            devices: vec![
                dra_device("GPU-a", "hami-gpu-0"),
                dra_device("GPU-b", "hami-gpu-1"),
            ],
            ..crate::cluster::snapshot::tests::node_record("gpu-1")
        };
        Arc::new(Inventory::build(vec![Arc::new(node)], HashMap::new()))
    }

    fn pod(name: &str, uid: &str, claims: &[&str]) -> Arc<PodRecord> {
        Arc::new(PodRecord {
            uid: uid.into(),
            name: name.into(),
            namespace: "team".into(),
            node_name: "gpu-1".into(),
            create_time: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            containers: vec![ContainerRecord {
                name: "main".into(),
                image: String::new(),
                allocations: Vec::new(),
                priority: String::new(),
                state: ContainerState::Success,
                status: crate::cluster::scheduling::WorkloadStatus::Success,
                status_detail: Default::default(),
                claims: claims.iter().map(|c| c.to_string()).collect(),
            }],
        })
    }

    fn claim(
        name: &str,
        device: &str,
        share: Option<(i32, i32)>,
        pods: &[(&str, &str)],
    ) -> Arc<DraClaim> {
        Arc::new(DraClaim {
            namespace: "team".into(),
            name: name.into(),
            results: vec![DraResult {
                driver: "hami-core-gpu.project-hami.io".into(),
                pool: "gpu-1".into(),
                device: device.into(),
                share_id: if share.is_some() {
                    format!("share-{name}")
                } else {
                    String::new()
                },
                cores: share.map(|s| s.0),
                memory_mib: share.map(|s| s.1),
            }],
            reserved_for: pods
                .iter()
                .map(|(name, uid)| ClaimConsumer {
                    name: name.to_string(),
                    uid: uid.to_string(),
                })
                .collect(),
        })
    }

    #[test]
    fn a_shared_claim_shows_in_every_pod_and_counts_once() {
        let shared = claim(
            "shared",
            "hami-gpu-0",
            Some((30, 8192)),
            &[("a", "ua"), ("b", "ub")],
        );
        let pods = vec![pod("a", "ua", &["shared"]), pod("b", "ub", &["shared"])];
        let (snapshot, problems) =
            snapshot_with_claims(1, inventory(), pods, Vec::new(), &[shared]);
        assert!(problems.is_empty());
        for pod in snapshot.pods.iter() {
            let allocations = &pod.containers[0].allocations;
            assert_eq!(allocations.len(), 1, "{}", pod.name);
            assert_eq!(
                (
                    allocations[0].uuid.as_str(),
                    allocations[0].usedcores,
                    allocations[0].usedmem
                ),
                ("GPU-a", 30, 8192)
            );
        }
        let usage = snapshot.usage_of(0);
        assert_eq!(
            (usage.vgpu_used, usage.core_used, usage.memory_used),
            (1, 30, 8192)
        );
    }

    #[test]
    fn whole_devices_orphans_strangers_and_unknown_devices() {
        let whole = claim("whole", "hami-gpu-1", None, &[("gone", "u-gone")]);
        let unreserved = claim(
            "mine",
            "hami-gpu-0",
            Some((10, 1024)),
            &[("other", "u-other")],
        );
        let unknown = claim("lost", "hami-gpu-9", Some((10, 1024)), &[("c", "uc")]);
        let pods = vec![pod("c", "uc", &["mine", "lost"])];
        let (snapshot, problems) = snapshot_with_claims(
            1,
            inventory(),
            pods,
            Vec::new(),
            &[whole, unreserved, unknown],
        );
        // A claim for a deleted pod still holds its device; one reserved for another pod is
        // not this pod's.
        let b = snapshot.usage_of(1);
        assert_eq!((b.vgpu_used, b.core_used, b.memory_used), (1, 100, 81920));
        let a = snapshot.usage_of(0);
        assert_eq!(a.vgpu_used, 1);
        let allocations = &snapshot.pods[0].containers[0].allocations;
        let uuids: Vec<_> = allocations.iter().map(|a| a.uuid.as_str()).collect();
        assert_eq!(uuids, ["gpu-1/hami-gpu-9"]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].1.kind(), "unknown_device");
    }
}
