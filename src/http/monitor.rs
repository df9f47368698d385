//! The PromQL pass-through routes the frontend's charts are drawn from:
//! `POST /v1/monitor/query/instant-vector` and `POST /v1/monitor/query/range-vector`
//! (API contract §6.9–6.10).
//!
//! The handlers decode the request (kratos rules, [`ProtoBody`]), parse the range in the
//! configured zone, ask the [`QueryClient`] and shape the reply as the Go backend's
//! protobuf JSON did: `float` values in float32 form, `int64` timestamps as strings, and
//! range series filled to the step grid by [`fill_gaps`]. The pure parts ([`parse_datetime`],
//! [`fill_gaps`]) are table-tested below.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::duration::parse_go_duration;
use crate::error::ApiError;
use crate::query_client::{Lane, Query, QueryClient, QueryData, QueryOutput, RunQuery};
use crate::reply::context::RestContext;
use crate::reply::protojson::{Float32, Int64};
use crate::reply::request::{
    string, FieldKind, FieldSchema, MessageSchema, ProtoBody, ProtoRequest,
};

/// Go's `time.DateTime`, the layout of `range.start` and `range.end`.
const LAYOUT: &str = "2006-01-02 15:04:05";

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
    pub metric: BTreeMap<String, String>,
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
    pub metric: BTreeMap<String, String>,
    pub value: Float32,
    pub timestamp: Int64,
}

/// `InstantResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstantResponse {
    pub data: Vec<InstantSample>,
}

/// `POST /v1/monitor/query/instant-vector`: the query at the upstream's "now".
pub async fn instant_vector(
    req: HttpRequest,
    ctx: RestContext,
    ProtoBody(request): ProtoBody<InstantRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let query = Query::Instant {
            expr: request.query,
            time: None,
        };
        let output = ask(&req, &ctx, query).await?;
        Ok(HttpResponse::Ok().json(instant_reply(&output)?))
    })
    .await
}

/// `POST /v1/monitor/query/range-vector`.
pub async fn range_vector(
    req: HttpRequest,
    ctx: RestContext,
    ProtoBody(request): ProtoBody<RangeRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let start = parse_datetime(&request.range.start, &ctx.zone).map_err(ApiError::Transform)?;
        let end = parse_datetime(&request.range.end, &ctx.zone).map_err(ApiError::Transform)?;
        let step = parse_go_duration(&request.range.step)
            .map_err(|_| ApiError::Transform(go_duration_error(&request.range.step)))?;
        let query = Query::Range {
            expr: request.query,
            start: unix_seconds(start),
            end: unix_seconds(end),
            step,
        };
        let output = ask(&req, &ctx, query).await?;
        let grid = Grid {
            start_ms: start.as_millisecond(),
            end_ms: end.as_millisecond(),
            step_ms: i64::try_from(step.as_millis()).unwrap_or(i64::MAX),
        };
        Ok(HttpResponse::Ok().json(range_reply(&output, grid)?))
    })
    .await
}

