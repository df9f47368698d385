//! AMD GPUs through HAMi's AMD backend (amd-device-plugin in HAMi mode): registration
//! `hami.io/node-amd-register` (JSON array), allocations `hami.io/amd-devices-allocated`.
//! Keys verified in HAMi `pkg/device/amd/device.go` and upstream WebUI
//! `server/internal/provider/amd/`.

use super::alloc::{decode_aligned, ZeroCores};
use super::{json_devices, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-amd-register";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/amd-devices-allocated";

/// Devices from the JSON registration, `alias_id == id`. `mode` is cleared as upstream 2.0
/// does: AMD has no sharing modes, whatever the plugin wrote is a format default.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let mut devices = json_devices(node, REGISTER_ANNOTATION, Vendor::Amd)?;
    for device in &mut devices {
        device.mode.clear();
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
    fn json_registration_yields_devices_without_mode() {
        let n = annotated_node(
            REGISTER_ANNOTATION,
            r#"[{"id":"GPU-0","count":1,"devmem":196608,"devcore":100,"type":"AMD-MI300X","mode":"hami-core","health":true}]"#,
        );
        let devices = decode_node_devices(Vendor::Amd, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            (
                devices[0].alias_id.as_str(),
                devices[0].devmem,
                devices[0].mode.as_str()
            ),
            ("GPU-0", 196608, "")
        );
        assert_eq!(devices[0].device_type, "AMD-MI300X");
    }

    #[test]
    fn malformed_or_csv_registration_is_an_error() {
        let n = annotated_node(REGISTER_ANNOTATION, "GPU-0,1,1,1,AMD,0,true:");
        assert_eq!(
            decode_node_devices(Vendor::Amd, &n, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "bad_json"
        );
        let n = annotated_node(REGISTER_ANNOTATION, r#"{"id":"GPU-0"}"#);
        assert_eq!(
            decode_node_devices(Vendor::Amd, &n, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "json_shape"
        );
    }

    #[test]
    fn allocations_are_aligned() {
        let decoded = decode_whole_pod(
            &pod(
                &[(ALLOCATED_ANNOTATION, ";GPU-0,AMD,4096,50:;")],
                &[],
                &["a", "b"],
            ),
            &DeviceContext::default(),
        );
        assert!(decoded.containers[0].allocations.is_empty());
        assert_eq!(decoded.containers[1].allocations[0].usedcores, 50);
    }
}
