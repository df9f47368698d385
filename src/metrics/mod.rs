//! The device and container families of `/metrics`, computed once per refresh cycle from the
//! cycle's [`ClusterSnapshot`] and its batched query results (pure; the actor that runs the
//! cycle is `metrics_refresher`).
//!
//! A cycle produces a complete [`CycleState`] aside from the published one. Series are kept in
//! groups by (family, source query); when a query fails, the groups it feeds keep their
//! previous series for up to `exporter.stale_cycles` cycles (devices and containers that left
//! the cluster excepted), and every other group updates normally.
//!
//! Label sets are rendered once ([`LabelSet`]) and shared by every family of a device or an
//! allocation; the next cycle reuses them while their values stay equal, so an unchanged
//! cluster re-renders no label and a family whose values did not move can reuse its bytes
//! (`metrics_refresher`). Devices and allocations are visited in label order, so each
//! family's series come out already sorted.

pub mod exposition;
pub mod labels;
pub mod queries;
pub mod refresher;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::cluster::snapshot::{ClusterSnapshot, ContainerRecord, PodRecord};
use crate::device::{Device, DeviceAllocation, Vendor};
use crate::query_client::{QueryData, QueryOutput, Sample, SeriesLabels};

pub use exposition::{Family, Point, CONTAINER_ALLOC_LABELS, DEVICE_LABELS};
pub use labels::LabelSet;
pub use queries::CycleQuery;

/// What fed a group of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Only the snapshot: always current.
    Inventory,
    Query(CycleQuery),
}

/// One successful instant-vector answer, shared with the query client rather than copied
/// (at 10,000 GPUs a cycle's answers hold ~170,000 samples).
#[derive(Debug, Clone)]
pub struct VectorAnswer(Arc<QueryOutput>);

impl VectorAnswer {
    /// The answer if it is an instant vector.
    pub fn new(output: Arc<QueryOutput>) -> Option<Self> {
        matches!(output.data, QueryData::Vector(_)).then_some(Self(output))
    }

    pub fn samples(&self) -> &[Sample] {
        match &self.0.data {
            QueryData::Vector(samples) => samples,
            _ => &[],
        }
    }
}

impl From<Vec<Sample>> for VectorAnswer {
    fn from(samples: Vec<Sample>) -> Self {
        Self(Arc::new(QueryOutput {
            data: QueryData::Vector(samples),
            warnings: Vec::new(),
        }))
    }
}

/// The outcome of each query of a cycle: its vector samples, or failure.
pub type QueryResults = HashMap<CycleQuery, Result<VectorAnswer, ()>>;

fn samples(results: &QueryResults, query: CycleQuery) -> Option<&[Sample]> {
    results
        .get(&query)?
        .as_ref()
        .ok()
        .map(VectorAnswer::samples)
}

/// `(driver_version, device_no)` per device uuid.
type InfoLabels = HashMap<String, (String, String)>;
/// Info labels per vendor, with the cycles since they were last refreshed.
type InfoCache = HashMap<Vendor, (Arc<InfoLabels>, u32)>;

/// Series of one (family, source), and for how many cycles they have been carried over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesGroup {
    pub points: Arc<[Point]>,
    pub stale_for: u32,
    /// The points are strictly increasing by label values (sorted, no duplicates), as the
    /// device and allocation loops emit them; the exposition then needs no sorting.
    pub in_label_order: bool,
}

/// The label sets of a cycle and their label order, kept for the next one to reuse.
#[derive(Debug, Clone, Default, PartialEq)]
struct LabelTables {
    /// Per device, by flat index.
    devices: Vec<Option<Arc<LabelSet>>>,
    devices_order: LabelOrder,
    /// Per (container, device) allocation entry, in snapshot order.
    containers: Vec<Option<Arc<LabelSet>>>,
    containers_order: LabelOrder,
}

/// Positions of a table's label sets sorted by their first `n` values (stable), and whether
/// no two are equal. Depends only on the sets, so it is reused while they are the same.
#[derive(Debug, Clone, Default, PartialEq)]
struct LabelOrder {
    positions: Vec<usize>,
    distinct: bool,
}

