//! How a container's device slices were carved, as upstream 2.0's `ContainerReply` says it
//! (`allocation_shape`, `template`, `allocated_cores_known`, `allocated_cores_reason`): the
//! slices' common shape, read one by one by [`crate::cluster::allocation`].

use crate::cluster::allocation::describe_allocation;
use crate::cluster::inventory::Inventory;
use crate::device::DeviceAllocation;

/// The 2.0 reply fields that describe one container's allocations as a whole.
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
}

/// Describes the allocations one container holds (empty slice: a container without any).
/// Shape and template are the slices' common ones, empty when they disagree; the cores are
/// known when every slice's are, and the reason is the first unknown slice's.
pub fn describe_allocations(
    inventory: &Inventory,
    allocations: &[&DeviceAllocation],
) -> AllocationDescription {
    let mut shapes = allocations
        .iter()
        .map(|allocation| describe_allocation(inventory, allocation));
    let Some(first) = shapes.next() else {
        return AllocationDescription::default();
    };
    let mut shape = first.shape;
    let mut template = first.template;
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
    AllocationDescription {
        allocated_cores_known: Some(known),
        allocation_shape: shape.to_string(),
        template,
        allocated_cores_reason: reason.to_string(),
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
            got,
            AllocationDescription {
                allocated_cores_known: Some(false),
                allocation_shape: String::new(),
                template: String::new(),
                allocated_cores_reason: "catalog_unavailable".into(),
            }
        );
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
}
