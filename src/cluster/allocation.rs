//! How one device slice reads against the inventory: its shape (upstream 2.0's
//! `allocation_shape`, `template`) and the compute share it holds once HAMi's device
//! configuration is applied.
//!
//! The answer depends on the vendor and, for Ascend, on HAMi's device catalog, so it reads
//! the pod-side facts decoded with each allocation against the inventory's
//! [`DeviceContext`](crate::device::DeviceContext): a new catalog applies at once. The
//! snapshot sums [`allocation_cores`] per device when it is built; the container replies
//! describe whole containers with it.

use crate::cluster::inventory::Inventory;
use crate::device::{AllocationFacts, DeviceAllocation};
use crate::vendor::shapes::{gpu_shape, interpret_ascend, CardFacts};
use crate::vendor::SliceShape;

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
        AllocationFacts::Plain | AllocationFacts::Dra(_) => {
            SliceShape::known("soft", String::new(), allocation.usedcores)
        }
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
