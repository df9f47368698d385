//! Summary replies: the device summary (`POST /v1/summary`, Go's `GetSummary`) and the
//! resource-usage overview (`POST /v1/monitor/summary`, declared by Go and left at 501).
//!
//! Both sum the same per-device numbers over the devices a filter selects, from the
//! snapshot only (no metrics-store query).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::cluster::snapshot::ClusterSnapshot;
use crate::reply::protojson::Float32;
use crate::reply::request::{string, FieldKind, FieldSchema, MessageSchema, ProtoRequest};

/// `GetSummaryReq.Filters`: exact matches, not trimmed (as in Go).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SummaryFilters {
    #[serde(rename = "type")]
    pub device_type: String,
    pub node_uid: String,
    pub device_id: String,
}

const SUMMARY_FILTERS: MessageSchema = MessageSchema {
    fields: &[
        string("type", "type"),
        string("node_uid", "nodeUid"),
        string("device_id", "deviceId"),
    ],
};

/// `GetSummaryReq`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SummaryRequest {
    pub filters: SummaryFilters,
}

impl ProtoRequest for SummaryRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[FieldSchema {
            proto: "filters",
            json: "filters",
            kind: FieldKind::Message(&SUMMARY_FILTERS),
        }],
    };
}

/// `DeviceSummaryReply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSummaryReply {
    pub vgpu_used: i32,
    pub vgpu_total: i32,
    pub core_used: i32,
    pub core_total: i32,
    pub memory_used: i32,
    pub memory_total: i32,
    pub gpu_count: i32,
    pub node_count: i32,
}

/// Sums registered capacity and allocated usage over the devices `selects` accepts.
fn summarize(
    snapshot: &ClusterSnapshot,
    selects: impl Fn(&crate::device::Device) -> bool,
) -> DeviceSummaryReply {
    let inventory = &snapshot.inventory;
    let mut reply = DeviceSummaryReply::default();
    let mut nodes: HashSet<&str> = HashSet::new();
    for flat in 0..inventory.device_count() {
        let Some(device) = inventory.device(flat) else {
            continue;
        };
        if !selects(device) {
            continue;
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
        reply.gpu_count = reply.gpu_count.saturating_add(1);
        nodes.insert(device.node_uid.as_str());
    }
    reply.node_count = i32::try_from(nodes.len()).unwrap_or(i32::MAX);
    reply
}

/// `POST /v1/summary`: totals over the devices matching the exact `type`, `nodeUid` and
/// `deviceId` filters; `nodeCount` counts distinct node UIDs among them.
pub fn device_summary(snapshot: &ClusterSnapshot, filters: &SummaryFilters) -> DeviceSummaryReply {
    summarize(snapshot, |d| {
        (filters.device_type.is_empty() || d.device_type == filters.device_type)
            && (filters.node_uid.is_empty() || d.node_uid == filters.node_uid)
            && (filters.device_id.is_empty() || d.id == filters.device_id)
    })
}

/// `SummaryFilter` of `POST /v1/monitor/summary`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UsageFilter {
    /// Node name or node UID (trimmed); empty = every node.
    pub node: String,
    /// Device id (trimmed); empty = every device.
    pub device: String,
}

impl ProtoRequest for UsageFilter {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[string("node", "node"), string("device", "device")],
    };
}

/// The three resources the overview reports on (`DistributionRate` and `Scaling` of
/// `monitor.proto`, fields in proto order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResourceRates {
    pub vgpu: Float32,
    pub memory: Float32,
    pub core: Float32,
}

/// `SummaryResponse`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UsageReply {
    /// Percent of the registered capacity that is allocated.
    #[serde(rename = "distributionRate")]
    pub distribution_rate: ResourceRates,
    /// Allocated amount per physical device equivalent: how many times over the hardware
    /// is promised.
    pub scaling: ResourceRates,
}

fn ratio(part: i32, whole: f64) -> Float32 {
    if whole > 0.0 {
        Float32((f64::from(part) / whole) as f32)
    } else {
        Float32(0.0)
    }
}

/// `POST /v1/monitor/summary`, which Go declared and answered with 501 and the frontend's
/// (unmounted) usage panel calls. Over the selected devices:
/// - `distributionRate` = 100 × allocated ÷ registered (vGPU slots, cores, memory): the
///   panel's "分配率" (allocation rate) gauges, in percent;
/// - `scaling` = allocated ÷ physical: vGPUs per device, cores per 100-core device, and
///   memory per registered memory (the snapshot cannot know the physical memory behind a
///   scaled registration): the panel's "超配比" (overcommit ratio) tiles.
///
/// All zero when nothing matches.
pub fn usage_overview(snapshot: &ClusterSnapshot, filter: &UsageFilter) -> UsageReply {
    let node = filter.node.trim_matches(' ');
    let device = filter.device.trim_matches(' ');
    let totals = summarize(snapshot, |d| {
        (node.is_empty() || d.node_name == node || d.node_uid == node)
            && (device.is_empty() || d.id == device)
    });
    let percent = |used: i32, total: i32| ratio(used, f64::from(total) / 100.0);
    let devices = f64::from(totals.gpu_count);
    UsageReply {
        distribution_rate: ResourceRates {
            vgpu: percent(totals.vgpu_used, totals.vgpu_total),
            memory: percent(totals.memory_used, totals.memory_total),
            core: percent(totals.core_used, totals.core_total),
        },
        scaling: ResourceRates {
            vgpu: ratio(totals.vgpu_used, devices),
            memory: ratio(totals.memory_used, f64::from(totals.memory_total)),
            core: ratio(totals.core_used, devices * 100.0),
        },
    }
}
