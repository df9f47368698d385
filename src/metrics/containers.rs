//! The container families of a cycle: one label set per (container, device) allocation,
//! usage from the vGPU monitor's task series joined by pod, container and device.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{self, HashTable};

use crate::cluster::snapshot::{ClusterSnapshot, ContainerRecord, PodRecord};
use crate::device::{DeviceAllocation, Vendor};
use crate::query_client::Sample;

use super::builder::{Builder, LabelReuse};
use super::exposition::{self, Family};
use super::identity::DeviceIdentity;
use super::labels::LabelSet;
use super::queries::{self, CycleQuery};
use super::readings::round1;
use super::state::{samples, LabelOrder, LabelTables, LabelTablesView};
use super::{QueryResults, Source, CONTAINER_ALLOC_LABELS};

/// Label values a task query is keyed by (unused positions empty).
pub(super) type TaskKey<'a> = [&'a str; 5];

pub(super) fn task_key<'a>(parts: &[&'a str]) -> TaskKey<'a> {
    let mut key = [""; 5];
    for (slot, part) in key.iter_mut().zip(parts) {
        *slot = part;
    }
    key
}

/// Per-container usage samples of one task query, found by the label values it is grouped
/// by. The index holds positions in the answer rather than copies of the keys: at 10,000
/// GPUs a map keyed by five `&str` per sample took 5.8 MB per query at the cycle's peak
/// memory, the index of `u32` positions 0.3 MB.
pub(super) struct TaskReadings<'a> {
    samples: &'a [Sample],
    keys: &'a [&'static str],
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl<'a> TaskReadings<'a> {
    /// The readings of `query`'s answer, keyed by the values of `keys` (at most five); when
    /// two samples share a key the later one counts. `None` without an answer.
    pub(super) fn of(
        results: &'a QueryResults,
        query: CycleQuery,
        keys: &'a [&'static str],
    ) -> Option<Self> {
        let samples = samples(results, query)?;
        let hasher = foldhash::fast::RandomState::default();
        let mut index = HashTable::with_capacity(samples.len());
        let key_of = |i: u32| sample_key(keys, &samples[i as usize]);
        for (i, sample) in samples.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            let key = sample_key(keys, sample);
            let hash = hasher.hash_one(key);
            let slot = index.entry(hash, |&j| key_of(j) == key, |&j| hasher.hash_one(key_of(j)));
            match slot {
                hash_table::Entry::Occupied(mut seen) => *seen.get_mut() = i,
                hash_table::Entry::Vacant(free) => {
                    free.insert(i);
                }
            }
        }
        Some(TaskReadings {
            samples,
            keys,
            index,
            hasher,
        })
    }

    /// The value of the sample with these label values.
    pub(super) fn get(&self, key: &TaskKey<'_>) -> Option<f32> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| {
                sample_key(self.keys, &self.samples[i as usize]) == *key
            })
            .map(|&i| self.samples[i as usize].value as f32)
    }
}

/// A sample's values of `keys`, missing ones empty.
fn sample_key<'a>(keys: &[&str], sample: &'a Sample) -> TaskKey<'a> {
    let mut key = [""; 5];
    for (slot, k) in key.iter_mut().zip(keys) {
        *slot = sample.metric.get(k).unwrap_or("");
    }
    key
}

/// One container's allocations on one device: a row of the container families.
pub(super) struct ContainerEntry<'a> {
    pub(super) pod: &'a PodRecord,
    pub(super) container: &'a ContainerRecord,
    pub(super) flat: usize,
    pub(super) matched: Vec<&'a DeviceAllocation>,
    pub(super) labels: Arc<LabelSet>,
}

