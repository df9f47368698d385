//! MetaX GPUs, in two modes. Full-GPU mode: node capacity `metax-tech.com/gpu` > 0, one
//! device per GPU. sGPU mode (capacity absent or 0): node annotation
//! `metax-tech.com/node-gpu-devices`, a JSON array of `{uuid, bdf, model, totalDevCount,
//! totalCompute, totalVRam, numa, healthy, …}`. Allocations:
//! `hami.io/metax-gpu-devices-allocated` (type `Metax-GPU`) and
//! `hami.io/metax-sgpu-devices-allocated` (type `Metax-SGPU`). Keys verified in HAMi
//! `pkg/device/metax/{device,sdevice,protocol,config}.go`.
//!
//! The Go backend built both modes from Prometheus `mx_gpu_state` (no series, no devices);
//! here the Kubernetes objects alone give the devices, and telemetry enrichment (uuid,
//! model, driver, memory of full GPUs) is applied later by the caller.

use serde_json::Value;

use super::alloc::{decode_aligned, ZeroCores};
use super::json_register::{array_of_objects, boolean, int, parse, string};
use super::{bounded_count, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const GPU_CAPACITY: &str = "metax-tech.com/gpu";
pub(crate) const SGPU_ANNOTATION: &str = "metax-tech.com/node-gpu-devices";
pub(crate) const GPU_ALLOCATED_ANNOTATION: &str = "hami.io/metax-gpu-devices-allocated";
pub(crate) const SGPU_ALLOCATED_ANNOTATION: &str = "hami.io/metax-sgpu-devices-allocated";

const MODE: &str = "hami-core";

/// Full-GPU mode when the capacity is positive, else sGPU mode from the annotation.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let gpus = node.capacity(GPU_CAPACITY)?;
    if gpus > 0 {
        return full_gpus(node, bounded_count(gpus)?);
    }
    match node
        .annotation(SGPU_ANNOTATION)
        .filter(|v| !v.trim().is_empty())
    {
        Some(value) => sgpus(node, &parse(value)?),
        None => Ok(Vec::new()),
    }
}

/// Placeholder devices `<node>-metax-<i>` (the ids HAMi itself allocates full GPUs by), so
/// `Metax-GPU` allocations match before any enrichment. Count 1, devcore 100, mode
/// `hami-core`, type `Metax-GPU`, healthy; devmem 0 until `mx_memory_total` is known.
fn full_gpus(node: &NodeView<'_>, count: usize) -> Result<Vec<Device>, DecodeError> {
    Ok((0..count)
        .map(|i| {
            let mut device = node.device(Vendor::Metax, format!("{}-metax-{i}", node.name));
            device.index = i32::try_from(i).unwrap_or(i32::MAX);
            device.count = 1;
            device.devcore = 100;
            device.mode = MODE.to_string();
            device.device_type = "Metax-GPU".to_string();
            device.health = true;
            device
        })
        .collect())
}

/// sGPU devices: `id` and `alias_id` are the annotation `uuid` (the key sGPU allocations
/// use; Go left the alias empty, matching every allocation, when telemetry lacked the
/// uuid), count `totalDevCount`, devmem `totalVRam` (MiB), devcore `totalCompute`, numa,
/// health `healthy`, type the annotation `model` (else `Metax-SGPU`), index the array
/// position until telemetry supplies `deviceId`.
fn sgpus(node: &NodeView<'_>, value: &Value) -> Result<Vec<Device>, DecodeError> {
    array_of_objects(value)?
        .into_iter()
        .enumerate()
        .map(|(position, fields)| {
            let mut device = node.device(Vendor::Metax, String::new());
            device.mode = MODE.to_string();
            device.index = i32::try_from(position).unwrap_or(i32::MAX);
            let mut model = None;
            for (key, value) in fields {
                match key.to_ascii_lowercase().as_str() {
                    "uuid" => device.id = string("uuid", value)?.unwrap_or_default(),
                    "model" => model = string("model", value)?,
                    "totaldevcount" => device.count = int("totalDevCount", value)?.unwrap_or(0),
                    "totalcompute" => device.devcore = int("totalCompute", value)?.unwrap_or(0),
                    "totalvram" => device.devmem = int("totalVRam", value)?.unwrap_or(0),
                    "numa" => device.numa = int("numa", value)?.unwrap_or(0),
                    "healthy" => device.health = boolean("healthy", value)?.unwrap_or(false),
                    _ => {}
                }
            }
            device.alias_id = device.id.clone();
            device.device_type = model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "Metax-SGPU".to_string());
            Ok(device)
        })
        .collect()
}

