//! Hygon DCU (the legacy Hygon integration): registration `hami.io/node-dcu-register` in the
//! legacy CSV, allocations `hami.io/dcu-devices-allocated` whose uuids are node-local
//! (`DCU-<minor>`). Keys verified in HAMi `pkg/device/hygon/device.go` (before its HCU
//! rename). HAMi's newer HCU integration lives in [`super::hcu`].

use std::collections::HashMap;

use super::alloc::{decode_aligned, ZeroCores};
use super::{csv_register, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-dcu-register";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/dcu-devices-allocated";

/// The node-local card number of a DCU id: the second `-`-separated part (`DCU-3` → `3`).
fn card_part(id: &str) -> Option<&str> {
    id.split('-').nth(1)
}

/// Allocation key of a card: `<node>-dcu-<card>`, the form allocations are rewritten to.
fn alias(node: &str, card: &str) -> String {
    format!("{node}-dcu-{card}")
}

/// Devices from the CSV registration. `alias_id` is `<node>-dcu-<card>` right away (the Go
/// backend set it only when Prometheus knew the card, leaving allocations unmatched
/// otherwise); ids without a `-` keep `alias_id == id`. `id` stays the registered id until
/// [`apply_dcu_device_ids`] puts in the exporter's `device_id`.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let Some(value) = node
        .annotation(REGISTER_ANNOTATION)
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(Vec::new());
    };
    let mut devices = node.registered_devices(Vendor::Dcu, csv_register::decode(value)?);
    for device in &mut devices {
        if let Some(card) = card_part(&device.id) {
            device.alias_id = alias(node.name, card);
        }
    }
    Ok(devices)
}

/// Prometheus enrichment hook: `device_id_by_minor` maps the `minor_number` label of
/// `dcu_temp` to its `device_id` label. A DCU whose card part has an entry takes that id
/// (its `alias_id` is unchanged); others keep the registered id, as in Go.
pub fn apply_dcu_device_ids(devices: &mut [Device], device_id_by_minor: &HashMap<String, String>) {
    for device in devices.iter_mut().filter(|d| d.vendor == Vendor::Dcu) {
        let found = device
            .alias_id
            .rsplit_once("-dcu-")
            .and_then(|(_, card)| device_id_by_minor.get(card))
            .filter(|id| !id.is_empty());
        if let Some(id) = found {
            device.id = id.clone();
        }
    }
}

/// Allocations aligned to containers; uuids rewritten to `<node>-dcu-<card>` (node from
/// `hami.io/vgpu-node`, else `spec.nodeName`); a uuid without `-` is kept as written (the Go
/// backend panicked); a `0` cores field means the whole card.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    let decoded = decode_aligned(pod, ALLOCATED_ANNOTATION, ZeroCores::Whole).map(|result| {
        result.map(|mut lists| {
            for allocation in lists.iter_mut().flatten() {
                if let Some(card) = card_part(&allocation.uuid) {
                    allocation.uuid = alias(pod.node_name, card);
                }
            }
            lists
        })
    });
    out.absorb(decoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{annotated_node, node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn csv_registration_gets_node_scoped_aliases() {
        let n = node(
            "dcu-node",
            &[(REGISTER_ANNOTATION, "DCU-0,4,65520,100,DCU,0,true,0,hami-core:DCU-1,4,65520,100,DCU,1,true,1,hami-core:")],
            &[],
        );
        let devices = decode_node_devices(Vendor::Dcu, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "DCU-1");
        assert_eq!(devices[1].alias_id, "dcu-node-dcu-1");
        assert_eq!(devices[1].devmem, 65520);
    }

    #[test]
    fn ids_without_dash_keep_alias_equal_to_id_and_bad_csv_fails() {
        let devices = decode_node_devices(
            Vendor::Dcu,
            &annotated_node(REGISTER_ANNOTATION, "card0,4,1,100,DCU,0,true:"),
            &DeviceContext::default(),
        )
        .unwrap();
        assert_eq!(devices[0].alias_id, "card0");
        let err = decode_node_devices(
            Vendor::Dcu,
            &annotated_node(REGISTER_ANNOTATION, "DCU-0,4"),
            &DeviceContext::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), "csv_separator");
        assert_eq!(
            decode_node_devices(
                Vendor::Dcu,
                &annotated_node(REGISTER_ANNOTATION, ":"),
                &DeviceContext::default()
            )
            .unwrap(),
            vec![]
        );
    }

    #[test]
    fn prometheus_device_ids_replace_ids_by_minor_number() {
        let mut devices = decode_node_devices(
            Vendor::Dcu,
            &annotated_node(
                REGISTER_ANNOTATION,
                "DCU-0,4,1,100,DCU,0,true:DCU-1,4,1,100,DCU,0,true:",
            ),
            &DeviceContext::default(),
        )
        .unwrap();
        apply_dcu_device_ids(
            &mut devices,
            &HashMap::from([("1".to_string(), "0x66a1".to_string())]),
        );
        assert_eq!(devices[0].id, "DCU-0");
        assert_eq!(
            (devices[1].id.as_str(), devices[1].alias_id.as_str()),
            ("0x66a1", "node-a-dcu-1")
        );
    }

    #[test]
    fn allocations_use_node_scoped_uuids_and_never_panic_on_odd_uuids() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    ("hami.io/vgpu-node", "dcu-node"),
                    (ALLOCATED_ANNOTATION, "DCU-1,DCU,2000,60:weird,DCU,1,0:;"),
                ],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        let a = &decoded.containers[0].allocations;
        assert_eq!((a[0].uuid.as_str(), a[0].usedcores), ("dcu-node-dcu-1", 60));
        assert_eq!((a[1].uuid.as_str(), a[1].usedcores), ("weird", 100));
    }
}
