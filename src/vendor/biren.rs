//! Biren GPUs: registration `hami.io/node-biren-register` (JSON array), allocations
//! `hami.io/Biren-devices-allocated` (HAMi formats the key from the common word `Biren`).
//! Keys verified in HAMi `pkg/device/biren/device.go`.

use super::alloc::{decode_aligned, ZeroCores};
use super::{json_devices, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-biren-register";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/Biren-devices-allocated";

/// Devices from the JSON registration, `alias_id == id`. `devcore` is forced to 100 as HAMi
/// does: the plugin does not register compute, and HAMi schedules it as a percentage.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let mut devices = json_devices(node, REGISTER_ANNOTATION, Vendor::Biren)?;
    for device in &mut devices {
        device.devcore = 100;
    }
    Ok(devices)
}

/// Allocations aligned to containers; `0` cores means the whole GPU.
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
    fn json_registration_gets_percentage_cores() {
        let n = annotated_node(
            REGISTER_ANNOTATION,
            r#"[{"id":"br-0","count":4,"devmem":65536,"type":"BR106","health":true}]"#,
        );
        let devices = decode_node_devices(Vendor::Biren, &n, &DeviceContext::default()).unwrap();
        assert_eq!(
            (devices[0].id.as_str(), devices[0].devcore, devices[0].count),
            ("br-0", 100, 4)
        );
        let bad = annotated_node(REGISTER_ANNOTATION, "[");
        assert!(decode_node_devices(Vendor::Biren, &bad, &DeviceContext::default()).is_err());
    }

    #[test]
    fn allocations_use_the_capitalised_key() {
        let decoded = decode_whole_pod(
            &pod(
                &[(ALLOCATED_ANNOTATION, "br-0,Biren,1024,0:;")],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        assert_eq!(decoded.containers[0].allocations[0].usedcores, 100);
    }
}
