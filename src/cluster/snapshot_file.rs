//! Offline mode's input: a `kubectl get nodes,pods -A -o json` List (or YAML), read once at
//! start instead of watching a cluster; HAMi's device ConfigMap and HAMi-DRA's
//! ResourceSlices and ResourceClaims may be in it too.
//!
//! Used for the demo cluster, for reproducing a customer's view from an export, and for
//! tests. A malformed file stops start-up with the file, the item index and what is wrong;
//! kinds we do not use are skipped.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot: {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot: {path}: not JSON or YAML: {message}")]
    Syntax { path: String, message: String },
    #[error("snapshot: {path}: {message}")]
    Shape { path: String, message: String },
    #[error("snapshot: {path}: items[{index}] ({kind} {name:?}): {message}")]
    Item {
        path: String,
        index: usize,
        kind: String,
        name: String,
        message: String,
    },
}

/// The objects of a snapshot file, by kind, decoded.
#[derive(Debug, Default)]
pub struct ClusterExport {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub config_maps: Vec<ConfigMap>,
    pub resource_slices: Vec<ResourceSlice>,
    pub resource_claims: Vec<ResourceClaim>,
}

/// The objects of a snapshot file being served, by kind, each as its JSON text (checked at
/// load); the caches decode them as they take them ([`crate::cluster::watch::replay_json`]). Kept
/// decoded, a 10,000-GPU export's 17,500 pods were 193 MB of heap (heaptrack); as text, 12 MB.
#[derive(Debug, Default)]
pub struct SnapshotObjects {
    pub nodes: Vec<Box<RawValue>>,
    pub pods: Vec<Box<RawValue>>,
    pub config_maps: Vec<Box<RawValue>>,
    pub resource_slices: Vec<Box<RawValue>>,
    pub resource_claims: Vec<Box<RawValue>>,
}

/// Reads and checks a snapshot file for serving: every item is decoded once to report a
/// malformed one at start, then kept only as its JSON text (see [`SnapshotObjects`]).
pub fn load(path: &Path) -> Result<SnapshotObjects, SnapshotFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut objects = SnapshotObjects::default();
    visit_items(&path.display().to_string(), &text, |kind, raw| {
        let kept = raw.to_owned();
        match kind {
            ItemKind::Node => {
                serde_json::from_str::<Node>(raw.get()).map(|_| objects.nodes.push(kept))
            }
            ItemKind::Pod => {
                serde_json::from_str::<Pod>(raw.get()).map(|_| objects.pods.push(kept))
            }
            ItemKind::ConfigMap => {
                serde_json::from_str::<ConfigMap>(raw.get()).map(|_| objects.config_maps.push(kept))
            }
            ItemKind::ResourceSlice => serde_json::from_str::<ResourceSlice>(raw.get())
                .map(|_| objects.resource_slices.push(kept)),
            ItemKind::ResourceClaim => serde_json::from_str::<ResourceClaim>(raw.get())
                .map(|_| objects.resource_claims.push(kept)),
        }
    })?;
    Ok(objects)
}

/// Parses the text of a snapshot file into typed objects; `path` is only used in messages.
pub fn parse(path: &str, text: &str) -> Result<ClusterExport, SnapshotFileError> {
    let mut export = ClusterExport::default();
    visit_items(path, text, |kind, raw| {
        let raw = raw.get();
        match kind {
            ItemKind::Node => serde_json::from_str(raw).map(|o| export.nodes.push(o)),
            ItemKind::Pod => serde_json::from_str(raw).map(|o| export.pods.push(o)),
            ItemKind::ConfigMap => serde_json::from_str(raw).map(|o| export.config_maps.push(o)),
            ItemKind::ResourceSlice => {
                serde_json::from_str(raw).map(|o| export.resource_slices.push(o))
            }
            ItemKind::ResourceClaim => {
                serde_json::from_str(raw).map(|o| export.resource_claims.push(o))
            }
        }
    })?;
    Ok(export)
}

/// The kinds a snapshot contributes; other kinds are skipped.
#[derive(Debug, Clone, Copy)]
enum ItemKind {
    Node,
    Pod,
    ConfigMap,
    ResourceSlice,
    ResourceClaim,
}

/// Calls `each` with every used item's raw JSON text; its error is reported with the item's
/// index, kind and name.
///
/// Items are read one at a time from their raw text, never through a whole-document
/// `serde_json::Value`: a 10,000-GPU export (12 MB) took 256 MB of heap as a `Value` tree and
/// set the process's peak RSS for its whole life. YAML is rare and small; it is read into a
/// `Value` and rewritten as JSON so both take the same path.
fn visit_items(
    path: &str,
    text: &str,
    each: impl FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
) -> Result<(), SnapshotFileError> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        let syntax = |message: String| SnapshotFileError::Syntax {
            path: path.into(),
            message,
        };
        let document: Value = serde_saphyr::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let json = serde_json::to_string(&document).map_err(|e| syntax(e.to_string()))?;
        return visit_json_items(path, &json, each);
    }
    visit_json_items(path, text, each)
}

