//! The device and container families of `/metrics`, computed once per refresh cycle from the
//! cycle's [`ClusterSnapshot`] and its batched query results (pure; the actor that runs the
//! cycle is [`refresher`]).
//!
//! A cycle produces a complete [`CycleState`] aside from the published one. Series are kept in
//! groups by (family, source query); when a query fails, the groups it feeds keep their
//! previous series for up to `exporter.stale_cycles` cycles (devices and containers that left
//! the cluster excepted), and every other group updates normally.
//!
//! Label sets are rendered once ([`LabelSet`]) and shared by every family of a device or an
//! allocation; the next cycle reuses them while their values stay equal, so an unchanged
//! cluster re-renders no label and a family whose values did not move can reuse its bytes
//! ([`refresher`]). Devices and allocations are visited in label order, so each
//! family's series come out already sorted.

mod builder;
mod containers;
mod cycle;
mod devices;
pub mod exposition;
mod identity;
pub mod labels;
pub mod publication;
pub mod queries;
mod readings;
mod refresh_metrics;
pub mod refresher;
mod state;

pub use cycle::build_cycle;
pub use exposition::{Family, Point, CONTAINER_ALLOC_LABELS, DEVICE_LABELS};
pub use identity::identity_overrides;
pub use labels::LabelSet;
pub use queries::CycleQuery;
pub use state::{
    CycleQueryError, CycleState, QueryResults, SeriesGroup, Source, TextChunks, VectorAnswer,
};

#[cfg(test)]
mod tests {
    use super::cycle::*;
    use super::identity::*;
    use super::state::*;
    use super::*;
    use crate::cluster::inventory::IdentityMap;
    use crate::cluster::snapshot::ClusterSnapshot;
    use crate::config::Config;
    use crate::device::DeviceContext;
    use crate::device::Vendor;
    use crate::query_client::Sample;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn snapshot(nodes: Vec<serde_json::Value>, pods: Vec<serde_json::Value>) -> ClusterSnapshot {
        let config = Config::from_raw(Default::default()).unwrap();
        let entries: Vec<_> = nodes
            .into_iter()
            .map(|n| {
                let node = serde_json::from_value(n).unwrap();
                crate::cluster::inventory::node_entry(
                    &node,
                    &config.node_selectors,
                    &DeviceContext::default(),
                )
                .0
            })
            .collect();
        let inventory = Arc::new(crate::cluster::inventory::build_inventory(
            entries.iter(),
            &IdentityMap::new(),
            Default::default(),
        ));
        let pods: Vec<Arc<crate::cluster::snapshot::PodRecord>> = pods
            .into_iter()
            .filter_map(|p| {
                let pod = serde_json::from_value(p).unwrap();
                crate::cluster::tracked_pod::pod_record(
                    &pod,
                    jiff::Timestamp::UNIX_EPOCH,
                    &DeviceContext::default(),
                )
                .0
                .map(Arc::new)
            })
            .collect();
        ClusterSnapshot::build(1, inventory, pods.to_vec(), Vec::new())
    }

    fn nvidia_node() -> serde_json::Value {
        json!({"metadata": {"name": "n1", "uid": "u1", "labels": {"gpu": "on"},
            "annotations": {"hami.io/node-nvidia-register":
                "[{\"id\":\"GPU-a\",\"count\":10,\"devmem\":1000,\"devcore\":100,\"type\":\"A100\",\"health\":true}]"}}})
    }

