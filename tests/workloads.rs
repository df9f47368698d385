//! `POST /v1/workloads` and the 2.0 fields of `ContainerReply`: golden JSON on a hand-built
//! cluster of GPU pods in every state (allocated, pending with a scheduler verdict, gated,
//! natively bound, preallocated, init and sidecar containers with GPU requests), paging over a
//! 5,000-workload cluster, and the route through the real `configure` and caches.
//!
//! Goldens live in `tests/golden/workloads/`; `UPDATE_GOLDEN=1` rewrites them, after which
//! every changed file must be read before it is committed.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix_web::test as atest;
use hami_webui_server::cluster::inventory::{build_inventory, node_entry, IdentityMap};
use hami_webui_server::cluster::scheduling::SchedulingResources;
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::cluster::tracked_pod::{self, track_pod};
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::config::Config;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::http;
use hami_webui_server::reply::containers::{
    container_detail, container_list, ContainerFilters, ContainerRequest,
};
use hami_webui_server::reply::workloads::{
    workload_list, WorkloadFilters, WorkloadsReply, WorkloadsRequest,
};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::Serialize;
use serde_json::{json, Value};

use hami_webui_server::http::AppState;
use support::app;
use support::fixtures;

// ---------------------------------------------------------------------------------------
// The hand-built cluster
// ---------------------------------------------------------------------------------------

const SCHEDULED: &str = "2026-03-01T02:20:30Z";

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("valid pod")
}

fn gpu_limits(count: &str) -> Value {
    json!({"limits": {"nvidia.com/gpu": count, "nvidia.com/gpumem": "4096"}})
}

fn allocation(uuid: &str, mem: u32, cores: u32) -> String {
    format!("{uuid},NVIDIA,{mem},{cores}:;")
}

fn running(name: &str, ready: bool) -> Value {
    json!({"name": name, "ready": ready, "restartCount": 0, "image": "cuda:12", "imageID": "",
           "state": {"running": {"startedAt": SCHEDULED}}})
}

fn scheduled_condition() -> Value {
    json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": SCHEDULED})
}

