//! Golden JSON of every REST reply, built by the pure builders (no actors): on the demo
//! cluster and on a hand-built cluster of edge cases. Goldens live in `tests/golden/`;
//! `UPDATE_GOLDEN=1` rewrites them, after which every changed file must be read before it is
//! committed.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use hami_webui_server::cluster::inventory::NodeEntry;
use hami_webui_server::cluster::snapshot::{ClusterSnapshot, NodeRecord};
use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::device::{Device, Vendor};
use hami_webui_server::reply::cards::{
    gpu_detail, gpu_list, gpu_types, CardFilters, DeviceCapacity,
};
use hami_webui_server::reply::containers::{
    container_detail, container_list, ContainerFilters, ContainerRequest,
};
use hami_webui_server::reply::nodes::{node_detail, node_list, NodeCapacity, NodeFilters};
use hami_webui_server::reply::summary::{
    device_summary, usage_overview, SummaryFilters, UsageFilter,
};
use serde_json::{json, Value};

use support::demo::*;
use support::fixtures;

use support::golden::assert_golden;

// ---------------------------------------------------------------------------------------
// Goldens: demo cluster
// ---------------------------------------------------------------------------------------

#[test]
fn demo_card_replies_match_goldens() {
    let snapshot = demo_snapshot();
    let none = CardFilters::default();
    assert_golden(
        "demo/gpus",
        &gpu_list(&snapshot, &none, &DeviceCapacity::default()),
    );
    let capacity = DeviceCapacity {
        core: HashMap::from([("GPU-e01f5057-d17f-4505-a571-59a5b1fee08f".into(), 100)]),
        memory: HashMap::from([("GPU-e01f5057-d17f-4505-a571-59a5b1fee08f".into(), 23034)]),
    };
    let mixed = CardFilters {
        node_name: " mixed-01 ".into(),
        ..CardFilters::default()
    };
    assert_golden(
        "demo/gpus-mixed-node-overridden",
        &gpu_list(&snapshot, &mixed, &capacity),
    );
    assert_golden("demo/gpu-types", &gpu_types(&snapshot, &none));
    let ascend = CardFilters {
        provider: "Ascend".into(),
        ..CardFilters::default()
    };
    assert_golden("demo/gpu-types-ascend", &gpu_types(&snapshot, &ascend));
    assert_golden(
        "demo/gpu-detail",
        &gpu_detail(&snapshot, "GPU-e01f5057-d17f-4505-a571-59a5b1fee08f"),
    );
    assert_golden(
        "demo/gpu-detail-unknown",
        &gpu_detail(&snapshot, "GPU-nope"),
    );
}

#[test]
fn demo_node_replies_match_goldens() {
    let snapshot = demo_snapshot();
    let zone = shanghai();
    assert_golden(
        "demo/nodes",
        &node_list(
            &snapshot,
            &NodeFilters::default(),
            &NodeCapacity::default(),
            &zone,
        ),
    );
    let capacity = NodeCapacity {
        core: HashMap::from([("mixed-01".into(), 200)]),
        memory: HashMap::from([("mixed-01".into(), 46068)]),
    };
    let ascend_310p = NodeFilters {
        device_type: "Ascend310P".into(),
        is_schedulable: "true".into(),
        ..NodeFilters::default()
    };
    assert_golden(
        "demo/nodes-ascend310p-overridden",
        &node_list(&snapshot, &ascend_310p, &capacity, &zone),
    );
    assert_golden(
        "demo/node-detail-mixed",
        &node_detail(&snapshot, "21b38a9d-0000-4000-8000-000000000003", &zone),
    );
    assert!(
        node_detail(&snapshot, "gpu-t4-01", &zone).is_none(),
        "by UID, not name"
    );
}

