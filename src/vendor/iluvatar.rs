//! Iluvatar CoreX GPUs. HAMi registers each chip model ("common word", from the
//! `iluvatars[]` device config) separately: node annotation `hami.io/node-<word>-register`
//! in the legacy CSV, pod allocations `hami.io/<word>-devices-allocated`. The words are the
//! defaults of HAMi's chart: `MR-V100`, `MR-V50`, `BI-V150`, `BI-V100`. Keys verified in
//! HAMi `pkg/device/iluvatar/device.go` and `charts/hami/templates/scheduler/device-configmap.yaml`.

use super::alloc::{decode_aligned, ZeroCores};
use super::{csv_devices, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

/// Chip words HAMi's default config knows. Other words cannot be told apart from other
/// vendors' `hami.io/node-*-register` keys, so only these are read.
pub(crate) const WORDS: [&str; 4] = ["MR-V100", "MR-V50", "BI-V150", "BI-V100"];

pub(crate) fn register_annotation(word: &str) -> String {
    format!("hami.io/node-{word}-register")
}

pub(crate) fn allocated_annotation(word: &str) -> String {
    format!("hami.io/{word}-devices-allocated")
}

/// Devices of every known word, in [`WORDS`] order, `alias_id == id`. A malformed
/// registration of one word fails the vendor for this node.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let mut devices = Vec::new();
    for word in WORDS {
        devices.extend(csv_devices(
            node,
            &register_annotation(word),
            Vendor::Iluvatar,
        )?);
    }
    Ok(devices)
}

/// Allocations of every known word, aligned; `0` cores means the whole GPU.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    for word in WORDS {
        out.absorb(decode_aligned(
            pod,
            &allocated_annotation(word),
            ZeroCores::Whole,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{annotated_node, node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn csv_registrations_of_each_word_are_read() {
        let n = node(
            "ix-1",
            &[
                ("hami.io/node-MR-V100-register", "GPU-bad51c5a-ed4c-591d-91bf-c04a12e19eae,10,8192,100,MR-V100,0,true,0,hami-core:"),
                ("hami.io/node-BI-V150-register", "GPU-1,16,32768,100,BI-V150,1,true:"),
            ],
            &[],
        );
        let devices = decode_node_devices(Vendor::Iluvatar, &n, &DeviceContext::default()).unwrap();
        let types: Vec<_> = devices.iter().map(|d| d.device_type.as_str()).collect();
        assert_eq!(types, ["MR-V100", "BI-V150"]);
        assert_eq!(
            devices[0].alias_id,
            "GPU-bad51c5a-ed4c-591d-91bf-c04a12e19eae"
        );
        assert_eq!(devices[1].numa, 1);
    }

    #[test]
    fn malformed_registration_is_an_error() {
        let n = annotated_node("hami.io/node-MR-V50-register", "[]");
        assert_eq!(
            decode_node_devices(Vendor::Iluvatar, &n, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "csv_separator"
        );
    }

    #[test]
    fn allocations_of_each_word_are_read() {
        let decoded = decode_whole_pod(
            &pod(
                &[(
                    "hami.io/MR-V100-devices-allocated",
                    "GPU-bad51c5a,MR-V100,4096,0:;",
                )],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        assert_eq!(decoded.containers[0].allocations[0].usedcores, 100);
    }
}
