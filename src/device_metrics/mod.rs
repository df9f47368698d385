//! The device and container families of `/metrics`, computed once per refresh cycle from the
//! cycle's [`ClusterSnapshot`] and its batched query results (pure; the actor that runs the
//! cycle is `metrics_refresher`).
//!
//! A cycle produces a complete [`CycleState`] aside from the published one. Series are kept in
//! groups by (family, source query); when a query fails, the groups it feeds keep their
//! previous series for up to `exporter.stale_cycles` cycles (devices and containers that left
//! the cluster excepted), and every other group updates normally.

pub mod exposition;
pub mod queries;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::device::{Device, Vendor};
use crate::query_client::Sample;
use crate::snapshot::ClusterSnapshot;

pub use exposition::{Family, Point};
pub use queries::CycleQuery;

/// What fed a group of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Only the snapshot: always current.
    Inventory,
    Query(CycleQuery),
}

/// The outcome of each query of a cycle: its vector samples, or failure.
pub type QueryResults = HashMap<CycleQuery, Result<Vec<Sample>, ()>>;

/// `(driver_version, device_no)` per device uuid.
type InfoLabels = HashMap<String, (String, String)>;
/// Info labels per vendor, with the cycles since they were last refreshed.
type InfoCache = HashMap<Vendor, (InfoLabels, u32)>;

/// Series of one (family, source), and for how many cycles they have been carried over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesGroup {
    pub points: Vec<Point>,
    pub stale_for: u32,
}

/// Everything one published cycle holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleState {
    pub groups: BTreeMap<(Family, Source), SeriesGroup>,
    /// Last known `(driver_version, device_no)` per device uuid, with the cycles since the
    /// info query last succeeded for its vendor; keeps series identities stable when only
    /// the info query fails.
    info: InfoCache,
}

impl CycleState {
    pub fn series_count(&self) -> usize {
        self.groups.values().map(|g| g.points.len()).sum()
    }

    /// The exposition text of this state.
    pub fn render(&self) -> String {
        exposition::render(
            self.groups
                .iter()
                .map(|((family, _), group)| (*family, group.points.as_slice())),
        )
    }
}

/// How a device is known to its exporter and shown in labels.
#[derive(Debug, Clone, PartialEq)]
struct DeviceIdentity {
    /// The `device_uuid` label and the exporter join key.
    uuid: String,
    device_type: String,
    /// Metax `deviceId` (sGPU usage is keyed by it); the registered index otherwise.
    index: String,
    /// Whether an exporter identity series named this device.
    matched: bool,
}

/// Resolves exporter identities: Ascend `vdie_id` by array position on the node, DCU
/// `device_id` by minor number, MLU and Metax-GPU `uuid` by card index, as the Go backend did.
fn identities(snapshot: &ClusterSnapshot, results: &QueryResults) -> Vec<DeviceIdentity> {
    let rows = |vendor| -> &[Sample] {
        match results.get(&CycleQuery::Identity(vendor)) {
            Some(Ok(samples)) => samples,
            _ => &[],
        }
    };
    let label = |s: &Sample, k: &str| s.metric.get(k).cloned().unwrap_or_default();
    let index_by =
        |vendor, node_label: &str, key_label: &str| -> HashMap<(String, String), &Sample> {
            rows(vendor)
                .iter()
                .map(|s| ((label(s, node_label), label(s, key_label)), s))
                .collect()
        };
    let ascend = index_by(Vendor::Ascend, "node", "id");
    let dcu = index_by(Vendor::Dcu, "node", "minor_number");
    let mlu = index_by(Vendor::Mlu, "node", "mlu");
    let metax = index_by(Vendor::Metax, "Hostname", "deviceId");
    let metax_by_uuid: HashMap<String, &Sample> = rows(Vendor::Metax)
        .iter()
        .map(|s| (label(s, "uuid"), s))
        .collect();

    let mut positions: HashMap<(usize, &str), usize> = HashMap::new();
    let mut out = Vec::with_capacity(snapshot.inventory.device_count());
    for (flat, &(node_index, _)) in snapshot.inventory.devices.iter().enumerate() {
        let Some(device) = snapshot.inventory.device(flat) else {
            // Keeps identities aligned with the flat device index.
            out.push(DeviceIdentity {
                uuid: String::new(),
                device_type: String::new(),
                index: String::new(),
                matched: false,
            });
            continue;
        };
        let mut identity = DeviceIdentity {
            uuid: device.id.clone(),
            device_type: device.device_type.clone(),
            index: device.index.to_string(),
            matched: false,
        };
        let node = device.node_name.clone();
        let card = |marker: &str| {
            device
                .alias_id
                .rsplit_once(marker)
                .map(|(_, c)| c.to_string())
        };
        match device.vendor {
            Vendor::Ascend => {
                let position = positions
                    .entry((node_index, device.device_type.as_str()))
                    .or_insert(0);
                if let Some(s) = ascend.get(&(node, position.to_string())) {
                    identity.uuid = label(s, "vdie_id");
                    identity.matched = true;
                }
                *position += 1;
            }
            Vendor::Dcu => {
                if let Some(s) = card("-dcu-").and_then(|c| dcu.get(&(node, c))) {
                    identity.uuid = label(s, "device_id");
                    identity.matched = true;
                }
            }
            Vendor::Mlu => {
                if let Some(s) = card("-cambricon-mlu-").and_then(|c| mlu.get(&(node, c))) {
                    identity.uuid = label(s, "uuid");
                    identity.device_type = label(s, "model");
                    identity.matched = true;
                }
            }
            Vendor::Metax => {
                let found = card("-metax-")
                    .and_then(|c| metax.get(&(node, c)))
                    .or_else(|| metax_by_uuid.get(&device.id));
                if let Some(s) = found {
                    identity.uuid = label(s, "uuid");
                    identity.device_type = label(s, "modelName");
                    identity.index = label(s, "deviceId");
                    identity.matched = true;
                }
            }
            _ => {}
        }
        if identity.uuid.is_empty() {
            identity.uuid = device.id.clone();
        }
        out.push(identity);
    }
    out
}

