//! The REST routes the HAMi-WebUI frontend calls: golden JSON of every reply on the demo
//! cluster and on a hand-built cluster of edge cases (pure builders, no actors), then the
//! routes themselves through the real `configure` with real caches — decoding rules, error
//! shapes, the upstream budget (≤ 2 queries per list request, none elsewhere), the fallback
//! when the metrics store is down, and `/openapi.json` against the registered routes.
//!
//! Goldens live in `tests/golden/`; `UPDATE_GOLDEN=1` rewrites them, after which every
//! changed file must be read before it is committed.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::test as atest;
use hami_webui_server::cluster::inventory::{build_inventory, node_entry, IdentityMap, NodeEntry};
use hami_webui_server::cluster::snapshot::{ClusterSnapshot, NodeRecord};
use hami_webui_server::cluster::snapshot_file::{self, ClusterExport};
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::config::Config;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::device::{Device, Vendor};
use hami_webui_server::http;
use hami_webui_server::http::AppState;
use hami_webui_server::query_client::{
    Query, QueryClient, QueryData, QueryError, QueryOutput, RunQuery, Sample,
};
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
use jiff::Timestamp;
use serde_json::{json, Value};

use support::app::{self, closed_port_url};
use support::fixtures;

// ---------------------------------------------------------------------------------------
// Shared setup
// ---------------------------------------------------------------------------------------

const DEMO: &str = include_str!("../examples/demo-cluster.json");

/// A configuration file with the zone the goldens are rendered in and the given upstream.
fn config_with(prometheus: &str) -> Config {
    config_timed(prometheus, "10s")
}

fn config_timed(prometheus: &str, timeout: &str) -> Config {
    app::config(&format!(
        "server:\n  timezone: Asia/Shanghai\n  http:\n    timeout: {timeout}\nprometheus:\n  address: {prometheus}\n  timeout: 30s\n"
    ))
}

fn config() -> Config {
    config_with(&closed_port_url())
}

fn demo_export() -> ClusterExport {
    snapshot_file::parse("demo-cluster.json", DEMO).expect("demo cluster parses")
}

/// Pods without `PodScheduled` get this as their scheduling time in the pure path.
fn fixed_now() -> Timestamp {
    "2025-12-01T00:00:00Z".parse().expect("timestamp")
}

fn entries(export: &ClusterExport, config: &Config) -> Vec<NodeEntry> {
    export
        .nodes
        .iter()
        .map(|n| node_entry(n, &config.node_selectors, &DeviceContext::default()).0)
        .collect()
}

/// The snapshot the caches would publish, built with the pure functions.
fn snapshot_from(entries: &[NodeEntry], export: &ClusterExport) -> ClusterSnapshot {
    let inventory = Arc::new(build_inventory(
        entries.iter(),
        &IdentityMap::new(),
        Default::default(),
    ));
    let pods: Vec<_> = export
        .pods
        .iter()
        .filter_map(|p| {
            pod_record(p, fixed_now(), &DeviceContext::default())
                .0
                .map(Arc::new)
        })
        .collect();
    ClusterSnapshot::build(1, inventory, pods.to_vec(), Vec::new())
}

fn demo_snapshot() -> ClusterSnapshot {
    let export = demo_export();
    snapshot_from(&entries(&export, &config()), &export)
}

use support::golden::{assert_golden, value as golden_value};

fn shanghai() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone")
}

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

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

/// Query messages a fake metrics store received.
#[derive(Clone, Default)]
struct QueryLog(Arc<Mutex<Vec<String>>>);

/// Stands in for the `QueryClient`: records each query and answers with fixed vectors.
struct FakeStore {
    log: QueryLog,
    answers: HashMap<String, Vec<Sample>>,
}

impl Actor for FakeStore {
    type Context = Context<Self>;
}

impl Handler<RunQuery> for FakeStore {
    type Result = Result<Arc<QueryOutput>, QueryError>;

    fn handle(&mut self, msg: RunQuery, _: &mut Context<Self>) -> Self::Result {
        let Query::Instant { expr, .. } = msg.query else {
            return Err(QueryError::Decode("range query not expected".into()));
        };
        if let Ok(mut log) = self.log.0.lock() {
            log.push(expr.clone());
        }
        Ok(Arc::new(QueryOutput {
            data: QueryData::Vector(self.answers.get(&expr).cloned().unwrap_or_default()),
            warnings: Vec::new(),
        }))
    }
}

