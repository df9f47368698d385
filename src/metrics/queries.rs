//! The batched PromQL of one refresh cycle: a fixed list per vendor present in the
//! inventory, each grouped by the exporter's identity label and joined in memory.
//!
//! The Go backend issued about ten queries per device and three per allocation (3,300 per
//! cycle at 150 GPUs); here the count depends only on which vendors are present: at most
//! [`MAX_QUERIES`], whatever the number of nodes, devices, pods or containers. Device
//! quantities of one vendor share one query (`avg by (__name__, <id>)` over a name regex),
//! which Prometheus and VictoriaMetrics both answer with one series per (metric, device).

use std::collections::BTreeSet;

use crate::device::Vendor;

/// One query of the cycle. The variant says how its result is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CycleQuery {
    /// Device quantities of a vendor, grouped by `(__name__, identity label)`.
    Device(Vendor),
    /// Driver version and device number labels of a vendor's devices.
    Info(Vendor),
    /// Exporter identities (Ascend `vdie_id`, DCU `device_id`, MLU and Metax `uuid`) by node
    /// and card, used to join telemetry to devices registered under other ids.
    Identity(Vendor),
    /// Per-container core usage of an allocation type's exporter.
    TaskCore(Vendor),
    /// Per-container memory usage.
    TaskMemory(Vendor),
    /// Metax full-GPU containers: memory series per container (paired with allocations).
    MetaxGpuTaskMemory,
    /// Metax full-GPU containers: core usage per container and card.
    MetaxGpuTaskCore,
}

impl CycleQuery {
    /// Whether the query reads a long window through subqueries (the vGPU monitor's
    /// ten-minute mean of non-zero core usage, `[10m:]`). Such a query costs the store more
    /// than all the others of a cycle together at 10,000 GPUs, while its answer moves
    /// slowly; a cycle that already holds an answer publishes with it instead of waiting,
    /// and the query is asked again after publication (`metrics_refresher`).
    pub fn is_windowed(self) -> bool {
        matches!(self, CycleQuery::TaskCore(Vendor::Nvidia))
    }
}

/// Upper bound on queries per cycle with every vendor present.
pub const MAX_QUERIES: usize = 40;

/// The identity label of a vendor's device exporter, where one is known.
pub fn identity_label(vendor: Vendor) -> Option<&'static str> {
    match vendor {
        Vendor::Nvidia => Some("UUID"),
        Vendor::Mlu | Vendor::Metax => Some("uuid"),
        Vendor::Ascend => Some("vdie_id"),
        Vendor::Dcu | Vendor::Hcu => Some("device_id"),
        _ => None,
    }
}

/// The exporter metrics of a vendor's device quantities.
pub fn device_metrics(vendor: Vendor) -> &'static [&'static str] {
    match vendor {
        Vendor::Nvidia => &[
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_MEMORY_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_FAN_SPEED",
            "DCGM_FI_DEV_XID_ERRORS",
        ],
        Vendor::Mlu => &[
            "mlu_memory_used",
            "mlu_memory_total",
            "mlu_utilization",
            "mlu_temperature",
            "mlu_memory_temperature",
            "mlu_power_usage",
            "mlu_fan_speed",
        ],
        Vendor::Ascend => &[
            "npu_chip_info_hbm_used_memory",
            "npu_chip_info_hbm_total_memory",
            "npu_chip_info_utilization",
            "npu_chip_info_temperature",
            "npu_chip_info_power",
        ],
        Vendor::Dcu => &[
            "dcu_usedmemory_bytes",
            "dcu_memorycap_bytes",
            "dcu_utilizationrate",
            "dcu_temp",
            "dcu_power_usage",
        ],
        // Hygon's hcu-exporter (default metric names), as upstream 2.0 reads it.
        Vendor::Hcu => &[
            "hcu_usedmemory_bytes",
            "hcu_memorycap_bytes",
            "hcu_utilizationrate",
            "hcu_temp",
            "hcu_temp_mem",
            "hcu_power_usage",
        ],
        Vendor::Metax => &[
            "mx_memory_used",
            "mx_memory_total",
            "mx_gpu_usage",
            "mx_chip_hotspot_temp",
            "mx_board_power",
        ],
        _ => &[],
    }
}

