//! The metrics refresher end to end: the real binary, a real Prometheus scraping a fixture
//! exporter, and `/metrics` as Prometheus would scrape it — values, query counts per cycle,
//! and what a scrape sees while the upstream misbehaves.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hami_webui_server::reply::upstream as capacity;
use hami_webui_server::synthetic::{ClusterShape, DEVICES_PER_NODE};
use support::faults::{Fault, FaultProxy};
use support::process::{wait_for, Launch, ServerProcess};
use support::upstream::{CountingProxy, FixtureExporter, Prometheus};

/// One series of an exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some(Series {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

fn value(series: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn cycles(series: &[Series], outcome: &str) -> f64 {
    value(
        series,
        "hami_webui_refresh_cycles_total",
        &[("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

/// The server on a synthetic cluster, its metrics store at `prometheus_url`.
fn start(
    shape: ClusterShape,
    prometheus_url: &str,
    exporter_yaml: &str,
) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.json");
    std::fs::write(&cluster, shape.list().to_string()).unwrap();
    let cluster_arg = cluster.to_string_lossy().into_owned();
    let config = format!(
        "prometheus:\n  address: {prometheus_url}\n  timeout: 5s\nexporter:\n{exporter_yaml}"
    );
    let server = ServerProcess::start(Launch {
        config_yaml: &config,
        args: &["--snapshot", &cluster_arg],
        ..Launch::default()
    });
    assert!(
        server.wait_live(Duration::from_secs(10)),
        "{}",
        server.log()
    );
    (server, dir)
}

fn scrape(server: &ServerProcess) -> Vec<Series> {
    parse(&server.get("/metrics").expect("scrape").text())
}

fn wait_for_cycles(
    server: &ServerProcess,
    outcome: &str,
    at_least: f64,
    deadline: Duration,
) -> Vec<Series> {
    wait_for(deadline, || {
        let series = scrape(server);
        (cycles(&series, outcome) >= at_least).then_some(series)
    })
    .unwrap_or_else(|| panic!("no {outcome} cycle:\n{}", server.log()))
}

fn round1(x: f32) -> f64 {
    (f64::from(x) * 10.0).round() / 10.0
}

/// Checks every family the fixture determines. `container_core` gives the expected
/// `hami_container_core_used` of `(pod, device uuid, fixture value)`.
fn check_published(
    series: &[Series],
    shape: ClusterShape,
    container_core: impl Fn(&str, &str, f64) -> f64,
) {
    for node in 0..shape.nodes {
        for d in 0..DEVICES_PER_NODE {
            let uuid = shape.exporter_id(node, d);
            let used = ClusterShape::memory_used_mib(node, d) as f64;
            let util = ClusterShape::utilization(node, d) as f64;
            let at = [("device_uuid", uuid.as_str())];
            assert_eq!(value(series, "hami_memory_used", &at), Some(used), "{uuid}");
            assert_eq!(value(series, "hami_core_util", &at), Some(util), "{uuid}");
            assert_eq!(
                value(series, "hami_core_used_avg", &at),
                Some(util),
                "{uuid}"
            );
            assert!(value(series, "hami_vgpu_count", &at).is_some(), "{uuid}");
        }
    }
    // NVIDIA: driver and device number from DCGM's labels; memory util from registered MiB.
    let gpu = shape.exporter_id(0, 3);
    let labelled = [
        ("device_uuid", gpu.as_str()),
        ("driver_version", "550.54"),
        ("device_no", "nvidia3"),
        ("provider", "NVIDIA"),
    ];
    let used = ClusterShape::memory_used_mib(0, 3) as f32;
    assert_eq!(
        value(series, "hami_memory_util", &labelled),
        Some(round1(100.0 * (used / 81920.0)))
    );
    // DCU and Ascend: shown under their exporters' ids, with the Go backend's labels.
    let dcu = shape.exporter_id(1, 2);
    let dcu_at = [
        ("device_uuid", dcu.as_str()),
        ("device_no", "dcu-2"),
        ("driver_version", "暂无"),
    ];
    assert!(value(series, "hami_vcore_size", &dcu_at).is_some());
    let npu = shape.exporter_id(2, 5);
    let npu_at = [("device_uuid", npu.as_str()), ("device_no", "ascend-5")];
    assert!(value(series, "hami_device_power", &npu_at).is_some());
    // Containers: allocation from the annotations, usage from the vGPU monitor.
    for (i, (node, allocations)) in shape.pod_layout().into_iter().enumerate() {
        if node % 4 != 0 && node % 4 != 3 {
            continue;
        }
        let pod = ClusterShape::pod_name(i);
        for (j, (d, mem, cores)) in allocations.iter().enumerate() {
            let uuid = shape.exporter_id(node, *d);
            let at = [("pod_name", pod.as_str()), ("device_uuid", uuid.as_str())];
            assert_eq!(
                value(series, "hami_container_vmemory_allocated", &at),
                Some(f64::from(*mem)),
                "{pod}"
            );
            let busy = container_core(&pod, &uuid, ((i + j) % 50) as f64);
            assert_eq!(
                value(series, "hami_container_core_used", &at),
                Some(busy),
                "{pod} {uuid}"
            );
            assert_eq!(
                value(series, "hami_container_core_util", &at),
                Some(round1(100.0 * busy as f32 / *cores as f32)),
                "{pod}"
            );
            assert_eq!(
                value(series, "hami_container_memory_used", &at),
                Some(f64::from(*mem) / 2.0),
                "{pod}"
            );
        }
    }
}

/// `promtool check metrics` must find no problem except the naming lints on family names the
/// Go backend chose and dashboards depend on (`hami_vgpu_count` ends in `_count`).
fn promtool_check(text: &str) {
    use std::io::Write;
    const INHERITED_NAMES: [&str; 1] = ["hami_vgpu_count"];
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) on PATH");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !INHERITED_NAMES
                .iter()
                .any(|n| l.starts_with(&format!("{n} ")))
        })
        .collect();
    assert!(problems.is_empty(), "promtool: {report}");
    assert!(
        !report.contains("error while linting"),
        "promtool: {report}"
    );
}

const MIXED: ClusterShape = ClusterShape {
    nodes: 4,
    allocations_per_device: 2,
    vendor_mix: true,
};

#[test]
fn published_values_equal_the_fixture_on_prometheus() {
    let exporter = FixtureExporter::start(&MIXED.exposition());
    let prometheus = Prometheus::start(&[&exporter.target()]);
    prometheus.wait_for_series("DCGM_FI_DEV_FB_USED", 16, Duration::from_secs(30));
    prometheus.wait_for_series(
        "hami_container_device_utilization_ratio",
        1,
        Duration::from_secs(30),
    );
    // The vGPU monitor expression averages over a 10-minute subquery, which a store holding
    // seconds of data may not answer yet; the reference is the store's own answer, absent = 0
    // as in the Go backend. The subquery's first aligned step must hold data before the
    // server's one cycle, or the server's answer and the later direct one could differ.
    let port: u16 = prometheus
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let q = "hami_container_device_utilization_ratio";
    let expr = format!("avg by (device_uuid, pod) (sum_over_time({q}[1m]) == 0 or (sum_over_time({q}[10m:]) / count_over_time(({q} != 0)[10m:])))");
    let answered = |expr: &str| {
        support::upstream::query_api(port, expr)
            .and_then(|a| a["data"]["result"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let pairs = answered(&format!("count by (device_uuid, pod) ({q})"));
    assert!(pairs > 0, "no utilization series");
    let settled = Instant::now() + Duration::from_secs(90);
    while answered(&expr) < pairs {
        assert!(Instant::now() < settled, "the subquery never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (server, _dir) = start(MIXED, &prometheus.url(), "  interval: 1h\n  timeout: 20s\n");
    let series = wait_for_cycles(&server, "ok", 1.0, Duration::from_secs(30));
    let answer = support::upstream::query_api(port, &expr).expect("direct query");
    let direct: HashMap<(String, String), f64> = answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let key = (
                r["metric"]["pod"].as_str()?.to_string(),
                r["metric"]["device_uuid"].as_str()?.to_string(),
            );
            Some((key, r["value"][1].as_str()?.parse().ok()?))
        })
        .collect();
    check_published(&series, MIXED, |pod, uuid, _| {
        direct
            .get(&(pod.to_string(), uuid.to_string()))
            .copied()
            .unwrap_or(0.0)
    });
    promtool_check(&server.get("/metrics").unwrap().text());
}

#[test]
fn published_values_equal_the_fixture_on_victoria_metrics() {
    let vm = support::upstream::VictoriaMetrics::start();
    // Eleven minutes of history, so the vGPU monitor's 10-minute subquery has data.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let exposition = MIXED.exposition();
    let mut history = String::new();
    for step in 0..=22u128 {
        let ts = now_ms - (22 - step) * 30_000;
        for line in exposition.lines() {
            history.push_str(&format!("{line} {ts}\n"));
        }
    }
    vm.import(&history);
    let (server, _dir) = start(MIXED, &vm.url(), "  interval: 1h\n  timeout: 20s\n");
    let series = wait_for_cycles(&server, "ok", 1.0, Duration::from_secs(30));
    check_published(&series, MIXED, |_, _, fixture| fixture);
    promtool_check(&server.get("/metrics").unwrap().text());
}

/// Upstream requests of the first cycle, counted at a proxy, for a cluster of `nodes`.
fn queries_of_first_cycle(nodes: usize, prometheus: &Prometheus) -> usize {
    let port: u16 = prometheus
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = CountingProxy::start(port);
    let (server, _dir) = start(
        ClusterShape {
            nodes,
            allocations_per_device: 4,
            vendor_mix: true,
        },
        &proxy.url(),
        "  interval: 1h\n  timeout: 20s\n",
    );
    // The cycle counter and the query gauge are separate families, each read once per
    // scrape: a scrape taken as the first cycle ends can see the count before the gauge.
    let series = wait_for(Duration::from_secs(30), || {
        let series = scrape(&server);
        let queries = value(&series, "hami_webui_refresh_queries", &[]).unwrap_or_default();
        (cycles(&series, "ok") >= 1.0 && queries > 0.0).then_some(series)
    })
    .unwrap_or_else(|| panic!("no ok cycle with its query count:\n{}", server.log()));
    let reported = value(&series, "hami_webui_refresh_queries", &[]).unwrap_or_default();
    // The start's card and node lists ask the store for capacities too; the cycle never does.
    let capacities = [
        capacity::DEVICE_CORE_QUERY,
        capacity::DEVICE_MEMORY_QUERY,
        capacity::NODE_CORE_QUERY,
        capacity::NODE_MEMORY_QUERY,
    ];
    let cycle = proxy
        .requests()
        .iter()
        .filter(|r| {
            r.form("query")
                .is_none_or(|q| !capacities.contains(&q.as_str()))
        })
        .count();
    assert_eq!(reported as usize, cycle, "our count agrees with the proxy");
    cycle
}

#[test]
fn queries_per_cycle_do_not_depend_on_cluster_size() {
    let prometheus = Prometheus::start(&[]);
    let small = queries_of_first_cycle(10, &prometheus);
    let large = queries_of_first_cycle(100, &prometheus);
    assert_eq!(small, large, "10 nodes: {small}, 100 nodes: {large}");
    assert!(small <= 40, "{small} queries per cycle");
    assert!(small > 0);
}

#[test]
fn scrapes_never_see_a_mix_of_cycles_while_the_upstream_misbehaves() {
    let shape = ClusterShape::gpus(2);
    // Generation g puts g * 1000 + device into every card's memory reading.
    let exposition = |g: u64| {
        shape
            .exposition()
            .lines()
            .map(|l| {
                if l.starts_with("DCGM_FI_DEV_FB_USED{") {
                    let (head, _) = l.rsplit_once(' ').unwrap();
                    let d: u64 = head
                        .split("gpu=\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap();
                    format!("{head} {}", g * 1000 + d)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let exporter = FixtureExporter::start(&exposition(1));
    let prometheus = Prometheus::start(&[&exporter.target()]);
    prometheus.wait_for_series("DCGM_FI_DEV_FB_USED", 16, Duration::from_secs(30));
    let port: u16 = prometheus
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(port);
    // The three failing phases last 4.5 s together: up to 5 failed cycles at a 1 s interval,
    // so families must be carried over for more than the default 3 to stay complete.
    let (server, _dir) = start(
        shape,
        &proxy.url(),
        "  interval: 1s\n  timeout: 600ms\n  stale_cycles: 8\n",
    );
    wait_for_cycles(&server, "ok", 1.0, Duration::from_secs(30));
    let devices: Vec<String> = (0..2)
        .flat_map(|n| (0..DEVICES_PER_NODE).map(move |d| (n, d)))
        .map(|(n, d)| shape.exporter_id(n, d))
        .collect();

    let phases = [
        Fault::Healthy,
        Fault::Slow(Duration::from_secs(2)),
        Fault::Error,
        Fault::Reset,
    ];
    let started = Instant::now();
    let mut generation = 1;
    let mut scrapes = 0;
    let mut seen_generations = std::collections::BTreeSet::new();
    let completed = |series: &[Series]| {
        ["ok", "partial", "timeout"]
            .iter()
            .map(|o| cycles(series, o))
            .sum::<f64>()
    };
    let first = completed(&scrape(&server));
    while completed(&scrape(&server)) < first + 20.0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "20 cycles took too long:\n{}",
            server.log()
        );
        let phase = phases[(started.elapsed().as_millis() / 1500) as usize % phases.len()];
        if phase == Fault::Healthy && proxy_is_not(&proxy, phase) {
            generation += 1;
            exporter.set_text(&exposition(generation));
        }
        proxy.set(phase);
        let series = scrape(&server);
        scrapes += 1;
        let mut generations = std::collections::BTreeSet::new();
        for uuid in &devices {
            let at = [("device_uuid", uuid.as_str())];
            for family in [
                "hami_vgpu_count",
                "hami_core_size",
                "hami_memory_used",
                "hami_core_util",
            ] {
                assert!(
                    value(&series, family, &at).is_some(),
                    "{family} missing for {uuid} at scrape {scrapes}"
                );
            }
            let used = value(&series, "hami_memory_used", &at).unwrap_or_default() as u64;
            generations.insert(used / 1000);
        }
        assert_eq!(
            generations.len(),
            1,
            "a scrape mixed cycles: {generations:?}"
        );
        seen_generations.extend(generations);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen_generations.len() >= 2,
        "values never changed: {seen_generations:?}"
    );
    let series = scrape(&server);
    assert!(
        cycles(&series, "timeout") >= 1.0,
        "slow phases should time out"
    );
    assert!(
        cycles(&series, "partial") >= 1.0,
        "error phases should be partial"
    );
}

/// Remembers the last phase set, so a new healthy phase moves the exporter on once.
fn proxy_is_not(_proxy: &FaultProxy, phase: Fault) -> bool {
    use std::sync::Mutex;
    static LAST: Mutex<Option<Fault>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap();
    let changed = *last != Some(phase);
    *last = Some(phase);
    changed
}
