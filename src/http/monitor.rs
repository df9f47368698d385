//! The PromQL pass-through routes the frontend's charts are drawn from:
//! `POST /v1/monitor/query/instant-vector` and `POST /v1/monitor/query/range-vector`
//! (API contract §6.9–6.10).
//!
//! The handlers decode the request (kratos rules, [`ProtoBody`]), parse the range in the
//! configured zone, ask the [`QueryClient`] and shape the reply as the Go backend's
//! protobuf JSON did: `float` values in float32 form, `int64` timestamps as strings, and
//! range series filled to the step grid by [`fill_gaps`]. The pure parts ([`parse_datetime`],
//! [`fill_gaps`], [`check_query`], [`check_range_points`]) are table-tested below.
//!
//! Before a query leaves the process it must pass the pass-through limits (ours; the Go
//! backend had none): its length (`monitor.max_query_length`), the steps of a range
//! (Prometheus' own rule, `(end - start) / step <= 11000`) and, when `monitor.allowed_metric_prefixes` is set, the
//! metric names its selectors can reach, read from the query parsed by `promql-parser`.
//! A refused query is `522 TRANSFORM_ERROR` and never reaches the upstream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use jiff::tz::TimeZone;
use promql_parser::label::{MatchOp, Matcher, METRIC_NAME};
use promql_parser::parser::{Expr, VectorSelector};
use serde::{Deserialize, Serialize};

use crate::config::duration::parse_go_duration;
use crate::config::{Config, MonitorConfig};
use crate::error::ApiError;
use crate::query_client::{
    Lane, Query, QueryClient, QueryData, QueryOutput, RunQuery, SeriesLabels,
};
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

/// Steps a range query may span, `(end - start) / step` in whole steps: Prometheus' own
/// limit (its `query_range` refuses more), so at most 11,001 points per series. Checked here
/// so that such a request never reaches the upstream.
pub const MAX_RANGE_STEPS: i128 = 11_000;

/// Upper bound on the bracket and operator nesting of a query we parse for the allow-list.
/// The parser and the syntax tree's destructor recurse per level; the frontend's deepest
/// query nests 5 levels, and this keeps a hostile 16 KiB query far from the stack's end.
pub const MAX_QUERY_NESTING: usize = 64;

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