impl LabelOrder {
    fn of(sets: &[Option<Arc<LabelSet>>], n: usize, previous: &LabelTablesView<'_>) -> Self {
        let same = sets.len() == previous.sets.len()
            && sets.iter().zip(previous.sets).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            });
        if same {
            return previous.order.clone();
        }
        let mut positions: Vec<usize> = (0..sets.len()).filter(|&i| sets[i].is_some()).collect();
        let cmp = |a: usize, b: usize| match (&sets[a], &sets[b]) {
            (Some(a), Some(b)) => a.cmp_values(b, n),
            _ => std::cmp::Ordering::Equal,
        };
        positions.sort_by(|&a, &b| cmp(a, b));
        let distinct = positions
            .windows(2)
            .all(|w| cmp(w[0], w[1]) == std::cmp::Ordering::Less);
        Self {
            positions,
            distinct,
        }
    }
}

/// The previous cycle's table and order, for [`LabelOrder::of`].
struct LabelTablesView<'a> {
    sets: &'a [Option<Arc<LabelSet>>],
    order: &'a LabelOrder,
}

/// Everything one published cycle holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleState {
    pub groups: BTreeMap<(Family, Source), SeriesGroup>,
    /// Each non-empty family's series in exposition order (sorted, without duplicates);
    /// shares the group's points when one group feeds the family.
    families: Vec<(Family, Arc<[Point]>)>,
    /// Last known `(driver_version, device_no)` per device uuid, with the cycles since the
    /// info query last succeeded for its vendor; keeps series identities stable when only
    /// the info query fails.
    info: InfoCache,
    labels: LabelTables,
}

impl CycleState {
    pub fn series_count(&self) -> usize {
        self.groups.values().map(|g| g.points.len()).sum()
    }

    /// The non-empty families in exposition order, each with its series in order.
    pub fn families(&self) -> &[(Family, Arc<[Point]>)] {
        &self.families
    }

    /// The exposition text of this state.
    pub fn render(&self) -> String {
        exposition::render(self.families.iter().map(|(f, p)| (*f, &p[..])))
    }

    /// The exposition text in pieces of about `chunk` bytes, rendered as they are asked for.
    pub fn text_chunks(self: Arc<Self>, chunk: usize) -> TextChunks {
        TextChunks {
            state: self,
            family: 0,
            point: 0,
            header_done: false,
            chunk: chunk.max(1),
        }
    }
}

/// Iterator over a state's exposition text, piece by piece: what a plain scrape streams, so
/// that the text (~100 MB at 10,000 GPUs) is never held whole.
pub struct TextChunks {
    state: Arc<CycleState>,
    family: usize,
    point: usize,
    header_done: bool,
    chunk: usize,
}

