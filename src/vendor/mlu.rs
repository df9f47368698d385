//! Cambricon MLUs shared by dynamic sMLU. There is no registration annotation: devices come
//! from node capacity. Two capacity schemes exist: the one the Go backend read
//! (`cambricon.com/mlu370.smlu.vcore` / `.vmemory`, memory in 1024-MiB units) and the one
//! current HAMi uses (`cambricon.com/mlu.smlu.vcore` / `.vmemory`, 256-MiB units; HAMi
//! `pkg/device/cambricon/device.go`, `MemoryFactor = 256`). Allocations are read from
//! HAMi's `hami.io/cambricon-mlu-devices-allocated` when present, else from the
//! `CAMBRICON_DSMLU_PROFILE` / `CAMBRICON_DSMLU_PROFILE_INSTANCE` pair the Go backend used.

use super::alloc::{decode_aligned, ZeroCores};
use super::number::parse_i32;
use super::{
    bounded_count, number, snippet, DecodeError, NodeView, PodView, VendorAllocations,
    ASSIGNED_NODE_ANNOTATION,
};
use crate::device::{Device, DeviceAllocation, Vendor};

/// Capacity scheme of current HAMi: (cores capacity, memory capacity, MiB per memory unit).
const CURRENT_SCHEME: (&str, &str, i64) = (
    "cambricon.com/mlu.smlu.vcore",
    "cambricon.com/mlu.smlu.vmemory",
    256,
);
/// Capacity scheme the Go backend read (MLU370 naming).
const MLU370_SCHEME: (&str, &str, i64) = (
    "cambricon.com/mlu370.smlu.vcore",
    "cambricon.com/mlu370.smlu.vmemory",
    1024,
);

pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/cambricon-mlu-devices-allocated";
/// Scheduler-written profile of the (first) container holding an MLU: `slot_cores_memUnits`.
pub(crate) const PROFILE_ANNOTATION: &str = "CAMBRICON_DSMLU_PROFILE";
/// Device-plugin-written instance: `profileID_handle_slot_instanceID`.
pub(crate) const INSTANCE_ANNOTATION: &str = "CAMBRICON_DSMLU_PROFILE_INSTANCE";

fn device_name(node: &str, index: impl std::fmt::Display) -> String {
    format!("{node}-cambricon-mlu-{index}")
}

/// One device per 100 cores of capacity (`i` while `i × 100 < cards`), current scheme first.
/// `id` and `alias_id` are `<node>-cambricon-mlu-<i>` (the Go backend took `id` from the
/// `mlu_health` uuid label and created no device without one; that enrichment comes later),
/// count 10, devcore 100, devmem `memTotal × unit × 100 / cards`, type `MLU`, healthy.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let mut scheme = CURRENT_SCHEME;
    let mut cards = node.capacity(scheme.0)?;
    if cards <= 0 {
        scheme = MLU370_SCHEME;
        cards = node.capacity(scheme.0)?;
    }
    if cards <= 0 {
        return Ok(Vec::new());
    }
    let (_, memory_key, unit) = scheme;
    let count = bounded_count((cards - 1) / 100 + 1)?;
    let memory = node.capacity(memory_key)?;
    let devmem = memory
        .checked_mul(unit)
        .and_then(|m| m.checked_mul(100))
        .map(|m| m / cards)
        .and_then(|m| i32::try_from(m).ok())
        .ok_or_else(|| number::overflow(memory_key, &memory.to_string()))?;
    Ok((0..count)
        .map(|i| {
            let mut device = node.device(Vendor::Mlu, device_name(node.name, i));
            device.index = i32::try_from(i).unwrap_or(i32::MAX);
            device.count = 10;
            device.devcore = 100;
            device.devmem = devmem;
            device.device_type = "MLU".to_string();
            device.health = true;
            device
        })
        .collect())
}

