//! The metrics-store lookups the card and node lists make — exactly the Go backend's four
//! PromQL expressions, each one batched query per request, never one per device or node —
//! and how their answers become capacity overrides.
//!
//! Any failure (unreachable store, error, warnings, a non-vector result) yields no
//! overrides: the lists then show registered capacity, as Go fell back.

use std::collections::HashMap;

use crate::query_client::{QueryData, QueryError, QueryOutput};

/// Per-device core capacity for the card list, keyed by `device_uuid`.
pub const DEVICE_CORE_QUERY: &str = "avg(hami_core_size) by (device_uuid)";
/// Per-device memory capacity (MiB) for the card list, keyed by `device_uuid`.
pub const DEVICE_MEMORY_QUERY: &str = "avg(hami_memory_size) by (device_uuid)";
/// Per-node core capacity for the node list, keyed by `node`: summed per exporter
/// instance first, so two exporters scraping one node are not double-counted.
pub const NODE_CORE_QUERY: &str = "avg(sum(hami_core_size) by (node, instance)) by (node)";
/// Per-node memory capacity (MiB) for the node list, keyed by `node`.
pub const NODE_MEMORY_QUERY: &str = "avg(sum(hami_memory_size) by (node, instance)) by (node)";

/// Label the card list's overrides are keyed by.
pub const DEVICE_LABEL: &str = "device_uuid";
/// Label the node list's overrides are keyed by.
pub const NODE_LABEL: &str = "node";

/// Values of an instant-vector answer keyed by `label`. Samples without the label are
/// skipped; a later sample with the same label value wins. Values go through float32 (the
/// Go backend's sample type) and are truncated toward zero to int32.
pub fn gauge_by_label(
    answer: Result<&QueryOutput, &QueryError>,
    label: &str,
) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    let Ok(output) = answer else {
        return out;
    };
    if !output.warnings.is_empty() {
        return out;
    }
    let QueryData::Vector(samples) = &output.data else {
        return out;
    };
    for sample in samples {
        match sample.metric.get(label) {
            Some(key) if !key.is_empty() => {
                out.insert(key.to_string(), sample.value as f32 as i32);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_client::Sample;

    fn sample(label: Option<(&str, &str)>, value: f64) -> Sample {
        Sample {
            metric: label
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into_iter()
                .collect(),
            timestamp: 0.0,
            value,
        }
    }

    fn vector(samples: Vec<Sample>, warnings: Vec<String>) -> QueryOutput {
        QueryOutput {
            data: QueryData::Vector(samples),
            warnings,
        }
    }

    #[test]
    fn values_are_truncated_and_keyed_by_label() {
        let output = vector(
            vec![
                sample(Some(("node", "a")), 99.9),
                sample(Some(("node", "b")), -1.5),
                sample(Some(("node", "")), 5.0),
                sample(None, 7.0),
                sample(Some(("node", "c")), 16_777_217.0),
            ],
            vec![],
        );
        let map = gauge_by_label(Ok(&output), "node");
        assert_eq!(map.len(), 3);
        assert_eq!(map["a"], 99);
        assert_eq!(map["b"], -1);
        assert_eq!(map["c"], 16_777_216, "through float32, as Go");
    }

    #[test]
    fn failures_warnings_and_other_types_give_nothing() {
        let warned = vector(vec![sample(Some(("node", "a")), 1.0)], vec!["w".into()]);
        assert!(gauge_by_label(Ok(&warned), "node").is_empty());
        let scalar = QueryOutput {
            data: QueryData::Scalar(0.0, 1.0),
            warnings: vec![],
        };
        assert!(gauge_by_label(Ok(&scalar), "node").is_empty());
        assert!(gauge_by_label(Err(&QueryError::Timeout), "node").is_empty());
    }
}
