//! `POST /v1/workloads` (upstream 2.0's `ListWorkloads`): one list of every GPU container —
//! the allocated ones of `/v1/containers` and the GPU requests no allocation stands for yet
//! (pending pods, and containers of bound pods HAMi recorded nothing for, such as init
//! containers) — filtered, counted per status and paged on the server.
//!
//! Built from one snapshot in one pass: the rows are merged, every filter but `status`
//! decides the scope (what `status_counts` counts), the status filter what `total` and the
//! page hold. The order is total (status group, longest wait first among pending rows, then
//! namespace, pod, container, kind, pod UID), so consecutive pages of one snapshot never
//! overlap or skip a row.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cluster::scheduling::{ContainerKind, ContainerRequest, SchedulingPod, WorkloadStatus};
use crate::cluster::snapshot::{ClusterSnapshot, ContainerRecord, PodRecord};
use crate::reply::containers::{allocated_container, lists_allocation, ContainerReply};
use crate::reply::request::{string, FieldKind, FieldSchema, MessageSchema, ProtoRequest};
use crate::reply::scheduling::{scheduling_pod_reply, RequestReply, StatusDetailReply};
use crate::reply::times::rfc3339;

/// Rows per page when the request gives none (upstream's default).
pub const DEFAULT_PAGE_SIZE: i32 = 10;
/// Largest page (upstream's cap); larger requests get this many rows.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The statuses `status_counts` counts besides `all`, in upstream's order.
pub const COUNTED_STATUSES: [&str; 4] = [
    WorkloadStatus::Pending.as_str(),
    WorkloadStatus::Waiting.as_str(),
    WorkloadStatus::Success.as_str(),
    "abnormal",
];

/// `ListWorkloadsRequest.Filters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkloadFilters {
    /// Substring of the pod or the container name (trimmed).
    pub name: String,
    pub node_name: String,
    /// Empty or `all`: every row; `abnormal`: `error`, `failed`, `not_ready`, `unknown`;
    /// else one exact status (`pending` included).
    pub status: String,
    /// Prefix of a shown device id.
    pub device_id: String,
    pub node_uid: String,
    pub namespace: String,
    /// `0` hides priority-1 rows, `1` shows only them; any value hides request rows.
    pub priority: String,
}

const WORKLOAD_FILTERS: MessageSchema = MessageSchema {
    fields: &[
        string("name", "name"),
        string("node_name", "nodeName"),
        string("status", "status"),
        string("device_id", "deviceId"),
        string("node_uid", "nodeUid"),
        string("namespace", "namespace"),
        string("priority", "priority"),
    ],
};

/// `ListWorkloadsRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WorkloadsRequest {
    pub filters: WorkloadFilters,
    pub page: i32,
    pub page_size: i32,
}

impl ProtoRequest for WorkloadsRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[
            FieldSchema {
                proto: "filters",
                json: "filters",
                kind: FieldKind::Message(&WORKLOAD_FILTERS),
            },
            FieldSchema {
                proto: "page",
                json: "page",
                kind: FieldKind::Int32,
            },
            FieldSchema {
                proto: "page_size",
                json: "pageSize",
                kind: FieldKind::Int32,
            },
        ],
    };
}

/// `WorkloadsReply`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsReply {
    pub items: Vec<ContainerReply>,
    /// Rows matching every filter, over all pages.
    pub total: i32,
    /// Rows per status (`all`, `pending`, `waiting`, `success`, `abnormal`) under every
    /// filter except `status`; a status without rows has no key, as upstream.
    pub status_counts: BTreeMap<String, i32>,
}

/// Where a row comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// A container HAMi allocated devices to.
    Allocated(&'a PodRecord, &'a ContainerRecord),
    /// A GPU request no allocation stands for.
    Request(&'a SchedulingPod, &'a ContainerRequest),
}

/// A merged row: what filters, counts and order need, borrowed from the snapshot. Only the
/// rows of the requested page become a [`ContainerReply`].
struct Row<'a> {
    source: Source<'a>,
    status: WorkloadStatus,
    namespace: &'a str,
    app_name: &'a str,
    name: &'a str,
    node_name: &'a str,
    node_uid: &'a str,
    pod_uid: &'a str,
    /// HAMi's priority; request rows have none.
    priority: Option<&'a str>,
    /// The pod's creation, for pending rows (longest wait first).
    waiting_since: Option<Timestamp>,
    kind: ContainerKind,
}

/// Status groups: abnormal first, then pending, starting, terminating, running, completed.
fn status_order(status: WorkloadStatus) -> u8 {
    match status {
        WorkloadStatus::Pending => 2,
        WorkloadStatus::Waiting => 3,
        WorkloadStatus::Terminating => 4,
        WorkloadStatus::Success => 5,
        WorkloadStatus::Closed => 6,
        WorkloadStatus::Error
        | WorkloadStatus::Failed
        | WorkloadStatus::NotReady
        | WorkloadStatus::Unknown => 1,
    }
}

