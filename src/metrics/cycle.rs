//! [`build_cycle`]: one cycle's complete state, built aside from the published one from the
//! snapshot and the batched answers; a failed query's groups are carried over for up to
//! `exporter.stale_cycles` cycles ([`merge`]), label sets are reused while equal.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::cluster::snapshot::ClusterSnapshot;
use crate::device::Vendor;

use super::builder::{Builder, LabelReuse};
use super::containers::container_families;
use super::devices::device_families;
use super::exposition::{self, Point};
use super::identity::{identities, DeviceIdentity};
use super::labels::LabelSet;
use super::queries::CycleQuery;
use super::readings::{device_values, info_labels, DeviceValues};
use super::state::{InfoCache, InfoLabels, LabelOrder, LabelTables, LabelTablesView};
use super::{CycleState, QueryResults, SeriesGroup, Source, DEVICE_LABELS};

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
            Some(Err(_)) => {
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

/// Device uuids and `(namespace, pod, container)`s of the snapshot.
pub(super) type Present<'a> = (HashSet<&'a str>, HashSet<(&'a str, &'a str, &'a str)>);

/// Combines this cycle's fresh groups with carried-over ones for failed queries, and orders
/// each family for the exposition.
#[allow(clippy::too_many_arguments)]
pub(super) fn merge(
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
        let failed = matches!(results.get(query), Some(Err(_)));
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