impl FakeStore {
    /// Started, as the handlers' metrics store: logs into `log`, answers with `answers` (an
    /// empty vector for any other expression).
    fn serving(log: &QueryLog, answers: HashMap<String, Vec<Sample>>) -> Recipient<RunQuery> {
        let store = FakeStore {
            log: log.clone(),
            answers,
        }
        .start();
        store.recipient::<RunQuery>()
    }
}

fn sample(label: &str, value: &str, v: f64) -> Sample {
    Sample {
        metric: [(label.to_string(), value.to_string())]
            .into_iter()
            .collect(),
        timestamp: 0.0,
        value: v,
    }
}

/// Starts the service on `export` and waits until its caches publish what the pure path
/// builds.
async fn running(export: ClusterExport, config: &Config) -> AppState {
    let expected = snapshot_from(&entries(&export, config), &export);
    let state = app::start(config.clone(), ClusterSource::Snapshot(export)).await;
    app::until_snapshot(&state, Duration::from_secs(10), "the demo snapshot", |s| {
        s.pods.len() == expected.pods.len()
            && s.inventory.nodes.len() == expected.inventory.nodes.len()
            && s.usage == expected.usage
    })
    .await;
    state
}

/// The application the server runs, over `state`.
macro_rules! app {
    ($state:expr) => {
        atest::init_service(http::app($state.clone())).await
    };
}

/// Status and JSON body (`null` when not JSON) of an answer.
async fn respond<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = atest::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

macro_rules! call {
    ($app:expr, $req:expr) => {
        respond(atest::call_service($app, ($req).to_request()).await)
    };
}

fn post(path: &str, body: Value) -> atest::TestRequest {
    atest::TestRequest::post().uri(path).set_json(body)
}

#[actix_rt::test]
async fn every_route_answers_from_the_snapshot_when_the_upstream_is_down() {
    let config = config_with(&closed_port_url());
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let cases: Vec<(atest::TestRequest, &str)> = vec![
        (post("/v1/gpus", json!({"filters": {}})), "demo/gpus"),
        (
            post("/v1/gpu-types", json!({"filters": {}})),
            "demo/gpu-types",
        ),
        (
            atest::TestRequest::get().uri("/v1/gpu?uid=GPU-e01f5057-d17f-4505-a571-59a5b1fee08f"),
            "demo/gpu-detail",
        ),
        (post("/v1/nodes", json!({"filters": {}})), "demo/nodes"),
        (
            atest::TestRequest::get().uri("/v1/node?uid=21b38a9d-0000-4000-8000-000000000003"),
            "demo/node-detail-mixed",
        ),
        (post("/v1/summary", json!({"filters": {}})), "demo/summary"),
        (
            post(
                "/v1/containers",
                json!({"filters": {}, "pageSize": {"pageSize": 10, "pageNo": 1}}),
            ),
            "demo/containers",
        ),
        (
            atest::TestRequest::get()
                .uri("/v1/container?name=main&podUid=d1bc52d9-1111-4000-8000-000000000016"),
            "demo/container-detail",
        ),
        (
            post("/v1/monitor/summary", json!({})),
            "demo/monitor-summary",
        ),
    ];
    for (req, golden) in cases {
        let (status, body) = call!(&app, req).await;
        assert_eq!(status, 200, "{golden}: {body}");
        assert_eq!(body, golden_value(golden), "{golden}");
    }
}

