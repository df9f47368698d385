//! What a PromQL pass-through query must pass before it leaves the process (ours; the Go
//! backend had none): its length (`monitor.max_query_length`), its nesting, the steps of a
//! range (Prometheus' own rule, `(end - start) / step <= 11000`) and, when
//! `monitor.allowed_metric_prefixes` is set, the metric names its selectors can reach, read
//! from the query parsed by `promql-parser`. A refused query is `522 TRANSFORM_ERROR` and
//! never reaches the upstream.

use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher, METRIC_NAME};
use promql_parser::parser::{Expr, VectorSelector};

use crate::config::MonitorConfig;
use crate::echo::echo;

/// Steps a range query may span, `(end - start) / step` in whole steps: Prometheus' own
/// limit (its `query_range` refuses more), so at most 11,001 points per series. Checked here
/// so that such a request never reaches the upstream.
pub const MAX_RANGE_STEPS: i128 = 11_000;

/// Upper bound on the bracket and operator nesting of a query we parse for the allow-list.
/// The parser and the syntax tree's destructor recurse per level; the frontend's deepest
/// query nests 5 levels, and this keeps a hostile 16 KiB query far from the stack's end.
pub const MAX_QUERY_NESTING: usize = 64;

/// Why a pass-through query was refused; the text is the `522` reply's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryRefused {
    #[error("query is {length} bytes long; at most {max} are accepted (monitor.max_query_length)")]
    TooLong { length: usize, max: usize },
    #[error("query nests {nesting} levels deep; at most {MAX_QUERY_NESTING} are accepted")]
    TooDeep { nesting: usize },
    /// The parser's own message (it reports errors as text), cut to a prefix.
    #[error("invalid PromQL: {0}")]
    Invalid(String),
    #[error("metric {name:?} is not allowed; metric names must start with one of: {allowed} (monitor.allowed_metric_prefixes)")]
    MetricNotAllowed { name: String, allowed: String },
    #[error("selector {selector} may select metrics outside the allowed prefixes: {allowed} (monitor.allowed_metric_prefixes)")]
    Unconfined { selector: String, allowed: String },
    /// A syntax-tree node the checks cannot inspect (the parser never produces one).
    #[error("unsupported PromQL expression")]
    Unsupported,
    #[error("zero query resolution step widths are not accepted; use a positive step")]
    ZeroStep,
    #[error("the range has {points} points per series; at most {max} are accepted (Prometheus' limit, (end - start) / step <= {MAX_RANGE_STEPS}): increase the step or shorten the range", max = MAX_RANGE_STEPS + 1)]
    TooManyPoints { points: i128 },
}

/// The checks of a pass-through query's text: its length, then, when an allow-list is
/// configured, that it parses and that every selector is confined to allowed metric names.
pub fn check_query(expr: &str, limits: &MonitorConfig) -> Result<(), QueryRefused> {
    if expr.len() > limits.max_query_length {
        return Err(QueryRefused::TooLong {
            length: expr.len(),
            max: limits.max_query_length,
        });
    }
    let prefixes = &limits.allowed_metric_prefixes;
    if prefixes.is_empty() {
        return Ok(());
    }
    let nesting = query_nesting(expr);
    if nesting > MAX_QUERY_NESTING {
        return Err(QueryRefused::TooDeep { nesting });
    }
    let parsed = promql_parser::parser::parse(expr).map_err(|e| QueryRefused::Invalid(echo(e)))?;
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
fn check_selected_metrics(expr: &Expr, prefixes: &[String]) -> Result<(), QueryRefused> {
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
            Expr::Extension(_) => return Err(QueryRefused::Unsupported),
        }
    }
    Ok(())
}