#[test]
fn demo_summary_replies_match_goldens() {
    let snapshot = demo_snapshot();
    assert_golden(
        "demo/summary",
        &device_summary(&snapshot, &SummaryFilters::default()),
    );
    let one_node = SummaryFilters {
        node_uid: "21b38a9d-0000-4000-8000-000000000003".into(),
        ..SummaryFilters::default()
    };
    assert_golden(
        "demo/summary-mixed-node",
        &device_summary(&snapshot, &one_node),
    );
    assert_golden(
        "demo/monitor-summary",
        &usage_overview(&snapshot, &UsageFilter::default()),
    );
    let node = UsageFilter {
        node: " dcu-01 ".into(),
        ..UsageFilter::default()
    };
    assert_golden(
        "demo/monitor-summary-dcu-node",
        &usage_overview(&snapshot, &node),
    );
}

#[test]
fn demo_container_replies_match_goldens() {
    let snapshot = demo_snapshot();
    let zone = shanghai();
    assert_golden(
        "demo/containers",
        &container_list(&snapshot, &ContainerFilters::default(), &zone),
    );
    let priority = ContainerFilters {
        priority: " 1 ".into(),
        ..ContainerFilters::default()
    };
    assert_golden(
        "demo/containers-priority-1",
        &container_list(&snapshot, &priority, &zone),
    );
    let detail = ContainerRequest {
        name: "main".into(),
        pod_uid: "d1bc52d9-1111-4000-8000-000000000016".into(),
        device_id: String::new(),
    };
    assert_golden(
        "demo/container-detail",
        &container_detail(&snapshot, &detail, &zone),
    );
    let missing = ContainerRequest {
        name: "main".into(),
        ..ContainerRequest::default()
    };
    assert_golden(
        "demo/container-detail-unknown",
        &container_detail(&snapshot, &missing, &zone),
    );
}

// ---------------------------------------------------------------------------------------
// Goldens: edge cases
// ---------------------------------------------------------------------------------------

/// A node with DCU cards (CSV registration) and, optionally, one NVIDIA GPU too.
fn dcu_node(name: &str, cards: &[u32], nvidia: bool) -> k8s_openapi::api::core::v1::Node {
    let register: String = cards
        .iter()
        .map(|c| format!("DCU-{c},4,65520,100,DCU,0,true,{c},hami-core:"))
        .collect();
    let mut labels = json!({"dcu": "on"});
    let mut annotations = json!({"hami.io/node-dcu-register": register});
    if nvidia {
        labels["gpu"] = json!("on");
        annotations["hami.io/node-nvidia-register"] = json!(json!([{
            "id": format!("GPU-{name}"), "index": 0, "count": 10, "devmem": 24576,
            "devcore": 100, "type": "NVIDIA L4", "mode": "hami-core", "health": true
        }])
        .to_string());
    }
    fixtures::node(name, labels, annotations)
}

fn with_containers(
    mut pod: k8s_openapi::api::core::v1::Pod,
    containers: Value,
) -> k8s_openapi::api::core::v1::Pod {
    let mut value = serde_json::to_value(&pod).expect("pod");
    value["spec"]["containers"] = containers;
    pod = serde_json::from_value(value).expect("pod");
    pod
}

