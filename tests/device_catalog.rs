//! The device catalog against the test API server (state transitions of HAMi's device
//! ConfigMap: missing, loaded, invalid, forbidden, error) and `GET /v1/device-config` as the
//! frontend reads it, in snapshot mode through the real route table.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::test as atest;
use hami_webui_server::cluster::catalog_watcher::{CatalogState, CatalogStatus, GetCatalog};
use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::cluster::{start as start_caches, Caches, ClusterSource, SOURCES};
use hami_webui_server::config::Config;
use hami_webui_server::http;
use hami_webui_server::readiness::ReadinessBoard;
use hami_webui_server::telemetry::SelfMetrics;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};
use support::app;
use support::kube_api::TestApiServer;

const NAMESPACE: &str = "kube-system";
const NAME: &str = "hami-scheduler-device";
const KEY: &str = "device-config.yaml";

/// HAMi's list shape (before v2.9), trimmed to two models.
const LIST_SHAPE: &str = r#"
nvidia:
  resourceCountName: nvidia.com/gpu
vnpus:
- chipName: 910B3
  commonWord: Ascend910B3
  resourceName: huawei.com/Ascend910B3
  resourceMemoryName: huawei.com/Ascend910B3-memory
  resourceCoreName: huawei.com/Ascend910B3-core
  memoryAllocatable: 65536
  memoryCapacity: 65536
  memoryFactor: 1
  aiCore: 20
  aiCPU: 7
  templates:
    - {name: vir10_3c_32g, memory: 32768, aiCore: 10, aiCPU: 3}
    - {name: vir05_1c_16g, memory: 16384, aiCore: 5, aiCPU: 1}
- chipName: 310P3
  commonWord: Ascend310P
  resourceName: huawei.com/Ascend310P
  memoryAllocatable: 21527
  memoryCapacity: 24576
  aiCore: 8
  aiCPU: 7
"#;

/// HAMi's `{hamiVnpuCore, configs}` shape (v2.9 and later), trimmed to two models; the
/// template without `aiCore` has no compute share.
const CONFIGS_SHAPE: &str = r#"
vnpus:
  hamiVnpuCore: false
  configs:
  - chipName: Ascend910
    commonWord: Ascend910C
    resourceName: huawei.com/Ascend910C
    resourceMemoryName: huawei.com/Ascend910C-memory
    resourceCoreName: huawei.com/Ascend910C-core
    memoryAllocatable: 65536
    memoryCapacity: 65536
    aiCore: 20
    aiCPU: 7
    superPod: true
    templates:
      - name: vir05_1c_16g
        memory: 16384
        aiCore: 5
        aiCPU: 1
      - name: vir_mem_only
        memory: 8192
  - chipName: 910B4
    commonWord: Ascend910B4
    resourceName: huawei.com/Ascend910B4
    memoryAllocatable: 32768
    memoryCapacity: 32768
    aiCore: 20
    superPod: true
"#;

fn config_map(namespace: &str, name: &str, key: &str, text: &str) -> ConfigMap {
    let mut config_map = ConfigMap::default();
    config_map.metadata.namespace = Some(namespace.into());
    config_map.metadata.name = Some(name.into());
    config_map.data = Some([(key.to_string(), text.to_string())].into());
    config_map
}

fn device_config(text: &str) -> ConfigMap {
    config_map(NAMESPACE, NAME, KEY, text)
}

fn config() -> Config {
    Config::from_raw(Default::default()).expect("default config")
}

async fn start(api: &TestApiServer, dir: &std::path::Path) -> Caches {
    let path = api.write_kubeconfig(dir);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let client_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(client_config).unwrap();
    let metrics = SelfMetrics::new().unwrap();
    let board = ReadinessBoard::new(&SOURCES, Duration::from_secs(300));
    start_caches(&config(), &metrics, &board, ClusterSource::Client(client)).await
}