/// Every state the workload list distinguishes, on one NVIDIA node.
fn cluster() -> (Vec<Node>, Vec<Pod>) {
    let nodes = vec![
        fixtures::nvidia_node("gpu-a", 2),
        fixtures::node("cpu-b", json!({}), json!({})),
    ];
    let pods = vec![
        // Allocated and running.
        pod(json!({
            "metadata": {"name": "train", "namespace": "dev", "uid": "uid-train",
                         "creationTimestamp": SCHEDULED,
                         "annotations": {"hami.io/vgpu-node": "gpu-a",
                                         "hami.io/vgpu-devices-allocated": allocation("GPU-gpu-a-0", 1024, 30)}},
            "spec": {"nodeName": "gpu-a", "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Running", "conditions": [scheduled_condition()],
                       "containerStatuses": [running("main", true)]}
        })),
        // Allocated, crash-looping after an OOM kill.
        pod(json!({
            "metadata": {"name": "crash", "namespace": "dev", "uid": "uid-crash",
                         "creationTimestamp": SCHEDULED,
                         "annotations": {"hami.io/vgpu-node": "gpu-a",
                                         "hami.io/vgpu-devices-allocated": allocation("GPU-gpu-a-1", 2048, 20)}},
            "spec": {"nodeName": "gpu-a", "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Running", "conditions": [scheduled_condition(),
                          {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                       "containerStatuses": [{"name": "main", "ready": false, "restartCount": 3, "image": "cuda:12", "imageID": "",
                           "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                           "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}
        })),
        // Allocated main container; GPU init containers: completed, running, and a sidecar.
        pod(json!({
            "metadata": {"name": "prep", "namespace": "dev", "uid": "uid-prep",
                         "creationTimestamp": SCHEDULED,
                         "annotations": {"hami.io/vgpu-node": "gpu-a",
                                         "hami.io/vgpu-devices-allocated": allocation("GPU-gpu-a-0", 512, 10)}},
            "spec": {"nodeName": "gpu-a", "restartPolicy": "Always",
                     "initContainers": [
                         {"name": "warmup", "image": "cuda:12", "resources": gpu_limits("1")},
                         {"name": "loader", "image": "cuda:12", "resources": {"requests": {"nvidia.com/gpumem": "1024"}}},
                         {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                          "resources": {"limits": {"nvidia.com/gpucores": "5"}}}],
                     "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Pending", "conditions": [scheduled_condition()],
                       "initContainerStatuses": [
                           {"name": "warmup", "ready": false, "restartCount": 0, "image": "cuda:12", "imageID": "",
                            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                           running("loader", false),
                           {"name": "proxy", "ready": false, "restartCount": 0, "image": "envoy", "imageID": "",
                            "state": {"waiting": {"reason": "ContainerCreating"}}}],
                       "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0, "image": "cuda:12", "imageID": "",
                            "state": {"waiting": {"reason": "PodInitializing"}}}]}
        })),
        // Pending: HAMi and kube-scheduler both said no.
        pod(json!({
            "metadata": {"name": "queued", "namespace": "dev", "uid": "uid-queued",
                         "creationTimestamp": "2026-03-01T01:00:00Z",
                         "annotations": {"nvidia.com/use-gputype": "A100"}},
            "spec": {"schedulerName": "hami-scheduler", "nodeSelector": {"gpu": "on"},
                     "priorityClassName": "high",
                     "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [{"name": "main", "image": "cuda:12",
                                     "resources": {"limits": {"nvidia.com/gpu": "2", "nvidia.com/gpumem": "20000"}}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "lastTransitionTime": "2026-03-01T01:00:05Z",
                "message": "0/2 nodes are available: 1 CardInsufficientMemory, 1 Insufficient cpu."}]}
        })),
        // Pending behind a scheduling gate.
        pod(json!({
            "metadata": {"name": "held", "namespace": "dev", "uid": "uid-held",
                         "creationTimestamp": "2026-03-01T01:30:00Z"},
            "spec": {"schedulingGates": [{"name": "example.com/quota"}],
                     "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Pending"}
        })),
        // Pending, no verdict yet; newest.
        pod(json!({
            "metadata": {"name": "fresh", "namespace": "ml", "uid": "uid-fresh",
                         "creationTimestamp": "2026-03-01T02:00:00Z"},
            "spec": {"containers": [{"name": "worker", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Pending"}
        })),
        // Asks for zero GPUs: not a GPU pod.
        pod(json!({
            "metadata": {"name": "zero", "namespace": "dev", "uid": "uid-zero",
                         "creationTimestamp": "2026-03-01T02:00:00Z"},
            "spec": {"containers": [{"name": "main", "image": "cuda:12",
                                     "resources": {"limits": {"nvidia.com/gpu": "0"}}}]},
            "status": {"phase": "Pending"}
        })),
        // Bound by the default scheduler, without HAMi: a request row, no allocation.
        pod(json!({
            "metadata": {"name": "native", "namespace": "dev", "uid": "uid-native",
                         "creationTimestamp": "2026-03-01T00:30:00Z"},
            "spec": {"nodeName": "gpu-a", "schedulerName": "default-scheduler",
                     "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Pending", "conditions": [scheduled_condition()],
                       "containerStatuses": [{"name": "main", "ready": false, "restartCount": 0, "image": "cuda:12", "imageID": "",
                           "state": {"waiting": {"reason": "CreateContainerError", "message": "device plugin said no"}}}]}
        })),
        // HAMi reserved a GPU before binding: shown as the pending request.
        pod(json!({
            "metadata": {"name": "reserved", "namespace": "dev", "uid": "uid-reserved",
                         "creationTimestamp": "2026-03-01T01:45:00Z",
                         "annotations": {"hami.io/vgpu-node": "gpu-a",
                                         "hami.io/vgpu-devices-allocated": allocation("GPU-gpu-a-1", 4096, 0)}},
            "spec": {"schedulerName": "hami-scheduler",
                     "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Pending"}
        })),
        // No GPU at all, and a finished GPU pod: neither is listed.
        pod(json!({
            "metadata": {"name": "web", "namespace": "dev", "uid": "uid-web"},
            "spec": {"nodeName": "cpu-b", "containers": [{"name": "nginx", "image": "nginx"}]},
            "status": {"phase": "Running"}
        })),
        pod(json!({
            "metadata": {"name": "done", "namespace": "dev", "uid": "uid-done",
                         "annotations": {"hami.io/vgpu-node": "gpu-a",
                                         "hami.io/vgpu-devices-allocated": allocation("GPU-gpu-a-0", 1, 1)}},
            "spec": {"nodeName": "gpu-a", "containers": [{"name": "main", "image": "cuda:12", "resources": gpu_limits("1")}]},
            "status": {"phase": "Succeeded"}
        })),
        // Priority 1, running but not ready, in another namespace.
        pod(json!({
            "metadata": {"name": "serve", "namespace": "prod", "uid": "uid-serve",
                         "creationTimestamp": SCHEDULED,
                         "annotations": {"hami.io/vgpu-node": "gpu-a",
                                         "hami.io/vgpu-devices-allocated": allocation("GPU-gpu-a-1", 8192, 50)}},
            "spec": {"nodeName": "gpu-a", "containers": [{"name": "server", "image": "triton",
                     "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/priority": "1"}}}]},
            "status": {"phase": "Running", "conditions": [scheduled_condition()],
                       "containerStatuses": [running("server", false)]}
        })),
    ];
    (nodes, pods)
}

fn config() -> Config {
    Config::from_raw(Default::default()).expect("default config")
}

fn zone() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("zone")
}

fn fixed_now() -> Timestamp {
    "2026-03-01T03:00:00Z".parse().expect("timestamp")
}

/// The snapshot the caches publish for these objects, built with the pure functions.
fn snapshot_of(nodes: &[Node], pods: &[Pod]) -> ClusterSnapshot {
    let config = config();
    let entries: Vec<_> = nodes
        .iter()
        .map(|n| node_entry(n, &config.node_selectors, &DeviceContext::default()).0)
        .collect();
    let inventory = Arc::new(build_inventory(
        entries.iter(),
        &IdentityMap::new(),
        Default::default(),
    ));
    let resources = SchedulingResources::default();
    let tracked: Vec<_> = pods
        .iter()
        .filter_map(|p| track_pod(p, fixed_now(), &resources, &DeviceContext::default()).0)
        .collect();
    {
        let (pods, views) = tracked_pod::split(tracked.iter());
        ClusterSnapshot::build(1, inventory, pods, views)
    }
}

fn cluster_snapshot() -> ClusterSnapshot {
    let (nodes, pods) = cluster();
    snapshot_of(&nodes, &pods)
}

fn assert_golden(name: &str, reply: &impl Serialize) {
    support::golden::assert_golden(&format!("workloads/{name}"), reply);
}

fn request(filters: WorkloadFilters, page: i32, page_size: i32) -> WorkloadsRequest {
    WorkloadsRequest {
        filters,
        page,
        page_size,
    }
}

fn names(reply: &WorkloadsReply) -> Vec<String> {
    reply
        .items
        .iter()
        .map(|r| format!("{}/{}/{}", r.app_name, r.name, r.status))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Goldens and semantics on the hand-built cluster
// ---------------------------------------------------------------------------------------

#[test]
fn workload_replies_match_goldens() {
    let snapshot = cluster_snapshot();
    let zone = zone();
    let all = workload_list(
        &snapshot,
        &request(WorkloadFilters::default(), 1, 100),
        &zone,
    );
    assert_golden("all", &all);
    let pending = WorkloadFilters {
        status: "pending".into(),
        ..WorkloadFilters::default()
    };
    assert_golden(
        "pending",
        &workload_list(&snapshot, &request(pending, 1, 100), &zone),
    );
    let abnormal_page = WorkloadFilters {
        status: "abnormal".into(),
        ..WorkloadFilters::default()
    };
    assert_golden(
        "abnormal-page-2-of-1",
        &workload_list(&snapshot, &request(abnormal_page, 2, 1), &zone),
    );
}

#[test]
fn container_replies_carry_the_2_0_fields() {
    let snapshot = cluster_snapshot();
    let zone = zone();
    assert_golden(
        "containers",
        &container_list(&snapshot, &ContainerFilters::default(), &zone),
    );
    let detail = ContainerRequest {
        name: "main".into(),
        pod_uid: "uid-crash".into(),
        device_id: String::new(),
    };
    assert_golden(
        "container-detail-crash",
        &container_detail(&snapshot, &detail, &zone),
    );
}

#[test]
fn the_merged_list_has_one_row_per_gpu_container_in_status_order() {
    let snapshot = cluster_snapshot();
    let all = workload_list(
        &snapshot,
        &request(WorkloadFilters::default(), 1, 100),
        &zone(),
    );
    assert_eq!(
        names(&all),
        [
            "crash/main/error",
            "native/main/error",
            "serve/server/not_ready",
            "queued/main/pending",
            "held/main/pending",
            "reserved/main/pending",
            "fresh/worker/pending",
            "prep/main/waiting",
            "prep/proxy/waiting",
            "prep/loader/success",
            "train/main/success",
        ]
    );
    assert_eq!(all.total, 11);
    let counts: BTreeMap<String, i32> = [
        ("abnormal", 3),
        ("all", 11),
        ("pending", 4),
        ("success", 2),
        ("waiting", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(all.status_counts, counts);
    let kinds: Vec<_> = all
        .items
        .iter()
        .filter(|r| r.app_name == "prep")
        .map(|r| {
            (
                r.name.as_str(),
                r.container_kind.as_str(),
                r.request.is_some(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("main", "regular", false),
            ("proxy", "sidecar", true),
            ("loader", "init", true)
        ],
        "the completed init container holds no GPU and is not listed"
    );
    let reserved = all
        .items
        .iter()
        .find(|r| r.app_name == "reserved")
        .expect("reserved row");
    assert!(reserved.pending && reserved.device_ids.is_empty());
    assert_eq!(reserved.allocated_cores_known, None);
    let native = all
        .items
        .iter()
        .find(|r| r.app_name == "native")
        .expect("native row");
    assert_eq!(
        native.node_uid, "uid-gpu-a",
        "request rows get their node UID"
    );
}

#[test]
fn filters_scope_the_counts_and_status_selects_the_rows() {
    let snapshot = cluster_snapshot();
    let zone = zone();
    let total = |filters: WorkloadFilters| workload_list(&snapshot, &request(filters, 1, 1), &zone);
    let cases: Vec<(WorkloadFilters, i32)> = vec![
        (
            WorkloadFilters {
                namespace: "prod".into(),
                ..Default::default()
            },
            1,
        ),
        (
            WorkloadFilters {
                name: " prep ".into(),
                ..Default::default()
            },
            3,
        ),
        (
            WorkloadFilters {
                name: "worker".into(),
                ..Default::default()
            },
            1,
        ),
        (
            WorkloadFilters {
                node_name: "gpu-a".into(),
                ..Default::default()
            },
            7,
        ),
        (
            WorkloadFilters {
                node_uid: "uid-gpu-a".into(),
                ..Default::default()
            },
            7,
        ),
        (
            WorkloadFilters {
                device_id: "GPU-gpu-a-1".into(),
                ..Default::default()
            },
            2,
        ),
        (
            WorkloadFilters {
                priority: "1".into(),
                ..Default::default()
            },
            1,
        ),
        (
            WorkloadFilters {
                priority: "0".into(),
                ..Default::default()
            },
            3,
        ),
        (
            WorkloadFilters {
                status: "abnormal".into(),
                ..Default::default()
            },
            3,
        ),
        (
            WorkloadFilters {
                status: "all".into(),
                ..Default::default()
            },
            11,
        ),
    ];
    for (filters, want) in cases {
        let label = format!("{filters:?}");
        let reply = total(filters);
        assert_eq!(reply.total, want, "{label}");
        assert!(reply.items.len() <= 1, "{label}: page size 1");
    }
    let node = total(WorkloadFilters {
        node_name: "gpu-a".into(),
        status: "success".into(),
        ..Default::default()
    });
    assert_eq!(node.total, 2);
    assert_eq!(node.status_counts.get("all"), Some(&7));
    assert_eq!(
        node.status_counts.get("pending"),
        None,
        "unbound requests are outside a node scope, and empty counts have no key"
    );
}

#[test]
fn custom_resource_names_replace_hami_defaults() {
    let (nodes, mut pods) = cluster();
    pods.push(pod(json!({
        "metadata": {"name": "custom", "namespace": "dev", "uid": "uid-custom",
                     "creationTimestamp": "2026-03-01T00:00:00Z"},
        "spec": {"containers": [{"name": "main", "resources": {"limits": {"example.com/accel": "2"}}}]},
        "status": {"phase": "Pending"}
    })));
    let config = config();
    let entries: Vec<_> = nodes
        .iter()
        .map(|n| node_entry(n, &config.node_selectors, &DeviceContext::default()).0)
        .collect();
    let inventory = Arc::new(build_inventory(
        entries.iter(),
        &IdentityMap::new(),
        Default::default(),
    ));
    let resources = SchedulingResources::new(&["example.com/accel".to_string()]);
    let tracked: Vec<_> = pods
        .iter()
        .filter_map(|p| track_pod(p, fixed_now(), &resources, &DeviceContext::default()).0)
        .collect();
    let snapshot = {
        let (pods, views) = tracked_pod::split(tracked.iter());
        ClusterSnapshot::build(1, inventory, pods, views)
    };
    let pending = workload_list(
        &snapshot,
        &request(
            WorkloadFilters {
                status: "pending".into(),
                ..Default::default()
            },
            1,
            100,
        ),
        &zone(),
    );
    assert_eq!(names(&pending), ["custom/main/pending"]);
    let resource = &pending.items[0]
        .request
        .as_ref()
        .expect("request")
        .resources[0];
    assert_eq!(
        (resource.kind.as_str(), resource.value.as_str()),
        ("raw", "2")
    );
}

#[test]
fn page_bounds_follow_upstream() {
    let snapshot = cluster_snapshot();
    let zone = zone();
    let reply = workload_list(&snapshot, &request(WorkloadFilters::default(), 0, 0), &zone);
    assert_eq!(reply.items.len(), 10, "default page size");
    let reply = workload_list(&snapshot, &request(WorkloadFilters::default(), 2, 0), &zone);
    assert_eq!(reply.items.len(), 1);
    let reply = workload_list(
        &snapshot,
        &request(WorkloadFilters::default(), i32::MAX, i32::MAX),
        &zone,
    );
    assert!(reply.items.is_empty());
    assert_eq!(reply.total, 11);
}

// ---------------------------------------------------------------------------------------
// 5,000 workloads
// ---------------------------------------------------------------------------------------

/// 40 nodes × 4 GPUs; 5,000 GPU pods in a mix of states, a tenth of them pending.
fn large_cluster() -> (Vec<Node>, Vec<Pod>) {
    let nodes: Vec<Node> = (0..40)
        .map(|n| fixtures::nvidia_node(&format!("node-{n:02}"), 4))
        .collect();
    let pods = (0..5000)
        .map(|i| {
            let node = format!("node-{:02}", i % 40);
            let name = format!("job-{:04}", (i * 7919) % 5000);
            let namespace = format!("team-{}", i % 7);
            if i % 10 == 0 {
                return pod(json!({
                    "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{i}"),
                                 // Many equal creation times: the tie-breaks must order them.
                                 "creationTimestamp": format!("2026-03-01T00:{:02}:00Z", i % 13)},
                    "spec": {"containers": [{"name": "main", "resources": gpu_limits("1")}]},
                    "status": {"phase": "Pending"}
                }));
            }
            let gpu = format!("GPU-{node}-{}", i % 4);
            let state = match i % 4 {
                0 => json!({"running": {}}),
                1 => json!({"waiting": {"reason": "ContainerCreating"}}),
                2 => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                _ => json!({"running": {}}),
            };
            pod(json!({
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{i}"),
                             "creationTimestamp": SCHEDULED,
                             "annotations": {"hami.io/vgpu-node": node,
                                             "hami.io/vgpu-devices-allocated": allocation(&gpu, 1000, 10)}},
                "spec": {"nodeName": node, "containers": [{"name": "main", "resources": gpu_limits("1")}]},
                "status": {"phase": "Running", "conditions": [scheduled_condition()],
                           "containerStatuses": [{"name": "main", "ready": i % 4 == 0, "restartCount": 0,
                               "image": "", "imageID": "", "state": state}]}
            }))
        })
        .collect();
    (nodes, pods)
}

#[test]
fn walking_every_page_of_5000_workloads_returns_each_exactly_once() {
    let (nodes, pods) = large_cluster();
    let snapshot = snapshot_of(&nodes, &pods);
    let zone = zone();
    // The direct count, from the same snapshot.
    let everything = workload_list(
        &snapshot,
        &request(WorkloadFilters::default(), 1, i32::MAX),
        &zone,
    );
    assert_eq!(everything.items.len(), 100, "page size is capped at 100");
    for (filter, page_size) in [
        ("", 100),
        ("abnormal", 97),
        ("pending", 23),
        ("success", 100),
    ] {
        let filters = WorkloadFilters {
            status: filter.into(),
            ..Default::default()
        };
        let mut seen = HashSet::new();
        let mut rows = Vec::new();
        let mut page = 1;
        let first = workload_list(&snapshot, &request(filters.clone(), 1, page_size), &zone);
        loop {
            let reply = workload_list(&snapshot, &request(filters.clone(), page, page_size), &zone);
            assert_eq!(reply.total, first.total, "total is stable across pages");
            assert_eq!(reply.status_counts, first.status_counts);
            if reply.items.is_empty() {
                break;
            }
            for row in reply.items {
                assert!(
                    seen.insert((row.pod_uid.clone(), row.name.clone())),
                    "{} listed twice",
                    row.pod_uid
                );
                rows.push(row);
            }
            page += 1;
        }
        let direct = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Succeeded"))
            .count();
        assert_eq!(direct, 5000);
        let expected = first
            .status_counts
            .get(if filter.is_empty() { "all" } else { filter });
        assert_eq!(Some(&first.total), expected, "{filter}: total = its count");
        assert_eq!(rows.len(), first.total as usize, "{filter}: every row once");
        let abnormal = ["error", "failed", "not_ready", "unknown"];
        assert!(rows.iter().all(|r| match filter {
            "" | "all" => true,
            "abnormal" => abnormal.contains(&r.status.as_str()),
            exact => r.status == exact,
        }));
    }
    // The counts against a direct count over the pods.
    let counts = &everything.status_counts;
    assert_eq!(counts.get("all"), Some(&5000));
    assert_eq!(counts.get("pending"), Some(&500));
    let by_state = |rem: usize| (0..5000).filter(|i| i % 10 != 0 && i % 4 == rem).count() as i32;
    // Running and ready; creating; crash-looping; running but not ready.
    assert_eq!(counts.get("success"), Some(&by_state(0)));
    assert_eq!(counts.get("waiting"), Some(&by_state(1)));
    assert_eq!(counts.get("abnormal"), Some(&(by_state(2) + by_state(3))));
}

// ---------------------------------------------------------------------------------------
// The route
// ---------------------------------------------------------------------------------------

async fn serving(export: ClusterExport, config: &Config, expected: usize) -> AppState {
    let state = app::start(config.clone(), ClusterSource::Snapshot(export)).await;
    app::until_snapshot(
        &state,
        Duration::from_secs(10),
        "the cluster snapshot",
        |s| s.scheduling.len() == expected && !s.inventory.nodes.is_empty(),
    )
    .await;
    state
}

#[actix_rt::test]
async fn the_route_serves_the_snapshot_paged() {
    let (nodes, pods) = cluster();
    let expected = cluster_snapshot().scheduling.len();
    let export = ClusterExport {
        nodes,
        pods,
        ..ClusterExport::default()
    };
    let config = config();
    let state = serving(export, &config, expected).await;
    let app = atest::init_service(http::app(state)).await;
    let body = json!({"filters": {"status": "pending", "nodeName": ""}, "page": 1, "pageSize": 3});
    let response = atest::call_service(
        &app,
        atest::TestRequest::post()
            .uri("/v1/workloads")
            .set_json(body)
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let reply: Value = atest::read_body_json(response).await;
    assert_eq!(reply["total"], 4);
    assert_eq!(reply["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(reply["statusCounts"]["all"], 11);
    let first = &reply["items"][0];
    assert_eq!(first["appName"], "queued");
    assert_eq!(first["pending"], true);
    assert_eq!(
        first["scheduling"]["reasonCodes"],
        json!(["CardInsufficientMemory", "InsufficientCPU"])
    );
    assert_eq!(first["statusDetail"], Value::Null);
    assert!(
        first.get("allocatedCoresKnown").is_none(),
        "unset optional is left out"
    );
    let wrong = atest::call_service(
        &app,
        atest::TestRequest::get().uri("/v1/workloads").to_request(),
    )
    .await;
    assert_eq!(wrong.status().as_u16(), 405);
}
