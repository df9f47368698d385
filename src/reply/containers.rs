//! Workload replies: the container list (`POST /v1/containers`) and one container
//! (`GET /v1/container`), built from the tracked pods of a [`ClusterSnapshot`].
//!
//! Field names and order follow `ContainerReply` of `api/v1/container.proto`. An allocation
//! shows as the id of the device whose alias equals its uuid, else as the raw uuid. The list
//! and the detail filter `deviceId` differently (prefix on the shown id vs. equality with the
//! raw uuid); both are kept as Go had them, since the frontend links rely on each.
//!
//! Upstream 2.0 added fields 20–29 (allocation shape, vendor, status evidence, and the
//! scheduling fields only `/v1/workloads` fills); older frontends ignore them. `status` here
//! keeps the 1.x vocabulary (`success`/`unknown`/`""`): the 2.0 one is served by
//! `/v1/workloads` (see `docs/compat.md`).

use std::cmp::Reverse;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::cluster::snapshot::{ClusterSnapshot, ContainerRecord, Inventory, PodRecord};
use crate::device::{AllocationFacts, DeviceAllocation};
use crate::reply::allocation::{describe_allocations, shown_id, ContainerDevice};
use crate::reply::request::{string, FieldKind, FieldSchema, MessageSchema, ProtoRequest};
use crate::reply::scheduling::{RequestReply, SchedulingPodReply, StatusDetailReply};
use crate::reply::times::rfc3339;

/// `GetAllContainersReq.Filters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainerFilters {
    pub name: String,
    pub node_name: String,
    pub status: String,
    pub device_id: String,
    pub node_uid: String,
    /// Accepted and ignored, as in Go.
    pub resource_group: String,
    pub priority: String,
}

const CONTAINER_FILTERS: MessageSchema = MessageSchema {
    fields: &[
        string("name", "name"),
        string("node_name", "nodeName"),
        string("status", "status"),
        string("device_id", "deviceId"),
        string("node_uid", "nodeUid"),
        string("resource_group", "resourceGroup"),
        string("priority", "priority"),
    ],
};

/// `GetAllContainersReq.PageSize`: accepted and ignored (the frontend pages locally).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PageSize {
    #[serde(rename = "pageSize")]
    pub page_size: i32,
    #[serde(rename = "pageNo")]
    pub page_no: i32,
    pub sort: String,
    #[serde(rename = "sortField")]
    pub sort_field: String,
}

const PAGE_SIZE: MessageSchema = MessageSchema {
    fields: &[
        FieldSchema {
            proto: "pageSize",
            json: "pageSize",
            kind: FieldKind::Int32,
        },
        FieldSchema {
            proto: "pageNo",
            json: "pageNo",
            kind: FieldKind::Int32,
        },
        string("sort", "sort"),
        string("sortField", "sortField"),
    ],
};

/// `GetAllContainersReq`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainersRequest {
    pub filters: ContainerFilters,
    #[serde(rename = "pageSize")]
    pub page_size: PageSize,
}

impl ProtoRequest for ContainersRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[
            FieldSchema {
                proto: "filters",
                json: "filters",
                kind: FieldKind::Message(&CONTAINER_FILTERS),
            },
            FieldSchema {
                proto: "pageSize",
                json: "pageSize",
                kind: FieldKind::Message(&PAGE_SIZE),
            },
        ],
    };
}

/// `GetContainerReq`: the query of `GET /v1/container`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ContainerRequest {
    pub name: String,
    pub pod_uid: String,
    pub device_id: String,
}

impl ProtoRequest for ContainerRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[
            string("name", "name"),
            string("pod_uid", "podUid"),
            string("device_id", "deviceId"),
        ],
    };
}

