//! Huawei Ascend NPUs. HAMi registers each chip model ("common word") separately:
//! node annotation `hami.io/node-register-<word>` (JSON array), pod allocations
//! `hami.io/<word>-devices-allocated`, for words such as `Ascend910A`, `Ascend910B2`,
//! `Ascend910B3`, `Ascend910B4`, `Ascend910B4-1`, `Ascend910C`, `Ascend310P` and the older
//! `Ascend910B` (HAMi `pkg/device/ascend/device.go`, chart `device-configmap.yaml`).
//!
//! The Go backend knew only `Ascend910B` and `Ascend310P`; for those two its pod rules are
//! kept (segments not aligned to containers, cores from the memory table). Every other word
//! found on a node or pod is decoded too, with the sane rules described on [`decode_pod`].
//! Prometheus gives Ascend devices their user-facing id (`vdie_id`); that enrichment runs
//! elsewhere through [`apply_vdie_ids`].

use std::collections::HashMap;

use super::alloc::{align_to_containers, decode_alloc_segments};
use super::{json_register, DecodeError, NodeView, PodView, VendorAllocations};
use crate::device::{Device, DeviceAllocation, Vendor};

const REGISTER_PREFIX: &str = "hami.io/node-register-Ascend";
const ALLOCATED_PREFIX: &str = "hami.io/Ascend";
const ALLOCATED_SUFFIX: &str = "-devices-allocated";

/// Chip words the Go backend decoded, with its unaligned allocation rule.
const GO_WORDS: [&str; 2] = ["Ascend910B", "Ascend310P"];

/// One chip model's vNPU templates, from HAMi's default device config (chart v2.10).
struct ChipTemplates {
    word: &'static str,
    /// AI cores of the whole chip.
    ai_cores: i64,
    /// `(template memory in MiB, template AI cores)`.
    templates: &'static [(i32, i64)],
}

const fn chip(
    word: &'static str,
    ai_cores: i64,
    templates: &'static [(i32, i64)],
) -> ChipTemplates {
    ChipTemplates {
        word,
        ai_cores,
        templates,
    }
}

const TEMPLATES: &[ChipTemplates] = &[
    chip(
        "Ascend910A",
        30,
        &[(2184, 2), (4369, 4), (8738, 8), (17476, 16)],
    ),
    chip("Ascend910B", 20, &[(16384, 5), (32768, 10)]),
    chip("Ascend910B2", 24, &[(8192, 3), (16384, 6), (32768, 12)]),
    chip("Ascend910B3", 20, &[(16384, 5), (32768, 10)]),
    chip("Ascend910B4-1", 20, &[(16384, 5), (32768, 10)]),
    chip("Ascend910B4", 20, &[(8192, 5), (16384, 10)]),
    chip("Ascend910C", 20, &[(16384, 5), (32768, 10)]),
    chip("Ascend310P", 8, &[(3072, 1), (6144, 2), (12288, 4)]),
];

/// Share (percent, rounded half up) of the template a `usedmem` selects on chip `word`;
/// anything that is not a template is a whole NPU, 100. For `Ascend910B` and `Ascend310P`
/// this reproduces the Go backend's table (16384 → 25, 32768 → 50; 3072 → 13, 6144 → 25,
/// 12288 → 50).
fn template_share(word: &str, usedmem: i32) -> i32 {
    TEMPLATES
        .iter()
        .find(|chip| chip.word == word)
        .and_then(|chip| {
            let (_, cores) = chip.templates.iter().find(|(mem, _)| *mem == usedmem)?;
            let share = (cores * 200 + chip.ai_cores) / (chip.ai_cores * 2);
            i32::try_from(share).ok()
        })
        .unwrap_or(100)
}

/// Devices of every `hami.io/node-register-Ascend*` annotation, in key order. The Go
/// backend used only the first of `Ascend910B`/`Ascend310P`; a node with several models now
/// shows all of them. `id` and `alias_id` are the registered id until Prometheus enrichment.
pub(crate) fn decode_node(node: &NodeView<'_>) -> Result<Vec<Device>, DecodeError> {
    let mut devices = Vec::new();
    for (_, value) in node.annotations_with_prefix(REGISTER_PREFIX) {
        if value.trim().is_empty() {
            continue;
        }
        let entries = json_register::decode(value)?;
        devices.extend(node.registered_devices(Vendor::Ascend, entries));
    }
    Ok(devices)
}

