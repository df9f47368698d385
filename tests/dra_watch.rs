//! HAMi-DRA through the watchers, against the test API server: a ResourceClaim allocated
//! and deallocated moves its device's usage and the container's allocation in the same
//! publication; malformed slices and claims are counted and the rest kept; and a cluster
//! that does not serve `resource.k8s.io/v1` is ready, says so once, and serves everything
//! else.

mod support;

use std::time::Duration;

use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use serde_json::json;
use support::cluster_harness::start;
use support::fixtures::{dra_claim, dra_pod, dra_slice, node, nvidia_node};
use support::kube_api::{ApiServerThread, TestApiServer};
use support::process::{request, wait_for, Launch, ServerProcess};

/// `(allocations the pod's container holds, shares on the device)`.
fn held(snapshot: &ClusterSnapshot) -> (usize, i32) {
    let allocations = snapshot
        .pods
        .iter()
        .find(|p| p.name == "infer-0")
        .map_or(0, |p| p.containers[0].allocations.len());
    let shares = snapshot
        .inventory
        .device_index_by_id("GPU-d0")
        .map_or(0, |flat| snapshot.usage_of(flat).vgpu_used);
    (allocations, shares)
}

#[actix_rt::test]
async fn a_claim_allocated_then_released_moves_pod_and_device_together() {
    let api = TestApiServer::start().await;
    api.apply_node(node("dra-1", json!({"gpu": "on"}), json!({})));
    api.apply_resource_slice(dra_slice(
        "dra-1",
        &[("hami-gpu-0", "GPU-d0", "NVIDIA L40S", "46068Mi")],
    ));
    api.apply_pod(dra_pod("serving", "infer-0", "dra-1", &["llm"]));
    api.apply_resource_claim(dra_claim("serving", "llm", "dra-1", &[], &[]));
    let h = start(&api, Duration::from_secs(300)).await;
    h.until_ready(Duration::from_secs(10)).await;
    let before = h
        .until(Duration::from_secs(10), "the DRA device", |s| {
            s.inventory.device_index_by_id("GPU-d0").is_some() && s.pods.len() == 1
        })
        .await;
    assert_eq!(held(&before), (0, 0), "an unallocated claim holds nothing");

    // Allocated, then released, then allocated again: every snapshot seen on the way shows
    // the pod's allocation exactly when the device counts the share.
    let allocated = || {
        dra_claim(
            "serving",
            "llm",
            "dra-1",
            &[("hami-gpu-0", "40", "16Gi")],
            &[("infer-0", "uid-infer-0")],
        )
    };
    for (claim, want) in [
        (allocated(), (1, 1)),
        (dra_claim("serving", "llm", "dra-1", &[], &[]), (0, 0)),
        (allocated(), (1, 1)),
    ] {
        api.apply_resource_claim(claim);
        let reached = h
            .until(Duration::from_secs(10), "the claim's change", |s| {
                let now = held(s);
                assert!(
                    now == (0, 0) || now == (1, 1),
                    "generation {}: pod and device disagree: {now:?}",
                    s.generation
                );
                now == want
            })
            .await;
        let flat = reached.inventory.device_index_by_id("GPU-d0").unwrap();
        let usage = reached.usage_of(flat);
        if want == (1, 1) {
            assert_eq!((usage.core_used, usage.memory_used), (40, 16384));
        } else {
            assert_eq!((usage.core_used, usage.memory_used), (0, 0));
        }
    }
}

#[actix_rt::test]
async fn malformed_slices_and_claims_are_counted_and_the_rest_kept() {
    let api = TestApiServer::start().await;
    api.apply_node(node("dra-1", json!({"gpu": "on"}), json!({})));
    let mut slice = dra_slice(
        "dra-1",
        &[
            ("hami-gpu-0", "GPU-d0", "NVIDIA L40S", "46068Mi"),
            ("hami-gpu-1", "GPU-d1", "NVIDIA L40S", "46068Mi"),
        ],
    );
    // A device without its uuid.
    if let Some(devices) = slice.spec.devices.as_mut() {
        if let Some(attributes) = devices[1].attributes.as_mut() {
            attributes.remove("uuid");
        }
    }
    api.apply_resource_slice(slice);
    api.apply_pod(dra_pod("serving", "infer-0", "dra-1", &["odd"]));
    api.apply_resource_claim(dra_claim(
        "serving",
        "odd",
        "dra-1",
        &[("hami-gpu-0", "most", "16Gi")],
        &[("infer-0", "uid-infer-0")],
    ));
    let h = start(&api, Duration::from_secs(300)).await;
    h.until_ready(Duration::from_secs(10)).await;
    let s = h
        .until(
            Duration::from_secs(10),
            "the readable device and the claim",
            |s| s.inventory.device_count() == 1 && held(s) == (1, 1),
        )
        .await;
    // The unreadable share is kept as the whole device.
    let flat = s.inventory.device_index_by_id("GPU-d0").unwrap();
    assert_eq!(s.usage_of(flat).core_used, 100);
    assert!(h.decode_errors() >= 2, "{}", h.decode_errors());
}

#[test]
fn without_dra_the_server_is_ready_says_so_once_and_serves_the_rest() {
    let api = ApiServerThread::start();
    api.set_dra_served(false);
    api.apply_node(nvidia_node("gpu-1", 1));
    let api_url = api.base_url();
    let server = ServerProcess::start(Launch {
        config_yaml: "prometheus:\n  address: http://127.0.0.1:9\n",
        api_server: &api_url,
        ..Launch::default()
    });
    let ready = wait_for(Duration::from_secs(20), || {
        server.get("/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "never ready:\n{}", server.log());
    let nodes = request(
        server.port,
        "POST",
        "/v1/nodes",
        &[("Content-Type", "application/json")],
        b"{}",
    )
    .expect("nodes");
    assert_eq!(nodes.status, 200);
    assert!(nodes.text().contains("gpu-1"), "{}", nodes.text());
    // Asked once at start (and not again before a minute has passed): one line.
    let said = wait_for(Duration::from_secs(10), || {
        let log = server.log();
        let lines = log
            .lines()
            .filter(|l| l.contains("resource.k8s.io/v1"))
            .count();
        (lines > 0).then_some(lines)
    });
    assert_eq!(said, Some(1), "{}", server.log());
    assert!(
        !server.log().contains("ERROR"),
        "no error for a cluster without DRA:\n{}",
        server.log()
    );
}
