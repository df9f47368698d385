//! HAMi's device catalog: the Ascend models (and their vNPU templates) configured in the
//! scheduler's device ConfigMap, parsed from its `vnpus` section by the pure [`parse`].
//!
//! HAMi changed the section's shape in v2.9: before, `vnpus` was the list of models; since,
//! it is `{hamiVnpuCore, configs}` with the list under `configs`. Both are accepted. An entry
//! that cannot be used is skipped and described in [`DeviceCatalog::issues`], so one typo
//! costs one model, not the catalog; only text that is not YAML, or a `vnpus` of neither
//! shape, fails the whole parse. Keys match exactly as HAMi's scheduler reads them
//! (`commonWord`, not `CommonWord`), and other vendors' sections are ignored.
//!
//! The actor keeping the catalog of the live ConfigMap is
//! [`crate::cluster::catalog_watcher`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The Ascend models of one version of the device configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceCatalog {
    /// `vnpus.hamiVnpuCore` (v2.9 shape; `false` in the list shape).
    pub hami_vnpu_core: bool,
    /// One per distinct `commonWord`, ordered by it (byte order, as Go sorts strings).
    pub models: Vec<AscendModel>,
    /// Entries skipped or kept with a defect, in the order met.
    pub issues: Vec<String>,
}

/// One configured Ascend model (`vnpus[]` entry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AscendModel {
    pub common_word: String,
    pub chip_name: String,
    pub resource_name: String,
    pub resource_memory_name: String,
    pub resource_core_name: String,
    /// MiB a whole device offers to pods.
    pub memory_allocatable: i64,
    /// MiB of the physical device.
    pub memory_capacity: i64,
    pub memory_factor: i32,
    pub ai_core: i32,
    pub ai_cpu: i32,
    /// Ascending memory (stable for equal memory), as HAMi sorts them to pick a template.
    pub templates: Vec<Template>,
    pub super_pod: bool,
}

/// One vNPU template of a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    /// MiB; always positive (other templates are skipped as issues).
    pub memory: i64,
    pub ai_core: i32,
    pub ai_cpu: i32,
}

impl DeviceCatalog {
    /// The model of a `commonWord`, if configured.
    pub fn model(&self, common_word: &str) -> Option<&AscendModel> {
        self.models
            .binary_search_by(|m| m.common_word.as_str().cmp(common_word))
            .ok()
            .map(|i| &self.models[i])
    }
}

impl AscendModel {
    /// The template named `name`, if configured.
    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// The template's share of the model's AI Cores in percent, rounded half up; `None`
    /// when either count is not positive (a share would be invented).
    pub fn compute_share(&self, template: &Template) -> Option<i32> {
        if self.ai_core <= 0 || template.ai_core <= 0 {
            return None;
        }
        let (part, whole) = (i64::from(template.ai_core), i64::from(self.ai_core));
        i32::try_from((part * 100 + whole / 2) / whole).ok()
    }

    /// The memory HAMi's scheduler grants a request of `memory` MiB (its `trimMemory`): the
    /// smallest template that holds it (with the template), else the whole card's
    /// allocatable memory when the request fits the physical memory, else `None` (HAMi
    /// rejects the request).
    pub fn round(&self, memory: i64) -> Option<(i64, Option<&Template>)> {
        if let Some(template) = self.templates.iter().find(|t| memory <= t.memory) {
            return Some((template.memory, Some(template)));
        }
        (memory <= self.memory_capacity).then_some((self.memory_allocatable, None))
    }

    /// Whether HAMi allocates modules of two NPUs: only a `superPod` Ascend910C (what
    /// upstream's reply shows as `superPod`).
    pub fn pairs_modules(&self) -> bool {
        self.super_pod && self.common_word == "Ascend910C"
    }
}

/// Why a device configuration text yields no catalog at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not YAML, or its top level is not a mapping.
    #[error("parse device config: {0}")]
    Syntax(String),
    /// `vnpus` is neither a list nor a `{hamiVnpuCore, configs}` mapping.
    #[error("parse device config: vnpus: {0}")]
    Shape(String),
}

/// The top level of HAMi's `device-config.yaml`; every other vendor's section is ignored.
#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    vnpus: Option<Value>,
}