fn check_selector(vs: &VectorSelector, prefixes: &[String]) -> Result<(), QueryRefused> {
    let allowed = |name: &str| prefixes.iter().any(|p| name.starts_with(p.as_str()));
    let list = prefixes.join(", ");
    if let Some(name) = &vs.name {
        return if allowed(name) {
            Ok(())
        } else {
            Err(QueryRefused::MetricNotAllowed {
                name: echo(name),
                allowed: list,
            })
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
        Err(QueryRefused::Unconfined {
            selector: echo(vs),
            allowed: list,
        })
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
) -> Result<(), QueryRefused> {
    let span = end.as_nanosecond() - start.as_nanosecond();
    if span < 0 {
        return Ok(());
    }
    let span = span.min(i128::from(i64::MAX));
    let step_ns = i128::try_from(step.as_nanos()).unwrap_or(i128::MAX);
    if step_ns == 0 {
        return Err(QueryRefused::ZeroStep);
    }
    let steps = span / step_ns;
    if steps > MAX_RANGE_STEPS {
        return Err(QueryRefused::TooManyPoints { points: steps + 1 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check(expr: &str, limits: &MonitorConfig) -> Result<(), String> {
        check_query(expr, limits).map_err(|e| e.to_string())
    }

    fn range(start: jiff::Timestamp, end: jiff::Timestamp, step: Duration) -> Result<(), String> {
        check_range_points(start, end, step).map_err(|e| e.to_string())
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
        assert_eq!(check("up{a=\"1\"}", &limits), Ok(()));
        assert_eq!(
            check("up{a=\"12\"}", &limits).unwrap_err(),
            "query is 10 bytes long; at most 9 are accepted (monitor.max_query_length)"
        );
        // Without an allow-list the text is not parsed: the upstream names syntax errors.
        assert_eq!(check("sum(", &MonitorConfig::default()), Ok(()));
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
            assert_eq!(check(query, &limits), Ok(()), "{query}");
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
            let err = check(query, &limits).unwrap_err();
            assert!(err.contains("hami_, kube_"), "{query}: {err}");
        }
        assert_eq!(
            check("up", &limits).unwrap_err(),
            "metric \"up\" is not allowed; metric names must start with one of: hami_, kube_ (monitor.allowed_metric_prefixes)"
        );
        let err = check("sum(hami_x", &limits).unwrap_err();
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
            let err = check(query, &limits).unwrap_err();
            assert!(err.contains("levels deep"), "{err}");
        }
        // Right at the bound the parser and the checks stay well within the stack.
        let deep = format!("{}hami_x{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(check(&deep, &limits), Ok(()));
        let chain = format!("hami_x{}", " + hami_x".repeat(MAX_QUERY_NESTING + 1));
        assert!(check(&chain, &limits).is_err());
        let chain = format!("hami_x{}", " + hami_x".repeat(MAX_QUERY_NESTING));
        assert_eq!(check(&chain, &limits), Ok(()));
        // Matchers and strings do not count as nesting.
        let matchers: Vec<String> = (0..200).map(|i| format!("l{i}=\"((((\"")).collect();
        let wide = format!("hami_x{{{}}}", matchers.join(","));
        assert_eq!(check(&wide, &limits), Ok(()));
    }

    #[test]
    fn range_points_follow_prometheus_limit() {
        let t = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        let minute = Duration::from_secs(60);
        // Prometheus refuses `(end - start) / step > 11000`: 11,001 points pass, 11,002 do not.
        assert_eq!(range(t(0), t(11_000 * 60), minute), Ok(()));
        assert_eq!(
            range(t(0), t(11_000 * 60 + 59), minute),
            Ok(()),
            "a partial last step does not count"
        );
        assert_eq!(
            range(t(0), t(11_001 * 60), minute).unwrap_err(),
            "the range has 11002 points per series; at most 11001 are accepted (Prometheus' limit, (end - start) / step <= 11000): increase the step or shorten the range"
        );
        assert!(range(t(0), t(3600), Duration::ZERO).is_err());
        assert!(range(t(0), t(3600), Duration::from_micros(500)).is_err());
        assert_eq!(range(t(0), t(1), Duration::from_micros(500)), Ok(()));
        // An end before the start is the upstream's to name.
        assert_eq!(range(t(3600), t(0), minute), Ok(()));
        // Go's `time.Time.Sub` saturates at ~292 years; so does the span here.
        let ten_days = Duration::from_secs(10 * 86_400);
        assert_eq!(
            range(jiff::Timestamp::MIN, jiff::Timestamp::MAX, ten_days),
            Ok(())
        );
        assert!(range(
            t(i64::from(i32::MIN)),
            t(i64::from(i32::MAX)),
            Duration::from_nanos(1)
        )
        .is_err());
    }
}
