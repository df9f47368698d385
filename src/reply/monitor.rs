//! The PromQL pass-through's messages (API contract §6.9–6.10): the requests of
//! `POST /v1/monitor/query/instant-vector` and `…/range-vector`, and their replies as the Go
//! backend's protobuf JSON rendered them — `float` values in float32 form, `int64` timestamps
//! as strings, and range series filled to the step grid by [`fill_gaps`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::query_client::{QueryData, QueryOutput, SeriesLabels};
use crate::reply::protojson::{Float32, Int64};
use crate::reply::request::{string, FieldKind, FieldSchema, MessageSchema, ProtoRequest};

/// Upper bound on the points [`fill_gaps`] emits per series. The upstreams already cap
/// points per series (Prometheus 11 000, VictoriaMetrics 30 000 by default) and the grid
/// starts within one step of `start`, so this only guards against a misbehaving upstream.
pub const MAX_FILLED_POINTS: usize = 1_000_000;

/// `QueryInstantRequest`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InstantRequest {
    pub query: String,
}

impl ProtoRequest for InstantRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[string("query", "query")],
    };
}

/// `Range` of a `QueryRangeRequest`; all three are text, parsed by the handler.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RangeSpec {
    pub start: String,
    pub end: String,
    pub step: String,
}

const RANGE: MessageSchema = MessageSchema {
    fields: &[
        string("start", "start"),
        string("end", "end"),
        string("step", "step"),
    ],
};

/// `QueryRangeRequest`. A missing `range` reads as empty strings, which fail to parse as
/// Go's `GetStart()` on a nil message did.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RangeRequest {
    pub query: String,
    pub range: RangeSpec,
}

impl ProtoRequest for RangeRequest {
    const SCHEMA: &'static MessageSchema = &MessageSchema {
        fields: &[
            string("query", "query"),
            FieldSchema {
                proto: "range",
                json: "range",
                kind: FieldKind::Message(&RANGE),
            },
        ],
    };
}

/// `SamplePair`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SamplePair {
    pub value: Float32,
    pub timestamp: Int64,
}

/// `SampleStream`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleStream {
    pub metric: SeriesLabels,
    pub values: Vec<SamplePair>,
}

/// `RangeResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeResponse {
    pub data: Vec<SampleStream>,
}

/// `Sample` of an `InstantResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstantSample {
    pub metric: SeriesLabels,
    pub value: Float32,
    pub timestamp: Int64,
}

/// `InstantResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstantResponse {
    pub data: Vec<InstantSample>,
}

/// The store answered a query with a result of the other type (Go's cast errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResultTypeError {
    #[error("Error casting result to model.Vector")]
    NotAVector,
    #[error("Error casting result to model.Matrix")]
    NotAMatrix,
}

pub fn instant_reply(output: &QueryOutput) -> Result<InstantResponse, ResultTypeError> {
    let QueryData::Vector(samples) = &output.data else {
        return Err(ResultTypeError::NotAVector);
    };
    Ok(InstantResponse {
        data: samples
            .iter()
            .map(|s| InstantSample {
                metric: s.metric.clone(),
                value: Float32(s.value as f32),
                timestamp: Int64(millis(s.timestamp)),
            })
            .collect(),
    })
}

pub fn range_reply(output: &QueryOutput, grid: Grid) -> Result<RangeResponse, ResultTypeError> {
    let QueryData::Matrix(series) = &output.data else {
        return Err(ResultTypeError::NotAMatrix);
    };
    Ok(RangeResponse {
        data: series
            .iter()
            .map(|s| {
                let points: Vec<(i64, f32)> = s
                    .values
                    .iter()
                    .map(|&(t, v)| (millis(t), v as f32))
                    .collect();
                SampleStream {
                    metric: s.metric.clone(),
                    values: fill_gaps(grid, &points)
                        .into_iter()
                        .map(|(t, v)| SamplePair {
                            value: Float32(v),
                            timestamp: Int64(t),
                        })
                        .collect(),
                }
            })
            .collect(),
    })
}