/// One container (`ContainerReply`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerReply {
    pub name: String,
    pub status: String,
    pub app_name: String,
    pub node_name: String,
    pub allocated_devices: i32,
    pub allocated_cores: i32,
    pub allocated_mem: i32,
    /// Allocation type of the last listed allocation.
    #[serde(rename = "type")]
    pub allocation_type: String,
    pub create_time: String,
    /// Never filled (Go declared these and never set them).
    pub start_time: String,
    pub end_time: String,
    pub pod_uid: String,
    pub node_uid: String,
    pub resource_pool: String,
    pub flavor: String,
    pub priority: String,
    pub namespace: String,
    pub device_ids: Vec<String>,
    pub images: Vec<String>,
    /// Whether `allocated_cores` is a real figure; left out when there is nothing to judge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated_cores_known: Option<bool>,
    pub status_detail: Option<StatusDetailReply>,
    /// `/v1/workloads` only: a GPU request not bound to a node yet.
    pub pending: bool,
    /// `/v1/workloads` only: the pod's scheduling state, on request rows.
    pub scheduling: Option<SchedulingPodReply>,
    /// `/v1/workloads` only: what the container asks for, on request rows.
    pub request: Option<RequestReply>,
    /// `regular`, `init` or `sidecar` on `/v1/workloads`; empty elsewhere, as upstream.
    pub container_kind: String,
    /// `whole`, `template`, `soft` or `unknown`.
    pub allocation_shape: String,
    pub template: String,
    pub allocated_cores_reason: String,
    /// Provider of every listed allocation's device when they agree, else empty.
    pub vendor: String,
    /// One entry per listed allocation (upstream's open MIG work, field 30).
    pub devices: Vec<ContainerDevice>,
    /// Why `allocation_shape` is `unknown`, when every listed allocation says the same
    /// (field 31).
    pub allocation_shape_reason: String,
}

/// `ContainersReply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContainersReply {
    pub items: Vec<ContainerReply>,
}

/// Rank of a status in the list: Go's table, anything else (including `""`) first.
fn status_rank(status: &str) -> u8 {
    match status {
        "failed" => 1,
        "unknown" => 2,
        "success" => 3,
        "closed" => 4,
        _ => 0,
    }
}

fn base_reply(
    snapshot: &ClusterSnapshot,
    pod: &PodRecord,
    container: &ContainerRecord,
    zone: &TimeZone,
) -> ContainerReply {
    ContainerReply {
        name: container.name.clone(),
        status: container.state.as_str().to_string(),
        app_name: pod.name.clone(),
        node_name: pod.node_name.clone(),
        create_time: rfc3339(pod.create_time, zone),
        pod_uid: pod.uid.clone(),
        node_uid: snapshot.inventory.node_uid(&pod.node_name).to_string(),
        priority: container.priority.clone(),
        namespace: pod.namespace.clone(),
        status_detail: Some(StatusDetailReply::from(container.status_detail.as_ref())),
        ..ContainerReply::default()
    }
}

/// The provider of an allocation: its device's vendor, else what the pod annotation told.
fn allocation_vendor(inventory: &Inventory, allocation: &DeviceAllocation) -> &'static str {
    let device = inventory
        .device_index_by_alias(&allocation.uuid)
        .and_then(|flat| inventory.device(flat));
    match (device, &allocation.facts) {
        (Some(device), _) => device.vendor.provider(),
        (None, AllocationFacts::Ascend(_)) => crate::device::Vendor::Ascend.provider(),
        (None, AllocationFacts::Nvidia(_)) => crate::device::Vendor::Nvidia.provider(),
        (None, _) => "",
    }
}

/// Fills the 2.0 fields that describe the listed allocations as a whole.
fn describe(reply: &mut ContainerReply, inventory: &Inventory, listed: &[&DeviceAllocation]) {
    let description = describe_allocations(inventory, listed);
    reply.allocated_cores_known = description.allocated_cores_known;
    reply.allocation_shape = description.allocation_shape;
    reply.template = description.template;
    reply.allocated_cores_reason = description.allocated_cores_reason;
    reply.allocation_shape_reason = description.allocation_shape_reason;
    reply.devices = description.devices;
    let mut vendors = listed.iter().map(|a| allocation_vendor(inventory, a));
    let first = vendors.next().unwrap_or_default();
    reply.vendor = if vendors.all(|v| v == first) {
        first.to_string()
    } else {
        String::new()
    };
}

/// Whether the container lists some allocation whose shown id starts with `device_id`
/// (what [`allocated_container`] needs to answer at all).
pub fn lists_allocation(
    inventory: &Inventory,
    container: &ContainerRecord,
    device_id: &str,
) -> bool {
    container.allocations.iter().any(|a| {
        let shown = shown_id(inventory, a);
        !shown.is_empty() && shown.starts_with(device_id)
    })
}

