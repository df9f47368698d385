//! A GPU cluster as a real API server returns it, for the load driver: nodes and pods with
//! the fields `kubectl get -o json` prints (full spec with resources, tolerations, volumes;
//! full status with conditions and container statuses; owner references, hashed labels,
//! `managedFields` on a third of the pods), names that do not repeat, several namespaces and
//! GPU models, one or two containers per pod and a share of multi-GPU containers; and the
//! dcgm-exporter and HAMi vGPU-monitor series of the same cluster, with their real label sets.
//!
//! Everything is a deterministic function of the size, so two runs see the same cluster. The
//! generator never reads what the server makes of it: the driver compares.

use std::fmt::Write as _;

use serde_json::{json, Value};

/// GPUs per node, as on the common 8-GPU servers.
pub const GPUS_PER_NODE: usize = 8;
/// Allocations per GPU on average (HAMi shares each GPU among `count` = 10 slots).
pub const ALLOCATIONS_PER_GPU: usize = 4;

/// Node pools: model name as HAMi registers it and the exporter reports it, memory (MiB).
const MODELS: [(&str, u32, &str); 4] = [
    ("NVIDIA A100-SXM4-80GB", 81_920, "a100"),
    ("NVIDIA H100 80GB HBM3", 81_559, "h100"),
    ("NVIDIA L40S", 46_068, "l40s"),
    ("NVIDIA A10", 23_028, "a10"),
];

const NAMESPACES: [&str; 24] = [
    "ml-platform",
    "team-search",
    "team-ads-ranking",
    "team-speech",
    "team-vision",
    "team-nlp",
    "research-llm",
    "research-rl",
    "kubeflow-user-alice",
    "kubeflow-user-bob",
    "kubeflow-user-chen",
    "kubeflow-user-dmitri",
    "inference-prod",
    "inference-staging",
    "batch-training",
    "data-labeling",
    "recsys",
    "fraud-detection",
    "autonomy-sim",
    "genai-playground",
    "customer-support-bots",
    "observability",
    "ci-gpu-runners",
    "default",
];

const WORKLOAD_HEADS: [&str; 20] = [
    "llm",
    "bert",
    "resnet",
    "whisper",
    "sdxl",
    "vllm",
    "triton",
    "trainer",
    "finetune",
    "embed",
    "rerank",
    "ocr",
    "asr",
    "tts",
    "ctr",
    "detect",
    "segment",
    "ray",
    "jupyter",
    "retrieval",
];
const WORKLOAD_TAILS: [&str; 10] = [
    "serving",
    "worker",
    "shard",
    "inference",
    "notebook",
    "eval",
    "batch",
    "api",
    "gateway",
    "head",
];
const IMAGES: [&str; 8] = [
    "nvcr.io/nvidia/pytorch:24.05-py3",
    "vllm/vllm-openai:v0.6.3",
    "nvcr.io/nvidia/tritonserver:24.08-py3",
    "registry.internal.example.com/ml/trainer",
    "huggingface/text-generation-inference:2.3.1",
    "rayproject/ray-ml:2.35.0-gpu",
    "quay.io/jupyter/pytorch-notebook:cuda12-2024-09-16",
    "registry.internal.example.com/ml/embedder",
];
/// Kubernetes' safe alphabet for generated name suffixes.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// splitmix64: small, fast, good enough to make names and values look drawn.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn suffix(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(SAFE[self.below(SAFE.len())]))
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(4),
            self.hex(12)
        )
    }

    fn time(&mut self, base_day: u32) -> String {
        format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            10 + base_day / 28 % 2,
            1 + base_day % 28,
            self.below(24),
            self.below(60),
            self.below(60)
        )
    }
}

/// One GPU of the cluster.
#[derive(Debug, Clone)]
pub struct Gpu {
    pub uuid: String,
    pub node: usize,
    pub index: usize,
    pub model: usize,
}

/// One allocation: a container's share of one GPU.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub gpu: usize,
    pub memory_mib: u32,
    pub cores: u32,
}

