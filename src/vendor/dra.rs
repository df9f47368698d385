//! HAMi-DRA: GPUs published as `resource.k8s.io/v1` ResourceSlices by HAMi's DRA drivers and
//! shared through ResourceClaims, decoded into the same [`Device`] and allocation figures as
//! HAMi's annotations.
//!
//! A driver publishes one slice per node (pool = node); each device carries its `uuid`,
//! `minor`, `productName` and `driverVersion` as attributes and its `memory` (bytes) and
//! `cores` (percent) as capacities. A claim's allocation names `(driver, pool, device)` per
//! request, with the share it took in `consumedCapacity` (none: the whole device). Drivers
//! other than HAMi's are not ours and are left alone.

use k8s_openapi::api::resource::v1::{
    Device as SliceDevice, DeviceAttribute, ResourceClaim, ResourceSlice,
};

use super::number::parse_quantity;
use super::DecodeError;
use crate::device::{Device, DraSource, Vendor};

/// HAMi-DRA's drivers and the vendor each one's devices belong to.
pub const DRIVERS: [(&str, Vendor); 3] = [
    ("hami-core-gpu.project-hami.io", Vendor::Nvidia),
    ("dra.hygon.com", Vendor::Hcu),
    ("ascend.project-hami.io", Vendor::Ascend),
];

/// The vendor of a HAMi-DRA driver; `None` for any other driver.
pub fn driver_vendor(driver: &str) -> Option<Vendor> {
    DRIVERS
        .iter()
        .find(|(name, _)| *name == driver)
        .map(|(_, vendor)| *vendor)
}

const MIB: i64 = 1024 * 1024;

/// The devices of one HAMi-DRA ResourceSlice, for the node it names.
#[derive(Debug, Clone, PartialEq)]
pub struct DraSlice {
    /// `spec.nodeName`; empty for a slice that names none (not a per-node GPU slice).
    pub node: String,
    pub devices: Vec<Device>,
}

fn attribute<'a>(device: &'a SliceDevice, key: &str) -> Option<&'a DeviceAttribute> {
    device.attributes.as_ref()?.get(key)
}

fn text_attribute<'a>(device: &'a SliceDevice, key: &str) -> Option<&'a str> {
    let value = attribute(device, key)?;
    value
        .string
        .as_deref()
        .or(value.version.as_deref())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A capacity as an integer, `Ok(None)` when absent.
fn capacity(device: &SliceDevice, key: &'static str) -> Result<Option<i64>, DecodeError> {
    match device.capacity.as_ref().and_then(|c| c.get(key)) {
        None => Ok(None),
        Some(c) => parse_quantity(key, &c.value.0),
    }
}

fn to_i32(field: &'static str, value: i64) -> Result<i32, DecodeError> {
    i32::try_from(value).map_err(|_| super::number::overflow(field, &value.to_string()))
}

/// The card type HAMi-DRA's monitor gives an NVIDIA device: the product name, `NVIDIA-`
/// prefixed unless it already names NVIDIA.
fn device_type(vendor: Vendor, product: &str) -> String {
    if vendor == Vendor::Nvidia && !product.starts_with("NVIDIA") {
        format!("NVIDIA-{product}")
    } else {
        product.to_string()
    }
}

fn decode_device(
    vendor: Vendor,
    source: DraSource,
    node: &str,
    position: usize,
    device: &SliceDevice,
) -> Result<Device, DecodeError> {
    let uuid = text_attribute(device, "uuid").ok_or(DecodeError::MissingField { field: "uuid" })?;
    let memory = capacity(device, "memory")?.unwrap_or(0);
    let cores = capacity(device, "cores")?.unwrap_or(0);
    let index = match attribute(device, "minor").and_then(|a| a.int) {
        Some(minor) => to_i32("minor", minor)?,
        None => to_i32("index", i64::try_from(position).unwrap_or(i64::MAX))?,
    };
    let product = text_attribute(device, "productName")
        .or_else(|| text_attribute(device, "type"))
        .unwrap_or_default();
    // A taint that keeps pods away (or evicts them) is how DRA marks a device unusable.
    let healthy = device
        .taints
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|t| t.effect != "NoSchedule" && t.effect != "NoExecute");
    Ok(Device {
        id: uuid.to_string(),
        alias_id: uuid.to_string(),
        node_name: node.to_string(),
        node_uid: String::new(),
        device_type: device_type(vendor, product),
        // DRA sets no share count: any number of claims may share while capacity lasts.
        count: 0,
        devmem: to_i32("memory", memory / MIB)?,
        devcore: to_i32("cores", cores)?,
        health: healthy,
        mode: String::new(),
        vendor,
        index,
        numa: 0,
        driver: text_attribute(device, "driverVersion")
            .unwrap_or_default()
            .to_string(),
        cordoned: false,
        dra: Some(source),
    })
}

