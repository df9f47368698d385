//! Kunlunxin (Baidu) XPUs, in two HAMi device types. vXPU (`XPU`): node annotation
//! `hami.io/node-register-xpu` (JSON array), allocations `hami.io/xpu-devices-allocated`.
//! Whole XPU (`kunlun`): no registration, one device per unit of capacity
//! `kunlunxin.com/xpu`, allocations `hami.io/kunlun-allocated`. Keys verified in HAMi
//! `pkg/device/kunlun/{vdevice,device,config}.go`.

use super::alloc::{decode_aligned, ZeroCores};
use super::{bounded_count, json_devices, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const VXPU_ANNOTATION: &str = "hami.io/node-register-xpu";
pub(crate) const XPU_CAPACITY: &str = "kunlunxin.com/xpu";
pub(crate) const VXPU_ALLOCATED_ANNOTATION: &str = "hami.io/xpu-devices-allocated";
pub(crate) const XPU_ALLOCATED_ANNOTATION: &str = "hami.io/kunlun-allocated";

/// vXPU devices when the node registers them (`alias_id == id`), else whole XPUs from
/// capacity, built as HAMi does: `<node>-kunlun-<i>`, count 100, devmem 98304, devcore 100,
/// type `kunlun`, numa 1 for the second half of the cards. Reading both would count cards
/// twice on a node whose vXPU plugin also advertises the whole-card resource.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    if node
        .annotation(VXPU_ANNOTATION)
        .is_some_and(|v| !v.trim().is_empty())
    {
        return json_devices(node, VXPU_ANNOTATION, Vendor::Kunlunxin);
    }
    let cards = bounded_count(node.capacity(XPU_CAPACITY)?)?;
    Ok((0..cards)
        .map(|i| {
            let mut device = node.device(Vendor::Kunlunxin, format!("{}-kunlun-{i}", node.name));
            device.index = i32::try_from(i).unwrap_or(i32::MAX);
            device.count = 100;
            device.devmem = 98304;
            device.devcore = 100;
            device.device_type = "kunlun".to_string();
            device.health = true;
            device.numa = i32::from(i >= cards / 2);
            device
        })
        .collect())
}

/// Both allocation keys, aligned; whole XPU before vXPU; `0` cores means the whole card.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    out.absorb(decode_aligned(
        pod,
        XPU_ALLOCATED_ANNOTATION,
        ZeroCores::Whole,
    ));
    out.absorb(decode_aligned(
        pod,
        VXPU_ALLOCATED_ANNOTATION,
        ZeroCores::Whole,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{annotated_node, node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn vxpu_registration_wins_over_capacity() {
        let n = node(
            "kl-1",
            &[(
                VXPU_ANNOTATION,
                r#"[{"id":"xpu-0","count":1,"devmem":98304,"devcore":100,"type":"XPU","health":true}]"#,
            )],
            &[(XPU_CAPACITY, "8")],
        );
        let devices =
            decode_node_devices(Vendor::Kunlunxin, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            (devices[0].id.as_str(), devices[0].device_type.as_str()),
            ("xpu-0", "XPU")
        );
        let bad = annotated_node(VXPU_ANNOTATION, "xpu");
        assert_eq!(
            decode_node_devices(Vendor::Kunlunxin, &bad, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "bad_json"
        );
    }

    #[test]
    fn whole_xpus_split_numa_in_halves() {
        let devices = decode_node_devices(
            Vendor::Kunlunxin,
            &node("kl-1", &[], &[(XPU_CAPACITY, "4")]),
            &DeviceContext::default(),
        )
        .unwrap();
        let numa: Vec<_> = devices.iter().map(|d| d.numa).collect();
        assert_eq!(numa, [0, 0, 1, 1]);
        assert_eq!(devices[3].id, "kl-1-kunlun-3");
    }

    #[test]
    fn allocations_of_both_types_are_read() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    (XPU_ALLOCATED_ANNOTATION, "kl-1-kunlun-0,kunlun,98304,100:;"),
                    (VXPU_ALLOCATED_ANNOTATION, "xpu-0,XPU,1024,0:;"),
                ],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        let a = &decoded.containers[0].allocations;
        assert_eq!(
            (a[0].uuid.as_str(), a[1].uuid.as_str(), a[1].usedcores),
            ("kl-1-kunlun-0", "xpu-0", 100)
        );
    }
}