/// Emits the container families; returns the label sets of this cycle's entries (snapshot
/// order) and their order, for the next cycle to reuse.
pub(super) fn container_families(
    b: &mut Builder,
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
    identities: &[DeviceIdentity],
    card_core: &[Option<f32>],
    previous: &LabelTables,
) -> (Vec<Option<Arc<LabelSet>>>, LabelOrder) {
    use Family::*;
    let inventory = &snapshot.inventory;
    let nvidia_core = TaskReadings::of(
        results,
        CycleQuery::TaskCore(Vendor::Nvidia),
        &["device_uuid", "namespace", "pod", "container"],
    );
    let nvidia_mem = TaskReadings::of(
        results,
        CycleQuery::TaskMemory(Vendor::Nvidia),
        &["device_uuid", "namespace", "pod", "container"],
    );
    let mlu_core = TaskReadings::of(
        results,
        CycleQuery::TaskCore(Vendor::Mlu),
        &["namespace", "pod", "container"],
    );
    let mlu_mem = TaskReadings::of(
        results,
        CycleQuery::TaskMemory(Vendor::Mlu),
        &["namespace", "pod", "container"],
    );
    let dcu_core = TaskReadings::of(
        results,
        CycleQuery::TaskCore(Vendor::Dcu),
        &["pod_uuid", "container_name"],
    );
    let dcu_mem = TaskReadings::of(
        results,
        CycleQuery::TaskMemory(Vendor::Dcu),
        &["pod_uuid", "container_name"],
    );
    let metax_keys = [
        "Hostname",
        "deviceId",
        "exported_namespace",
        "exported_pod",
        "exported_container",
    ];
    let sgpu_core = TaskReadings::of(results, CycleQuery::TaskCore(Vendor::Metax), &metax_keys);
    let sgpu_mem = TaskReadings::of(results, CycleQuery::TaskMemory(Vendor::Metax), &metax_keys);
    let hcu_keys = [
        "device_id",
        "hcu_pod_namespace",
        "hcu_pod_name",
        "container",
    ];
    let hcu_core = TaskReadings::of(results, CycleQuery::TaskCore(Vendor::Hcu), &hcu_keys);
    let hcu_mem = TaskReadings::of(results, CycleQuery::TaskMemory(Vendor::Hcu), &hcu_keys);

    // Entries first (snapshot order), then emitted in label order.
    let mut reuse = LabelReuse::new(&previous.containers);
    let mut entries: Vec<ContainerEntry<'_>> = Vec::new();
    let mut pod_uuid = String::new();
    for pod in snapshot.pods.iter() {
        for container in &pod.containers {
            if container.allocations.is_empty() {
                continue;
            }
            if container.allocations.first().map(|a| a.alloc_type.as_str()) == Some("Metax-GPU") {
                metax_gpu_container(b, pod, container, results, identities, card_core);
                continue;
            }
            // Allocations grouped by the device they match, in first-match order.
            let mut by_device: Vec<(usize, Vec<&DeviceAllocation>)> = Vec::new();
            for allocation in &container.allocations {
                let Some(flat) = inventory.match_allocation(&allocation.uuid) else {
                    continue;
                };
                match by_device.iter_mut().find(|(f, _)| *f == flat) {
                    Some((_, list)) => list.push(allocation),
                    None => by_device.push((flat, vec![allocation])),
                }
            }
            for (flat, matched) in by_device {
                let (Some(device), Some(identity), Some(last)) =
                    (inventory.device(flat), identities.get(flat), matched.last())
                else {
                    continue;
                };
                let t = last.alloc_type.as_str();
                if t.is_empty() || t == "Metax-GPU" {
                    continue;
                }
                pod_uuid.clear();
                pod_uuid.push_str(&container.name);
                pod_uuid.push(':');
                pod_uuid.push_str(&pod.uid);
                let values = [
                    device.node_name.as_str(),
                    t,
                    identity.device_type.as_str(),
                    identity.uuid.as_str(),
                    pod.name.as_str(),
                    container.name.as_str(),
                    pod.namespace.as_str(),
                    pod_uuid.as_str(),
                ];
                let labels = reuse.get(entries.len(), CONTAINER_ALLOC_LABELS, &values);
                entries.push(ContainerEntry {
                    pod,
                    container,
                    flat,
                    matched,
                    labels,
                });
            }
        }
    }
    let sets: Vec<Option<Arc<LabelSet>>> = entries
        .iter()
        .map(|e| Some(Arc::clone(&e.labels)))
        .collect();
    // By the usage labels (a prefix of the allocation labels), earliest first among equals:
    // the order, and the duplicate kept, of each family's series. Usage labels that differ
    // make the allocation labels differ too, so both kinds of family come out in order.
    let order = LabelOrder::of(
        &sets,
        exposition::CONTAINER_USAGE_LABELS.len(),
        &LabelTablesView {
            sets: &previous.containers,
            order: &previous.containers_order,
        },
    );

    b.in_label_order = order.distinct;
    for entry in order.positions.iter().filter_map(|&i| entries.get(i)) {
        let ContainerEntry {
            pod,
            container,
            flat,
            ref matched,
            ref labels,
        } = *entry;
        let (Some(device), Some(identity), Some(last)) =
            (inventory.device(flat), identities.get(flat), matched.last())
        else {
            continue;
        };
        let t = last.alloc_type.as_str();
        let cores: i32 = matched
            .iter()
            .fold(0i32, |acc, a| acc.saturating_add(a.usedcores));
        let mem: i32 = matched
            .iter()
            .fold(0i32, |acc, a| acc.saturating_add(a.usedmem));
        let inv = Source::Inventory;
        b.set(ContainerVgpuAllocated, inv, labels, matched.len() as f64);
        b.set(ContainerVmemoryAllocated, inv, labels, f64::from(mem));
        b.set(ContainerVcoreAllocated, inv, labels, f64::from(cores));
        b.set(ContainerVcoreAllocationKnown, inv, labels, 1.0);

        let Some(vendor) = queries::task_vendor(t) else {
            continue;
        };
        let (core_map, mem_map, key) = match vendor {
            Vendor::Nvidia => (
                &nvidia_core,
                &nvidia_mem,
                task_key(&[
                    identity.uuid.as_str(),
                    pod.namespace.as_str(),
                    pod.name.as_str(),
                    container.name.as_str(),
                ]),
            ),
            Vendor::Mlu => (
                &mlu_core,
                &mlu_mem,
                task_key(&[
                    pod.namespace.as_str(),
                    pod.name.as_str(),
                    container.name.as_str(),
                ]),
            ),
            Vendor::Dcu => (
                &dcu_core,
                &dcu_mem,
                task_key(&[pod.uid.as_str(), container.name.as_str()]),
            ),
            Vendor::Hcu => (
                &hcu_core,
                &hcu_mem,
                task_key(&[
                    identity.uuid.as_str(),
                    pod.namespace.as_str(),
                    pod.name.as_str(),
                    container.name.as_str(),
                ]),
            ),
            _ => (
                &sgpu_core,
                &sgpu_mem,
                task_key(&[
                    device.node_name.as_str(),
                    identity.index.as_str(),
                    pod.namespace.as_str(),
                    pod.name.as_str(),
                    container.name.as_str(),
                ]),
            ),
        };
        let core = cores as f32;
        // Go read a missing sample as 0; upstream 2.0's HCU path leaves it unset
        // (unknown), and so do we for HCU.
        let sample = |map: &TaskReadings<'_>| match map.get(&key) {
            Some(v) => Some(v),
            None if vendor == Vendor::Hcu => None,
            None => Some(0.0),
        };
        if let Some(v) = core_map.as_ref().and_then(sample) {
            let (mut used, mut util) = match vendor {
                Vendor::Mlu => (f64::from(v / 100.0 * core), f64::from(v)),
                // Busy percent of the vHCU: used = busy × allocated cores / 100.
                Vendor::Hcu => (f64::from(v / 100.0 * core), f64::from(v)),
                _ => (f64::from(v), round1(100.0 * v / core)),
            };
            // No card fallback for HCU (upstream 2.0).
            let card = card_core
                .get(flat)
                .copied()
                .flatten()
                .filter(|_| vendor != Vendor::Hcu);
            if let Some(card) = card {
                if used != 0.0 && card > 95.0 {
                    used = f64::from(card / 100.0 * core);
                    util = f64::from(card);
                }
            }
            let src = Source::Query(CycleQuery::TaskCore(vendor));
            b.set(ContainerCoreUsed, src, labels, used);
            b.set(ContainerCoreUtil, src, labels, util);
        }
        if let Some(v) = mem_map.as_ref().and_then(sample) {
            let bytes = match vendor {
                Vendor::Mlu => v / 100.0 * mem as f32 * 1024.0 * 1024.0,
                Vendor::Metax => v * 1024.0,
                _ => v,
            };
            let mib = bytes / 1024.0 / 1024.0;
            let src = Source::Query(CycleQuery::TaskMemory(vendor));
            b.set(ContainerMemoryUsed, src, labels, f64::from(mib));
            b.set(
                ContainerMemoryUtil,
                src,
                labels,
                round1(100.0 * mib / mem as f32),
            );
        }
    }
    b.in_label_order = false;
    (sets, order)
}