/// Replaces the `id` of Ascend devices by the `vdie_id` Prometheus reports, keeping
/// `alias_id` (the key allocations use). As in the Go backend the join is by array position,
/// not by `index`: `vdie_by_position[p]` belongs to the `p`-th device of a registration.
/// Positions are counted per `device_type`, which equals per registration annotation since
/// HAMi writes one model per annotation. Devices without an entry keep their id.
pub fn apply_vdie_ids(devices: &mut [Device], vdie_by_position: &HashMap<usize, String>) {
    let mut positions: HashMap<String, usize> = HashMap::new();
    for device in devices.iter_mut().filter(|d| d.vendor == Vendor::Ascend) {
        let position = positions.entry(device.device_type.clone()).or_insert(0);
        if let Some(vdie) = vdie_by_position.get(position).filter(|v| !v.is_empty()) {
            device.id = vdie.clone();
        }
        *position += 1;
    }
}

/// Allocations of every `hami.io/Ascend*-devices-allocated` key, words in key order.
///
/// - `Ascend910B`, `Ascend310P` (Go rule): empty segments are skipped and the non-empty ones
///   go to containers 0, 1, … in order; cores come from the template table, the cores field
///   is ignored.
/// - Other words: segments aligned to containers like every other vendor (init-container
///   rule included); cores are the cores field when it is positive (HAMi writes it only in
///   hami-core soft-split mode), else the template share, else 100.
pub(crate) fn decode_pod(pod: &PodView<'_>) -> VendorAllocations {
    let mut out = VendorAllocations::new(pod.containers);
    for (key, value) in pod.annotations_with_prefix(ALLOCATED_PREFIX) {
        let Some(word) = key
            .strip_prefix("hami.io/")
            .and_then(|k| k.strip_suffix(ALLOCATED_SUFFIX))
        else {
            continue;
        };
        let decoded = decode_alloc_segments(value).map(|mut segments| {
            let go_rule = GO_WORDS.contains(&word);
            for allocation in segments.iter_mut().flatten() {
                allocation.usedcores = cores(allocation, go_rule);
            }
            if go_rule {
                let mut lists: Vec<Vec<DeviceAllocation>> = segments
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .take(pod.containers)
                    .collect();
                lists.resize_with(pod.containers, Vec::new);
                lists
            } else {
                align_to_containers(segments, pod.init_containers, pod.containers)
            }
        });
        out.absorb(Some(decoded));
    }
    out
}

