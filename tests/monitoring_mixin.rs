//! The monitoring mixin (issue 22) against real components: the rules in
//! `mixin/hami-webui-server.rules.yaml` (the chart's PrometheusRule rendered with default
//! values by `mixin/generate.py`; `tests/chart/test_chart.py` checks the two agree) and the
//! Grafana dashboards in `charts/hami-webui-server/dashboards/`.
//!
//! - promtool checks the rules and runs the unit tests in `mixin/tests/`, which must hold a
//!   firing and a not-firing case of every alert and the value of every recording rule;
//! - every PromQL expression of the rules and dashboards parses with `promql-parser` and
//!   selects only series the server exports (read from the real binary's `/metrics`, on the
//!   demo cluster without a metrics store and on a fixture with exporter data), families of
//!   the exporters the server itself queries (its query plan), the recording rules, or the
//!   series Prometheus adds to every target;
//! - every dashboard query returns data from a real Prometheus that scrapes the server on a
//!   fixture and evaluates the recording rules, with the template variables set to real
//!   values. With `HAMI_MIXIN_RENDER_DIR` set, that test then keeps the fixture running for
//!   `HAMI_MIXIN_RENDER_SECONDS` (default 600) with moving exporter values and writes every
//!   panel's data there, for `mixin/render/render.py` (docs/).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hami_webui_server::device::Vendor;
use hami_webui_server::metrics::{queries, Family};
use hami_webui_server::synthetic::ClusterShape;
use promql_parser::label::{MatchOp, METRIC_NAME};
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::{json, Value};
use support::process::{free_port, request, wait_for, Launch, ServerProcess};
use support::upstream::{encode, query_api, FixtureExporter, Prometheus, VictoriaMetrics};

const RULES: &str = "mixin/hami-webui-server.rules.yaml";
const RULE_TESTS: &str = "mixin/tests";
const DASHBOARDS: &str = "charts/hami-webui-server/dashboards";

/// Series Prometheus itself adds to every scrape target (the server health dashboard shows
/// how long a scrape of `/metrics` takes).
const SCRAPE_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Families the fixtures cannot make the server print, so nothing may select them: only
/// Cambricon's exporter reports fan speed in rpm (no fixture has an MLU exporter), and watch
/// restarts are counted when a Kubernetes watch relists, which a `--snapshot` run never does.
const NOT_IN_ANY_FIXTURE: [&str; 2] =
    ["hami_device_fan_speed_r", "hami_webui_watch_restarts_total"];

/// The window `$__rate_interval` and `$__interval` stand for when a query is evaluated here.
const WINDOW: &str = "1m";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// One rule of the rules file.
struct Rule {
    name: String,
    alert: bool,
    expr: String,
}

fn rules() -> Vec<Rule> {
    let doc = yaml(&repo(RULES));
    let mut out = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let (name, alert) = match (rule["record"].as_str(), rule["alert"].as_str()) {
                (Some(record), None) => (record, false),
                (None, Some(alert)) => (alert, true),
                _ => panic!("a rule is either a recording rule or an alert: {rule}"),
            };
            out.push(Rule {
                name: name.to_string(),
                alert,
                expr: str_of(rule, "expr").to_string(),
            });
        }
    }
    out
}

/// `(file name, dashboard)`, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(DASHBOARDS))
        .expect("dashboards directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "three dashboards: {files:?}");
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let value =
                serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, value)
        })
        .collect()
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            out.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            out.push(panel);
        }
    }
    out
}

fn targets(panel: &Value) -> &[Value] {
    panel["targets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A template variable other than the data source.
struct Variable {
    name: String,
    /// `label_values(expr, label)`.
    query: String,
    multi: bool,
    /// What "All" stands for; `None`: the list of the variable's values.
    all_value: Option<String>,
}

fn variables(dashboard: &Value) -> Vec<Variable> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| Variable {
            name: str_of(v, "name").to_string(),
            query: v["query"]["query"].as_str().unwrap_or_default().to_string(),
            multi: v["multi"].as_bool().unwrap_or(false),
            all_value: v["allValue"].as_str().map(String::from),
        })
        .collect()
}

