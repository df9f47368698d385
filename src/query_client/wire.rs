//! The Prometheus HTTP API's JSON (`/api/v1/query`, `/api/v1/query_range`), as both
//! Prometheus and VictoriaMetrics write it, decoded into [`QueryOutput`] or [`QueryError`].
//!
//! Pure: bytes and the HTTP status in, typed result out. The result is decoded straight into
//! the typed shape (no intermediate `serde_json::Value`) because a range answer can be tens
//! of MiB; only when an upstream writes `result` before `resultType` is it buffered once.
//! Sample values are read as borrowed text (no allocation per sample, ~170,000 of them per
//! refresh cycle at 10,000 GPUs); label text is shared across an answer ([`SeriesLabels`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::labels::LabelInterner;
use super::{QueryData, QueryError, QueryOutput, Sample, Series, SeriesLabels};

/// Decodes one answer. Non-2xx statuses and `"status":"error"` bodies become
/// [`QueryError::Upstream`] with the upstream's own `errorType` and `error`; anything that
/// is not the API's JSON on a 2xx status is [`QueryError::Decode`].
pub(super) fn decode(status: u16, body: &[u8]) -> Result<QueryOutput, QueryError> {
    if !(200..300).contains(&status) {
        return Err(upstream_error(status, body));
    }
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| decode_error(&e))?;
    if envelope.status.as_deref() == Some("error") {
        return Err(QueryError::Upstream {
            status,
            error_type: envelope.error_type.unwrap_or_default(),
            message: envelope.error.unwrap_or_default(),
        });
    }
    match envelope.data {
        Some(ResultData(data)) => Ok(QueryOutput {
            data,
            warnings: envelope.warnings.unwrap_or_default(),
        }),
        None => Err(QueryError::Decode("answer without data".into())),
    }
}

/// An error status: the API's error JSON when there is one, else the status alone (a proxy's
/// HTML page is not worth relaying, and might echo request headers).
fn upstream_error(status: u16, body: &[u8]) -> QueryError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        error: Option<String>,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error_type,
            error: Some(message),
        }) => QueryError::Upstream {
            status,
            error_type: error_type.unwrap_or_default(),
            message,
        },
        _ => {
            let reason = actix_web::http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            QueryError::Upstream {
                status,
                error_type: String::new(),
                message: format!("server returned HTTP status {status} {reason}")
                    .trim_end()
                    .to_string(),
            }
        }
    }
}

fn decode_error(error: &serde_json::Error) -> QueryError {
    // serde_json's messages name positions and expected tokens, never input text.
    QueryError::Decode(error.to_string())
}

#[derive(Deserialize)]
struct Envelope {
    status: Option<String>,
    data: Option<ResultData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    warnings: Option<Vec<String>>,
}

/// `data: {"resultType": …, "result": …}` decoded by type.
struct ResultData(QueryData);

impl<'de> Deserialize<'de> for ResultData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = ResultData;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with resultType and result")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultData, A::Error> {
        let mut kind: Option<String> = None;
        let mut data: Option<QueryData> = None;
        let mut deferred: Option<serde_json::Value> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resultType" => kind = Some(map.next_value()?),
                "result" => match &kind {
                    Some(k) => data = Some(map.next_value_seed(TypedResult(k))?),
                    None => deferred = Some(map.next_value()?),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("resultType"))?;
        match (data, deferred) {
            (Some(data), _) => Ok(ResultData(data)),
            (None, Some(value)) => TypedResult(&kind)
                .deserialize(value)
                .map(ResultData)
                .map_err(de::Error::custom),
            (None, None) => Err(de::Error::missing_field("result")),
        }
    }
}

/// `result` of the given `resultType`.
struct TypedResult<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for TypedResult<'_> {
    type Value = QueryData;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<QueryData, D::Error> {
        match self.0 {
            "vector" => deserializer
                .deserialize_seq(VectorVisitor)
                .map(QueryData::Vector),
            "matrix" => deserializer
                .deserialize_seq(MatrixVisitor)
                .map(QueryData::Matrix),
            "scalar" => {
                let (t, v) = <(f64, String)>::deserialize(deserializer)?;
                Ok(QueryData::Scalar(t, parse_value(&v)?))
            }
            "string" => {
                let (t, v) = <(f64, String)>::deserialize(deserializer)?;
                Ok(QueryData::String(t, v))
            }
            other => Err(de::Error::custom(format!("unknown resultType {other:?}"))),
        }
    }
}

