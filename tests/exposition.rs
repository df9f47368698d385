//! The `/metrics` device and container families per vendor, as whole text: a node and a pod
//! in HAMi's real annotation formats and the answers the vendor's exporters give to the
//! cycle's queries go in; the exact exposition (`# HELP`, `# TYPE`, every series in order)
//! comes out and is compared with `tests/golden/exposition/<vendor>.prom`. One table row per
//! vendor, as kube-state-metrics tests its stores; `UPDATE_GOLDEN=1` rewrites the files, which
//! must then be read before they are committed.

mod support;

use std::sync::Arc;

use hami_webui_server::cluster::inventory::{build_inventory, node_entry, IdentityMap};
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::device::{DeviceContext, Vendor};
use hami_webui_server::metrics::{build_cycle, CycleQuery, CycleState, QueryResults, VectorAnswer};
use hami_webui_server::query_client::Sample;
use serde_json::{json, Value};
use support::app;
use support::golden::assert_text;

/// One vendor's input: the node, one pod on it, and the exporters' answers.
struct Case {
    node: Value,
    pod: Value,
    answers: Vec<(CycleQuery, Vec<Sample>)>,
}

fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        metric: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timestamp: 0.0,
        value,
    }
}

/// A device quantity as `avg by (__name__, <identity>)` answers it.
fn quantity(name: &str, identity: (&str, &str), value: f64) -> Sample {
    sample(&[("__name__", name), identity], value)
}

fn node(name: &str, labels: Value, annotations: Value) -> Value {
    json!({"metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels,
                        "annotations": annotations}})
}

fn pod(node: &str, annotations: Value, containers: &[&str]) -> Value {
    let mut annotations = annotations;
    annotations["hami.io/vgpu-node"] = json!(node);
    let containers: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
    json!({"metadata": {"name": "train-0", "namespace": "research", "uid": "pod-uid-1",
                        "annotations": annotations},
           "spec": {"nodeName": node, "containers": containers},
           "status": {"phase": "Running"}})
}

/// The exposition one cycle publishes for `case`, with no previous state.
fn exposition(case: Case) -> String {
    let config = app::config("");
    let context = DeviceContext::default();
    let node = serde_json::from_value(case.node).expect("node");
    let entry = node_entry(&node, &config.node_selectors, &context).0;
    let inventory = Arc::new(build_inventory(
        [&entry].into_iter(),
        &IdentityMap::new(),
        Default::default(),
    ));
    let pod = serde_json::from_value(case.pod).expect("pod");
    let epoch = jiff::Timestamp::UNIX_EPOCH;
    let pods: Vec<_> = pod_record(&pod, epoch, &context)
        .0
        .map(Arc::new)
        .into_iter()
        .collect();
    assert_eq!(pods.len(), 1, "the pod is tracked");
    let snapshot = ClusterSnapshot::build(1, inventory, pods, Vec::new());
    let results: QueryResults = case
        .answers
        .into_iter()
        .map(|(query, samples)| (query, Ok(VectorAnswer::from(samples))))
        .collect();
    build_cycle(&snapshot, &results, &CycleState::default(), 3).render()
}

fn nvidia() -> Case {
    let uuid = ("UUID", "GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c");
    let workload = [
        ("device_uuid", uuid.1),
        ("namespace", "research"),
        ("pod", "train-0"),
        ("container", "trainer"),
    ];
    Case {
        node: node(
            "gpu-node-1",
            json!({"gpu": "on"}),
            json!({"hami.io/node-nvidia-register":
                "[{\"id\":\"GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c\",\"index\":0,\"count\":10,\"devmem\":81920,\"devcore\":100,\"type\":\"NVIDIA A100-SXM4-80GB\",\"mode\":\"hami-core\",\"health\":true}]"}),
        ),
        pod: pod(
            "gpu-node-1",
            json!({"hami.io/vgpu-devices-allocated":
                "GPU-8f2c1a3e-5b7d-4e9f-a1c2-3d4e5f6a7b8c,NVIDIA,20480,30:;"}),
            &["trainer"],
        ),
        answers: vec![
            (
                CycleQuery::Device(Vendor::Nvidia),
                vec![
                    quantity("DCGM_FI_DEV_FB_USED", uuid, 10240.0),
                    quantity("DCGM_FI_DEV_FB_FREE", uuid, 71680.0),
                    quantity("DCGM_FI_DEV_GPU_UTIL", uuid, 57.0),
                    quantity("DCGM_FI_DEV_GPU_TEMP", uuid, 61.0),
                    quantity("DCGM_FI_DEV_MEMORY_TEMP", uuid, 55.0),
                    quantity("DCGM_FI_DEV_POWER_USAGE", uuid, 287.4),
                    quantity("DCGM_FI_DEV_FAN_SPEED", uuid, 0.0),
                    quantity("DCGM_FI_DEV_XID_ERRORS", uuid, 0.0),
                ],
            ),
            (
                CycleQuery::Info(Vendor::Nvidia),
                vec![sample(
                    &[
                        uuid,
                        ("DCGM_FI_DRIVER_VERSION", "535.154.05"),
                        ("device", "nvidia0"),
                    ],
                    1.0,
                )],
            ),
            (
                CycleQuery::TaskCore(Vendor::Nvidia),
                vec![sample(&workload, 40.0)],
            ),
            (
                CycleQuery::TaskMemory(Vendor::Nvidia),
                vec![sample(&workload, 8.0 * 1024.0 * 1024.0 * 1024.0)],
            ),
        ],
    }
}