#[actix_rt::test]
async fn list_routes_issue_two_queries_and_apply_overrides_others_none() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let log = QueryLog::default();
    let gpu = "GPU-e01f5057-d17f-4505-a571-59a5b1fee08f";
    let answers = HashMap::from([
        (
            "avg(hami_core_size) by (device_uuid)".to_string(),
            vec![sample("device_uuid", gpu, 100.0)],
        ),
        (
            "avg(hami_memory_size) by (device_uuid)".to_string(),
            vec![sample("device_uuid", gpu, 23034.9)],
        ),
        (
            "avg(sum(hami_core_size) by (node, instance)) by (node)".to_string(),
            vec![sample("node", "mixed-01", 400.0)],
        ),
        (
            "avg(sum(hami_memory_size) by (node, instance)) by (node)".to_string(),
            vec![sample("node", "mixed-01", 12345.0)],
        ),
    ]);
    let app = app!(app::with_query(state, FakeStore::serving(&log, answers)));
    let taken = |log: &QueryLog| std::mem::take(&mut *log.0.lock().expect("log"));

    let (status, body) = call!(
        &app,
        post("/v1/gpus", json!({"filters": {"nodeName": "mixed-01"}}))
    )
    .await;
    assert_eq!(status, 200);
    let card = body["list"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["uuid"] == gpu))
        .expect("overridden card listed");
    assert_eq!(card["memoryTotal"], 23034, "truncated toward zero");
    let mut issued = taken(&log);
    issued.sort();
    assert_eq!(
        issued,
        [
            "avg(hami_core_size) by (device_uuid)",
            "avg(hami_memory_size) by (device_uuid)"
        ]
    );

    let (status, body) = call!(&app, post("/v1/nodes", json!({}))).await;
    assert_eq!(status, 200);
    let node = body["list"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["name"] == "mixed-01"))
        .expect("mixed-01 listed");
    assert_eq!(
        (node["coreTotal"].clone(), node["memoryTotal"].clone()),
        (json!(400), json!(12345))
    );
    assert_eq!(taken(&log).len(), 2);

    // The detail routes show registered capacity and query nothing.
    let (_, card) = call!(
        &app,
        atest::TestRequest::get().uri(&format!("/v1/gpu?uid={gpu}"))
    )
    .await;
    assert_eq!(card["memoryTotal"], 24576);
    for req in [
        post("/v1/gpu-types", json!({})),
        post("/v1/summary", json!({})),
        post("/v1/containers", json!({})),
        post("/v1/monitor/summary", json!({})),
        atest::TestRequest::get().uri("/v1/node?uid=21b38a9d-0000-4000-8000-000000000003"),
        atest::TestRequest::get().uri("/v1/container?name=main&podUid=x"),
    ] {
        let (status, _) = call!(&app, req).await;
        assert_eq!(status, 200);
    }
    assert!(taken(&log).is_empty());
}