impl Iterator for TextChunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.chunk + 4096);
        while out.len() < self.chunk {
            let Some((family, points)) = self.state.families.get(self.family) else {
                break;
            };
            if !self.header_done {
                if !points.is_empty() {
                    exposition::write_header(&mut out, *family);
                }
                self.header_done = true;
            }
            while self.point < points.len() && out.len() < self.chunk {
                let stop = (self.point + 256).min(points.len());
                exposition::write_points(&mut out, *family, &points[self.point..stop]);
                self.point = stop;
            }
            if self.point >= points.len() {
                self.family += 1;
                self.point = 0;
                self.header_done = false;
            }
        }
        (!out.is_empty()).then_some(out)
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
    let rows =
        |vendor| -> &[Sample] { samples(results, CycleQuery::Identity(vendor)).unwrap_or(&[]) };
    let label = |s: &Sample, k: &str| s.metric.get(k).unwrap_or_default().to_string();
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
) -> Option<crate::cluster::inventory::IdentityMap> {
    let any_ok = results
        .iter()
        .any(|(q, r)| matches!(q, CycleQuery::Identity(_)) && r.is_ok());
    if !any_ok {
        return None;
    }
    let mut map = crate::cluster::inventory::IdentityMap::new();
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

/// Device quantities of one vendor's device query: per exporter id, each metric of
/// [`queries::device_metrics`] by position, as float32 (the precision the Go backend
/// worked in). A repeated series overwrites the earlier one.
type DeviceValues<'a> = FastMap<&'a str, [Option<f32>; MAX_DEVICE_METRICS]>;

/// The joins' maps: keyed by upstream label values, hashed with `foldhash` (randomly seeded),
/// several times faster than SipHash on these keys.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Most device metrics a vendor's device query asks for.
const MAX_DEVICE_METRICS: usize = 8;

fn device_values(results: &QueryResults, vendor: Vendor) -> Option<DeviceValues<'_>> {
    let samples = samples(results, CycleQuery::Device(vendor))?;
    let id_label = queries::identity_label(vendor)?;
    let names = queries::device_metrics(vendor);
    let mut values = DeviceValues::with_capacity_and_hasher(
        samples.len() / names.len().max(1) + 1,
        Default::default(),
    );
    for s in samples {
        let (Some(name), Some(id)) = (s.metric.get("__name__"), s.metric.get(id_label)) else {
            continue;
        };
        let Some(position) = names.iter().position(|n| *n == name) else {
            continue;
        };
        if let Some(slot) = values
            .entry(id)
            .or_insert([None; MAX_DEVICE_METRICS])
            .get_mut(position)
        {
            *slot = Some(s.value as f32);
        }
    }
    Some(values)
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

fn readings(vendor: Vendor, values: &DeviceValues<'_>, id: &str) -> DeviceReadings {
    let row = values.get(id);
    let names = queries::device_metrics(vendor);
    let get = |name: &str| {
        let position = names.iter().position(|n| *n == name)?;
        row.and_then(|r| r.get(position).copied().flatten())
    };
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

/// An info series' labels, with the series they came from.
type InfoChoice<'a> = ((String, String), &'a SeriesLabels);

/// `(driver_version, device_no)` per device uuid from a vendor's info query.
fn info_labels(vendor: Vendor, samples: &[Sample]) -> InfoLabels {
    // The Go backend took the first series; the first in label order makes "first"
    // deterministic (the series whose labels sort lowest wins, earliest among equals).
    let mut chosen: FastMap<String, InfoChoice<'_>> =
        FastMap::with_capacity_and_hasher(samples.len(), Default::default());
    for s in samples {
        let get = |k: &str| s.metric.get(k).unwrap_or_default().to_string();
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
        match chosen.entry(id) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((labels, &s.metric));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                if s.metric < *slot.get().1 {
                    slot.insert((labels, &s.metric));
                }
            }
        }
    }
    chosen
        .into_iter()
        .map(|(id, (labels, _))| (id, labels))
        .collect()
}

/// Accumulates the points of one cycle, per family then source.
struct Builder {
    groups: Vec<Vec<(Source, Vec<Point>, bool)>>,
    /// Whether points set now come in strictly increasing label order. Each group is fed by
    /// one loop only (device families by the device loop, container families by the
    /// allocation loop or the Metax full-GPU path), so a group stays ordered while this holds.
    in_label_order: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            groups: vec![Vec::new(); Family::ALL.len()],
            in_label_order: false,
        }
    }
}

impl Builder {
    fn set(&mut self, family: Family, source: Source, labels: &Arc<LabelSet>, value: f64) {
        let point = Point {
            labels: Arc::clone(labels),
            value,
        };
        let in_order = self.in_label_order;
        let Some(sources) = self.groups.get_mut(family as usize) else {
            return;
        };
        match sources.iter_mut().find(|(s, _, _)| *s == source) {
            Some((_, points, ordered)) => {
                points.push(point);
                *ordered &= in_order;
            }
            None => sources.push((source, vec![point], in_order)),
        }
    }

    fn into_groups(self) -> BTreeMap<(Family, Source), SeriesGroup> {
        Family::ALL
            .into_iter()
            .zip(self.groups)
            .flat_map(|(family, sources)| {
                sources.into_iter().map(move |(source, points, ordered)| {
                    (
                        (family, source),
                        SeriesGroup {
                            points: points.into(),
                            stale_for: 0,
                            in_label_order: ordered,
                        },
                    )
                })
            })
            .collect()
    }
}

/// Hands out label sets, reusing the previous cycle's where the values are equal: first the
/// one at the same position, else any with the same text.
struct LabelReuse<'a> {
    previous: &'a [Option<Arc<LabelSet>>],
    by_text: Option<FastMap<&'a str, &'a Arc<LabelSet>>>,
}

