//! Hygon HCU, HAMi's current Hygon integration (HAMi v2.10 renamed its Hygon backend from DCU
//! to HCU; upstream WebUI 2.0 added it as a provider next to legacy DCU). Registration
//! `hami.io/node-hcu-register` in the legacy CSV, allocations `hami.io/hcu-devices-allocated`
//! carrying the registered `HCU-<serial>` ids. Keys verified in HAMi
//! `pkg/device/hygon/device.go` (v2.10, `RegisterAnnos`, `SupportDevices`) and upstream
//! WebUI `server/internal/provider/hygon/hcu.go`.

use super::alloc::{decode_aligned, ZeroCores};
use super::{csv_devices, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-hcu-register";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/hcu-devices-allocated";

/// Devices as upstream 2.0 shows them: `id` is the physical serial (the registered id
/// without its `HCU-` prefix, which is what hcu-exporter calls `device_id`), `alias_id` the
/// full registered id that allocations carry. A device whose id lacks the prefix or has an
/// empty serial cannot be joined to anything and is dropped. `mode` is empty: the
/// registered `hami-core` is only the CSV format's default, not a sharing mode.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let devices = csv_devices(node, REGISTER_ANNOTATION, Vendor::Hcu)?;
    Ok(devices
        .into_iter()
        .filter_map(|mut device| {
            let serial = device
                .id
                .strip_prefix("HCU-")
                .filter(|s| !s.is_empty())?
                .to_string();
            device.alias_id = std::mem::replace(&mut device.id, serial);
            device.mode.clear();
            Some(device)
        })
        .collect())
}

/// Allocations aligned to containers, uuids as written; a `0` cores field means the whole
/// card, as for DCU.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    out.absorb(decode_aligned(pod, ALLOCATED_ANNOTATION, ZeroCores::Whole));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{annotated_node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn serial_becomes_id_and_full_id_the_alias() {
        let n = annotated_node(
            REGISTER_ANNOTATION,
            "HCU-serial-01,4,65536,100,HCU-K100_AI,0,true,3,hami-core:HCU-,4,1,100,HCU,0,true:bogus,4,1,100,HCU,0,true:",
        );
        let devices = decode_node_devices(Vendor::Hcu, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(
            (d.id.as_str(), d.alias_id.as_str()),
            ("serial-01", "HCU-serial-01")
        );
        assert_eq!(
            (d.index, d.count, d.devmem, d.mode.as_str()),
            (3, 4, 65536, "")
        );
        assert_eq!(d.device_type, "HCU-K100_AI");
    }

    #[test]
    fn malformed_registration_is_an_error() {
        let n = annotated_node(REGISTER_ANNOTATION, "HCU-1,4,1:");
        assert_eq!(
            decode_node_devices(Vendor::Hcu, &n, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "csv_field_count"
        );
    }

    #[test]
    fn allocations_keep_registered_ids_and_align_with_init_containers() {
        let decoded = decode_whole_pod(
            &pod(
                &[(
                    ALLOCATED_ANNOTATION,
                    ";HCU-serial-with-hyphens,HCU,8192,25:;",
                )],
                &["init"],
                &["worker"],
            ),
            &DeviceContext::default(),
        );
        let a = &decoded.containers[0].allocations;
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].uuid.as_str(), a[0].usedmem, a[0].usedcores),
            ("HCU-serial-with-hyphens", 8192, 25)
        );
    }
}
