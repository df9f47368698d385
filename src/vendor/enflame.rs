//! Enflame GCUs, in two HAMi device types. Full GCU (`GCU`): no registration, one device per
//! unit of node capacity `enflame.com/gcu`, allocations `hami.io/enflame-gcu-devices-allocated`.
//! DRS vGCU (`Enflame`): node annotation `enflame.com/gcu-drs-capacity`, a JSON object
//! `{"devices":[{"index","minor","capacity"}],"profiles":{"<S>g.<M>gb":"<id>"}}`, allocations
//! `hami.io/enflame-vgpu-devices-allocated`. Keys verified in HAMi
//! `pkg/device/enflame/{gcu,device,config}.go`.

use serde_json::Value;

use super::alloc::{decode_aligned, ZeroCores};
use super::json_register::parse;
use super::{bounded_count, number, snippet, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, Vendor};

pub(crate) const GCU_CAPACITY: &str = "enflame.com/gcu";
pub(crate) const DRS_ANNOTATION: &str = "enflame.com/gcu-drs-capacity";
pub(crate) const GCU_ALLOCATED_ANNOTATION: &str = "hami.io/enflame-gcu-devices-allocated";
pub(crate) const DRS_ALLOCATED_ANNOTATION: &str = "hami.io/enflame-vgpu-devices-allocated";

/// DRS devices when the node carries the DRS annotation, else full GCUs from capacity. A
/// node is expected to run one of the two plugins; reading both would count cards twice.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    if let Some(value) = node
        .annotation(DRS_ANNOTATION)
        .filter(|v| !v.trim().is_empty())
    {
        return drs_devices(node, &parse(value)?);
    }
    let count = bounded_count(node.capacity(GCU_CAPACITY)?)?;
    Ok((0..count)
        .map(|i| {
            // HAMi's values: memory and compute are both percentages of the card.
            let mut device = node.device(Vendor::Enflame, format!("{}-GCU-{i}", node.name));
            device.index = i32::try_from(i).unwrap_or(i32::MAX);
            device.count = 1;
            device.devmem = 100;
            device.devcore = 100;
            device.device_type = "GCU".to_string();
            device.health = true;
            device
        })
        .collect())
}

/// Slices and memory (GiB) of a profile name `<S>g.<M>gb`; memory 0 when unreadable, as HAMi.
fn parse_profile(name: &str) -> Option<(i64, i64)> {
    let normalized = name.trim().to_ascii_lowercase();
    let (size, memory) = normalized.split_once('.')?;
    let memory = memory.split('.').next().unwrap_or("");
    let size: i64 = size.trim().trim_end_matches('g').parse().ok()?;
    let memory = memory.trim().trim_end_matches("gb").parse().unwrap_or(0);
    Some((size, memory))
}

/// DRS devices as HAMi builds them: `<node>-enflame-drs-<index>`, count = the device's
/// slice capacity, devmem = the largest profile memory (GiB, × 1024), devcore 100.
fn drs_devices(node: &NodeView<'_>, value: &Value) -> Result<Vec<Device>, DecodeError> {
    let shape = |what: &str| DecodeError::JsonShape(format!("{DRS_ANNOTATION}: {what}"));
    let spec = value
        .as_object()
        .ok_or_else(|| shape("expected an object"))?;
    let profiles = match spec.get("profiles") {
        Some(Value::Object(p)) => p.keys().filter_map(|k| parse_profile(k)).collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(shape("profiles must be an object")),
    };
    let max_slices = profiles.iter().map(|(s, _)| *s).max().unwrap_or(0);
    if max_slices <= 0 {
        return Err(DecodeError::BadProfile {
            value: snippet(
                &spec
                    .get("profiles")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ),
        });
    }
    let max_memory = match profiles.iter().map(|(_, m)| *m).max().unwrap_or(0) {
        m if m > 0 => m,
        _ => max_slices,
    };
    let devmem = max_memory
        .checked_mul(1024)
        .and_then(|m| i32::try_from(m).ok())
        .ok_or_else(|| number::overflow("profile memory", &max_memory.to_string()))?;
    let devices = match spec.get("devices") {
        Some(Value::Array(d)) => d.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(shape("devices must be an array")),
    };
    devices
        .iter()
        .enumerate()
        .map(|(position, entry)| {
            let entry = entry
                .as_object()
                .ok_or_else(|| shape("device must be an object"))?;
            let fallback = i64::try_from(position).unwrap_or(i64::MAX);
            let index = entry
                .get("index")
                .and_then(integer_like)
                .unwrap_or(fallback);
            let capacity = entry
                .get("capacity")
                .and_then(integer_like)
                .filter(|c| *c > 0)
                .ok_or_else(|| shape("device capacity must be a positive number"))?;
            let mut device = node.device(
                Vendor::Enflame,
                format!("{}-enflame-drs-{index}", node.name),
            );
            device.index =
                i32::try_from(index).map_err(|_| number::overflow("index", &index.to_string()))?;
            device.count = i32::try_from(capacity)
                .map_err(|_| number::overflow("capacity", &capacity.to_string()))?;
            device.devmem = devmem;
            device.devcore = 100;
            device.device_type = "Enflame".to_string();
            device.health = true;
            Ok(device)
        })
        .collect()
}