fn visit_json_items(
    path: &str,
    text: &str,
    mut each: impl FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
) -> Result<(), SnapshotFileError> {
    let syntax = |message: String| SnapshotFileError::Syntax {
        path: path.into(),
        message,
    };
    let trimmed = text.trim_start();
    let shape = || SnapshotFileError::Shape {
        path: path.into(),
        message: "expected a List object with an `items` array".into(),
    };
    let (list_kind, items) = if !trimmed.starts_with('{') && !trimmed.starts_with('[') {
        return Err(shape());
    } else if trimmed.starts_with('[') {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        (None, items)
    } else {
        let list: ListDocument = serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let items = list.items.ok_or_else(shape)?;
        let items: Vec<&RawValue> = serde_json::from_str(items.get()).map_err(|_| shape())?;
        (list.kind, items)
    };
    // Items of a typed list (`PodList`) may omit their own kind.
    let implied_kind = list_kind
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|k| k.strip_suffix("List"))
        .filter(|k| !k.is_empty());
    for (index, item) in items.into_iter().enumerate() {
        // Not an object, or a `metadata` that is not one: no kind or name to report.
        let head: ItemHead = serde_json::from_str(item.get()).unwrap_or_default();
        let kind = head
            .kind
            .as_ref()
            .and_then(Value::as_str)
            .or(implied_kind)
            .unwrap_or_default();
        let name = head
            .metadata
            .as_ref()
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_error = |message: String| SnapshotFileError::Item {
            path: path.into(),
            index,
            kind: kind.to_string(),
            name: name.to_string(),
            message,
        };
        let used = match kind {
            "Node" => ItemKind::Node,
            "Pod" => ItemKind::Pod,
            "ConfigMap" => ItemKind::ConfigMap,
            "ResourceSlice" => ItemKind::ResourceSlice,
            "ResourceClaim" => ItemKind::ResourceClaim,
            "" => return Err(item_error("item has no kind".into())),
            other => {
                tracing::debug!(
                    index,
                    kind = other,
                    "snapshot item of an unused kind skipped"
                );
                continue;
            }
        };
        each(used, item).map_err(|e| item_error(e.to_string()))?;
    }
    Ok(())
}

/// A List document: its kind and its items as raw JSON text (borrowed from the file).
#[derive(Deserialize)]
struct ListDocument<'a> {
    #[serde(default)]
    kind: Option<Value>,
    #[serde(borrow, default)]
    items: Option<&'a RawValue>,
}

/// What an error message names of an item; the rest of the item is skipped unread.
#[derive(Deserialize, Default)]
struct ItemHead {
    #[serde(default)]
    kind: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_kubectl_list_in_json_and_yaml() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","uid":"u1"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"d"}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}]}"#;
        let export = parse("f.json", json).unwrap();
        assert_eq!((export.nodes.len(), export.pods.len()), (1, 1));

        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n1\n";
        assert_eq!(parse("f.yaml", yaml).unwrap().nodes.len(), 1);
    }

    #[test]
    fn item_errors_keep_their_kind_and_name_and_odd_items_are_reported() {
        let json = r#"[{"kind":"Node","metadata":{"name":"n\u0031"},"spec":5}]"#;
        let err = parse("f", json).unwrap_err().to_string();
        assert!(err.contains("items[0] (Node \"n1\")"), "{err}");
        let err = parse("f", r#"{"kind":"List","items":[7]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("items[0] ( \"\"): item has no kind"), "{err}");
        let err = parse("f", r#"{"kind":"PodList","items":[{"metadata":3}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("items[0] (Pod \"\")"), "{err}");
    }

    #[test]
    fn load_checks_every_item_and_keeps_the_used_ones_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        std::fs::write(
            &path,
            r#"{"kind":"List","items":[{"kind":"Node","metadata":{"name":"n1"}},
            {"kind":"Service","metadata":{"name":"s"}},
            {"kind":"Pod","metadata":{"name":"p1","namespace":"d"}}]}"#,
        )
        .unwrap();
        let objects = load(&path).unwrap();
        assert_eq!((objects.nodes.len(), objects.pods.len()), (1, 1));
        let pod: Pod = serde_json::from_str(objects.pods[0].get()).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p1"));

        std::fs::write(
            &path,
            r#"[{"kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":"nope"}}]"#,
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("items[0] (Pod \"bad\"): "), "{err}");
    }

    #[test]
    fn typed_lists_imply_the_item_kind() {
        let json = r#"{"kind":"PodList","items":[{"metadata":{"name":"p"}}]}"#;
        assert_eq!(parse("f", json).unwrap().pods.len(), 1);
    }

    #[test]
    fn errors_name_file_index_and_problem() {
        let json = r#"{"kind":"List","items":[{"kind":"Node","metadata":{"name":"ok"}},
            {"kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":"nope"}}]}"#;
        let err = parse("demo.json", json).unwrap_err().to_string();
        assert!(
            err.starts_with("snapshot: demo.json: items[1] (Pod \"bad\"): "),
            "{err}"
        );

        let err = parse("x.json", "{\"kind\":\"List\"}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("items"), "{err}");
        assert!(parse("x.json", "{not json").is_err());
        assert!(parse("x.yaml", "a: [b").is_err());
        let err = parse("x.yaml", "5").unwrap_err().to_string();
        assert!(err.contains("expected a List"), "{err}");
        let err = parse("x.json", r#"{"kind":"List","items":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a List"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse("fuzz", &text);
        }

        #[test]
        fn arbitrary_items_never_panic(kind in "(Node|Pod|ConfigMap|List|)", body in "\\PC{0,120}") {
            let text = format!("{{\"kind\":\"List\",\"items\":[{{\"kind\":\"{kind}\",\"metadata\":{body}}}]}}");
            let _ = parse("fuzz", &text);
        }
    }
}