fn dcu() -> Case {
    let id = ("device_id", "0000:3b:00.0");
    Case {
        node: node(
            "dcu-node-1",
            json!({"dcu": "on"}),
            json!({"hami.io/node-dcu-register": "DCU-0,4,65520,100,K100,0,true,0,hami-core:"}),
        ),
        pod: pod(
            "dcu-node-1",
            json!({"hami.io/dcu-devices-allocated": "DCU-0,DCU,16000,25:;"}),
            &["worker"],
        ),
        answers: vec![
            (
                CycleQuery::Identity(Vendor::Dcu),
                vec![sample(
                    &[("node", "dcu-node-1"), ("minor_number", "0"), id],
                    1.0,
                )],
            ),
            (
                CycleQuery::Device(Vendor::Dcu),
                vec![
                    quantity("dcu_usedmemory_bytes", id, 4096.0 * 1048576.0),
                    quantity("dcu_memorycap_bytes", id, 65520.0 * 1048576.0),
                    quantity("dcu_utilizationrate", id, 33.0),
                    quantity("dcu_temp", id, 48.0),
                    quantity("dcu_power_usage", id, 150.0),
                ],
            ),
            (
                CycleQuery::Info(Vendor::Dcu),
                vec![sample(&[id, ("minor_number", "0")], 1.0)],
            ),
            (
                CycleQuery::TaskCore(Vendor::Dcu),
                vec![sample(
                    &[("pod_uuid", "pod-uid-1"), ("container_name", "worker")],
                    12.0,
                )],
            ),
            (
                CycleQuery::TaskMemory(Vendor::Dcu),
                vec![sample(
                    &[("pod_uuid", "pod-uid-1"), ("container_name", "worker")],
                    2048.0 * 1048576.0,
                )],
            ),
        ],
    }
}

fn ascend() -> Case {
    let vdie = ("vdie_id", "4AC6E3BA-20B0F113");
    Case {
        node: node(
            "npu-node-1",
            json!({"ascend": "on"}),
            json!({"hami.io/node-register-Ascend910B":
                "[{\"id\":\"Ascend910B-0\",\"count\":4,\"devmem\":65536,\"devcore\":20,\"type\":\"Ascend910B\",\"health\":true}]"}),
        ),
        pod: pod(
            "npu-node-1",
            json!({"hami.io/Ascend910B-devices-allocated": "Ascend910B-0,Ascend910B,16384,0:;"}),
            &["infer"],
        ),
        answers: vec![
            (
                CycleQuery::Identity(Vendor::Ascend),
                vec![sample(&[("node", "npu-node-1"), ("id", "0"), vdie], 1.0)],
            ),
            (
                CycleQuery::Device(Vendor::Ascend),
                vec![
                    quantity("npu_chip_info_hbm_used_memory", vdie, 8192.0),
                    quantity("npu_chip_info_hbm_total_memory", vdie, 65536.0),
                    quantity("npu_chip_info_utilization", vdie, 20.0),
                    quantity("npu_chip_info_temperature", vdie, 44.0),
                    quantity("npu_chip_info_power", vdie, 92.5),
                ],
            ),
            (
                CycleQuery::Info(Vendor::Ascend),
                vec![sample(&[vdie, ("id", "0")], 1.0)],
            ),
        ],
    }
}

fn hcu() -> Case {
    let id = ("device_id", "serial-01");
    let workload = [
        id,
        ("hcu_pod_namespace", "research"),
        ("hcu_pod_name", "train-0"),
        ("container", "worker"),
    ];
    Case {
        node: node(
            "hcu-node-1",
            json!({"hcu": "on"}),
            json!({"hami.io/node-hcu-register": "HCU-serial-01,4,65520,100,BW200,0,true,0,hami-core:"}),
        ),
        pod: pod(
            "hcu-node-1",
            json!({"hami.io/hcu-devices-allocated": "HCU-serial-01,HCU,32000,50:;"}),
            &["worker"],
        ),
        answers: vec![
            (
                CycleQuery::Device(Vendor::Hcu),
                vec![
                    quantity("hcu_usedmemory_bytes", id, 2048.0 * 1048576.0),
                    quantity("hcu_memorycap_bytes", id, 65520.0 * 1048576.0),
                    quantity("hcu_utilizationrate", id, 99.0),
                    quantity("hcu_temp", id, 52.0),
                    quantity("hcu_temp_mem", id, 50.0),
                    quantity("hcu_power_usage", id, 210.0),
                ],
            ),
            (
                CycleQuery::Info(Vendor::Hcu),
                vec![sample(&[id, ("minor_number", "3")], 1.0)],
            ),
            (
                CycleQuery::TaskCore(Vendor::Hcu),
                vec![sample(&workload, 40.0)],
            ),
            (CycleQuery::TaskMemory(Vendor::Hcu), vec![]),
        ],
    }
}

