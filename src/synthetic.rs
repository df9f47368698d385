//! Synthetic clusters of any size, in HAMi's real annotation formats, with a matching exporter
//! exposition (dcgm-exporter and the HAMi vGPU monitor; DCU and Ascend exporters in the vendor
//! mix).
//!
//! Used by the benchmark harness, the refresher tests and the `synthetic_cluster` example. All
//! values are deterministic functions of the indexes, so tests can compute what the refresher
//! must publish without reading the generated text back.

use std::fmt::Write as _;

use serde_json::{json, Value};

/// Shape of a generated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    /// GPU nodes (8 devices each).
    pub nodes: usize,
    /// Allocations per device, on average (pods hold 1–4 allocations each).
    pub allocations_per_device: usize,
    /// Every fourth node is a Hygon DCU node and every fourth+1 an Ascend 910B node.
    pub vendor_mix: bool,
}

/// Devices per node.
pub const DEVICES_PER_NODE: usize = 8;

/// One generated pod: its node and its allocations `(device, memory MiB, cores)`.
pub type PodLayout = (usize, Vec<(usize, u32, u32)>);

impl ClusterShape {
    pub fn gpus(nodes: usize) -> Self {
        Self {
            nodes,
            allocations_per_device: 4,
            vendor_mix: false,
        }
    }

    fn vendor_of(&self, node: usize) -> NodeKind {
        if !self.vendor_mix {
            return NodeKind::Nvidia;
        }
        match node % 4 {
            1 => NodeKind::Dcu,
            2 => NodeKind::Ascend,
            _ => NodeKind::Nvidia,
        }
    }

    pub fn node_name(node: usize) -> String {
        format!("gpu-node-{node:05}")
    }

    /// The registered id of a device (DCU and Ascend ids are what HAMi registers; their
    /// exporter ids are [`ClusterShape::exporter_id`]).
    pub fn device_id(&self, node: usize, device: usize) -> String {
        match self.vendor_of(node) {
            NodeKind::Nvidia => format!("GPU-{node:05}-{device:02}"),
            NodeKind::Dcu => format!("DCU-{device}"),
            NodeKind::Ascend => format!("Ascend910B-{device}"),
        }
    }

    /// The id the device's exporter reports (and `/metrics` labels show).
    pub fn exporter_id(&self, node: usize, device: usize) -> String {
        match self.vendor_of(node) {
            NodeKind::Nvidia => self.device_id(node, device),
            NodeKind::Dcu => format!("dcu-serial-{node:05}-{device}"),
            NodeKind::Ascend => format!("vdie-{node:05}-{device}"),
        }
    }

    /// Memory used as the exporter reports it for a device (MiB; DCU exports bytes).
    pub fn memory_used_mib(node: usize, device: usize) -> u64 {
        1000 + (node as u64 * 7 + device as u64 * 13) % 20_000
    }

    /// Card utilisation percent of a device.
    pub fn utilization(node: usize, device: usize) -> u64 {
        (node as u64 * 3 + device as u64 * 11) % 90
    }

    /// The Kubernetes objects: nodes, then pods.
    pub fn objects(&self) -> Vec<Value> {
        let mut items = Vec::with_capacity(self.nodes * (1 + DEVICES_PER_NODE * 2));
        for node in 0..self.nodes {
            items.push(self.node(node));
        }
        for (i, pod) in self.pod_layout().into_iter().enumerate() {
            items.push(self.pod(i, &pod));
        }
        items
    }

    /// A `kubectl get nodes,pods -A -o json` List of the cluster.
    pub fn list(&self) -> Value {
        json!({"apiVersion": "v1", "kind": "List", "items": self.objects()})
    }

