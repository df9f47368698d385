//! NVIDIA MIG as HAMi v2.10 records it: `migProfiles` in the JSON registration and the
//! scheduler's reservations in `hami.io/vgpu-mig-allocations` (and the pre-2.10 uuid form),
//! read into card replies and allocation descriptions of a hand-built cluster.

mod support;

use std::sync::Arc;

use hami_webui_server::cluster::allocation::describe_allocation;
use hami_webui_server::cluster::inventory::{build_inventory, device_context, node_entry};
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::config::NodeSelectors;
use hami_webui_server::device::AnnotationlessPodMode;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::reply::allocation::describe_allocations;
use hami_webui_server::reply::cards::{gpu_list, CardFilters, DeviceCapacity};
use hami_webui_server::vendor::node_notes;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use support::fixtures;

fn assert_golden(name: &str, reply: &impl Serialize) {
    support::golden::assert_golden(&format!("catalog/{name}"), reply);
}

fn gpu_pod(name: &str, annotations: Value) -> k8s_openapi::api::core::v1::Pod {
    let mut annotations = annotations;
    annotations["hami.io/vgpu-node"] = json!("gpu-mig");
    fixtures::pod("ml", name, "gpu-mig", annotations, "Running")
}

fn snapshot() -> ClusterSnapshot {
    let node = fixtures::node(
        "gpu-mig",
        json!({"gpu": "on"}),
        json!({"hami.io/node-nvidia-register": fixtures::mig_registration(true)}),
    );
    let notes = node_notes(&node);
    let context = device_context(
        None,
        AnnotationlessPodMode::Unknown,
        [("gpu-mig", &notes)].into_iter(),
    );
    let entry = node_entry(&node, &NodeSelectors::default(), &context).0;
    let inventory = Arc::new(build_inventory(
        [&entry].into_iter(),
        &Default::default(),
        Arc::new(context),
    ));
    let pods = [
        gpu_pod(
            "soft",
            json!({"hami.io/vgpu-devices-allocated": "GPU-C,NVIDIA,4096,30:;"}),
        ),
        gpu_pod(
            "mig",
            json!({
                "hami.io/vgpu-devices-allocated": "GPU-M,NVIDIA,19968,42:;",
                "hami.io/vgpu-mig-allocations": fixtures::mig_reservation("GPU-M", "3g.20gb", 4, 4),
            }),
        ),
        gpu_pod(
            "legacy",
            json!({"hami.io/vgpu-devices-allocated": "GPU-M[1-0],NVIDIA,4864,14:;"}),
        ),
        gpu_pod(
            "missing-reservation",
            json!({"hami.io/vgpu-devices-allocated": "GPU-M,NVIDIA,4864,14:;"}),
        ),
        gpu_pod(
            "mismatch",
            json!({
                "hami.io/vgpu-devices-allocated": "GPU-C,NVIDIA,4864,14:;",
                "hami.io/vgpu-mig-allocations": fixtures::mig_reservation("GPU-C", "1g.5gb", 0, 1),
            }),
        ),
        gpu_pod(
            "invalid",
            json!({
                "hami.io/vgpu-devices-allocated": "GPU-M,NVIDIA,4864,14:;",
                "hami.io/vgpu-mig-allocations": r#"[{"containerIndex":0,"deviceIndex":0,"gpuUUID":"GPU-M","profile":"1g.5gb","placement":{"start":0,"size":0}}]"#,
            }),
        ),
    ];
    let now: Timestamp = "2025-03-01T03:00:00Z".parse().expect("timestamp");
    let records: Vec<_> = pods
        .iter()
        .filter_map(|p| {
            pod_record(p, now, &DeviceContext::default())
                .0
                .map(Arc::new)
        })
        .collect();
    ClusterSnapshot::build(1, inventory, records.to_vec(), Vec::new())
}

#[test]
fn mig_profiles_are_decoded_and_bad_ones_cost_only_themselves() {
    let snapshot = snapshot();
    let profiles = &snapshot.inventory.context.mig_profiles;
    let names: Vec<_> = profiles[&("gpu-mig".to_string(), "GPU-M".to_string())]
        .iter()
        .map(|p| (p.name.as_str(), p.placements.len()))
        .collect();
    assert_eq!(names, [("1g.5gb", 2), ("3g.20gb", 2)]);
    assert!(!profiles.contains_key(&("gpu-mig".to_string(), "GPU-X".to_string())));
    let cards = gpu_list(
        &snapshot,
        &CardFilters::default(),
        &DeviceCapacity::default(),
    );
    assert_eq!(cards.list.len(), 3, "GPU-X keeps its card");
}

#[test]
fn mig_cards_and_allocations_match_goldens() {
    let snapshot = snapshot();
    assert_golden(
        "mig-gpus",
        &gpu_list(
            &snapshot,
            &CardFilters::default(),
            &DeviceCapacity::default(),
        ),
    );
    let inventory = &snapshot.inventory;
    let mut out = serde_json::Map::new();
    for pod in snapshot.pods.iter() {
        let allocations: Vec<_> = pod.containers[0].allocations.iter().collect();
        let described = describe_allocations(inventory, &allocations);
        let slice = describe_allocation(inventory, allocations[0]);
        out.insert(
            pod.name.clone(),
            json!({
                "allocationShape": described.allocation_shape,
                "template": described.template,
                "allocatedCoresKnown": described.allocated_cores_known,
                "shapeReason": slice.reason,
                "allocationShapeReason": described.allocation_shape_reason,
                "devices": described.devices,
            }),
        );
    }
    assert_golden("mig-allocations", &Value::Object(out));
}