/// `label_values(EXPR, LABEL)` → `(EXPR, LABEL)`.
fn label_values(query: &str) -> (String, String) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("variables use label_values(expr, label): {query}"));
    let (expr, label) = inner
        .rsplit_once(',')
        .unwrap_or_else(|| panic!("label_values without a series selector: {query}"));
    (expr.trim().to_string(), label.trim().to_string())
}

/// A Grafana query with its variables replaced by `values` and the interval variables by
/// [`WINDOW`].
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_string();
    for interval in [
        "$__rate_interval",
        "$__interval",
        "${__rate_interval}",
        "${__interval}",
    ] {
        out = out.replace(interval, WINDOW);
    }
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("${{{name}}}"), &values[name]);
        out = out.replace(&format!("${name}"), &values[name]);
    }
    assert!(
        !out.contains('$'),
        "a variable left unreplaced in {out:?} (have {values:?})"
    );
    out
}

/// Every query of the rules and dashboards: `(where, expression)`, dashboard variables
/// replaced by `value` so the text parses.
fn all_queries() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rules()
        .into_iter()
        .map(|r| (format!("rule {}", r.name), r.expr))
        .collect();
    for (file, dashboard) in dashboards() {
        let values: BTreeMap<String, String> = variables(&dashboard)
            .into_iter()
            .map(|v| (v.name, "value".to_string()))
            .collect();
        for v in variables(&dashboard) {
            let (expr, _) = label_values(&v.query);
            out.push((
                format!("{file} variable {}", v.name),
                substitute(&expr, &values),
            ));
        }
        for panel in panels(&dashboard) {
            for target in targets(panel) {
                out.push((
                    format!(
                        "{file} panel {:?} {}",
                        str_of(panel, "title"),
                        str_of(target, "refId")
                    ),
                    substitute(str_of(target, "expr"), &values),
                ));
            }
        }
    }
    out
}

/// The metric name a selector is confined to: its name, or an equality `__name__` matcher.
fn selector_name(vs: &VectorSelector) -> Result<String, String> {
    if let Some(name) = &vs.name {
        return Ok(name.clone());
    }
    vs.matchers
        .matchers
        .iter()
        .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone())
        .ok_or_else(|| format!("a selector without a metric name: {vs}"))
}

/// Every selector of `expr`, walked with a stack.
fn selectors(expr: &Expr) -> Result<Vec<&VectorSelector>, String> {
    let mut pending = vec![expr];
    let mut out = Vec::new();
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
            Expr::VectorSelector(vs) => out.push(vs),
            Expr::MatrixSelector(ms) => out.push(&ms.vs),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::Extension(_) => return Err("an extension expression".into()),
        }
    }
    Ok(out)
}

/// The metric names `expr` selects; every selector must name one.
fn selected_families(expr: &str) -> Result<BTreeSet<String>, String> {
    let parsed = promql_parser::parser::parse(expr)?;
    selectors(&parsed)?.into_iter().map(selector_name).collect()
}

/// Families of the exporters the server reads: every selector of its query plan with every
/// vendor and allocation type present (`__name__` regexes are plain alternatives).
fn upstream_families() -> BTreeSet<String> {
    let vendors: BTreeSet<Vendor> = Vendor::ALL.into_iter().collect();
    let types: BTreeSet<String> = ["NVIDIA", "MLU", "DCU", "Metax-SGPU", "Metax-GPU", "HCU"]
        .map(String::from)
        .into();
    let mut out = BTreeSet::new();
    for (query, expr) in queries::plan(&vendors, &types) {
        let parsed = promql_parser::parser::parse(&expr)
            .unwrap_or_else(|e| panic!("{query:?} does not parse: {e}"));
        for vs in selectors(&parsed).expect("plain PromQL") {
            if let Some(name) = &vs.name {
                out.insert(name.clone());
            }
            for m in vs
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name == METRIC_NAME)
            {
                out.extend(m.value.split('|').map(String::from));
            }
        }
    }
    assert!(out.contains("DCGM_FI_DEV_GPU_UTIL") && out.contains("hami_vgpu_memory_used_bytes"));
    out
}