/// Decodes a ResourceSlice: `None` when its driver is not one of HAMi-DRA's. A device that
/// cannot be read (no `uuid`, a malformed capacity) is left out and reported; the others
/// are kept.
pub fn decode_slice(slice: &ResourceSlice) -> (Option<DraSlice>, Vec<(Vendor, DecodeError)>) {
    let spec = &slice.spec;
    let Some(vendor) = driver_vendor(&spec.driver) else {
        return (None, Vec::new());
    };
    let node = spec.node_name.clone().unwrap_or_default();
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for (position, device) in spec.devices.iter().flatten().enumerate() {
        let source = DraSource {
            driver: spec.driver.clone(),
            pool: spec.pool.name.clone(),
            device: device.name.clone(),
        };
        match decode_device(vendor, source, &node, position, device) {
            Ok(decoded) => devices.push(decoded),
            Err(error) => errors.push((vendor, error)),
        }
    }
    (Some(DraSlice { node, devices }), errors)
}

/// One device share a claim was allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraResult {
    pub driver: String,
    pub pool: String,
    /// The device's name in its slice.
    pub device: String,
    /// Set when the device is shared (consumable capacity), else empty.
    pub share_id: String,
    /// `consumedCapacity.cores` (percent of the device); `None`: the whole device.
    pub cores: Option<i32>,
    /// `consumedCapacity.memory` in MiB; `None`: the whole device.
    pub memory_mib: Option<i32>,
}

/// A pod a claim is reserved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimConsumer {
    pub name: String,
    pub uid: String,
}

/// An allocated ResourceClaim with at least one HAMi-DRA device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraClaim {
    pub namespace: String,
    pub name: String,
    pub results: Vec<DraResult>,
    /// `status.reservedFor`, pods only.
    pub reserved_for: Vec<ClaimConsumer>,
}

impl DraClaim {
    /// Whether the claim is reserved for this pod (by UID; by name when the reference
    /// carries no UID).
    pub fn reserved_for_pod(&self, name: &str, uid: &str) -> bool {
        self.reserved_for.iter().any(|c| {
            if c.uid.is_empty() {
                c.name == name
            } else {
                c.uid == uid
            }
        })
    }
}