impl<'a> LabelReuse<'a> {
    fn new(previous: &'a [Option<Arc<LabelSet>>]) -> Self {
        Self {
            previous,
            by_text: None,
        }
    }

    fn get(&mut self, position: usize, names: &[&str], values: &[&str]) -> Arc<LabelSet> {
        if let Some(Some(set)) = self.previous.get(position) {
            if set.matches(values) {
                return Arc::clone(set);
            }
        }
        let fresh = LabelSet::new(names, values);
        let previous = self.previous;
        let by_text = self.by_text.get_or_insert_with(|| {
            previous
                .iter()
                .flatten()
                .map(|set| (set.text(), set))
                .collect()
        });
        match by_text.get(fresh.text()) {
            Some(old) => Arc::clone(old),
            None => Arc::new(fresh),
        }
    }
}

/// Builds the next state. `previous` supplies carried-over groups for failed queries, and
/// label sets to reuse.
pub fn build_cycle(
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
    previous: &CycleState,
    stale_cycles: u32,
) -> CycleState {
    let identities = identities(snapshot, results);
    let inventory = &snapshot.inventory;
    let mut b = Builder::default();
    let mut next_info = InfoCache::new();

    let vendors: BTreeSet<Vendor> = inventory.iter_devices().map(|d| d.vendor).collect();
    let device_values: HashMap<Vendor, DeviceValues<'_>> = vendors
        .iter()
        .filter_map(|&v| device_values(results, v).map(|m| (v, m)))
        .collect();
    let mut infos: HashMap<Vendor, Arc<InfoLabels>> = HashMap::new();
    for &vendor in &vendors {
        match results.get(&CycleQuery::Info(vendor)) {
            Some(Ok(answer)) => {
                let labels = Arc::new(info_labels(vendor, answer.samples()));
                infos.insert(vendor, Arc::clone(&labels));
                next_info.insert(vendor, (labels, 0));
            }
            Some(Err(())) => {
                if let Some((labels, age)) = previous.info.get(&vendor) {
                    if *age < stale_cycles {
                        infos.insert(vendor, Arc::clone(labels));
                        next_info.insert(vendor, (Arc::clone(labels), age + 1));
                    }
                }
            }
            None => {}
        }
    }

    // Label sets per device, then the devices in label order.
    let mut reuse = LabelReuse::new(&previous.labels.devices);
    let device_sets: Vec<Option<Arc<LabelSet>>> = identities
        .iter()
        .enumerate()
        .map(|(flat, identity)| {
            let device = inventory.device(flat)?;
            let (driver, number) = infos
                .get(&device.vendor)
                .and_then(|m| m.get(&identity.uuid))
                .map_or(("", ""), |(d, n)| (d.as_str(), n.as_str()));
            let values = [
                device.node_name.as_str(),
                device.vendor.provider(),
                identity.device_type.as_str(),
                identity.uuid.as_str(),
                driver,
                number,
            ];
            Some(reuse.get(flat, DEVICE_LABELS, &values))
        })
        .collect();
    let devices_order = LabelOrder::of(
        &device_sets,
        DEVICE_LABELS.len(),
        &LabelTablesView {
            sets: &previous.labels.devices,
            order: &previous.labels.devices_order,
        },
    );

    // Card utilisation per device, for the containers' >95 % override.
    let mut card_core: Vec<Option<f32>> = vec![None; identities.len()];
    b.in_label_order = devices_order.distinct;
    for &flat in &devices_order.positions {
        let (Some(device), Some(identity), Some(Some(labels))) = (
            inventory.device(flat),
            identities.get(flat),
            device_sets.get(flat),
        ) else {
            continue;
        };
        device_families(
            &mut b,
            device,
            labels,
            device_values.get(&device.vendor),
            identity,
            &mut card_core[flat],
        );
    }

    b.in_label_order = false;
    let (containers, containers_order) = container_families(
        &mut b,
        snapshot,
        results,
        &identities,
        &card_core,
        &previous.labels,
    );

    let labels = LabelTables {
        devices: device_sets,
        devices_order,
        containers,
        containers_order,
    };
    merge(
        b,
        results,
        previous,
        stale_cycles,
        snapshot,
        &identities,
        next_info,
        labels,
    )
}