/// The exporter identities of this cycle, for the node
/// cache (`(node, alias)` → `(id, device type)`); `None` when no identity query succeeded,
/// so a failing cycle does not erase what an earlier one learnt.
pub fn identity_overrides(
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
) -> Option<crate::node_cache::IdentityMap> {
    let any_ok = results
        .iter()
        .any(|(q, r)| matches!(q, CycleQuery::Identity(_)) && r.is_ok());
    if !any_ok {
        return None;
    }
    let mut map = crate::node_cache::IdentityMap::new();
    for (flat, identity) in identities(snapshot, results).into_iter().enumerate() {
        let Some(device) = snapshot.inventory.device(flat) else {
            continue;
        };
        // Every matched device, not only changed ones: once applied, the snapshot already
        // carries the exporter id, and the map must keep saying so.
        if identity.matched && !identity.uuid.is_empty() {
            map.insert(
                (device.node_name.clone(), device.alias_id.clone()),
                (identity.uuid, identity.device_type),
            );
        }
    }
    Some(map)
}

/// Device quantities of one vendor's device query: `(metric, id) → value` as float32, the
/// precision the Go backend worked in.
fn device_values(results: &QueryResults, vendor: Vendor) -> Option<HashMap<(String, String), f32>> {
    let samples = results.get(&CycleQuery::Device(vendor))?.as_ref().ok()?;
    let id_label = queries::identity_label(vendor)?;
    Some(
        samples
            .iter()
            .filter_map(|s| {
                let name = s.metric.get("__name__")?.clone();
                let id = s.metric.get(id_label)?.clone();
                Some(((name, id), s.value as f32))
            })
            .collect(),
    )
}

/// Round half away from zero to one decimal, as the Go backend's `round1`.
fn round1(x: f32) -> f64 {
    (f64::from(x) * 10.0).round() / 10.0
}

/// The vendor's physical quantities for one device, in the units the families use.
#[derive(Debug, Default, Clone, Copy)]
struct DeviceReadings {
    mem_used: f32,
    mem_total: f32,
    core: f32,
    temp: Option<f32>,
    mem_temp: Option<f32>,
    power: Option<f32>,
    fan: Option<f32>,
    xid: Option<f32>,
}

fn readings(vendor: Vendor, values: &HashMap<(String, String), f32>, id: &str) -> DeviceReadings {
    let get = |name: &str| values.get(&(name.to_string(), id.to_string())).copied();
    let v = |name: &str| get(name).unwrap_or(0.0);
    match vendor {
        Vendor::Nvidia => DeviceReadings {
            mem_used: v("DCGM_FI_DEV_FB_USED"),
            mem_total: match (get("DCGM_FI_DEV_FB_FREE"), get("DCGM_FI_DEV_FB_USED")) {
                (Some(free), Some(used)) => free + used,
                _ => 0.0,
            },
            core: v("DCGM_FI_DEV_GPU_UTIL"),
            temp: Some(v("DCGM_FI_DEV_GPU_TEMP")),
            mem_temp: Some(v("DCGM_FI_DEV_MEMORY_TEMP")),
            power: Some(v("DCGM_FI_DEV_POWER_USAGE")),
            fan: Some(v("DCGM_FI_DEV_FAN_SPEED")),
            xid: Some(v("DCGM_FI_DEV_XID_ERRORS")),
        },
        Vendor::Mlu => DeviceReadings {
            mem_used: v("mlu_memory_used") / 1024.0,
            mem_total: v("mlu_memory_total") / 1024.0,
            core: v("mlu_utilization"),
            temp: Some(v("mlu_temperature")),
            mem_temp: Some(v("mlu_memory_temperature")),
            power: Some(v("mlu_power_usage")),
            fan: Some(v("mlu_fan_speed")),
            xid: None,
        },
        Vendor::Ascend => DeviceReadings {
            mem_used: v("npu_chip_info_hbm_used_memory"),
            mem_total: v("npu_chip_info_hbm_total_memory"),
            core: v("npu_chip_info_utilization"),
            temp: Some(v("npu_chip_info_temperature")),
            // The Go backend reused the chip temperature query here.
            mem_temp: Some(v("npu_chip_info_temperature")),
            power: Some(v("npu_chip_info_power")),
            fan: None,
            xid: None,
        },
        Vendor::Dcu => DeviceReadings {
            mem_used: v("dcu_usedmemory_bytes") / 1024.0 / 1024.0,
            mem_total: v("dcu_memorycap_bytes") / 1024.0 / 1024.0,
            core: v("dcu_utilizationrate"),
            temp: Some(v("dcu_temp")),
            mem_temp: None,
            power: Some(v("dcu_power_usage")),
            fan: None,
            xid: None,
        },
        Vendor::Hcu => DeviceReadings {
            mem_used: v("hcu_usedmemory_bytes") / 1024.0 / 1024.0,
            mem_total: v("hcu_memorycap_bytes") / 1024.0 / 1024.0,
            core: v("hcu_utilizationrate"),
            temp: Some(v("hcu_temp")),
            mem_temp: Some(v("hcu_temp_mem")),
            power: Some(v("hcu_power_usage")),
            fan: None,
            xid: None,
        },
        Vendor::Metax => DeviceReadings {
            mem_used: v("mx_memory_used") / 1024.0,
            mem_total: v("mx_memory_total") / 1024.0,
            core: v("mx_gpu_usage"),
            temp: Some(v("mx_chip_hotspot_temp")),
            mem_temp: None,
            power: Some(v("mx_board_power") / 1000.0),
            fan: None,
            xid: None,
        },
        _ => DeviceReadings::default(),
    }
}

