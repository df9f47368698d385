//! Kubernetes objects for tests, in the real formats HAMi writes: nodes with device
//! registration annotations and pods with allocation annotations.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

/// A Ready node with the given labels and annotations.
pub fn node(name: &str, labels: Value, annotations: Value) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels,
                     "annotations": annotations, "creationTimestamp": "2025-03-01T02:20:30Z"},
        "spec": {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"osImage": "Ubuntu 22.04", "kernelVersion": "5.15", "containerRuntimeVersion": "containerd://1.7",
                          "kubeletVersion": "v1.30.0", "kubeProxyVersion": "v1.30.0", "operatingSystem": "linux",
                          "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": ""}
        }
    }))
    .expect("valid node")
}

/// An NVIDIA node (`gpu=on`) with `gpus` devices in HAMi's JSON register format.
pub fn nvidia_node(name: &str, gpus: usize) -> Node {
    let devices: Vec<Value> = (0..gpus)
        .map(|i| json!({"id": format!("GPU-{name}-{i}"), "index": i, "count": 10, "devmem": 81920,
                        "devcore": 100, "type": "NVIDIA A100-SXM4-80GB", "mode": "hami-core", "health": true}))
        .collect();
    node(
        name,
        json!({"gpu": "on"}),
        json!({"hami.io/node-nvidia-register": Value::Array(devices).to_string()}),
    )
}

/// A running pod placed by HAMi with one container and the given NVIDIA allocations
/// (`(gpu uuid, memory MiB, cores)`).
pub fn nvidia_pod(
    namespace: &str,
    name: &str,
    node: &str,
    allocations: &[(&str, u32, u32)],
) -> Pod {
    let segment: String = allocations
        .iter()
        .map(|(uuid, mem, cores)| format!("{uuid},NVIDIA,{mem},{cores}:"))
        .collect();
    pod(
        namespace,
        name,
        node,
        json!({"hami.io/vgpu-node": node, "hami.io/vgpu-devices-allocated": format!("{segment};")}),
        "Running",
    )
}

/// A pod with one container `main` and the given annotations and phase.
pub fn pod(namespace: &str, name: &str, node: &str, annotations: Value, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                     "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "cuda:12"}]},
        "status": {"phase": phase,
                   "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-03-01T02:20:30Z"}],
                   "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": "cuda:12", "imageID": ""}]}
    }))
    .expect("valid pod")
}
