//! HAMi-DRA devices and NVIDIA MIG allocations through every route that shows them: a
//! cluster with a DRA-only node, a node with both annotation-registered and DRA devices, a
//! claim shared by two pods, an unallocated claim, a claim whose pod is gone, a claim naming
//! a device no slice publishes, a slice for a node that does not exist, and MIG slices whose
//! reservation agrees, is missing, mismatches, is invalid or predates v2.10. `/v1/gpus`,
//! `/v1/nodes`, `/v1/containers`, `/v1/workloads` and the `/metrics` families of one cycle
//! are compared whole with `tests/golden/dra_mig/`.
//!
//! The server runs in process on a snapshot of these objects, as `--snapshot` serves a file.

mod support;

use std::time::Duration;

use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::metrics::{build_cycle, CycleState, QueryResults};
use serde_json::{json, Value};
use support::fixtures::{self, dra_claim, dra_pod, dra_slice, nvidia_node};
use support::{app, demo, golden};

fn mig_pod(name: &str, annotations: Value) -> k8s_openapi::api::core::v1::Pod {
    let mut annotations = annotations;
    annotations["hami.io/vgpu-node"] = json!("mig-1");
    fixtures::pod("ml", name, "mig-1", annotations, "Running")
}

fn cluster() -> ClusterExport {
    // Cordoned: GPU-C on the MIG node (HAMi v2.10's hami.io/device-cordon).
    let mig_node = fixtures::node(
        "mig-1",
        json!({"gpu": "on"}),
        json!({"hami.io/node-nvidia-register": fixtures::mig_registration(false),
               "hami.io/device-cordon": " GPU-C , ,GPU-unknown"}),
    );
    let nodes = vec![
        fixtures::node("dra-1", json!({"gpu": "on"}), json!({})),
        nvidia_node("mixed-1", 1),
        mig_node,
    ];
    let resource_slices = vec![
        dra_slice(
            "dra-1",
            &[
                ("hami-gpu-0", "GPU-d0", "NVIDIA A100-SXM4-80GB", "80Gi"),
                ("hami-gpu-1", "GPU-d1", "A10", "23028Mi"),
            ],
        ),
        dra_slice(
            "mixed-1",
            &[("hami-gpu-0", "GPU-x0", "NVIDIA L4", "23034Mi")],
        ),
        dra_slice(
            "deleted-node",
            &[("hami-gpu-0", "GPU-g0", "NVIDIA L4", "23034Mi")],
        ),
    ];
    let resource_claims = vec![
        dra_claim(
            "serving",
            "shared",
            "dra-1",
            &[("hami-gpu-0", "30", "8Gi")],
            &[("infer-0", "uid-infer-0"), ("infer-1", "uid-infer-1")],
        ),
        dra_claim("serving", "pending", "dra-1", &[], &[]),
        dra_claim(
            "serving",
            "orphan",
            "dra-1",
            &[("hami-gpu-1", "100", "23028Mi")],
            &[("old-0", "uid-old-0")],
        ),
        dra_claim(
            "serving",
            "ghost",
            "dra-1",
            &[("hami-gpu-7", "10", "1Gi")],
            &[("ghost-0", "uid-ghost-0")],
        ),
        dra_claim(
            "research",
            "mixed",
            "mixed-1",
            &[("hami-gpu-0", "50", "10Gi")],
            &[("mixed-job", "uid-mixed-job")],
        ),
    ];
    let pods = vec![
        dra_pod("serving", "infer-0", "dra-1", &["shared"]),
        dra_pod("serving", "infer-1", "dra-1", &["shared"]),
        dra_pod("serving", "queued-0", "dra-1", &["pending"]),
        dra_pod("serving", "ghost-0", "dra-1", &["ghost"]),
        dra_pod("research", "mixed-job", "mixed-1", &["mixed"]),
        fixtures::nvidia_pod(
            "research",
            "anno-job",
            "mixed-1",
            &[("GPU-mixed-1-0", 20480, 40)],
        ),
        mig_pod(
            "soft",
            json!({"hami.io/vgpu-devices-allocated": "GPU-C,NVIDIA,4096,30:;"}),
        ),
        mig_pod(
            "mig",
            json!({"hami.io/vgpu-devices-allocated": "GPU-M,NVIDIA,19968,42:;",
                   "hami.io/vgpu-mig-allocations": fixtures::mig_reservation("GPU-M", "3g.20gb", 4, 4)}),
        ),
        mig_pod(
            "legacy",
            json!({"hami.io/vgpu-devices-allocated": "GPU-M[1-0],NVIDIA,4864,14:;"}),
        ),
        mig_pod(
            "missing-reservation",
            json!({"hami.io/vgpu-devices-allocated": "GPU-M,NVIDIA,4864,14:;"}),
        ),
        mig_pod(
            "mismatch",
            json!({"hami.io/vgpu-devices-allocated": "GPU-C,NVIDIA,4864,14:;",
                   "hami.io/vgpu-mig-allocations": fixtures::mig_reservation("GPU-C", "1g.5gb", 0, 1)}),
        ),
        mig_pod(
            "invalid",
            json!({"hami.io/vgpu-devices-allocated": "GPU-M,NVIDIA,4864,14:;",
                   "hami.io/vgpu-mig-allocations": r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":0,"size":0}}]"#}),
        ),
    ];
    ClusterExport {
        nodes,
        pods,
        resource_slices,
        resource_claims,
        ..ClusterExport::default()
    }
}

#[actix_rt::test]
async fn dra_devices_and_mig_allocations_through_every_route() {
    let state = app::start(demo::config(), ClusterSource::Snapshot(cluster())).await;
    // 3 nodes with 2 + 2 + 2 devices; 11 pods tracked (queued-0 holds nothing yet, but uses
    // a claim on a node).
    let snapshot = app::until_snapshot(&state, Duration::from_secs(10), "the cluster", |s| {
        s.inventory.device_count() == 6 && s.pods.len() == 12
    })
    .await;
    let app = app!(&state);
    for (route, name) in [
        ("/v1/gpus", "gpus"),
        ("/v1/nodes", "nodes"),
        ("/v1/containers", "containers"),
        ("/v1/workloads", "workloads"),
    ] {
        let (status, body) = call!(&app, demo::post(route, json!({}))).await;
        assert_eq!(status, 200, "{route}: {body}");
        golden::assert_golden(&format!("dra_mig/{name}"), &body);
    }
    let exposition =
        build_cycle(&snapshot, &QueryResults::new(), &CycleState::default(), 3).render();
    golden::assert_text("dra_mig/metrics.prom", &exposition);

    // The figures the goldens hold, spelled out.
    let device = |uuid: &str| {
        let flat = snapshot.inventory.device_index_by_id(uuid).expect(uuid);
        snapshot.usage_of(flat)
    };
    // Shared by two pods: one share. Held by a pod that is gone: still held.
    assert_eq!(
        (device("GPU-d0").vgpu_used, device("GPU-d0").memory_used),
        (1, 8192)
    );
    assert_eq!(
        (device("GPU-d1").vgpu_used, device("GPU-d1").core_used),
        (1, 100)
    );
    // A node with both kinds keeps both.
    let mixed = snapshot
        .inventory
        .node_by_name("mixed-1")
        .expect("mixed node");
    let kinds: Vec<bool> = mixed.devices.iter().map(|d| d.dra.is_some()).collect();
    assert_eq!(kinds, [false, true]);
    assert_eq!(device("GPU-mixed-1-0").memory_used, 20480);
    assert_eq!(device("GPU-x0").memory_used, 10240);
    // The ghost device and the deleted node are counted as decode errors.
    let metrics = state.metrics.registry.gather();
    let errors: Vec<(String, f64)> = metrics
        .iter()
        .filter(|f| f.name() == "hami_webui_decode_errors_total")
        .flat_map(|f| f.get_metric().iter())
        .map(|m| {
            let kind = m
                .get_label()
                .iter()
                .find(|l| l.name() == "kind")
                .map(|l| l.value().to_string())
                .unwrap_or_default();
            (kind, m.get_counter().get_value())
        })
        .collect();
    for kind in ["unknown_device", "unknown_node"] {
        assert!(
            errors.iter().any(|(k, v)| k == kind && *v >= 1.0),
            "{kind} not counted: {errors:?}"
        );
    }
}