/// `(driver_version, device_no)` per device uuid from a vendor's info query.
fn info_labels(vendor: Vendor, samples: &[Sample]) -> HashMap<String, (String, String)> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.metric.cmp(&b.metric));
    let mut out = HashMap::new();
    for s in sorted {
        let get = |k: &str| s.metric.get(k).cloned().unwrap_or_default();
        let (id, labels) = match vendor {
            Vendor::Nvidia => (get("UUID"), (get("DCGM_FI_DRIVER_VERSION"), get("device"))),
            Vendor::Mlu => (get("uuid"), (get("driver"), get("sn"))),
            Vendor::Ascend => (
                get("vdie_id"),
                ("暂无".to_string(), format!("ascend-{}", get("id"))),
            ),
            Vendor::Dcu => (
                get("device_id"),
                ("暂无".to_string(), format!("dcu-{}", get("minor_number"))),
            ),
            Vendor::Metax => (get("uuid"), (get("driver_version"), get("deviceId"))),
            // hcu-exporter's minor number is the displayed device number; it has no driver label.
            Vendor::Hcu => (get("device_id"), (String::new(), get("minor_number"))),
            _ => continue,
        };
        // The Go backend took the first series; sorted order makes "first" deterministic.
        out.entry(id).or_insert(labels);
    }
    out
}

/// Accumulates the points of one cycle.
#[derive(Default)]
struct Builder {
    groups: BTreeMap<(Family, Source), Vec<Point>>,
}

impl Builder {
    fn set(&mut self, family: Family, source: Source, labels: &[String], value: f64) {
        self.groups
            .entry((family, source))
            .or_default()
            .push(Point {
                labels: labels.to_vec(),
                value,
            });
    }
}

/// Builds the next state. `previous` supplies carried-over groups for failed queries.
pub fn build_cycle(
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
    previous: &CycleState,
    stale_cycles: u32,
) -> CycleState {
    let identities = identities(snapshot, results);
    let inventory = &snapshot.inventory;
    let mut b = Builder::default();
    let mut next_info = HashMap::new();

    let vendors: BTreeSet<Vendor> = inventory.iter_devices().map(|d| d.vendor).collect();
    let device_values: HashMap<Vendor, HashMap<(String, String), f32>> = vendors
        .iter()
        .filter_map(|&v| device_values(results, v).map(|m| (v, m)))
        .collect();
    let mut infos: HashMap<Vendor, HashMap<String, (String, String)>> = HashMap::new();
    for &vendor in &vendors {
        match results.get(&CycleQuery::Info(vendor)) {
            Some(Ok(samples)) => {
                let labels = info_labels(vendor, samples);
                infos.insert(vendor, labels.clone());
                next_info.insert(vendor, (labels, 0));
            }
            Some(Err(())) => {
                if let Some((labels, age)) = previous.info.get(&vendor) {
                    if *age < stale_cycles {
                        infos.insert(vendor, labels.clone());
                        next_info.insert(vendor, (labels.clone(), age + 1));
                    }
                }
            }
            None => {}
        }
    }

    // Card utilisation per device, for the containers' >95 % override.
    let mut card_core: Vec<Option<f32>> = vec![None; identities.len()];
    let mut device_labels: Vec<Vec<String>> = Vec::with_capacity(identities.len());

    for (flat, identity) in identities.iter().enumerate() {
        let Some(device) = inventory.device(flat) else {
            device_labels.push(Vec::new());
            continue;
        };
        let (driver, number) = infos
            .get(&device.vendor)
            .and_then(|m| m.get(&identity.uuid))
            .cloned()
            .unwrap_or_default();
        let labels = vec![
            device.node_name.clone(),
            device.vendor.provider().to_string(),
            identity.device_type.clone(),
            identity.uuid.clone(),
            driver,
            number,
        ];
        device_families(
            &mut b,
            device,
            &labels,
            device_values.get(&device.vendor),
            identity,
            &mut card_core[flat],
        );
        device_labels.push(labels);
    }

    container_families(&mut b, snapshot, results, &identities, &card_core);

    merge(
        b,
        results,
        previous,
        stale_cycles,
        snapshot,
        &identities,
        next_info,
    )
}