/// The generated cluster: objects as JSON, and what the exporters say about it.
pub struct RealisticCluster {
    pub nodes: Vec<Value>,
    pub pods: Vec<Value>,
    pub gpus: Vec<Gpu>,
    pub containers: usize,
    pub allocations: usize,
    /// Each pod's GPU containers: (namespace, pod, container, allocations).
    workloads: Vec<(String, String, String, Vec<Allocation>)>,
    node_names: Vec<String>,
}

impl RealisticCluster {
    /// A cluster of `gpus` GPUs (rounded up to whole 8-GPU nodes).
    pub fn generate(gpus: usize) -> Self {
        let nodes = gpus.div_ceil(GPUS_PER_NODE).max(1);
        let mut draw = Draw(0x5eed_0000 ^ nodes as u64);
        let mut cluster = RealisticCluster {
            nodes: Vec::with_capacity(nodes),
            pods: Vec::new(),
            gpus: Vec::with_capacity(nodes * GPUS_PER_NODE),
            containers: 0,
            allocations: 0,
            workloads: Vec::new(),
            node_names: Vec::with_capacity(nodes),
        };
        for node in 0..nodes {
            let model = node * MODELS.len() / nodes;
            let name = format!(
                "gpu-{}-{}-{}",
                MODELS[model].2,
                ["use1a", "use1b", "use1c"][node % 3],
                draw.hex(6)
            );
            let first = cluster.gpus.len();
            for index in 0..GPUS_PER_NODE {
                cluster.gpus.push(Gpu {
                    uuid: format!("GPU-{}", draw.uuid()),
                    node,
                    index,
                    model,
                });
            }
            let node_object = node_object(&mut draw, node, &name, &cluster.gpus[first..]);
            cluster.nodes.push(node_object);
            cluster.node_names.push(name);
        }
        // Workloads of 1–8 replicas; each pod fills GPUs of one node, one slot at a time.
        let mut slots: Vec<usize> = vec![0; cluster.gpus.len()];
        let target = cluster.gpus.len() * ALLOCATIONS_PER_GPU;
        let mut cursor = 0usize;
        let mut workload = 0usize;
        while cluster.allocations < target {
            let namespace = NAMESPACES[draw.below(NAMESPACES.len())].to_string();
            let name = format!(
                "{}-{}-{}",
                draw.pick(&WORKLOAD_HEADS),
                draw.pick(&WORKLOAD_TAILS),
                workload
            );
            workload += 1;
            let kind = draw.below(10);
            let replicas = 1 + draw.below(8);
            let template_hash = draw.suffix(10);
            let image = draw.pick(&IMAGES);
            for replica in 0..replicas {
                if cluster.allocations >= target {
                    break;
                }
                let pod_name = match kind {
                    0..=5 => format!("{name}-{template_hash}-{}", draw.suffix(5)),
                    6..=7 => format!("{name}-{replica}"),
                    _ => format!("{name}-{}", draw.suffix(5)),
                };
                // GPUs per GPU container: mostly one, some two, four or eight.
                let wanted = match draw.below(100) {
                    0..=74 => 1,
                    75..=89 => 2,
                    90..=97 => 4,
                    _ => 8,
                };
                let node = (cursor / GPUS_PER_NODE) % nodes;
                let mut allocations = Vec::with_capacity(wanted);
                for k in 0..wanted {
                    let gpu = node * GPUS_PER_NODE + (cursor + k) % GPUS_PER_NODE;
                    slots[gpu] += 1;
                    let memory = MODELS[cluster.gpus[gpu].model].1;
                    allocations.push(Allocation {
                        gpu,
                        memory_mib: 1024 * (1 + draw.below((memory / 1024 / 4) as usize) as u32),
                        cores: [0, 10, 20, 25, 30, 50, 100][draw.below(7)],
                    });
                }
                cursor += wanted;
                let sidecar = draw.below(5) == 0;
                let pod = Pod {
                    namespace: &namespace,
                    name: &pod_name,
                    workload: &name,
                    kind,
                    template_hash: &template_hash,
                    image,
                    node: &cluster.node_names[node],
                    node_index: node,
                    allocations: &allocations,
                    sidecar,
                };
                let object = pod_object(&mut draw, &pod, &cluster.gpus);
                cluster.pods.push(object);
                cluster.containers += 1 + usize::from(sidecar);
                cluster.allocations += allocations.len();
                cluster.workloads.push((
                    namespace.clone(),
                    pod_name,
                    "main".to_string(),
                    allocations,
                ));
            }
        }
        cluster
    }