fn metax_sgpu() -> Case {
    let uuid = ("uuid", "GPU-2f6a8c10-1d3e-4b5a-8f7c-9e0d1c2b3a4f");
    Case {
        node: node(
            "mx-node-1",
            json!({"metax-tech.com/gpu.installed": "true"}),
            json!({"metax-tech.com/node-gpu-devices":
                "[{\"uuid\":\"GPU-2f6a8c10-1d3e-4b5a-8f7c-9e0d1c2b3a4f\",\"index\":0,\"model\":\"MXC500\",\"totalDevCount\":16,\"totalCompute\":100,\"totalVRam\":65536,\"numa\":0,\"healthy\":true}]"}),
        ),
        pod: pod(
            "mx-node-1",
            json!({"hami.io/metax-sgpu-devices-allocated":
                "GPU-2f6a8c10-1d3e-4b5a-8f7c-9e0d1c2b3a4f,Metax-SGPU,8192,25:;"}),
            &["app"],
        ),
        answers: vec![
            (
                CycleQuery::Identity(Vendor::Metax),
                vec![sample(
                    &[
                        ("Hostname", "mx-node-1"),
                        ("deviceId", "0"),
                        uuid,
                        ("driver_version", "2.30.0"),
                        ("modelName", "MXC500"),
                    ],
                    1.0,
                )],
            ),
            (
                CycleQuery::Device(Vendor::Metax),
                vec![
                    quantity("mx_memory_used", uuid, 4096.0 * 1024.0),
                    quantity("mx_memory_total", uuid, 65536.0 * 1024.0),
                    quantity("mx_gpu_usage", uuid, 18.0),
                    quantity("mx_chip_hotspot_temp", uuid, 47.0),
                    quantity("mx_board_power", uuid, 120.0),
                ],
            ),
            (
                CycleQuery::Info(Vendor::Metax),
                vec![sample(
                    &[uuid, ("driver_version", "2.30.0"), ("deviceId", "0")],
                    1.0,
                )],
            ),
        ],
    }
}

/// Vendors without a known usage exporter: registration and allocation families only.
fn iluvatar() -> Case {
    Case {
        node: node(
            "ix-node-1",
            json!({}),
            json!({"hami.io/node-MR-V100-register":
                "GPU-bad51c5a-ed4c-591d-91bf-c04a12e19eae,10,8192,100,MR-V100,0,true,0,hami-core:"}),
        ),
        pod: pod(
            "ix-node-1",
            json!({"hami.io/MR-V100-devices-allocated":
                "GPU-bad51c5a-ed4c-591d-91bf-c04a12e19eae,MR-V100,4096,50:;"}),
            &["main"],
        ),
        answers: vec![],
    }
}

fn amd() -> Case {
    Case {
        node: node(
            "amd-node-1",
            json!({"amd.com/gpu.family": "MI300"}),
            json!({"hami.io/node-amd-register":
                "[{\"id\":\"GPU-0\",\"count\":1,\"devmem\":196608,\"devcore\":100,\"type\":\"AMD-MI300X\",\"health\":true}]"}),
        ),
        pod: pod(
            "amd-node-1",
            json!({"hami.io/amd-devices-allocated": "GPU-0,AMD,196608,100:;"}),
            &["main"],
        ),
        answers: vec![],
    }
}

#[test]
fn nvidia_families_as_text() {
    assert_text("exposition/nvidia.prom", &exposition(nvidia()));
}

#[test]
fn dcu_families_as_text() {
    assert_text("exposition/dcu.prom", &exposition(dcu()));
}

#[test]
fn ascend_families_as_text() {
    assert_text("exposition/ascend.prom", &exposition(ascend()));
}

#[test]
fn hcu_families_as_text() {
    assert_text("exposition/hcu.prom", &exposition(hcu()));
}

#[test]
fn metax_sgpu_families_as_text() {
    assert_text("exposition/metax-sgpu.prom", &exposition(metax_sgpu()));
}

#[test]
fn iluvatar_families_as_text() {
    assert_text("exposition/iluvatar.prom", &exposition(iluvatar()));
}

#[test]
fn amd_families_as_text() {
    assert_text("exposition/amd.prom", &exposition(amd()));
}