/// Both allocation keys, aligned; GPU lists before sGPU lists; `0` cores means whole.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    out.absorb(decode_aligned(
        pod,
        GPU_ALLOCATED_ANNOTATION,
        ZeroCores::Whole,
    ));
    out.absorb(decode_aligned(
        pod,
        SGPU_ALLOCATED_ANNOTATION,
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
    fn capacity_selects_full_gpu_mode_with_placeholder_ids() {
        let n = node("mx-1", &[(SGPU_ANNOTATION, "[]")], &[(GPU_CAPACITY, "2")]);
        let devices = decode_node_devices(Vendor::Metax, &n, &DeviceContext::default()).unwrap();
        let ids: Vec<_> = devices.iter().map(|d| d.alias_id.as_str()).collect();
        assert_eq!(ids, ["mx-1-metax-0", "mx-1-metax-1"]);
        assert_eq!(
            (devices[1].index, devices[1].count, devices[1].mode.as_str()),
            (1, 1, "hami-core")
        );
    }

    #[test]
    fn sgpu_annotation_is_read_when_capacity_is_absent() {
        let value = r#"[{"uuid":"GPU-2f6a8c10-1d3e-4b5a-8f7c-9e0d1c2b3a4f","bdf":"0000:3b:00.0","model":"MXC500","totalDevCount":16,"totalCompute":100,"totalVRam":65536,"availableDevCount":16,"availableCompute":100,"availableVRam":65536,"healthy":true,"qosPolicy":"best-effort"},{"uuid":"GPU-71c0e4d2-aa51-4f0e-b6d3-5c8e2f19a7b0","model":"MXC550","totalDevCount":8,"totalCompute":100,"totalVRam":65536,"numa":1,"healthy":true,"linkZone":1}]"#;
        let devices = decode_node_devices(
            Vendor::Metax,
            &annotated_node(SGPU_ANNOTATION, value),
            &DeviceContext::default(),
        )
        .unwrap();
        assert_eq!(devices.len(), 2);
        let d = &devices[1];
        assert_eq!(d.id, "GPU-71c0e4d2-aa51-4f0e-b6d3-5c8e2f19a7b0");
        assert_eq!(d.alias_id, d.id);
        assert_eq!(
            (d.count, d.devmem, d.devcore, d.numa, d.index),
            (8, 65536, 100, 1, 1)
        );
        assert_eq!(
            (d.device_type.as_str(), d.mode.as_str(), d.health),
            ("MXC550", "hami-core", true)
        );
        let zero = node("mx", &[(SGPU_ANNOTATION, value)], &[(GPU_CAPACITY, "0")]);
        assert_eq!(
            decode_node_devices(Vendor::Metax, &zero, &DeviceContext::default())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn malformed_sgpu_annotation_is_an_error() {
        for (value, kind) in [
            ("{", "bad_json"),
            (r#"{"uuid":"x"}"#, "json_shape"),
            (r#"[{"totalVRam":"1"}]"#, "json_shape"),
        ] {
            let err = decode_node_devices(
                Vendor::Metax,
                &annotated_node(SGPU_ANNOTATION, value),
                &DeviceContext::default(),
            )
            .unwrap_err();
            assert_eq!(err.kind(), kind, "{value}");
        }
    }

    #[test]
    fn both_allocation_keys_are_read() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    (GPU_ALLOCATED_ANNOTATION, "mx-1-metax-0,Metax-GPU,65536,0:;"),
                    (
                        SGPU_ALLOCATED_ANNOTATION,
                        "GPU-2f6a8c10-1d3e-4b5a-8f7c-9e0d1c2b3a4f,Metax-SGPU,8192,25:;",
                    ),
                ],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        let a = &decoded.containers[0].allocations;
        assert_eq!(
            (a[0].alloc_type.as_str(), a[0].usedcores),
            ("Metax-GPU", 100)
        );
        assert_eq!(
            (a[1].alloc_type.as_str(), a[1].usedcores, a[1].usedmem),
            ("Metax-SGPU", 25, 8192)
        );
    }
}