/// Polls the catalog until it reaches `status`, failing the test after `deadline`.
async fn until(caches: &Caches, status: CatalogStatus, deadline: Duration) -> Arc<CatalogState> {
    let end = Instant::now() + deadline;
    loop {
        let state = caches.catalog.send(GetCatalog).await.unwrap();
        if state.status == status {
            return state;
        }
        assert!(
            Instant::now() < end,
            "catalog is {:?} ({}), expected {status:?}",
            state.status,
            state.reason
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn words(state: &CatalogState) -> Vec<String> {
    state
        .catalog
        .as_ref()
        .map(|c| c.models.iter().map(|m| m.common_word.clone()).collect())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn catalog_goes_missing_loaded_invalid_keeping_the_last_good_then_missing() {
    let api = TestApiServer::start().await;
    // Neither another name in the namespace nor the name in another namespace is ours.
    api.apply_configmap(config_map(NAMESPACE, "other", KEY, LIST_SHAPE));
    api.apply_configmap(config_map("hami", NAME, KEY, LIST_SHAPE));
    let dir = tempfile::tempdir().unwrap();
    let caches = start(&api, dir.path()).await;
    let missing = until(&caches, CatalogStatus::Missing, Duration::from_secs(10)).await;
    assert!(missing.catalog.is_none());
    assert!(missing.observed_at.is_some());

    api.apply_configmap(device_config(LIST_SHAPE));
    let loaded = until(&caches, CatalogStatus::Loaded, Duration::from_secs(10)).await;
    assert_eq!(words(&loaded), ["Ascend310P", "Ascend910B3"]);
    let first_version = loaded.resource_version.clone();
    assert!(!first_version.is_empty());
    assert_eq!(loaded.catalog_resource_version, first_version);

    // An update in the other shape replaces the catalog.
    api.apply_configmap(device_config(CONFIGS_SHAPE));
    let end = Instant::now() + Duration::from_secs(10);
    let updated = loop {
        let state = until(&caches, CatalogStatus::Loaded, Duration::from_secs(10)).await;
        if state.resource_version != first_version {
            break state;
        }
        assert!(Instant::now() < end, "update not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(words(&updated), ["Ascend910B4", "Ascend910C"]);

    api.apply_configmap(device_config("vnpus: ["));
    let invalid = until(&caches, CatalogStatus::Invalid, Duration::from_secs(10)).await;
    assert!(invalid.reason.contains("parse"), "{}", invalid.reason);
    assert_ne!(invalid.resource_version, updated.resource_version);
    assert_eq!(
        words(&invalid),
        ["Ascend910B4", "Ascend910C"],
        "last good kept"
    );
    assert_eq!(invalid.catalog_resource_version, updated.resource_version);

    api.apply_configmap(config_map(NAMESPACE, NAME, "other.yaml", LIST_SHAPE));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let state = until(&caches, CatalogStatus::Invalid, Duration::from_secs(10)).await;
        if state.reason == format!("key {KEY:?} not found") {
            assert_eq!(words(&state), ["Ascend910B4", "Ascend910C"]);
            break;
        }
        assert!(Instant::now() < end, "missing key not reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    api.delete_configmap(NAMESPACE, NAME);
    let gone = until(&caches, CatalogStatus::Missing, Duration::from_secs(10)).await;
    assert!(gone.catalog.is_none());
    assert_eq!(gone.resource_version, "");
}

#[actix_rt::test]
async fn forbidden_on_403_then_loaded_once_allowed() {
    let api = TestApiServer::start().await;
    api.apply_configmap(device_config(LIST_SHAPE));
    api.set_forbidden("configmaps", true);
    let dir = tempfile::tempdir().unwrap();
    let caches = start(&api, dir.path()).await;
    let forbidden = until(&caches, CatalogStatus::Forbidden, Duration::from_secs(10)).await;
    assert!(forbidden.catalog.is_none());
    assert!(forbidden.reason.contains("403"), "{}", forbidden.reason);

    api.set_forbidden("configmaps", false);
    let loaded = until(&caches, CatalogStatus::Loaded, Duration::from_secs(30)).await;
    assert_eq!(words(&loaded), ["Ascend310P", "Ascend910B3"]);
}

#[actix_rt::test]
async fn api_outage_is_an_error_that_keeps_the_catalog_until_the_api_answers() {
    let api = TestApiServer::start().await;
    api.apply_configmap(device_config(LIST_SHAPE));
    let dir = tempfile::tempdir().unwrap();
    let caches = start(&api, dir.path()).await;
    let loaded = until(&caches, CatalogStatus::Loaded, Duration::from_secs(10)).await;

    api.stop().await;
    let error = until(&caches, CatalogStatus::Error, Duration::from_secs(20)).await;
    assert!(!error.reason.is_empty());
    assert_eq!(error.resource_version, loaded.resource_version);
    assert_eq!(words(&error), ["Ascend310P", "Ascend910B3"]);

    api.restart().await;
    let again = until(&caches, CatalogStatus::Loaded, Duration::from_secs(30)).await;
    assert_eq!(again.resource_version, loaded.resource_version);
}

/// Starts the caches on a snapshot file's objects and serves the real route table.
macro_rules! snapshot_app {
    ($config:expr, $config_maps:expr) => {{
        let config: Config = $config;
        let export = ClusterExport {
            config_maps: $config_maps,
            ..ClusterExport::default()
        };
        let state = app::start(config, ClusterSource::Snapshot(export)).await;
        atest::init_service(http::app(state)).await
    }};
}

/// `GET /v1/device-config` until its state leaves `loading` (the replay is asynchronous).
macro_rules! settled_reply {
    ($app:expr) => {{
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let request = atest::TestRequest::get().uri("/v1/device-config");
            let response = atest::call_service($app, request.to_request()).await;
            assert_eq!(response.status(), 200);
            let body = atest::read_body(response).await;
            let text = String::from_utf8(body.to_vec()).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["state"] != "loading" {
                break (text, value);
            }
            assert!(Instant::now() < end, "still loading");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

#[actix_rt::test]
async fn device_config_route_renders_the_snapshot_configmap_as_upstream() {
    let mut with_version = device_config(CONFIGS_SHAPE);
    with_version.metadata.resource_version = Some("42".into());
    let app = snapshot_app!(
        config(),
        vec![
            config_map(NAMESPACE, "other", KEY, LIST_SHAPE),
            with_version
        ]
    );
    let (text, reply) = settled_reply!(&app);
    assert!(
        text.starts_with(
            r#"{"state":"loaded","reason":"","namespace":"kube-system","name":"hami-scheduler-device","key":"device-config.yaml","resourceVersion":"42","observedAt":"#
        ),
        "{text}"
    );
    assert!(!reply["observedAt"].as_str().unwrap().is_empty());
    assert_eq!(reply["issues"], json!([]));
    assert_eq!(
        reply["ascendModels"][0],
        json!({
            "commonWord": "Ascend910B4",
            "chipName": "910B4",
            "resourceName": "huawei.com/Ascend910B4",
            "resourceMemoryName": "",
            "resourceCoreName": "",
            "memoryAllocatable": "32768",
            "memoryCapacity": "32768",
            "aiCore": 20,
            "aiCpu": 0,
            "templates": [],
            // superPod pairs modules only for an Ascend910C.
            "superPod": false
        })
    );
    let c = &reply["ascendModels"][1];
    assert_eq!(c["commonWord"], "Ascend910C");
    assert_eq!(c["superPod"], true);
    assert_eq!(
        c["templates"],
        json!([
            {"name": "vir_mem_only", "memory": "8192", "aiCore": 0, "aiCpu": 0},
            {"name": "vir05_1c_16g", "memory": "16384", "aiCore": 5, "aiCpu": 1, "computeShare": 25}
        ])
    );
}

#[actix_rt::test]
async fn device_config_route_reports_missing_invalid_and_disabled() {
    let app = snapshot_app!(config(), vec![config_map("hami", NAME, KEY, LIST_SHAPE)]);
    let (_, missing) = settled_reply!(&app);
    assert_eq!(missing["state"], "missing");
    assert_eq!(missing["ascendModels"], json!([]));

    let app = snapshot_app!(config(), vec![device_config("vnpus: 42")]);
    let (_, invalid) = settled_reply!(&app);
    assert_eq!(invalid["state"], "invalid");
    assert!(
        invalid["reason"].as_str().unwrap().contains("vnpus"),
        "{invalid}"
    );

    let mut disabled = config();
    disabled.device_config.enabled = false;
    let app = snapshot_app!(disabled, vec![device_config(LIST_SHAPE)]);
    let (_, reply) = settled_reply!(&app);
    assert_eq!(reply["state"], "disabled");
    assert_eq!(reply["observedAt"], "");
    assert_eq!(reply["ascendModels"], json!([]));
    assert_eq!(reply["namespace"], NAMESPACE);
}

#[test]
fn real_binary_serves_the_snapshot_catalog_on_both_listeners() {
    use support::process::{free_port, request, wait_for, Launch, ServerProcess};
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("cluster.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": NAMESPACE, "name": NAME, "resourceVersion": "5"},
        "data": {KEY: LIST_SHAPE}
    }]});
    std::fs::write(&snapshot, list.to_string()).unwrap();
    let site = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/spa");
    let public = free_port();
    let (snapshot, listen) = (
        snapshot.display().to_string(),
        format!("127.0.0.1:{public}"),
    );
    let server = ServerProcess::start(Launch {
        args: &[
            "--snapshot",
            &snapshot,
            "--static-dir",
            site,
            "--listen-address",
            &listen,
        ],
        ..Launch::default()
    });
    let loaded = |reply: support::process::Reply| {
        let value = reply.json();
        (reply.status == 200 && value["state"] == "loaded").then_some(value)
    };
    let internal = wait_for(Duration::from_secs(20), || {
        loaded(server.get("/v1/device-config").ok()?)
    });
    let internal = internal.unwrap_or_else(|| panic!("internal listener:\n{}", server.log()));
    assert_eq!(internal["resourceVersion"], "5");
    assert_eq!(internal["ascendModels"].as_array().unwrap().len(), 2);
    let through_console = wait_for(Duration::from_secs(20), || {
        loaded(request(public, "GET", "/api/vgpu/v1/device-config", &[], b"").ok()?)
    });
    let through_console =
        through_console.unwrap_or_else(|| panic!("public listener:\n{}", server.log()));
    assert_eq!(through_console, internal);
}
