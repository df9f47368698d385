//! How a container's device slices were carved, as upstream 2.0's `ContainerReply` says it
//! (`allocation_shape`, `template`, `allocated_cores_known`, `allocated_cores_reason`): the
//! slices' common shape, read one by one by [`crate::cluster::allocation`]; and each slice on
//! its own, as upstream's open MIG work adds it (`devices`, `allocation_shape_reason`).

use serde::Serialize;

use crate::cluster::allocation::describe_allocation;
use crate::cluster::inventory::Inventory;
use crate::device::DeviceAllocation;
use crate::vendor::SliceShape;

/// The 2.0 reply fields that describe one container's allocations as a whole, and one
/// entry per allocation (upstream's open MIG work).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationDescription {
    /// Whether `allocated_cores` is a real figure; `None` leaves the field out of the reply.
    pub allocated_cores_known: Option<bool>,
    /// `whole`, `template`, `soft` or `unknown`.
    pub allocation_shape: String,
    /// Template name when the shape is `template`, else empty.
    pub template: String,
    /// Why the cores are not known, when they are not.
    pub allocated_cores_reason: String,
    /// Why the common shape is `unknown`, when every slice gives the same reason.
    pub allocation_shape_reason: String,
    pub devices: Vec<ContainerDevice>,
}

/// One allocated device of a container (`ContainerDevice` of upstream's open MIG work,
/// `ContainerReply.devices`): unlike the container's shape, a MIG instance is `mig` here,
/// with its placement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDevice {
    /// The device's id (its card uuid), else the uuid the pod recorded.
    pub id: String,
    /// The allocation's device type as the pod recorded it.
    #[serde(rename = "type")]
    pub device_type: String,
    pub allocated_cores: i32,
    pub allocated_cores_known: bool,
    pub allocated_mem: i32,
    /// `whole`, `template`, `soft`, `mig` or `unknown`.
    pub allocation_shape: String,
    /// MIG profile or vNPU template.
    pub template: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig_start: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mig_size: Option<u32>,
    pub allocation_shape_reason: String,
    pub allocated_cores_reason: String,
}

/// The id an allocation is shown as: the device whose alias equals the uuid, else the uuid.
pub fn shown_id<'a>(inventory: &'a Inventory, allocation: &'a DeviceAllocation) -> &'a str {
    inventory
        .device_index_by_alias(&allocation.uuid)
        .and_then(|flat| inventory.device(flat))
        .map_or(allocation.uuid.as_str(), |d| d.id.as_str())
}

fn device_entry(
    inventory: &Inventory,
    allocation: &DeviceAllocation,
    shape: &SliceShape,
) -> ContainerDevice {
    // A pre-2.10 MIG uuid `GPU-…[p-s]` names its GPU.
    let id = match inventory.match_allocation(&allocation.uuid) {
        Some(flat) if shape.mig.is_some() => inventory.device(flat).map(|d| d.id.as_str()),
        _ => None,
    }
    .unwrap_or_else(|| shown_id(inventory, allocation));
    let placement = shape.mig.and_then(|m| m.placement);
    ContainerDevice {
        id: id.to_string(),
        device_type: allocation.alloc_type.clone(),
        allocated_cores: shape.cores.unwrap_or(allocation.usedcores),
        allocated_cores_known: shape.cores.is_some(),
        allocated_mem: allocation.usedmem,
        allocation_shape: if shape.mig.is_some() {
            "mig".to_string()
        } else {
            shape.shape.to_string()
        },
        template: shape.template.clone(),
        mig_start: placement.map(|p| p.0),
        mig_size: placement.map(|p| p.1),
        allocation_shape_reason: if shape.shape == "unknown" {
            shape.reason.to_string()
        } else {
            String::new()
        },
        allocated_cores_reason: if shape.cores.is_none() {
            shape.reason.to_string()
        } else {
            String::new()
        },
    }
}