fn device_families(
    b: &mut Builder,
    device: &Device,
    labels: &[String],
    values: Option<&HashMap<(String, String), f32>>,
    identity: &DeviceIdentity,
    card_core: &mut Option<f32>,
) {
    use Family::*;
    let inv = Source::Inventory;
    b.set(VgpuCount, inv, labels, f64::from(device.count));
    b.set(VmemorySize, inv, labels, f64::from(device.devmem));
    b.set(MemorySize, inv, labels, f64::from(device.devmem));
    b.set(VcoreSize, inv, labels, f64::from(device.devcore));
    b.set(
        VcoreScaling,
        inv,
        labels,
        f64::from(device.devcore as f32 / 100.0),
    );
    b.set(CoreSize, inv, labels, 100.0);
    let has_exporter = queries::identity_label(device.vendor).is_some();
    if device.vendor != Vendor::Nvidia {
        // Only DCGM reports XID errors; the Go backend set 0 for everyone else.
        b.set(DeviceHardwareHealth, inv, labels, 0.0);
    }
    let Some(values) = values.filter(|_| has_exporter) else {
        return;
    };
    let src = Source::Query(CycleQuery::Device(device.vendor));
    let r = readings(device.vendor, values, &identity.uuid);
    b.set(MemoryUsed, src, labels, f64::from(r.mem_used));
    b.set(
        MemoryUtil,
        src,
        labels,
        round1(100.0 * (r.mem_used / device.devmem as f32)),
    );
    if r.mem_total > 0.0 {
        b.set(
            VmemoryScaling,
            src,
            labels,
            round1(device.devmem as f32 / r.mem_total),
        );
    }
    for family in [CoreUsed, CoreUtil, CoreUsedAvg, CoreUtilAvg] {
        b.set(family, src, labels, f64::from(r.core));
    }
    *card_core = Some(r.core);
    let optional = [
        (DeviceTemperature, r.temp),
        (DeviceMemoryTemperature, r.mem_temp),
        (DevicePower, r.power),
    ];
    for (family, value) in optional {
        if let Some(value) = value {
            b.set(family, src, labels, f64::from(value));
        }
    }
    if let Some(fan) = r.fan {
        let family = if device.vendor == Vendor::Mlu {
            DeviceFanSpeedR
        } else {
            DeviceFanSpeedP
        };
        b.set(family, src, labels, f64::from(fan));
    }
    if let Some(xid) = r.xid {
        b.set(DeviceHardwareHealth, src, labels, f64::from(xid));
        b.set(DeviceLastXidErrorCode, src, labels, f64::from(xid));
    }
}

/// Per-container usage samples of one task query, keyed by the label values it is grouped by.
fn task_map(
    results: &QueryResults,
    query: CycleQuery,
    keys: &[&str],
) -> Option<HashMap<Vec<String>, f32>> {
    let samples = results.get(&query)?.as_ref().ok()?;
    Some(
        samples
            .iter()
            .map(|s| {
                let key = keys
                    .iter()
                    .map(|k| s.metric.get(*k).cloned().unwrap_or_default())
                    .collect();
                (key, s.value as f32)
            })
            .collect(),
    )
}

