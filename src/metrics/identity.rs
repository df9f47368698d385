//! How each device is known to its exporter: Ascend `vdie_id` by array position on the
//! node, DCU `device_id` by minor number, MLU and Metax-GPU `uuid` by card index, as the Go
//! backend resolved them ([`identity_overrides`] tells the node cache).

use std::collections::HashMap;

use crate::cluster::snapshot::ClusterSnapshot;
use crate::device::Vendor;
use crate::query_client::Sample;

use super::queries::CycleQuery;
use super::state::samples;
use super::QueryResults;

/// How a device is known to its exporter and shown in labels.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DeviceIdentity {
    /// The `device_uuid` label and the exporter join key.
    pub(super) uuid: String,
    pub(super) device_type: String,
    /// Metax `deviceId` (sGPU usage is keyed by it); the registered index otherwise.
    pub(super) index: String,
    /// Whether an exporter identity series named this device.
    pub(super) matched: bool,
}

/// Resolves exporter identities: Ascend `vdie_id` by array position on the node, DCU
/// `device_id` by minor number, MLU and Metax-GPU `uuid` by card index, as the Go backend did.
pub(super) fn identities(
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
) -> Vec<DeviceIdentity> {
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