/// Describes the allocations one container holds (empty slice: a container without any).
/// Shape and template are the slices' common ones, empty when they disagree (so is the
/// shape's reason); the cores are known when every slice's are, and the reason is the first
/// unknown slice's.
pub fn describe_allocations(
    inventory: &Inventory,
    allocations: &[&DeviceAllocation],
) -> AllocationDescription {
    let shapes: Vec<SliceShape> = allocations
        .iter()
        .map(|allocation| describe_allocation(inventory, allocation))
        .collect();
    let devices: Vec<ContainerDevice> = allocations
        .iter()
        .zip(&shapes)
        .map(|(allocation, shape)| device_entry(inventory, allocation, shape))
        .collect();
    let mut shapes = shapes.into_iter();
    let Some(first) = shapes.next() else {
        return AllocationDescription::default();
    };
    let mut shape = first.shape;
    let mut template = first.template;
    let mut shape_reason = if first.shape == "unknown" {
        first.reason
    } else {
        ""
    };
    let mut reason = if first.cores.is_none() {
        first.reason
    } else {
        ""
    };
    let mut known = first.cores.is_some();
    for next in shapes {
        if next.shape != shape {
            shape = "";
        }
        if next.template != template {
            template.clear();
        }
        if next.shape == "unknown" && next.reason != shape_reason {
            shape_reason = "";
        }
        if next.cores.is_none() {
            known = false;
            if reason.is_empty() {
                reason = next.reason;
            }
        }
    }
    if shape.is_empty() {
        template.clear();
    }
    if shape != "unknown" {
        shape_reason = "";
    }
    AllocationDescription {
        allocated_cores_known: Some(known),
        allocation_shape: shape.to_string(),
        template,
        allocated_cores_reason: reason.to_string(),
        allocation_shape_reason: shape_reason.to_string(),
        devices,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::allocation::allocation_cores;
    use crate::cluster::inventory::{build_inventory, node_entry};
    use crate::config::NodeSelectors;
    use crate::device::AllocationFacts;
    use crate::device::{AscendFacts, DeviceContext, GpuFacts};
    use crate::vendor::testutil::node;

    fn inventory(catalog: Option<&str>) -> Inventory {
        let context = DeviceContext {
            catalog: catalog.map(|t| Arc::new(crate::catalog::parse(t).unwrap())),
            ..DeviceContext::default()
        };
        let n = node(
            "npu",
            &[
                (
                    "hami.io/node-register-Ascend910B3",
                    r#"[{"id":"B3-0","count":4,"devmem":65536,"devcore":20,"type":"Ascend910B3","health":true}]"#,
                ),
                (
                    "hami.io/node-nvidia-register",
                    r#"[{"id":"GPU-0","count":10,"devmem":24576,"devcore":100,"type":"L4","mode":"hami-core","health":true}]"#,
                ),
                ("hami-vnpu-core", "false"),
            ],
            &[],
        );
        let mut context = context;
        context.node_vnpu_core.insert("npu".into(), "false".into());
        let entry = node_entry(&n, &NodeSelectors::default(), &context).0;
        build_inventory([&entry].into_iter(), &Default::default(), Arc::new(context))
    }

    fn npu(memory: i32, cores: i32) -> DeviceAllocation {
        DeviceAllocation {
            uuid: "B3-0".into(),
            alloc_type: "Ascend910B3".into(),
            usedmem: memory,
            usedcores: cores,
            facts: AllocationFacts::Ascend(AscendFacts {
                common_word: "Ascend910B3".into(),
                ..AscendFacts::default()
            }),
        }
    }

    fn gpu() -> DeviceAllocation {
        DeviceAllocation {
            uuid: "GPU-0".into(),
            alloc_type: "NVIDIA".into(),
            usedmem: 4096,
            usedcores: 30,
            facts: AllocationFacts::Nvidia(GpuFacts::default()),
        }
    }

    const V2_10: &str = include_str!("../../tests/golden/catalog/device-config-v2.10.yaml");

    #[test]
    fn every_allocation_counts_in_the_snapshot_usage() {
        let snapshot = crate::synthetic::ClusterShape::gpus(2).snapshot();
        assert_eq!(snapshot.usage.len(), snapshot.inventory.device_count());
        let used: i64 = snapshot.usage.iter().map(|u| i64::from(u.core_used)).sum();
        let allocated: i64 = snapshot
            .pods
            .iter()
            .flat_map(|p| p.containers.iter())
            .flat_map(|c| c.allocations.iter())
            .map(|a| i64::from(a.usedcores))
            .sum();
        assert!(allocated > 0);
        assert_eq!(used, allocated);
        assert!(snapshot.usage.iter().all(|u| !u.cores_unknown));
    }

    #[test]
    fn a_container_without_allocations_has_no_description() {
        assert_eq!(
            describe_allocations(&inventory(None), &[]),
            AllocationDescription::default()
        );
    }

    #[test]
    fn slices_that_disagree_leave_shape_and_template_empty() {
        let inv = inventory(None);
        let (template, whole) = (npu(16384, 25), npu(65536, 100));
        let got = describe_allocations(&inv, &[&template, &whole]);
        assert_eq!(
            AllocationDescription {
                devices: Vec::new(),
                ..got.clone()
            },
            AllocationDescription {
                allocated_cores_known: Some(false),
                allocation_shape: String::new(),
                template: String::new(),
                allocated_cores_reason: "catalog_unavailable".into(),
                allocation_shape_reason: String::new(),
                devices: Vec::new(),
            }
        );
        // Each slice keeps its own description.
        let shapes: Vec<_> = got
            .devices
            .iter()
            .map(|d| d.allocated_cores_known)
            .collect();
        assert_eq!(shapes, [false, true]);
        assert_eq!(got.devices[0].allocated_cores_reason, "catalog_unavailable");
        assert_eq!(got.devices[1].allocation_shape, "whole");
        assert!(got.devices.iter().all(|d| d.id == "B3-0"));
        let inv = inventory(Some(V2_10));
        let got = describe_allocations(&inv, &[&template, &template]);
        assert_eq!(got.allocation_shape, "template");
        assert_eq!(got.template, "vir05_1c_16g");
        assert_eq!(got.allocated_cores_known, Some(true));
    }

    #[test]
    fn gpus_and_other_vendors_are_soft_shares_with_known_cores() {
        let inv = inventory(None);
        let plain = DeviceAllocation {
            uuid: "node-dcu-0".into(),
            usedcores: 40,
            ..DeviceAllocation::default()
        };
        let gpu = gpu();
        let got = describe_allocations(&inv, &[&gpu, &plain]);
        assert_eq!(got.allocation_shape, "soft");
        assert_eq!(got.allocated_cores_known, Some(true));
        assert_eq!(allocation_cores(&inv, &gpu), (30, true));
    }

    #[test]
    fn cores_keep_the_decoded_figure_only_without_a_catalog() {
        let unknown_template = npu(4096, 100);
        assert_eq!(
            allocation_cores(&inventory(None), &unknown_template),
            (100, false)
        );
        assert_eq!(
            allocation_cores(&inventory(Some(V2_10)), &unknown_template),
            (0, false),
            "with a catalog an unknown share counts nothing, as upstream"
        );
        assert_eq!(
            allocation_cores(&inventory(Some(V2_10)), &npu(32768, 100)),
            (50, true)
        );
    }

    #[test]
    fn mig_instances_are_mig_per_device_and_template_per_container() {
        let n = node(
            "gpu",
            &[(
                "hami.io/node-nvidia-register",
                r#"[{"id":"GPU-M","count":7,"devmem":40960,"devcore":100,"type":"A100","mode":"mig","health":true},
                    {"id":"GPU-C","count":10,"devmem":40960,"devcore":100,"type":"A100","mode":"hami-core","health":true}]"#,
            )],
            &[],
        );
        let context = DeviceContext::default();
        let entry = node_entry(&n, &NodeSelectors::default(), &context).0;
        let inv = build_inventory([&entry].into_iter(), &Default::default(), Arc::new(context));
        let slice = |uuid: &str, facts: GpuFacts| DeviceAllocation {
            uuid: uuid.into(),
            alloc_type: "NVIDIA".into(),
            usedmem: 20480,
            usedcores: 42,
            facts: AllocationFacts::Nvidia(facts),
        };
        let reserved = slice(
            "GPU-M",
            GpuFacts {
                mig: Some(crate::device::MigReservation {
                    gpu_uuid: "GPU-M".into(),
                    profile: "3g.20gb".into(),
                    start: 4,
                    size: 4,
                }),
                ..GpuFacts::default()
            },
        );
        let got = describe_allocations(&inv, &[&reserved]);
        assert_eq!(
            (got.allocation_shape.as_str(), got.template.as_str()),
            ("template", "3g.20gb")
        );
        let device = &got.devices[0];
        assert_eq!(
            (
                device.allocation_shape.as_str(),
                device.template.as_str(),
                device.mig_start,
                device.mig_size
            ),
            ("mig", "3g.20gb", Some(4), Some(4))
        );
        // A pre-2.10 uuid names its GPU and has no placement.
        let legacy = slice(
            "GPU-M[1-0]",
            GpuFacts {
                legacy_mig: true,
                ..GpuFacts::default()
            },
        );
        let got = describe_allocations(&inv, &[&legacy]);
        let device = &got.devices[0];
        assert_eq!(
            (
                device.id.as_str(),
                device.allocation_shape.as_str(),
                device.mig_start
            ),
            ("GPU-M", "mig", None)
        );
        // Missing reservations on both: the container says why; mixed reasons say nothing.
        let missing = slice("GPU-M", GpuFacts::default());
        let got = describe_allocations(&inv, &[&missing, &missing]);
        assert_eq!(got.allocation_shape, "unknown");
        assert_eq!(got.allocation_shape_reason, "mig_reservation_missing");
        assert_eq!(
            got.devices[1].allocation_shape_reason,
            "mig_reservation_missing"
        );
        assert!(got.devices[1].allocated_cores_known);
        let mismatch = slice(
            "GPU-C",
            GpuFacts {
                mig: Some(crate::device::MigReservation {
                    gpu_uuid: "GPU-C".into(),
                    profile: "1g.5gb".into(),
                    start: 0,
                    size: 1,
                }),
                ..GpuFacts::default()
            },
        );
        let got = describe_allocations(&inv, &[&missing, &mismatch]);
        assert_eq!(got.allocation_shape, "unknown");
        assert_eq!(got.allocation_shape_reason, "");
        assert_eq!(
            got.devices[1].allocation_shape_reason,
            "mig_reservation_mismatch"
        );
        let hami_core = slice("GPU-C", GpuFacts::default());
        let got = describe_allocations(&inv, &[&hami_core, &missing]);
        assert_eq!(
            (
                got.allocation_shape.as_str(),
                got.allocation_shape_reason.as_str()
            ),
            ("", "")
        );
        assert_eq!(got.devices[0].allocation_shape, "soft");
    }
}
