//! Pure decoders from Kubernetes objects to the device model: which accelerators a node
//! carries ([`decode_node_devices`]) and which slices each container of a pod holds
//! ([`decode_pod`]). One module per vendor owns that vendor's annotation keys and rules;
//! the shared wire formats (legacy CSV, JSON array, pod allocation segments) have their own
//! modules. Nothing here does I/O, so the node and pod caches call these from their actors
//! and tests feed them hand-built objects.
//!
//! Errors never cross vendors: a malformed annotation of one vendor is reported as a
//! [`DecodeError`] (counted by the caller in `hami_webui_decode_errors_total{vendor,kind}`)
//! while every other vendor of the same node or pod still decodes.

use std::collections::BTreeMap;
use std::ops::Bound;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::device::{Device, DeviceAllocation, DeviceContext, MigProfile, Vendor};

mod alloc;
mod amd;
mod ascend;
mod awsneuron;
mod biren;
mod csv_register;
mod dcu;
pub mod dra;
mod enflame;
mod hcu;
mod iluvatar;
mod json_register;
mod kunlunxin;
mod metax;
mod mlu;
mod mthreads;
mod number;
mod nvidia;
mod vastai;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod testutil;

pub use alloc::{align_to_containers, count_segments, decode_alloc_segments};
pub use ascend::apply_vdie_ids;

/// Upstream 2.0's Ascend and NVIDIA slice interpretation, for the reply builders.
pub mod shapes {
    pub use super::ascend::{interpret as interpret_ascend, reason, resolve_mode, CardFacts, Mode};
    pub use super::nvidia::{gpu_shape, legacy_mig_gpu, mig_reason};
}
pub use dcu::apply_dcu_device_ids;

/// Node annotation listing devices HAMi's scheduler must not place new work on: their ids,
/// separated by commas (HAMi v2.10+).
pub const DEVICE_CORDON_ANNOTATION: &str = "hami.io/device-cordon";

/// The device ids a `hami.io/device-cordon` value lists: comma-separated, trimmed, empty
/// entries skipped, as HAMi reads it.
pub fn cordoned_ids(value: &str) -> std::collections::HashSet<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect()
}

/// Pod annotation naming the node HAMi bound the pod to; DCU and MLU build allocation uuids
/// from it, and the pod cache uses it to decide which pods are HAMi's.
pub const ASSIGNED_NODE_ANNOTATION: &str = "hami.io/vgpu-node";

/// Container resource carrying the NVIDIA task priority shown in the workload list.
pub const PRIORITY_RESOURCE: &str = "nvidia.com/priority";

/// Upper bound on devices one vendor may report for one node. Capacity-driven vendors build
/// one device per unit of a node capacity, so a bogus capacity must not allocate millions.
pub const MAX_DEVICES_PER_NODE: usize = 1024;

/// Longest excerpt of offending input an error keeps, so huge annotations stay out of logs.
const SNIPPET_CHARS: usize = 64;

