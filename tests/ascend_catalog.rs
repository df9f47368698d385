//! Ascend decoding driven by HAMi's device configuration: golden card lists and allocation
//! descriptions of a hand-built cluster read with the HAMi v2.9 and v2.10 ConfigMaps (and
//! without any), and, against the test API server, a ConfigMap change re-decoding the
//! Ascend nodes of a running server (its card list changes without a restart).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hami_webui_server::cluster::allocation::allocation_cores;
use hami_webui_server::cluster::catalog_watcher::{CatalogStatus, GetCatalog};
use hami_webui_server::cluster::inventory::{build_inventory, device_context, node_entry};
use hami_webui_server::cluster::pod_cache::GetSnapshot;
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::cluster::{start as start_caches, Caches, ClusterSource, SOURCES};
use hami_webui_server::config::{Config, NodeSelectors};
use hami_webui_server::device::AnnotationlessPodMode;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::readiness::ReadinessBoard;
use hami_webui_server::reply::allocation::describe_allocations;
use hami_webui_server::reply::cards::{gpu_list, CardFilters, DeviceCapacity, GpusReply};
use hami_webui_server::telemetry::SelfMetrics;
use hami_webui_server::vendor::node_notes;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use serde::Serialize;
use serde_json::{json, Value};
use support::fixtures;
use support::kube_api::TestApiServer;

const V2_9: &str = include_str!("golden/catalog/device-config-v2.9.yaml");
const V2_10: &str = include_str!("golden/catalog/device-config-v2.10.yaml");

fn assert_golden(name: &str, reply: &impl Serialize) {
    support::golden::assert_golden(&format!("catalog/{name}"), reply);
}

fn register(devices: &[(&str, &str, i32)]) -> String {
    let list: Vec<Value> = devices
        .iter()
        .enumerate()
        .map(|(i, (id, word, mem))| {
            json!({"id": id, "index": i, "count": 4, "devmem": mem, "devcore": 20,
                   "type": word, "health": true})
        })
        .collect();
    Value::Array(list).to_string()
}

/// Two NPU nodes: `npu-a` runs templates (`hami-vnpu-core=false`) with a 910B3, a 910C
/// and a model HAMi's configuration does not list; `npu-b` runs hami-vnpu-core.
fn nodes() -> Vec<Node> {
    vec![
        fixtures::node(
            "npu-a",
            json!({"ascend": "on"}),
            json!({
                "hami-vnpu-core": "false",
                "hami.io/node-register-Ascend910B3":
                    register(&[("B3-0", "Ascend910B3", 65536), ("B3-1", "Ascend910B3", 65536)]),
                "hami.io/node-register-Ascend910C": register(&[("C-0", "Ascend910C", 65536)]),
                "hami.io/node-register-Ascend910B9": register(&[("B9-0", "Ascend910B9", 65536)]),
            }),
        ),
        fixtures::node(
            "npu-b",
            json!({"ascend": "on"}),
            json!({
                "hami-vnpu-core": "true",
                "hami.io/node-register-Ascend910B4-1":
                    register(&[("B41-0", "Ascend910B4-1", 65536)]),
            }),
        ),
    ]
}

fn npu_pod(name: &str, node: &str, mut annotations: Value) -> Pod {
    annotations["hami.io/vgpu-node"] = json!(node);
    fixtures::pod("ai", name, node, annotations, "Running")
}

