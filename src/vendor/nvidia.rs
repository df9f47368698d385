//! NVIDIA GPUs shared by HAMi-core. Registration `hami.io/node-nvidia-register`: JSON from
//! HAMi 2.8 on, the legacy CSV before; allocations `hami.io/vgpu-devices-allocated`.
//! Keys verified in HAMi `pkg/device/nvidia/device.go` (`RegisterAnnos`, `SupportDevices`).

use super::alloc::{decode_aligned, ZeroCores};
use super::{csv_register, json_register, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

/// Node annotation the NVIDIA device plugin registers its GPUs in.
pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-nvidia-register";
/// Pod annotation the scheduler records allocations in.
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/vgpu-devices-allocated";

/// Decodes the node's GPUs. JSON when the value starts with `[` (as upstream 2.0 decides),
/// otherwise CSV. Modes `""` and `mps` are shown as `hami-core`: registrations older than
/// device modes only shared through HAMi-core, and the plugin's MPS mode runs HAMi-core.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let Some(value) = node.annotation(REGISTER_ANNOTATION) else {
        return Ok(Vec::new());
    };
    let trimmed = value.trim();
    let entries = if trimmed.is_empty() {
        Vec::new()
    } else if trimmed.starts_with('[') {
        json_register::decode(trimmed)?
    } else {
        csv_register::decode(value)?
    };
    let mut devices = node.registered_devices(Vendor::Nvidia, entries);
    for device in &mut devices {
        if device.mode.is_empty() || device.mode == "mps" {
            device.mode = csv_register::DEFAULT_MODE.to_string();
        }
    }
    Ok(devices)
}

/// Allocations, aligned to containers; a `0` cores field means the whole GPU.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    out.absorb(decode_aligned(pod, ALLOCATED_ANNOTATION, ZeroCores::Whole));
    out
}

#[cfg(test)]
mod tests {
    use crate::device::Vendor;
    use crate::vendor::testutil::{annotated_node, pod};
    use crate::vendor::{decode_node_devices, decode_pod};

    fn decode(value: &str) -> Result<Vec<crate::device::Device>, crate::vendor::DecodeError> {
        decode_node_devices(
            Vendor::Nvidia,
            &annotated_node(super::REGISTER_ANNOTATION, value),
        )
    }

    #[test]
    fn legacy_csv_yields_one_device_per_entry_with_alias_equal_to_id() {
        let devices = decode("GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c,10,15360,100,NVIDIA-Tesla T4,0,true,0,hami-core:GPU-1b2c3d4e-6f70-4a81-9b2c-d3e4f5a6b7c8,10,15360,100,NVIDIA-Tesla T4,0,true,1,hami-core:").unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "GPU-1b2c3d4e-6f70-4a81-9b2c-d3e4f5a6b7c8");
        assert_eq!(devices[1].alias_id, devices[1].id);
        assert_eq!(devices[1].index, 1);
        assert_eq!(devices[1].vendor, Vendor::Nvidia);
        assert_eq!(devices[1].node_uid, "uid-node-a");
    }

    #[test]
    fn json_registration_is_detected_by_leading_bracket() {
        let devices = decode(r#"  [{"id":"GPU-4a1f","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA A100-SXM4-80GB","mode":"hami-core","health":true}]"#).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].devmem, 81920);
        assert!(devices[0].health);
    }

    #[test]
    fn empty_and_mps_modes_show_as_hami_core_but_mig_stays() {
        let devices =
            decode(r#"[{"id":"a"},{"id":"b","mode":"mps"},{"id":"c","mode":"mig"}]"#).unwrap();
        let modes: Vec<_> = devices.iter().map(|d| d.mode.as_str()).collect();
        assert_eq!(modes, ["hami-core", "hami-core", "mig"]);
    }

    #[test]
    fn malformed_registrations_are_errors_and_empty_is_none() {
        assert_eq!(decode("[{").unwrap_err().kind(), "bad_json");
        assert_eq!(decode("GPU-0,1,2").unwrap_err().kind(), "csv_separator");
        assert_eq!(decode("GPU-0,1,2:").unwrap_err().kind(), "csv_field_count");
        assert_eq!(decode("").unwrap(), vec![]);
        assert_eq!(decode("  ").unwrap(), vec![]);
    }

    #[test]
    fn allocations_turn_zero_cores_into_whole_gpu() {
        let p = pod(
            &[(
                super::ALLOCATED_ANNOTATION,
                ";GPU-8f2c,NVIDIA,8000,0:GPU-1b2c,NVIDIA,8000,0:;",
            )],
            &[],
            &["a", "b"],
        );
        let decoded = decode_pod(&p);
        assert!(decoded.containers[0].allocations.is_empty());
        let second = &decoded.containers[1].allocations;
        assert_eq!(second.len(), 2);
        assert!(second
            .iter()
            .all(|a| a.usedcores == 100 && a.usedmem == 8000));
        assert_eq!(second[0].alloc_type, "NVIDIA");
    }
}