#[actix_rt::test]
async fn list_routes_query_twice_whatever_the_cluster_size() {
    let config = config();
    let mut export = ClusterExport::default();
    for n in 0..60 {
        export
            .nodes
            .push(fixtures::nvidia_node(&format!("gpu-{n:02}"), 8));
        let uuid = format!("GPU-gpu-{n:02}-0");
        export.pods.push(fixtures::nvidia_pod(
            "big",
            &format!("job-{n}"),
            &format!("gpu-{n:02}"),
            &[(&uuid, 1024, 10)],
        ));
    }
    let state = running(export, &config).await;
    let log = QueryLog::default();
    let app = app!(app::with_query(
        state,
        FakeStore::serving(&log, HashMap::new())
    ));
    let (status, body) = call!(&app, post("/v1/gpus", json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["list"].as_array().map(Vec::len), Some(480));
    let (status, body) = call!(&app, post("/v1/nodes", json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["list"].as_array().map(Vec::len), Some(60));
    assert_eq!(log.0.lock().expect("log").len(), 4);
}

#[actix_rt::test]
async fn requests_decode_like_kratos() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let node_names = |body: &Value| -> Vec<String> {
        body["list"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|c| c["nodeName"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };

    // snake_case, unknown fields, missing `filters`, empty body.
    let (status, body) = call!(
        &app,
        post(
            "/v1/gpus",
            json!({"filters": {"node_name": "dcu-01", "x": 1}, "y": []})
        )
    )
    .await;
    assert_eq!(status, 200);
    assert!(!node_names(&body).is_empty() && node_names(&body).iter().all(|n| n == "dcu-01"));
    for path in [
        "/v1/gpus",
        "/v1/gpu-types",
        "/v1/nodes",
        "/v1/summary",
        "/v1/containers",
        "/v1/monitor/summary",
    ] {
        let (status, _) = call!(&app, post(path, json!({}))).await;
        assert_eq!(status, 200, "{path} without filters");
        let req = atest::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/json; charset=utf-8"));
        let (status, _) = call!(&app, req).await;
        assert_eq!(status, 200, "{path} with an empty body");
    }

    // The query string is bound on POST too, nested, and wins over the body.
    let req = post(
        "/v1/gpus?filters.nodeName=mixed-01",
        json!({"filters": {"nodeName": "dcu-01"}}),
    );
    let (_, body) = call!(&app, req).await;
    assert!(!node_names(&body).is_empty() && node_names(&body).iter().all(|n| n == "mixed-01"));

    // Codec errors.
    let codec = |status: u16, body: &Value| {
        status == 400 && body["reason"] == "CODEC" && body["code"] == 400
    };
    let bad = [
        atest::TestRequest::post().uri("/v1/gpus").set_payload("{}"),
        atest::TestRequest::post()
            .uri("/v1/gpus")
            .insert_header(("content-type", "text/plain"))
            .set_payload("{}"),
        atest::TestRequest::post()
            .uri("/v1/gpus")
            .insert_header(("content-type", "application/json"))
            .set_payload("{"),
        post("/v1/nodes", json!({"filters": {"isSchedulable": true}})),
        post("/v1/containers", json!({"pageSize": {"pageNo": "x"}})),
        post(
            "/v1/gpus",
            json!({"filters": {"nodeName": "a", "node_name": "b"}}),
        ),
        atest::TestRequest::get().uri("/v1/gpu?uid=a&uid=b"),
        post("/v1/gpus?filters=x", json!({})),
    ];
    for req in bad {
        let (status, body) = call!(&app, req).await;
        assert!(codec(status, &body), "{status} {body}");
    }

    // Body limit: 413 with the JSON error body.
    let big = format!(
        "{{\"filters\":{{\"uid\":\"{}\"}}}}",
        "x".repeat(super_limit())
    );
    let req = atest::TestRequest::post()
        .uri("/v1/gpus")
        .insert_header(("content-type", "application/json"))
        .set_payload(big);
    let (status, body) = call!(&app, req).await;
    assert_eq!((status, body["code"].clone()), (413, json!(413)));
}

fn super_limit() -> usize {
    http::MAX_BODY_BYTES + 1
}

#[actix_rt::test]
async fn not_found_answers_follow_go() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let (status, body) = call!(&app, atest::TestRequest::get().uri("/v1/node?uid=nope")).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"code": 500, "reason": "", "message": "node not found", "metadata": {}})
    );
    let (status, body) = call!(&app, atest::TestRequest::get().uri("/v1/gpu?uid=nope")).await;
    assert_eq!(
        (status, body),
        (200, golden_value("demo/gpu-detail-unknown"))
    );
    let (status, body) = call!(
        &app,
        atest::TestRequest::get().uri("/v1/container?name=main")
    )
    .await;
    assert_eq!(
        (status, body),
        (200, golden_value("demo/container-detail-unknown"))
    );
    let (status, body) = call!(&app, atest::TestRequest::get().uri("/v1/gpus")).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (405, json!("METHOD_NOT_ALLOWED"))
    );
}

// ---------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------

/// The path literals registered in `configure` (read from its source, so a route added
/// there without a description fails here).
fn configured_paths() -> Vec<String> {
    let source = include_str!("../src/http/mod.rs");
    let start = source.find("pub fn configure").expect("configure");
    let body = &source[start..];
    let end = body.find("\n}\n").expect("end of configure");
    body[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_configured_route_is_described() {
    let described: Vec<&str> = http::openapi::ROUTES.iter().map(|r| r.path).collect();
    let configured = configured_paths();
    assert!(configured.len() >= 13, "{configured:?}");
    for path in &configured {
        assert!(
            described.contains(&path.as_str()),
            "{path} is not described in openapi.rs"
        );
    }
}

#[actix_rt::test]
async fn every_described_route_exists() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let (status, document) = call!(&app, atest::TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().expect("paths");
    let mut probed = 0;
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let req = match method.as_str() {
                "get" => atest::TestRequest::get().uri(path),
                "post" => post(path, json!({})),
                other => panic!("unexpected method {other}"),
            };
            let (status, body) = call!(&app, req).await;
            assert!(
                status != 404 && status != 405,
                "{method} {path}: {status} {body}"
            );
            probed += 1;
        }
    }
    assert_eq!(probed, http::openapi::ROUTES.len());
    // Every referenced schema is defined.
    let text = document.to_string();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in text.split("#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "{name} undefined");
    }
}