/// Decodes a ResourceClaim: `None` when it is not allocated or holds no HAMi-DRA device. A
/// result whose consumed capacity cannot be read is kept as a whole-device share and
/// reported.
pub fn decode_claim(claim: &ResourceClaim) -> (Option<DraClaim>, Vec<(Vendor, DecodeError)>) {
    let status = claim.status.as_ref();
    let results = status
        .and_then(|s| s.allocation.as_ref())
        .and_then(|a| a.devices.as_ref())
        .and_then(|d| d.results.as_deref())
        .unwrap_or_default();
    let mut errors = Vec::new();
    let mut decoded = Vec::new();
    for result in results {
        let Some(vendor) = driver_vendor(&result.driver) else {
            continue;
        };
        let consumed = |key: &'static str| -> Result<Option<i64>, DecodeError> {
            match result.consumed_capacity.as_ref().and_then(|c| c.get(key)) {
                None => Ok(None),
                Some(q) => parse_quantity(key, &q.0),
            }
        };
        let figures = consumed("cores").and_then(|cores| {
            let memory = consumed("memory")?;
            let cores = cores.map(|c| to_i32("cores", c)).transpose()?;
            let memory = memory.map(|m| to_i32("memory", m / MIB)).transpose()?;
            Ok((cores, memory))
        });
        let (cores, memory_mib) = figures.unwrap_or_else(|error| {
            errors.push((vendor, error));
            (None, None)
        });
        decoded.push(DraResult {
            driver: result.driver.clone(),
            pool: result.pool.clone(),
            device: result.device.clone(),
            share_id: result.share_id.clone().unwrap_or_default(),
            cores,
            memory_mib,
        });
    }
    if decoded.is_empty() {
        return (None, errors);
    }
    let reserved_for = status
        .and_then(|s| s.reserved_for.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|r| r.resource == "pods" && r.api_group.as_deref().unwrap_or_default().is_empty())
        .map(|r| ClaimConsumer {
            name: r.name.clone(),
            uid: r.uid.clone(),
        })
        .collect();
    let claim = DraClaim {
        namespace: claim.metadata.namespace.clone().unwrap_or_default(),
        name: claim.metadata.name.clone().unwrap_or_default(),
        results: decoded,
        reserved_for,
    };
    (Some(claim), errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(devices: serde_json::Value) -> ResourceSlice {
        serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": "gpu-1-hami-core-gpu.project-hami.io-x7k2p"},
            "spec": {"driver": "hami-core-gpu.project-hami.io", "nodeName": "gpu-1",
                     "pool": {"name": "gpu-1", "generation": 1, "resourceSliceCount": 1},
                     "devices": devices}
        }))
        .unwrap()
    }

    fn gpu(name: &str, uuid: Option<&str>, product: &str, memory: &str) -> serde_json::Value {
        let mut attributes = json!({
            "type": {"string": "hami-gpu"}, "minor": {"int": 3},
            "productName": {"string": product}, "driverVersion": {"version": "575.57.8"}
        });
        if let Some(uuid) = uuid {
            attributes["uuid"] = json!({"string": uuid});
        }
        json!({"name": name, "allowMultipleAllocations": true, "attributes": attributes,
               "capacity": {"cores": {"value": "100"}, "memory": {"value": memory}}})
    }

    #[test]
    fn slice_devices_become_cards_and_unreadable_ones_are_reported() {
        let (decoded, errors) = decode_slice(&slice(json!([
            gpu("hami-gpu-3", Some("GPU-a"), "NVIDIA A100-SXM4-80GB", "80Gi"),
            gpu("hami-gpu-4", None, "A10", "24Gi"),
            gpu("hami-gpu-5", Some("GPU-c"), "A10", "lots"),
            gpu("hami-gpu-6", Some("GPU-d"), "A10", "23028Mi"),
        ])));
        let decoded = decoded.unwrap();
        assert_eq!(decoded.node, "gpu-1");
        let ids: Vec<_> = decoded.devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["GPU-a", "GPU-d"]);
        let a = &decoded.devices[0];
        assert_eq!(
            (a.devmem, a.devcore, a.index, a.count, a.vendor),
            (81920, 100, 3, 0, Vendor::Nvidia)
        );
        assert_eq!(a.device_type, "NVIDIA A100-SXM4-80GB");
        assert_eq!(a.driver, "575.57.8");
        assert_eq!(a.dra.as_ref().unwrap().device, "hami-gpu-3");
        assert_eq!(decoded.devices[1].device_type, "NVIDIA-A10");
        assert_eq!(decoded.devices[1].devmem, 23028);
        let kinds: Vec<_> = errors.iter().map(|(_, e)| e.kind()).collect();
        assert_eq!(kinds, ["missing_field", "bad_number"]);
    }

    #[test]
    fn other_drivers_are_not_ours() {
        let mut other = slice(json!([gpu("gpu-0", Some("GPU-a"), "A10", "24Gi")]));
        other.spec.driver = "gpu.nvidia.com".into();
        let (decoded, errors) = decode_slice(&other);
        assert!(decoded.is_none() && errors.is_empty());
    }

    fn claim(results: serde_json::Value, reserved: serde_json::Value) -> ResourceClaim {
        serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "shared-gpu", "namespace": "team-a"},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "hami-core-gpu.project-hami.io"}}]}},
            "status": {"allocation": {"devices": {"results": results}}, "reservedFor": reserved}
        }))
        .unwrap()
    }

    #[test]
    fn claims_keep_their_hami_shares_and_the_pods_they_are_reserved_for() {
        let (decoded, errors) = decode_claim(&claim(
            json!([
                {"request": "gpu", "driver": "hami-core-gpu.project-hami.io", "pool": "gpu-1", "device": "hami-gpu-3",
                 "shareID": "a8dba99f", "consumedCapacity": {"cores": "30", "memory": "8Gi"}},
                {"request": "gpu", "driver": "hami-core-gpu.project-hami.io", "pool": "gpu-1", "device": "hami-gpu-4"},
                {"request": "nic", "driver": "sriov.example.com", "pool": "gpu-1", "device": "vf-0"}
            ]),
            json!([{"resource": "pods", "name": "infer-0", "uid": "u0"},
                   {"resource": "pods", "name": "infer-1", "uid": "u1"},
                   {"apiGroup": "batch", "resource": "jobs", "name": "j", "uid": "uj"}]),
        ));
        assert!(errors.is_empty());
        let decoded = decoded.unwrap();
        assert_eq!(decoded.results.len(), 2);
        assert_eq!(
            (decoded.results[0].cores, decoded.results[0].memory_mib),
            (Some(30), Some(8192))
        );
        assert_eq!(decoded.results[0].share_id, "a8dba99f");
        assert_eq!(
            (decoded.results[1].cores, decoded.results[1].memory_mib),
            (None, None)
        );
        assert_eq!(decoded.reserved_for.len(), 2);
        assert!(decoded.reserved_for_pod("infer-1", "u1"));
        assert!(!decoded.reserved_for_pod("infer-1", "other-uid"));
    }

    #[test]
    fn unallocated_claims_and_unreadable_shares() {
        let pending: ResourceClaim = serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"devices": {"requests": []}}, "status": {}
        }))
        .unwrap();
        let (decoded, errors) = decode_claim(&pending);
        assert!(decoded.is_none() && errors.is_empty());
        let (decoded, errors) = decode_claim(&claim(
            json!([{"request": "gpu", "driver": "hami-core-gpu.project-hami.io", "pool": "p", "device": "d",
                    "consumedCapacity": {"cores": "half", "memory": "1Gi"}}]),
            json!([]),
        ));
        assert_eq!(errors.len(), 1);
        let result = &decoded.unwrap().results[0];
        assert_eq!((result.cores, result.memory_mib), (None, None));
    }
}