/// Allocation types whose containers have usage exporters, and the vendor that serves them.
pub fn task_vendor(alloc_type: &str) -> Option<Vendor> {
    match alloc_type {
        "NVIDIA" => Some(Vendor::Nvidia),
        "MLU" => Some(Vendor::Mlu),
        "DCU" => Some(Vendor::Dcu),
        "Metax-SGPU" => Some(Vendor::Metax),
        "HCU" => Some(Vendor::Hcu),
        _ => None,
    }
}

/// The expression of a cycle query.
pub fn expression(query: CycleQuery) -> Option<String> {
    use CycleQuery::*;
    let expr = match query {
        Device(Vendor::Metax) => {
            // Memory series need `type="vram"`; the others have no `type` label.
            "avg by (__name__, uuid) ({__name__=~\"mx_memory_used|mx_memory_total\", type=\"vram\"}) \
             or avg by (__name__, uuid) ({__name__=~\"mx_gpu_usage|mx_chip_hotspot_temp|mx_board_power\"})"
                .to_string()
        }
        Device(vendor) => {
            let label = identity_label(vendor)?;
            format!(
                "avg by (__name__, {label}) ({{__name__=~\"{}\"}})",
                device_metrics(vendor).join("|")
            )
        }
        Info(Vendor::Nvidia) => {
            "count by (UUID, DCGM_FI_DRIVER_VERSION, device) (DCGM_FI_DEV_POWER_USAGE)".into()
        }
        Info(Vendor::Mlu) => "count by (uuid, driver, sn) (mlu_power_usage)".into(),
        Info(Vendor::Ascend) => "count by (vdie_id, id) (npu_chip_info_power)".into(),
        Info(Vendor::Dcu) => "count by (device_id, minor_number) (dcu_power_usage)".into(),
        Info(Vendor::Metax) => "count by (uuid, driver_version, deviceId) (mx_board_power)".into(),
        Info(Vendor::Hcu) => "count by (device_id, minor_number) (hcu_power_usage)".into(),
        Identity(Vendor::Ascend) => {
            "count by (node, id, vdie_id) (npu_chip_info_health_status)".into()
        }
        Identity(Vendor::Dcu) => "count by (node, minor_number, device_id) (dcu_temp)".into(),
        Identity(Vendor::Mlu) => "max by (node, mlu, uuid, model, driver) (mlu_health)".into(),
        Identity(Vendor::Metax) => {
            "max by (Hostname, deviceId, uuid, driver_version, modelName) (mx_gpu_state)".into()
        }
        TaskCore(Vendor::Nvidia) => {
            let q = "hami_container_device_utilization_ratio";
            format!(
                "avg by (device_uuid, namespace, pod, container) (sum_over_time({q}[1m]) == 0 \
                 or (sum_over_time({q}[10m:]) / count_over_time(({q} != 0)[10m:])))"
            )
        }
        TaskMemory(Vendor::Nvidia) => {
            "avg by (device_uuid, namespace, pod, container) (hami_vgpu_memory_used_bytes)".into()
        }
        TaskCore(Vendor::Mlu) => "avg by (namespace, pod, container) (mlu_utilization * on(uuid) group_right mlu_container{type=\"mlu370.smlu.vcore\"})".into(),
        TaskMemory(Vendor::Mlu) => "avg by (namespace, pod, container) (mlu_memory_utilization * on(uuid) group_right mlu_container{type=\"mlu370.smlu.vmemory\"})".into(),
        TaskCore(Vendor::Dcu) => "avg by (pod_uuid, container_name) (vdcu_percent)".into(),
        TaskMemory(Vendor::Dcu) => "avg by (pod_uuid, container_name) (vdcu_usage_memory_size)".into(),
        TaskCore(Vendor::Metax) => "avg by (Hostname, deviceId, exported_namespace, exported_pod, exported_container) (mx_sgpu_usage)".into(),
        TaskMemory(Vendor::Metax) => "avg by (Hostname, deviceId, exported_namespace, exported_pod, exported_container) (mx_sgpu_used_memory)".into(),
        // hcu-exporter labels workload series with its own namespace/pod label names and no
        // pod UID; a missing sample means "unknown", not idle (upstream 2.0).
        TaskCore(Vendor::Hcu) => "avg by (device_id, hcu_pod_namespace, hcu_pod_name, container) (avg_over_time(vhcu_utilizationrate[1m]))".into(),
        TaskMemory(Vendor::Hcu) => "avg by (device_id, hcu_pod_namespace, hcu_pod_name, container) (vhcu_usedmemory_bytes)".into(),
        MetaxGpuTaskMemory => "mx_memory_used{type=\"vram\", exported_pod!=\"\"}".into(),
        MetaxGpuTaskCore => "avg by (uuid, exported_namespace, exported_pod, exported_container) (mx_gpu_usage{exported_pod!=\"\"})".into(),
        _ => return None,
    };
    Some(expr)
}