/// Metax full-GPU containers: the exporter's per-container memory series are paired with the
/// container's allocations by position, as the Go backend did (contract §4.2).
pub(super) fn metax_gpu_container(
    b: &mut Builder,
    pod: &PodRecord,
    container: &ContainerRecord,
    results: &QueryResults,
    identities: &[DeviceIdentity],
    card_core: &[Option<f32>],
) {
    use Family::*;
    let Some(memory) = samples(results, CycleQuery::MetaxGpuTaskMemory) else {
        return;
    };
    let label = |s: &'_ Sample, k: &str| s.metric.get(k).unwrap_or_default().to_string();
    let mut series: Vec<&Sample> = memory
        .iter()
        .filter(|s| {
            label(s, "exported_namespace") == pod.namespace
                && label(s, "exported_pod") == pod.name
                && label(s, "exported_container") == container.name
        })
        .collect();
    series.sort_by(|a, b| a.metric.cmp(&b.metric));
    let core_map = TaskReadings::of(
        results,
        CycleQuery::MetaxGpuTaskCore,
        &[
            "uuid",
            "exported_namespace",
            "exported_pod",
            "exported_container",
        ],
    );
    let first_cores = container.allocations.first().map_or(0, |a| a.usedcores) as f32;
    let src_mem = Source::Query(CycleQuery::MetaxGpuTaskMemory);
    for (s, allocation) in series.iter().zip(&container.allocations) {
        let uuid = label(s, "uuid");
        let pod_uuid = format!("{}:{}", container.name, pod.uid);
        let labels = Arc::new(LabelSet::new(
            CONTAINER_ALLOC_LABELS,
            &[
                label(s, "Hostname").as_str(),
                "Metax-GPU",
                label(s, "modelName").as_str(),
                uuid.as_str(),
                pod.name.as_str(),
                container.name.as_str(),
                pod.namespace.as_str(),
                pod_uuid.as_str(),
            ],
        ));
        b.set(ContainerVgpuAllocated, src_mem, &labels, 1.0);
        b.set(
            ContainerVmemoryAllocated,
            src_mem,
            &labels,
            f64::from(allocation.usedmem),
        );
        b.set(
            ContainerVcoreAllocated,
            src_mem,
            &labels,
            f64::from(allocation.usedcores),
        );
        b.set(ContainerVcoreAllocationKnown, src_mem, &labels, 1.0);
        let mib = s.value as f32 / 1024.0;
        b.set(ContainerMemoryUsed, src_mem, &labels, f64::from(mib));
        b.set(
            ContainerMemoryUtil,
            src_mem,
            &labels,
            round1(100.0 * mib / allocation.usedmem as f32),
        );
        if let Some(map) = &core_map {
            let key = task_key(&[
                uuid.as_str(),
                pod.namespace.as_str(),
                pod.name.as_str(),
                container.name.as_str(),
            ]);
            let v = map.get(&key).unwrap_or(0.0);
            // The Go backend divided by the first allocation's cores for every card (kept).
            let mut used = f64::from(v);
            let mut util = round1(100.0 * v / first_cores);
            let card = identities
                .iter()
                .position(|i| i.uuid == uuid)
                .and_then(|flat| card_core.get(flat).copied().flatten());
            if let Some(card) = card {
                if used != 0.0 && card > 95.0 {
                    used = f64::from(card / 100.0 * allocation.usedcores as f32);
                    util = f64::from(card);
                }
            }
            let src = Source::Query(CycleQuery::MetaxGpuTaskCore);
            b.set(ContainerCoreUsed, src, &labels, used);
            b.set(ContainerCoreUtil, src, &labels, util);
        }
    }
}