fn pods() -> Vec<Pod> {
    vec![
        npu_pod(
            "template",
            "npu-a",
            json!({
                "hami.io/Ascend910B3-devices-allocated": "B3-0,Ascend910B3,16384,0:;",
                "huawei.com/Ascend910B3": r#"[{"UUID":"B3-0","temp":"vir05_1c_16g","memory":16384}]"#,
            }),
        ),
        npu_pod(
            "whole",
            "npu-a",
            json!({
                "hami.io/Ascend910B3-devices-allocated": "B3-1,Ascend910B3,65536,0:;",
            }),
        ),
        npu_pod(
            "super-pod",
            "npu-a",
            json!({
                "hami.io/Ascend910C-devices-allocated": "C-0,Ascend910C,16384,0:;",
            }),
        ),
        npu_pod(
            "stale-model",
            "npu-a",
            json!({
                "hami.io/Ascend910B9-devices-allocated": "B9-0,Ascend910B9,16384,0:;",
            }),
        ),
        npu_pod(
            "mixed",
            "npu-a",
            json!({
                "hami.io/Ascend910B3-devices-allocated":
                    "B3-0,Ascend910B3,32768,0:B3-1,Ascend910B3,65536,0:;",
            }),
        ),
        npu_pod(
            "soft",
            "npu-b",
            json!({
                "huawei.com/vnpu-mode": "hami-core",
                "hami.io/Ascend910B4-1-devices-allocated": "B41-0,Ascend910B4-1,20000,40:;",
            }),
        ),
        npu_pod(
            "annotation-less",
            "npu-b",
            json!({
                "hami.io/Ascend910B4-1-devices-allocated": "B41-0,Ascend910B4-1,32768,0:;",
            }),
        ),
    ]
}

fn now() -> Timestamp {
    "2025-03-01T03:00:00Z".parse().expect("timestamp")
}

/// The snapshot the caches would publish for `nodes` and `pods` with `catalog` in effect.
fn snapshot(catalog: Option<&str>, policy: AnnotationlessPodMode) -> ClusterSnapshot {
    let catalog =
        catalog.map(|text| Arc::new(hami_webui_server::catalog::parse(text).expect("fixture")));
    let selectors = NodeSelectors::default();
    let nodes = nodes();
    let notes: Vec<_> = nodes
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), node_notes(n)))
        .collect();
    let context = device_context(
        catalog,
        policy,
        notes.iter().map(|(name, notes)| (name.as_str(), notes)),
    );
    let entries: Vec<_> = nodes
        .iter()
        .map(|n| node_entry(n, &selectors, &context).0)
        .collect();
    let inventory = Arc::new(build_inventory(
        entries.iter(),
        &Default::default(),
        Arc::new(context),
    ));
    let records: Vec<_> = pods()
        .iter()
        .filter_map(|p| {
            pod_record(p, now(), &DeviceContext::default())
                .0
                .map(Arc::new)
        })
        .collect();
    ClusterSnapshot::build(1, inventory, records.to_vec(), Vec::new())
}

/// Every container's allocation description, as the container replies carry it.
fn descriptions(snapshot: &ClusterSnapshot) -> Value {
    let inventory = &snapshot.inventory;
    let mut out = serde_json::Map::new();
    for pod in snapshot.pods.iter() {
        for container in &pod.containers {
            let allocations: Vec<_> = container.allocations.iter().collect();
            let d = describe_allocations(inventory, &allocations);
            let cores: i32 = allocations
                .iter()
                .map(|a| allocation_cores(inventory, a).0)
                .sum();
            out.insert(
                format!("{}/{}", pod.name, container.name),
                json!({
                    "allocatedCores": cores,
                    "allocatedCoresKnown": d.allocated_cores_known,
                    "allocationShape": d.allocation_shape,
                    "template": d.template,
                    "allocatedCoresReason": d.allocated_cores_reason,
                }),
            );
        }
    }
    Value::Object(out)
}

fn cards(snapshot: &ClusterSnapshot) -> GpusReply {
    gpu_list(
        snapshot,
        &CardFilters::default(),
        &DeviceCapacity::default(),
    )
}

#[test]
fn cards_and_allocations_without_a_catalog_keep_the_built_in_shares() {
    let snapshot = snapshot(None, AnnotationlessPodMode::Unknown);
    assert_golden("gpus-no-catalog", &cards(&snapshot));
    assert_golden("allocations-no-catalog", &descriptions(&snapshot));
}

#[test]
fn cards_and_allocations_with_the_v2_9_configuration() {
    let snapshot = snapshot(Some(V2_9), AnnotationlessPodMode::Unknown);
    assert_golden("gpus-v2.9", &cards(&snapshot));
    assert_golden("allocations-v2.9", &descriptions(&snapshot));
}

