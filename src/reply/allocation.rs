//! How a container's device slices were carved (upstream 2.0's `allocation_shape`,
//! `template`, `allocated_cores_known`, `allocated_cores_reason` of `ContainerReply`), and
//! the compute share each slice holds once HAMi's device configuration is applied.
//!
//! Kept apart from the list builders because the answer depends on the vendor and, for
//! Ascend, on HAMi's device catalog: the container builders only ask [`describe_allocations`]
//! (and [`allocation_cores`] for the figure), the card replies [`device_core_usage`]. All of
//! it reads the pod-side facts decoded with each allocation against the inventory's
//! [`DeviceContext`](crate::device::DeviceContext), so a new catalog applies at once.

use crate::cluster::snapshot::{ClusterSnapshot, Inventory};
use crate::device::{AllocationFacts, DeviceAllocation};
use crate::vendor::shapes::{gpu_shape, interpret_ascend, CardFacts};
use crate::vendor::SliceShape;

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

/// The shape of one slice, read against the inventory: Ascend slices through upstream's
/// interpretation (catalog, node `hami-vnpu-core`, policy for annotation-less pods), NVIDIA
/// slices through their GPU's registered mode and MIG reservation, every other vendor a
/// `soft` share with the cores HAMi recorded.
pub fn describe_allocation(inventory: &Inventory, allocation: &DeviceAllocation) -> SliceShape {
    let context = &inventory.context;
    let device = inventory
        .match_allocation(&allocation.uuid)
        .and_then(|flat| inventory.device(flat));
    match &allocation.facts {
        AllocationFacts::Plain => SliceShape::known("soft", String::new(), allocation.usedcores),
        AllocationFacts::Nvidia(facts) => gpu_shape(
            facts,
            &allocation.uuid,
            device.map(|d| d.mode.as_str()),
            allocation.usedcores,
        ),
        AllocationFacts::Ascend(facts) => {
            let card = CardFacts {
                node_read: device.is_some(),
                node_vnpu_core: device
                    .and_then(|d| context.node_vnpu_core.get(&d.node_name))
                    .map(String::as_str),
                card_memory: device.map_or(0, |d| i64::from(d.devmem)),
            };
            interpret_ascend(
                facts,
                i64::from(allocation.usedmem),
                card,
                context.catalog.as_deref(),
                context.annotationless_pod_mode,
            )
        }
    }
}

/// The compute share a slice is shown with, and whether it is known. With HAMi's catalog
/// loaded this is the interpreted share (0 when unknown, as upstream); without one the
/// figure decoded from the pod is kept (the built-in template table), so replies stay what
/// they were before the catalog existed.
pub fn allocation_cores(inventory: &Inventory, allocation: &DeviceAllocation) -> (i32, bool) {
    let shape = describe_allocation(inventory, allocation);
    let known = shape.cores.is_some();
    if inventory.context.catalog.is_none() {
        return (allocation.usedcores, known);
    }
    (shape.cores.unwrap_or(0), known)
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

/// Per-device compute in use as the card replies show it, aligned with
/// `inventory.devices`: the sum of [`allocation_cores`] over the tracked allocations on the
/// device, and whether all of them are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreUsage {
    pub core_used: i32,
    pub known: bool,
}

impl Default for CoreUsage {
    fn default() -> Self {
        Self {
            core_used: 0,
            known: true,
        }
    }
}

/// [`CoreUsage`] of every device, made once per snapshot ([`ClusterSnapshot::core_usage`]).
pub fn device_core_usage(snapshot: &ClusterSnapshot) -> &[CoreUsage] {
    snapshot.core_usage.get_or_init(|| core_usage_of(snapshot))
}

/// One pass over the allocations of the snapshot's pods.
fn core_usage_of(snapshot: &ClusterSnapshot) -> Vec<CoreUsage> {
    let inventory = &snapshot.inventory;
    let mut usage = vec![CoreUsage::default(); inventory.device_count()];
    let allocations = snapshot
        .pods
        .iter()
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.allocations.iter());
    for allocation in allocations {
        let Some(slot) = inventory
            .match_allocation(&allocation.uuid)
            .and_then(|flat| usage.get_mut(flat))
        else {
            continue;
        };
        let (cores, known) = allocation_cores(inventory, allocation);
        slot.core_used = slot.core_used.saturating_add(cores);
        slot.known &= known;
    }
    usage
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cluster::node_cache::{build_inventory_with, node_entry_with};
    use crate::config::NodeSelectors;
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
        let entry = node_entry_with(&n, &NodeSelectors::default(), &context).0;
        build_inventory_with([&entry].into_iter(), &Default::default(), Arc::new(context))
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
    fn core_usage_is_made_once_per_snapshot_and_counts_every_allocation() {
        let snapshot = crate::synthetic::ClusterShape::gpus(2).snapshot();
        let usage = device_core_usage(&snapshot);
        assert_eq!(usage.len(), snapshot.inventory.device_count());
        // The same slice, not a second pass.
        assert!(std::ptr::eq(usage, device_core_usage(&snapshot)));
        let used: i64 = usage.iter().map(|u| i64::from(u.core_used)).sum();
        let allocated: i64 = snapshot
            .pods
            .iter()
            .flat_map(|p| p.containers.iter())
            .flat_map(|c| c.allocations.iter())
            .map(|a| i64::from(a.usedcores))
            .sum();
        assert!(allocated > 0);
        assert_eq!(used, allocated);
        assert!(usage.iter().all(|u| u.known));
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