/// An instant vector, element by element into [`Sample`]s (no intermediate list), the
/// label text shared across the answer.
struct VectorVisitor;

impl<'de> Visitor<'de> for VectorVisitor {
    type Value = Vec<Sample>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Sample>, A::Error> {
        let mut interner = LabelInterner::default();
        let mut samples = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(element) = seq.next_element_seed(ElementSeed {
            interner: &mut interner,
            points: PointsField::Value,
        })? {
            // A native-histogram sample has no `value`; this client reads floats only.
            if let Element {
                labels,
                points: Points::Value(Some((timestamp, value))),
            } = element
            {
                samples.push(Sample {
                    metric: labels,
                    timestamp,
                    value: parse_value(&value.0)?,
                });
            }
        }
        let texts = interner.into_texts();
        for sample in &mut samples {
            sample.metric.bind(&texts);
        }
        // Grown by doubling, it held up to twice its samples' size for the whole cycle: at
        // 10,000 GPUs about 4 MB of the cycle's peak.
        samples.shrink_to_fit();
        Ok(samples)
    }
}

/// A range result, series by series into [`Series`], the label text shared across the answer.
struct MatrixVisitor;

impl<'de> Visitor<'de> for MatrixVisitor {
    type Value = Vec<Series>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of series")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Series>, A::Error> {
        let mut interner = LabelInterner::default();
        let mut series = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(element) = seq.next_element_seed(ElementSeed {
            interner: &mut interner,
            points: PointsField::Values,
        })? {
            let Points::Values(values) = element.points else {
                continue;
            };
            let values = values
                .unwrap_or_default()
                .into_iter()
                .map(|(t, v)| parse_value(&v.0).map(|v| (t, v)))
                .collect::<Result<Vec<_>, _>>()?;
            series.push(Series {
                metric: element.labels,
                values,
            });
        }
        let texts = interner.into_texts();
        for one in &mut series {
            one.metric.bind(&texts);
        }
        Ok(series)
    }
}

/// Which field of a result element holds its points.
#[derive(Clone, Copy)]
enum PointsField {
    /// `value`: one `[t, "v"]` (instant vectors).
    Value,
    /// `values`: a list of them (range results).
    Values,
}

enum Points<'a> {
    Value(Option<(f64, Text<'a>)>),
    Values(Option<Vec<(f64, Text<'a>)>>),
}

/// One element of `result`: `{"metric": {…}, "value"|"values": …}`; other fields are skipped.
struct Element<'a> {
    labels: SeriesLabels,
    points: Points<'a>,
}

struct ElementSeed<'i> {
    interner: &'i mut LabelInterner,
    points: PointsField,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = Element<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Element<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_> {
    type Value = Element<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a result element with metric and value(s)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element<'de>, A::Error> {
        let mut labels = None;
        let mut points = match self.points {
            PointsField::Value => Points::Value(None),
            PointsField::Values => Points::Values(None),
        };
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match (key.0.as_ref(), self.points) {
                ("metric", _) => {
                    labels = Some(map.next_value_seed(LabelsSeed(&mut *self.interner))?)
                }
                ("value", PointsField::Value) => points = Points::Value(map.next_value()?),
                ("values", PointsField::Values) => points = Points::Values(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Element {
            labels: labels.unwrap_or_default(),
            points,
        })
    }
}

/// `metric`: a JSON object of string values, read into interned [`SeriesLabels`].
struct LabelsSeed<'i>(&'i mut LabelInterner);

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = SeriesLabels;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<SeriesLabels, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LabelsSeed<'_> {
    type Value = SeriesLabels;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of label names to string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SeriesLabels, A::Error> {
        while let Some(name) = map.next_key::<Text<'de>>()? {
            let value = map.next_value::<Text<'de>>()?;
            self.0.push(&name.0, &value.0);
        }
        Ok(self.0.finish())
    }
}

