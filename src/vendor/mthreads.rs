//! Moore Threads GPUs shared as sGPUs. No registration: devices come from node capacity
//! `mthreads.com/sgpu-core` (16 core units per GPU) and `mthreads.com/sgpu-memory` (512-MiB
//! units); allocations `hami.io/mthreads-vgpu-devices-allocated`. Keys and units verified
//! in HAMi `pkg/device/mthreads/device.go` (`coresPerMthreadsGPU`, `MemoryFactor`).

use super::alloc::{decode_aligned, ZeroCores};
use super::{bounded_count, number, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const CORES_CAPACITY: &str = "mthreads.com/sgpu-core";
pub(crate) const MEMORY_CAPACITY: &str = "mthreads.com/sgpu-memory";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/mthreads-vgpu-devices-allocated";

/// Core units of one GPU.
const CORES_PER_GPU: i64 = 16;
/// MiB per memory unit.
const MEMORY_UNIT_MIB: i64 = 512;

/// One device per 16 core units (`i` while `i × 16 < cores`), as HAMi builds them:
/// `<node>-mthreads-<i>`, count 100, devcore 16 (allocations use the same core units),
/// devmem `memory × 512 × 16 / cores`, type `Mthreads`, healthy.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let cores = node.capacity(CORES_CAPACITY)?;
    if cores <= 0 {
        return Ok(Vec::new());
    }
    let count = bounded_count((cores - 1) / CORES_PER_GPU + 1)?;
    let memory = node.capacity(MEMORY_CAPACITY)?;
    let devmem = memory
        .checked_mul(MEMORY_UNIT_MIB * CORES_PER_GPU)
        .map(|m| m / cores)
        .and_then(|m| i32::try_from(m).ok())
        .ok_or_else(|| number::overflow(MEMORY_CAPACITY, &memory.to_string()))?;
    Ok((0..count)
        .map(|i| {
            let mut device = node.device(Vendor::Mthreads, format!("{}-mthreads-{i}", node.name));
            device.index = i32::try_from(i).unwrap_or(i32::MAX);
            device.count = 100;
            device.devmem = devmem;
            device.devcore = 16;
            device.device_type = "Mthreads".to_string();
            device.health = true;
            device
        })
        .collect())
}

/// Allocations aligned to containers; cores are core units, taken as written.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    out.absorb(decode_aligned(
        pod,
        ALLOCATED_ANNOTATION,
        ZeroCores::AsWritten,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn capacity_yields_one_device_per_16_core_units() {
        let n = node(
            "mt-1",
            &[],
            &[(CORES_CAPACITY, "32"), (MEMORY_CAPACITY, "96")],
        );
        let devices = decode_node_devices(Vendor::Mthreads, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "mt-1-mthreads-1");
        assert_eq!(
            (devices[0].devmem, devices[0].devcore, devices[0].count),
            (96 * 512 * 16 / 32, 16, 100)
        );
    }

    #[test]
    fn bad_capacities() {
        assert_eq!(
            decode_node_devices(
                Vendor::Mthreads,
                &node("n", &[], &[]),
                &DeviceContext::default()
            )
            .unwrap(),
            vec![]
        );
        let bad = node("n", &[], &[(CORES_CAPACITY, "16"), (MEMORY_CAPACITY, "1E")]);
        assert_eq!(
            decode_node_devices(Vendor::Mthreads, &bad, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "overflow"
        );
    }

    #[test]
    fn zero_cores_stay_zero() {
        let decoded = decode_whole_pod(
            &pod(
                &[(ALLOCATED_ANNOTATION, "mt-1-mthreads-0,Mthreads,1024,0:;")],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        assert_eq!(decoded.containers[0].allocations[0].usedcores, 0);
    }
}
