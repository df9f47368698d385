//! The node and pod caches against the test API server, through a kubeconfig exactly as in
//! production: initial sync, live changes, `410 Gone`, an API outage, and a large list.
//! The harness is `tests/support/cluster_harness.rs`; the 30 s outage with changes on the
//! API meanwhile, seen through the HTTP routes, is in `tests/kube_faults.rs`.

mod support;

use std::time::{Duration, Instant};

use hami_webui_server::cluster::SOURCES;
use hami_webui_server::readiness::Readiness;
use serde_json::json;
use support::cluster_harness::{counts, start};
use support::fixtures::{node, nvidia_node, nvidia_pod};
use support::kube_api::TestApiServer;

#[actix_rt::test]
async fn initial_sync_then_live_changes_reach_the_snapshot_and_metrics() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-1", 2));
    api.apply_node(node("cpu-1", json!({}), json!({})));
    api.apply_pod(nvidia_pod(
        "default",
        "train",
        "gpu-1",
        &[("GPU-gpu-1-0", 4096, 30)],
    ));
    let h = start(&api, Duration::from_secs(300)).await;
    assert_ne!(h.board.check(), Readiness::Ready);
    h.until_ready(Duration::from_secs(10)).await;

    let s = h
        .until(Duration::from_secs(5), "initial state", |s| {
            counts(s) == (1, 2, 1)
        })
        .await;
    assert_eq!(
        s.inventory.node_uid("cpu-1"),
        "uid-cpu-1",
        "UID map covers unselected nodes"
    );
    let gpu0 = s.inventory.device_index_by_id("GPU-gpu-1-0").unwrap();
    assert_eq!(s.usage_of(gpu0).memory_used, 4096);
    assert_eq!(h.cache_objects("nodes"), 1);
    assert_eq!(h.cache_objects("devices"), 2);
    assert_eq!(h.cache_objects("pods"), 1);
    assert_eq!(h.cache_objects("containers"), 1);

    api.apply_pod(nvidia_pod(
        "default",
        "infer",
        "gpu-1",
        &[("GPU-gpu-1-1", 2048, 10)],
    ));
    h.until(Duration::from_secs(5), "pod added", |s| s.pods.len() == 2)
        .await;

    api.apply_node(nvidia_node("gpu-1", 3));
    h.until(Duration::from_secs(5), "node modified", |s| {
        s.inventory.device_count() == 3
    })
    .await;

    api.delete_pod("default", "train");
    let s = h
        .until(Duration::from_secs(5), "pod deleted", |s| s.pods.len() == 1)
        .await;
    assert_eq!(s.usage_of(gpu0).memory_used, 0);

    api.apply_node(nvidia_node("gpu-2", 1));
    api.delete_node("gpu-1");
    h.until(Duration::from_secs(5), "node replaced", |s| {
        s.inventory.nodes.len() == 1 && s.inventory.nodes[0].name == "gpu-2"
    })
    .await;
    assert_eq!(h.cache_objects("devices"), 1);
}

#[actix_rt::test]
async fn gone_410_relists_and_drops_objects_deleted_meanwhile() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-a", 1));
    api.apply_node(nvidia_node("gpu-b", 1));
    let h = start(&api, Duration::from_secs(300)).await;
    h.until_ready(Duration::from_secs(10)).await;
    h.until(Duration::from_secs(5), "both nodes", |s| {
        s.inventory.nodes.len() == 2
    })
    .await;

    api.expire();
    api.delete_node("gpu-b");
    api.cut_watches();
    h.until(Duration::from_secs(30), "gpu-b gone after relist", |s| {
        s.inventory.nodes.len() == 1 && s.inventory.node_by_name("gpu-b").is_none()
    })
    .await;
    let restarts = h.metrics.watch_restarts.with_label_values(&["nodes"]).get();
    assert!(restarts >= 1, "relist counted, got {restarts}");
    assert_eq!(h.board.check(), Readiness::Ready);
}

#[actix_rt::test]
async fn api_outage_serves_last_state_and_recovers_without_restart() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-1", 2));
    api.apply_pod(nvidia_pod(
        "default",
        "train",
        "gpu-1",
        &[("GPU-gpu-1-0", 4096, 30)],
    ));
    let h = start(&api, Duration::from_secs(300)).await;
    h.until_ready(Duration::from_secs(10)).await;
    h.until(Duration::from_secs(5), "initial", |s| {
        counts(s) == (1, 2, 1)
    })
    .await;

    let down_at = Instant::now();
    api.stop().await;
    h.until_outage_noticed(Duration::from_secs(15)).await;
    // The outage lasts 10 s; during it the last state is served and readiness holds.
    while down_at.elapsed() < Duration::from_secs(10) {
        assert_eq!(counts(&*h.snapshot().await), (1, 2, 1));
        assert_eq!(h.board.check(), Readiness::Ready);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.restart().await;
    api.apply_pod(nvidia_pod(
        "default",
        "after",
        "gpu-1",
        &[("GPU-gpu-1-1", 1024, 10)],
    ));
    h.until(Duration::from_secs(45), "change after recovery", |s| {
        s.pods.len() == 2
    })
    .await;
    assert_eq!(h.board.check(), Readiness::Ready);
}

#[actix_rt::test]
async fn long_outage_beyond_unready_after_turns_readiness_off() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-1", 1));
    let h = start(&api, Duration::from_millis(500)).await;
    h.until_ready(Duration::from_secs(10)).await;
    api.stop().await;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Readiness::Waiting(sources) = h.board.check() {
            assert!(sources.iter().all(|s| SOURCES.contains(s)), "{sources:?}");
            break;
        }
        assert!(Instant::now() < end, "readiness never reported the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts(&*h.snapshot().await).0, 1, "state still served");
}

#[actix_rt::test]
async fn initial_list_of_5000_pods_syncs_with_right_counts() {
    let api = TestApiServer::start().await;
    for n in 0..50 {
        api.apply_node(nvidia_node(&format!("gpu-{n}"), 8));
    }
    let pods = (0..5000)
        .map(|i| {
            let node = format!("gpu-{}", i % 50);
            let gpu = format!("GPU-{node}-{}", i % 8);
            nvidia_pod(
                "load",
                &format!("pod-{i}"),
                &node,
                &[(gpu.as_str(), 1000, 10)],
            )
        })
        .collect();
    api.apply_many_pods(pods);
    let h = start(&api, Duration::from_secs(300)).await;
    h.until_ready(Duration::from_secs(60)).await;
    let s = h
        .until(Duration::from_secs(10), "all pods", |s| {
            counts(s) == (50, 400, 5000)
        })
        .await;
    assert_eq!(h.cache_objects("pods"), 5000);
    assert_eq!(h.cache_objects("containers"), 5000);
    let total: i32 = s.usage.iter().map(|u| u.vgpu_used).sum();
    assert_eq!(total, 5000);
}