/// Whether a row's status passes a status filter (`all`, `abnormal`, or one status word).
pub fn status_matches(status: WorkloadStatus, filter: &str) -> bool {
    match filter {
        "" | "all" => true,
        "abnormal" => status.is_abnormal(),
        other => other == status.as_str(),
    }
}

/// Every filter except `status`. `device_id` decided which allocated rows exist; request rows
/// have no device, so any device filter drops them.
fn in_scope(row: &Row<'_>, filters: &WorkloadFilters) -> bool {
    if !filters.device_id.is_empty() && matches!(row.source, Source::Request(..)) {
        return false;
    }
    let name = filters.name.trim();
    if !name.is_empty() && !row.app_name.contains(name) && !row.name.contains(name) {
        return false;
    }
    if (!filters.namespace.is_empty() && filters.namespace != row.namespace)
        || (!filters.node_name.is_empty() && filters.node_name != row.node_name)
        || (!filters.node_uid.is_empty() && filters.node_uid != row.node_uid)
    {
        return false;
    }
    match (filters.priority.trim(), row.priority) {
        ("", _) => true,
        // HAMi's priority: request rows have none.
        (_, None) => false,
        ("0", Some(priority)) => priority != "1",
        ("1", Some(priority)) => priority == "1",
        _ => true,
    }
}

/// Allocated rows (those listing an allocation whose shown id starts with `device_id`) and
/// request rows.
fn merged_rows<'a>(snapshot: &'a ClusterSnapshot, device_id: &str) -> Vec<Row<'a>> {
    let inventory = &snapshot.inventory;
    let mut rows = Vec::new();
    let mut unbound = Vec::new();
    let mut bound: HashSet<&str> = HashSet::new();
    let mut allocated: HashSet<(&str, &str)> = HashSet::new();
    for pod in snapshot.pods.iter() {
        for container in &pod.containers {
            if !lists_allocation(inventory, container, device_id) {
                continue;
            }
            let row = Row {
                source: Source::Allocated(pod, container),
                status: container.status,
                namespace: &pod.namespace,
                app_name: &pod.name,
                name: &container.name,
                node_name: &pod.node_name,
                node_uid: inventory.node_uid(&pod.node_name),
                pod_uid: &pod.uid,
                priority: Some(&container.priority),
                waiting_since: None,
                kind: ContainerKind::Regular,
            };
            if pod.node_name.is_empty() {
                // A HAMi reservation made before binding.
                unbound.push(row);
                continue;
            }
            rows.push(row);
            bound.insert(pod.uid.as_str());
            allocated.insert((pod.uid.as_str(), container.name.as_str()));
        }
    }
    let mut projected: HashSet<(&str, &str)> = HashSet::new();
    // Built even under a device filter, which they fail: a request row still hides the
    // reservation of the same container.
    for view in snapshot.scheduling.iter().filter(|v| v.listed()) {
        if bound.contains(view.uid.as_str()) && view.node_name.is_empty() {
            continue;
        }
        for request in &view.requests {
            let identity = (view.uid.as_str(), request.container.as_str());
            if !request.is_positive() || allocated.contains(&identity) {
                continue;
            }
            let pending = view.node_name.is_empty();
            let status = if pending {
                WorkloadStatus::Pending
            } else {
                request.status
            };
            if status == WorkloadStatus::Closed {
                // A completed container without an allocation holds no GPU.
                continue;
            }
            rows.push(Row {
                source: Source::Request(view, request),
                status,
                namespace: &view.namespace,
                app_name: &view.name,
                name: &request.container,
                node_name: &view.node_name,
                node_uid: inventory.node_uid(&view.node_name),
                pod_uid: &view.uid,
                priority: None,
                waiting_since: if pending { view.created_at } else { None },
                kind: request.kind,
            });
            projected.insert(identity);
        }
    }
    // Reservations that no request row represents.
    for row in unbound {
        if !bound.contains(row.pod_uid) && !projected.contains(&(row.pod_uid, row.name)) {
            rows.push(row);
        }
    }
    rows
}

fn row_order(a: &Row<'_>, b: &Row<'_>) -> std::cmp::Ordering {
    status_order(a.status)
        .cmp(&status_order(b.status))
        // Only pending rows carry a time, and a status group is all pending or none.
        .then_with(|| a.waiting_since.cmp(&b.waiting_since))
        .then_with(|| a.namespace.cmp(b.namespace))
        .then_with(|| a.app_name.cmp(b.app_name))
        .then_with(|| a.name.cmp(b.name))
        .then_with(|| a.kind.as_str().cmp(b.kind.as_str()))
        .then_with(|| a.pod_uid.cmp(b.pod_uid))
}

