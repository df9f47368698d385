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
//!
//! With HAMi's device configuration loaded (the [`DeviceContext`] catalog), discovery also
//! covers every configured `commonWord` (not only those starting with `Ascend`), and
//! [`interpret`] tells each slice's shape (whole card, vNPU template, hami-core soft split)
//! and compute share the way upstream 2.0 does. Pods record what interpretation needs in
//! [`AscendFacts`], so a configuration change applies without decoding them again.

use std::collections::HashMap;

use serde::Deserialize;

use super::alloc::{align_to_containers, decode_alloc_segments};
use super::{json_register, DecodeError, NodeView, PodView, SliceShape, VendorAllocations};
use crate::catalog::DeviceCatalog;
use crate::device::AnnotationlessPodMode;
use crate::device::{
    AllocationFacts, AscendFacts, Device, DeviceAllocation, DeviceContext, Vendor,
};

const REGISTER_PREFIX: &str = "hami.io/node-register-";
const ALLOCATED_PREFIX: &str = "hami.io/";
const ALLOCATED_SUFFIX: &str = "-devices-allocated";
/// Models the configuration does not list are still recognised by this prefix, so stale
/// registrations and allocations stay visible.
const WORD_PREFIX: &str = "Ascend";
/// Pod annotation naming how the device plugin shares the NPU (`hami-core` = soft split).
pub const VNPU_MODE_ANNOTATION: &str = "huawei.com/vnpu-mode";
/// Node annotation: whether the node's plugin runs hami-vnpu-core (`true`/`false`).
pub const NODE_VNPU_CORE_ANNOTATION: &str = "hami-vnpu-core";
/// Pod annotation prefix of the device plugin's record of applied templates
/// (`huawei.com/<commonWord>`: `[{"UUID", "temp", "memory"}]`).
const TEMPLATE_RECORD_PREFIX: &str = "huawei.com/";
const HAMI_CORE: &str = "hami-core";

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

/// Used only without a loaded catalog, so allocation cores stay what they were before the
/// catalog existed.
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

/// Whether `word` is decoded as an Ascend model: configured, or named like one.
fn is_ascend_word(word: &str, catalog: Option<&DeviceCatalog>) -> bool {
    !word.is_empty()
        && (word.starts_with(WORD_PREFIX) || catalog.is_some_and(|c| c.model(word).is_some()))
}