fn container_families(
    b: &mut Builder,
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
    identities: &[DeviceIdentity],
    card_core: &[Option<f32>],
) {
    use Family::*;
    let inventory = &snapshot.inventory;
    let nvidia_core = task_map(
        results,
        CycleQuery::TaskCore(Vendor::Nvidia),
        &["device_uuid", "namespace", "pod", "container"],
    );
    let nvidia_mem = task_map(
        results,
        CycleQuery::TaskMemory(Vendor::Nvidia),
        &["device_uuid", "namespace", "pod", "container"],
    );
    let mlu_core = task_map(
        results,
        CycleQuery::TaskCore(Vendor::Mlu),
        &["namespace", "pod", "container"],
    );
    let mlu_mem = task_map(
        results,
        CycleQuery::TaskMemory(Vendor::Mlu),
        &["namespace", "pod", "container"],
    );
    let dcu_core = task_map(
        results,
        CycleQuery::TaskCore(Vendor::Dcu),
        &["pod_uuid", "container_name"],
    );
    let dcu_mem = task_map(
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
    let sgpu_core = task_map(results, CycleQuery::TaskCore(Vendor::Metax), &metax_keys);
    let sgpu_mem = task_map(results, CycleQuery::TaskMemory(Vendor::Metax), &metax_keys);
    let hcu_keys = [
        "device_id",
        "hcu_pod_namespace",
        "hcu_pod_name",
        "container",
    ];
    let hcu_core = task_map(results, CycleQuery::TaskCore(Vendor::Hcu), &hcu_keys);
    let hcu_mem = task_map(results, CycleQuery::TaskMemory(Vendor::Hcu), &hcu_keys);

    for pod in snapshot.pods.iter() {
        for container in &pod.containers {
            if container.allocations.is_empty() {
                continue;
            }
            if container.allocations.first().map(|a| a.alloc_type.as_str()) == Some("Metax-GPU") {
                metax_gpu_container(b, pod, container, results, inventory, identities, card_core);
                continue;
            }
            // Allocations grouped by the device they match, in first-match order.
            let mut by_device: Vec<(usize, Vec<&crate::device::DeviceAllocation>)> = Vec::new();
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
                let cores: i32 = matched
                    .iter()
                    .fold(0i32, |acc, a| acc.saturating_add(a.usedcores));
                let mem: i32 = matched
                    .iter()
                    .fold(0i32, |acc, a| acc.saturating_add(a.usedmem));
                let usage_labels = vec![
                    device.node_name.clone(),
                    t.to_string(),
                    identity.device_type.clone(),
                    identity.uuid.clone(),
                    pod.name.clone(),
                    container.name.clone(),
                    pod.namespace.clone(),
                ];
                let mut alloc_labels = usage_labels.clone();
                alloc_labels.push(format!("{}:{}", container.name, pod.uid));
                let inv = Source::Inventory;
                b.set(
                    ContainerVgpuAllocated,
                    inv,
                    &alloc_labels,
                    matched.len() as f64,
                );
                b.set(
                    ContainerVmemoryAllocated,
                    inv,
                    &alloc_labels,
                    f64::from(mem),
                );
                b.set(
                    ContainerVcoreAllocated,
                    inv,
                    &alloc_labels,
                    f64::from(cores),
                );
                b.set(ContainerVcoreAllocationKnown, inv, &alloc_labels, 1.0);

                let Some(vendor) = queries::task_vendor(t) else {
                    continue;
                };
                let (core_map, mem_map, key) = match vendor {
                    Vendor::Nvidia => (
                        &nvidia_core,
                        &nvidia_mem,
                        vec![
                            identity.uuid.clone(),
                            pod.namespace.clone(),
                            pod.name.clone(),
                            container.name.clone(),
                        ],
                    ),
                    Vendor::Mlu => (
                        &mlu_core,
                        &mlu_mem,
                        vec![
                            pod.namespace.clone(),
                            pod.name.clone(),
                            container.name.clone(),
                        ],
                    ),
                    Vendor::Dcu => (
                        &dcu_core,
                        &dcu_mem,
                        vec![pod.uid.clone(), container.name.clone()],
                    ),
                    Vendor::Hcu => (
                        &hcu_core,
                        &hcu_mem,
                        vec![
                            identity.uuid.clone(),
                            pod.namespace.clone(),
                            pod.name.clone(),
                            container.name.clone(),
                        ],
                    ),
                    _ => (
                        &sgpu_core,
                        &sgpu_mem,
                        vec![
                            device.node_name.clone(),
                            identity.index.clone(),
                            pod.namespace.clone(),
                            pod.name.clone(),
                            container.name.clone(),
                        ],
                    ),
                };
                let core = cores as f32;
                // Go read a missing sample as 0; upstream 2.0's HCU path leaves it unset
                // (unknown), and so do we for HCU.
                let sample = |map: &HashMap<Vec<String>, f32>| match map.get(&key) {
                    Some(v) => Some(*v),
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
                    b.set(ContainerCoreUsed, src, &usage_labels, used);
                    b.set(ContainerCoreUtil, src, &usage_labels, util);
                }
                if let Some(v) = mem_map.as_ref().and_then(sample) {
                    let bytes = match vendor {
                        Vendor::Mlu => v / 100.0 * mem as f32 * 1024.0 * 1024.0,
                        Vendor::Metax => v * 1024.0,
                        _ => v,
                    };
                    let mib = bytes / 1024.0 / 1024.0;
                    let src = Source::Query(CycleQuery::TaskMemory(vendor));
                    b.set(ContainerMemoryUsed, src, &usage_labels, f64::from(mib));
                    b.set(
                        ContainerMemoryUtil,
                        src,
                        &usage_labels,
                        round1(100.0 * mib / mem as f32),
                    );
                }
            }
        }
    }
}

/// Metax full-GPU containers: the exporter's per-container memory series are paired with the
/// container's allocations by position, as the Go backend did (contract §4.2).
fn metax_gpu_container(
    b: &mut Builder,
    pod: &crate::snapshot::PodRecord,
    container: &crate::snapshot::ContainerRecord,
    results: &QueryResults,
    inventory: &crate::snapshot::Inventory,
    identities: &[DeviceIdentity],
    card_core: &[Option<f32>],
) {
    use Family::*;
    let Some(Ok(memory)) = results.get(&CycleQuery::MetaxGpuTaskMemory) else {
        return;
    };
    let label = |s: &Sample, k: &str| s.metric.get(k).cloned().unwrap_or_default();
    let mut series: Vec<&Sample> = memory
        .iter()
        .filter(|s| {
            label(s, "exported_namespace") == pod.namespace
                && label(s, "exported_pod") == pod.name
                && label(s, "exported_container") == container.name
        })
        .collect();
    series.sort_by(|a, b| a.metric.cmp(&b.metric));
    let core_map = task_map(
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
        let usage_labels = vec![
            label(s, "Hostname"),
            "Metax-GPU".to_string(),
            label(s, "modelName"),
            uuid.clone(),
            pod.name.clone(),
            container.name.clone(),
            pod.namespace.clone(),
        ];
        let mut alloc_labels = usage_labels.clone();
        alloc_labels.push(format!("{}:{}", container.name, pod.uid));
        b.set(ContainerVgpuAllocated, src_mem, &alloc_labels, 1.0);
        b.set(
            ContainerVmemoryAllocated,
            src_mem,
            &alloc_labels,
            f64::from(allocation.usedmem),
        );
        b.set(
            ContainerVcoreAllocated,
            src_mem,
            &alloc_labels,
            f64::from(allocation.usedcores),
        );
        b.set(ContainerVcoreAllocationKnown, src_mem, &alloc_labels, 1.0);
        let mib = s.value as f32 / 1024.0;
        b.set(ContainerMemoryUsed, src_mem, &usage_labels, f64::from(mib));
        b.set(
            ContainerMemoryUtil,
            src_mem,
            &usage_labels,
            round1(100.0 * mib / allocation.usedmem as f32),
        );
        if let Some(map) = &core_map {
            let key = vec![
                uuid.clone(),
                pod.namespace.clone(),
                pod.name.clone(),
                container.name.clone(),
            ];
            let v = map.get(&key).copied().unwrap_or(0.0);
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
            b.set(ContainerCoreUsed, src, &usage_labels, used);
            b.set(ContainerCoreUtil, src, &usage_labels, util);
        }
    }
    let _ = inventory;
}

