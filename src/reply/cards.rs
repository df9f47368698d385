//! Card replies: the card list (`POST /v1/gpus`), the card types (`POST /v1/gpu-types`) and
//! one card (`GET /v1/gpu`), built from a [`ClusterSnapshot`] and, for the list, the
//! capacity overrides the metrics store reported.
//!
//! Field names and order follow `GPUReply` of `api/v1/card.proto` (upstream 2.0 added 13
//! `core_used_known`, 14 `unconfigured`, 15 `vendor`); usage comes from the snapshot's
//! per-device usage (computed once per change, exact alias matching, compute with HAMi's
//! device configuration applied to Ascend slices).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cluster::snapshot::{ClusterSnapshot, DeviceUsage};
use crate::device::Device;
use crate::reply::request::{string, FieldKind, FieldSchema, MessageSchema, ProtoRequest};

/// `GetAllGpusReq.Filters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CardFilters {
    pub uid: String,
    #[serde(rename = "type")]
    pub device_type: String,
    pub node_name: String,
    pub provider: String,
}

const CARD_FILTERS: MessageSchema = MessageSchema {
    fields: &[
        string("uid", "uid"),
        string("type", "type"),
        string("node_name", "nodeName"),
        string("provider", "provider"),
    ],
};

/// `GetAllGpusReq`, the body of both card list routes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GpusRequest {
    pub filters: CardFilters,
}

impl ProtoRequest for GpusRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[FieldSchema {
            proto: "filters",
            json: "filters",
            kind: FieldKind::Message(&CARD_FILTERS),
        }],
    };
}

/// `GetGpuReq`: the query of `GET /v1/gpu`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GpuRequest {
    pub uid: String,
}

impl ProtoRequest for GpuRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[string("uid", "uid")],
    };
}

/// One card (`GPUReply`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuReply {
    pub uuid: String,
    pub node_name: String,
    #[serde(rename = "type")]
    pub device_type: String,
    pub vgpu_used: i32,
    pub vgpu_total: i32,
    pub core_used: i32,
    pub core_total: i32,
    pub memory_used: i32,
    pub memory_total: i32,
    pub node_uid: String,
    pub health: bool,
    pub mode: String,
    /// A proto3 `optional`: whether every slice on the card has a known compute share (an
    /// Ascend template the device configuration does not describe has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_used_known: Option<bool>,
    /// Registered, but a model HAMi's device configuration does not list (Ascend only).
    pub unconfigured: bool,
    /// The provider, such as `NVIDIA` or `Ascend`.
    pub vendor: String,
    /// Listed in the node's `hami.io/device-cordon`: HAMi schedules nothing new on it (ours).
    pub cordoned: bool,
    /// The DRA driver publishing the card in a ResourceSlice; empty for a card registered
    /// through HAMi's node annotations (ours).
    pub dra_driver: String,
}

/// `GPUsReply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpusReply {
    pub list: Vec<GpuReply>,
}

/// Per-device capacity the metrics store reports (`hami_core_size`, `hami_memory_size`
/// averaged by `device_uuid`), which replaces the registered capacity in the card list only.
/// Empty when the store is unreachable: the list then shows registered capacity, as Go did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceCapacity {
    pub core: HashMap<String, i32>,
    pub memory: HashMap<String, i32>,
}

fn gpu_reply(snapshot: &ClusterSnapshot, device: &Device, usage: DeviceUsage) -> GpuReply {
    GpuReply {
        uuid: device.id.clone(),
        node_name: device.node_name.clone(),
        device_type: device.device_type.clone(),
        vgpu_used: usage.vgpu_used,
        vgpu_total: device.count,
        core_used: usage.core_used,
        core_total: device.devcore,
        memory_used: usage.memory_used,
        memory_total: device.devmem,
        node_uid: device.node_uid.clone(),
        health: device.health,
        mode: device.mode.clone(),
        core_used_known: Some(!usage.cores_unknown),
        unconfigured: snapshot.inventory.context.is_unconfigured(device),
        vendor: device.vendor.provider().to_string(),
        cordoned: device.cordoned,
        dra_driver: device
            .dra
            .as_ref()
            .map(|d| d.driver.clone())
            .unwrap_or_default(),
    }
}

/// Go trimmed the card filters of spaces only (`strings.Trim(s, " ")`), not of tabs.
fn trim_spaces(text: &str) -> &str {
    text.trim_matches(' ')
}

/// `POST /v1/gpus`: cards matching the trimmed `uid`, `type` and `nodeName` filters
/// (`provider` ignored, as in Go), capacity overridden from `capacity`, sorted by uuid.
pub fn gpu_list(
    snapshot: &ClusterSnapshot,
    filters: &CardFilters,
    capacity: &DeviceCapacity,
) -> GpusReply {
    let uid = trim_spaces(&filters.uid);
    let device_type = trim_spaces(&filters.device_type);
    let node_name = trim_spaces(&filters.node_name);
    let inventory = &snapshot.inventory;
    let mut list: Vec<GpuReply> = (0..inventory.device_count())
        .filter_map(|flat| Some((flat, inventory.device(flat)?)))
        .filter(|(_, d)| node_name.is_empty() || d.node_name == node_name)
        .filter(|(_, d)| device_type.is_empty() || d.device_type == device_type)
        .filter(|(_, d)| uid.is_empty() || d.id == uid)
        .map(|(flat, device)| {
            let mut reply = gpu_reply(snapshot, device, snapshot.usage_of(flat));
            if let Some(core) = capacity.core.get(&device.id) {
                reply.core_total = *core;
            }
            if let Some(memory) = capacity.memory.get(&device.id) {
                reply.memory_total = *memory;
            }
            reply
        })
        .collect();
    // Stable: cards sharing an id keep node-name order.
    list.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    GpusReply { list }
}

/// `POST /v1/gpu-types`: one entry per distinct device type among the devices of the
/// (trimmed, exact) `provider`, only `type` filled. Sorted by type: Go's order followed its
/// map iteration and changed between requests.
pub fn gpu_types(snapshot: &ClusterSnapshot, filters: &CardFilters) -> GpusReply {
    let provider = trim_spaces(&filters.provider);
    let mut types: Vec<&str> = snapshot
        .inventory
        .iter_devices()
        .filter(|d| provider.is_empty() || d.vendor.provider() == provider)
        .map(|d| d.device_type.as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    GpusReply {
        list: types
            .into_iter()
            .map(|t| GpuReply {
                device_type: t.to_string(),
                ..GpuReply::default()
            })
            .collect(),
    }
}

/// `GET /v1/gpu`: the card with this (trimmed) id, registered capacity (no overrides, as in
/// Go); an all-empty card when there is none.
pub fn gpu_detail(snapshot: &ClusterSnapshot, uid: &str) -> GpuReply {
    let uid = trim_spaces(uid);
    if uid.is_empty() {
        return GpuReply::default();
    }
    let inventory = &snapshot.inventory;
    let Some(flat) = inventory.device_index_by_id(uid) else {
        return GpuReply::default();
    };
    let Some(device) = inventory.device(flat) else {
        return GpuReply::default();
    };
    gpu_reply(snapshot, device, snapshot.usage_of(flat))
}