#[test]
fn cards_and_allocations_with_the_v2_10_configuration() {
    let snapshot = snapshot(Some(V2_10), AnnotationlessPodMode::Unknown);
    assert_golden("gpus-v2.10", &cards(&snapshot));
    assert_golden("allocations-v2.10", &descriptions(&snapshot));
}

#[test]
fn the_annotation_less_policy_decides_pods_on_soft_nodes() {
    let read =
        |policy| descriptions(&snapshot(Some(V2_10), policy))["annotation-less/main"].clone();
    assert_eq!(
        read(AnnotationlessPodMode::Unknown)["allocatedCoresReason"],
        "mode_ambiguous"
    );
    let node = read(AnnotationlessPodMode::Node);
    assert_eq!(node["allocationShape"], "soft");
    assert_eq!(node["allocatedCoresKnown"], true);
    let template = read(AnnotationlessPodMode::Template);
    assert_eq!(template["allocationShape"], "template");
    assert_eq!(template["template"], "vir10_3c_32g");
    assert_eq!(template["allocatedCores"], 50);
}

#[test]
fn unconfigured_models_are_flagged_only_with_a_catalog() {
    let unconfigured = |snapshot: &ClusterSnapshot| -> Vec<String> {
        cards(snapshot)
            .list
            .into_iter()
            .filter(|c| c.unconfigured)
            .map(|c| c.uuid)
            .collect()
    };
    assert!(unconfigured(&snapshot(None, AnnotationlessPodMode::Unknown)).is_empty());
    assert_eq!(
        unconfigured(&snapshot(Some(V2_10), AnnotationlessPodMode::Unknown)),
        ["B9-0"]
    );
    let list = cards(&snapshot(Some(V2_10), AnnotationlessPodMode::Unknown)).list;
    assert!(list.iter().all(|c| c.vendor == "Ascend"));
}

#[test]
fn unconfigured_models_add_no_capacity_to_nodes_or_the_summary() {
    use hami_webui_server::reply::nodes::{node_list, NodeCapacity, NodeFilters};
    use hami_webui_server::reply::summary::{device_summary, SummaryFilters};

    let zone = jiff::tz::TimeZone::UTC;
    let totals = |snapshot: &ClusterSnapshot| {
        let nodes = node_list(
            snapshot,
            &NodeFilters::default(),
            &NodeCapacity::default(),
            &zone,
        );
        let npu_a = nodes
            .list
            .iter()
            .find(|n| n.name == "npu-a")
            .cloned()
            .expect("npu-a");
        let summary = device_summary(snapshot, &SummaryFilters::default());
        (
            npu_a.vgpu_total,
            npu_a.memory_total,
            summary.vgpu_total,
            summary.gpu_count,
        )
    };
    // Without a catalog every registered card counts: npu-a's four cards of 4 slices and
    // 64 GiB; with v2.10's, the 910B9 (not configured) is listed but adds nothing.
    let (vgpu, memory, all_vgpu, cards) = totals(&snapshot(None, AnnotationlessPodMode::Unknown));
    assert_eq!((vgpu, memory), (16, 4 * 65536));
    let configured = totals(&snapshot(Some(V2_10), AnnotationlessPodMode::Unknown));
    assert_eq!((configured.0, configured.1), (12, 3 * 65536));
    assert_eq!(configured.2, all_vgpu - 4);
    assert_eq!(
        configured.3, cards,
        "an unconfigured card is still counted as a card"
    );
}

// ---------------------------------------------------------------------------------------
// A running server against the test API server
// ---------------------------------------------------------------------------------------

fn device_config(text: &str) -> ConfigMap {
    let mut config_map = ConfigMap::default();
    config_map.metadata.namespace = Some("kube-system".into());
    config_map.metadata.name = Some("hami-scheduler-device".into());
    config_map.data = Some([("device-config.yaml".to_string(), text.to_string())].into());
    config_map
}