/// HAMi's own allocation key wins (aligned, like every vendor). Without it, the dynamic
/// sMLU profile is read as the Go backend did, always for container 0: cores from the
/// profile (`0` → 100), memory `memUnits × 1024`, card index from the instance's slot. When
/// the device plugin has not written the instance yet, the profile's own slot (the card the
/// scheduler picked) is used instead of crashing as Go did.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    if pod.annotation(ALLOCATED_ANNOTATION).is_some() {
        out.absorb(decode_aligned(pod, ALLOCATED_ANNOTATION, ZeroCores::Whole));
        return out;
    }
    let Some(profile) = pod.annotation(PROFILE_ANNOTATION).filter(|p| !p.is_empty()) else {
        return out;
    };
    let decoded = decode_profile(profile, pod.annotation(INSTANCE_ANNOTATION), pod.node_name).map(
        |allocation| {
            let mut lists = vec![Vec::new(); pod.containers];
            if let Some(first) = lists.first_mut() {
                first.push(allocation);
            }
            lists
        },
    );
    out.absorb(Some(decoded));
    out
}

fn decode_profile(
    profile: &str,
    instance: Option<&str>,
    node: &str,
) -> Result<DeviceAllocation, DecodeError> {
    let bad = || DecodeError::BadProfile {
        value: snippet(profile),
    };
    let parts: Vec<&str> = profile.split('_').collect();
    let [slot, cores, mem_units, ..] = parts.as_slice() else {
        return Err(bad());
    };
    let cores = parse_i32("dsmlu cores", cores)?;
    let usedmem = parse_i32("dsmlu memory", mem_units)?
        .checked_mul(1024)
        .ok_or_else(|| number::overflow("dsmlu memory", mem_units))?;
    let instance_slot = instance
        .and_then(|i| i.split('_').nth(2))
        .and_then(|s| parse_i32("dsmlu instance slot", s).ok());
    let index = match instance_slot {
        Some(index) => index,
        None => parse_i32("dsmlu slot", slot).map_err(|_| bad())?,
    };
    if node.is_empty() {
        return Err(DecodeError::MissingAnnotation {
            key: ASSIGNED_NODE_ANNOTATION,
        });
    }
    Ok(DeviceAllocation {
        uuid: device_name(node, index),
        alloc_type: "MLU".to_string(),
        usedmem,
        usedcores: if cores == 0 { 100 } else { cores },
        facts: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    #[test]
    fn mlu370_capacity_uses_1024_mib_units() {
        let n = node(
            "mlu-node",
            &[],
            &[
                ("cambricon.com/mlu370.smlu.vcore", "400"),
                ("cambricon.com/mlu370.smlu.vmemory", "96"),
            ],
        );
        let devices = decode_node_devices(Vendor::Mlu, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 4);
        assert_eq!(devices[3].id, "mlu-node-cambricon-mlu-3");
        assert_eq!(devices[3].alias_id, devices[3].id);
        assert_eq!(
            (devices[3].index, devices[3].count, devices[3].devcore),
            (3, 10, 100)
        );
        assert_eq!(devices[0].devmem, 96 * 1024 * 100 / 400);
        assert_eq!(devices[0].device_type, "MLU");
    }

    #[test]
    fn current_capacity_uses_256_mib_units_and_partial_cards_round_up() {
        let n = node(
            "mlu-node",
            &[],
            &[
                ("cambricon.com/mlu.smlu.vcore", "150"),
                ("cambricon.com/mlu.smlu.vmemory", "384"),
            ],
        );
        let devices = decode_node_devices(Vendor::Mlu, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].devmem, 384 * 256 * 100 / 150);
    }

    #[test]
    fn absent_zero_huge_and_garbage_capacities() {
        assert_eq!(
            decode_node_devices(Vendor::Mlu, &node("n", &[], &[]), &DeviceContext::default())
                .unwrap(),
            vec![]
        );
        let zero = node("n", &[], &[("cambricon.com/mlu.smlu.vcore", "0")]);
        assert_eq!(
            decode_node_devices(Vendor::Mlu, &zero, &DeviceContext::default()).unwrap(),
            vec![]
        );
        let huge = node("n", &[], &[("cambricon.com/mlu.smlu.vcore", "1E")]);
        assert_eq!(
            decode_node_devices(Vendor::Mlu, &huge, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "too_many_devices"
        );
        let garbage = node("n", &[], &[("cambricon.com/mlu.smlu.vcore", "lots")]);
        assert_eq!(
            decode_node_devices(Vendor::Mlu, &garbage, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "bad_number"
        );
        let big_mem = node(
            "n",
            &[],
            &[
                ("cambricon.com/mlu.smlu.vcore", "100"),
                ("cambricon.com/mlu.smlu.vmemory", "1E"),
            ],
        );
        assert_eq!(
            decode_node_devices(Vendor::Mlu, &big_mem, &DeviceContext::default())
                .unwrap_err()
                .kind(),
            "overflow"
        );
    }

    #[test]
    fn dsmlu_profile_and_instance_decode_like_go() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    ("hami.io/vgpu-node", "mlu-node"),
                    (PROFILE_ANNOTATION, "0_20_2"),
                    (INSTANCE_ANNOTATION, "1_256_0_1"),
                ],
                &[],
                &["a", "b"],
            ),
            &DeviceContext::default(),
        );
        let a = &decoded.containers[0].allocations;
        assert_eq!(
            a,
            &vec![DeviceAllocation {
                uuid: "mlu-node-cambricon-mlu-0".into(),
                alloc_type: "MLU".into(),
                usedmem: 2048,
                usedcores: 20,
                facts: Default::default(),
            }]
        );
        assert!(decoded.containers[1].allocations.is_empty());
    }

    #[test]
    fn missing_instance_falls_back_to_the_profile_slot() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    ("hami.io/vgpu-node", "mlu-node"),
                    (PROFILE_ANNOTATION, "3_0_4"),
                ],
                &[],
                &["a"],
            ),
            &DeviceContext::default(),
        );
        assert!(decoded.errors.is_empty());
        let a = &decoded.containers[0].allocations[0];
        assert_eq!(
            (a.uuid.as_str(), a.usedcores, a.usedmem),
            ("mlu-node-cambricon-mlu-3", 100, 4096)
        );
    }

    #[test]
    fn malformed_profiles_are_errors() {
        for profile in ["1_2", "x_y_z", "0_20_99999999"] {
            let decoded = decode_whole_pod(
                &pod(
                    &[("hami.io/vgpu-node", "n"), (PROFILE_ANNOTATION, profile)],
                    &[],
                    &["a"],
                ),
                &DeviceContext::default(),
            );
            assert_eq!(decoded.errors.len(), 1, "{profile}");
            assert!(decoded.containers[0].allocations.is_empty());
        }
        let no_node = decode_whole_pod(
            &pod(&[(PROFILE_ANNOTATION, "0_20_2")], &[], &["a"]),
            &DeviceContext::default(),
        );
        assert_eq!(no_node.errors[0].1.kind(), "missing_annotation");
    }

    #[test]
    fn hami_allocation_key_wins_over_the_profile() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    (
                        ALLOCATED_ANNOTATION,
                        ";worker-7-cambricon-mlu-1,MLU,2048,20:;",
                    ),
                    (PROFILE_ANNOTATION, "1_20_8"),
                ],
                &[],
                &["a", "b"],
            ),
            &DeviceContext::default(),
        );
        assert!(decoded.containers[0].allocations.is_empty());
        let a = &decoded.containers[1].allocations;
        assert_eq!(
            (a.len(), a[0].uuid.as_str(), a[0].usedmem),
            (1, "worker-7-cambricon-mlu-1", 2048)
        );
    }
}