/// One `vnpus` entry as written; absent and `null` fields read as zero values, as the
/// scheduler's Go decoder reads them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawModel {
    common_word: Option<String>,
    chip_name: Option<String>,
    resource_name: Option<String>,
    resource_memory_name: Option<String>,
    resource_core_name: Option<String>,
    memory_allocatable: Option<i64>,
    memory_capacity: Option<i64>,
    memory_factor: Option<i32>,
    ai_core: Option<i32>,
    #[serde(rename = "aiCPU")]
    ai_cpu: Option<i32>,
    /// Kept raw so one bad template costs only itself.
    templates: Option<Vec<Value>>,
    super_pod: Option<bool>,
}

#[derive(Deserialize)]
struct RawTemplate {
    name: Option<String>,
    memory: Option<i64>,
    #[serde(rename = "aiCore")]
    ai_core: Option<i32>,
    #[serde(rename = "aiCPU")]
    ai_cpu: Option<i32>,
}

/// Parses a device configuration text (the ConfigMap's `device-config.yaml`).
pub fn parse(text: &str) -> Result<DeviceCatalog, ParseError> {
    // An empty document (no text, only comments, a bare `---`) is an empty mapping to the
    // scheduler's decoder.
    let document: Option<Document> =
        serde_saphyr::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    let (hami_vnpu_core, entries) = match document.and_then(|d| d.vnpus) {
        None | Some(Value::Null) => (false, Vec::new()),
        Some(Value::Array(entries)) => (false, entries),
        Some(Value::Object(mut current)) => {
            let core = match current.remove("hamiVnpuCore") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(core)) => core,
                Some(other) => {
                    return Err(ParseError::Shape(format!(
                        "hamiVnpuCore is not a boolean: {other}"
                    )))
                }
            };
            let entries = match current.remove("configs") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(entries)) => entries,
                Some(_) => return Err(ParseError::Shape("configs is not a list".into())),
            };
            (core, entries)
        }
        Some(_) => {
            return Err(ParseError::Shape(
                "neither a list nor a {hamiVnpuCore, configs} mapping".into(),
            ))
        }
    };
    let mut issues = Vec::new();
    let mut models = BTreeMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let raw: RawModel = match serde_json::from_value(entry) {
            Ok(raw) => raw,
            Err(error) => {
                issues.push(format!("vnpus entry {index} is not a model: {error}"));
                continue;
            }
        };
        let Some(common_word) = raw.common_word.clone().filter(|w| !w.is_empty()) else {
            issues.push(format!("vnpus entry {index} has no commonWord"));
            continue;
        };
        if models.contains_key(&common_word) {
            issues.push(format!(
                "vnpus commonWord {common_word:?} is defined more than once; the first entry is used"
            ));
            continue;
        }
        let model = model_of(common_word.clone(), raw, &mut issues);
        models.insert(common_word, model);
    }
    Ok(DeviceCatalog {
        hami_vnpu_core,
        models: models.into_values().collect(),
        issues,
    })
}

