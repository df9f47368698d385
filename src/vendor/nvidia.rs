//! NVIDIA GPUs shared by HAMi-core. Registration `hami.io/node-nvidia-register`: JSON from
//! HAMi 2.8 on, the legacy CSV before; allocations `hami.io/vgpu-devices-allocated`.
//! Keys verified in HAMi `pkg/device/nvidia/device.go` (`RegisterAnnos`, `SupportDevices`).
//!
//! MIG (HAMi v2.10): a GPU registered in mode `mig` lists its `migProfiles`, and the
//! scheduler records the instance it reserved for each allocated slot in
//! `hami.io/vgpu-mig-allocations` (`pkg/device/nvidia/mig_allocations.go`); HAMi before
//! v2.10 wrote the instance into the uuid instead (`GPU-…[profile-slot]`). [`gpu_shape`]
//! tells a slice's shape from those facts the way upstream 2.0 does: a mode is named only
//! when the reservation and the registration agree on it.

use std::collections::HashMap;

use serde::Deserialize;

use super::alloc::{align_to_containers, decode_alloc_segments};
use super::{
    csv_register, json_register, DecodeError, NodeView, PodView, SliceShape, VendorAllocations,
};
use crate::device::{AllocationFacts, Device, GpuFacts, MigProfile, MigReservation, Vendor};

/// Node annotation the NVIDIA device plugin registers its GPUs in.
pub(crate) const REGISTER_ANNOTATION: &str = "hami.io/node-nvidia-register";
/// Pod annotation the scheduler records allocations in.
pub(crate) const ALLOCATED_ANNOTATION: &str = "hami.io/vgpu-devices-allocated";
/// Pod annotation the scheduler records MIG reservations in (HAMi v2.10).
pub const MIG_ALLOCATIONS_ANNOTATION: &str = "hami.io/vgpu-mig-allocations";
/// Pod annotation asking for a GPU mode (`hami-core`, `mig`, `mps`).
pub const VGPU_MODE_ANNOTATION: &str = "nvidia.com/vgpu-mode";
const MODE_HAMI_CORE: &str = "hami-core";
const MODE_MIG: &str = "mig";
/// Registered, but HAMi's plugin runs HAMi-core for it.
const MODE_MPS: &str = "mps";

/// Decodes the node's GPUs. JSON when the value starts with `[` (as upstream 2.0 decides),
/// otherwise CSV. Modes `""` and `mps` are shown as `hami-core`: registrations older than
/// device modes only shared through HAMi-core, and the plugin's MPS mode runs HAMi-core.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let Some(value) = node.annotation(REGISTER_ANNOTATION) else {
        return Ok(Vec::new());
    };
    let trimmed = value.trim();
    let entries = if trimmed.is_empty() {
        Vec::new()
    } else if trimmed.starts_with('[') {
        json_register::decode(trimmed)?
    } else {
        csv_register::decode(value)?
    };
    let mut devices = node.registered_devices(Vendor::Nvidia, entries);
    for device in &mut devices {
        if device.mode.is_empty() || device.mode == MODE_MPS {
            device.mode = csv_register::DEFAULT_MODE.to_string();
        }
    }
    Ok(devices)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "memoryMB")]
    memory_mb: i64,
    #[serde(default)]
    core: i32,
    #[serde(default)]
    slice_count: i32,
    #[serde(default)]
    placements: Vec<RawPlacement>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct RawPlacement {
    #[serde(default)]
    start: u32,
    #[serde(default)]
    size: u32,
}