/// Devices of every Ascend registration (`hami.io/node-register-<word>`), in key order. The
/// Go backend used only the first of `Ascend910B`/`Ascend310P`; a node with several models
/// now shows all of them. `id` and `alias_id` are the registered id until Prometheus
/// enrichment; a device registered without a `type` takes the word of its key.
pub(crate) fn decode_node(
    node: &NodeView<'_>,
    context: &DeviceContext,
) -> Result<Vec<Device>, DecodeError> {
    let catalog = context.catalog.as_deref();
    let mut devices = Vec::new();
    for (key, value) in node.annotations_with_prefix(REGISTER_PREFIX) {
        let word = &key[REGISTER_PREFIX.len()..];
        if !is_ascend_word(word, catalog) || value.trim().is_empty() {
            continue;
        }
        let entries = json_register::decode(value)?;
        let mut found = node.registered_devices(Vendor::Ascend, entries);
        for device in &mut found {
            if device.device_type.is_empty() {
                device.device_type = word.to_string();
            }
        }
        devices.extend(found);
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

/// One entry of the device plugin's `huawei.com/<commonWord>` record.
#[derive(Deserialize)]
struct AppliedTemplate {
    #[serde(rename = "UUID", default)]
    uuid: String,
    #[serde(default)]
    temp: String,
    #[serde(default)]
    memory: i64,
}

/// The record of applied templates; unreadable text is no record (as upstream).
fn applied_templates(value: Option<&str>) -> Option<Vec<AppliedTemplate>> {
    serde_json::from_str(value.filter(|v| !v.is_empty())?).ok()
}

/// Allocations of every Ascend `hami.io/<word>-devices-allocated` key, words in key order.
///
/// - `Ascend910B`, `Ascend310P` (Go rule): empty segments are skipped and the non-empty ones
///   go to containers 0, 1, … in order; cores come from the template table, the cores field
///   is ignored.
/// - Other words: segments aligned to containers like every other vendor (init-container
///   rule included); cores are the cores field when it is positive (HAMi writes it only in
///   hami-core soft-split mode), else the template share, else 100.
///
/// Those cores are what the slice shows without a catalog; each slice also carries the
/// [`AscendFacts`] [`interpret`] needs once one is loaded.
pub(crate) fn decode_pod(pod: &PodView<'_>, context: &DeviceContext) -> VendorAllocations {
    let catalog = context.catalog.as_deref();
    let pod_mode = pod.annotation(VNPU_MODE_ANNOTATION).unwrap_or_default();
    let mut out = VendorAllocations::new(pod.containers);
    for (key, value) in pod.annotations_with_prefix(ALLOCATED_PREFIX) {
        let Some(word) = key
            .strip_prefix(ALLOCATED_PREFIX)
            .and_then(|k| k.strip_suffix(ALLOCATED_SUFFIX))
            .filter(|word| is_ascend_word(word, catalog))
        else {
            continue;
        };
        let record = applied_templates(pod.annotation(&format!("{TEMPLATE_RECORD_PREFIX}{word}")));
        let decoded = decode_alloc_segments(value).map(|mut segments| {
            let go_rule = GO_WORDS.contains(&word);
            for allocation in segments.iter_mut().flatten() {
                let applied = record.as_ref().and_then(|entries| {
                    entries.iter().find(|e| {
                        e.uuid == allocation.uuid && e.memory == i64::from(allocation.usedmem)
                    })
                });
                allocation.facts = AllocationFacts::Ascend(AscendFacts {
                    common_word: word.to_string(),
                    annotated_core: allocation.usedcores.max(0),
                    pod_mode: pod_mode.to_string(),
                    template: applied.map(|e| e.temp.clone()).unwrap_or_default(),
                    recorded: applied.is_some(),
                });
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

/// How the device plugin shares the NPUs of a pod: a soft split (hami-vnpu-core), vNPU
/// templates, or unknown with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Soft,
    Template,
    Unknown(&'static str),
}

/// Reasons a slice's compute share is not known (upstream's `allocated_cores_reason`).
pub mod reason {
    pub const CATALOG_UNAVAILABLE: &str = "catalog_unavailable";
    pub const MODEL_NOT_CONFIGURED: &str = "model_not_configured";
    pub const TEMPLATE_NOT_CONFIGURED: &str = "template_not_configured";
    pub const COMPUTE_NOT_CONFIGURED: &str = "compute_not_configured";
    pub const MODE_AMBIGUOUS: &str = "mode_ambiguous";
    pub const NODE_MODE_UNKNOWN: &str = "node_mode_unknown";
}

/// The device plugin's choice: the pod's `huawei.com/vnpu-mode` first, then the node's
/// `hami-vnpu-core`, then the configured policy for annotation-less pods on soft nodes (the
/// ambiguity is Project-HAMi/ascend-device-plugin#134).
pub fn resolve_mode(
    pod_mode: &str,
    node_vnpu_core: Option<&str>,
    policy: AnnotationlessPodMode,
) -> Mode {
    let node = node_vnpu_core.unwrap_or_default();
    match (pod_mode, node, policy) {
        (HAMI_CORE, _, _) => Mode::Soft,
        ("", "false", _) => Mode::Template,
        (mode, _, _) if !mode.is_empty() => Mode::Template,
        ("", "true", AnnotationlessPodMode::Node) => Mode::Soft,
        ("", "true", AnnotationlessPodMode::Template) => Mode::Template,
        ("", "true", AnnotationlessPodMode::Unknown) => Mode::Unknown(reason::MODE_AMBIGUOUS),
        _ => Mode::Unknown(reason::NODE_MODE_UNKNOWN),
    }
}

/// What the inventory says about the node and card a slice sits on.
#[derive(Debug, Clone, Copy, Default)]
pub struct CardFacts<'a> {
    /// The card was found in the inventory (so its node was read).
    pub node_read: bool,
    /// The node's `hami-vnpu-core` annotation.
    pub node_vnpu_core: Option<&'a str>,
    /// The card's registered memory (MiB), 0 when unknown.
    pub card_memory: i64,
}

/// Interprets one Ascend slice as upstream 2.0 does, never guessing a compute share the
/// configuration does not state: without a loaded catalog template shares are unknown
/// (`catalog_unavailable`); a whole card is 100; a soft split keeps the share HAMi wrote.
pub fn interpret(
    facts: &AscendFacts,
    memory: i64,
    card: CardFacts<'_>,
    catalog: Option<&DeviceCatalog>,
    policy: AnnotationlessPodMode,
) -> SliceShape {
    let mut mode = resolve_mode(&facts.pod_mode, card.node_vnpu_core, policy);
    // As HAMi's scheduler does, a node without the annotation follows the configured default.
    if let (Mode::Unknown(reason::NODE_MODE_UNKNOWN), true, Some(catalog)) =
        (mode, card.node_read, catalog)
    {
        let configured = if catalog.hami_vnpu_core {
            "true"
        } else {
            "false"
        };
        mode = resolve_mode("", Some(configured), policy);
    }
    match mode {
        Mode::Soft => return SliceShape::known("soft", String::new(), facts.annotated_core),
        Mode::Unknown(why) => return SliceShape::unknown("unknown", facts.template.clone(), why),
        Mode::Template => {}
    }
    let model = catalog.and_then(|c| c.model(&facts.common_word));
    let whole = if facts.recorded {
        facts.template.is_empty()
    } else {
        memory > 0
            && (model.is_some_and(|m| m.memory_allocatable == memory) || memory == card.card_memory)
    };
    if whole {
        return SliceShape::known("whole", String::new(), 100);
    }
    if catalog.is_none() {
        return SliceShape::unknown(
            "template",
            facts.template.clone(),
            reason::CATALOG_UNAVAILABLE,
        );
    }
    let Some(model) = model else {
        return SliceShape::unknown(
            "template",
            facts.template.clone(),
            reason::MODEL_NOT_CONFIGURED,
        );
    };
    let name = if facts.template.is_empty() {
        model
            .templates
            .iter()
            .find(|t| t.memory == memory)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    } else {
        facts.template.clone()
    };
    let Some(template) = model.template(&name) else {
        return SliceShape::unknown("template", name, reason::TEMPLATE_NOT_CONFIGURED);
    };
    match model.compute_share(template) {
        Some(share) => SliceShape::known("template", name, share),
        None => SliceShape::unknown("template", name, reason::COMPUTE_NOT_CONFIGURED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::testutil::{annotated_node, node, pod};
    use crate::vendor::SliceShape;
    use crate::vendor::{decode_node_devices, decode_pod as decode_whole_pod};

    fn uuids_and_cores(
        annotations: &[(&str, &str)],
        init: &[&str],
        containers: &[&str],
    ) -> Vec<Vec<(String, i32)>> {
        let decoded = decode_whole_pod(
            &pod(annotations, init, containers),
            &DeviceContext::default(),
        );
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
        let devices = decode_node_devices(Vendor::Ascend, &n, &DeviceContext::default()).unwrap();
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
            decode_node_devices(Vendor::Ascend, &n, &DeviceContext::default())
                .unwrap_err()
                .kind(),
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
        let mut devices =
            decode_node_devices(Vendor::Ascend, &n, &DeviceContext::default()).unwrap();
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
        let decoded = decode_whole_pod(
            &pod(
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
            ),
            &DeviceContext::default(),
        );
        assert_eq!(decoded.errors.len(), 1);
        assert_eq!(decoded.containers[0].allocations.len(), 1);
        assert_eq!(decoded.containers[0].allocations[0].usedcores, 25);
    }

    fn catalog(text: &str) -> std::sync::Arc<DeviceCatalog> {
        std::sync::Arc::new(crate::catalog::parse(text).unwrap())
    }

    const V2_9: &str = include_str!("../../tests/golden/catalog/device-config-v2.9.yaml");
    const V2_10: &str = include_str!("../../tests/golden/catalog/device-config-v2.10.yaml");

    fn with_catalog(text: &str) -> DeviceContext {
        DeviceContext {
            catalog: Some(catalog(text)),
            ..DeviceContext::default()
        }
    }

    fn template_facts(word: &str) -> AscendFacts {
        AscendFacts {
            common_word: word.into(),
            pod_mode: "template".into(),
            ..AscendFacts::default()
        }
    }

    #[test]
    fn both_fixtures_parse_to_the_default_models() {
        for text in [V2_9, V2_10] {
            let parsed = crate::catalog::parse(text).unwrap();
            assert!(parsed.issues.is_empty(), "{:?}", parsed.issues);
            let words: Vec<_> = parsed
                .models
                .iter()
                .map(|m| m.common_word.as_str())
                .collect();
            assert_eq!(
                words,
                [
                    "Ascend310P",
                    "Ascend910A",
                    "Ascend910B2",
                    "Ascend910B3",
                    "Ascend910B4",
                    "Ascend910B4-1",
                    "Ascend910C"
                ]
            );
        }
        assert!(catalog(V2_9)
            .model("Ascend910C")
            .unwrap()
            .templates
            .is_empty());
        assert!(catalog(V2_10).model("Ascend910C").unwrap().pairs_modules());
    }

    #[test]
    fn configured_words_are_discovered_beside_unlisted_ascend_words() {
        let n = node(
            "npu-2",
            &[
                (
                    "hami.io/node-register-Custom910",
                    r#"[{"id":"C-0","count":2,"devmem":1000,"devcore":100,"health":true}]"#,
                ),
                (
                    "hami.io/node-register-AscendFuture",
                    r#"[{"id":"F-0","count":1,"devmem":12345,"devcore":7,"type":"AscendFuture","health":true}]"#,
                ),
                ("hami.io/node-register-xpu", r#"[{"id":"xpu-0"}]"#),
            ],
            &[],
        );
        let ids = |context: &DeviceContext| {
            let view = NodeView::new(&n);
            decode_node(&view, context)
                .unwrap()
                .into_iter()
                .map(|d| (d.id, d.device_type))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&DeviceContext::default()),
            [("F-0".to_string(), "AscendFuture".to_string())]
        );
        let mut custom = crate::catalog::parse(V2_10).unwrap();
        custom.models.push(crate::catalog::AscendModel {
            common_word: "Custom910".into(),
            memory_allocatable: 1000,
            ..Default::default()
        });
        custom
            .models
            .sort_by(|a, b| a.common_word.cmp(&b.common_word));
        let context = DeviceContext {
            catalog: Some(std::sync::Arc::new(custom)),
            ..DeviceContext::default()
        };
        assert_eq!(
            ids(&context),
            [
                ("F-0".to_string(), "AscendFuture".to_string()),
                ("C-0".to_string(), "Custom910".to_string()),
            ],
            "a configured word is found; a registration without type takes its key's word"
        );
    }

    #[test]
    fn unlisted_models_are_unconfigured_only_with_a_catalog() {
        let n = node(
            "npu-3",
            &[(
                "hami.io/node-register-Ascend910B9",
                r#"[{"id":"B9-0","count":4,"devmem":65536,"devcore":100,"type":"Ascend910B9","health":true}]"#,
            )],
            &[],
        );
        let devices = decode_node_devices(Vendor::Ascend, &n, &DeviceContext::default()).unwrap();
        assert!(!DeviceContext::default().is_unconfigured(&devices[0]));
        assert!(with_catalog(V2_10).is_unconfigured(&devices[0]));
        let mut b3 = devices[0].clone();
        b3.device_type = "Ascend910B3".into();
        assert!(!with_catalog(V2_10).is_unconfigured(&b3));
    }

    #[test]
    fn mode_follows_the_pod_then_the_node_then_the_policy() {
        use AnnotationlessPodMode::{Node as PolicyNode, Template as PolicyTemplate, Unknown};
        let cases = [
            ("hami-core", Some("false"), Unknown, Mode::Soft),
            ("template", Some("true"), PolicyNode, Mode::Template),
            ("", Some("false"), PolicyNode, Mode::Template),
            (
                "",
                Some("true"),
                Unknown,
                Mode::Unknown(reason::MODE_AMBIGUOUS),
            ),
            ("", Some("true"), PolicyNode, Mode::Soft),
            ("", Some("true"), PolicyTemplate, Mode::Template),
            (
                "",
                None,
                PolicyNode,
                Mode::Unknown(reason::NODE_MODE_UNKNOWN),
            ),
            (
                "",
                Some("yes"),
                PolicyNode,
                Mode::Unknown(reason::NODE_MODE_UNKNOWN),
            ),
        ];
        for (pod, node, policy, want) in cases {
            assert_eq!(
                resolve_mode(pod, node, policy),
                want,
                "{pod:?} {node:?} {policy:?}"
            );
        }
    }

    #[test]
    fn shipped_templates_give_upstreams_shares() {
        let v2_10 = catalog(V2_10);
        let cases = [
            ("Ascend910A", 2184, "vir02", 7),
            ("Ascend910B2", 8192, "vir03_1c_8g", 13),
            ("Ascend910B3", 16384, "vir05_1c_16g", 25),
            ("Ascend910B4", 8192, "vir05_1c_8g", 25),
            ("Ascend910B4-1", 32768, "vir10_3c_32g", 50),
            ("Ascend310P", 6144, "vir02", 25),
            ("Ascend310P", 3072, "vir01", 13),
            ("Ascend910C", 16384, "vir05_1c_16g", 25),
        ];
        for (word, memory, template, cores) in cases {
            let got = interpret(
                &template_facts(word),
                memory,
                CardFacts::default(),
                Some(&v2_10),
                AnnotationlessPodMode::Unknown,
            );
            assert_eq!(
                got,
                SliceShape::known("template", template.into(), cores),
                "{word} {memory}"
            );
        }
    }

    #[test]
    fn the_v2_9_and_v2_10_configurations_read_slices_differently() {
        let read = |text: &str, word: &str, memory: i64| {
            interpret(
                &template_facts(word),
                memory,
                CardFacts::default(),
                Some(&catalog(text)),
                AnnotationlessPodMode::Unknown,
            )
        };
        assert_eq!(
            read(V2_9, "Ascend910B4-1", 32768),
            SliceShape::known("template", "vir10_3c_16g".into(), 50)
        );
        assert_eq!(read(V2_10, "Ascend910B4-1", 32768).template, "vir10_3c_32g");
        assert_eq!(
            read(V2_9, "Ascend910C", 16384),
            SliceShape::unknown("template", String::new(), reason::TEMPLATE_NOT_CONFIGURED)
        );
        assert_eq!(read(V2_10, "Ascend910C", 16384).cores, Some(25));
    }

    /// `(name, facts, memory, card, catalog, expected)` of one interpretation case.
    type Case<'a> = (
        &'static str,
        AscendFacts,
        i64,
        CardFacts<'a>,
        Option<&'a DeviceCatalog>,
        SliceShape,
    );

    #[test]
    fn slices_say_why_their_share_is_unknown() {
        let v2_10 = catalog(V2_10);
        let mut no_cores = crate::catalog::parse(V2_10).unwrap();
        for model in &mut no_cores.models {
            model.ai_core = 0;
        }
        let policy = AnnotationlessPodMode::Unknown;
        let soft = AscendFacts {
            pod_mode: "hami-core".into(),
            annotated_core: 40,
            ..template_facts("Ascend910B3")
        };
        let unannotated = AscendFacts {
            pod_mode: String::new(),
            ..template_facts("Ascend910B3")
        };
        let read_node = CardFacts {
            node_read: true,
            ..CardFacts::default()
        };
        let soft_node = CardFacts {
            node_read: true,
            node_vnpu_core: Some("true"),
            card_memory: 65536,
        };
        let cases: Vec<Case<'_>> = vec![
            (
                "whole card by the configuration",
                template_facts("Ascend910C"),
                65536,
                CardFacts::default(),
                Some(&v2_10),
                SliceShape::known("whole", String::new(), 100),
            ),
            (
                "whole card by the registration",
                template_facts("Ascend910B3"),
                61440,
                CardFacts {
                    card_memory: 61440,
                    ..CardFacts::default()
                },
                None,
                SliceShape::known("whole", String::new(), 100),
            ),
            (
                "soft split keeps HAMi's share",
                soft.clone(),
                28672,
                soft_node,
                Some(&v2_10),
                SliceShape::known("soft", String::new(), 40),
            ),
            (
                "soft split without a catalog",
                soft,
                28672,
                soft_node,
                None,
                SliceShape::known("soft", String::new(), 40),
            ),
            (
                "no catalog",
                template_facts("Ascend910B3"),
                16384,
                CardFacts::default(),
                None,
                SliceShape::unknown("template", String::new(), reason::CATALOG_UNAVAILABLE),
            ),
            (
                "model not configured",
                template_facts("Ascend910X"),
                16384,
                CardFacts::default(),
                Some(&v2_10),
                SliceShape::unknown("template", String::new(), reason::MODEL_NOT_CONFIGURED),
            ),
            (
                "template not configured",
                template_facts("Ascend910B4"),
                4096,
                CardFacts::default(),
                Some(&v2_10),
                SliceShape::unknown("template", String::new(), reason::TEMPLATE_NOT_CONFIGURED),
            ),
            (
                "template without AI cores",
                template_facts("Ascend910B3"),
                16384,
                CardFacts::default(),
                Some(&no_cores),
                SliceShape::unknown(
                    "template",
                    "vir05_1c_16g".into(),
                    reason::COMPUTE_NOT_CONFIGURED,
                ),
            ),
            (
                "annotation-less pod on a soft node",
                unannotated.clone(),
                16384,
                soft_node,
                Some(&v2_10),
                SliceShape::unknown("unknown", String::new(), reason::MODE_AMBIGUOUS),
            ),
            (
                "node without the annotation follows the configuration",
                unannotated.clone(),
                16384,
                read_node,
                Some(&v2_10),
                SliceShape::known("template", "vir05_1c_16g".into(), 25),
            ),
            (
                "node not read is not guessed",
                unannotated.clone(),
                16384,
                CardFacts::default(),
                Some(&v2_10),
                SliceShape::unknown("unknown", String::new(), reason::NODE_MODE_UNKNOWN),
            ),
            (
                "node without the annotation and no catalog",
                unannotated,
                16384,
                read_node,
                None,
                SliceShape::unknown("unknown", String::new(), reason::NODE_MODE_UNKNOWN),
            ),
            (
                "recorded without a template is a whole card",
                AscendFacts {
                    recorded: true,
                    ..template_facts("Ascend910B3")
                },
                61440,
                CardFacts {
                    card_memory: 65536,
                    ..CardFacts::default()
                },
                Some(&v2_10),
                SliceShape::known("whole", String::new(), 100),
            ),
            (
                "the applied template wins over memory",
                AscendFacts {
                    recorded: true,
                    template: "vir10_3c_32g".into(),
                    ..template_facts("Ascend910B3")
                },
                20000,
                CardFacts::default(),
                Some(&v2_10),
                SliceShape::known("template", "vir10_3c_32g".into(), 50),
            ),
        ];
        for (name, facts, memory, card, catalog, want) in cases {
            assert_eq!(
                interpret(&facts, memory, card, catalog, policy),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn pods_record_the_mode_and_the_applied_template() {
        let p = pod(
            &[
                ("huawei.com/vnpu-mode", "template"),
                (
                    "hami.io/Ascend910B3-devices-allocated",
                    ";B3-0,Ascend910B3,16384,0:B3-1,Ascend910B3,65536,0:;",
                ),
                (
                    "huawei.com/Ascend910B3",
                    r#"[{"UUID":"B3-0","temp":"vir05_1c_16g","memory":16384},{"UUID":"B3-1","memory":65536}]"#,
                ),
                (
                    "hami.io/Custom910-devices-allocated",
                    "C-0,Custom910,500,0:;",
                ),
            ],
            &["init"],
            &["main"],
        );
        let decoded = decode_whole_pod(&p, &DeviceContext::default());
        let allocations = &decoded.containers[0].allocations;
        assert_eq!(
            allocations.len(),
            2,
            "an unconfigured custom word is not read"
        );
        let facts: Vec<_> = allocations
            .iter()
            .map(|a| match &a.facts {
                AllocationFacts::Ascend(f) => {
                    (f.template.as_str(), f.recorded, f.pod_mode.as_str())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            facts,
            [("vir05_1c_16g", true, "template"), ("", true, "template")]
        );
        let mut custom = crate::catalog::parse(V2_10).unwrap();
        custom.models.push(crate::catalog::AscendModel {
            common_word: "Custom910".into(),
            ..Default::default()
        });
        custom
            .models
            .sort_by(|a, b| a.common_word.cmp(&b.common_word));
        let context = DeviceContext {
            catalog: Some(std::sync::Arc::new(custom)),
            ..DeviceContext::default()
        };
        let decoded = crate::vendor::decode_pod(&p, &context);
        assert_eq!(decoded.containers[0].allocations.len(), 3);
    }

    #[test]
    fn unreadable_template_records_are_no_record() {
        let p = pod(
            &[
                (
                    "hami.io/Ascend910B3-devices-allocated",
                    "B3-0,Ascend910B3,16384,0:;",
                ),
                ("huawei.com/Ascend910B3", "{not json"),
            ],
            &[],
            &["main"],
        );
        let decoded = decode_whole_pod(&p, &DeviceContext::default());
        assert!(decoded.errors.is_empty());
        match &decoded.containers[0].allocations[0].facts {
            AllocationFacts::Ascend(f) => assert!(!f.recorded && f.template.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