/// Why an annotation or capacity could not be decoded. Each variant maps to one stable
/// [`DecodeError::kind`] label.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A legacy CSV registration without any `:`, so not a device list at all.
    #[error("device registration has no ':' separator")]
    CsvNoSeparator,
    /// A legacy CSV device with a field count no known writer produces (5, or 7 and more).
    #[error("device registration entry {entry} has {fields} fields, want 5 or at least 7")]
    CsvFieldCount {
        /// Position of the entry among the `:`-separated entries.
        entry: usize,
        /// How many `,`-separated fields it had.
        fields: usize,
    },
    /// Text that should be JSON and is not.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// Valid JSON of the wrong shape (an object where an array belongs, a string for a number).
    #[error("unexpected JSON shape: {0}")]
    JsonShape(String),
    /// A field that must be an integer is not.
    #[error("{field}: {value:?} is not a number")]
    BadNumber {
        /// Which field.
        field: &'static str,
        /// The offending text, shortened.
        value: String,
    },
    /// A number that does not fit the model's i32 (or an intermediate computation that
    /// would not).
    #[error("{field}: {value:?} is out of range")]
    Overflow {
        /// Which field.
        field: &'static str,
        /// The offending text, shortened.
        value: String,
    },
    /// An annotation the decoder cannot do without.
    #[error("annotation {key} is required but missing")]
    MissingAnnotation {
        /// The annotation key.
        key: &'static str,
    },
    /// A pod allocation entry with fewer than the four `uuid,type,usedmem,usedcores` fields.
    #[error("allocation entry {entry:?} has fewer than 4 fields")]
    AllocationFields {
        /// The entry, shortened.
        entry: String,
    },
    /// A vendor profile string (Cambricon dynamic sMLU, Enflame DRS) that cannot be read.
    #[error("malformed profile {value:?}")]
    BadProfile {
        /// The profile, shortened.
        value: String,
    },
    /// A field an object cannot do without (a DRA device without its `uuid`).
    #[error("{field} is missing")]
    MissingField {
        /// Which field.
        field: &'static str,
    },
    /// A DRA allocation naming a device no ResourceSlice publishes.
    #[error("allocated device {device:?} is in no ResourceSlice")]
    UnknownDevice {
        /// `driver/pool/device`, shortened.
        device: String,
    },
    /// A ResourceSlice for a node the cluster does not have (any more).
    #[error("ResourceSlice for unknown node {node:?}")]
    UnknownNode {
        /// The node name, shortened.
        node: String,
    },
    /// A capacity that would create more than [`MAX_DEVICES_PER_NODE`] devices.
    #[error("capacity implies {count} devices, more than the limit {MAX_DEVICES_PER_NODE}")]
    TooManyDevices {
        /// The device count the capacity implied.
        count: i64,
    },
}

impl DecodeError {
    /// Short, stable label for the `kind` label of `hami_webui_decode_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::CsvNoSeparator => "csv_separator",
            DecodeError::CsvFieldCount { .. } => "csv_field_count",
            DecodeError::Json(_) => "bad_json",
            DecodeError::JsonShape(_) => "json_shape",
            DecodeError::BadNumber { .. } => "bad_number",
            DecodeError::Overflow { .. } => "overflow",
            DecodeError::MissingAnnotation { .. } => "missing_annotation",
            DecodeError::AllocationFields { .. } => "bad_allocation",
            DecodeError::BadProfile { .. } => "bad_profile",
            DecodeError::TooManyDevices { .. } => "too_many_devices",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::UnknownDevice { .. } => "unknown_device",
            DecodeError::UnknownNode { .. } => "unknown_node",
        }
    }
}

/// Keeps at most [`SNIPPET_CHARS`] characters of offending input for an error message.
pub(crate) fn snippet(s: &str) -> String {
    match s.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// How one slice was carved, as upstream 2.0 reports it: `shape` is `whole`, `template`,
/// `soft` or `unknown`; `cores` is the compute share when it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceShape {
    pub shape: &'static str,
    /// vNPU template or MIG profile name, else empty.
    pub template: String,
    /// `None` when the share cannot be told; `reason` then says why.
    pub cores: Option<i32>,
    pub reason: &'static str,
    /// A MIG instance: per device it is shown as `mig` (upstream's open MIG work), while the
    /// container keeps the 2.0 vocabulary (`template`).
    pub mig: Option<MigInstance>,
}

/// Where a MIG instance sits on its GPU, when HAMi recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigInstance {
    /// `(first memory slice, slices)` from the reservation; `None` for a pre-2.10 uuid.
    pub placement: Option<(u32, u32)>,
}

impl SliceShape {
    pub fn known(shape: &'static str, template: String, cores: i32) -> Self {
        Self {
            shape,
            template,
            cores: Some(cores),
            reason: "",
            mig: None,
        }
    }

    pub fn unknown(shape: &'static str, template: String, reason: &'static str) -> Self {
        Self {
            shape,
            template,
            cores: None,
            reason,
            mig: None,
        }
    }

    /// A MIG instance (shown as `template` with its profile at the container level).
    pub fn mig_instance(profile: String, cores: i32, placement: Option<(u32, u32)>) -> Self {
        Self {
            mig: Some(MigInstance { placement }),
            ..Self::known("template", profile, cores)
        }
    }
}