fn device_families(
    b: &mut Builder,
    device: &Device,
    labels: &Arc<LabelSet>,
    values: Option<&DeviceValues<'_>>,
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

/// Label values a task query is keyed by (unused positions empty).
type TaskKey<'a> = [&'a str; 5];

fn task_key<'a>(parts: &[&'a str]) -> TaskKey<'a> {
    let mut key = [""; 5];
    for (slot, part) in key.iter_mut().zip(parts) {
        *slot = part;
    }
    key
}

/// Per-container usage samples of one task query, keyed by the label values it is grouped by.
fn task_map<'a>(
    results: &'a QueryResults,
    query: CycleQuery,
    keys: &[&str],
) -> Option<FastMap<TaskKey<'a>, f32>> {
    let samples = samples(results, query)?;
    let mut map = FastMap::with_capacity_and_hasher(samples.len(), Default::default());
    for s in samples {
        let mut key = [""; 5];
        for (slot, k) in key.iter_mut().zip(keys) {
            *slot = s.metric.get(k).unwrap_or("");
        }
        map.insert(key, s.value as f32);
    }
    Some(map)
}

/// One container's allocations on one device: a row of the container families.
struct ContainerEntry<'a> {
    pod: &'a PodRecord,
    container: &'a ContainerRecord,
    flat: usize,
    matched: Vec<&'a DeviceAllocation>,
    labels: Arc<LabelSet>,
}

/// Emits the container families; returns the label sets of this cycle's entries (snapshot
/// order) and their order, for the next cycle to reuse.
fn container_families(
    b: &mut Builder,
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
    identities: &[DeviceIdentity],
    card_core: &[Option<f32>],
    previous: &LabelTables,
) -> (Vec<Option<Arc<LabelSet>>>, LabelOrder) {
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
        let sample = |map: &FastMap<TaskKey<'_>, f32>| match map.get(&key) {
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
fn metax_gpu_container(
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
            b.set(ContainerCoreUsed, src, &labels, used);
            b.set(ContainerCoreUtil, src, &labels, util);
        }
    }
}