/// The reply of one row.
fn row_reply(
    snapshot: &ClusterSnapshot,
    records: &HashMap<&str, &PodRecord>,
    row: &Row<'_>,
    device_id: &str,
    zone: &TimeZone,
) -> ContainerReply {
    match row.source {
        Source::Allocated(pod, container) => {
            let mut reply =
                allocated_container(snapshot, pod, container, device_id, zone).unwrap_or_default();
            reply.status = row.status.to_string();
            reply.container_kind = ContainerKind::Regular.as_str().to_string();
            reply
        }
        Source::Request(view, request) => {
            let pending = view.node_name.is_empty();
            let record = records.get(view.uid.as_str()).copied();
            ContainerReply {
                name: request.container.clone(),
                status: row.status.to_string(),
                app_name: view.name.clone(),
                node_name: view.node_name.clone(),
                create_time: view
                    .created_at
                    .map(|t| rfc3339(t, zone))
                    .unwrap_or_default(),
                pod_uid: view.uid.clone(),
                node_uid: row.node_uid.to_string(),
                namespace: view.namespace.clone(),
                status_detail: (!pending)
                    .then(|| StatusDetailReply::from(request.status_detail.as_ref())),
                pending,
                scheduling: Some(scheduling_pod_reply(view, record, false, zone)),
                request: Some(RequestReply::from(request)),
                container_kind: request.kind.as_str().to_string(),
                ..ContainerReply::default()
            }
        }
    }
}

/// `POST /v1/workloads`.
pub fn workload_list(
    snapshot: &ClusterSnapshot,
    request: &WorkloadsRequest,
    zone: &TimeZone,
) -> WorkloadsReply {
    let filters = &request.filters;
    let mut counts: BTreeMap<String, i32> = BTreeMap::new();
    let mut kept: Vec<Row<'_>> = Vec::new();
    for row in merged_rows(snapshot, &filters.device_id) {
        if !in_scope(&row, filters) {
            continue;
        }
        *counts.entry("all".to_string()).or_default() += 1;
        for counted in COUNTED_STATUSES {
            if status_matches(row.status, counted) {
                *counts.entry(counted.to_string()).or_default() += 1;
            }
        }
        if status_matches(row.status, &filters.status) {
            kept.push(row);
        }
    }
    kept.sort_by(row_order);
    let total = i32::try_from(kept.len()).unwrap_or(i32::MAX);
    let page = i64::from(request.page.max(1));
    let size = i64::from(match request.page_size {
        s if s < 1 => DEFAULT_PAGE_SIZE,
        s => s.min(MAX_PAGE_SIZE),
    });
    let start = usize::try_from((page - 1) * size).unwrap_or(usize::MAX);
    let page_rows: Vec<&Row<'_>> = kept
        .iter()
        .skip(start)
        .take(usize::try_from(size).unwrap_or_default())
        .collect();
    // Request rows of bound pods name the pod's allocated containers.
    let records: HashMap<&str, &PodRecord> = if page_rows
        .iter()
        .any(|r| matches!(r.source, Source::Request(v, _) if !v.node_name.is_empty()))
    {
        snapshot
            .pods
            .iter()
            .map(|p| (p.uid.as_str(), p.as_ref()))
            .collect()
    } else {
        HashMap::new()
    };
    let items = page_rows
        .into_iter()
        .map(|row| row_reply(snapshot, &records, row, &filters.device_id, zone))
        .collect();
    WorkloadsReply {
        items,
        total,
        status_counts: counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abnormal_groups_failures_and_unconfirmed_states() {
        use WorkloadStatus::*;
        for s in [Error, Failed, NotReady, Unknown] {
            assert!(status_matches(s, "abnormal"), "{s}");
        }
        for s in [Pending, Waiting, Success, Closed, Terminating] {
            assert!(!status_matches(s, "abnormal"), "{s}");
        }
        assert!(status_matches(Closed, "all") && status_matches(Closed, ""));
        assert!(!status_matches(Success, "waiting"));
        assert!(status_matches(NotReady, "not_ready"));
    }

    #[test]
    fn status_groups_put_abnormal_first_and_completed_last() {
        use WorkloadStatus::*;
        let order: Vec<u8> = [
            NotReady,
            Pending,
            Waiting,
            Terminating,
            Success,
            Closed,
            Error,
        ]
        .into_iter()
        .map(status_order)
        .collect();
        assert_eq!(order, [1, 2, 3, 4, 5, 6, 1]);
    }
}