/// Combines this cycle's fresh groups with carried-over ones for failed queries.
fn merge(
    b: Builder,
    results: &QueryResults,
    previous: &CycleState,
    stale_cycles: u32,
    snapshot: &ClusterSnapshot,
    identities: &[DeviceIdentity],
    info: InfoCache,
) -> CycleState {
    let mut groups: BTreeMap<(Family, Source), SeriesGroup> = b
        .groups
        .into_iter()
        .map(|(key, points)| {
            (
                key,
                SeriesGroup {
                    points,
                    stale_for: 0,
                },
            )
        })
        .collect();
    // Still in the cluster: devices by uuid label, containers by `container:podUID`.
    let devices: BTreeSet<&str> = identities.iter().map(|i| i.uuid.as_str()).collect();
    let containers: BTreeSet<(String, String, String)> = snapshot
        .pods
        .iter()
        .flat_map(|p| {
            p.containers
                .iter()
                .map(move |c| (p.namespace.clone(), p.name.clone(), c.name.clone()))
        })
        .collect();
    for ((family, source), group) in &previous.groups {
        let Source::Query(query) = source else {
            continue;
        };
        let failed = matches!(results.get(query), Some(Err(())));
        if !failed || group.stale_for >= stale_cycles || groups.contains_key(&(*family, *source)) {
            continue;
        }
        let (_, _, label_names) = family.spec();
        let is_container = label_names.len() > 6;
        let points: Vec<Point> = group
            .points
            .iter()
            .filter(|p| {
                let device_ok = p
                    .labels
                    .get(3)
                    .is_some_and(|u| devices.contains(u.as_str()));
                let container_ok = !is_container
                    || containers.contains(&(
                        p.labels.get(6).cloned().unwrap_or_default(),
                        p.labels.get(4).cloned().unwrap_or_default(),
                        p.labels.get(5).cloned().unwrap_or_default(),
                    ));
                device_ok && container_ok
            })
            .cloned()
            .collect();
        if !points.is_empty() {
            groups.insert(
                (*family, *source),
                SeriesGroup {
                    points,
                    stale_for: group.stale_for + 1,
                },
            );
        }
    }
    CycleState { groups, info }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::query_client::Sample;
    use serde_json::json;
    use std::sync::Arc;

    fn snapshot(nodes: Vec<serde_json::Value>, pods: Vec<serde_json::Value>) -> ClusterSnapshot {
        let config = Config::from_raw(Default::default()).unwrap();
        let entries: Vec<_> = nodes
            .into_iter()
            .map(|n| {
                let node = serde_json::from_value(n).unwrap();
                crate::node_cache::node_entry(&node, &config.node_selectors).0
            })
            .collect();
        let inventory = Arc::new(crate::node_cache::build_inventory(entries.iter()));
        let pods: Vec<Arc<crate::snapshot::PodRecord>> = pods
            .into_iter()
            .filter_map(|p| {
                let pod = serde_json::from_value(p).unwrap();
                crate::pod_cache::pod_record(&pod, jiff::Timestamp::UNIX_EPOCH)
                    .0
                    .map(Arc::new)
            })
            .collect();
        crate::pod_cache::build_snapshot(1, inventory, pods.iter())
    }

    fn nvidia_node() -> serde_json::Value {
        json!({"metadata": {"name": "n1", "uid": "u1", "labels": {"gpu": "on"},
            "annotations": {"hami.io/node-nvidia-register":
                "[{\"id\":\"GPU-a\",\"count\":10,\"devmem\":1000,\"devcore\":100,\"type\":\"A100\",\"health\":true}]"}}})
    }

    fn nvidia_pod(cores: u32) -> serde_json::Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "pu",
                "annotations": {"hami.io/vgpu-node": "n1",
                                "hami.io/vgpu-devices-allocated": format!("GPU-a,NVIDIA,500,{cores}:;")}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
               "status": {"phase": "Running"}})
    }

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            metric: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timestamp: 0.0,
            value,
        }
    }

    fn dcgm(name: &str, value: f64) -> Sample {
        sample(&[("__name__", name), ("UUID", "GPU-a")], value)
    }

    fn healthy_results(util: f64, task_core: f64) -> QueryResults {
        QueryResults::from([
            (
                CycleQuery::Device(Vendor::Nvidia),
                Ok(vec![
                    dcgm("DCGM_FI_DEV_FB_USED", 250.0),
                    dcgm("DCGM_FI_DEV_FB_FREE", 750.0),
                    dcgm("DCGM_FI_DEV_GPU_UTIL", util),
                    dcgm("DCGM_FI_DEV_GPU_TEMP", 40.0),
                    dcgm("DCGM_FI_DEV_POWER_USAGE", 300.0),
                    dcgm("DCGM_FI_DEV_XID_ERRORS", 0.0),
                ]),
            ),
            (
                CycleQuery::Info(Vendor::Nvidia),
                Ok(vec![sample(
                    &[
                        ("UUID", "GPU-a"),
                        ("DCGM_FI_DRIVER_VERSION", "535.1"),
                        ("device", "nvidia0"),
                    ],
                    1.0,
                )]),
            ),
            (
                CycleQuery::TaskCore(Vendor::Nvidia),
                Ok(vec![sample(
                    &[
                        ("device_uuid", "GPU-a"),
                        ("namespace", "ns"),
                        ("pod", "p"),
                        ("container", "c"),
                    ],
                    task_core,
                )]),
            ),
            (
                CycleQuery::TaskMemory(Vendor::Nvidia),
                Ok(vec![sample(
                    &[
                        ("device_uuid", "GPU-a"),
                        ("namespace", "ns"),
                        ("pod", "p"),
                        ("container", "c"),
                    ],
                    100.0 * 1024.0 * 1024.0,
                )]),
            ),
        ])
    }

    fn value(state: &CycleState, family: Family) -> Option<f64> {
        state
            .groups
            .iter()
            .find(|((f, _), _)| *f == family)
            .and_then(|(_, g)| g.points.first())
            .map(|p| p.value)
    }

    #[test]
    fn device_and_container_families_follow_the_go_formulas() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let state = build_cycle(
            &snap,
            &healthy_results(40.0, 30.0),
            &CycleState::default(),
            3,
        );
        assert_eq!(value(&state, Family::VgpuCount), Some(10.0));
        assert_eq!(value(&state, Family::MemoryUsed), Some(250.0));
        assert_eq!(value(&state, Family::MemoryUtil), Some(25.0));
        assert_eq!(value(&state, Family::VmemoryScaling), Some(1.0));
        assert_eq!(value(&state, Family::CoreUtilAvg), Some(40.0));
        assert_eq!(value(&state, Family::DevicePower), Some(300.0));
        assert_eq!(
            value(&state, Family::ContainerVmemoryAllocated),
            Some(500.0)
        );
        assert_eq!(value(&state, Family::ContainerCoreUsed), Some(30.0));
        assert_eq!(value(&state, Family::ContainerCoreUtil), Some(60.0));
        assert_eq!(value(&state, Family::ContainerMemoryUsed), Some(100.0));
        assert_eq!(value(&state, Family::ContainerMemoryUtil), Some(20.0));
        let text = state.render();
        assert!(text.contains("hami_vgpu_count{node=\"n1\",provider=\"NVIDIA\",device_type=\"A100\",device_uuid=\"GPU-a\",driver_version=\"535.1\",device_no=\"nvidia0\"} 10"), "{text}");
        assert!(text.contains("container_pod_uuid=\"c:pu\""), "{text}");
    }

    #[test]
    fn busy_card_overrides_container_core_usage() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let state = build_cycle(
            &snap,
            &healthy_results(97.0, 30.0),
            &CycleState::default(),
            3,
        );
        assert_eq!(
            value(&state, Family::ContainerCoreUsed),
            Some(f64::from(0.97f32 * 50.0))
        );
        assert_eq!(value(&state, Family::ContainerCoreUtil), Some(97.0));
    }

    #[test]
    fn failed_query_keeps_its_families_for_stale_cycles_then_drops_them() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let mut state = build_cycle(
            &snap,
            &healthy_results(40.0, 30.0),
            &CycleState::default(),
            2,
        );
        let mut failing = healthy_results(40.0, 30.0);
        failing.insert(CycleQuery::Device(Vendor::Nvidia), Err(()));
        failing.insert(CycleQuery::Info(Vendor::Nvidia), Err(()));
        for cycle in 1..=2 {
            state = build_cycle(&snap, &failing, &state, 2);
            assert_eq!(
                value(&state, Family::MemoryUsed),
                Some(250.0),
                "cycle {cycle}"
            );
            assert!(
                state.render().contains("driver_version=\"535.1\""),
                "labels stable"
            );
        }
        state = build_cycle(&snap, &failing, &state, 2);
        assert_eq!(
            value(&state, Family::MemoryUsed),
            None,
            "dropped after 2 stale cycles"
        );
        assert_eq!(
            value(&state, Family::VgpuCount),
            Some(10.0),
            "inventory families stay"
        );
        assert_eq!(
            value(&state, Family::ContainerCoreUsed),
            Some(30.0),
            "other queries update"
        );
    }

    #[test]
    fn departed_devices_and_containers_disappear_even_when_stale() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let state = build_cycle(
            &snap,
            &healthy_results(40.0, 30.0),
            &CycleState::default(),
            3,
        );
        let empty = snapshot(vec![], vec![]);
        let failing: QueryResults = healthy_results(40.0, 30.0)
            .into_keys()
            .map(|k| (k, Err(())))
            .collect();
        let next = build_cycle(&empty, &failing, &state, 3);
        assert_eq!(next.series_count(), 0, "{}", next.render());
    }

    #[test]
    fn ascend_telemetry_joins_by_array_position() {
        let node = json!({"metadata": {"name": "a1", "uid": "ua", "labels": {"ascend": "on"},
            "annotations": {"hami.io/node-register-Ascend910B":
                "[{\"id\":\"Ascend910B-0\",\"count\":4,\"devmem\":65536,\"devcore\":100,\"type\":\"Ascend910B\",\"health\":true},{\"id\":\"Ascend910B-1\",\"index\":1,\"count\":4,\"devmem\":65536,\"devcore\":100,\"type\":\"Ascend910B\",\"health\":true}]"}}});
        let snap = snapshot(vec![node], vec![]);
        let results = QueryResults::from([
            (
                CycleQuery::Identity(Vendor::Ascend),
                Ok(vec![
                    sample(&[("node", "a1"), ("id", "0"), ("vdie_id", "V0")], 1.0),
                    sample(&[("node", "a1"), ("id", "1"), ("vdie_id", "V1")], 1.0),
                ]),
            ),
            (
                CycleQuery::Device(Vendor::Ascend),
                Ok(vec![sample(
                    &[("__name__", "npu_chip_info_utilization"), ("vdie_id", "V1")],
                    77.0,
                )]),
            ),
            (
                CycleQuery::Info(Vendor::Ascend),
                Ok(vec![sample(&[("vdie_id", "V1"), ("id", "1")], 1.0)]),
            ),
        ]);
        let text = build_cycle(&snap, &results, &CycleState::default(), 3).render();
        assert!(text.contains("hami_core_util{node=\"a1\",provider=\"Ascend\",device_type=\"Ascend910B\",device_uuid=\"V1\",driver_version=\"暂无\",device_no=\"ascend-1\"} 77"), "{text}");
        assert!(text.contains("device_uuid=\"V0\""), "{text}");
    }

    #[test]
    fn learnt_identities_are_stable_once_applied() {
        let node_json = json!({"metadata": {"name": "d1", "uid": "ud", "labels": {"dcu": "on"},
            "annotations": {"hami.io/node-dcu-register": "DCU-0,4,65520,100,DCU,0,true,0,hami-core:"}}});
        let snap = snapshot(vec![node_json.clone()], vec![]);
        let results = QueryResults::from([(
            CycleQuery::Identity(Vendor::Dcu),
            Ok(vec![sample(
                &[
                    ("node", "d1"),
                    ("minor_number", "0"),
                    ("device_id", "serial-9"),
                ],
                1.0,
            )]),
        )]);
        let map = identity_overrides(&snap, &results).unwrap();
        assert_eq!(
            map.get(&("d1".to_string(), "d1-dcu-0".to_string()))
                .map(|(id, _)| id.as_str()),
            Some("serial-9")
        );
        let config = Config::from_raw(Default::default()).unwrap();
        let node = serde_json::from_value(node_json).unwrap();
        let entry = crate::node_cache::node_entry(&node, &config.node_selectors).0;
        let inventory = crate::node_cache::build_identified_inventory([&entry].into_iter(), &map);
        assert_eq!(inventory.iter_devices().next().unwrap().id, "serial-9");
        let enriched = crate::pod_cache::build_snapshot(2, Arc::new(inventory), std::iter::empty());
        assert_eq!(identity_overrides(&enriched, &results), Some(map));
        let failed = QueryResults::from([(CycleQuery::Identity(Vendor::Dcu), Err(()))]);
        assert_eq!(
            identity_overrides(&enriched, &failed),
            None,
            "failure keeps what was learnt"
        );
    }

    #[test]
    fn hcu_devices_and_containers_use_the_hcu_exporter() {
        let node = json!({"metadata": {"name": "h1", "uid": "uh", "labels": {"hcu": "on"},
            "annotations": {"hami.io/node-hcu-register": "HCU-serial-01,4,65520,100,BW200,0,true,0,hami-core:"}}});
        let pod = json!({"metadata": {"name": "train", "namespace": "research", "uid": "pu",
                "annotations": {"hami.io/vgpu-node": "h1",
                                "hami.io/hcu-devices-allocated": "HCU-serial-01,HCU,32000,50:;"}},
               "spec": {"nodeName": "h1", "containers": [{"name": "worker"}]},
               "status": {"phase": "Running"}});
        let snap = snapshot(vec![node], vec![pod]);
        let workload = [
            ("device_id", "serial-01"),
            ("hcu_pod_namespace", "research"),
            ("hcu_pod_name", "train"),
            ("container", "worker"),
        ];
        let results = QueryResults::from([
            (
                CycleQuery::Device(Vendor::Hcu),
                Ok(vec![
                    sample(
                        &[
                            ("__name__", "hcu_usedmemory_bytes"),
                            ("device_id", "serial-01"),
                        ],
                        2048.0 * 1048576.0,
                    ),
                    sample(
                        &[
                            ("__name__", "hcu_utilizationrate"),
                            ("device_id", "serial-01"),
                        ],
                        99.0,
                    ),
                ]),
            ),
            (
                CycleQuery::Info(Vendor::Hcu),
                Ok(vec![sample(
                    &[("device_id", "serial-01"), ("minor_number", "3")],
                    1.0,
                )]),
            ),
            (
                CycleQuery::TaskCore(Vendor::Hcu),
                Ok(vec![sample(&workload, 40.0)]),
            ),
            (CycleQuery::TaskMemory(Vendor::Hcu), Ok(vec![])),
        ]);
        let state = build_cycle(&snap, &results, &CycleState::default(), 3);
        let text = state.render();
        assert!(text.contains("hami_memory_used{node=\"h1\",provider=\"HCU\",device_type=\"BW200\",device_uuid=\"serial-01\",driver_version=\"\",device_no=\"3\"} 2048"), "{text}");
        // 40 % busy of 50 allocated cores; no card fallback although the card is at 99 %.
        assert_eq!(
            value(&state, Family::ContainerCoreUsed),
            Some(20.0),
            "{text}"
        );
        assert_eq!(value(&state, Family::ContainerCoreUtil), Some(40.0));
        assert_eq!(
            value(&state, Family::ContainerMemoryUsed),
            None,
            "missing sample stays unknown"
        );
        assert_eq!(value(&state, Family::ContainerVcoreAllocated), Some(50.0));
    }
}