// ---------------------------------------------------------------------------------------
// Real Prometheus behind a counting proxy
// ---------------------------------------------------------------------------------------

/// `node-a` carries the two devices of the fixture exposition; 40 more nodes with 8 GPUs
/// each are unknown to Prometheus (they only make the cluster large).
fn fixture_cluster() -> ClusterExport {
    let devices: Vec<Value> = (0..2)
        .map(|i| {
            json!({"id": format!("GPU-fixture-{i}"), "index": i, "count": 10, "devmem": 81920,
                        "devcore": 100, "type": "NVIDIA A100-SXM4-80GB", "mode": "hami-core",
                        "health": true})
        })
        .collect();
    let mut export = ClusterExport::default();
    export.nodes.push(fixtures::node(
        "node-a",
        json!({"gpu": "on"}),
        json!({"hami.io/node-nvidia-register": Value::Array(devices).to_string()}),
    ));
    for n in 0..40 {
        export
            .nodes
            .push(fixtures::nvidia_node(&format!("big-{n:02}"), 8));
    }
    export
}

#[actix_rt::test]
async fn real_prometheus_overrides_come_through_with_two_concurrent_queries_per_list() {
    use support::upstream::{CountingProxy, FixtureExporter, Prometheus, FIXTURE_EXPOSITION};

    let exporter = FixtureExporter::start(FIXTURE_EXPOSITION);
    let prometheus = Prometheus::start(&[&exporter.target()]);
    prometheus.wait_for_series("hami_memory_size", 2, Duration::from_secs(30));
    let proxy = CountingProxy::start(prometheus.port);
    // Held long enough that two queries sent one after the other could not overlap.
    proxy.set_delay(Duration::from_millis(300));
    // The handlers' store is the proxy; the refresher's is not, so the proxy counts only
    // what the lists ask.
    let state = running(fixture_cluster(), &config()).await;
    let through_proxy = config_with(&proxy.url()).prometheus;
    let client = QueryClient::start(&through_proxy, &state.metrics).expect("query client");
    let app = app!(app::with_query(state, client.recipient()));

    let (status, body) = call!(&app, post("/v1/gpus", json!({}))).await;
    assert_eq!(status, 200);
    let cards = body["list"].as_array().expect("list");
    assert_eq!(cards.len(), 322);
    let fixture_1 = cards
        .iter()
        .find(|c| c["uuid"] == "GPU-fixture-1")
        .expect("fixture card");
    assert_eq!(
        (
            fixture_1["coreTotal"].clone(),
            fixture_1["memoryTotal"].clone()
        ),
        (json!(50), json!(40960)),
        "hami_core_size / hami_memory_size override the registered 100 / 81920"
    );
    let unknown = cards
        .iter()
        .find(|c| c["uuid"] == "GPU-big-00-0")
        .expect("card");
    assert_eq!(
        unknown["memoryTotal"], 81920,
        "registered capacity without a series"
    );
    assert_eq!(proxy.request_count(), 2);
    assert_eq!(proxy.max_in_flight(), 2, "the two queries run concurrently");

    let (status, body) = call!(&app, post("/v1/nodes", json!({}))).await;
    assert_eq!(status, 200);
    let node_a = body["list"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["name"] == "node-a"))
        .expect("node-a");
    assert_eq!(
        (node_a["coreTotal"].clone(), node_a["memoryTotal"].clone()),
        (json!(150), json!(122880))
    );
    assert_eq!(proxy.request_count(), 4);
    let mut expressions: Vec<String> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.form("query"))
        .collect();
    expressions.sort();
    assert_eq!(
        expressions,
        [
            "avg(hami_core_size) by (device_uuid)",
            "avg(hami_memory_size) by (device_uuid)",
            "avg(sum(hami_core_size) by (node, instance)) by (node)",
            "avg(sum(hami_memory_size) by (node, instance)) by (node)",
        ]
    );

    // Routes without overrides never reach the upstream.
    for req in [
        post("/v1/gpu-types", json!({})),
        post("/v1/summary", json!({})),
        post("/v1/containers", json!({})),
        post("/v1/monitor/summary", json!({})),
        atest::TestRequest::get().uri("/v1/gpu?uid=GPU-fixture-1"),
        atest::TestRequest::get().uri("/v1/node?uid=uid-node-a"),
    ] {
        let (status, _) = call!(&app, req).await;
        assert_eq!(status, 200);
    }
    assert_eq!(proxy.request_count(), 4);
}