    fn nvidia_pod(cores: u32) -> serde_json::Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "pu",
                "annotations": {"hami.io/vgpu-node": "n1",
                                "hami.io/vgpu-devices-allocated": format!("GPU-a,NVIDIA,500,{cores}:;")}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
               "status": {"phase": "Running"}})
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

    fn answers<const N: usize>(
        pairs: [(CycleQuery, Result<Vec<Sample>, CycleQueryError>); N],
    ) -> QueryResults {
        pairs
            .into_iter()
            .map(|(q, r)| (q, r.map(VectorAnswer::from)))
            .collect()
    }

    fn dcgm(name: &str, value: f64) -> Sample {
        sample(&[("__name__", name), ("UUID", "GPU-a")], value)
    }

    fn healthy_results(util: f64, task_core: f64) -> QueryResults {
        answers([
            (
                CycleQuery::Device(Vendor::Nvidia),
                Ok(vec![
                    dcgm("DCGM_FI_DEV_FB_USED", 250.0),
                    dcgm("DCGM_FI_DEV_FB_FREE", 750.0),
                    dcgm("DCGM_FI_DEV_GPU_UTIL", util),
                    dcgm("DCGM_FI_DEV_GPU_TEMP", 40.0),
                    dcgm("DCGM_FI_DEV_POWER_USAGE", 300.0),
                    dcgm("DCGM_FI_DEV_XID_ERRORS", 0.0),
                ]),
            ),
            (
                CycleQuery::Info(Vendor::Nvidia),
                Ok(vec![sample(
                    &[
                        ("UUID", "GPU-a"),
                        ("DCGM_FI_DRIVER_VERSION", "535.1"),
                        ("device", "nvidia0"),
                    ],
                    1.0,
                )]),
            ),
            (
                CycleQuery::TaskCore(Vendor::Nvidia),
                Ok(vec![sample(
                    &[
                        ("device_uuid", "GPU-a"),
                        ("namespace", "ns"),
                        ("pod", "p"),
                        ("container", "c"),
                    ],
                    task_core,
                )]),
            ),
            (
                CycleQuery::TaskMemory(Vendor::Nvidia),
                Ok(vec![sample(
                    &[
                        ("device_uuid", "GPU-a"),
                        ("namespace", "ns"),
                        ("pod", "p"),
                        ("container", "c"),
                    ],
                    100.0 * 1024.0 * 1024.0,
                )]),
            ),
        ])
    }

    fn value(state: &CycleState, family: Family) -> Option<f64> {
        state
            .groups
            .iter()
            .find(|((f, _), _)| *f == family)
            .and_then(|(_, g)| g.points.first())
            .map(|p| p.value)
    }

    #[test]
    fn device_and_container_families_follow_the_go_formulas() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let state = build_cycle(
            &snap,
            &healthy_results(40.0, 30.0),
            &CycleState::default(),
            3,
        );
        assert_eq!(value(&state, Family::VgpuCount), Some(10.0));
        assert_eq!(value(&state, Family::MemoryUsed), Some(250.0));
        assert_eq!(value(&state, Family::MemoryUtil), Some(25.0));
        assert_eq!(value(&state, Family::VmemoryScaling), Some(1.0));
        assert_eq!(value(&state, Family::CoreUtilAvg), Some(40.0));
        assert_eq!(value(&state, Family::DevicePower), Some(300.0));
        assert_eq!(
            value(&state, Family::ContainerVmemoryAllocated),
            Some(500.0)
        );
        assert_eq!(value(&state, Family::ContainerCoreUsed), Some(30.0));
        assert_eq!(value(&state, Family::ContainerCoreUtil), Some(60.0));
        assert_eq!(value(&state, Family::ContainerMemoryUsed), Some(100.0));
        assert_eq!(value(&state, Family::ContainerMemoryUtil), Some(20.0));
        let text = state.render();
        assert!(text.contains("hami_vgpu_count{node=\"n1\",provider=\"NVIDIA\",device_type=\"A100\",device_uuid=\"GPU-a\",driver_version=\"535.1\",device_no=\"nvidia0\"} 10"), "{text}");
        assert!(text.contains("container_pod_uuid=\"c:pu\""), "{text}");
    }

    #[test]
    fn busy_card_overrides_container_core_usage() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let state = build_cycle(
            &snap,
            &healthy_results(97.0, 30.0),
            &CycleState::default(),
            3,
        );
        assert_eq!(
            value(&state, Family::ContainerCoreUsed),
            Some(f64::from(0.97f32 * 50.0))
        );
        assert_eq!(value(&state, Family::ContainerCoreUtil), Some(97.0));
    }

    #[test]
    fn failed_query_keeps_its_families_for_stale_cycles_then_drops_them() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let mut state = build_cycle(
            &snap,
            &healthy_results(40.0, 30.0),
            &CycleState::default(),
            2,
        );
        let mut failing = healthy_results(40.0, 30.0);
        failing.insert(
            CycleQuery::Device(Vendor::Nvidia),
            Err(CycleQueryError::Deadline),
        );
        failing.insert(
            CycleQuery::Info(Vendor::Nvidia),
            Err(CycleQueryError::Deadline),
        );
        for cycle in 1..=2 {
            state = build_cycle(&snap, &failing, &state, 2);
            assert_eq!(
                value(&state, Family::MemoryUsed),
                Some(250.0),
                "cycle {cycle}"
            );
            assert!(
                state.render().contains("driver_version=\"535.1\""),
                "labels stable"
            );
        }
        state = build_cycle(&snap, &failing, &state, 2);
        assert_eq!(
            value(&state, Family::MemoryUsed),
            None,
            "dropped after 2 stale cycles"
        );
        assert_eq!(
            value(&state, Family::VgpuCount),
            Some(10.0),
            "inventory families stay"
        );
        assert_eq!(
            value(&state, Family::ContainerCoreUsed),
            Some(30.0),
            "other queries update"
        );
    }

    #[test]
    fn departed_devices_and_containers_disappear_even_when_stale() {
        let snap = snapshot(vec![nvidia_node()], vec![nvidia_pod(50)]);
        let state = build_cycle(
            &snap,
            &healthy_results(40.0, 30.0),
            &CycleState::default(),
            3,
        );
        let empty = snapshot(vec![], vec![]);
        let failing: QueryResults = healthy_results(40.0, 30.0)
            .into_keys()
            .map(|k| (k, Err(CycleQueryError::Deadline)))
            .collect();
        let next = build_cycle(&empty, &failing, &state, 3);
        assert_eq!(next.series_count(), 0, "{}", next.render());
    }

    #[test]
    fn ascend_telemetry_joins_by_array_position() {
        let node = json!({"metadata": {"name": "a1", "uid": "ua", "labels": {"ascend": "on"},
            "annotations": {"hami.io/node-register-Ascend910B":
                "[{\"id\":\"Ascend910B-0\",\"count\":4,\"devmem\":65536,\"devcore\":100,\"type\":\"Ascend910B\",\"health\":true},{\"id\":\"Ascend910B-1\",\"index\":1,\"count\":4,\"devmem\":65536,\"devcore\":100,\"type\":\"Ascend910B\",\"health\":true}]"}}});
        let snap = snapshot(vec![node], vec![]);
        let results = answers([
            (
                CycleQuery::Identity(Vendor::Ascend),
                Ok(vec![
                    sample(&[("node", "a1"), ("id", "0"), ("vdie_id", "V0")], 1.0),
                    sample(&[("node", "a1"), ("id", "1"), ("vdie_id", "V1")], 1.0),
                ]),
            ),
            (
                CycleQuery::Device(Vendor::Ascend),
                Ok(vec![sample(
                    &[("__name__", "npu_chip_info_utilization"), ("vdie_id", "V1")],
                    77.0,
                )]),
            ),
            (
                CycleQuery::Info(Vendor::Ascend),
                Ok(vec![sample(&[("vdie_id", "V1"), ("id", "1")], 1.0)]),
            ),
        ]);
        let text = build_cycle(&snap, &results, &CycleState::default(), 3).render();
        assert!(text.contains("hami_core_util{node=\"a1\",provider=\"Ascend\",device_type=\"Ascend910B\",device_uuid=\"V1\",driver_version=\"暂无\",device_no=\"ascend-1\"} 77"), "{text}");
        assert!(text.contains("device_uuid=\"V0\""), "{text}");
    }

    #[test]
    fn learnt_identities_are_stable_once_applied() {
        let node_json = json!({"metadata": {"name": "d1", "uid": "ud", "labels": {"dcu": "on"},
            "annotations": {"hami.io/node-dcu-register": "DCU-0,4,65520,100,DCU,0,true,0,hami-core:"}}});
        let snap = snapshot(vec![node_json.clone()], vec![]);
        let results = answers([(
            CycleQuery::Identity(Vendor::Dcu),
            Ok(vec![sample(
                &[
                    ("node", "d1"),
                    ("minor_number", "0"),
                    ("device_id", "serial-9"),
                ],
                1.0,
            )]),
        )]);
        let map = identity_overrides(&snap, &results).unwrap();
        assert_eq!(
            map.get(&("d1".to_string(), "d1-dcu-0".to_string()))
                .map(|(id, _)| id.as_str()),
            Some("serial-9")
        );
        let config = Config::from_raw(Default::default()).unwrap();
        let node = serde_json::from_value(node_json).unwrap();
        let entry = crate::cluster::inventory::node_entry(
            &node,
            &config.node_selectors,
            &DeviceContext::default(),
        )
        .0;
        let inventory = crate::cluster::inventory::build_inventory(
            [&entry].into_iter(),
            &map,
            Default::default(),
        );
        assert_eq!(inventory.iter_devices().next().unwrap().id, "serial-9");
        let enriched = ClusterSnapshot::build(2, Arc::new(inventory), Vec::new(), Vec::new());
        assert_eq!(identity_overrides(&enriched, &results), Some(map));
        let failed = answers([(
            CycleQuery::Identity(Vendor::Dcu),
            Err(CycleQueryError::Deadline),
        )]);
        assert_eq!(
            identity_overrides(&enriched, &failed),
            None,
            "failure keeps what was learnt"
        );
    }

    #[test]
    fn hcu_devices_and_containers_use_the_hcu_exporter() {
        let node = json!({"metadata": {"name": "h1", "uid": "uh", "labels": {"hcu": "on"},
            "annotations": {"hami.io/node-hcu-register": "HCU-serial-01,4,65520,100,BW200,0,true,0,hami-core:"}}});
        let pod = json!({"metadata": {"name": "train", "namespace": "research", "uid": "pu",
                "annotations": {"hami.io/vgpu-node": "h1",
                                "hami.io/hcu-devices-allocated": "HCU-serial-01,HCU,32000,50:;"}},
               "spec": {"nodeName": "h1", "containers": [{"name": "worker"}]},
               "status": {"phase": "Running"}});
        let snap = snapshot(vec![node], vec![pod]);
        let workload = [
            ("device_id", "serial-01"),
            ("hcu_pod_namespace", "research"),
            ("hcu_pod_name", "train"),
            ("container", "worker"),
        ];
        let results = answers([
            (
                CycleQuery::Device(Vendor::Hcu),
                Ok(vec![
                    sample(
                        &[
                            ("__name__", "hcu_usedmemory_bytes"),
                            ("device_id", "serial-01"),
                        ],
                        2048.0 * 1048576.0,
                    ),
                    sample(
                        &[
                            ("__name__", "hcu_utilizationrate"),
                            ("device_id", "serial-01"),
                        ],
                        99.0,
                    ),
                ]),
            ),
            (
                CycleQuery::Info(Vendor::Hcu),
                Ok(vec![sample(
                    &[("device_id", "serial-01"), ("minor_number", "3")],
                    1.0,
                )]),
            ),
            (
                CycleQuery::TaskCore(Vendor::Hcu),
                Ok(vec![sample(&workload, 40.0)]),
            ),
            (CycleQuery::TaskMemory(Vendor::Hcu), Ok(vec![])),
        ]);
        let state = build_cycle(&snap, &results, &CycleState::default(), 3);
        let text = state.render();
        assert!(text.contains("hami_memory_used{node=\"h1\",provider=\"HCU\",device_type=\"BW200\",device_uuid=\"serial-01\",driver_version=\"\",device_no=\"3\"} 2048"), "{text}");
        // 40 % busy of 50 allocated cores; no card fallback although the card is at 99 %.
        assert_eq!(
            value(&state, Family::ContainerCoreUsed),
            Some(20.0),
            "{text}"
        );
        assert_eq!(value(&state, Family::ContainerCoreUtil), Some(40.0));
        assert_eq!(
            value(&state, Family::ContainerMemoryUsed),
            None,
            "missing sample stays unknown"
        );
        assert_eq!(value(&state, Family::ContainerVcoreAllocated), Some(50.0));
    }

    /// The synthetic cluster of `nodes` 8-GPU nodes and the NVIDIA answers its exporters give.
    fn synthetic(nodes: usize) -> (ClusterSnapshot, QueryResults) {
        let shape = crate::synthetic::ClusterShape::gpus(nodes);
        let objects = shape.objects();
        let snap = snapshot(
            objects
                .iter()
                .filter(|o| o["kind"] == "Node")
                .cloned()
                .collect(),
            objects
                .iter()
                .filter(|o| o["kind"] == "Pod")
                .cloned()
                .collect(),
        );
        let (mut device, mut info, mut core, mut memory) = (vec![], vec![], vec![], vec![]);
        for line in shape.exposition().lines() {
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some((name, labels)) = head.split_once('{') else {
                continue;
            };
            let labels: HashMap<&str, &str> = labels
                .trim_end_matches('}')
                .split("\",")
                .filter_map(|p| p.split_once("=\""))
                .map(|(k, v)| (k, v.trim_end_matches('"')))
                .collect();
            let l = |k: &str| labels.get(k).copied().unwrap_or_default();
            let value: f64 = value.parse().unwrap();
            let key = [
                ("device_uuid", l("device_uuid")),
                ("namespace", l("namespace")),
                ("pod", l("pod")),
                ("container", l("container")),
            ];
            match name {
                n if n.starts_with("DCGM_") => {
                    device.push(sample(&[("__name__", n), ("UUID", l("UUID"))], value));
                    if n == "DCGM_FI_DEV_POWER_USAGE" {
                        info.push(sample(
                            &[
                                ("UUID", l("UUID")),
                                ("DCGM_FI_DRIVER_VERSION", l("DCGM_FI_DRIVER_VERSION")),
                                ("device", l("device")),
                            ],
                            1.0,
                        ));
                    }
                }
                "hami_container_device_utilization_ratio" => core.push(sample(&key, value)),
                "hami_vgpu_memory_used_bytes" => memory.push(sample(&key, value)),
                _ => {}
            }
        }
        let results = answers([
            (CycleQuery::Device(Vendor::Nvidia), Ok(device)),
            (CycleQuery::Info(Vendor::Nvidia), Ok(info)),
            (CycleQuery::TaskCore(Vendor::Nvidia), Ok(core)),
            (CycleQuery::TaskMemory(Vendor::Nvidia), Ok(memory)),
        ]);
        (snap, results)
    }

    /// The exposition as the first version of this module wrote it: every label set escaped
    /// and formatted per series, series sorted by label values, the first of equals kept.
    fn reference_render(state: &CycleState) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for family in Family::ALL {
            let (name, help, names) = family.spec();
            let mut points: Vec<(Vec<String>, f64)> = state
                .groups
                .iter()
                .filter(|((f, _), _)| *f == family)
                .flat_map(|(_, g)| g.points.iter())
                .map(|p| {
                    let values = (0..names.len()).map(|i| p.labels.value(i).into_owned());
                    (values.collect(), p.value)
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.0.cmp(&b.0));
            points.dedup_by(|a, b| a.0 == b.0);
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (values, value) in points {
                let labels: Vec<String> = names
                    .iter()
                    .zip(&values)
                    .map(|(n, v)| {
                        let v = v
                            .replace('\\', "\\\\")
                            .replace('"', "\\\"")
                            .replace('\n', "\\n");
                        format!("{n}=\"{v}\"")
                    })
                    .collect();
                let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
            }
        }
        out
    }

    #[test]
    fn rendering_matches_the_per_series_reference_and_streams_the_same_text() {
        let (snap, results) = synthetic(3);
        let state = build_cycle(&snap, &results, &CycleState::default(), 3);
        let text = state.render();
        assert!(state.series_count() > 300, "{}", state.series_count());
        assert_eq!(text, reference_render(&state));
        let streamed: Vec<u8> = Arc::new(state).text_chunks(1000).flatten().collect();
        assert_eq!(String::from_utf8(streamed).unwrap(), text);
    }

    #[test]
    fn an_unchanged_cluster_reuses_every_label_set_and_keeps_its_text() {
        let (snap, results) = synthetic(2);
        let first = build_cycle(&snap, &results, &CycleState::default(), 3);
        let second = build_cycle(&snap, &results, &first, 3);
        assert_eq!(first.render(), second.render());
        for ((f1, p1), (f2, p2)) in first.families().iter().zip(second.families()) {
            assert_eq!(f1, f2);
            assert!(p1
                .iter()
                .zip(p2.iter())
                .all(|(a, b)| Arc::ptr_eq(&a.labels, &b.labels)));
        }
    }

    #[test]
    fn stale_groups_merge_with_fresh_ones_in_label_order() {
        let (snap, results) = synthetic(2);
        let first = build_cycle(&snap, &results, &CycleState::default(), 3);
        let mut failing = results.clone();
        failing.insert(
            CycleQuery::TaskCore(Vendor::Nvidia),
            Err(CycleQueryError::Deadline),
        );
        let second = build_cycle(&snap, &failing, &first, 3);
        assert_eq!(second.render(), reference_render(&second));
        assert_eq!(
            value(&second, Family::ContainerCoreUsed),
            value(&first, Family::ContainerCoreUsed)
        );
    }
}