/// Nodes `node-1` (DCU cards 1 and 10, plus an NVIDIA GPU) and `node-10` (DCU card 0); a
/// hand-made node whose device has an empty alias; pods with prefix-sharing allocations, a
/// terminated one, one on a node outside the inventory, a malformed annotation, an
/// allocation with an empty uuid, a pending container and a two-container pod.
fn edge_cluster() -> ClusterSnapshot {
    let config = config();
    let nodes = vec![
        dcu_node("node-10", &[0], false),
        dcu_node("node-1", &[1, 10], true),
    ];
    let dcu = |ns: &str, name: &str, node: &str, allocated: &str, phase: &str| {
        fixtures::pod(
            ns,
            name,
            node,
            json!({"hami.io/vgpu-node": node, "hami.io/dcu-devices-allocated": allocated}),
            phase,
        )
    };
    let mut pending =
        fixtures::nvidia_pod("edge", "pending", "node-1", &[("GPU-node-1", 4096, 30)]);
    if let Some(status) = pending.status.as_mut() {
        status.phase = Some("Pending".into());
        status.container_statuses = None;
        status.conditions = None;
    }
    let two = with_containers(
        fixtures::pod(
            "edge",
            "two-containers",
            "node-1",
            json!({"hami.io/vgpu-node": "node-1",
                   "hami.io/vgpu-devices-allocated": ";GPU-node-1,NVIDIA,2048,0:;"}),
            "Running",
        ),
        json!([{"name": "sidecar", "image": " busybox "}, {"name": "main", "image": "cuda:12"}]),
    );
    let pods = vec![
        dcu("edge", "card-1", "node-1", "DCU-1,DCU,1000,10:;", "Running"),
        dcu(
            "edge",
            "card-10",
            "node-1",
            "DCU-10,DCU,2000,20:;",
            "Running",
        ),
        dcu(
            "edge",
            "other-node",
            "node-10",
            "DCU-0,DCU,500,5:;",
            "Running",
        ),
        dcu("edge", "done", "node-1", "DCU-1,DCU,9999,99:;", "Succeeded"),
        fixtures::nvidia_pod("edge", "ghost", "ghost-node", &[("GPU-ghost", 1024, 10)]),
        fixtures::pod(
            "edge",
            "malformed",
            "node-1",
            json!({"hami.io/vgpu-node": "node-1", "hami.io/vgpu-devices-allocated": "GPU-node-1,NVIDIA;"}),
            "Running",
        ),
        fixtures::nvidia_pod("edge", "empty-uuid", "node-1", &[("", 100, 1)]),
        pending,
        two,
    ];
    let export = ClusterExport {
        nodes,
        pods,
        config_maps: Vec::new(),
        ..ClusterExport::default()
    };
    let mut entries = entries(&export, &config);
    // No decoder yields an empty alias any more (Go's Metax sGPU did); build one by hand.
    let device = Device {
        id: "sgpu-no-alias".into(),
        alias_id: String::new(),
        node_name: "metax-x".into(),
        node_uid: "uid-metax-x".into(),
        device_type: "Metax-SGPU".into(),
        count: 16,
        devmem: 65536,
        devcore: 100,
        health: true,
        mode: String::new(),
        vendor: Vendor::Metax,
        index: 0,
        numa: 0,
        driver: String::new(),
        cordoned: false,
        dra: None,
    };
    entries.push(NodeEntry {
        name: "metax-x".into(),
        uid: "uid-metax-x".into(),
        record: Some(Arc::new(NodeRecord {
            uid: "uid-metax-x".into(),
            name: "metax-x".into(),
            ip: "10.0.0.9".into(),
            is_schedulable: false,
            is_ready: false,
            os_image: String::new(),
            kernel_version: String::new(),
            container_runtime_version: String::new(),
            kubelet_version: String::new(),
            kube_proxy_version: String::new(),
            operating_system: String::new(),
            architecture: String::new(),
            creation_timestamp: None,
            devices: vec![device],
        })),
    });
    snapshot_from(&entries, &export)
}

#[test]
fn edge_card_replies_match_goldens() {
    let snapshot = edge_cluster();
    assert_golden(
        "edge/gpus",
        &gpu_list(
            &snapshot,
            &CardFilters::default(),
            &DeviceCapacity::default(),
        ),
    );
    let spaced = CardFilters {
        node_name: "  node-1 ".into(),
        device_type: " DCU".into(),
        ..CardFilters::default()
    };
    assert_golden(
        "edge/gpus-node-1-dcu-spaced",
        &gpu_list(&snapshot, &spaced, &DeviceCapacity::default()),
    );
    assert_golden(
        "edge/gpu-types",
        &gpu_types(&snapshot, &CardFilters::default()),
    );
    assert_golden(
        "edge/gpu-detail-duplicate-id",
        &gpu_detail(&snapshot, " DCU-0 "),
    );
}