#[actix_rt::test]
async fn a_stalled_upstream_still_gets_an_answer_from_the_snapshot_within_the_deadline() {
    use support::upstream::StalledServer;

    let stalled = StalledServer::start();
    let config = config_timed(&stalled.url(), "1s");
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    for (path, golden) in [("/v1/gpus", "demo/gpus"), ("/v1/nodes", "demo/nodes")] {
        let started = std::time::Instant::now();
        let (status, body) = call!(&app, post(path, json!({}))).await;
        assert_eq!((status, body), (200, golden_value(golden)), "{path}");
        assert!(started.elapsed() < Duration::from_millis(1500), "{path}");
    }
}

#[actix_rt::test]
async fn identical_list_requests_share_one_build_until_the_reply_ages_out() {
    let mut config = config();
    config.server.http.reply_cache_ttl = Duration::from_millis(300);
    let state = running(demo_export(), &config).await;
    let log = QueryLog::default();
    let app = app!(app::with_query(
        state,
        FakeStore::serving(&log, HashMap::new())
    ));
    let queries = |log: &QueryLog| log.0.lock().expect("log").len();

    // 32 browsers polling the same page at once: one build, two capacity queries, and the
    // same body for every one of them.
    let replies = futures::future::join_all(
        (0..32).map(|_| async { call!(&app, post("/v1/gpus", json!({"filters": {}}))).await }),
    )
    .await;
    assert!(replies.iter().all(|(status, _)| *status == 200));
    assert!(replies.iter().all(|(_, body)| *body == replies[0].1));
    assert_eq!(queries(&log), 2);
    let containers = futures::future::join_all(
        (0..32).map(|_| async { call!(&app, post("/v1/containers", json!({}))).await }),
    )
    .await;
    assert!(containers.iter().all(|reply| *reply == containers[0]));
    assert_eq!(containers[0].1, golden_value("demo/containers"));

    // A different request is built on its own; the same one later is built again once its
    // metrics-store values are older than `server.http.reply_cache_ttl`.
    let (status, _) = call!(
        &app,
        post("/v1/gpus", json!({"filters": {"nodeName": "x"}}))
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(queries(&log), 4);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queries(&log) == 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never aged out"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = call!(&app, post("/v1/gpus", json!({"filters": {}}))).await;
        assert_eq!(status, 200);
    }
    assert_eq!(queries(&log), 6);
}

#[actix_rt::test]
async fn kept_lists_go_gzipped_to_clients_that_accept_it_and_plain_to_the_rest() {
    use std::io::Read;
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(app::with_query(
        state,
        FakeStore::serving(&QueryLog::default(), HashMap::new())
    ));
    let ask = |gzip: bool| {
        let mut req = post("/v1/containers", json!({}));
        if gzip {
            req = req.insert_header(("Accept-Encoding", "gzip, deflate, br"));
        }
        atest::call_service(&app, req.to_request())
    };
    let plain = ask(false).await;
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(
        plain.headers().get("vary").and_then(|v| v.to_str().ok()),
        Some("Accept-Encoding")
    );
    let plain = atest::read_body(plain).await;

    let packed = ask(true).await;
    assert_eq!(
        packed
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let packed = atest::read_body(packed).await;
    assert!(
        packed.len() < plain.len(),
        "{} ≥ {}",
        packed.len(),
        plain.len()
    );
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut unpacked)
        .expect("a gzip body");
    assert_eq!(unpacked, plain);
    let value: Value = serde_json::from_slice(&unpacked).expect("JSON");
    assert_eq!(value, golden_value("demo/containers"));
}
