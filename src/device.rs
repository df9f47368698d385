//! The plain device model every other part of the crate speaks: accelerators found on nodes
//! ([`Device`]), slices of them held by containers ([`DeviceAllocation`]) and the vendors
//! HAMi knows ([`Vendor`]). Pure data; the decoders that fill it live in [`crate::vendor`].

use std::fmt;

use serde::{Serialize, Serializer};

/// An accelerator family HAMi can share. The provider string doubles as the `node_selectors`
/// config key and the `provider` label of exported metrics, so it must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    Nvidia,
    Mlu,
    Ascend,
    Dcu,
    Hcu,
    Metax,
    Amd,
    Iluvatar,
    Enflame,
    Mthreads,
    Kunlunxin,
    AwsNeuron,
    Biren,
    Vastai,
}

impl Vendor {
    /// Every vendor, in the order the Go backend walked its providers (NVIDIA, MLU, Ascend,
    /// DCU, Metax), then the two upstream 2.0 added (HCU, AMD), then the rest. Inventory and
    /// per-container allocation lists follow this order so output is deterministic.
    pub const ALL: [Vendor; 14] = [
        Vendor::Nvidia,
        Vendor::Mlu,
        Vendor::Ascend,
        Vendor::Dcu,
        Vendor::Metax,
        Vendor::Hcu,
        Vendor::Amd,
        Vendor::Iluvatar,
        Vendor::Enflame,
        Vendor::Mthreads,
        Vendor::Kunlunxin,
        Vendor::AwsNeuron,
        Vendor::Biren,
        Vendor::Vastai,
    ];

    /// The name operators and dashboards already use for this vendor.
    pub fn provider(self) -> &'static str {
        match self {
            Vendor::Nvidia => "NVIDIA",
            Vendor::Mlu => "MLU",
            Vendor::Ascend => "Ascend",
            Vendor::Dcu => "DCU",
            Vendor::Hcu => "HCU",
            Vendor::Metax => "Metax",
            Vendor::Amd => "AMD",
            Vendor::Iluvatar => "Iluvatar",
            Vendor::Enflame => "Enflame",
            Vendor::Mthreads => "Mthreads",
            Vendor::Kunlunxin => "Kunlunxin",
            Vendor::AwsNeuron => "AWSNeuron",
            Vendor::Biren => "Biren",
            Vendor::Vastai => "Vastai",
        }
    }

    /// Parses a provider string; case-insensitive because config files are hand-written.
    pub fn from_provider(name: &str) -> Option<Vendor> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.provider().eq_ignore_ascii_case(name.trim()))
    }

    /// The label selector used when the config names no selector for a vendor the Go backend
    /// (or upstream 2.0) had a default for; `None` for vendors without a well-known node label.
    pub fn default_node_selector(self) -> Option<&'static str> {
        match self {
            Vendor::Nvidia => Some("gpu=on"),
            Vendor::Mlu => Some("mlu=on"),
            Vendor::Ascend => Some("ascend=on"),
            Vendor::Dcu => Some("dcu=on"),
            Vendor::Metax => Some("metax-tech.com/gpu.installed=true"),
            Vendor::Hcu => Some("hcu=on"),
            Vendor::Amd => Some("amd.com/gpu.family"),
            _ => None,
        }
    }

    /// Whether the Go backend (including upstream 2.0's HCU and AMD) inventories this vendor;
    /// config defaults and compatibility behaviour differ for the others.
    pub fn known_to_go_backend(self) -> bool {
        matches!(
            self,
            Vendor::Nvidia
                | Vendor::Mlu
                | Vendor::Ascend
                | Vendor::Dcu
                | Vendor::Metax
                | Vendor::Hcu
                | Vendor::Amd
        )
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.provider())
    }
}

/// Serialized as the provider string, the form every API and metric uses.
impl Serialize for Vendor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.provider())
    }
}

