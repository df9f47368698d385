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

/// HAMi-DRA's NVIDIA driver.
pub const DRA_DRIVER: &str = "hami-core-gpu.project-hami.io";

/// A HAMi-DRA ResourceSlice for `node` (pool = node) with `(device name, uuid, product,
/// memory quantity)` devices, shaped as HAMi's kubelet plugin publishes them.
pub fn dra_slice(
    node: &str,
    devices: &[(&str, &str, &str, &str)],
) -> k8s_openapi::api::resource::v1::ResourceSlice {
    let devices: Vec<Value> = devices
        .iter()
        .enumerate()
        .map(|(minor, (name, uuid, product, memory))| {
            json!({
                "name": name,
                "allowMultipleAllocations": true,
                "attributes": {
                    "type": {"string": "hami-gpu"}, "uuid": {"string": uuid}, "minor": {"int": minor},
                    "productName": {"string": product}, "brand": {"string": "Nvidia"},
                    "architecture": {"string": "Ampere"}, "driverVersion": {"version": "575.57.8"},
                    "cudaDriverVersion": {"version": "12.9.0"},
                    "pcieBusID": {"string": format!("0000:{:02x}:00.0", 0x61 + minor)}
                },
                "capacity": {
                    "cores": {"value": "100", "requestPolicy": {"default": "100", "validRange": {"min": "0", "max": "100", "step": "1"}}},
                    "memory": {"value": memory, "requestPolicy": {"default": memory, "validRange": {"min": "1Mi", "max": memory, "step": "1Mi"}}}
                }
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": format!("{node}-{DRA_DRIVER}-x7k2p"),
                     "generateName": format!("{node}-{DRA_DRIVER}-"),
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": format!("uid-{node}"), "controller": true}]},
        "spec": {"driver": DRA_DRIVER, "nodeName": node,
                 "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                 "devices": devices}
    }))
    .expect("valid ResourceSlice")
}

/// A ResourceClaim of `namespace/name`: allocated on `node` with `(device name, cores,
/// memory quantity)` shares when `shares` is not empty (else pending), reserved for
/// `(pod name, pod uid)`.
pub fn dra_claim(
    namespace: &str,
    name: &str,
    node: &str,
    shares: &[(&str, &str, &str)],
    reserved_for: &[(&str, &str)],
) -> k8s_openapi::api::resource::v1::ResourceClaim {
    let results: Vec<Value> = shares
        .iter()
        .enumerate()
        .map(|(i, (device, cores, memory))| {
            json!({"request": "gpu", "driver": DRA_DRIVER, "pool": node, "device": device,
                   "shareID": format!("0f5c2e9a-1111-4b44-9c1d-3f7e2a6b8c{i:02}"),
                   "consumedCapacity": {"cores": cores, "memory": memory}})
        })
        .collect();
    let status = if results.is_empty() {
        json!({})
    } else {
        json!({
            "allocation": {
                "devices": {"results": results},
                "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}
            },
            "reservedFor": reserved_for.iter().map(|(pod, uid)| json!({"resource": "pods", "name": pod, "uid": uid})).collect::<Vec<_>>()
        })
    };
    serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "finalizers": ["resource.kubernetes.io/delete-protection"]},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
            "deviceClassName": DRA_DRIVER, "allocationMode": "ExactCount", "count": 1,
            "capacity": {"requests": {"cores": shares.first().map_or("100", |s| s.1), "memory": shares.first().map_or("1Gi", |s| s.2)}},
            "selectors": [{"cel": {"expression": format!("device.attributes[\"{DRA_DRIVER}\"].type == \"hami-gpu\"")}}]}}]}},
        "status": status
    }))
    .expect("valid ResourceClaim")
}

/// A running pod of HAMi-DRA's webhook: container `main` uses the claims named, through
/// `spec.resourceClaims` entries of the same names; label `hami.io/dra: "true"`.
pub fn dra_pod(namespace: &str, name: &str, node: &str, claims: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                     "labels": {"hami.io/dra": "true", "app": name}},
        "spec": {"nodeName": node,
                 "resourceClaims": claims.iter().map(|c| json!({"name": c, "resourceClaimName": c})).collect::<Vec<_>>(),
                 "containers": [{"name": "main", "image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
                                 "resources": {"claims": claims.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()}}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-30T08:00:00Z"}],
                   "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": "cuda", "imageID": "", "started": true,
                                          "state": {"running": {"startedAt": "2026-11-30T08:00:05Z"}}}]}
    }))
    .expect("valid DRA pod")
}

/// An NVIDIA registration with a hami-core GPU (`GPU-C`), a MIG GPU with two profiles
/// (`GPU-M`) and, when `broken_profiles`, a MIG GPU whose profiles do not decode (`GPU-X`).
pub fn mig_registration(broken_profiles: bool) -> String {
    let mut gpus = vec![
        json!({"id":"GPU-C","index":0,"count":10,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"hami-core","health":true}),
        json!({"id":"GPU-M","index":1,"count":7,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"mig","health":true,
               "migProfiles":[{"name":"1g.5gb","memoryMB":4864,"core":14,"sliceCount":1,"placements":[{"start":0,"size":1},{"start":1,"size":1}]},
                              {"name":"3g.20gb","memoryMB":19968,"core":42,"sliceCount":3,"placements":[{"start":0,"size":4},{"start":4,"size":4}]}]}),
    ];
    if broken_profiles {
        gpus.push(json!({"id":"GPU-X","index":2,"count":7,"devmem":40960,"devcore":100,"type":"NVIDIA A100-SXM4-40GB","mode":"mig","health":true,"migProfiles":{}}));
    }
    Value::Array(gpus).to_string()
}

/// `hami.io/vgpu-mig-allocations` with one complete reservation for container 0, device 0.
pub fn mig_reservation(gpu: &str, profile: &str, start: u32, size: u32) -> String {
    json!([{"containerIndex": 0, "deviceIndex": 0, "gpuUUID": gpu, "profile": profile,
            "placement": {"start": start, "size": size},
            "migUUID": "MIG-7f3a", "gpuInstanceID": 1, "computeInstanceID": 0}])
    .to_string()
}