/// A JSON string borrowed from the body when it has no escapes (always, for sample values).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// Sample values travel as strings so that `NaN` and `±Inf` survive JSON.
fn parse_value<E: de::Error>(text: &str) -> Result<f64, E> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text
            .parse::<f64>()
            .map_err(|_| E::custom(format!("invalid sample value {text:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn decodes_each_result_type() {
        let table: Vec<(&str, QueryData)> = vec![
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"x"},"value":[1700000000.5,"1"]}]}}"#,
                QueryData::Vector(vec![Sample {
                    metric: labels(&[("__name__", "up"), ("job", "x")]),
                    timestamp: 1_700_000_000.5,
                    value: 1.0,
                }]),
            ),
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"NaN"],[2,"+Inf"],[3,"-Inf"],[4,"2.5e3"]]}]}}"#,
                QueryData::Matrix(vec![Series {
                    metric: SeriesLabels::default(),
                    values: vec![
                        (1.0, f64::NAN),
                        (2.0, f64::INFINITY),
                        (3.0, f64::NEG_INFINITY),
                        (4.0, 2500.0),
                    ],
                }]),
            ),
            (
                r#"{"status":"success","data":{"resultType":"scalar","result":[10,"3"]}}"#,
                QueryData::Scalar(10.0, 3.0),
            ),
            (
                r#"{"status":"success","data":{"result":[10,"hi"],"resultType":"string"}}"#,
                QueryData::String(10.0, "hi".into()),
            ),
        ];
        for (body, expected) in table {
            let out = decode(200, body.as_bytes()).unwrap();
            // NaN != NaN: compare the debug text instead.
            assert_eq!(format!("{:?}", out.data), format!("{expected:?}"), "{body}");
        }
    }

    #[test]
    fn escaped_values_and_result_before_result_type_decode_too() {
        let body = r#"{"status":"success","data":{"result":[{"metric":{"a":"\u0062"},"value":[1,"1\u0030"]}],"resultType":"vector"}}"#;
        let out = decode(200, body.as_bytes()).unwrap();
        assert_eq!(
            out.data,
            QueryData::Vector(vec![Sample {
                metric: labels(&[("a", "b")]),
                timestamp: 1.0,
                value: 10.0,
            }])
        );
    }

    #[test]
    fn keeps_warnings_and_ignores_extra_fields() {
        let body = r#"{"status":"success","isPartial":false,"stats":{"seriesFetched":"1"},
            "data":{"resultType":"vector","result":[],"extra":1},"warnings":["w1","w2"]}"#;
        let out = decode(200, body.as_bytes()).unwrap();
        assert_eq!(out.data, QueryData::Vector(vec![]));
        assert_eq!(out.warnings, vec!["w1".to_string(), "w2".to_string()]);
    }

    #[test]
    fn error_json_becomes_upstream_error_with_the_upstream_text() {
        let body =
            r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected \"%\""}"#;
        assert_eq!(
            decode(400, body.as_bytes()).unwrap_err(),
            QueryError::Upstream {
                status: 400,
                error_type: "bad_data".into(),
                message: "parse error: unexpected \"%\"".into(),
            }
        );
        assert!(matches!(
            decode(200, body.as_bytes()).unwrap_err(),
            QueryError::Upstream { status: 200, .. }
        ));
    }

    #[test]
    fn non_json_error_status_names_only_the_status() {
        let err = decode(502, b"<html>Authorization: Bearer secret</html>").unwrap_err();
        assert_eq!(
            err,
            QueryError::Upstream {
                status: 502,
                error_type: String::new(),
                message: "server returned HTTP status 502 Bad Gateway".into(),
            }
        );
    }

    #[test]
    fn malformed_success_bodies_are_decode_errors() {
        let cases: &[&str] = &[
            "not json",
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"x"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"histogram","result":[]}}"#,
            r#"{"status":"success","data":{"result":[]}}"#,
        ];
        for body in cases {
            assert!(
                matches!(decode(200, body.as_bytes()), Err(QueryError::Decode(_))),
                "{body}"
            );
        }
    }
}