/// Devices of `vendor` on `node`. No registration or capacity for that vendor is `Ok(vec![])`;
/// a malformed one is `Err`, and the caller keeps the node and its other vendors' devices.
/// `context` is HAMi's device configuration: Ascend registrations of every configured
/// `commonWord` are found too.
pub fn decode_node_devices(
    vendor: Vendor,
    node: &Node,
    context: &DeviceContext,
) -> Result<Vec<Device>, DecodeError> {
    let view = NodeView::new(node);
    match vendor {
        Vendor::Nvidia => nvidia::decode_node(&view),
        Vendor::Mlu => mlu::decode_node(&view),
        Vendor::Ascend => ascend::decode_node(&view, context),
        Vendor::Dcu => dcu::decode_node(&view),
        Vendor::Hcu => hcu::decode_node(&view),
        Vendor::Metax => metax::decode_node(&view),
        Vendor::Amd => amd::decode_node(&view),
        Vendor::Iluvatar => iluvatar::decode_node(&view),
        Vendor::Enflame => enflame::decode_node(&view),
        Vendor::Mthreads => mthreads::decode_node(&view),
        Vendor::Kunlunxin => kunlunxin::decode_node(&view),
        Vendor::AwsNeuron => awsneuron::decode_node(&view),
        Vendor::Biren => biren::decode_node(&view),
        Vendor::Vastai => vastai::decode_node(&view),
    }
}

/// Node facts that shape allocations but are no devices: the `hami-vnpu-core` annotation
/// and the MIG profiles each NVIDIA GPU registered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeNotes {
    pub vnpu_core: Option<String>,
    /// `(GPU id, profiles)`, GPUs without readable profiles left out.
    pub mig_profiles: Vec<(String, Vec<MigProfile>)>,
}

/// Reads the [`NodeNotes`] of a node; unreadable parts are simply absent.
pub fn node_notes(node: &Node) -> NodeNotes {
    let view = NodeView::new(node);
    NodeNotes {
        vnpu_core: view
            .annotation(ascend::NODE_VNPU_CORE_ANNOTATION)
            .map(|v| v.trim().to_string()),
        mig_profiles: nvidia::mig_profiles(&view),
    }
}

fn decode_vendor_pod(
    vendor: Vendor,
    pod: &PodView<'_>,
    context: &DeviceContext,
) -> VendorAllocations {
    match vendor {
        Vendor::Nvidia => nvidia::decode_pod(pod),
        Vendor::Mlu => mlu::decode_pod(pod),
        Vendor::Ascend => ascend::decode_pod(pod, context),
        Vendor::Dcu => dcu::decode_pod(pod),
        Vendor::Hcu => hcu::decode_pod(pod),
        Vendor::Metax => metax::decode_pod(pod),
        Vendor::Amd => amd::decode_pod(pod),
        Vendor::Iluvatar => iluvatar::decode_pod(pod),
        Vendor::Enflame => enflame::decode_pod(pod),
        Vendor::Mthreads => mthreads::decode_pod(pod),
        Vendor::Kunlunxin => kunlunxin::decode_pod(pod),
        Vendor::AwsNeuron => awsneuron::decode_pod(pod),
        Vendor::Biren => biren::decode_pod(pod),
        Vendor::Vastai => vastai::decode_pod(pod),
    }
}

/// Everything the allocation annotations of one pod say, per regular container.
#[derive(Debug, Default)]
pub struct PodDecode {
    /// One entry per `spec.containers` entry, in order; init containers are not listed.
    pub containers: Vec<ContainerAllocations>,
    /// Vendor keys that could not be decoded; those vendors' allocations were dropped.
    pub errors: Vec<(Vendor, DecodeError)>,
}

/// The device slices one regular container holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerAllocations {
    /// Container name from the spec.
    pub name: String,
    /// Container image from the spec.
    pub image: String,
    /// Allocations of every vendor, concatenated in [`Vendor::ALL`] order.
    pub allocations: Vec<DeviceAllocation>,
    /// `nvidia.com/priority` of the container when it holds NVIDIA or DCU slices, else `""`.
    pub priority: String,
}