async fn start(api: &TestApiServer, dir: &Path) -> Caches {
    let path = api.write_kubeconfig(dir);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("client config");
    let client = kube::Client::try_from(client_config).expect("client");
    let config = Config::from_raw(Default::default()).expect("default config");
    let metrics = SelfMetrics::new().expect("metrics");
    let board = ReadinessBoard::new(&SOURCES, Duration::from_secs(300));
    start_caches(&config, &metrics, &board, ClusterSource::Client(client)).await
}

/// `(uuid, unconfigured)` of every card the running server lists.
async fn card_list(caches: &Caches) -> Vec<(String, bool)> {
    let snapshot = caches.pods.send(GetSnapshot).await.expect("pod cache");
    cards(&snapshot)
        .list
        .into_iter()
        .map(|c| (c.uuid, c.unconfigured))
        .collect()
}

/// Polls the card list until it equals `want`, failing after `deadline`.
async fn until_cards(caches: &Caches, want: &[(&str, bool)], deadline: Duration) {
    let want: Vec<(String, bool)> = want.iter().map(|(u, f)| (u.to_string(), *f)).collect();
    let end = Instant::now() + deadline;
    loop {
        let got = card_list(caches).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < end, "cards {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_configmap_change_re_decodes_ascend_nodes_without_a_restart() {
    let api = TestApiServer::start().await;
    api.apply_node(fixtures::node(
        "npu-c",
        json!({"ascend": "on"}),
        json!({
            "hami.io/node-register-Ascend910B3": register(&[("B3-0", "Ascend910B3", 65536)]),
            "hami.io/node-register-Custom910": register(&[("X-0", "Custom910", 32768)]),
        }),
    ));
    api.apply_configmap(device_config(V2_10));
    let dir = tempfile::tempdir().expect("tempdir");
    let caches = start(&api, dir.path()).await;
    let end = Instant::now() + Duration::from_secs(10);
    while caches
        .catalog
        .send(GetCatalog)
        .await
        .expect("catalog")
        .status
        != CatalogStatus::Loaded
    {
        assert!(Instant::now() < end, "catalog not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_cards(&caches, &[("B3-0", false)], Duration::from_secs(10)).await;

    // The operator configures the custom model and drops the 910B3.
    let edited = V2_10.replace("commonWord: Ascend910B3", "commonWord: Custom910");
    api.apply_configmap(device_config(&edited));
    until_cards(
        &caches,
        &[("B3-0", true), ("X-0", false)],
        Duration::from_secs(10),
    )
    .await;

    // Without a configuration nothing is unconfigured and only `Ascend*` words are read.
    api.delete_configmap("kube-system", "hami-scheduler-device");
    until_cards(&caches, &[("B3-0", false)], Duration::from_secs(10)).await;
}

#[actix_rt::test]
async fn snapshot_mode_reads_the_configmap_from_the_list() {
    let config = Config::from_raw(Default::default()).expect("default config");
    let metrics = SelfMetrics::new().expect("metrics");
    let board = ReadinessBoard::new(&SOURCES, Duration::from_secs(300));
    let export = ClusterExport {
        nodes: nodes(),
        pods: pods(),
        config_maps: vec![device_config(V2_10)],
        ..ClusterExport::default()
    };
    let caches = start_caches(&config, &metrics, &board, ClusterSource::Snapshot(export)).await;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let snapshot = caches.pods.send(GetSnapshot).await.expect("pod cache");
        let list = cards(&snapshot).list;
        if list.iter().any(|c| c.unconfigured) {
            let stale: Vec<_> = list
                .iter()
                .filter(|c| c.unconfigured)
                .map(|c| c.uuid.as_str())
                .collect();
            assert_eq!(stale, ["B9-0"]);
            let super_pod = list.iter().find(|c| c.uuid == "C-0").expect("C-0");
            assert_eq!(super_pod.core_used_known, Some(true));
            return;
        }
        assert!(Instant::now() < end, "catalog never applied: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