    /// A `kubectl get nodes,pods -A -o json` List of the cluster.
    pub fn list_json(&self) -> String {
        let items: Vec<&Value> = self.nodes.iter().chain(&self.pods).collect();
        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
            .to_string()
    }

    /// One pod that churn adds (and later deletes): a new name each time, on a node's GPUs.
    pub fn churn_pod(&self, n: usize) -> Value {
        let mut draw = Draw(0xc4u64 << 32 | n as u64);
        let node = n % self.node_names.len();
        let gpu = node * GPUS_PER_NODE + n % GPUS_PER_NODE;
        let allocations = [Allocation {
            gpu,
            memory_mib: 2048,
            cores: 20,
        }];
        let pod = Pod {
            namespace: "ci-gpu-runners",
            name: &format!("gpu-ci-job-{n}-{}", draw.suffix(5)),
            workload: "gpu-ci-job",
            kind: 9,
            template_hash: "",
            image: IMAGES[0],
            node: &self.node_names[node],
            node_index: node,
            allocations: &allocations,
            sidecar: false,
        };
        pod_object(&mut draw, &pod, &self.gpus)
    }

    /// The dcgm-exporter series of every GPU and the vGPU monitor's of every allocation.
    pub fn exposition(&self) -> String {
        let mut out = String::with_capacity(self.gpus.len() * 4096);
        for (i, gpu) in self.gpus.iter().enumerate() {
            let (model, memory, _) = MODELS[gpu.model];
            let used = used_mib(i, memory);
            let util = (i * 37 % 101) as u64;
            let labels = format!(
                "gpu=\"{}\",UUID=\"{}\",pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{}\",modelName=\"{model}\",Hostname=\"{}\",DCGM_FI_DRIVER_VERSION=\"550.90.07\"",
                gpu.index,
                gpu.uuid,
                [0x07, 0x0B, 0x48, 0x4C, 0x88, 0x8B, 0xC8, 0xCB][gpu.index],
                gpu.index,
                self.node_names[gpu.node],
            );
            for (metric, value) in [
                ("DCGM_FI_DEV_SM_CLOCK", 1410 + util),
                ("DCGM_FI_DEV_MEM_CLOCK", 1593),
                ("DCGM_FI_DEV_MEMORY_TEMP", 40 + util / 4),
                ("DCGM_FI_DEV_GPU_TEMP", 33 + util / 3),
                ("DCGM_FI_DEV_POWER_USAGE", 60 + util * 3),
                (
                    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                    9_000_000_000 + i as u64 * 7919,
                ),
                ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 0),
                ("DCGM_FI_DEV_GPU_UTIL", util),
                ("DCGM_FI_DEV_MEM_COPY_UTIL", util / 2),
                ("DCGM_FI_DEV_ENC_UTIL", 0),
                ("DCGM_FI_DEV_DEC_UTIL", 0),
                ("DCGM_FI_DEV_XID_ERRORS", 0),
                ("DCGM_FI_DEV_FB_FREE", u64::from(memory) - used),
                ("DCGM_FI_DEV_FB_USED", used),
                ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", util * 1000),
                ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", 0),
                ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", util),
                ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", util / 3),
                ("DCGM_FI_PROF_DRAM_ACTIVE", util / 2),
                ("DCGM_FI_PROF_PCIE_TX_BYTES", 1_000_000 + util * 997),
                ("DCGM_FI_PROF_PCIE_RX_BYTES", 2_000_000 + util * 991),
            ] {
                let _ = writeln!(out, "{metric}{{{labels}}} {value}");
            }
        }
        for (k, (namespace, pod, container, allocations)) in self.workloads.iter().enumerate() {
            for (j, allocation) in allocations.iter().enumerate() {
                let gpu = &self.gpus[allocation.gpu];
                let labels = format!(
                    "device_uuid=\"{}\",namespace=\"{namespace}\",pod=\"{pod}\",container=\"{container}\",vdevice_index=\"{j}\",node_name=\"{}\"",
                    gpu.uuid, self.node_names[gpu.node]
                );
                let limit = u64::from(allocation.memory_mib) << 20;
                let _ = writeln!(
                    out,
                    "hami_container_device_utilization_ratio{{{labels}}} {}",
                    (k + j) % 60
                );
                let _ = writeln!(out, "hami_vgpu_memory_used_bytes{{{labels}}} {}", limit / 3);
                let _ = writeln!(out, "hami_vgpu_memory_limit_bytes{{{labels}}} {limit}");
            }
        }
        out
    }
}