#[test]
fn edge_node_replies_match_goldens() {
    let snapshot = edge_cluster();
    let zone = shanghai();
    assert_golden(
        "edge/nodes",
        &node_list(
            &snapshot,
            &NodeFilters::default(),
            &NodeCapacity::default(),
            &zone,
        ),
    );
    // The node filters are not trimmed (as in Go): a spaced ip matches nothing.
    let spaced = NodeFilters {
        ip: " 10.0.0.1".into(),
        ..NodeFilters::default()
    };
    let reply = node_list(&snapshot, &spaced, &NodeCapacity::default(), &zone);
    assert!(reply.list.is_empty());
    let unschedulable = NodeFilters {
        is_schedulable: "F".into(),
        ..NodeFilters::default()
    };
    let reply = node_list(&snapshot, &unschedulable, &NodeCapacity::default(), &zone);
    let names: Vec<_> = reply.list.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["metax-x"]);
}

#[test]
fn edge_container_replies_match_goldens() {
    let snapshot = edge_cluster();
    let zone = shanghai();
    assert_golden(
        "edge/containers",
        &container_list(&snapshot, &ContainerFilters::default(), &zone),
    );
    // Prefix filter on the shown id, as in Go: `DCU-1` also selects `DCU-10`.
    let by_device = ContainerFilters {
        device_id: "DCU-1".into(),
        ..ContainerFilters::default()
    };
    assert_golden(
        "edge/containers-device-prefix",
        &container_list(&snapshot, &by_device, &zone),
    );
    let by_node = ContainerFilters {
        node_name: "node-1".into(),
        status: "".into(),
        ..ContainerFilters::default()
    };
    let reply = container_list(&snapshot, &by_node, &zone);
    assert!(reply.items.iter().all(|c| c.node_name == "node-1"));
    let pod_uid = |name: &str| format!("uid-edge-{name}");
    let sidecar = ContainerRequest {
        name: "sidecar".into(),
        pod_uid: pod_uid("two-containers"),
        device_id: String::new(),
    };
    assert_golden(
        "edge/container-detail-no-allocation",
        &container_detail(&snapshot, &sidecar, &zone),
    );
    let exact = ContainerRequest {
        name: "main".into(),
        pod_uid: pod_uid("card-10"),
        device_id: "node-1-dcu-1".into(),
    };
    let reply = container_detail(&snapshot, &exact, &zone);
    assert!(
        reply.device_ids.is_empty(),
        "detail compares the raw uuid exactly"
    );
    assert_eq!(reply.name, "main");
    let ghost = ContainerRequest {
        name: "main".into(),
        pod_uid: pod_uid("ghost"),
        device_id: String::new(),
    };
    assert_golden(
        "edge/container-detail-ghost-node",
        &container_detail(&snapshot, &ghost, &zone),
    );
    // The list skips an allocation without uuid; the detail shows the raw (empty) uuid.
    let empty_uuid = ContainerRequest {
        name: "main".into(),
        pod_uid: pod_uid("empty-uuid"),
        device_id: String::new(),
    };
    let reply = container_detail(&snapshot, &empty_uuid, &zone);
    assert_eq!(
        (reply.device_ids, reply.allocated_cores),
        (vec![String::new()], 1)
    );
    let malformed = ContainerRequest {
        name: "main".into(),
        pod_uid: pod_uid("malformed"),
        device_id: String::new(),
    };
    assert_eq!(
        container_detail(&snapshot, &malformed, &zone),
        Default::default(),
        "a pod without decoded allocations has no containers"
    );
}

#[test]
fn edge_summaries_match_goldens() {
    let snapshot = edge_cluster();
    assert_golden(
        "edge/summary",
        &device_summary(&snapshot, &SummaryFilters::default()),
    );
    assert_golden(
        "edge/monitor-summary",
        &usage_overview(&snapshot, &UsageFilter::default()),
    );
    let nothing = UsageFilter {
        device: "no-such-device".into(),
        ..UsageFilter::default()
    };
    assert_golden(
        "edge/monitor-summary-empty",
        &usage_overview(&snapshot, &nothing),
    );
}
