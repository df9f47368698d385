//! Offline mode's input: a `kubectl get nodes,pods -A -o json` List (or YAML), read once at
//! start instead of watching a cluster.
//!
//! Used for the demo cluster, for reproducing a customer's view from an export, and for
//! tests. A malformed file stops start-up with the file, the item index and what is wrong;
//! kinds we do not use are skipped.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
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

/// The objects of a snapshot file, by kind.
#[derive(Debug, Default)]
pub struct ClusterExport {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub config_maps: Vec<ConfigMap>,
}

pub fn load(path: &Path) -> Result<ClusterExport, SnapshotFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses the text of a snapshot file; `path` is only used in messages.
pub fn parse(path: &str, text: &str) -> Result<ClusterExport, SnapshotFileError> {
    let trimmed = text.trim_start();
    let document: Value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| SnapshotFileError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?
    } else {
        serde_saphyr::from_str(text).map_err(|e| SnapshotFileError::Syntax {
            path: path.into(),
            message: e.to_string(),
        })?
    };
    let shape = |message: &str| SnapshotFileError::Shape {
        path: path.into(),
        message: message.into(),
    };
    let (list_kind, items) = match &document {
        Value::Object(map) => (
            map.get("kind").and_then(Value::as_str).unwrap_or_default(),
            map.get("items")
                .and_then(Value::as_array)
                .ok_or_else(|| shape("expected a List object with an `items` array"))?,
        ),
        Value::Array(items) => ("", items),
        _ => return Err(shape("expected a List object with an `items` array")),
    };
    // Items of a typed list (`PodList`) may omit their own kind.
    let implied_kind = list_kind.strip_suffix("List").filter(|k| !k.is_empty());
    let mut export = ClusterExport::default();
    for (index, item) in items.iter().enumerate() {
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .or(implied_kind)
            .unwrap_or_default();
        let name = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_error = |message: String| SnapshotFileError::Item {
            path: path.into(),
            index,
            kind: kind.to_string(),
            name: name.to_string(),
            message,
        };
        match kind {
            "Node" => export
                .nodes
                .push(serde_json::from_value(item.clone()).map_err(|e| item_error(e.to_string()))?),
            "Pod" => export
                .pods
                .push(serde_json::from_value(item.clone()).map_err(|e| item_error(e.to_string()))?),
            "ConfigMap" => export
                .config_maps
                .push(serde_json::from_value(item.clone()).map_err(|e| item_error(e.to_string()))?),
            "" => return Err(item_error("item has no kind".into())),
            other => tracing::debug!(
                index,
                kind = other,
                "snapshot item of an unused kind skipped"
            ),
        }
    }
    Ok(export)
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