/// Memory used on GPU `i` as dcgm-exporter reports it (MiB).
pub fn used_mib(i: usize, memory: u32) -> u64 {
    (i as u64 * 7919) % u64::from(memory / 2)
}

struct Pod<'a> {
    namespace: &'a str,
    name: &'a str,
    workload: &'a str,
    /// 0–5 Deployment, 6–7 StatefulSet, 8–9 Job.
    kind: usize,
    template_hash: &'a str,
    image: &'a str,
    node: &'a str,
    node_index: usize,
    allocations: &'a [Allocation],
    sidecar: bool,
}

fn node_object(draw: &mut Draw, node: usize, name: &str, gpus: &[Gpu]) -> Value {
    let (model, memory, pool) = MODELS[gpus[0].model];
    let register: Vec<Value> = gpus
        .iter()
        .map(|gpu| {
            json!({"id": gpu.uuid, "index": gpu.index, "count": 10, "devmem": memory, "devcore": 100,
                   "type": model, "numa": gpu.index / 4, "mode": "hami-core", "health": true})
        })
        .collect();
    let ip = format!(
        "10.{}.{}.{}",
        20 + node / 65_536 % 200,
        node / 256 % 256,
        node % 256
    );
    let created = draw.time(node as u32 % 40);
    let zone = ["us-east-1a", "us-east-1b", "us-east-1c"][node % 3];
    let images: Vec<Value> = IMAGES
        .iter()
        .take(3 + node % 4)
        .map(|image| {
            json!({"names": [format!("{image}@sha256:{}", draw.hex(64)), image], "sizeBytes": 2_000_000_000 + draw.below(9_000_000_000) as u64})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {
                "hami.io/node-handshake": format!("Reported {}", draw.time(60)),
                "hami.io/node-nvidia-register": Value::Array(register).to_string(),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"i-0{}\"}}", draw.hex(16)),
            },
            "creationTimestamp": created,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "gpu": "on",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": format!("{pool}.8x"),
                "nvidia.com/gpu.product": model.replace(' ', "-"),
                "nvidia.com/gpu.count": "8",
                "topology.kubernetes.io/region": "us-east-1",
                "topology.kubernetes.io/zone": zone,
                "nodepool": format!("gpu-{pool}"),
            },
            "name": name,
            "resourceVersion": (1_000_000 + node * 37).to_string(),
            "uid": draw.uuid(),
        },
        "spec": {
            "providerID": format!("aws:///us-east-1a/i-0{}", draw.hex(16)),
            "taints": [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "value": "present"}],
        },
        "status": {
            "addresses": [
                {"address": ip, "type": "InternalIP"},
                {"address": name, "type": "Hostname"},
            ],
            "allocatable": {"cpu": "95690m", "ephemeral-storage": "846540784742", "memory": "1056574464Ki",
                             "nvidia.com/gpu": "80", "nvidia.com/gpumem": (memory * 8).to_string(), "nvidia.com/gpucores": "800", "pods": "110"},
            "capacity": {"cpu": "96", "ephemeral-storage": "921145324Ki", "memory": "1081203092Ki",
                          "nvidia.com/gpu": "80", "pods": "110"},
            "conditions": [
                {"lastHeartbeatTime": draw.time(60), "lastTransitionTime": created, "message": "kubelet has sufficient memory available", "reason": "KubeletHasSufficientMemory", "status": "False", "type": "MemoryPressure"},
                {"lastHeartbeatTime": draw.time(60), "lastTransitionTime": created, "message": "kubelet has no disk pressure", "reason": "KubeletHasNoDiskPressure", "status": "False", "type": "DiskPressure"},
                {"lastHeartbeatTime": draw.time(60), "lastTransitionTime": created, "message": "kubelet has sufficient PID available", "reason": "KubeletHasSufficientPID", "status": "False", "type": "PIDPressure"},
                {"lastHeartbeatTime": draw.time(60), "lastTransitionTime": created, "message": "kubelet is posting ready status", "reason": "KubeletReady", "status": "True", "type": "Ready"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": images,
            "nodeInfo": {
                "architecture": "amd64", "bootID": draw.uuid(), "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": "5.15.0-1068-aws", "kubeProxyVersion": "v1.31.2", "kubeletVersion": "v1.31.2",
                "machineID": draw.hex(32), "operatingSystem": "linux", "osImage": "Ubuntu 22.04.5 LTS",
                "systemUUID": draw.uuid(),
            },
        },
    })
}