/// The `migProfiles` each GPU of a JSON registration lists (keys of the GPU object matched
/// case-insensitively, as Go's decoder does). A GPU whose profiles do not decode keeps its
/// other fields and simply has none; a CSV registration has none.
pub(crate) fn mig_profiles(node: &NodeView<'_>) -> Vec<(String, Vec<MigProfile>)> {
    let Some(value) = node
        .annotation(REGISTER_ANNOTATION)
        .map(str::trim)
        .filter(|v| v.starts_with('['))
    else {
        return Vec::new();
    };
    let Ok(parsed) = json_register::parse(value) else {
        return Vec::new();
    };
    let Ok(objects) = json_register::array_of_objects(&parsed) else {
        return Vec::new();
    };
    objects
        .into_iter()
        .filter_map(|fields| {
            let field = |name: &str| {
                fields
                    .iter()
                    .rfind(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            };
            let id = field("id")?.as_str()?.to_string();
            let raw = field("migProfiles").filter(|v| !v.is_null())?;
            let profiles: Vec<RawProfile> = serde_json::from_value(raw.clone()).ok()?;
            let profiles = profiles
                .into_iter()
                .map(|p| MigProfile {
                    name: p.name,
                    memory_mb: p.memory_mb,
                    core: p.core,
                    slice_count: p.slice_count,
                    placements: p.placements.iter().map(|pl| (pl.start, pl.size)).collect(),
                })
                .collect();
            Some((id, profiles))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMigAllocation {
    #[serde(default)]
    container_index: i64,
    #[serde(default)]
    device_index: i64,
    #[serde(default, rename = "gpuUUID")]
    gpu_uuid: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    placement: RawPlacementWide,
    #[serde(default, rename = "migUUID")]
    mig_uuid: String,
    #[serde(default, rename = "gpuInstanceID")]
    gpu_instance_id: Option<u32>,
    #[serde(default, rename = "computeInstanceID")]
    compute_instance_id: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawPlacementWide {
    #[serde(default)]
    start: u64,
    #[serde(default)]
    size: u64,
}

/// Why `hami.io/vgpu-mig-allocations` cannot be used; HAMi's decoder rejects it whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigAllocationsError(pub String);

/// Decodes `hami.io/vgpu-mig-allocations` with the checks of HAMi's `DecodeMigAllocations`:
/// one incomplete, partially realised or duplicated entry makes the whole value unusable.
/// Keyed by `(allocation slot, device index)`: slots count init containers first, as the
/// segments of `hami.io/vgpu-devices-allocated` do.
pub fn decode_mig_allocations(
    value: &str,
) -> Result<HashMap<(usize, usize), MigReservation>, MigAllocationsError> {
    let raw: Vec<RawMigAllocation> =
        serde_json::from_str(value).map_err(|e| MigAllocationsError(e.to_string()))?;
    let mut out = HashMap::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let incomplete = || MigAllocationsError(format!("MIG allocation {i} is incomplete"));
        let container = usize::try_from(entry.container_index).map_err(|_| incomplete())?;
        let device = usize::try_from(entry.device_index).map_err(|_| incomplete())?;
        let start = u32::try_from(entry.placement.start)
            .ok()
            .filter(|s| i32::try_from(*s).is_ok());
        let size = u32::try_from(entry.placement.size)
            .ok()
            .filter(|s| *s > 0 && i32::try_from(*s).is_ok());
        let (Some(start), Some(size)) = (start, size) else {
            return Err(incomplete());
        };
        if entry.gpu_uuid.is_empty() || entry.profile.is_empty() {
            return Err(incomplete());
        }
        let runtime = [
            !entry.mig_uuid.is_empty(),
            entry.gpu_instance_id.is_some(),
            entry.compute_instance_id.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if runtime != 0 && runtime != 3 {
            return Err(MigAllocationsError(format!(
                "MIG allocation {i} has partial runtime identity"
            )));
        }
        let reservation = MigReservation {
            gpu_uuid: entry.gpu_uuid,
            profile: entry.profile,
            start,
            size,
        };
        if out.insert((container, device), reservation).is_some() {
            return Err(MigAllocationsError(format!(
                "duplicate MIG allocation for container {container} device {device}"
            )));
        }
    }
    Ok(out)
}

/// The GPU of a uuid HAMi before v2.10 wrote for a MIG instance (`GPU-x[1-2]`), else `None`.
pub fn legacy_mig_gpu(uuid: &str) -> Option<&str> {
    let left = uuid.find('[').filter(|l| *l > 0)?;
    let inner = uuid[left + 1..].strip_suffix(']')?;
    let (a, b) = inner.split_once('-')?;
    // Two integers separated by one `-`, as Go's `strings.Split` + `strconv.Atoi` accept.
    let numeric = |s: &str| s.parse::<i64>().is_ok();
    (numeric(a) && numeric(b) && !b.contains('-')).then(|| &uuid[..left])
}

/// Allocations, aligned to containers; a `0` cores field means the whole GPU. Each slice
/// records the pod's requested mode and the MIG reservation of its slot.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    let Some(value) = pod.annotation(ALLOCATED_ANNOTATION) else {
        return out;
    };
    let pod_mode = pod.annotation(VGPU_MODE_ANNOTATION).unwrap_or_default();
    let reservations = pod
        .annotation(MIG_ALLOCATIONS_ANNOTATION)
        .filter(|v| !v.trim().is_empty())
        .map(decode_mig_allocations);
    let (reserved, invalid) = match &reservations {
        Some(Ok(map)) => (Some(map), false),
        Some(Err(_)) => (None, true),
        None => (None, false),
    };
    let decoded = decode_alloc_segments(value).map(|mut segments| {
        for (slot, segment) in segments.iter_mut().enumerate() {
            for (index, allocation) in segment.iter_mut().enumerate() {
                if allocation.usedcores == 0 {
                    allocation.usedcores = 100;
                }
                allocation.facts = AllocationFacts::Nvidia(GpuFacts {
                    pod_mode: pod_mode.to_string(),
                    mig: reserved.and_then(|m| m.get(&(slot, index))).cloned(),
                    mig_invalid: invalid,
                    legacy_mig: legacy_mig_gpu(&allocation.uuid).is_some(),
                });
            }
        }
        align_to_containers(segments, pod.init_containers, pod.containers)
    });
    out.absorb(Some(decoded));
    out
}

/// Why a GPU slice's mode cannot be told (upstream's reasons).
pub mod mig_reason {
    pub const RESERVATION_INVALID: &str = "mig_reservation_invalid";
    pub const RESERVATION_MISSING: &str = "mig_reservation_missing";
    pub const RESERVATION_MISMATCH: &str = "mig_reservation_mismatch";
    pub const DEVICE_MODE_UNKNOWN: &str = "device_mode_unknown";
}

/// The shape of one NVIDIA slice: `soft` on a hami-core GPU, `template` (the MIG profile)
/// for a MIG instance, `unknown` when the reservation and the registration disagree or say
/// nothing. `registered_mode` is the mode of the GPU the slice matched in the inventory,
/// `None` when it matched none (then the pod's requested mode is used). The compute share
/// is always the one HAMi recorded, so `cores` stays known; `reason` names why an
/// `unknown` shape is unknown.
pub fn gpu_shape(
    facts: &GpuFacts,
    uuid: &str,
    registered_mode: Option<&str>,
    cores: i32,
) -> SliceShape {
    if facts.legacy_mig {
        return SliceShape::mig_instance(String::new(), cores, None);
    }
    let mode = match registered_mode {
        Some(mode) => mode,
        None if facts.pod_mode == MODE_MPS => MODE_HAMI_CORE,
        None => facts.pod_mode.as_str(),
    };
    let unknown = |reason| SliceShape {
        cores: Some(cores),
        ..SliceShape::unknown("unknown", String::new(), reason)
    };
    match &facts.mig {
        _ if facts.mig_invalid && mode != MODE_HAMI_CORE => {
            unknown(mig_reason::RESERVATION_INVALID)
        }
        Some(reservation)
            if reservation.gpu_uuid == uuid && (mode == MODE_MIG || mode.is_empty()) =>
        {
            SliceShape::mig_instance(
                reservation.profile.clone(),
                cores,
                Some((reservation.start, reservation.size)),
            )
        }
        Some(_) => unknown(mig_reason::RESERVATION_MISMATCH),
        None if mode == MODE_HAMI_CORE => SliceShape::known("soft", String::new(), cores),
        None if mode == MODE_MIG => unknown(mig_reason::RESERVATION_MISSING),
        None => unknown(mig_reason::DEVICE_MODE_UNKNOWN),
    }
}

#[cfg(test)]
mod tests {
    use crate::device::Vendor;
    use crate::vendor::testutil::{annotated_node, pod};
    use crate::vendor::DeviceContext;
    use crate::vendor::{decode_node_devices, decode_pod};

    fn decode(value: &str) -> Result<Vec<crate::device::Device>, crate::vendor::DecodeError> {
        decode_node_devices(
            Vendor::Nvidia,
            &annotated_node(super::REGISTER_ANNOTATION, value),
            &DeviceContext::default(),
        )
    }

    #[test]
    fn legacy_csv_yields_one_device_per_entry_with_alias_equal_to_id() {
        let devices = decode("GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c,10,15360,100,NVIDIA-Tesla T4,0,true,0,hami-core:GPU-1b2c3d4e-6f70-4a81-9b2c-d3e4f5a6b7c8,10,15360,100,NVIDIA-Tesla T4,0,true,1,hami-core:").unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "GPU-1b2c3d4e-6f70-4a81-9b2c-d3e4f5a6b7c8");
        assert_eq!(devices[1].alias_id, devices[1].id);
        assert_eq!(devices[1].index, 1);
        assert_eq!(devices[1].vendor, Vendor::Nvidia);
        assert_eq!(devices[1].node_uid, "uid-node-a");
    }

    #[test]
    fn json_registration_is_detected_by_leading_bracket() {
        let devices = decode(r#"  [{"id":"GPU-4a1f","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA A100-SXM4-80GB","mode":"hami-core","health":true}]"#).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].devmem, 81920);
        assert!(devices[0].health);
    }

    #[test]
    fn empty_and_mps_modes_show_as_hami_core_but_mig_stays() {
        let devices =
            decode(r#"[{"id":"a"},{"id":"b","mode":"mps"},{"id":"c","mode":"mig"}]"#).unwrap();
        let modes: Vec<_> = devices.iter().map(|d| d.mode.as_str()).collect();
        assert_eq!(modes, ["hami-core", "hami-core", "mig"]);
    }

    #[test]
    fn malformed_registrations_are_errors_and_empty_is_none() {
        assert_eq!(decode("[{").unwrap_err().kind(), "bad_json");
        assert_eq!(decode("GPU-0,1,2").unwrap_err().kind(), "csv_separator");
        assert_eq!(decode("GPU-0,1,2:").unwrap_err().kind(), "csv_field_count");
        assert_eq!(decode("").unwrap(), vec![]);
        assert_eq!(decode("  ").unwrap(), vec![]);
    }

    #[test]
    fn allocations_turn_zero_cores_into_whole_gpu() {
        let p = pod(
            &[(
                super::ALLOCATED_ANNOTATION,
                ";GPU-8f2c,NVIDIA,8000,0:GPU-1b2c,NVIDIA,8000,0:;",
            )],
            &[],
            &["a", "b"],
        );
        let decoded = decode_pod(&p, &DeviceContext::default());
        assert!(decoded.containers[0].allocations.is_empty());
        let second = &decoded.containers[1].allocations;
        assert_eq!(second.len(), 2);
        assert!(second
            .iter()
            .all(|a| a.usedcores == 100 && a.usedmem == 8000));
        assert_eq!(second[0].alloc_type, "NVIDIA");
    }

    use super::{decode_mig_allocations, gpu_shape, legacy_mig_gpu, mig_reason};
    use crate::device::{AllocationFacts, GpuFacts, MigReservation};
    use crate::vendor::{node_notes, SliceShape};

    const RESERVED: &str = r#"[{"containerIndex":1,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"3g.40gb","placement":{"start":4,"size":4},"migUUID":"MIG-1","gpuInstanceID":2,"computeInstanceID":0}]"#;

    #[test]
    fn mig_profiles_are_read_per_gpu_and_bad_ones_dropped() {
        let n = crate::vendor::testutil::annotated_node(
            super::REGISTER_ANNOTATION,
            r#"[{"id":"GPU-A","mode":"mig","migProfiles":{}},
                {"ID":"GPU-B","mode":"mig","MigProfiles":[{"name":"1g.5gb","memoryMB":4864,"core":14,"sliceCount":1,"placements":[{"start":0,"size":1},{"start":1,"size":1}]}]},
                {"id":"GPU-C","mode":"mps"}]"#,
        );
        let notes = node_notes(&n);
        assert_eq!(notes.mig_profiles.len(), 1);
        let (gpu, profiles) = &notes.mig_profiles[0];
        assert_eq!(gpu, "GPU-B");
        assert_eq!(profiles[0].name, "1g.5gb");
        assert_eq!(
            (
                profiles[0].memory_mb,
                profiles[0].core,
                profiles[0].slice_count
            ),
            (4864, 14, 1)
        );
        assert_eq!(profiles[0].placements, [(0, 1), (1, 1)]);
        let devices = decode(r#"[{"id":"GPU-A","mode":"mig","migProfiles":{}}]"#).unwrap();
        assert_eq!(
            devices[0].mode, "mig",
            "bad profiles cost only the profiles"
        );
        let csv = crate::vendor::testutil::annotated_node(
            super::REGISTER_ANNOTATION,
            "GPU-L,10,24576,100,NVIDIA A10,0,true,0,mig:",
        );
        assert!(node_notes(&csv).mig_profiles.is_empty());
    }

    #[test]
    fn mig_reservations_follow_hamis_checks() {
        let entry = |extra: &str| {
            format!(
                r#"[{{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{{"start":0,"size":1}}{extra}}}]"#
            )
        };
        let rejected = [
            "not json".to_string(),
            r#"[{"containerIndex":"0","deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":0,"size":1}}]"#.into(),
            r#"[{"containerIndex":-1,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":0,"size":1}}]"#.into(),
            r#"[{"containerIndex":0,"deviceIndex":0,"profile":"1g.5gb","placement":{"start":0,"size":1}}]"#.into(),
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","placement":{"start":0,"size":1}}]"#.into(),
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":0,"size":0}}]"#.into(),
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":4294967296,"size":1}}]"#.into(),
            entry(r#","migUUID":"MIG-1""#),
            r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":0,"size":1}},{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-N","profile":"1g.5gb","placement":{"start":1,"size":1}}]"#.into(),
        ];
        for raw in rejected {
            assert!(decode_mig_allocations(&raw).is_err(), "accepted {raw}");
        }
        for raw in [
            entry(""),
            entry(r#","migUUID":"MIG-1","gpuInstanceID":0,"computeInstanceID":0"#),
        ] {
            let got = decode_mig_allocations(&raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(got[&(0, 0)].profile, "1g.5gb");
        }
    }

    #[test]
    fn legacy_mig_uuids_name_their_gpu() {
        for (uuid, want) in [
            ("GPU-0a1b-2c3d[1-2]", Some("GPU-0a1b-2c3d")),
            ("GPU-0a1b-2c3d", None),
            ("GPU-0a1b[1]", None),
            ("GPU-0a1b[a-2]", None),
            ("[1-2]", None),
            ("GPU-0a1b[1-2]x", None),
            ("GPU-0a1b[1--2]", None),
        ] {
            assert_eq!(legacy_mig_gpu(uuid), want, "{uuid}");
        }
    }

    #[test]
    fn gpu_shapes_name_a_mode_only_when_hami_states_it() {
        let reserved = Some(MigReservation {
            gpu_uuid: "GPU-M".into(),
            profile: "3g.40gb".into(),
            start: 4,
            size: 4,
        });
        let facts = |mig: Option<MigReservation>, invalid: bool, pod_mode: &str| GpuFacts {
            pod_mode: pod_mode.into(),
            mig,
            mig_invalid: invalid,
            legacy_mig: false,
        };
        let unknown = |reason| SliceShape {
            cores: Some(30),
            ..SliceShape::unknown("unknown", String::new(), reason)
        };
        let cases = [
            (
                "hami-core GPU",
                facts(None, false, ""),
                "GPU-C",
                Some("hami-core"),
                SliceShape::known("soft", String::new(), 30),
            ),
            (
                "reserved MIG instance",
                facts(reserved.clone(), false, ""),
                "GPU-M",
                Some("mig"),
                SliceShape::mig_instance("3g.40gb".into(), 30, Some((4, 4))),
            ),
            (
                "MIG GPU without reservation",
                facts(None, false, ""),
                "GPU-M",
                Some("mig"),
                unknown(mig_reason::RESERVATION_MISSING),
            ),
            (
                "reservation for another GPU",
                facts(reserved.clone(), false, ""),
                "GPU-X",
                Some("mig"),
                unknown(mig_reason::RESERVATION_MISMATCH),
            ),
            (
                "reservation on a hami-core GPU",
                facts(reserved.clone(), false, ""),
                "GPU-M",
                Some("hami-core"),
                unknown(mig_reason::RESERVATION_MISMATCH),
            ),
            (
                "unusable reservations on hami-core",
                facts(None, true, ""),
                "GPU-C",
                Some("hami-core"),
                SliceShape::known("soft", String::new(), 30),
            ),
            (
                "unusable reservations on MIG",
                facts(None, true, ""),
                "GPU-M",
                Some("mig"),
                unknown(mig_reason::RESERVATION_INVALID),
            ),
            (
                "GPU not in the inventory, reservation matches",
                facts(reserved, false, ""),
                "GPU-M",
                None,
                SliceShape::mig_instance("3g.40gb".into(), 30, Some((4, 4))),
            ),
            (
                "GPU not in the inventory, nothing stated",
                facts(None, false, ""),
                "GPU-C",
                None,
                unknown(mig_reason::DEVICE_MODE_UNKNOWN),
            ),
            (
                "GPU not in the inventory, pod asked for mps",
                facts(None, false, "mps"),
                "GPU-C",
                None,
                SliceShape::known("soft", String::new(), 30),
            ),
        ];
        for (name, facts, uuid, mode, want) in cases {
            assert_eq!(gpu_shape(&facts, uuid, mode, 30), want, "{name}");
        }
        let legacy = GpuFacts {
            legacy_mig: true,
            ..GpuFacts::default()
        };
        assert_eq!(
            gpu_shape(&legacy, "GPU-M[0-1]", Some("mig"), 30),
            SliceShape::mig_instance(String::new(), 30, None)
        );
    }

    #[test]
    fn pods_attach_each_slot_its_reservation_init_containers_first() {
        let p = pod(
            &[
                (
                    super::ALLOCATED_ANNOTATION,
                    ";GPU-M,NVIDIA,40192,43:;GPU-C,NVIDIA,4096,30:;",
                ),
                (super::MIG_ALLOCATIONS_ANNOTATION, RESERVED),
            ],
            &["init"],
            &["a", "b"],
        );
        let decoded = decode_pod(&p, &DeviceContext::default());
        let reservation =
            |container: usize| match &decoded.containers[container].allocations[0].facts {
                AllocationFacts::Nvidia(f) => f.mig.clone(),
                other => panic!("{other:?}"),
            };
        // Slot 1 (after the init container's) is container `a`'s.
        assert_eq!(
            reservation(0).map(|r| r.profile),
            Some("3g.40gb".to_string())
        );
        assert_eq!(reservation(1), None);
        let broken = pod(
            &[
                (super::ALLOCATED_ANNOTATION, "GPU-M,NVIDIA,40192,43:;"),
                (
                    super::MIG_ALLOCATIONS_ANNOTATION,
                    r#"[{"containerIndex":"1"}]"#,
                ),
            ],
            &[],
            &["a"],
        );
        let decoded = decode_pod(&broken, &DeviceContext::default());
        assert!(
            decoded.errors.is_empty(),
            "a bad reservation costs no allocation"
        );
        match &decoded.containers[0].allocations[0].facts {
            AllocationFacts::Nvidia(f) => assert!(f.mig_invalid && f.mig.is_none()),
            other => panic!("{other:?}"),
        }
    }
}