/// The queries of a cycle for the vendors present (device vendors) and the allocation types
/// held by containers. Deterministic order.
pub fn plan(
    vendors: &BTreeSet<Vendor>,
    alloc_types: &BTreeSet<String>,
) -> Vec<(CycleQuery, String)> {
    let mut queries = BTreeSet::new();
    for &vendor in vendors {
        for query in [
            CycleQuery::Device(vendor),
            CycleQuery::Info(vendor),
            CycleQuery::Identity(vendor),
        ] {
            queries.insert(query);
        }
    }
    for alloc_type in alloc_types {
        if let Some(vendor) = task_vendor(alloc_type) {
            queries.insert(CycleQuery::TaskCore(vendor));
            queries.insert(CycleQuery::TaskMemory(vendor));
        }
        if alloc_type == "Metax-GPU" {
            queries.insert(CycleQuery::MetaxGpuTaskMemory);
            queries.insert(CycleQuery::MetaxGpuTaskCore);
        }
    }
    queries
        .into_iter()
        .filter_map(|q| expression(q).map(|e| (q, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subquery_expressions_are_windowed() {
        let vendors: BTreeSet<Vendor> = Vendor::ALL.into_iter().collect();
        let types: BTreeSet<String> = ["NVIDIA", "MLU", "DCU", "Metax-SGPU", "Metax-GPU", "HCU"]
            .into_iter()
            .map(String::from)
            .collect();
        for (query, expr) in plan(&vendors, &types) {
            assert_eq!(
                query.is_windowed(),
                expr.contains(":])"),
                "{query:?}: {expr}"
            );
        }
    }

    #[test]
    fn every_vendor_and_type_present_stays_within_the_bound() {
        let vendors: BTreeSet<Vendor> = Vendor::ALL.into_iter().collect();
        let types: BTreeSet<String> = [
            "NVIDIA",
            "MLU",
            "DCU",
            "Metax-SGPU",
            "Metax-GPU",
            "Ascend910B",
            "HCU",
            "AMD",
        ]
        .map(String::from)
        .into();
        let plan = plan(&vendors, &types);
        assert!(plan.len() <= MAX_QUERIES, "{} queries", plan.len());
        assert_eq!(plan.len(), 28);
    }

    #[test]
    fn only_present_vendors_are_queried() {
        let plan = plan(&[Vendor::Nvidia].into(), &["NVIDIA".to_string()].into());
        let ids: Vec<CycleQuery> = plan.iter().map(|(q, _)| *q).collect();
        assert_eq!(
            ids,
            [
                CycleQuery::Device(Vendor::Nvidia),
                CycleQuery::Info(Vendor::Nvidia),
                CycleQuery::TaskCore(Vendor::Nvidia),
                CycleQuery::TaskMemory(Vendor::Nvidia)
            ]
        );
        assert_eq!(
            plan[0].1,
            "avg by (__name__, UUID) ({__name__=~\"DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_FREE|DCGM_FI_DEV_GPU_UTIL|DCGM_FI_DEV_GPU_TEMP|DCGM_FI_DEV_MEMORY_TEMP|DCGM_FI_DEV_POWER_USAGE|DCGM_FI_DEV_FAN_SPEED|DCGM_FI_DEV_XID_ERRORS\"})"
        );
    }
}