fn pod_object(draw: &mut Draw, pod: &Pod<'_>, gpus: &[Gpu]) -> Value {
    let segment: String = pod
        .allocations
        .iter()
        .map(|a| format!("{},NVIDIA,{},{}:", gpus[a.gpu].uuid, a.memory_mib, a.cores))
        .collect();
    let allocated = if pod.sidecar {
        format!("{segment};;")
    } else {
        format!("{segment};")
    };
    let created = draw.time(40 + pod.node_index as u32 % 20);
    let started = draw.time(60);
    let uid = draw.uuid();
    let (owner_kind, owner_name) = match pod.kind {
        0..=5 => (
            "ReplicaSet",
            format!("{}-{}", pod.workload, pod.template_hash),
        ),
        6..=7 => ("StatefulSet", pod.workload.to_string()),
        _ => ("Job", pod.workload.to_string()),
    };
    let mut labels = json!({
        "app": pod.workload,
        "app.kubernetes.io/name": pod.workload,
        "app.kubernetes.io/part-of": pod.namespace,
    });
    match pod.kind {
        0..=5 => labels["pod-template-hash"] = json!(pod.template_hash),
        6..=7 => {
            labels["controller-revision-hash"] =
                json!(format!("{}-{}", pod.workload, draw.suffix(10)));
            labels["statefulset.kubernetes.io/pod-name"] = json!(pod.name);
        }
        _ => {
            labels["batch.kubernetes.io/controller-uid"] = json!(draw.uuid());
            labels["batch.kubernetes.io/job-name"] = json!(pod.workload);
        }
    }
    let gpus_asked = pod.allocations.len();
    let memory: u32 = pod
        .allocations
        .iter()
        .map(|a| a.memory_mib)
        .max()
        .unwrap_or(0);
    let cores: u32 = pod.allocations.iter().map(|a| a.cores).max().unwrap_or(0);
    let token_volume = format!("kube-api-access-{}", draw.suffix(5));
    let main = json!({
        "name": "main",
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", format!("{}.serve", pod.workload.replace('-', "_"))],
        "args": ["--port=8080", format!("--model-dir=/models/{}", pod.workload), "--log-level=info"],
        "env": [
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
            {"name": "OMP_NUM_THREADS", "value": "8"},
            {"name": "MODEL_NAME", "value": pod.workload},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        ],
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "resources": {
            "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpus_asked.to_string(),
                       "nvidia.com/gpumem": memory.to_string(), "nvidia.com/gpucores": cores.to_string()},
            "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": gpus_asked.to_string(),
                         "nvidia.com/gpumem": memory.to_string(), "nvidia.com/gpucores": cores.to_string()},
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"mountPath": "/models", "name": "models", "readOnly": true},
            {"mountPath": "/dev/shm", "name": "dshm"},
            {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token_volume, "readOnly": true},
        ],
    });
    let mut containers = vec![main];
    let mut statuses = vec![container_status(draw, "main", pod.image, &started)];
    if pod.sidecar {
        containers.push(json!({
            "name": "metrics-agent",
            "image": "registry.internal.example.com/platform/metrics-agent:1.14.2",
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 9100, "name": "metrics", "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token_volume, "readOnly": true}],
        }));
        statuses.push(container_status(
            draw,
            "metrics-agent",
            "registry.internal.example.com/platform/metrics-agent:1.14.2",
            &started,
        ));
    }
    let mut metadata = json!({
        "annotations": {
            "hami.io/bind-phase": "success",
            "hami.io/bind-time": (1_790_000_000 + draw.below(10_000_000)).to_string(),
            "hami.io/vgpu-devices-allocated": allocated,
            "hami.io/vgpu-devices-to-allocate": ";",
            "hami.io/vgpu-node": pod.node,
            "hami.io/vgpu-time": (1_790_000_000 + draw.below(10_000_000)).to_string(),
            "kubectl.kubernetes.io/default-container": "main",
        },
        "creationTimestamp": created,
        "labels": labels,
        "name": pod.name,
        "namespace": pod.namespace,
        "ownerReferences": [{"apiVersion": if pod.kind >= 8 { "batch/v1" } else { "apps/v1" }, "blockOwnerDeletion": true,
                             "controller": true, "kind": owner_kind, "name": owner_name, "uid": draw.uuid()}],
        "resourceVersion": (2_000_000 + draw.below(90_000_000)).to_string(),
        "uid": uid,
    });
    if pod.kind <= 5 {
        metadata["generateName"] = json!(format!("{}-{}-", pod.workload, pod.template_hash));
    }
    if draw.below(3) == 0 {
        metadata["managedFields"] = json!([
            {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kube-controller-manager", "operation": "Update", "time": created,
             "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}, "f:ownerReferences": {".": {}}},
                          "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}}}}},
            {"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": "kubelet", "operation": "Update", "subresource": "status", "time": started,
             "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}},
                                       "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:startTime": {}}}},
        ]);
    }
    let host_ip = format!(
        "10.{}.{}.{}",
        20 + pod.node_index / 65_536 % 200,
        pod.node_index / 256 % 256,
        pod.node_index % 256
    );
    let pod_ip = format!(
        "100.{}.{}.{}",
        64 + draw.below(60),
        draw.below(256),
        draw.below(256)
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": containers,
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": pod.node,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": if pod.kind >= 8 { "Never" } else { "Always" },
            "schedulerName": "hami-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"},
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300},
            ],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": format!("{}-models", pod.workload), "readOnly": true}},
                {"emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}, "name": "dshm"},
                {"name": token_volume, "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                    {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}},
                ]}},
            ],
        },
        "status": {
            "conditions": [
                {"lastProbeTime": null, "lastTransitionTime": started, "status": "True", "type": "PodReadyToStartContainers"},
                {"lastProbeTime": null, "lastTransitionTime": created, "status": "True", "type": "Initialized"},
                {"lastProbeTime": null, "lastTransitionTime": started, "status": "True", "type": "Ready"},
                {"lastProbeTime": null, "lastTransitionTime": started, "status": "True", "type": "ContainersReady"},
                {"lastProbeTime": null, "lastTransitionTime": created, "status": "True", "type": "PodScheduled"},
            ],
            "containerStatuses": statuses,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "phase": "Running",
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "qosClass": "Burstable",
            "startTime": created,
        },
    })
}

fn container_status(draw: &mut Draw, name: &str, image: &str, started: &str) -> Value {
    json!({
        "containerID": format!("containerd://{}", draw.hex(64)),
        "image": image,
        "imageID": format!("{}@sha256:{}", image.split(':').next().unwrap_or(image), draw.hex(64)),
        "lastState": {},
        "name": name,
        "ready": true,
        "restartCount": draw.below(3),
        "started": true,
        "state": {"running": {"startedAt": started}},
    })
}
