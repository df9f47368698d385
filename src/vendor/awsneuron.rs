//! AWS Inferentia/Trainium Neuron devices. No registration: devices come from node capacity
//! `aws.amazon.com/neuron` (devices) and `aws.amazon.com/neuroncore` (cores); allocations
//! `hami.io/aws-neuron-devices-allocated`. Keys verified in HAMi
//! `pkg/device/awsneuron/device.go` and the chart's device config.
//!
//! HAMi stores compute as a bitmask of the device's cores (`devcore` 3 = cores 0 and 1, an
//! allocation's cores field likewise). Masks mean nothing on a dashboard, so both are shown
//! as core counts here.

use super::alloc::{decode_aligned, ZeroCores};
use super::{bounded_count, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const DEVICE_CAPACITY: &str = "aws.amazon.com/neuron";
pub(crate) const CORE_CAPACITY: &str = "aws.amazon.com/neuroncore";
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/aws-neuron-devices-allocated";

/// One device per Neuron device, as HAMi builds them: `<node>-AWSNeuron-<i>`, count and
/// devcore = cores per device (`neuroncore / neuron`), devmem 0 (not registered), healthy.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let devices = node.capacity(DEVICE_CAPACITY)?;
    let count = bounded_count(devices)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let cores_per_device = i32::try_from(node.capacity(CORE_CAPACITY)? / devices)
        .unwrap_or(0)
        .max(0);
    Ok((0..count)
        .map(|i| {
            let mut device = node.device(Vendor::AwsNeuron, format!("{}-AWSNeuron-{i}", node.name));
            device.index = i32::try_from(i).unwrap_or(i32::MAX);
            device.count = cores_per_device;
            device.devcore = cores_per_device;
            device.device_type = "AWSNeuron".to_string();
            device.health = true;
            device
        })
        .collect())
}

/// Allocations aligned to containers; the cores field (a core bitmask) becomes the number of
/// cores it names.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    let decoded = decode_aligned(pod, ALLOCATED_ANNOTATION, ZeroCores::AsWritten).map(|result| {
        result.map(|mut lists| {
            for allocation in lists.iter_mut().flatten() {
                let cores = u32::try_from(allocation.usedcores).map_or(0, u32::count_ones);
                allocation.usedcores = i32::try_from(cores).unwrap_or(0);
            }
            lists
        })
    });
    out.absorb(decoded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn capacity_yields_devices_with_core_counts() {
        let n = node(
            "inf-1",
            &[],
            &[(DEVICE_CAPACITY, "2"), (CORE_CAPACITY, "4")],
        );
        let devices =
            decode_node_devices(Vendor::AwsNeuron, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "inf-1-AWSNeuron-1");
        assert_eq!(
            (devices[0].count, devices[0].devcore, devices[0].devmem),
            (2, 2, 0)
        );
        let no_cores = node("inf-1", &[], &[(DEVICE_CAPACITY, "1")]);
        assert_eq!(
            decode_node_devices(Vendor::AwsNeuron, &no_cores, &DeviceContext::default()).unwrap()
                [0]
            .devcore,
            0
        );
    }

    #[test]
    fn core_masks_become_core_counts() {
        let decoded = decode_whole_pod(&pod(
            &[(ALLOCATED_ANNOTATION, "inf-1-AWSNeuron-0,AWSNeuron,0,3:inf-1-AWSNeuron-1,AWSNeuron,0,1:inf-1-AWSNeuron-1,AWSNeuron,0,-1:;")],
            &[],
            &["c"],
        ), &DeviceContext::default());
        let cores: Vec<_> = decoded.containers[0]
            .allocations
            .iter()
            .map(|a| a.usedcores)
            .collect();
        assert_eq!(cores, [2, 1, 0]);
    }
}