/// Upstream timestamps are Unix seconds with millisecond digits; Prometheus' own client
/// reads them as integer milliseconds, so rounding recovers exactly those.
fn millis(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// Unix seconds as Go's client formats a `time.Time` for the API (seconds + nanos / 1e9).
pub fn unix_seconds(t: jiff::Timestamp) -> f64 {
    t.as_second() as f64 + f64::from(t.subsec_nanosecond()) / 1e9
}

/// The requested range in milliseconds, as §6.9's gap filling sees it: `S`, `E`, `P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

/// Contract §6.9 gap filling of one series: points `T0, T0+P, …` up to `E`, each with the
/// sample at exactly that timestamp or 0; samples off the grid are dropped. `T0` is `S` for
/// an empty series or when the first sample `F` is at `S` (Prometheus aligns to `start`);
/// `F` when `|F − S| ≤ P` (VictoriaMetrics aligns to multiples of the step); otherwise the
/// point of `F`'s grid nearest to `S` on `F`'s side (`F − ((F − S) / P)·P`, truncating).
///
/// A step below one millisecond (`P = 0`) has no grid: the samples are returned as they
/// are (Go divided by zero there).
pub fn fill_gaps(grid: Grid, samples: &[(i64, f32)]) -> Vec<(i64, f32)> {
    let Grid {
        start_ms: s,
        end_ms: e,
        step_ms: p,
    } = grid;
    if p <= 0 {
        return samples.to_vec();
    }
    let origin = match samples.first() {
        None => s,
        Some(&(f, _)) if f == s => s,
        Some(&(f, _)) if f.abs_diff(s) <= p.unsigned_abs() => f,
        Some(&(f, _)) => f - ((f - s) / p) * p,
    };
    if e < origin {
        return Vec::new();
    }
    // Later samples at the same timestamp win, as in Go's map.
    let existing: HashMap<i64, f32> = samples.iter().copied().collect();
    let count = usize::try_from((e - origin) / p)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .min(MAX_FILLED_POINTS);
    (0..count)
        .map(|i| {
            let t = origin + p * i as i64;
            (t, existing.get(&t).copied().unwrap_or(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Points = Vec<(i64, f32)>;

    const S: i64 = 1_000_000;
    const P: i64 = 60_000;

    fn grid(points: i64) -> Grid {
        Grid {
            start_ms: S,
            end_ms: S + points * P,
            step_ms: P,
        }
    }

    #[test]
    fn gap_filling_follows_the_contract() {
        let table: Vec<(&str, Grid, Points, Points)> = vec![
            (
                "empty series: zeros on S's grid",
                grid(2),
                vec![],
                vec![(S, 0.0), (S + P, 0.0), (S + 2 * P, 0.0)],
            ),
            (
                "Prometheus alignment, missing middle point",
                grid(2),
                vec![(S, 1.0), (S + 2 * P, 3.0)],
                vec![(S, 1.0), (S + P, 0.0), (S + 2 * P, 3.0)],
            ),
            (
                "VictoriaMetrics alignment within one step after S",
                grid(2),
                vec![(S + 20_000, 1.0), (S + 20_000 + P, 2.0)],
                vec![(S + 20_000, 1.0), (S + 20_000 + P, 2.0)],
            ),
            (
                "VictoriaMetrics alignment within one step before S",
                grid(1),
                vec![(S - 20_000, 1.0)],
                vec![(S - 20_000, 1.0), (S - 20_000 + P, 0.0)],
            ),
            (
                "first sample far after S: F's grid from the first point at or after S",
                grid(4),
                vec![(S + 3 * P + 5_000, 7.0)],
                vec![
                    (S + 5_000, 0.0),
                    (S + P + 5_000, 0.0),
                    (S + 2 * P + 5_000, 0.0),
                    (S + 3 * P + 5_000, 7.0),
                ],
            ),
            (
                "first sample far before S: last point of F's grid at or before S",
                grid(1),
                vec![(S - 3 * P - 5_000, 7.0)],
                vec![(S - 5_000, 0.0), (S + P - 5_000, 0.0)],
            ),
            (
                "off-grid samples are dropped",
                grid(1),
                vec![(S, 1.0), (S + 1, 9.0), (S + P, 2.0)],
                vec![(S, 1.0), (S + P, 2.0)],
            ),
            (
                "end before the origin: no points",
                Grid {
                    start_ms: S,
                    end_ms: S - 1,
                    step_ms: P,
                },
                vec![],
                vec![],
            ),
            (
                "sub-millisecond step: samples unchanged",
                Grid {
                    start_ms: S,
                    end_ms: S + 10,
                    step_ms: 0,
                },
                vec![(S + 3, 1.0)],
                vec![(S + 3, 1.0)],
            ),
        ];
        for (name, grid, samples, expected) in table {
            assert_eq!(fill_gaps(grid, &samples), expected, "{name}");
        }
    }

    #[test]
    fn gap_filling_is_bounded() {
        let huge = Grid {
            start_ms: 0,
            end_ms: i64::MAX,
            step_ms: 1,
        };
        assert_eq!(fill_gaps(huge, &[]).len(), MAX_FILLED_POINTS);
    }

    #[test]
    fn replies_render_float32_and_string_timestamps() {
        let output = QueryOutput {
            data: QueryData::Vector(vec![crate::query_client::Sample {
                metric: [("node", "n1")].into_iter().collect(),
                timestamp: 1_746_064_812.345,
                value: 0.1,
            }]),
            warnings: vec![],
        };
        let json = serde_json::to_string(&instant_reply(&output).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"data":[{"metric":{"node":"n1"},"value":0.1,"timestamp":"1746064812345"}]}"#
        );
        let matrix = QueryOutput {
            data: QueryData::Matrix(vec![crate::query_client::Series {
                metric: SeriesLabels::default(),
                values: vec![(1.0, f64::NAN), (2.0, 16_777_217.0)],
            }]),
            warnings: vec![],
        };
        let grid = Grid {
            start_ms: 1000,
            end_ms: 2000,
            step_ms: 1000,
        };
        let json = serde_json::to_string(&range_reply(&matrix, grid).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"data":[{"metric":{},"values":[{"value":"NaN","timestamp":"1000"},{"value":16777216,"timestamp":"2000"}]}]}"#
        );
        assert_eq!(
            instant_reply(&matrix).unwrap_err().to_string(),
            "Error casting result to model.Vector"
        );
        assert_eq!(
            range_reply(&output, grid).unwrap_err().to_string(),
            "Error casting result to model.Matrix"
        );
    }
}