/// Decodes every vendor's allocation annotation of `pod`. Allocations of several vendors
/// for one container are concatenated in [`Vendor::ALL`] order (the Go backend merged them
/// in random map order); a malformed key drops only that key's allocations. With HAMi's
/// device configuration in `context`, allocations of every configured Ascend `commonWord`
/// are found too (words starting with `Ascend` always are).
pub fn decode_pod(pod: &Pod, context: &DeviceContext) -> PodDecode {
    let view = PodView::new(pod);
    let specs: &[Container] = pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice());
    let mut lists: Vec<Vec<DeviceAllocation>> = vec![Vec::new(); specs.len()];
    let mut has_priority_vendor = vec![false; specs.len()];
    let mut errors = Vec::new();
    for vendor in Vendor::ALL {
        let decoded = decode_vendor_pod(vendor, &view, context);
        let carries_priority = matches!(vendor, Vendor::Nvidia | Vendor::Dcu);
        for ((list, flag), extra) in lists
            .iter_mut()
            .zip(has_priority_vendor.iter_mut())
            .zip(decoded.per_container)
        {
            if carries_priority && !extra.is_empty() {
                *flag = true;
            }
            list.extend(extra);
        }
        errors.extend(decoded.errors.into_iter().map(|e| (vendor, e)));
    }
    let containers = specs
        .iter()
        .zip(lists)
        .zip(has_priority_vendor)
        .map(|((spec, mut allocations), flag)| ContainerAllocations {
            name: spec.name.clone(),
            image: spec.image.clone().unwrap_or_default(),
            allocations: {
                // Kept for the pod's life: a list extended from empty reserves four slots
                // (576 B) for the usual one allocation, 10 MB of slack at 26,000 pods.
                allocations.shrink_to_fit();
                allocations
            },
            priority: if flag {
                container_priority(spec)
            } else {
                String::new()
            },
        })
        .collect();
    PodDecode { containers, errors }
}

/// The container's `nvidia.com/priority` quantity, limits before requests, as an integer
/// string when it is one (Go printed the canonical quantity, `"0"`/`"1"` in practice).
fn container_priority(container: &Container) -> String {
    let resources = container.resources.as_ref();
    let quantity = resources
        .and_then(|r| r.limits.as_ref())
        .and_then(|m| m.get(PRIORITY_RESOURCE))
        .or_else(|| {
            resources
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get(PRIORITY_RESOURCE))
        });
    match quantity {
        Some(q) => match number::parse_quantity(PRIORITY_RESOURCE, &q.0) {
            Ok(Some(v)) => v.to_string(),
            _ => q.0.trim().to_string(),
        },
        None => String::new(),
    }
}

/// Borrowed view of the node fields decoders read.
pub(crate) struct NodeView<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    annotations: Option<&'a BTreeMap<String, String>>,
    capacity: Option<&'a BTreeMap<String, Quantity>>,
}