    fn node(&self, node: usize) -> Value {
        let name = Self::node_name(node);
        let (labels, key, register) = match self.vendor_of(node) {
            NodeKind::Nvidia => {
                let devices: Vec<Value> = (0..DEVICES_PER_NODE)
                    .map(|d| json!({"id": self.device_id(node, d), "index": d, "count": 10, "devmem": 81920,
                                    "devcore": 100, "type": "NVIDIA A100-SXM4-80GB", "mode": "hami-core", "health": true}))
                    .collect();
                (
                    json!({"gpu": "on"}),
                    "hami.io/node-nvidia-register",
                    Value::Array(devices).to_string(),
                )
            }
            NodeKind::Dcu => {
                let csv: String = (0..DEVICES_PER_NODE)
                    .map(|d| format!("DCU-{d},4,65520,100,DCU,0,true,{d},hami-core:"))
                    .collect();
                (json!({"dcu": "on"}), "hami.io/node-dcu-register", csv)
            }
            NodeKind::Ascend => {
                let devices: Vec<Value> = (0..DEVICES_PER_NODE)
                    .map(|d| json!({"id": self.device_id(node, d), "index": d, "count": 4, "devmem": 65536,
                                    "devcore": 100, "type": "Ascend910B", "health": true}))
                    .collect();
                (
                    json!({"ascend": "on"}),
                    "hami.io/node-register-Ascend910B",
                    Value::Array(devices).to_string(),
                )
            }
        };
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("node-uid-{node:05}"), "labels": labels,
                         "annotations": {key: register}, "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("10.{}.{}.{}", node / 65536 % 256, node / 256 % 256, node % 256)}],
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"osImage": "Ubuntu 22.04", "kernelVersion": "5.15", "containerRuntimeVersion": "containerd://1.7",
                                    "kubeletVersion": "v1.30.0", "kubeProxyVersion": "v1.30.0", "operatingSystem": "linux",
                                    "architecture": "amd64", "machineID": "", "systemUUID": "", "bootID": ""}}
        })
    }

    /// Pods as `(node, [(device, memory MiB, cores)])`: 1–4 allocations each on one node,
    /// until every device holds `allocations_per_device` on average.
    pub fn pod_layout(&self) -> Vec<PodLayout> {
        let mut pods = Vec::new();
        for node in 0..self.nodes {
            let target = DEVICES_PER_NODE * self.allocations_per_device;
            let mut placed = 0;
            let mut k = 0;
            while placed < target {
                let size = (1 + k % 4).min(target - placed);
                let allocations = (0..size)
                    .map(|j| {
                        let device = (placed + j) % DEVICES_PER_NODE;
                        (
                            device,
                            1024 * (1 + (k + j) as u32 % 8),
                            10 + 5 * ((k + j) as u32 % 4),
                        )
                    })
                    .collect();
                pods.push((node, allocations));
                placed += size;
                k += 1;
            }
        }
        pods
    }

    pub fn pod_name(i: usize) -> String {
        format!("job-{i:06}")
    }

    fn pod(&self, i: usize, (node, allocations): &PodLayout) -> Value {
        let node_name = Self::node_name(*node);
        let (key, alloc_type) = match self.vendor_of(*node) {
            NodeKind::Nvidia => ("hami.io/vgpu-devices-allocated", "NVIDIA"),
            NodeKind::Dcu => ("hami.io/dcu-devices-allocated", "DCU"),
            NodeKind::Ascend => ("hami.io/Ascend910B-devices-allocated", "Ascend910B"),
        };
        let segment: String = allocations
            .iter()
            .map(|(d, mem, cores)| {
                format!("{},{alloc_type},{mem},{cores}:", self.device_id(*node, *d))
            })
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": Self::pod_name(i), "namespace": format!("team-{}", i % 16), "uid": format!("pod-uid-{i:06}"),
                         "annotations": {"hami.io/vgpu-node": node_name, key: format!("{segment};")}},
            "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "cuda:12"}]},
            "status": {"phase": "Running",
                       "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-06-01T00:00:00Z"}],
                       "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": "cuda:12", "imageID": ""}]}
        })
    }

    /// The exporters' exposition for every device and container of the cluster.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        for node in 0..self.nodes {
            let host = Self::node_name(node);
            for d in 0..DEVICES_PER_NODE {
                let id = self.exporter_id(node, d);
                let used = Self::memory_used_mib(node, d);
                let util = Self::utilization(node, d);
                match self.vendor_of(node) {
                    NodeKind::Nvidia => {
                        let labels = format!("UUID=\"{id}\",gpu=\"{d}\",device=\"nvidia{d}\",DCGM_FI_DRIVER_VERSION=\"550.54\",Hostname=\"{host}\"");
                        for (metric, value) in [
                            ("DCGM_FI_DEV_FB_USED", used),
                            ("DCGM_FI_DEV_FB_FREE", 81920 - used),
                            ("DCGM_FI_DEV_GPU_UTIL", util),
                            ("DCGM_FI_DEV_GPU_TEMP", 30 + util / 3),
                            ("DCGM_FI_DEV_MEMORY_TEMP", 35 + util / 3),
                            ("DCGM_FI_DEV_POWER_USAGE", 100 + util * 3),
                            ("DCGM_FI_DEV_FAN_SPEED", 20 + util / 2),
                            ("DCGM_FI_DEV_XID_ERRORS", 0),
                        ] {
                            let _ = writeln!(out, "{metric}{{{labels}}} {value}");
                        }
                    }
                    NodeKind::Dcu => {
                        let _ = writeln!(out, "dcu_temp{{node=\"{host}\",minor_number=\"{d}\",device_id=\"{id}\"}} {}", 30 + util / 3);
                        let labels =
                            format!("node=\"{host}\",minor_number=\"{d}\",device_id=\"{id}\"");
                        for (metric, value) in [
                            ("dcu_usedmemory_bytes", used * 1024 * 1024),
                            ("dcu_memorycap_bytes", 65520 * 1024 * 1024),
                            ("dcu_utilizationrate", util),
                            ("dcu_power_usage", 100 + util * 3),
                        ] {
                            let _ = writeln!(out, "{metric}{{{labels}}} {value}");
                        }
                    }
                    NodeKind::Ascend => {
                        let labels = format!(
                            "node=\"{host}\",id=\"{d}\",vdie_id=\"{id}\",model_name=\"Ascend910B\""
                        );
                        for (metric, value) in [
                            ("npu_chip_info_health_status", 1),
                            ("npu_chip_info_hbm_used_memory", used),
                            ("npu_chip_info_hbm_total_memory", 65536),
                            ("npu_chip_info_utilization", util),
                            ("npu_chip_info_temperature", 30 + util / 3),
                            ("npu_chip_info_power", 100 + util * 3),
                        ] {
                            let _ = writeln!(out, "{metric}{{{labels}}} {value}");
                        }
                    }
                }
            }
        }
        for (i, (node, allocations)) in self.pod_layout().into_iter().enumerate() {
            if self.vendor_of(node) != NodeKind::Nvidia {
                continue;
            }
            let pod = Self::pod_name(i);
            let namespace = format!("team-{}", i % 16);
            for (j, (d, mem, _)) in allocations.iter().enumerate() {
                let id = self.exporter_id(node, *d);
                let labels = format!("device_uuid=\"{id}\",namespace=\"{namespace}\",pod=\"{pod}\",container=\"main\",vdevice_index=\"{j}\"");
                let _ = writeln!(
                    out,
                    "hami_container_device_utilization_ratio{{{labels}}} {}",
                    (i + j) % 50
                );
                let _ = writeln!(
                    out,
                    "hami_vgpu_memory_used_bytes{{{labels}}} {}",
                    u64::from(*mem) * 1024 * 1024 / 2
                );
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Nvidia,
    Dcu,
    Ascend,
}

/// The cluster decoded as the caches would publish it (unit tests of the pure builders).
#[cfg(test)]
impl ClusterShape {
    pub fn snapshot(&self) -> crate::cluster::snapshot::ClusterSnapshot {
        use crate::cluster::inventory::{build_inventory, node_entry, IdentityMap};
        use crate::cluster::snapshot::ClusterSnapshot;
        use crate::cluster::tracked_pod::pod_record;
        use crate::device::DeviceContext;
        let context = DeviceContext::default();
        let config = crate::config::Config::from_raw(Default::default()).expect("defaults");
        let mut entries = Vec::new();
        let mut pods = Vec::new();
        for object in self.objects() {
            if object["kind"] == "Node" {
                let node = serde_json::from_value(object).expect("generated node");
                entries.push(node_entry(&node, &config.node_selectors, &context).0);
            } else {
                let pod = serde_json::from_value(object).expect("generated pod");
                if let Some(record) = pod_record(&pod, jiff::Timestamp::UNIX_EPOCH, &context).0 {
                    pods.push(std::sync::Arc::new(record));
                }
            }
        }
        let inventory = std::sync::Arc::new(build_inventory(
            entries.iter(),
            &IdentityMap::new(),
            Default::default(),
        ));
        ClusterSnapshot::build(1, inventory, pods, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceContext;

    #[test]
    fn sizes_follow_the_shape() {
        let shape = ClusterShape::gpus(3);
        let pods = shape.pod_layout();
        let allocations: usize = pods.iter().map(|(_, a)| a.len()).sum();
        assert_eq!(allocations, 3 * DEVICES_PER_NODE * 4);
        assert!(pods.iter().all(|(_, a)| (1..=4).contains(&a.len())));
        assert_eq!(shape.objects().len(), 3 + pods.len());
    }

    #[test]
    fn generated_objects_decode_into_the_expected_inventory() {
        let shape = ClusterShape {
            nodes: 4,
            allocations_per_device: 2,
            vendor_mix: true,
        };
        let text = shape.list().to_string();
        let export = crate::cluster::snapshot_file::parse("synthetic", &text).unwrap();
        let config = crate::config::Config::from_raw(Default::default()).unwrap();
        let devices: usize = export
            .nodes
            .iter()
            .map(|n| {
                crate::cluster::inventory::node_entry(
                    n,
                    &config.node_selectors,
                    &DeviceContext::default(),
                )
            })
            .map(|(entry, errors)| {
                assert!(errors.is_empty(), "{errors:?}");
                entry.record.map_or(0, |r| r.devices.len())
            })
            .sum();
        assert_eq!(devices, 4 * DEVICES_PER_NODE);
        assert!(shape
            .exposition()
            .contains("dcu_temp{node=\"gpu-node-00001\""));
    }
}
