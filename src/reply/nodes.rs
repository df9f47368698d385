//! Node replies: the node list (`POST /v1/nodes`) and one node (`GET /v1/node`), built from a
//! [`ClusterSnapshot`] and, for the list, the per-node capacity the metrics store reported.
//!
//! Field names and order follow `NodeReply` of `api/v1/node.proto`. A node shows every
//! device of every vendor found on it (Go kept only the last one of a second vendor).

use std::collections::HashMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::cluster::snapshot::{ClusterSnapshot, NodeRecord};
use crate::reply::protojson::parse_go_bool;
use crate::reply::request::{string, FieldKind, FieldSchema, MessageSchema, ProtoRequest};
use crate::reply::times::node_time;

/// `GetAllNodesReq.Filters`; none of them is trimmed (as in Go).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeFilters {
    pub ip: String,
    #[serde(rename = "type")]
    pub device_type: String,
    /// A Go boolean string; anything unparsable means "no filter".
    pub is_schedulable: String,
}

const NODE_FILTERS: MessageSchema = MessageSchema {
    fields: &[
        string("ip", "ip"),
        string("type", "type"),
        string("is_schedulable", "isSchedulable"),
    ],
};

/// `GetAllNodesReq`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodesRequest {
    pub filters: NodeFilters,
}

impl ProtoRequest for NodesRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[FieldSchema {
            proto: "filters",
            json: "filters",
            kind: FieldKind::Message(&NODE_FILTERS),
        }],
    };
}

/// `GetNodeReq`: the query of `GET /v1/node` (the node's UID, not its name).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NodeRequest {
    pub uid: String,
}

impl ProtoRequest for NodeRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[string("uid", "uid")],
    };
}

/// One node (`NodeReply`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReply {
    pub ip: String,
    pub is_schedulable: bool,
    pub is_ready: bool,
    /// Distinct device types, in device order.
    #[serde(rename = "type")]
    pub device_types: Vec<String>,
    pub vgpu_used: i32,
    pub vgpu_total: i32,
    pub core_used: i32,
    pub core_total: i32,
    pub memory_used: i32,
    pub memory_total: i32,
    pub uid: String,
    pub name: String,
    pub card_cnt: i32,
    pub os_image: String,
    pub operating_system: String,
    pub kernel_version: String,
    pub container_runtime_version: String,
    pub kubelet_version: String,
    pub kube_proxy_version: String,
    pub architecture: String,
    pub creation_timestamp: String,
    /// Cards listed in the node's `hami.io/device-cordon` (ours).
    pub cordoned_cards: i32,
    /// Cards published through Kubernetes DRA (HAMi-DRA ResourceSlices); the rest are
    /// registered through HAMi's node annotations (ours).
    pub dra_cards: i32,
}

/// `NodesReply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodesReply {
    pub list: Vec<NodeReply>,
}

/// Per-node capacity the metrics store reports (`hami_core_size`, `hami_memory_size` summed
/// per exporter instance, averaged by `node`), which replaces the registered totals in the
/// node list only. Empty when the store is unreachable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeCapacity {
    pub core: HashMap<String, i32>,
    pub memory: HashMap<String, i32>,
}

/// `linux` → `Linux`, as Go showed it (and an empty value stays empty, where Go panicked).
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

fn node_reply(snapshot: &ClusterSnapshot, index: usize, zone: &TimeZone) -> Option<NodeReply> {
    let inventory = &snapshot.inventory;
    let node: &NodeRecord = inventory.nodes.get(index)?;
    let mut reply = NodeReply {
        ip: node.ip.clone(),
        is_schedulable: node.is_schedulable,
        is_ready: node.is_ready,
        uid: node.uid.clone(),
        name: node.name.clone(),
        card_cnt: i32::try_from(node.devices.len()).unwrap_or(i32::MAX),
        cordoned_cards: count(node.devices.iter().filter(|d| d.cordoned)),
        dra_cards: count(node.devices.iter().filter(|d| d.dra.is_some())),
        os_image: node.os_image.clone(),
        operating_system: capitalized(&node.operating_system),
        kernel_version: node.kernel_version.clone(),
        container_runtime_version: node.container_runtime_version.clone(),
        kubelet_version: node.kubelet_version.clone(),
        kube_proxy_version: node.kube_proxy_version.clone(),
        architecture: node.architecture.to_uppercase(),
        creation_timestamp: node_time(node.creation_timestamp, zone),
        ..NodeReply::default()
    };
    // Devices are laid out node after node, so this node's flat indexes (which usage is
    // kept by) start where the earlier nodes' end.
    let start = inventory.devices.partition_point(|(n, _)| *n < index);
    for (d, device) in node.devices.iter().enumerate() {
        let flat = start + d;
        if inventory.devices.get(flat) != Some(&(index, d)) {
            continue;
        }
        if !reply.device_types.contains(&device.device_type) {
            reply.device_types.push(device.device_type.clone());
        }
        let usage = snapshot.usage_of(flat);
        // A model HAMi's configuration does not list is shown but schedules nothing.
        if !inventory.context.is_unconfigured(device) {
            reply.vgpu_total = reply.vgpu_total.saturating_add(device.count);
            reply.core_total = reply.core_total.saturating_add(device.devcore);
            reply.memory_total = reply.memory_total.saturating_add(device.devmem);
        }
        reply.vgpu_used = reply.vgpu_used.saturating_add(usage.vgpu_used);
        reply.core_used = reply.core_used.saturating_add(usage.core_used);
        reply.memory_used = reply.memory_used.saturating_add(usage.memory_used);
    }
    Some(reply)
}

/// `POST /v1/nodes`: every inventoried node (with or without devices) matching the exact
/// `ip`, `type` and Go-boolean `isSchedulable` filters, totals overridden from `capacity`,
/// sorted by name.
pub fn node_list(
    snapshot: &ClusterSnapshot,
    filters: &NodeFilters,
    capacity: &NodeCapacity,
    zone: &TimeZone,
) -> NodesReply {
    let schedulable = parse_go_bool(&filters.is_schedulable);
    let mut list: Vec<NodeReply> = (0..snapshot.inventory.nodes.len())
        .filter_map(|index| node_reply(snapshot, index, zone))
        .filter(|n| filters.ip.is_empty() || n.ip == filters.ip)
        .filter(|n| filters.device_type.is_empty() || n.device_types.contains(&filters.device_type))
        .filter(|n| schedulable.is_none_or(|s| s == n.is_schedulable))
        .map(|mut n| {
            if let Some(core) = capacity.core.get(&n.name) {
                n.core_total = *core;
            }
            if let Some(memory) = capacity.memory.get(&n.name) {
                n.memory_total = *memory;
            }
            n
        })
        .collect();
    // The inventory is already in name order; sorting again keeps the contract explicit.
    list.sort_by(|a, b| a.name.cmp(&b.name));
    NodesReply { list }
}

/// `GET /v1/node`: the node with this UID (registered totals, no overrides, as in Go);
/// `None` when unknown, which the route answers with Go's `500 node not found`.
pub fn node_detail(snapshot: &ClusterSnapshot, uid: &str, zone: &TimeZone) -> Option<NodeReply> {
    let node = snapshot.inventory.node_by_uid(uid)?;
    let index = snapshot
        .inventory
        .nodes
        .iter()
        .position(|n| std::sync::Arc::ptr_eq(n, node))?;
    node_reply(snapshot, index, zone)
}

fn count<T>(items: impl Iterator<Item = T>) -> i32 {
    i32::try_from(items.count()).unwrap_or(i32::MAX)
}