/// Device uuids and `(namespace, pod, container)`s of the snapshot.
type Present<'a> = (HashSet<&'a str>, HashSet<(&'a str, &'a str, &'a str)>);

/// Combines this cycle's fresh groups with carried-over ones for failed queries, and orders
/// each family for the exposition.
#[allow(clippy::too_many_arguments)]
fn merge(
    b: Builder,
    results: &QueryResults,
    previous: &CycleState,
    stale_cycles: u32,
    snapshot: &ClusterSnapshot,
    identities: &[DeviceIdentity],
    info: InfoCache,
    labels: LabelTables,
) -> CycleState {
    let mut groups = b.into_groups();
    // Still in the cluster: devices by uuid label, containers by (namespace, pod, container);
    // built only when a group is carried over.
    let mut present: Option<Present<'_>> = None;
    for ((family, source), group) in &previous.groups {
        let Source::Query(query) = source else {
            continue;
        };
        let failed = matches!(results.get(query), Some(Err(())));
        if !failed || group.stale_for >= stale_cycles || groups.contains_key(&(*family, *source)) {
            continue;
        }
        let (devices, containers) = present.get_or_insert_with(|| {
            let devices = identities.iter().map(|i| i.uuid.as_str()).collect();
            let containers = snapshot
                .pods
                .iter()
                .flat_map(|p| {
                    p.containers
                        .iter()
                        .map(move |c| (p.namespace.as_str(), p.name.as_str(), c.name.as_str()))
                })
                .collect();
            (devices, containers)
        });
        let (_, _, label_names) = family.spec();
        let is_container = label_names.len() > 6;
        let points: Vec<Point> = group
            .points
            .iter()
            .filter(|p| {
                let device_ok = devices.contains(p.labels.value(3).as_ref());
                let container_ok = !is_container
                    || containers.contains(&(
                        p.labels.value(6).as_ref(),
                        p.labels.value(4).as_ref(),
                        p.labels.value(5).as_ref(),
                    ));
                device_ok && container_ok
            })
            .cloned()
            .collect();
        if !points.is_empty() {
            groups.insert(
                (*family, *source),
                SeriesGroup {
                    points: points.into(),
                    stale_for: group.stale_for + 1,
                    in_label_order: group.in_label_order,
                },
            );
        }
    }
    let mut families = Vec::new();
    let mut by_family: Vec<(&Arc<[Point]>, bool)> = Vec::new();
    let mut keys = groups.iter().peekable();
    while let Some(((family, _), group)) = keys.next() {
        by_family.push((&group.points, group.in_label_order));
        if keys.peek().is_some_and(|((next, _), _)| next == family) {
            continue;
        }
        let view = exposition::family_view(*family, &by_family);
        if !view.is_empty() {
            families.push((*family, view));
        }
        by_family.clear();
    }
    CycleState {
        groups,
        families,
        info,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::inventory::IdentityMap;
    use crate::config::Config;
    use crate::device::DeviceContext;
    use crate::query_client::Sample;
    use serde_json::json;
    use std::sync::Arc;

    fn snapshot(nodes: Vec<serde_json::Value>, pods: Vec<serde_json::Value>) -> ClusterSnapshot {
        let config = Config::from_raw(Default::default()).unwrap();
        let entries: Vec<_> = nodes
            .into_iter()
            .map(|n| {
                let node = serde_json::from_value(n).unwrap();
                crate::cluster::inventory::node_entry(
                    &node,
                    &config.node_selectors,
                    &DeviceContext::default(),
                )
                .0
            })
            .collect();
        let inventory = Arc::new(crate::cluster::inventory::build_inventory(
            entries.iter(),
            &IdentityMap::new(),
            Default::default(),
        ));
        let pods: Vec<Arc<crate::cluster::snapshot::PodRecord>> = pods
            .into_iter()
            .filter_map(|p| {
                let pod = serde_json::from_value(p).unwrap();
                crate::cluster::tracked_pod::pod_record(
                    &pod,
                    jiff::Timestamp::UNIX_EPOCH,
                    &DeviceContext::default(),
                )
                .0
                .map(Arc::new)
            })
            .collect();
        ClusterSnapshot::build(1, inventory, pods.to_vec(), Vec::new())
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

    fn answers<const N: usize>(pairs: [(CycleQuery, Result<Vec<Sample>, ()>); N]) -> QueryResults {
        pairs
            .into_iter()
            .map(|(q, r)| (q, r.map(VectorAnswer::from)))
            .collect()
    }

    fn dcgm(name: &str, value: f64) -> Sample {
        sample(&[("__name__", name), ("UUID", "GPU-a")], value)
    }

    fn healthy_results(util: f64, task_core: f64) -> QueryResults {
        answers([
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
        let results = answers([
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
        let results = answers([(
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
        let entry = crate::cluster::inventory::node_entry(
            &node,
            &config.node_selectors,
            &DeviceContext::default(),
        )
        .0;
        let inventory = crate::cluster::inventory::build_inventory(
            [&entry].into_iter(),
            &map,
            Default::default(),
        );
        assert_eq!(inventory.iter_devices().next().unwrap().id, "serial-9");
        let enriched = ClusterSnapshot::build(2, Arc::new(inventory), Vec::new(), Vec::new());
        assert_eq!(identity_overrides(&enriched, &results), Some(map));
        let failed = answers([(CycleQuery::Identity(Vendor::Dcu), Err(()))]);
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
        let results = answers([
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

    /// The synthetic cluster of `nodes` 8-GPU nodes and the NVIDIA answers its exporters give.
    fn synthetic(nodes: usize) -> (ClusterSnapshot, QueryResults) {
        let shape = crate::synthetic::ClusterShape::gpus(nodes);
        let objects = shape.objects();
        let snap = snapshot(
            objects
                .iter()
                .filter(|o| o["kind"] == "Node")
                .cloned()
                .collect(),
            objects
                .iter()
                .filter(|o| o["kind"] == "Pod")
                .cloned()
                .collect(),
        );
        let (mut device, mut info, mut core, mut memory) = (vec![], vec![], vec![], vec![]);
        for line in shape.exposition().lines() {
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((name, labels)) = head.split_once('{') else {
                continue;
            };
            let labels: HashMap<&str, &str> = labels
                .trim_end_matches('}')
                .split("\",")
                .filter_map(|p| p.split_once("=\""))
                .map(|(k, v)| (k, v.trim_end_matches('"')))
                .collect();
            let l = |k: &str| labels.get(k).copied().unwrap_or_default();
            let value: f64 = value.parse().unwrap();
            let key = [
                ("device_uuid", l("device_uuid")),
                ("namespace", l("namespace")),
                ("pod", l("pod")),
                ("container", l("container")),
            ];
            match name {
                n if n.starts_with("DCGM_") => {
                    device.push(sample(&[("__name__", n), ("UUID", l("UUID"))], value));
                    if n == "DCGM_FI_DEV_POWER_USAGE" {
                        info.push(sample(
                            &[
                                ("UUID", l("UUID")),
                                ("DCGM_FI_DRIVER_VERSION", l("DCGM_FI_DRIVER_VERSION")),
                                ("device", l("device")),
                            ],
                            1.0,
                        ));
                    }
                }
                "hami_container_device_utilization_ratio" => core.push(sample(&key, value)),
                "hami_vgpu_memory_used_bytes" => memory.push(sample(&key, value)),
                _ => {}
            }
        }
        let results = answers([
            (CycleQuery::Device(Vendor::Nvidia), Ok(device)),
            (CycleQuery::Info(Vendor::Nvidia), Ok(info)),
            (CycleQuery::TaskCore(Vendor::Nvidia), Ok(core)),
            (CycleQuery::TaskMemory(Vendor::Nvidia), Ok(memory)),
        ]);
        (snap, results)
    }

    /// The exposition as the first version of this module wrote it: every label set escaped
    /// and formatted per series, series sorted by label values, the first of equals kept.
    fn reference_render(state: &CycleState) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for family in Family::ALL {
            let (name, help, names) = family.spec();
            let mut points: Vec<(Vec<String>, f64)> = state
                .groups
                .iter()
                .filter(|((f, _), _)| *f == family)
                .flat_map(|(_, g)| g.points.iter())
                .map(|p| {
                    let values = (0..names.len()).map(|i| p.labels.value(i).into_owned());
                    (values.collect(), p.value)
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.0.cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (values, value) in points {
                let labels: Vec<String> = names
                    .iter()
                    .zip(&values)
                    .map(|(n, v)| {
                        let v = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        format!("{n}=\"{v}\"")
                    })
                    .collect();
                let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
            }
        }
        out
    }

    #[test]
    fn rendering_matches_the_per_series_reference_and_streams_the_same_text() {
        let (snap, results) = synthetic(3);
        let state = build_cycle(&snap, &results, &CycleState::default(), 3);
        let text = state.render();
        assert!(state.series_count() > 300, "{}", state.series_count());
        assert_eq!(text, reference_render(&state));
        let streamed: Vec<u8> = Arc::new(state).text_chunks(1000).flatten().collect();
        assert_eq!(String::from_utf8(streamed).unwrap(), text);
    }

    #[test]
    fn an_unchanged_cluster_reuses_every_label_set_and_keeps_its_text() {
        let (snap, results) = synthetic(2);
        let first = build_cycle(&snap, &results, &CycleState::default(), 3);
        let second = build_cycle(&snap, &results, &first, 3);
        assert_eq!(first.render(), second.render());
        for ((f1, p1), (f2, p2)) in first.families().iter().zip(second.families()) {
            assert_eq!(f1, f2);
            assert!(p1
                .iter()
                .zip(p2.iter())
                .all(|(a, b)| Arc::ptr_eq(&a.labels, &b.labels)));
        }
    }

    #[test]
    fn stale_groups_merge_with_fresh_ones_in_label_order() {
        let (snap, results) = synthetic(2);
        let first = build_cycle(&snap, &results, &CycleState::default(), 3);
        let mut failing = results.clone();
        failing.insert(CycleQuery::TaskCore(Vendor::Nvidia), Err(()));
        let second = build_cycle(&snap, &failing, &first, 3);
        assert_eq!(second.render(), reference_render(&second));
        assert_eq!(
            value(&second, Family::ContainerCoreUsed),
            value(&first, Family::ContainerCoreUsed)
        );
    }
}
