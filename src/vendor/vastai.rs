//! VastAI accelerators: registration `hami.io/node-va-register` (JSON array), allocations
//! `hami.io/Vastai-devices-allocated` (HAMi formats the key from the common word `Vastai`).
//! Keys verified in HAMi `pkg/device/vastai/device.go`.

use super::alloc::{decode_aligned, ZeroCores};
use super::{json_devices, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-va-register";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/Vastai-devices-allocated";

/// Devices from the JSON registration, `alias_id == id`; `devcore` forced to 100 as HAMi
/// does, since the plugin does not register compute.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let mut devices = json_devices(node, REGISTER_ANNOTATION, Vendor::Vastai)?;
    for device in &mut devices {
        device.devcore = 100;
    }
    Ok(devices)
}

/// Allocations aligned to containers; `0` cores means the whole device.
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
            r#"[{"id":"va-0","count":1,"devmem":16384,"devcore":7,"type":"VA1","health":true}]"#,
        );
        let devices = decode_node_devices(Vendor::Vastai, &n, &DeviceContext::default()).unwrap();
        assert_eq!((devices[0].id.as_str(), devices[0].devcore), ("va-0", 100));
        let bad = annotated_node(REGISTER_ANNOTATION, r#"[{"count":"x"}]"#);
        assert_eq!(
            decode_node_devices(Vendor::Vastai, &bad, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "json_shape"
        );
    }

    #[test]
    fn allocations_use_the_capitalised_key() {
        let decoded = decode_whole_pod(
            &pod(
                &[(ALLOCATED_ANNOTATION, "va-0,Vastai,1024,30:;")],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        assert_eq!(decoded.containers[0].allocations[0].uuid, "va-0");
    }
}