/// One physical (or vendor-partitioned) accelerator on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Device {
    /// Identity shown to users as the card `uuid` and joined against telemetry.
    pub id: String,
    /// Key pod allocation annotations use for this device; allocations are matched against
    /// it, not against `id`, because several vendors allocate by a node-local name.
    pub alias_id: String,
    /// Node the device sits on, so card lists can link back to nodes.
    pub node_name: String,
    /// UID of that node; the API's node pages are keyed by UID.
    pub node_uid: String,
    /// Model name as registered (e.g. `NVIDIA A100-SXM4-80GB`); drives type filters.
    pub device_type: String,
    /// How many tasks may share the device at once (HAMi's split count).
    pub count: i32,
    /// Schedulable device memory in MiB.
    pub devmem: i32,
    /// Schedulable compute, usually a percentage (100 = whole device).
    pub devcore: i32,
    /// Health as registered by the device plugin.
    pub health: bool,
    /// Sharing mode (`hami-core`, `mig`, or empty when the vendor has none).
    pub mode: String,
    /// Which vendor decoder produced the device; becomes the `provider` field and label.
    pub vendor: Vendor,
    /// Device index on the node as registered; shown in the UI and used by telemetry joins.
    pub index: i32,
    /// NUMA node, for topology display.
    pub numa: i32,
    /// Driver version when a source provides it (Prometheus enrichment), else empty.
    pub driver: String,
    /// Listed in the node's `hami.io/device-cordon`: HAMi's scheduler places nothing new on
    /// it (HAMi v2.10+; running pods keep theirs).
    pub cordoned: bool,
    /// Where Kubernetes DRA publishes the device (a HAMi-DRA ResourceSlice); `None` for a
    /// device registered through HAMi's node annotations.
    pub dra: Option<DraSource>,
}

/// A device's address in DRA: claims' allocation results name it so.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DraSource {
    pub driver: String,
    pub pool: String,
    /// The device's name in its ResourceSlice.
    pub device: String,
}

/// One device slice held by one container, as HAMi's scheduler recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceAllocation {
    /// Device key the scheduler wrote; matched against [`Device::alias_id`].
    pub uuid: String,
    /// HAMi device type of the allocation (`NVIDIA`, `Ascend910B`, `MLU`, ...).
    pub alloc_type: String,
    /// Device memory reserved, in MiB.
    pub usedmem: i32,
    /// Compute reserved, in the same unit as the device's `devcore`.
    pub usedcores: i32,
    /// What else the pod said about this slice, for vendors whose slices come in shapes
    /// (Ascend vNPU templates, NVIDIA MIG instances); read by [`crate::reply::allocation`].
    #[serde(skip)]
    pub facts: AllocationFacts,
}

/// Pod-side facts about one allocation beyond the four annotation fields. Interpreted at
/// read time against the [`DeviceContext`] of the inventory, so a change of HAMi's device
/// configuration applies without decoding the pod again (pods are not kept whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllocationFacts {
    /// A vendor without shapes: every slice is a soft share of one device.
    #[default]
    Plain,
    /// An Ascend vNPU slice (`hami.io/<commonWord>-devices-allocated`).
    Ascend(AscendFacts),
    /// An NVIDIA GPU slice (`hami.io/vgpu-devices-allocated`).
    Nvidia(GpuFacts),
    /// A share of a device a HAMi-DRA ResourceClaim was allocated: counted in the device's
    /// usage once per claim, not once per pod sharing the claim.
    Dra(DraFacts),
}

/// Which claim (and share of a device) a DRA allocation comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraFacts {
    /// `namespace/name` of the ResourceClaim.
    pub claim: String,
    /// The allocation's `shareID`; empty for a whole device.
    pub share_id: String,
}

/// What a pod says about one of its Ascend slices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AscendFacts {
    /// The model's `commonWord`, from the annotation key.
    pub common_word: String,
    /// The cores field as HAMi wrote it (a soft-split reservation; 0 otherwise).
    pub annotated_core: i32,
    /// The pod's `huawei.com/vnpu-mode` annotation, empty when absent.
    pub pod_mode: String,
    /// The template the device plugin applied, from the pod's `huawei.com/<commonWord>` list.
    pub template: String,
    /// Whether that list names this slice at all (then an empty template is a whole card).
    pub recorded: bool,
}

/// What a pod says about one of its NVIDIA slices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuFacts {
    /// The pod's `nvidia.com/vgpu-mode` annotation, empty when absent.
    pub pod_mode: String,
    /// The MIG reservation of `hami.io/vgpu-mig-allocations` for this slot, if any.
    pub mig: Option<MigReservation>,
    /// `hami.io/vgpu-mig-allocations` is present but unusable (HAMi rejects it whole).
    pub mig_invalid: bool,
    /// The uuid is HAMi's pre-2.10 MIG form `GPU-…[profile-slot]`.
    pub legacy_mig: bool,
}