/// Sends the query with the request's deadline, shortened to `prometheus.timeout` (Go sent
/// that as the upstream `timeout` and bounded the call by the request's deadline).
async fn ask(
    req: &HttpRequest,
    ctx: &RestContext,
    query: Query,
) -> Result<Arc<QueryOutput>, ApiError> {
    let client = req
        .app_data::<web::Data<Addr<QueryClient>>>()
        .ok_or_else(|| ApiError::Unavailable("the metrics store client is not running".into()))?;
    let query_timeout = req
        .app_data::<web::Data<Config>>()
        .map_or(Duration::from_secs(60), |c| c.prometheus.timeout);
    let deadline = ctx.deadline().min(Instant::now() + query_timeout);
    let output = client
        .send(RunQuery {
            query,
            deadline: Some(deadline),
            lane: Lane::Interactive,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the metrics store client is not running".into()))??;
    if !output.warnings.is_empty() {
        // Go's `fmt.Errorf("warnings: %v", warnings)`.
        return Err(ApiError::Domain(format!(
            "warnings: [{}]",
            output.warnings.join(" ")
        )));
    }
    Ok(output)
}

fn instant_reply(output: &QueryOutput) -> Result<InstantResponse, ApiError> {
    let QueryData::Vector(samples) = &output.data else {
        return Err(ApiError::Transform(
            "Error casting result to model.Vector".into(),
        ));
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

fn range_reply(output: &QueryOutput, grid: Grid) -> Result<RangeResponse, ApiError> {
    let QueryData::Matrix(series) = &output.data else {
        return Err(ApiError::Transform(
            "Error casting result to model.Matrix".into(),
        ));
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
fn unix_seconds(t: jiff::Timestamp) -> f64 {
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

/// The text of Go's `time.ParseDuration` error for `text` (which failed to parse): Go names
/// a missing or unknown unit, and says "invalid duration" for everything else.
fn go_duration_error(text: &str) -> String {
    let quoted = format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    // Bounded by the input: every round consumes at least one byte or returns.
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if !rest[..number_len].bytes().any(|b| b.is_ascii_digit()) {
            break;
        }
        let tail = &rest[number_len..];
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(tail.len(), |(i, _)| i);
        let unit = &tail[..unit_len];
        if unit.is_empty() {
            return format!("time: missing unit in duration {quoted}");
        }
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return format!("time: unknown unit \"{unit}\" in duration {quoted}");
        }
        rest = &tail[unit_len..];
    }
    format!("time: invalid duration {quoted}")
}

/// Go's `time.ParseInLocation(time.DateTime, text, zone)`: `YYYY-MM-DD HH:MM:SS` with an
/// optional fractional-seconds suffix (`.123` or `,123`), hour of one or two digits, every
/// other field of exactly its width. Errors are Go's texts, which the frontend shows.
pub fn parse_datetime(text: &str, zone: &TimeZone) -> Result<jiff::Timestamp, String> {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mismatch = |rest: &str, elem: &str| {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            quote(text),
            quote(LAYOUT),
            quote(rest),
            quote(elem)
        )
    };
    let out_of_range = |what: &str| format!("parsing time {}: {what} out of range", quote(text));

    let mut rest = text;
    let literal = |rest: &mut &str, lit: &str| -> Result<(), String> {
        match rest.strip_prefix(lit) {
            Some(tail) => {
                *rest = tail;
                Ok(())
            }
            None => Err(mismatch(rest, lit)),
        }
    };
    // Go's `getnum`: one or two digits; `fixed` demands two.
    let number = |rest: &mut &str, elem: &str, fixed: bool| -> Result<i64, String> {
        let bytes = rest.as_bytes();
        let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
        let width = match (digit(0), digit(1)) {
            (false, _) => return Err(mismatch(rest, elem)),
            (true, false) if fixed => return Err(mismatch(rest, elem)),
            (true, false) => 1,
            (true, true) => 2,
        };
        let value = rest[..width]
            .parse::<i64>()
            .map_err(|_| mismatch(rest, elem))?;
        *rest = &rest[width..];
        Ok(value)
    };

    let year = match rest.get(..4) {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            rest = &rest[4..];
            digits.parse::<i64>().map_err(|_| mismatch(text, "2006"))?
        }
        _ => return Err(mismatch(rest, "2006")),
    };
    literal(&mut rest, "-")?;
    let month = number(&mut rest, "01", true)?;
    if !(1..=12).contains(&month) {
        return Err(out_of_range("month"));
    }
    literal(&mut rest, "-")?;
    let day = number(&mut rest, "02", true)?;
    literal(&mut rest, " ")?;
    let hour = number(&mut rest, "15", false)?;
    if !(0..24).contains(&hour) {
        return Err(out_of_range("hour"));
    }
    literal(&mut rest, ":")?;
    let minute = number(&mut rest, "04", true)?;
    if !(0..60).contains(&minute) {
        return Err(out_of_range("minute"));
    }
    literal(&mut rest, ":")?;
    let second = number(&mut rest, "05", true)?;
    if !(0..60).contains(&second) {
        return Err(out_of_range("second"));
    }
    let mut nanos: i64 = 0;
    let bytes = rest.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'.' || bytes[0] == b',') && bytes[1].is_ascii_digit() {
        let digits = bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        // Go reads at most nine digits and skips the others.
        for (i, b) in bytes[1..=digits].iter().take(9).enumerate() {
            nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        rest = &rest[1 + digits..];
    }
    if !rest.is_empty() {
        return Err(format!(
            "parsing time {}: extra text: {}",
            quote(text),
            quote(rest)
        ));
    }
    let date = i16::try_from(year)
        .ok()
        .and_then(|y| jiff::civil::Date::new(y, month as i8, day as i8).ok())
        .ok_or_else(|| out_of_range("day"))?;
    let datetime = date.to_datetime(
        jiff::civil::Time::new(hour as i8, minute as i8, second as i8, nanos as i32)
            .map_err(|_| out_of_range("second"))?,
    );
    zone.to_ambiguous_zoned(datetime)
        .compatible()
        .map(|z| z.timestamp())
        .map_err(|e| format!("parsing time {}: {e}", quote(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    #[test]
    fn datetimes_parse_in_the_configured_zone() {
        let table: &[(&str, i64)] = &[
            // 2025-05-01 10:00:00 +08:00
            ("2025-05-01 10:00:00", 1_746_064_800_000),
            ("2025-05-01 10:00:00.250", 1_746_064_800_250),
            ("2025-05-01 10:00:00,5", 1_746_064_800_500),
            ("2025-05-01 9:00:00", 1_746_061_200_000),
            ("2024-02-29 00:00:00", 1_709_136_000_000),
        ];
        for (text, ms) in table {
            let t = parse_datetime(text, &shanghai()).unwrap();
            assert_eq!(t.as_millisecond(), *ms, "{text}");
        }
        let utc = parse_datetime("1970-01-01 00:00:01", &TimeZone::UTC).unwrap();
        assert_eq!(utc.as_millisecond(), 1000);
    }

    #[test]
    fn datetime_errors_are_gos_texts() {
        let layout = "\"2006-01-02 15:04:05\"";
        let table: Vec<(&str, String)> = vec![
            (
                "",
                format!("parsing time \"\" as {layout}: cannot parse \"\" as \"2006\""),
            ),
            (
                "2025/05/01 10:00:00",
                format!(
                    "parsing time \"2025/05/01 10:00:00\" as {layout}: cannot parse \"/05/01 10:00:00\" as \"-\""
                ),
            ),
            (
                "2025-5-01 10:00:00",
                format!(
                    "parsing time \"2025-5-01 10:00:00\" as {layout}: cannot parse \"5-01 10:00:00\" as \"01\""
                ),
            ),
            (
                "2025-13-01 10:00:00",
                "parsing time \"2025-13-01 10:00:00\": month out of range".to_string(),
            ),
            (
                "2025-02-30 10:00:00",
                "parsing time \"2025-02-30 10:00:00\": day out of range".to_string(),
            ),
            (
                "2025-05-01 24:00:00",
                "parsing time \"2025-05-01 24:00:00\": hour out of range".to_string(),
            ),
            (
                "2025-05-01 10:00:00Z",
                "parsing time \"2025-05-01 10:00:00Z\": extra text: \"Z\"".to_string(),
            ),
            (
                "2025-05-01T10:00:00",
                format!(
                    "parsing time \"2025-05-01T10:00:00\" as {layout}: cannot parse \"T10:00:00\" as \" \""
                ),
            ),
        ];
        for (text, expected) in table {
            assert_eq!(parse_datetime(text, &shanghai()).unwrap_err(), expected);
        }
    }

    #[test]
    fn duration_errors_are_gos_texts() {
        let table = [
            ("", "time: invalid duration \"\""),
            ("1d", "time: unknown unit \"d\" in duration \"1d\""),
            ("1h5x", "time: unknown unit \"x\" in duration \"1h5x\""),
            ("10", "time: missing unit in duration \"10\""),
            ("abc", "time: invalid duration \"abc\""),
            ("-1m", "time: invalid duration \"-1m\""),
        ];
        for (text, expected) in table {
            assert!(parse_go_duration(text).is_err(), "{text}");
            assert_eq!(go_duration_error(text), expected, "{text}");
        }
    }

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
                metric: BTreeMap::from([("node".to_string(), "n1".to_string())]),
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
                metric: BTreeMap::new(),
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
        assert!(matches!(
            instant_reply(&matrix),
            Err(ApiError::Transform(m)) if m == "Error casting result to model.Vector"
        ));
        assert!(matches!(
            range_reply(&output, grid),
            Err(ApiError::Transform(m)) if m == "Error casting result to model.Matrix"
        ));
    }
}