/// One container of a placed pod with its allocations whose shown id starts with
/// `device_id`; `None` when none is left.
pub fn allocated_container(
    snapshot: &ClusterSnapshot,
    pod: &PodRecord,
    container: &ContainerRecord,
    device_id: &str,
    zone: &TimeZone,
) -> Option<ContainerReply> {
    let inventory = &snapshot.inventory;
    let mut reply = base_reply(snapshot, pod, container, zone);
    let mut listed = Vec::new();
    for allocation in &container.allocations {
        let shown = shown_id(inventory, allocation);
        if shown.is_empty() || !shown.starts_with(device_id) {
            continue;
        }
        add_allocation(&mut reply, shown, allocation);
        listed.push(allocation);
    }
    if listed.is_empty() {
        return None;
    }
    reply.images = distinct_images([container.image.as_str()]);
    describe(&mut reply, inventory, &listed);
    Some(reply)
}

fn add_allocation(reply: &mut ContainerReply, shown: &str, allocation: &DeviceAllocation) {
    reply.device_ids.push(shown.to_string());
    reply.allocated_cores = reply.allocated_cores.saturating_add(allocation.usedcores);
    reply.allocated_mem = reply.allocated_mem.saturating_add(allocation.usedmem);
    reply.allocation_type = allocation.alloc_type.clone();
    reply.allocated_devices = reply.allocated_devices.saturating_add(1);
}

/// Go's priority filter (trimmed): `"0"` hides priority-1 containers, `"1"` shows only them,
/// any other value filters nothing.
fn priority_matches(filter: &str, priority: &str) -> bool {
    match filter.trim_matches(' ') {
        "0" => priority != "1",
        "1" => priority == "1",
        _ => true,
    }
}

/// `POST /v1/containers`: containers of tracked pods with at least one allocation left
/// after the `deviceId` prefix filter, matching the other filters (container-name
/// substring; exact node name, status, node UID; priority), ordered by status rank, then
/// newest first, then container name, namespace, pod name (Go left ties in map order).
pub fn container_list(
    snapshot: &ClusterSnapshot,
    filters: &ContainerFilters,
    zone: &TimeZone,
) -> ContainersReply {
    ContainersReply {
        items: container_rows(snapshot, filters, zone).replies().collect(),
    }
}

/// [`container_list`] as its rows, chosen and ordered; each item is made only as it is
/// serialized. At 10,000 GPUs the 31,600 items held at once were 45 MB (heaptrack), for a
/// reply that goes straight into the compressor.
pub struct ContainerRows<'a> {
    snapshot: &'a ClusterSnapshot,
    rows: Vec<(&'a PodRecord, &'a ContainerRecord)>,
    device_id: &'a str,
    zone: &'a TimeZone,
}

/// The rows of [`container_list`].
pub fn container_rows<'a>(
    snapshot: &'a ClusterSnapshot,
    filters: &'a ContainerFilters,
    zone: &'a TimeZone,
) -> ContainerRows<'a> {
    let inventory = &snapshot.inventory;
    let mut rows: Vec<(&PodRecord, &ContainerRecord)> = Vec::new();
    for pod in snapshot.pods.iter() {
        if !filters.node_name.is_empty() && filters.node_name != pod.node_name {
            continue;
        }
        if !filters.node_uid.is_empty() && filters.node_uid != inventory.node_uid(&pod.node_name) {
            continue;
        }
        for container in &pod.containers {
            if !container.name.contains(filters.name.as_str())
                || (!filters.status.is_empty() && filters.status != container.state.as_str())
                || !priority_matches(&filters.priority, &container.priority)
            {
                continue;
            }
            // The same test as `allocated_container`'s: some allocation is listed.
            let listed = container.allocations.iter().any(|allocation| {
                let shown = shown_id(inventory, allocation);
                !shown.is_empty() && shown.starts_with(filters.device_id.as_str())
            });
            if listed {
                rows.push((pod, container));
            }
        }
    }
    rows.sort_by(|(pa, a), (pb, b)| {
        (
            status_rank(a.state.as_str()),
            Reverse(pa.create_time),
            &a.name,
        )
            .cmp(&(
                status_rank(b.state.as_str()),
                Reverse(pb.create_time),
                &b.name,
            ))
            .then_with(|| (&pa.namespace, &pa.name).cmp(&(&pb.namespace, &pb.name)))
    });
    ContainerRows {
        snapshot,
        rows,
        device_id: &filters.device_id,
        zone,
    }
}