/// One MIG instance HAMi's scheduler reserved for a slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigReservation {
    /// GPU the instance is carved from.
    pub gpu_uuid: String,
    /// MIG profile, such as `3g.40gb`.
    pub profile: String,
    /// First memory slice of the instance.
    pub start: u32,
    /// Slices it spans.
    pub size: u32,
}

/// One MIG profile a GPU registered (`migProfiles` of the JSON registration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigProfile {
    pub name: String,
    /// MiB.
    pub memory_mb: i64,
    pub core: i32,
    pub slice_count: i32,
    /// `(start, size)` of every place the profile fits.
    pub placements: Vec<(u32, u32)>,
}

/// How an Ascend pod without HAMi's per-container annotations is read on a node that
/// shares cores (`ascend.annotationless_pod_mode`, upstream 2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationlessPodMode {
    Unknown,
    Node,
    Template,
}

/// What the inventory knows besides its devices: HAMi's device configuration in effect and
/// the node facts that shape allocations. Built by the node cache with every inventory.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    /// HAMi's device catalog in effect (the current one, or the last good one while the
    /// ConfigMap is unreadable); `None` when disabled, missing, forbidden or not read yet.
    pub catalog: Option<std::sync::Arc<crate::catalog::DeviceCatalog>>,
    /// `ascend.annotationless_pod_mode`: how pods without `huawei.com/vnpu-mode` run on
    /// `hami-vnpu-core=true` nodes.
    pub annotationless_pod_mode: AnnotationlessPodMode,
    /// Node name → its `hami-vnpu-core` annotation, for nodes that carry it.
    pub node_vnpu_core: std::collections::HashMap<String, String>,
    /// `(node name, GPU id)` → the MIG profiles the GPU registered.
    pub mig_profiles: std::collections::HashMap<(String, String), Vec<MigProfile>>,
}

impl DeviceContext {
    /// Whether a device is an Ascend model HAMi's configuration does not list: it is shown
    /// (its allocations stay visible) but adds no schedulable capacity. Never without a
    /// catalog, where nothing can be told.
    pub fn is_unconfigured(&self, device: &Device) -> bool {
        device.vendor == Vendor::Ascend
            && self
                .catalog
                .as_ref()
                .is_some_and(|c| c.model(&device.device_type).is_none())
    }
}

impl Default for DeviceContext {
    fn default() -> Self {
        Self {
            catalog: None,
            annotationless_pod_mode: AnnotationlessPodMode::Unknown,
            node_vnpu_core: Default::default(),
            mig_profiles: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_go_providers_first_then_upstream_additions() {
        let names: Vec<_> = Vendor::ALL.iter().map(|v| v.provider()).collect();
        assert_eq!(
            &names[..7],
            ["NVIDIA", "MLU", "Ascend", "DCU", "Metax", "HCU", "AMD"]
        );
        assert_eq!(names.len(), 14);
    }

    #[test]
    fn from_provider_round_trips_and_ignores_case() {
        for v in Vendor::ALL {
            assert_eq!(Vendor::from_provider(v.provider()), Some(v));
            assert_eq!(Vendor::from_provider(&v.provider().to_lowercase()), Some(v));
        }
        assert_eq!(Vendor::from_provider("awsneuron"), Some(Vendor::AwsNeuron));
        assert_eq!(Vendor::from_provider("tpu"), None);
    }

    #[test]
    fn go_vendors_have_default_selectors_and_others_do_not() {
        for v in Vendor::ALL {
            assert_eq!(
                v.known_to_go_backend(),
                v.default_node_selector().is_some(),
                "{v}"
            );
        }
        assert_eq!(
            Vendor::Amd.default_node_selector(),
            Some("amd.com/gpu.family")
        );
        assert_eq!(Vendor::Hcu.default_node_selector(), Some("hcu=on"));
    }

    #[test]
    fn vendor_serializes_as_provider_string() {
        assert_eq!(
            serde_json::to_string(&Vendor::AwsNeuron).unwrap(),
            "\"AWSNeuron\""
        );
    }
}