/// The names of the samples of an exposition (histogram series as `_bucket`, `_sum`, `_count`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// A node whose NVIDIA registration does not decode (a CSV entry with two fields): the
/// server keeps the node and counts `hami_webui_decode_errors_total`.
fn malformed_node() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "gpu-node-broken", "uid": "node-uid-broken", "labels": {"gpu": "on"},
                     "annotations": {"hami.io/node-nvidia-register": "GPU-broken,10:"},
                     "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// The fixture cluster: nodes of three vendors with pods, plus [`malformed_node`].
const SHAPE: ClusterShape = ClusterShape {
    nodes: 4,
    allocations_per_device: 2,
    vendor_mix: true,
};

fn write_fixture_cluster(dir: &Path) -> String {
    let mut list = SHAPE.list();
    list["items"]
        .as_array_mut()
        .expect("items")
        .push(malformed_node());
    let path = dir.join("cluster.json");
    std::fs::write(&path, list.to_string()).expect("write cluster");
    path.to_string_lossy().into_owned()
}

/// Polls `/metrics` until `needle` appears; returns the body.
fn metrics_with(server: &ServerProcess, needle: &str, deadline: Duration) -> String {
    wait_for(deadline, || {
        let reply = server.get("/metrics").ok()?;
        let text = reply.text();
        (reply.status == 200 && text.contains(needle)).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "no {needle} on /metrics within {deadline:?}:\n{}",
            server.log()
        )
    })
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

/// Every sample name the real server exports: on the demo cluster without a metrics store
/// (refresh cycles fail: the upstream error outcomes) and on the fixture with its exporters'
/// data in VictoriaMetrics (device usage, container usage, decode errors).
///
/// A family without samples prints nothing, not even `# HELP`/`# TYPE`: the device families
/// skip empty families, and the prometheus crate's `gather` skips labelled families that have
/// no child yet (`hami_webui_decode_errors_total` before the first error). So the runs must
/// make each family appear; the malformed node is there for the decode-error counter.
fn exported_families() -> BTreeSet<String> {
    let config = read(&repo("config/config.yaml"));
    let demo = repo("examples/demo-cluster.json")
        .to_string_lossy()
        .into_owned();
    let server = ServerProcess::start(Launch {
        config_yaml: &config,
        args: &["--snapshot", &demo],
        env: &[
            ("HAMI_WEBUI__WEB__ENABLED", "false"),
            // Port 9 (discard) is closed on loopback: every query fails at once.
            ("HAMI_WEBUI__PROMETHEUS__ADDRESS", "http://127.0.0.1:9"),
        ],
        ..Launch::default()
    });
    let demo_text = metrics_with(
        &server,
        "hami_webui_refresh_cycles_total{",
        Duration::from_secs(30),
    );
    drop(server);

    let vm = VictoriaMetrics::start();
    // Eleven minutes of history every 30 s, so the vGPU monitor's ten-minute window answers.
    let exposition = SHAPE.exposition();
    let now = now_ms();
    let mut history = String::new();
    for step in 0..=22u128 {
        let ts = now - (22 - step) * 30_000;
        for line in exposition.lines() {
            history.push_str(&format!("{line} {ts}\n"));
        }
    }
    vm.import(&history);
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = write_fixture_cluster(dir.path());
    let config = format!(
        "prometheus:\n  address: {}\n  timeout: 10s\nexporter:\n  interval: 1h\n  timeout: 20s\nweb:\n  enabled: false\n",
        vm.url()
    );
    let server = ServerProcess::start(Launch {
        config_yaml: &config,
        args: &["--snapshot", &cluster],
        ..Launch::default()
    });
    let fixture_text = metrics_with(
        &server,
        "hami_webui_refresh_cycles_total{outcome=\"ok\"}",
        Duration::from_secs(30),
    );
    let mut names = sample_names(&demo_text);
    names.extend(sample_names(&fixture_text));
    names
}