impl ContainerRows<'_> {
    /// The items, made one at a time.
    pub fn replies(&self) -> impl Iterator<Item = ContainerReply> + '_ {
        self.rows.iter().filter_map(|(pod, container)| {
            allocated_container(self.snapshot, pod, container, self.device_id, self.zone)
        })
    }

    /// Rows chosen.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each row's identity: the address of its container's record. A record is replaced,
    /// never changed, when its pod changes, so while it lives an equal address means an
    /// equal item (for the same inventory, filters and zone).
    pub fn row_ids(&self) -> Vec<usize> {
        self.rows
            .iter()
            .map(|(_, container)| std::ptr::from_ref::<ContainerRecord>(container) as usize)
            .collect()
    }

    /// The item of row `row`, as [`Self::replies`] makes it; `None` past the end or when the
    /// row lists no allocation.
    pub fn item(&self, row: usize) -> Option<ContainerReply> {
        let (pod, container) = self.rows.get(row)?;
        allocated_container(self.snapshot, pod, container, self.device_id, self.zone)
    }
}

/// The container list owning what it is made from, for a build that outlives its request:
/// serialized as [`ContainersReply`], its items made as they are written.
pub struct ContainerListing {
    pub snapshot: std::sync::Arc<ClusterSnapshot>,
    pub filters: ContainerFilters,
    pub zone: TimeZone,
}

impl Serialize for ContainerListing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        container_rows(&self.snapshot, &self.filters, &self.zone).serialize(serializer)
    }
}

/// Serialized exactly as [`ContainersReply`].
impl Serialize for ContainerRows<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Items<'r, 'a>(&'r ContainerRows<'a>);
        impl Serialize for Items<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.replies())
            }
        }
        let mut reply = serializer.serialize_struct("ContainersReply", 1)?;
        reply.serialize_field("items", &Items(self))?;
        reply.end()
    }
}

/// Trimmed, non-empty, first occurrence kept, in order.
fn distinct_images<'a>(images: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for image in images.into_iter().map(str::trim) {
        if !image.is_empty() && !out.iter().any(|seen| seen == image) {
            out.push(image.to_string());
        }
    }
    out
}

/// `GET /v1/container`: container `name` of pod `pod_uid` (both required, exact); its
/// allocations whose raw uuid equals `device_id` (all when empty); `images` of every
/// container of the pod. An all-empty reply when not found. A pod without any decoded
/// allocation has no containers here, as it had none in Go.
pub fn container_detail(
    snapshot: &ClusterSnapshot,
    request: &ContainerRequest,
    zone: &TimeZone,
) -> ContainerReply {
    if request.pod_uid.is_empty() || request.name.is_empty() {
        return ContainerReply::default();
    }
    let found = snapshot
        .pods
        .iter()
        .filter(|p| p.uid == request.pod_uid && p.allocated_containers() > 0)
        .find_map(|p| Some((p, p.containers.iter().find(|c| c.name == request.name)?)));
    let Some((pod, container)) = found else {
        return ContainerReply::default();
    };
    let mut reply = base_reply(snapshot, pod, container, zone);
    let mut listed = Vec::new();
    for allocation in &container.allocations {
        if !request.device_id.is_empty() && request.device_id != allocation.uuid {
            continue;
        }
        add_allocation(
            &mut reply,
            shown_id(&snapshot.inventory, allocation),
            allocation,
        );
        listed.push(allocation);
    }
    describe(&mut reply, &snapshot.inventory, &listed);
    reply.images = distinct_images(pod.containers.iter().map(|c| c.image.as_str()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_serialize_exactly_as_the_built_list() {
        let snapshot = std::sync::Arc::new(crate::synthetic::ClusterShape::gpus(6).snapshot());
        let zone = TimeZone::UTC;
        for filters in [
            ContainerFilters::default(),
            ContainerFilters {
                device_id: "GPU-00002".into(),
                ..ContainerFilters::default()
            },
            ContainerFilters {
                node_name: "nowhere".into(),
                ..ContainerFilters::default()
            },
        ] {
            let built = container_list(&snapshot, &filters, &zone);
            let streamed = ContainerListing {
                snapshot: std::sync::Arc::clone(&snapshot),
                filters: filters.clone(),
                zone: zone.clone(),
            };
            assert_eq!(
                serde_json::to_string(&streamed).unwrap(),
                serde_json::to_string(&built).unwrap(),
                "{filters:?}"
            );
        }
        let all = container_list(&snapshot, &ContainerFilters::default(), &zone);
        assert!(all.items.len() > 50, "{}", all.items.len());
    }
}