fn model_of(common_word: String, raw: RawModel, issues: &mut Vec<String>) -> AscendModel {
    let mut templates = Vec::new();
    for (index, value) in raw.templates.unwrap_or_default().into_iter().enumerate() {
        let template = match serde_json::from_value::<RawTemplate>(value) {
            Ok(t) => t,
            Err(error) => {
                issues.push(format!(
                    "vnpus {common_word:?} template {index} is not a template: {error}"
                ));
                continue;
            }
        };
        let name = template.name.unwrap_or_default();
        let memory = template.memory.unwrap_or_default();
        if name.is_empty() || memory <= 0 {
            issues.push(format!(
                "vnpus {common_word:?} has a template without a name or positive memory"
            ));
            continue;
        }
        templates.push(Template {
            name,
            memory,
            ai_core: template.ai_core.unwrap_or_default(),
            ai_cpu: template.ai_cpu.unwrap_or_default(),
        });
    }
    templates.sort_by_key(|t| t.memory);
    let model = AscendModel {
        common_word,
        chip_name: raw.chip_name.unwrap_or_default(),
        resource_name: raw.resource_name.unwrap_or_default(),
        resource_memory_name: raw.resource_memory_name.unwrap_or_default(),
        resource_core_name: raw.resource_core_name.unwrap_or_default(),
        memory_allocatable: raw.memory_allocatable.unwrap_or_default(),
        memory_capacity: raw.memory_capacity.unwrap_or_default(),
        memory_factor: raw.memory_factor.unwrap_or_default(),
        ai_core: raw.ai_core.unwrap_or_default(),
        ai_cpu: raw.ai_cpu.unwrap_or_default(),
        templates,
        super_pod: raw.super_pod.unwrap_or_default(),
    };
    if model.memory_allocatable <= 0 {
        issues.push(format!(
            "vnpus {:?} has no positive memoryAllocatable",
            model.common_word
        ));
    }
    if model.ai_core <= 0 && !model.templates.is_empty() {
        issues.push(format!(
            "vnpus {:?} has no positive aiCore, so template compute shares are unknown",
            model.common_word
        ));
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list shape of HAMi before v2.9 (trimmed; other vendors' sections included to
    /// show they are ignored).
    const LIST_SHAPE: &str = r#"
nvidia:
  resourceCountName: nvidia.com/gpu
  deviceSplitCount: 10
vnpus:
- chipName: 910B3
  commonWord: Ascend910B3
  resourceName: huawei.com/Ascend910B3
  resourceMemoryName: huawei.com/Ascend910B3-memory
  resourceCoreName: huawei.com/Ascend910B3-core
  memoryAllocatable: 65536
  memoryCapacity: 65536
  memoryFactor: 1
  aiCore: 20
  aiCPU: 7
  templates:
    - name: vir10_3c_32g
      memory: 32768
      aiCore: 10
      aiCPU: 3
    - name: vir05_1c_16g
      memory: 16384
      aiCore: 5
      aiCPU: 1
- chipName: 310P3
  commonWord: Ascend310P
  resourceName: huawei.com/Ascend310P
  memoryAllocatable: 21527
  memoryCapacity: 24576
  aiCore: 8
  aiCPU: 7
  templates:
    - {name: vir01, memory: 3072, aiCore: 1, aiCPU: 1}
    - {name: vir04, memory: 12288, aiCore: 4, aiCPU: 4}
"#;

    /// The `{hamiVnpuCore, configs}` shape of HAMi v2.9 and later (trimmed).
    const CONFIGS_SHAPE: &str = r#"
cambricon:
  resourceCountName: cambricon.com/vmlu
vnpus:
  hamiVnpuCore: true
  configs:
  - chipName: 910A
    commonWord: Ascend910A
    resourceName: huawei.com/Ascend910A
    memoryAllocatable: 32768
    memoryCapacity: 32768
    aiCore: 30
    runtimeClassName: ""
    templates:
      - name: vir02
        memory: 2184
        aiCore: 2
      - name: vir16
        memory: 17476
        aiCore: 16
  - chipName: Ascend910
    commonWord: Ascend910C
    resourceName: huawei.com/Ascend910C
    memoryAllocatable: 65536
    memoryCapacity: 65536
    aiCore: 20
    aiCPU: 7
    superPod: true
"#;

    #[test]
    fn list_shape_yields_every_model_with_sorted_templates() {
        let catalog = parse(LIST_SHAPE).unwrap();
        assert!(catalog.issues.is_empty(), "{:?}", catalog.issues);
        assert!(!catalog.hami_vnpu_core);
        let words: Vec<_> = catalog
            .models
            .iter()
            .map(|m| m.common_word.as_str())
            .collect();
        assert_eq!(words, ["Ascend310P", "Ascend910B3"]);
        let b3 = catalog.model("Ascend910B3").unwrap();
        assert_eq!(b3.chip_name, "910B3");
        assert_eq!(b3.resource_core_name, "huawei.com/Ascend910B3-core");
        assert_eq!((b3.memory_allocatable, b3.memory_capacity), (65536, 65536));
        assert_eq!((b3.memory_factor, b3.ai_core, b3.ai_cpu), (1, 20, 7));
        let names: Vec<_> = b3.templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["vir05_1c_16g", "vir10_3c_32g"]);
        assert_eq!(b3.templates[1].ai_cpu, 3);
        assert_eq!(b3.compute_share(&b3.templates[0]), Some(25));
        let p = catalog.model("Ascend310P").unwrap();
        assert_eq!(p.memory_factor, 0, "absent reads as zero");
        assert_eq!(p.compute_share(p.template("vir01").unwrap()), Some(13));
    }

    #[test]
    fn configs_shape_yields_models_and_the_core_flag() {
        let catalog = parse(CONFIGS_SHAPE).unwrap();
        assert!(catalog.issues.is_empty(), "{:?}", catalog.issues);
        assert!(catalog.hami_vnpu_core);
        let a = catalog.model("Ascend910A").unwrap();
        let shares: Vec<_> = a.templates.iter().map(|t| a.compute_share(t)).collect();
        assert_eq!(shares, [Some(7), Some(53)]);
        let c = catalog.model("Ascend910C").unwrap();
        assert!(c.templates.is_empty());
        assert!(c.super_pod && c.pairs_modules());
        assert_eq!(catalog.model("Ascend910B3"), None);
    }

    #[test]
    fn invalid_entries_are_skipped_and_listed() {
        let catalog = parse(
            r#"
vnpus:
  configs:
  - commonWord: A
    memoryAllocatable: 100
    templates: [{name: t, memory: 50, aiCore: 1}, {name: "", memory: 1}, {name: u, memory: -5}]
  - commonWord: A
    memoryAllocatable: 200
  - chipName: nameless
  - CommonWord: Wrong
  - commonWord: B
    aiCore: many
  - just a string
  - commonWord: C
    memoryAllocatable: 10
    templates: [{name: bad, memory: lots}, {name: good, memory: 5, aiCore: 1}]
"#,
        )
        .unwrap();
        let words: Vec<_> = catalog
            .models
            .iter()
            .map(|m| m.common_word.as_str())
            .collect();
        assert_eq!(words, ["A", "C"]);
        let a = catalog.model("A").unwrap();
        assert_eq!(a.memory_allocatable, 100, "the first entry wins");
        assert_eq!(a.templates.len(), 1);
        assert_eq!(
            a.compute_share(&a.templates[0]),
            None,
            "no aiCore, no share"
        );
        assert_eq!(catalog.model("C").unwrap().templates[0].name, "good");
        let joined = catalog.issues.join("\n");
        for expected in [
            "more than once",
            "entry 2 has no commonWord",
            "entry 3 has no commonWord",
            "entry 4 is not a model",
            "entry 5 is not a model",
            "without a name or positive memory",
            "\"A\" has no positive aiCore",
            "\"C\" template 0 is not a template",
        ] {
            assert!(joined.contains(expected), "{expected:?} not in {joined}");
        }
    }

    #[test]
    fn missing_or_empty_sections_yield_an_empty_catalog() {
        for text in [
            "",
            "# only a comment\n",
            "---\n",
            "vnpus: ~\n",
            "nvidia:\n  resourceCountName: nvidia.com/gpu\n",
            "vnpus:\n",
            "vnpus: []\n",
            "vnpus:\n  hamiVnpuCore: false\n",
        ] {
            let catalog = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(
                catalog.models.is_empty() && catalog.issues.is_empty(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn malformed_yaml_and_foreign_shapes_are_errors() {
        for text in [
            "vnpus: [",
            "vnpus: {configs: [}",
            "- a list\n- at the top\n",
            "just a scalar",
        ] {
            assert!(
                matches!(parse(text), Err(ParseError::Syntax(_))),
                "{text:?}: {:?}",
                parse(text)
            );
        }
        for text in [
            "vnpus: 42",
            "vnpus: {configs: notalist}",
            "vnpus: {hamiVnpuCore: maybe, configs: []}",
        ] {
            assert!(
                matches!(parse(text), Err(ParseError::Shape(_))),
                "{text:?}: {:?}",
                parse(text)
            );
        }
    }

    #[test]
    fn compute_share_rounds_half_up_without_overflow() {
        let model = AscendModel {
            ai_core: 8,
            ..Default::default()
        };
        let share = |ai_core| {
            model.compute_share(&Template {
                ai_core,
                ..Default::default()
            })
        };
        assert_eq!(share(1), Some(13)); // 12.5 -> 13
        assert_eq!(share(3), Some(38)); // 37.5 -> 38
        assert_eq!(share(0), None);
        let huge = AscendModel {
            ai_core: 1,
            ..Default::default()
        };
        let template = Template {
            ai_core: i32::MAX,
            ..Default::default()
        };
        assert_eq!(huge.compute_share(&template), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_yaml_like_text(
            text in "(vnpus:|configs:|  - |commonWord: |templates:|memory: |aiCore: |[-\\[\\]{}:,0-9a-z\" \n]){0,60}"
        ) {
            let _ = parse(&text);
        }
    }
}