/// `POST /v1/monitor/query/instant-vector`: the query at the upstream's "now".
pub async fn instant_vector(
    req: HttpRequest,
    ctx: RestContext,
    ProtoBody(request): ProtoBody<InstantRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        check_query(&request.query, &monitor_limits(&req)).map_err(ApiError::Transform)?;
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
        check_query(&request.query, &monitor_limits(&req)).map_err(ApiError::Transform)?;
        check_range_points(start, end, step).map_err(ApiError::Transform)?;
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

/// The configured pass-through limits; the defaults where no [`Config`] is registered.
fn monitor_limits(req: &HttpRequest) -> MonitorConfig {
    req.app_data::<web::Data<Config>>()
        .map(|c| c.monitor.clone())
        .unwrap_or_default()
}

/// The checks of a pass-through query's text: its length, then, when an allow-list is
/// configured, that it parses and that every selector is confined to allowed metric names.
/// `Err` is the message of the `522` reply.
pub fn check_query(expr: &str, limits: &MonitorConfig) -> Result<(), String> {
    if expr.len() > limits.max_query_length {
        return Err(format!(
            "query is {} bytes long; at most {} are accepted (monitor.max_query_length)",
            expr.len(),
            limits.max_query_length
        ));
    }
    let prefixes = &limits.allowed_metric_prefixes;
    if prefixes.is_empty() {
        return Ok(());
    }
    let nesting = query_nesting(expr);
    if nesting > MAX_QUERY_NESTING {
        return Err(format!(
            "query nests {nesting} levels deep; at most {MAX_QUERY_NESTING} are accepted"
        ));
    }
    let parsed = promql_parser::parser::parse(expr).map_err(|e| format!("invalid PromQL: {e}"))?;
    check_selected_metrics(&parsed, prefixes)
}

/// An upper bound on how deep the syntax tree of `expr` can nest: brackets open at once
/// plus the operators seen (each binary or unary operator, symbol or word, may add a level).
/// String literals and label matchers (inside `{…}`) add nothing, so a label value full of
/// `(` or a selector with many matchers costs nothing.
fn query_nesting(expr: &str) -> usize {
    let (mut open, mut braces, mut deepest, mut operators) = (0usize, 0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut word = String::new();
    let mut chars = expr.chars();
    // Bounded by the input: every round consumes at least one char.
    while let Some(c) = chars.next() {
        if quote.is_none() && braces == 0 && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if ["and", "or", "unless", "atan2"].contains(&word.to_ascii_lowercase().as_str()) {
            operators += 1;
        }
        word.clear();
        match quote {
            Some(q) => {
                if c == '\\' && q != '`' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' | '[' | '{' => {
                    open += 1;
                    deepest = deepest.max(open);
                    braces += usize::from(c == '{');
                }
                ')' | ']' | '}' => {
                    open = open.saturating_sub(1);
                    if c == '}' {
                        braces = braces.saturating_sub(1);
                    }
                }
                '+' | '-' | '*' | '/' | '%' | '^' | '=' | '!' | '<' | '>' if braces == 0 => {
                    operators += 1;
                }
                _ => {}
            },
        }
    }
    deepest + operators
}

/// Every selector of `expr` (including those inside function arguments, aggregation
/// parameters and subqueries) must be confined to metric names starting with one of
/// `prefixes`: by its name, or, without a name, by a `__name__` matcher in every `or`
/// alternative. Walked with an explicit stack, so depth costs heap, not stack.
fn check_selected_metrics(expr: &Expr, prefixes: &[String]) -> Result<(), String> {
    let mut pending = vec![expr];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::Aggregate(a) => {
                pending.push(&a.expr);
                pending.extend(a.param.as_deref());
            }
            Expr::Unary(u) => pending.push(&u.expr),
            Expr::Binary(b) => {
                pending.push(&b.lhs);
                pending.push(&b.rhs);
            }
            Expr::Paren(p) => pending.push(&p.expr),
            Expr::Subquery(s) => pending.push(&s.expr),
            Expr::Call(c) => pending.extend(c.args.args.iter().map(|a| &**a)),
            Expr::VectorSelector(vs) => check_selector(vs, prefixes)?,
            Expr::MatrixSelector(ms) => check_selector(&ms.vs, prefixes)?,
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            // The parser never produces extensions; refuse what we cannot inspect.
            Expr::Extension(_) => return Err("unsupported PromQL expression".into()),
        }
    }
    Ok(())
}

fn check_selector(vs: &VectorSelector, prefixes: &[String]) -> Result<(), String> {
    let allowed = |name: &str| prefixes.iter().any(|p| name.starts_with(p.as_str()));
    let list = prefixes.join(", ");
    if let Some(name) = &vs.name {
        return if allowed(name) {
            Ok(())
        } else {
            Err(format!(
                "metric {name:?} is not allowed; metric names must start with one of: {list} (monitor.allowed_metric_prefixes)"
            ))
        };
    }
    let confined = |m: &Matcher| {
        m.name == METRIC_NAME
            && match &m.op {
                MatchOp::Equal => allowed(&m.value),
                MatchOp::Re(_) => regex_confined(&m.value, prefixes),
                MatchOp::NotEqual | MatchOp::NotRe(_) => false,
            }
    };
    // Conservative in both readings of `matchers` beside `or_matchers`: each group on its
    // own must confine the name.
    let matchers = &vs.matchers;
    let mut groups: Vec<&[Matcher]> = matchers.or_matchers.iter().map(Vec::as_slice).collect();
    if !matchers.matchers.is_empty() || groups.is_empty() {
        groups.push(&matchers.matchers);
    }
    if groups.iter().all(|group| group.iter().any(confined)) {
        Ok(())
    } else {
        Err(format!(
            "selector {vs} may select metrics outside the allowed prefixes: {list} (monitor.allowed_metric_prefixes)"
        ))
    }
}

/// Whether every name the (fully anchored) regex `re` matches starts with an allowed prefix:
/// `re` must begin with the prefix literally (prefixes are `[a-zA-Z0-9_:]`, literal in
/// RE2), the prefix's last character must not be quantified, and `re` must have no
/// alternation anywhere. Anything else is refused rather than analysed.
fn regex_confined(re: &str, prefixes: &[String]) -> bool {
    !re.contains('|')
        && prefixes.iter().any(|p| {
            re.strip_prefix(p.as_str())
                .is_some_and(|rest| !rest.starts_with(['?', '*', '+', '{']))
        })
}

/// Refuses a range Prometheus would refuse for its resolution: `(end − start) / step` (Go's
/// integer division of `time.Duration`s, the span saturating at Go's largest duration as
/// `time.Time.Sub` does) above [`MAX_RANGE_STEPS`], or a zero step (unbounded points). An
/// end before the start is left to the upstream, which names that error itself.
pub fn check_range_points(
    start: jiff::Timestamp,
    end: jiff::Timestamp,
    step: Duration,
) -> Result<(), String> {
    let span = end.as_nanosecond() - start.as_nanosecond();
    if span < 0 {
        return Ok(());
    }
    let span = span.min(i128::from(i64::MAX));
    let step_ns = i128::try_from(step.as_nanos()).unwrap_or(i128::MAX);
    if step_ns == 0 {
        return Err(
            "zero query resolution step widths are not accepted; use a positive step".into(),
        );
    }
    let steps = span / step_ns;
    if steps > MAX_RANGE_STEPS {
        return Err(format!(
            "the range has {points} points per series; at most {max} are accepted (Prometheus' limit, (end - start) / step <= {MAX_RANGE_STEPS}): increase the step or shorten the range",
            points = steps + 1,
            max = MAX_RANGE_STEPS + 1,
        ));
    }
    Ok(())
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

    fn allow(prefixes: &[&str]) -> MonitorConfig {
        MonitorConfig {
            allowed_metric_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            ..MonitorConfig::default()
        }
    }

    #[test]
    fn queries_longer_than_the_limit_are_refused() {
        let limits = MonitorConfig {
            max_query_length: 9,
            ..MonitorConfig::default()
        };
        assert_eq!(check_query("up{a=\"1\"}", &limits), Ok(()));
        assert_eq!(
            check_query("up{a=\"12\"}", &limits).unwrap_err(),
            "query is 10 bytes long; at most 9 are accepted (monitor.max_query_length)"
        );
        // Without an allow-list the text is not parsed: the upstream names syntax errors.
        assert_eq!(check_query("sum(", &MonitorConfig::default()), Ok(()));
    }

    #[test]
    fn allow_list_applies_to_every_selected_metric() {
        let limits = allow(&["hami_", "kube_"]);
        let allowed = [
            "hami_core_size",
            "sum(hami_memory_used) / sum(hami_memory_size{}) * 100",
            "topk(5, avg by (node) (hami_core_util_avg))",
            "rate(kube_pod_info[5m])",
            "max_over_time(hami_core_util[1h:1m])",
            "{__name__=\"hami_core_size\"}",
            "{__name__=~\"hami_.*\", node=\"n1\"}",
            "{\"hami_core_size\"}",
            "{__name__=\"hami_a\" or __name__=~\"kube_a_.+\"}",
            "hami_x{node=~\"a|b\"} and on (node) kube_node_info",
            "vector(1) + scalar(hami_x)",
            "label_replace(hami_x, \"a\", \"$1\", \"b\", \"(.*)\")",
        ];
        for query in allowed {
            assert_eq!(check_query(query, &limits), Ok(()), "{query}");
        }
        let refused = [
            "up",
            "sum(hami_x) / sum(node_cpu_seconds_total)",
            "topk(scalar(secret_metric), hami_x)",
            "count_values(\"v\", other_metric)",
            "rate(other[5m])",
            "max_over_time(other[1h:1m])",
            "{job=\"x\"}",
            "{__name__!=\"hami_x\", job=\"a\"}",
            "{__name__=~\"hami_.*|other\"}",
            "{__name__=~\"kube_(a|b)_x\"}",
            "{__name__=~\"hami.*\"}",
            "{__name__=~\"hami_?x\"}",
            "{__name__=~\".*hami_.*\"}",
            "{__name__=\"hami_a\" or job=\"x\"}",
            "{\"other\"}",
            "absent(other)",
        ];
        for query in refused {
            let err = check_query(query, &limits).unwrap_err();
            assert!(err.contains("hami_, kube_"), "{query}: {err}");
        }
        assert_eq!(
            check_query("up", &limits).unwrap_err(),
            "metric \"up\" is not allowed; metric names must start with one of: hami_, kube_ (monitor.allowed_metric_prefixes)"
        );
        let err = check_query("sum(hami_x", &limits).unwrap_err();
        assert!(err.starts_with("invalid PromQL: "), "{err}");
    }

    #[test]
    fn hostile_nesting_within_the_length_limit_is_refused_before_parsing() {
        let limits = allow(&["hami_"]);
        let n = 8_000;
        let hostile = [
            format!("{}hami_x{}", "(".repeat(n), ")".repeat(n)),
            format!("{}hami_x", "-".repeat(n)),
            format!("hami_x{}", " + hami_x".repeat(n / 10)),
            format!("hami_x{}", " and hami_x".repeat(n / 12)),
            format!("hami_x{}", " or hami_x".repeat(n / 11)),
            format!("{}hami_x{}", "abs(".repeat(n / 5), ")".repeat(n / 5)),
        ];
        for query in &hostile {
            assert!(query.len() <= MonitorConfig::default().max_query_length);
            let err = check_query(query, &limits).unwrap_err();
            assert!(err.contains("levels deep"), "{err}");
        }
        // Right at the bound the parser and the checks stay well within the stack.
        let deep = format!("{}hami_x{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(check_query(&deep, &limits), Ok(()));
        let chain = format!("hami_x{}", " + hami_x".repeat(MAX_QUERY_NESTING + 1));
        assert!(check_query(&chain, &limits).is_err());
        let chain = format!("hami_x{}", " + hami_x".repeat(MAX_QUERY_NESTING));
        assert_eq!(check_query(&chain, &limits), Ok(()));
        // Matchers and strings do not count as nesting.
        let matchers: Vec<String> = (0..200).map(|i| format!("l{i}=\"((((\"")).collect();
        let wide = format!("hami_x{{{}}}", matchers.join(","));
        assert_eq!(check_query(&wide, &limits), Ok(()));
    }

    #[test]
    fn range_points_follow_prometheus_limit() {
        let t = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        let minute = Duration::from_secs(60);
        // Prometheus refuses `(end - start) / step > 11000`: 11,001 points pass, 11,002 do not.
        assert_eq!(check_range_points(t(0), t(11_000 * 60), minute), Ok(()));
        assert_eq!(
            check_range_points(t(0), t(11_000 * 60 + 59), minute),
            Ok(()),
            "a partial last step does not count"
        );
        assert_eq!(
            check_range_points(t(0), t(11_001 * 60), minute).unwrap_err(),
            "the range has 11002 points per series; at most 11001 are accepted (Prometheus' limit, (end - start) / step <= 11000): increase the step or shorten the range"
        );
        assert!(check_range_points(t(0), t(3600), Duration::ZERO).is_err());
        assert!(check_range_points(t(0), t(3600), Duration::from_micros(500)).is_err());
        assert_eq!(
            check_range_points(t(0), t(1), Duration::from_micros(500)),
            Ok(())
        );
        // An end before the start is the upstream's to name.
        assert_eq!(check_range_points(t(3600), t(0), minute), Ok(()));
        // Go's `time.Time.Sub` saturates at ~292 years; so does the span here.
        let ten_days = Duration::from_secs(10 * 86_400);
        assert_eq!(
            check_range_points(jiff::Timestamp::MIN, jiff::Timestamp::MAX, ten_days),
            Ok(())
        );
        assert!(check_range_points(
            t(i64::from(i32::MIN)),
            t(i64::from(i32::MAX)),
            Duration::from_nanos(1)
        )
        .is_err());
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
