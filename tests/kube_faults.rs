//! Kubernetes faults against the node and pod caches (in process, through a kubeconfig, as
//! `tests/caches.rs`): a burst of 10,000 pod events, hostile annotations, and watch streams
//! cut while changes keep coming. Expected: no panic, every object kept, decode errors
//! counted, and convergence to the API's state.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hami_webui_server::config::Config;
use hami_webui_server::pod_cache::GetSnapshot;
use hami_webui_server::readiness::{Readiness, ReadinessBoard};
use hami_webui_server::server::{start_caches, Caches, ClusterSource, SOURCES};
use hami_webui_server::snapshot::ClusterSnapshot;
use hami_webui_server::telemetry::SelfMetrics;
use serde_json::{json, Value};
use support::fixtures::{node, nvidia_node, nvidia_pod, pod};
use support::kube_api::TestApiServer;

// The harness of `tests/caches.rs`, trimmed to what these tests need.
struct Harness {
    caches: Caches,
    board: Arc<ReadinessBoard>,
    metrics: SelfMetrics,
    _dir: tempfile::TempDir,
}

async fn start(api: &TestApiServer) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = api.write_kubeconfig(dir.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("client config");
    let client = kube::Client::try_from(client_config).expect("client");
    let config = Config::from_raw(Default::default()).expect("default config");
    let metrics = SelfMetrics::new().expect("self-metrics");
    let board = ReadinessBoard::new(&SOURCES, config.kubernetes.unready_after);
    let caches = start_caches(&config, &metrics, &board, ClusterSource::Client(client)).await;
    Harness {
        caches,
        board,
        metrics,
        _dir: dir,
    }
}