/// An integer given as a JSON number (fractions truncated, as HAMi's float64 path) or as a
/// decimal string.
fn integer_like(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            (f.is_finite() && f.abs() < 9.0e18).then_some(f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Both allocation keys, aligned; GCU before DRS; `0` cores means the whole card.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    out.absorb(decode_aligned(
        pod,
        GCU_ALLOCATED_ANNOTATION,
        ZeroCores::Whole,
    ));
    out.absorb(decode_aligned(
        pod,
        DRS_ALLOCATED_ANNOTATION,
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
    fn full_gcus_come_from_capacity() {
        let devices = decode_node_devices(
            Vendor::Enflame,
            &node("worker-3", &[], &[(GCU_CAPACITY, "2")]),
            &DeviceContext::default(),
        )
        .unwrap();
        let ids: Vec<_> = devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["worker-3-GCU-0", "worker-3-GCU-1"]);
        assert_eq!(
            (devices[0].count, devices[0].devmem, devices[0].devcore),
            (1, 100, 100)
        );
    }

    #[test]
    fn drs_capacity_builds_sliced_devices() {
        let value = r#"{"devices":[{"index":"0","minor":"0","capacity":6},{"index":"x","capacity":"3"}],"profiles":{"1g.6gb":"0","3g.20gb":"1","6g.40gb":"2"}}"#;
        let n = node(
            "worker-3",
            &[(DRS_ANNOTATION, value)],
            &[(GCU_CAPACITY, "2")],
        );
        let devices = decode_node_devices(Vendor::Enflame, &n, &DeviceContext::default()).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[0].id, "worker-3-enflame-drs-0");
        assert_eq!(
            (
                devices[0].count,
                devices[0].devmem,
                devices[0].device_type.as_str()
            ),
            (6, 40 * 1024, "Enflame")
        );
        assert_eq!(
            (devices[1].id.as_str(), devices[1].index, devices[1].count),
            ("worker-3-enflame-drs-1", 1, 3)
        );
    }

    #[test]
    fn malformed_drs_capacity_is_an_error() {
        let cases = [
            ("[]", "json_shape"),
            (
                r#"{"devices":[{"capacity":6}],"profiles":{}}"#,
                "bad_profile",
            ),
            (
                r#"{"devices":[{"capacity":0}],"profiles":{"1g.6gb":"0"}}"#,
                "json_shape",
            ),
            (
                r#"{"devices":[{"capacity":6}],"profiles":{"1g.99999999gb":"0"}}"#,
                "overflow",
            ),
            ("{", "bad_json"),
        ];
        for (value, kind) in cases {
            let err = decode_node_devices(
                Vendor::Enflame,
                &annotated_node(DRS_ANNOTATION, value),
                &DeviceContext::default(),
            )
            .unwrap_err();
            assert_eq!(err.kind(), kind, "{value}");
        }
    }

    #[test]
    fn profiles_without_memory_fall_back_to_slices() {
        assert_eq!(parse_profile(" 3G.20GB "), Some((3, 20)));
        assert_eq!(parse_profile("2g.x"), Some((2, 0)));
        assert_eq!(parse_profile("nog"), None);
        let value = r#"{"devices":[{"capacity":2}],"profiles":{"2g.x":"0"}}"#;
        let devices = decode_node_devices(
            Vendor::Enflame,
            &annotated_node(DRS_ANNOTATION, value),
            &DeviceContext::default(),
        )
        .unwrap();
        assert_eq!(devices[0].devmem, 2 * 1024);
    }

    #[test]
    fn allocations_of_both_types_are_read() {
        let decoded = decode_whole_pod(
            &pod(
                &[
                    (GCU_ALLOCATED_ANNOTATION, "worker-3-GCU-0,GCU,100,100:;"),
                    (
                        DRS_ALLOCATED_ANNOTATION,
                        "worker-3-enflame-drs-0,Enflame,6144,0:;",
                    ),
                ],
                &[],
                &["c"],
            ),
            &DeviceContext::default(),
        );
        let uuids: Vec<_> = decoded.containers[0]
            .allocations
            .iter()
            .map(|a| a.uuid.as_str())
            .collect();
        assert_eq!(uuids, ["worker-3-GCU-0", "worker-3-enflame-drs-0"]);
    }
}