fn cores(allocation: &DeviceAllocation, go_rule: bool) -> i32 {
    if !go_rule && allocation.usedcores > 0 {
        allocation.usedcores
    } else {
        template_share(&allocation.alloc_type, allocation.usedmem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{annotated_node, node, pod};
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    fn uuids_and_cores(
        annotations: &[(&str, &str)],
        init: &[&str],
        containers: &[&str],
    ) -> Vec<Vec<(String, i32)>> {
        let decoded = decode_whole_pod(&pod(annotations, init, containers));
        assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
        decoded
            .containers
            .into_iter()
            .map(|c| {
                c.allocations
                    .into_iter()
                    .map(|a| (a.uuid, a.usedcores))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn registrations_of_every_model_are_decoded_in_key_order() {
        let n = node(
            "npu-1",
            &[
                (
                    "hami.io/node-register-Ascend910B",
                    r#"[{"id":"Ascend910B-0","count":4,"devmem":65536,"devcore":100,"type":"Ascend910B","health":true},{"id":"Ascend910B-1","index":1,"count":4,"devmem":65536,"devcore":100,"type":"Ascend910B","health":true}]"#,
                ),
                (
                    "hami.io/node-register-Ascend310P",
                    r#"[{"id":"Ascend310P-0","count":7,"devmem":21527,"devcore":100,"type":"Ascend310P","health":true}]"#,
                ),
                (
                    "hami.io/node-register-Ascend910B4",
                    r#"[{"id":"Ascend910B4-0","count":4,"devmem":32768,"devcore":20,"type":"Ascend910B4","health":true}]"#,
                ),
                ("hami.io/node-register-xpu", r#"[{"id":"xpu-0"}]"#),
            ],
            &[],
        );
        let devices = decode_node_devices(Vendor::Ascend, &n).unwrap();
        let ids: Vec<_> = devices.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "Ascend310P-0",
                "Ascend910B-0",
                "Ascend910B-1",
                "Ascend910B4-0"
            ]
        );
        assert!(devices.iter().all(|d| d.alias_id == d.id));
        assert_eq!(devices[2].index, 1);
        assert_eq!(devices[3].devcore, 20);
    }

    #[test]
    fn malformed_registration_is_an_error() {
        let n = annotated_node(
            "hami.io/node-register-Ascend910B",
            "Ascend910B-0,1,2,3,T,0,true:",
        );
        assert_eq!(
            decode_node_devices(Vendor::Ascend, &n).unwrap_err().kind(),
            "bad_json"
        );
    }

    #[test]
    fn vdie_ids_replace_ids_by_position_per_model() {
        let n = node(
            "npu-1",
            &[(
                "hami.io/node-register-Ascend910B",
                r#"[{"id":"a0","type":"Ascend910B","index":5},{"id":"a1","type":"Ascend910B"}]"#,
            )],
            &[],
        );
        let mut devices = decode_node_devices(Vendor::Ascend, &n).unwrap();
        let vdie = HashMap::from([(0, "vdie-x".to_string()), (1, String::new())]);
        apply_vdie_ids(&mut devices, &vdie);
        assert_eq!(
            (devices[0].id.as_str(), devices[0].alias_id.as_str()),
            ("vdie-x", "a0")
        );
        assert_eq!(devices[1].id, "a1");
    }

    #[test]
    fn go_words_skip_empty_segments_and_use_the_memory_table() {
        let got = uuids_and_cores(
            &[
                (
                    "hami.io/Ascend910B-devices-allocated",
                    ";Ascend910B-0,Ascend910B,16384,0:;",
                ),
                (
                    "hami.io/Ascend310P-devices-allocated",
                    "Ascend310P-2,Ascend310P,6144,0:Ascend310P-3,Ascend310P,21527,7:;",
                ),
            ],
            &[],
            &["a", "b"],
        );
        assert_eq!(
            got,
            vec![
                vec![
                    ("Ascend310P-2".to_string(), 25),
                    ("Ascend310P-3".to_string(), 100),
                    ("Ascend910B-0".to_string(), 25),
                ],
                vec![]
            ]
        );
    }

    #[test]
    fn go_table_values_are_reproduced() {
        let cases = [
            ("Ascend910B", 16384, 25),
            ("Ascend910B", 32768, 50),
            ("Ascend910B", 65536, 100),
            ("Ascend310P", 3072, 13),
            ("Ascend310P", 6144, 25),
            ("Ascend310P", 12288, 50),
            ("Ascend910A", 2184, 7),
            ("Ascend910B2", 8192, 13),
            ("Ascend910B4", 8192, 25),
            ("Unknown", 16384, 100),
        ];
        for (word, mem, want) in cases {
            assert_eq!(template_share(word, mem), want, "{word} {mem}");
        }
    }

    #[test]
    fn newer_words_are_aligned_and_prefer_soft_split_cores() {
        let got = uuids_and_cores(
            &[(
                "hami.io/Ascend910B3-devices-allocated",
                ";Ascend910B3-0,Ascend910B3,16384,0:;Ascend910B3-1,Ascend910B3,20000,40:;",
            )],
            &["init"],
            &["a", "b"],
        );
        assert_eq!(
            got,
            vec![
                vec![("Ascend910B3-0".to_string(), 25)],
                vec![("Ascend910B3-1".to_string(), 40)],
            ]
        );
    }

    #[test]
    fn malformed_allocation_drops_only_that_model() {
        let decoded = decode_whole_pod(&pod(
            &[
                (
                    "hami.io/Ascend910B-devices-allocated",
                    "Ascend910B-0,Ascend910B:;",
                ),
                (
                    "hami.io/Ascend910B4-devices-allocated",
                    "Ascend910B4-0,Ascend910B4,8192,0:;",
                ),
            ],
            &[],
            &["a"],
        ));
        assert_eq!(decoded.errors.len(), 1);
        assert_eq!(decoded.containers[0].allocations.len(), 1);
        assert_eq!(decoded.containers[0].allocations[0].usedcores, 25);
    }
}