impl Harness {
    async fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.caches.pods.send(GetSnapshot).await.expect("pod cache")
    }

    async fn until(
        &self,
        deadline: Duration,
        what: &str,
        check: impl Fn(&ClusterSnapshot) -> bool,
    ) -> Arc<ClusterSnapshot> {
        let end = Instant::now() + deadline;
        loop {
            let snapshot = self.snapshot().await;
            if check(&snapshot) {
                return snapshot;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn until_ready(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.board.check() != Readiness::Ready {
            assert!(Instant::now() < end, "not ready: {:?}", self.board.check());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn decode_errors(&self) -> u64 {
        self.metrics
            .registry
            .gather()
            .iter()
            .filter(|f| f.name() == "hami_webui_decode_errors_total")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// Memory (MiB) of the one allocation of pod `name`, if it is in the snapshot.
fn allocated_memory(s: &ClusterSnapshot, name: &str) -> Option<i32> {
    let pod = s.pods.iter().find(|p| p.name == name)?;
    pod.containers
        .iter()
        .flat_map(|c| c.allocations.iter())
        .map(|a| a.usedmem)
        .next()
}

#[actix_rt::test]
async fn a_burst_of_10000_pod_events_converges_to_the_apis_state() {
    let api = TestApiServer::start().await;
    for n in 0..4 {
        api.apply_node(nvidia_node(&format!("gpu-{n}"), 8));
    }
    let h = start(&api).await;
    h.until_ready().await;
    let gpu = |i: usize| format!("GPU-gpu-{}-{}", i % 4, (i / 4) % 8);
    let make = |i: usize, mem: u32| {
        nvidia_pod(
            &format!("ns-{}", i % 7),
            &format!("job-{i:05}"),
            &format!("gpu-{}", i % 4),
            &[(gpu(i).as_str(), mem, 10)],
        )
    };
    // 5,000 creations, 3,000 updates, 2,000 deletions: 10,000 events, no pause between them.
    api.apply_many_pods((0..5_000).map(|i| make(i, 1024)).collect());
    api.apply_many_pods((0..3_000).map(|i| make(i, 2048)).collect());
    for i in 3_000..5_000 {
        api.delete_pod(&format!("ns-{}", i % 7), &format!("job-{i:05}"));
    }
    let s = h
        .until(Duration::from_secs(60), "3,000 pods after the burst", |s| {
            s.pods.len() == 3_000 && allocated_memory(s, "job-02999") == Some(2048)
        })
        .await;
    assert_eq!(allocated_memory(&s, "job-00000"), Some(2048));
    assert_eq!(allocated_memory(&s, "job-03000"), None);
    assert!(s
        .pods
        .iter()
        .all(|p| allocated_memory(&s, &p.name) == Some(2048)));
    assert_eq!(h.decode_errors(), 0);
}

/// Annotation values no device plugin writes: huge, deeply nested, overflowing, mistyped.
fn hostile_values() -> Vec<String> {
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let device = |fields: Value| Value::Array(vec![fields]).to_string();
    vec![
        "x".repeat(1 << 20),
        format!("[{}]", "{\"id\":\"GPU-x\",".repeat(50_000)),
        nested,
        device(
            json!({"id": "GPU-a", "count": 1e300, "devmem": 99999999999999999999u128 as f64, "devcore": -1}),
        ),
        "[{\"id\":\"GPU-b\",\"count\":99999999999999999999999999,\"devmem\":1e400}]".to_string(),
        device(
            json!({"id": ["not", "a", "string"], "count": "ten", "devmem": {"a": 1}, "health": "yes"}),
        ),
        "GPU-c,99999999999999999999,-5,1e999,NVIDIA,0,true:".to_string(),
        "GPU-d,NVIDIA,99999999999999999999,100:;".to_string(),
        "\u{0}\u{1}\u{7f}\u{feff}:::;;;,,,".repeat(10_000),
    ]
}

#[actix_rt::test]
async fn hostile_annotations_keep_their_objects_and_count_decode_errors() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("good", 2));
    let h = start(&api).await;
    h.until_ready().await;
    h.until(Duration::from_secs(5), "good node", |s| {
        s.inventory.device_count() == 2
    })
    .await;
    let values = hostile_values();
    for (i, value) in values.iter().enumerate() {
        api.apply_node(node(
            &format!("bad-{i}"),
            json!({"gpu": "on"}),
            json!({
                "hami.io/node-nvidia-register": value,
                "hami.io/node-handshake": value,
            }),
        ));
        api.apply_pod(pod(
            "default",
            &format!("bad-{i}"),
            "good",
            json!({"hami.io/vgpu-node": "good", "hami.io/vgpu-devices-allocated": value}),
            "Running",
        ));
    }
    // A valid change after the hostile ones: the caches are still alive and in order.
    api.apply_pod(nvidia_pod(
        "default",
        "after",
        "good",
        &[("GPU-good-0", 512, 5)],
    ));
    let n = values.len();
    let s = h
        .until(
            Duration::from_secs(30),
            "every object, then the valid pod",
            |s| s.inventory.nodes.len() == n + 1 && allocated_memory(s, "after") == Some(512),
        )
        .await;
    // The hostile nodes are kept (listed, without devices); the good node is untouched.
    assert_eq!(s.inventory.device_count(), 2);
    for i in 0..n {
        let name = format!("bad-{i}");
        assert!(
            s.inventory.nodes.iter().any(|node| node.name == name),
            "{name}"
        );
        assert!(allocated_memory(&s, &name).is_none(), "{name}");
    }
    let kept_pods = s.pods.iter().filter(|p| p.name.starts_with("bad-")).count();
    assert_eq!(kept_pods, n, "hostile pods are kept, without allocations");
    let errors = h.decode_errors();
    assert!(
        errors >= n as u64,
        "{errors} decode errors for {n} hostile nodes"
    );
}

#[actix_rt::test]
async fn watches_cut_while_changes_keep_coming_converge() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-0", 8));
    let h = start(&api).await;
    h.until_ready().await;
    // Ten rounds: a batch of changes, a cut in the middle of it, more changes.
    for round in 0..10usize {
        for i in 0..20usize {
            let name = format!("job-{round}-{i}");
            let uuid = format!("GPU-gpu-0-{}", i % 8);
            api.apply_pod(nvidia_pod(
                "default",
                &name,
                "gpu-0",
                &[(uuid.as_str(), 100, 1)],
            ));
            if i == 10 {
                api.cut_watches();
            }
        }
        if round % 2 == 1 {
            api.delete_pod("default", &format!("job-{}-0", round - 1));
        }
        api.apply_node(nvidia_node(&format!("extra-{round}"), 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = h
        .until(Duration::from_secs(30), "API state after cuts", |s| {
            s.pods.len() == 200 - 5 && s.inventory.nodes.len() == 11
        })
        .await;
    assert!(allocated_memory(&s, "job-0-0").is_none());
    assert_eq!(allocated_memory(&s, "job-9-19"), Some(100));
    assert_eq!(s.inventory.device_count(), 8 + 10);
}