impl<'a> NodeView<'a> {
    fn new(node: &'a Node) -> Self {
        NodeView {
            name: node.metadata.name.as_deref().unwrap_or(""),
            uid: node.metadata.uid.as_deref().unwrap_or(""),
            annotations: node.metadata.annotations.as_ref(),
            capacity: node.status.as_ref().and_then(|s| s.capacity.as_ref()),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations?.get(key).map(String::as_str)
    }

    /// Annotations whose key starts with `prefix`, in key order.
    pub fn annotations_with_prefix(
        &self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.annotations
            .into_iter()
            .flat_map(move |m| m.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Integer value of a capacity; absent or fractional (Go's `AsInt64` failing) reads as 0.
    pub fn capacity(&self, key: &'static str) -> Result<i64, DecodeError> {
        match self.capacity.and_then(|c| c.get(key)) {
            Some(q) => Ok(number::parse_quantity(key, &q.0)?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// A device of this node with every vendor-specific field zero or empty and
    /// `alias_id == id`; vendor decoders fill in the rest.
    pub fn device(&self, vendor: Vendor, id: String) -> Device {
        Device {
            alias_id: id.clone(),
            id,
            node_name: self.name.to_string(),
            node_uid: self.uid.to_string(),
            device_type: String::new(),
            count: 0,
            devmem: 0,
            devcore: 0,
            health: false,
            mode: String::new(),
            vendor,
            index: 0,
            numa: 0,
            driver: String::new(),
            cordoned: false,
            dra: None,
        }
    }

    /// Turns registration entries (CSV or JSON) into devices of this node, `alias_id == id`.
    pub fn registered_devices(&self, vendor: Vendor, entries: Vec<Registered>) -> Vec<Device> {
        entries
            .into_iter()
            .map(|r| Device {
                device_type: r.device_type,
                count: r.count,
                devmem: r.devmem,
                devcore: r.devcore,
                health: r.health,
                mode: r.mode,
                index: r.index,
                numa: r.numa,
                ..self.device(vendor, r.id)
            })
            .collect()
    }
}

/// Devices of a vendor that registers a JSON array under one node annotation; an absent
/// or blank annotation means no devices.
pub(crate) fn json_devices(
    node: &NodeView<'_>,
    key: &str,
    vendor: Vendor,
) -> Result<Vec<Device>, DecodeError> {
    match node.annotation(key).filter(|v| !v.trim().is_empty()) {
        Some(value) => Ok(node.registered_devices(vendor, json_register::decode(value)?)),
        None => Ok(Vec::new()),
    }
}

/// Devices of a vendor that registers the legacy CSV under one node annotation; an absent
/// or blank annotation means no devices.
pub(crate) fn csv_devices(
    node: &NodeView<'_>,
    key: &str,
    vendor: Vendor,
) -> Result<Vec<Device>, DecodeError> {
    match node.annotation(key).filter(|v| !v.trim().is_empty()) {
        Some(value) => Ok(node.registered_devices(vendor, csv_register::decode(value)?)),
        None => Ok(Vec::new()),
    }
}

/// Number of devices a capacity implies, rejecting counts above [`MAX_DEVICES_PER_NODE`].
pub(crate) fn bounded_count(count: i64) -> Result<usize, DecodeError> {
    if count <= 0 {
        return Ok(0);
    }
    match usize::try_from(count) {
        Ok(n) if n <= MAX_DEVICES_PER_NODE => Ok(n),
        _ => Err(DecodeError::TooManyDevices { count }),
    }
}

/// One device as a node registration (legacy CSV or JSON array) describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Registered {
    pub id: String,
    pub index: i32,
    pub count: i32,
    pub devmem: i32,
    pub devcore: i32,
    pub device_type: String,
    pub numa: i32,
    pub mode: String,
    pub health: bool,
}

/// Borrowed view of the pod fields allocation decoders read.
pub(crate) struct PodView<'a> {
    annotations: Option<&'a BTreeMap<String, String>>,
    /// `spec.initContainers` count: HAMi ≥ 2.9 writes one segment per init container first.
    pub init_containers: usize,
    /// `spec.containers` count: the length of every per-container list.
    pub containers: usize,
    /// Node name for uuids built from it: `hami.io/vgpu-node`, else `spec.nodeName`.
    pub node_name: &'a str,
}

impl<'a> PodView<'a> {
    fn new(pod: &'a Pod) -> Self {
        let annotations = pod.metadata.annotations.as_ref();
        let spec = pod.spec.as_ref();
        let node_name = annotations
            .and_then(|a| a.get(ASSIGNED_NODE_ANNOTATION))
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .or_else(|| spec.and_then(|s| s.node_name.as_deref()))
            .unwrap_or("");
        PodView {
            annotations,
            init_containers: spec
                .and_then(|s| s.init_containers.as_ref())
                .map_or(0, Vec::len),
            containers: spec.map_or(0, |s| s.containers.len()),
            node_name,
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        self.annotations?.get(key).map(String::as_str)
    }

    /// Annotations whose key starts with `prefix`, in key order.
    pub fn annotations_with_prefix(
        &self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.annotations
            .into_iter()
            .flat_map(move |m| m.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// One vendor's allocations for one pod: a list per regular container plus the errors of
/// the keys that were dropped.
#[derive(Debug, Default)]
pub(crate) struct VendorAllocations {
    pub per_container: Vec<Vec<DeviceAllocation>>,
    pub errors: Vec<DecodeError>,
}

impl VendorAllocations {
    pub fn new(containers: usize) -> Self {
        VendorAllocations {
            per_container: vec![Vec::new(); containers],
            errors: Vec::new(),
        }
    }

    /// Adds one key's result: lists are appended container by container, an error is kept.
    pub fn absorb(&mut self, decoded: Option<Result<Vec<Vec<DeviceAllocation>>, DecodeError>>) {
        match decoded {
            None => {}
            Some(Ok(lists)) => {
                for (mine, theirs) in self.per_container.iter_mut().zip(lists) {
                    mine.extend(theirs);
                }
            }
            Some(Err(e)) => self.errors.push(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{node, pod, with_priority};
    use super::*;

    #[test]
    fn error_kinds_are_distinct_snake_case_labels() {
        let errors = [
            DecodeError::CsvNoSeparator,
            DecodeError::CsvFieldCount {
                entry: 0,
                fields: 3,
            },
            DecodeError::Json(serde_json::from_str::<u8>("x").unwrap_err()),
            DecodeError::JsonShape(String::new()),
            DecodeError::BadNumber {
                field: "f",
                value: String::new(),
            },
            DecodeError::Overflow {
                field: "f",
                value: String::new(),
            },
            DecodeError::MissingAnnotation { key: "k" },
            DecodeError::AllocationFields {
                entry: String::new(),
            },
            DecodeError::BadProfile {
                value: String::new(),
            },
            DecodeError::TooManyDevices { count: 5000 },
        ];
        let kinds: std::collections::BTreeSet<_> = errors.iter().map(DecodeError::kind).collect();
        assert_eq!(kinds.len(), errors.len());
        assert!(kinds
            .iter()
            .all(|k| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn snippet_shortens_long_input_on_char_boundaries() {
        let long = "é".repeat(200);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert_eq!(snippet("short"), "short");
    }

    #[test]
    fn node_with_two_vendors_decodes_both() {
        let n = node(
            "worker-1",
            &[
                (
                    "hami.io/node-nvidia-register",
                    "GPU-0,10,15360,100,NVIDIA-Tesla T4,0,true,0,hami-core:",
                ),
                (
                    "hami.io/node-register-Ascend910B",
                    r#"[{"id":"Ascend910B-0","count":4,"devmem":65536,"devcore":100,"type":"Ascend910B","health":true}]"#,
                ),
            ],
            &[],
        );
        let gpus = decode_node_devices(Vendor::Nvidia, &n, &DeviceContext::default()).unwrap();
        let npus = decode_node_devices(Vendor::Ascend, &n, &DeviceContext::default()).unwrap();
        assert_eq!(gpus.len(), 1);
        assert_eq!(npus.len(), 1);
        assert_eq!(gpus[0].vendor, Vendor::Nvidia);
        assert_eq!(npus[0].vendor, Vendor::Ascend);
        assert_eq!(gpus[0].node_name, "worker-1");
        assert_eq!(gpus[0].node_uid, "uid-worker-1");
        for vendor in Vendor::ALL {
            if !matches!(vendor, Vendor::Nvidia | Vendor::Ascend) {
                assert_eq!(
                    decode_node_devices(vendor, &n, &DeviceContext::default()).unwrap(),
                    vec![],
                    "{vendor}"
                );
            }
        }
    }

    #[test]
    fn node_without_any_vendor_data_has_no_devices_and_no_errors() {
        let n = node("plain", &[], &[]);
        for vendor in Vendor::ALL {
            assert_eq!(
                decode_node_devices(vendor, &n, &DeviceContext::default()).unwrap(),
                vec![],
                "{vendor}"
            );
        }
        let bare = Node::default();
        for vendor in Vendor::ALL {
            assert_eq!(
                decode_node_devices(vendor, &bare, &DeviceContext::default()).unwrap(),
                vec![],
                "{vendor}"
            );
        }
    }

    #[test]
    fn multi_vendor_pod_concatenates_in_vendor_order() {
        let p = pod(
            &[
                ("hami.io/vgpu-node", "n1"),
                ("hami.io/dcu-devices-allocated", "DCU-1,DCU,2000,60:;"),
                ("hami.io/vgpu-devices-allocated", "GPU-a,NVIDIA,4096,30:;"),
                (
                    "hami.io/metax-sgpu-devices-allocated",
                    "GPU-m,Metax-SGPU,8192,25:;",
                ),
            ],
            &[],
            &["main"],
        );
        let decoded = decode_pod(&p, &DeviceContext::default());
        assert!(decoded.errors.is_empty());
        let uuids: Vec<_> = decoded.containers[0]
            .allocations
            .iter()
            .map(|a| a.uuid.as_str())
            .collect();
        assert_eq!(uuids, ["GPU-a", "n1-dcu-1", "GPU-m"]);
    }

    #[test]
    fn malformed_vendor_key_drops_only_that_vendor() {
        let p = pod(
            &[
                ("hami.io/vgpu-devices-allocated", "GPU-a,NVIDIA,4096:;"),
                (
                    "hami.io/metax-gpu-devices-allocated",
                    "m-0,Metax-GPU,100,0:;",
                ),
            ],
            &[],
            &["main"],
        );
        let decoded = decode_pod(&p, &DeviceContext::default());
        assert_eq!(decoded.errors.len(), 1);
        assert_eq!(decoded.errors[0].0, Vendor::Nvidia);
        assert_eq!(decoded.errors[0].1.kind(), "bad_allocation");
        assert_eq!(decoded.containers[0].allocations.len(), 1);
        assert_eq!(decoded.containers[0].allocations[0].usedcores, 100);
    }

    #[test]
    fn containers_are_listed_even_without_allocations_and_init_containers_are_not() {
        let p = pod(&[], &["init"], &["a", "b"]);
        let decoded = decode_pod(&p, &DeviceContext::default());
        let names: Vec<_> = decoded.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(decoded.containers.iter().all(|c| c.allocations.is_empty()));
        assert_eq!(decoded.containers[0].image, "img-a");
        assert!(decode_pod(&Pod::default(), &DeviceContext::default())
            .containers
            .is_empty());
    }

    #[test]
    fn priority_is_reported_only_for_nvidia_and_dcu_containers() {
        let mut p = pod(
            &[
                ("hami.io/vgpu-node", "n1"),
                ("hami.io/vgpu-devices-allocated", "GPU-a,NVIDIA,4096,30:;;;"),
                (
                    "hami.io/metax-gpu-devices-allocated",
                    ";m-0,Metax-GPU,100,0:;;",
                ),
                ("hami.io/dcu-devices-allocated", ";;DCU-2,DCU,10,10:;"),
            ],
            &[],
            &["gpu", "metax", "dcu"],
        );
        with_priority(&mut p, 0, Some("1"), None);
        with_priority(&mut p, 1, Some("1"), None);
        with_priority(&mut p, 2, None, Some("0"));
        let decoded = decode_pod(&p, &DeviceContext::default());
        let priorities: Vec<_> = decoded
            .containers
            .iter()
            .map(|c| c.priority.as_str())
            .collect();
        assert_eq!(priorities, ["1", "", "0"]);
    }

    #[test]
    fn priority_prefers_limits_and_prints_integers() {
        let mut p = pod(
            &[("hami.io/vgpu-devices-allocated", "GPU-a,NVIDIA,1,1:;")],
            &[],
            &["c"],
        );
        with_priority(&mut p, 0, Some("1000m"), Some("0"));
        assert_eq!(
            decode_pod(&p, &DeviceContext::default()).containers[0].priority,
            "1"
        );
        with_priority(&mut p, 0, None, Some("0"));
        assert_eq!(
            decode_pod(&p, &DeviceContext::default()).containers[0].priority,
            "0"
        );
        with_priority(&mut p, 0, None, None);
        assert_eq!(
            decode_pod(&p, &DeviceContext::default()).containers[0].priority,
            ""
        );
    }

    #[test]
    fn dcu_uuid_falls_back_to_spec_node_name() {
        let mut p = pod(
            &[("hami.io/dcu-devices-allocated", "DCU-3,DCU,10,10:;")],
            &[],
            &["c"],
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.node_name = Some("spec-node".into());
        }
        assert_eq!(
            decode_pod(&p, &DeviceContext::default()).containers[0].allocations[0].uuid,
            "spec-node-dcu-3"
        );
    }
}