#[test]
fn promtool_checks_the_rules_and_every_alert_and_recording_rule_has_unit_tests() {
    let check = Command::new("promtool")
        .args(["check", "rules", RULES])
        .current_dir(repo(""))
        .output()
        .expect("promtool (Debian package prometheus) on PATH");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(RULE_TESTS))
        .expect("mixin/tests")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no unit tests in {RULE_TESTS}");
    let test = Command::new("promtool")
        .args(["test", "rules"])
        .args(&files)
        .output()
        .expect("promtool");
    assert!(
        test.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );

    // What the unit tests cover: alerts expected to fire and expected not to (at some
    // evaluation time), and recording rules whose samples they state.
    let (mut firing, mut quiet, mut valued) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for file in &files {
        let doc = yaml(file);
        let relative = file.strip_prefix(repo("")).unwrap_or(file);
        assert_eq!(
            doc["rule_files"],
            json!(["../hami-webui-server.rules.yaml"]),
            "{} loads the generated rules file",
            relative.display()
        );
        for group in doc["tests"].as_array().into_iter().flatten() {
            for case in group["alert_rule_test"].as_array().into_iter().flatten() {
                let name = str_of(case, "alertname").to_string();
                let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
                if expected > 0 {
                    firing.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
            for case in group["promql_expr_test"].as_array().into_iter().flatten() {
                let samples = case["exp_samples"].as_array().map_or(0, Vec::len);
                if samples == 0 {
                    continue;
                }
                let names = selected_families(str_of(case, "expr"))
                    .unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
                valued.extend(names);
            }
        }
    }
    let mut missing = Vec::new();
    for rule in rules() {
        if rule.alert {
            if !firing.contains(&rule.name) {
                missing.push(format!("alert {} never expected to fire", rule.name));
            }
            if !quiet.contains(&rule.name) {
                missing.push(format!("alert {} never expected to stay quiet", rule.name));
            }
        } else if !valued.contains(&rule.name) {
            missing.push(format!(
                "recording rule {} has no expected value",
                rule.name
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "unit tests missing:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_query_parses_and_selects_only_series_that_exist() {
    let exported = exported_families();
    // The expositions are complete: every device and container family shows up.
    let mut unseen: Vec<&str> = Family::ALL
        .iter()
        .map(|f| f.spec().0)
        .filter(|name| !exported.contains(*name) && !NOT_IN_ANY_FIXTURE.contains(name))
        .collect();
    unseen.extend(
        [
            "hami_webui_decode_errors_total",
            "hami_webui_upstream_requests_total",
            "hami_webui_watch_events_total",
            "hami_webui_refresh_duration_seconds_bucket",
            "hami_webui_upstream_request_duration_seconds_bucket",
            "process_resident_memory_bytes",
        ]
        .into_iter()
        .filter(|name| !exported.contains(*name)),
    );
    assert!(
        unseen.is_empty(),
        "families missing from the expositions: {unseen:?}"
    );

    eprintln!("{} sample names exported: {exported:?}", exported.len());
    let upstream = upstream_families();
    let recorded: BTreeSet<String> = rules()
        .into_iter()
        .filter(|r| !r.alert)
        .map(|r| r.name)
        .collect();
    let mut problems = Vec::new();
    let mut queries = 0;
    for (origin, expr) in all_queries() {
        queries += 1;
        match selected_families(&expr) {
            Err(e) => problems.push(format!("{origin}: {e}\n    {expr}")),
            Ok(names) => {
                for name in names {
                    let known = exported.contains(&name)
                        || recorded.contains(&name)
                        || upstream.contains(&name)
                        || SCRAPE_SERIES.contains(&name.as_str());
                    if !known || NOT_IN_ANY_FIXTURE.contains(&name.as_str()) {
                        problems.push(format!(
                            "{origin}: selects {name}, which the server does not export, no rule records and no exporter it reads has"
                        ));
                    }
                }
            }
        }
    }
    assert!(queries > 100, "only {queries} queries found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboards_use_the_datasource_variable_and_the_node_namespace_and_model_variables() {
    let mut uids = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        assert!(
            uids.insert(str_of(&dashboard, "uid").to_string()),
            "{file}: uid"
        );
        let list = dashboard["templating"]["list"]
            .as_array()
            .expect("templating");
        assert!(
            list.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{file}: a datasource variable"
        );
        let names: BTreeSet<String> = variables(&dashboard).into_iter().map(|v| v.name).collect();
        if file != "hami-webui-server-health.json" {
            for wanted in ["node", "namespace", "model"] {
                assert!(names.contains(wanted), "{file}: variable {wanted}");
            }
        }
        for var in list.iter().filter(|v| v["type"] == "query") {
            assert_eq!(var["datasource"]["uid"], "${datasource}", "{file}: {var}");
        }
        for panel in panels(&dashboard) {
            let title = str_of(panel, "title");
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{file}: {title}"
            );
            assert!(!targets(panel).is_empty(), "{file}: {title} has no query");
            for target in targets(panel) {
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{file}: {title}"
                );
            }
        }
    }
}

// ---- dashboards on a real Prometheus ----

/// Regex-escapes a variable value as Grafana does for a multi-value variable, then escapes
/// it for a PromQL string.
fn regex_value(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.replace('\\', "\\\\")
}

/// Sets every variable of `dashboard` to the first value its query returns (in order, so a
/// variable may depend on an earlier one); with `all`, multi-value variables to Grafana's
/// "All" once their query returns a value: their `allValue`, or every value.
fn resolve_variables(port: u16, dashboard: &Value, all: bool) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for var in variables(dashboard) {
        let (expr, label) = label_values(&var.query);
        let expr = substitute(&expr, &values);
        let found = wait_for(Duration::from_secs(30), || {
            let answer = query_api(port, &format!("group by ({label}) ({expr})"))?;
            let mut found: Vec<String> = answer["data"]["result"]
                .as_array()?
                .iter()
                .filter_map(|r| r["metric"][label.as_str()].as_str().map(String::from))
                .collect();
            found.sort();
            (!found.is_empty()).then_some(found)
        })
        .unwrap_or_else(|| panic!("variable {}: no values for {expr}", var.name));
        let value = match (var.multi, all, &var.all_value) {
            (true, true, Some(all_value)) => all_value.clone(),
            (true, true, None) => found
                .iter()
                .map(|v| regex_value(v))
                .collect::<Vec<_>>()
                .join("|"),
            (true, false, _) => regex_value(&found[0]),
            (false, _, _) => found[0].clone(),
        };
        values.insert(var.name, value);
    }
    values
}

/// An instant or range query; the `result` array of the answer.
fn evaluate(port: u16, expr: &str, instant: bool, range: (u128, u128, u64)) -> Option<Vec<Value>> {
    let path = if instant {
        format!("/api/v1/query?query={}", encode(expr))
    } else {
        let (start, end, step) = range;
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step={step}",
            encode(expr),
            start / 1000,
            end / 1000
        )
    };
    let reply = request(port, "GET", &path, &[], b"").ok()?;
    if reply.status != 200 {
        return None;
    }
    let body: Value = serde_json::from_slice(&reply.body).ok()?;
    body["data"]["result"].as_array().cloned()
}

/// The exposition with its moving quantities varied: `t` seconds along slow waves, a
/// different phase per series, utilisation kept within 0-100 and device memory within the
/// device. For the rendering only: device memory in use is raised to about what the
/// containers on it use, and container core use to about their core limits, which the
/// benchmark-oriented synthetic exposition does not keep to.
fn animate(text: &str, t: f64) -> String {
    let phase = |key: &str| {
        key.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) as f64
            / 997.0
    };
    let wave =
        |key: &str, period: f64| (2.0 * std::f64::consts::PI * t / period + phase(key)).sin();
    let mut fb_used: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let split = |line: &str| -> Option<(String, String, f64)> {
        let (head, value) = line.rsplit_once(' ')?;
        let (name, labels) = head.split_once('{').unwrap_or((head, ""));
        Some((name.to_string(), labels.to_string(), value.parse().ok()?))
    };
    for line in text.lines() {
        if let Some((name, labels, value)) = split(line) {
            if name == "DCGM_FI_DEV_FB_USED" {
                let total = text
                    .lines()
                    .find(|l| l.starts_with(&format!("DCGM_FI_DEV_FB_FREE{{{labels}")))
                    .and_then(split)
                    .map_or(81920.0, |(_, _, free)| free + value);
                let used = (value * 8.0 * (1.0 + 0.25 * wave(&labels, 420.0))).clamp(0.0, total);
                fb_used.insert(labels, (used, total));
            }
        }
    }
    let mut out = String::new();
    for line in text.lines() {
        let Some((name, labels, value)) = split(line) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let value = match name.as_str() {
            "DCGM_FI_DEV_FB_USED" => fb_used.get(&labels).map_or(value, |(u, _)| *u),
            "DCGM_FI_DEV_FB_FREE" => fb_used.get(&labels).map_or(value, |(u, t)| t - u),
            "DCGM_FI_DEV_GPU_UTIL" | "npu_chip_info_utilization" | "dcu_utilizationrate" => {
                (value + 25.0 * wave(&labels, 300.0) + 5.0)
                    .clamp(0.0, 100.0)
                    .round()
            }
            // A container's share of the device stays near its core limit (10-25 %).
            "hami_container_device_utilization_ratio" => {
                (value * 0.4 * (1.0 + 0.5 * wave(&labels, 300.0)))
                    .clamp(0.0, 100.0)
                    .round()
            }
            "DCGM_FI_DEV_GPU_TEMP"
            | "DCGM_FI_DEV_MEMORY_TEMP"
            | "npu_chip_info_temperature"
            | "dcu_temp" => (value + 8.0 * wave(&labels, 600.0)).round(),
            "DCGM_FI_DEV_POWER_USAGE" | "npu_chip_info_power" | "dcu_power_usage" => {
                (value * (1.0 + 0.25 * wave(&labels, 300.0))).round()
            }
            "hami_vgpu_memory_used_bytes" => (value * (1.0 + 0.5 * wave(&labels, 420.0))).round(),
            _ => value,
        };
        out.push_str(&format!(
            "{name}{}{} {value}\n",
            if labels.is_empty() { "" } else { "{" },
            labels
        ));
    }
    out
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let exporter = FixtureExporter::start(&SHAPE.exposition());
    let port = free_port();
    let server_target = format!("127.0.0.1:{port}");
    let rules = repo(RULES);
    let prometheus = Prometheus::start_with_rules(
        &[&exporter.target(), &server_target],
        "1s",
        "1s",
        &[rules.as_path()],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = write_fixture_cluster(dir.path());
    let config = format!(
        "prometheus:\n  address: {}\n  timeout: 10s\nexporter:\n  interval: 2s\n  timeout: 10s\nweb:\n  enabled: false\n",
        prometheus.url()
    );
    let addr = format!("127.0.0.1:{port}");
    let mut server = ServerProcess::start(Launch {
        config_yaml: &config,
        args: &["--snapshot", &cluster],
        // Prometheus was told this port before the server started.
        env: &[("HAMI_WEBUI__SERVER__HTTP__ADDR", addr.as_str())],
        ..Launch::default()
    });
    server.port = port;
    assert!(
        server.wait_live(Duration::from_secs(20)),
        "{}",
        server.log()
    );
    // Recording rules over the server's families, device and container ones.
    for record in [
        "hami_model:devices:count",
        "hami_namespace:memory_allocation_efficiency:ratio",
        "hami_node:core_allocation_efficiency:ratio",
    ] {
        prometheus.wait_for_series(record, 1, Duration::from_secs(60));
    }

    let pport = prometheus.port;
    let mut failures = Vec::new();
    let mut checked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (file, dashboard) in dashboards() {
        let values = resolve_variables(pport, &dashboard, false);
        for panel in panels(&dashboard) {
            for target in targets(panel) {
                let expr = substitute(str_of(target, "expr"), &values);
                let instant = target["instant"].as_bool().unwrap_or(false);
                checked += 1;
                // Rates need two scrapes in their window; poll until the shared deadline.
                let answered = wait_for(deadline.saturating_duration_since(Instant::now()), || {
                    let end = now_ms();
                    let result = evaluate(pport, &expr, instant, (end - 30_000, end, 5))?;
                    (!result.is_empty()).then_some(())
                });
                if answered.is_none() {
                    failures.push(format!(
                        "{file}: panel {:?} query {}: no data\n    {expr}",
                        str_of(panel, "title"),
                        str_of(target, "refId")
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} panel queries");
    assert!(
        failures.is_empty(),
        "{}\n(server log:\n{})",
        failures.join("\n"),
        server.log()
    );

    if let Some(out) = std::env::var_os("HAMI_MIXIN_RENDER_DIR") {
        render_data(&exporter, pport, Path::new(&out));
    }
    assert!(server.is_running(), "{}", server.log());
}

/// Moves the exporter's values for a while, then writes every panel's data (range queries
/// over that time; instant ones at its end) to `out/<dashboard uid>.json`.
fn render_data(exporter: &FixtureExporter, port: u16, out: &Path) {
    let seconds: u64 = std::env::var("HAMI_MIXIN_RENDER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let base = SHAPE.exposition();
    let start = now_ms();
    let began = Instant::now();
    // One step every 2 s, bounded by count and by time.
    for step in 0..seconds / 2 {
        if began.elapsed() > Duration::from_secs(seconds + 60) {
            break;
        }
        exporter.set_text(&animate(&base, step as f64 * 2.0));
        std::thread::sleep(Duration::from_secs(2));
    }
    let end = now_ms();
    let step = (seconds / 120).max(2);
    std::fs::create_dir_all(out).expect("render directory");
    for (_, dashboard) in dashboards() {
        let values = resolve_variables(port, &dashboard, true);
        let mut panels_out = Vec::new();
        for panel in panels(&dashboard) {
            let mut results = Vec::new();
            for target in targets(panel) {
                let expr = substitute(str_of(target, "expr"), &values);
                let instant = target["instant"].as_bool().unwrap_or(false);
                let result = evaluate(port, &expr, instant, (start, end, step)).unwrap_or_default();
                results.push(json!({
                    "refId": target["refId"], "legendFormat": target["legendFormat"],
                    "instant": instant, "expr": expr, "result": result,
                }));
            }
            panels_out.push(json!({
                "id": panel["id"], "type": panel["type"], "title": panel["title"],
                "options": panel["options"],
                "gridPos": panel["gridPos"], "unit": panel["fieldConfig"]["defaults"]["unit"],
                "fieldConfig": panel["fieldConfig"], "transformations": panel["transformations"],
                "targets": results,
            }));
        }
        let uid = str_of(&dashboard, "uid");
        let doc = json!({
            "uid": uid, "title": dashboard["title"], "variables": values,
            "start": start / 1000, "end": end / 1000, "step": step,
            "rows": dashboard["panels"].as_array().into_iter().flatten()
                .filter(|p| p["type"] == "row")
                .map(|p| json!({"title": p["title"], "gridPos": p["gridPos"]}))
                .collect::<Vec<_>>(),
            "panels": panels_out,
        });
        let path = out.join(format!("{uid}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&doc).expect("json"))
            .expect("write render data");
        eprintln!("wrote {}", path.display());
    }
}
