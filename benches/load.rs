//! Load driver for the running service: the release binary on a synthetic `--snapshot`, its
//! metrics store a real VictoriaMetrics (fed by import) or a real Prometheus (scraping a
//! fixture exporter), every upstream request counted at a proxy. Prints one markdown table per
//! figure of `BENCHMARKS.md`.
//!
//! ```sh
//! cargo bench --bench load                               # 150, 1,000, 10,000 GPUs; both stores
//! cargo bench --bench load -- --sizes 150,1000 --upstreams vm
//! cargo bench --bench load -- --sizes 10000 --api-start-only --churn 2,20,200
//! cargo test --bench load -- --quick                     # CI smoke: 150 GPUs, debug build
//! ```
//!
//! Every loop is bounded in count and in time; everything listens on 127.0.0.1. Nothing is
//! asserted about timings: the figures are for reading, the goals sit beside them. What is
//! asserted is correctness: at every size and store, the values `/metrics` publishes for the
//! device and container families taken from an exporter series equal the generated
//! exposition's (the run fails otherwise, `--quick` included).

#[path = "data/realistic.rs"]
mod realistic;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hami_webui_server::config::DEFAULT_SCRAPE_SEND_BUFFER;
use realistic::RealisticCluster;
use support::process::{request, wait_for, Launch, ServerProcess};
use support::upstream::{CountingProxy, FixtureExporter, Prometheus, VictoriaMetrics};

#[derive(Parser, Debug)]
struct Args {
    /// Cluster sizes in GPUs (rounded up to whole 8-GPU nodes).
    #[arg(long, value_delimiter = ',', default_values_t = [150, 1_000, 10_000])]
    sizes: Vec<usize>,
    /// Metrics stores: `vm` (VictoriaMetrics), `prometheus`.
    #[arg(long, value_delimiter = ',', default_values_t = ["vm".to_string(), "prometheus".to_string()])]
    upstreams: Vec<String>,
    /// CI smoke mode: 150 GPUs, both stores, few requests (about a minute).
    #[arg(long)]
    quick: bool,
    /// Pods served by the test API server for the watch-mode figures: the GPU pods of the
    /// largest size, topped up with plain pods to this many (0: none added). `--quick` uses
    /// 2,000.
    #[arg(long, default_value_t = 0)]
    api_pods: usize,
    /// Write the realistic cluster of the first of `--sizes` (`cluster.json`, a
    /// `kubectl get nodes,pods -A -o json` List) and its exporters' series
    /// (`exposition.prom`) into this directory, and stop.
    #[arg(long)]
    write_cluster: Option<std::path::PathBuf>,
    /// Skip the watch-mode figures (start from the API, lists under churn).
    #[arg(long)]
    no_watch: bool,
    /// Pod events per second while the list routes are timed in watch mode.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 2, 20, 200])]
    churn: Vec<u32>,
    /// Only the start-from-the-API figure (at the largest of `--sizes`).
    #[arg(long)]
    api_start_only: bool,
    /// `exporter.interval` of the server under test, seconds.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Request counts per client; `quick` shrinks them.
struct Budget {
    quick: bool,
    cycles: u64,
    scrapes_per_client: usize,
    list_requests_per_client: usize,
    phase_deadline: Duration,
}

/// Everything measured for one (size, store).
#[derive(Debug, Default, Clone)]
struct Run {
    gpus: usize,
    upstream: String,
    allocations: usize,
    queries_per_cycle: f64,
    reported_queries: f64,
    cycle_mean_s: f64,
    cycle_last_s: f64,
    cpu_per_cycle_s: f64,
    cycles_measured: f64,
    /// The cycle's queries sent straight to the store, all at once as the server sends them,
    /// with no server running: what the store alone needs (median of 3 rounds).
    store_alone: StoreAlone,
    /// The same without the windowed query: what a cycle that holds its answer waits for.
    store_alone_unwindowed: StoreAlone,
    metrics: Latency,
    metrics_plain_bytes: usize,
    metrics_gzip_bytes: usize,
    lists: Vec<(String, Latency)>,
    /// `POST /v1/containers {}`: body bytes plain and gzipped.
    containers_bytes: (usize, usize),
    /// The same bytes from a [`TransferFloor`], same clients, while the server keeps cycling:
    /// the gzip `/metrics` body (8 clients) and the plain container list (32 clients).
    floor_metrics: Latency,
    /// The same floor with the send buffer our scrape connections use.
    floor_metrics_same_buffer: Latency,
    floor_containers_gzip: Latency,
    floor_containers_plain: Latency,
    ready_s: f64,
    peak_rss_mib: f64,
    /// How real-sized the data is.
    shape: DataShape,
    /// Published values against the exporters' (one plain `/metrics` after the timed cycles).
    agreement: Agreement,
}

/// What shows a reader the data is real-sized: objects, and how their text compresses.
#[derive(Debug, Default, Clone)]
struct DataShape {
    pods: usize,
    containers: usize,
    snapshot_bytes: usize,
    snapshot_gzip_bytes: usize,
    /// The pods' share of the file (compact JSON).
    pod_bytes: usize,
}

/// Bytes of `data` gzipped at the default level.
fn gzip_len(data: &[u8]) -> usize {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = encoder.write_all(data);
    encoder.finish().map_or(0, |packed| packed.len())
}

#[derive(Debug, Default, Clone)]
struct StoreAlone {
    /// Wall time of one round: every query sent at once, until the last answer.
    round_s: f64,
    /// The slowest single query of that round.
    slowest_s: f64,
    /// Its expression's first characters.
    slowest: String,
    failures: usize,
}

#[derive(Debug, Default, Clone)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    requests: usize,
    failures: usize,
}

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    // `cargo nextest run --all-targets` lists benches as tests: this driver offers none, so
    // the test run does not start a load run. Without `--bench` (cargo bench) or `--quick`
    // (cargo test --bench load -- --quick) it does nothing either.
    if raw.iter().any(|a| a == "--list") {
        return;
    }
    let args = Args::parse();
    if let Some(dir) = &args.write_cluster {
        let gpus = args.sizes.first().copied().unwrap_or(150);
        let cluster = RealisticCluster::generate(gpus);
        std::fs::create_dir_all(dir).expect("create the output directory");
        std::fs::write(dir.join("cluster.json"), cluster.list_json()).expect("write cluster.json");
        std::fs::write(dir.join("exposition.prom"), cluster.exposition())
            .expect("write exposition.prom");
        println!(
            "{} GPUs, {} pods, {} containers, {} allocations written to {}",
            cluster.gpus.len(),
            cluster.pods.len(),
            cluster.containers,
            cluster.allocations,
            dir.display()
        );
        return;
    }
    if !args.bench && !args.quick {
        eprintln!("load driver: pass --quick, or run through `cargo bench --bench load`");
        return;
    }
    let (sizes, budget) = if args.quick {
        (
            vec![150],
            Budget {
                quick: true,
                cycles: 2,
                scrapes_per_client: 10,
                list_requests_per_client: 3,
                phase_deadline: Duration::from_secs(30),
            },
        )
    } else {
        (
            args.sizes.clone(),
            Budget {
                quick: false,
                cycles: 4,
                scrapes_per_client: 50,
                list_requests_per_client: 10,
                phase_deadline: Duration::from_secs(120),
            },
        )
    };
    println!(
        "load driver: binary {}, {} cores",
        support::process::BINARY,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    check_the_comparison();
    let mut runs = Vec::new();
    for &gpus in sizes.iter().filter(|_| !args.api_start_only) {
        for upstream in &args.upstreams {
            let started = Instant::now();
            let run = measure(gpus, upstream, args.interval, &budget);
            eprintln!(
                "measured {gpus} GPUs on {upstream} in {:.0?}: {run:?}",
                started.elapsed()
            );
            runs.push(run);
        }
    }
    if !runs.is_empty() {
        print_tables(&runs);
    }
    let api_pods = if args.quick { 2_000 } else { args.api_pods };
    let largest = sizes.iter().copied().max().unwrap_or(150);
    if !args.no_watch {
        let started = Instant::now();
        let start = measure_api_start(largest, api_pods, &args.churn, &budget);
        eprintln!(
            "measured start from the API in {:.0?}: {start:?}",
            started.elapsed()
        );
        print_api_start(&start);
    }
    let disagreeing: Vec<String> = runs
        .iter()
        .filter(|r| !r.agreement.holds())
        .map(|r| {
            format!(
                "{} GPUs on {}: {}",
                r.gpus,
                r.upstream,
                r.agreement.summary()
            )
        })
        .collect();
    assert!(
        disagreeing.is_empty(),
        "published values differ from the exporter's (first differences above):\n{}",
        disagreeing.join("\n")
    );
}

/// Start from the test API server (list + watch, pages of 500, as in a cluster), then the
/// list routes timed while pods change at each churn rate.
#[derive(Debug, Default, Clone)]
struct ApiStart {
    gpus: usize,
    gpu_pods: usize,
    pods: usize,
    ready_s: f64,
    synced_s: f64,
    /// Per churn rate (events/s asked): the rate achieved and each list route's latency.
    churn: Vec<ChurnRun>,
    peak_rss_mib: f64,
}

#[derive(Debug, Default, Clone)]
struct ChurnRun {
    asked_per_s: u32,
    achieved_per_s: f64,
    routes: Vec<(String, Latency)>,
    /// The container list's gzip bytes of that moment from a bare server, the same clients,
    /// while pods keep changing.
    floor_containers: Latency,
}

/// Churn pods kept at once: each event adds one and, past this many, deletes the oldest.
const CHURN_WINDOW: usize = 50;

/// The realistic cluster's nodes and pods plus plain pods up to `pods` in all, on the test
/// API server (its own actix system on a thread); the release binary pointed at it through a
/// kubeconfig. Measures spawn → `/readyz` 200 and spawn → every GPU pod in the cache, then,
/// for each of `rates` (pod events per second: half additions, half deletions), 32 clients
/// per list route while the pods change.
fn measure_api_start(gpus: usize, pods: usize, rates: &[u32], budget: &Budget) -> ApiStart {
    use hami_webui_server::cluster::snapshot_file::{parse, ClusterExport};
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use support::kube_api::TestApiServer;

    let generated = RealisticCluster::generate(gpus);
    let export: ClusterExport =
        parse("realistic", &generated.list_json()).expect("realistic cluster");
    let devices = generated.gpus.len();
    let gpu_pods = export.pods.len();
    let plain = pods.saturating_sub(gpu_pods);
    let node_names: Vec<String> = export
        .nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let rate = Arc::new(AtomicU32::new(0));
    let applied = Arc::new(AtomicUsize::new(0));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let api_thread = {
        let (rate, applied) = (Arc::clone(&rate), Arc::clone(&applied));
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let api = TestApiServer::start().await;
                for node in export.nodes {
                    api.apply_node(node);
                }
                api.apply_many_pods(export.pods);
                let filler = (0..plain).map(|i| {
                    support::fixtures::pod(
                        "batch",
                        &format!("plain-{i}"),
                        &node_names[i % node_names.len().max(1)],
                        serde_json::json!({}),
                        "Running",
                    )
                });
                api.apply_many_pods(filler.collect());
                port_tx.send(api.port()).expect("report the API port");
                // Churn: events due by the clock at the asked rate, in 5 ms ticks.
                let mut added: std::collections::VecDeque<(String, String)> = Default::default();
                let mut next = 0usize;
                let mut since = (Instant::now(), 0u32, 0usize);
                while stop_rx.try_recv().is_err() {
                    actix_rt::time::sleep(Duration::from_millis(5)).await;
                    let asked = rate.load(Ordering::Relaxed);
                    if asked != since.1 {
                        since = (Instant::now(), asked, 0);
                    }
                    let due = (since.0.elapsed().as_secs_f64() * f64::from(asked)) as usize;
                    while since.2 < due {
                        if added.len() >= CHURN_WINDOW && since.2 % 2 == 1 {
                            if let Some((namespace, name)) = added.pop_front() {
                                api.delete_pod(&namespace, &name);
                            }
                        } else {
                            let value = generated.churn_pod(next);
                            next += 1;
                            let pod: k8s_openapi::api::core::v1::Pod =
                                serde_json::from_value(value).expect("churn pod");
                            let key = (
                                pod.metadata.namespace.clone().unwrap_or_default(),
                                pod.metadata.name.clone().unwrap_or_default(),
                            );
                            api.apply_pod(pod);
                            added.push_back(key);
                        }
                        since.2 += 1;
                        applied.fetch_add(1, Ordering::Relaxed);
                    }
                }
                api.stop().await;
            });
        })
    };
    let port = port_rx.recv().expect("test API server started");
    let api_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let server = ServerProcess::start(Launch {
        config_yaml: "prometheus:\n  address: http://127.0.0.1:9\n",
        api_server: &api_url,
        ..Launch::default()
    });
    let ready = wait_for(Duration::from_secs(120), || {
        server.get("/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "not ready in 120 s:\n{}", server.log());
    let ready_s = started.elapsed().as_secs_f64();
    let synced = wait_for(Duration::from_secs(120), || {
        let cached = metric(
            &scrape(&server),
            "hami_webui_cache_objects{resource=\"pods\"}",
        );
        (cached as usize >= gpu_pods).then_some(())
    });
    assert!(
        synced.is_some(),
        "GPU pods not cached in 120 s:\n{}",
        server.log()
    );
    let synced_s = started.elapsed().as_secs_f64();

    let server_port = server.port;
    let mut churn = Vec::new();
    for &asked in rates {
        rate.store(asked, Ordering::Relaxed);
        let (t0, a0) = (Instant::now(), applied.load(Ordering::Relaxed));
        // Timed once pods are changing: at 2 events/s a phase is shorter than one event.
        if asked > 0 {
            let _ = wait_for(Duration::from_secs(10), || {
                (applied.load(Ordering::Relaxed) >= a0 + 2).then_some(())
            });
        }
        let routes = ["/v1/gpus", "/v1/nodes", "/v1/containers"]
            .into_iter()
            .map(|route| {
                let latency = time_list_route(server_port, route, true, budget);
                (route.to_string(), latency)
            })
            .collect();
        let achieved_per_s =
            (applied.load(Ordering::Relaxed) - a0) as f64 / t0.elapsed().as_secs_f64();
        let floor_containers = {
            let headers = [
                ("Content-Type", "application/json"),
                ("Accept-Encoding", "gzip"),
            ];
            let body = request(server_port, "POST", "/v1/containers", &headers, b"{}")
                .map_or_else(|_| Vec::new(), |r| r.body);
            let floor = TransferFloor::start("application/json", Some("gzip"), &body, None);
            let port = floor.port;
            hammer(
                32,
                budget.list_requests_per_client,
                budget.phase_deadline,
                move |_| {
                    send(
                        port,
                        "POST",
                        "/v1/containers",
                        Some("application/json"),
                        b"{}",
                        true,
                    )
                },
            )
        };
        churn.push(ChurnRun {
            asked_per_s: asked,
            achieved_per_s,
            routes,
            floor_containers,
        });
    }
    rate.store(0, Ordering::Relaxed);
    let peak_rss_mib = peak_rss_mib(server.pid());
    drop(server);
    let _ = stop_tx.send(());
    let _ = api_thread.join();
    ApiStart {
        gpus: devices,
        gpu_pods,
        pods: gpu_pods + plain,
        ready_s,
        synced_s,
        churn,
        peak_rss_mib,
    }
}

fn print_api_start(start: &ApiStart) {
    println!("\n### Start to ready from the (test) Kubernetes API (goal < 10 s), peak RSS over start and churn (goal < 200 MiB)\n");
    println!("| GPUs | pods served (GPU pods) | ready (s) | all GPU pods cached (s) | peak RSS, VmHWM (MiB) |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} ({}) | {:.2} | {:.2} | {:.1} |",
        start.gpus, start.pods, start.gpu_pods, start.ready_s, start.synced_s, start.peak_rss_mib
    );
    println!("\n### Watch mode, list routes while pods change (32 clients per route, gzip; goal p99 < 150 ms up to 20 events/s, no failure at 200)\n");
    println!(
        "| GPUs | events/s asked (achieved) | route | requests (failed) | p50 (ms) | p99 (ms) |"
    );
    println!("|---:|---:|---|---:|---:|---:|");
    for run in &start.churn {
        let floor = (
            "the same container-list bytes from a bare server (floor)".to_string(),
            run.floor_containers.clone(),
        );
        for (route, l) in run.routes.iter().chain([&floor]) {
            let route = if route.starts_with('/') {
                format!("`{route}`")
            } else {
                route.clone()
            };
            println!(
                "| {} | {} ({:.0}) | {route} | {} ({}) | {:.1} | {:.1} |",
                start.gpus,
                run.asked_per_s,
                run.achieved_per_s,
                l.requests,
                l.failures,
                l.p50_ms,
                l.p99_ms
            );
        }
    }
}

/// Pid's CPU seconds so far (user + system, all threads).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks(),
        _ => f64::NAN,
    }
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The value of a self-metric line of a `/metrics` text: `prefix` is the name, or the name
/// and its `{labels}`; 0 when absent.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| match l.strip_prefix(prefix) {
            Some(rest) if prefix.ends_with('}') => rest.starts_with(' '),
            Some(rest) => rest.starts_with(' ') || rest.starts_with('{'),
            None => false,
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

fn completed_cycles(text: &str) -> f64 {
    ["ok", "partial", "timeout"]
        .iter()
        .map(|o| {
            metric(
                text,
                &format!("hami_webui_refresh_cycles_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum()
}

fn scrape(server: &ServerProcess) -> String {
    server.get("/metrics").map(|r| r.text()).unwrap_or_default()
}

/// Published device families that copy one dcgm-exporter field (`src/metrics/readings.rs`,
/// `devices.rs`), keyed by `device_uuid` (the exporter's `UUID`). The server holds them as
/// float32; the generated fields are whole numbers well inside its exact range.
const DEVICE_COPIES: [(&str, &str); 10] = [
    ("hami_memory_used", "DCGM_FI_DEV_FB_USED"),
    ("hami_core_used", "DCGM_FI_DEV_GPU_UTIL"),
    ("hami_core_util", "DCGM_FI_DEV_GPU_UTIL"),
    ("hami_core_used_avg", "DCGM_FI_DEV_GPU_UTIL"),
    ("hami_core_util_avg", "DCGM_FI_DEV_GPU_UTIL"),
    ("hami_device_temperature", "DCGM_FI_DEV_GPU_TEMP"),
    ("hami_device_memory_temperature", "DCGM_FI_DEV_MEMORY_TEMP"),
    ("hami_device_power", "DCGM_FI_DEV_POWER_USAGE"),
    ("hami_device_hardware_health", "DCGM_FI_DEV_XID_ERRORS"),
    ("hami_device_last_xid_error_code", "DCGM_FI_DEV_XID_ERRORS"),
];
/// Published container families taken from one vGPU-monitor series per allocation
/// (`src/metrics/containers.rs`), with the factor applied: bytes to MiB for memory; core
/// usage is the ten-minute mean of the non-zero samples, which is the value itself for the
/// generated (constant) series, except on a card over 95 % busy ([`exporter_values`]).
const CONTAINER_COPIES: [(&str, &str, f64); 2] = [
    (
        "hami_container_memory_used",
        "hami_vgpu_memory_used_bytes",
        1.0 / 1_048_576.0,
    ),
    (
        "hami_container_core_used",
        "hami_container_device_utilization_ratio",
        1.0,
    ),
];
/// The identity labels of a series on `/metrics`, and of the exporter series it comes from.
const DEVICE_KEY: ([&str; 1], [&str; 1]) = (["device_uuid"], ["UUID"]);
const CONTAINER_KEY: ([&str; 4], [&str; 4]) = (
    [
        "device_uuid",
        "namespace_name",
        "pod_name",
        "container_name",
    ],
    ["device_uuid", "namespace", "pod", "container"],
);

/// A published series: its family and its identity label values.
type SeriesKey = (&'static str, Vec<String>);
/// A sample line's labels: names and unescaped values.
type Labels<'a> = Vec<(&'a str, String)>;

/// One sample line of the text format: name, labels (unescaped) and value; `None` for
/// comments, blank lines and lines it cannot read. `wanted` filters by name before the
/// labels are read.
fn parse_sample(line: &str, wanted: impl Fn(&str) -> bool) -> Option<(&str, Labels<'_>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !wanted(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = body.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.trim_start_matches(','), value));
            body = &after[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

fn label<'a>(labels: &'a [(&str, String)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn key_of(family: &'static str, labels: &[(&str, String)], names: &[&str]) -> SeriesKey {
    let ids = names.iter().map(|n| label(labels, n).to_string()).collect();
    (family, ids)
}

/// What `/metrics` should publish for the families of [`DEVICE_COPIES`] and
/// [`CONTAINER_COPIES`], read from the exporters' exposition.
#[derive(Debug, Default)]
struct ExporterValues {
    values: std::collections::BTreeMap<SeriesKey, f64>,
    device_series: usize,
    container_series: usize,
    /// Container core series on a card busier than 95 %, expected at the card's share.
    busy_card: usize,
}

/// Cores each container holds on each device, from its pod's `hami.io/vgpu-devices-allocated`
/// (a `;`-separated part per container in spec order, `uuid,type,memory,cores:` per device;
/// 0 cores is no limit, the whole device, counted as 100 as the server and the Go backend
/// do), keyed by the exporter's labels of [`CONTAINER_KEY`].
type AllocatedCores = std::collections::HashMap<Vec<String>, f64>;

fn allocated_cores(pods: &[serde_json::Value]) -> AllocatedCores {
    let mut out = AllocatedCores::new();
    for pod in pods {
        let meta = &pod["metadata"];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let (namespace, name) = (text(&meta["namespace"]), text(&meta["name"]));
        let allocated = text(&meta["annotations"]["hami.io/vgpu-devices-allocated"]);
        let containers = pod["spec"]["containers"].as_array();
        for (container, part) in containers.into_iter().flatten().zip(allocated.split(';')) {
            for device in part.split(':').filter(|d| !d.is_empty()) {
                let fields: Vec<&str> = device.split(',').collect();
                if let [uuid, _, _, cores, ..] = fields[..] {
                    let key = vec![
                        uuid.to_string(),
                        namespace.clone(),
                        name.clone(),
                        text(&container["name"]),
                    ];
                    let cores = match cores.parse::<f64>() {
                        Ok(0.0) => 100.0,
                        parsed => parsed.unwrap_or(f64::NAN),
                    };
                    *out.entry(key).or_default() += cores;
                }
            }
        }
    }
    out
}

fn exporter_values(exposition: &str, cores: &AllocatedCores) -> ExporterValues {
    let wanted = |name: &str| {
        DEVICE_COPIES.iter().any(|(_, m)| *m == name)
            || CONTAINER_COPIES.iter().any(|(_, m, _)| *m == name)
    };
    let mut out = ExporterValues::default();
    let mut card_util = std::collections::HashMap::new();
    let mut core_used = Vec::new();
    for (name, labels, value) in exposition.lines().filter_map(|l| parse_sample(l, wanted)) {
        for (family, _) in DEVICE_COPIES.iter().filter(|(_, m)| *m == name) {
            out.values
                .insert(key_of(family, &labels, &DEVICE_KEY.1), value);
            out.device_series += 1;
        }
        if name == "DCGM_FI_DEV_GPU_UTIL" {
            card_util.insert(label(&labels, "UUID").to_string(), value);
        }
        for (family, _, factor) in CONTAINER_COPIES.iter().filter(|(_, m, _)| *m == name) {
            let key = key_of(family, &labels, &CONTAINER_KEY.1);
            if *family == "hami_container_core_used" {
                core_used.push((key, value));
            } else {
                out.values.insert(key, value * factor);
            }
            out.container_series += 1;
        }
    }
    for (key, value) in core_used {
        // The Go backend's rule: a container using a card busier than 95 % is shown with the
        // card's share of the cores it holds there.
        let busy = card_util.get(&key.1[0]).copied().filter(|u| *u > 95.0);
        let expected = match busy {
            Some(card) if value != 0.0 => {
                out.busy_card += 1;
                card / 100.0 * cores.get(&key.1).copied().unwrap_or(f64::NAN)
            }
            _ => value,
        };
        out.values.insert(key, expected);
    }
    out
}

/// The published values of the families compared, by the same keys.
fn published_values(metrics: &str) -> std::collections::BTreeMap<SeriesKey, f64> {
    let device = |name: &str| {
        DEVICE_COPIES
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(f, _)| *f)
    };
    let container = |name: &str| {
        CONTAINER_COPIES
            .iter()
            .find(|(f, _, _)| *f == name)
            .map(|(f, _, _)| *f)
    };
    let wanted = |name: &str| device(name).is_some() || container(name).is_some();
    let mut out = std::collections::BTreeMap::new();
    for (name, labels, value) in metrics.lines().filter_map(|l| parse_sample(l, wanted)) {
        let key = match (device(name), container(name)) {
            (Some(family), _) => key_of(family, &labels, &DEVICE_KEY.0),
            (_, Some(family)) => key_of(family, &labels, &CONTAINER_KEY.0),
            _ => continue,
        };
        out.insert(key, value);
    }
    out
}

/// Equal as printed values, allowing for the server's float32 arithmetic (the precision the
/// Go backend worked in: about seven significant digits) in its transforms.
fn same_value(published: f64, expected: f64) -> bool {
    published.to_bits() == expected.to_bits()
        || (published - expected).abs() <= 1e-6 * published.abs().max(expected.abs())
}

/// How `/metrics` agrees with the exporters, for one (size, store).
#[derive(Debug, Default, Clone)]
struct Agreement {
    device_series: usize,
    container_series: usize,
    busy_card: usize,
    compared: usize,
    equal: usize,
    /// Exporter series with no published series.
    missing_published: usize,
    /// Published series (of the compared families) with no exporter series.
    missing_exporter: usize,
    /// The first few differences, for the log.
    examples: Vec<String>,
}

impl Agreement {
    fn holds(&self) -> bool {
        self.compared > 0
            && self.equal == self.compared
            && self.missing_published == 0
            && self.missing_exporter == 0
    }

    fn summary(&self) -> String {
        let mut text = format!(
            "{} device series ({} families), {} container series ({} families)",
            grouped(self.device_series),
            DEVICE_COPIES.len(),
            grouped(self.container_series),
            CONTAINER_COPIES.len(),
        );
        if self.busy_card > 0 {
            text.push_str(&format!(
                " ({} of them core usage on a card over 95 %: the card's share)",
                grouped(self.busy_card)
            ));
        }
        if self.holds() {
            text.push_str(" ✓");
        } else {
            text.push_str(&format!(
                " ✗: {} compared, {} equal, {} differ, {} missing on /metrics, {} without an exporter series",
                self.compared,
                self.equal,
                self.compared - self.equal,
                self.missing_published,
                self.missing_exporter
            ));
        }
        text
    }
}

/// Compares every expected series with the published one.
fn agreement(
    expected: &ExporterValues,
    published: &std::collections::BTreeMap<SeriesKey, f64>,
) -> Agreement {
    const EXAMPLES: usize = 5;
    let mut out = Agreement {
        device_series: expected.device_series,
        container_series: expected.container_series,
        busy_card: expected.busy_card,
        ..Agreement::default()
    };
    let show = |(family, ids): &SeriesKey| format!("{family}{{{}}}", ids.join(","));
    for (key, want) in &expected.values {
        let Some(got) = published.get(key) else {
            out.missing_published += 1;
            if out.examples.len() < EXAMPLES {
                out.examples
                    .push(format!("{}: exporter {want}, not on /metrics", show(key)));
            }
            continue;
        };
        out.compared += 1;
        if same_value(*got, *want) {
            out.equal += 1;
        } else if out.examples.len() < EXAMPLES {
            out.examples
                .push(format!("{}: exporter {want}, /metrics {got}", show(key)));
        }
    }
    for (key, got) in published {
        if !expected.values.contains_key(key) {
            out.missing_exporter += 1;
            if out.examples.len() < EXAMPLES {
                out.examples
                    .push(format!("{}: /metrics {got}, no exporter series", show(key)));
            }
        }
    }
    out
}

/// `n` with thousands separators.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Known answers for the comparison's parsing and counting, run before any measurement (the
/// driver has no test harness): an escaped label value, a busy card, each kind of miss.
fn check_the_comparison() {
    let line = r#"hami_memory_used{node="n",device_uuid="GPU-\"a\"",x="1\n"} 2.5e3"#;
    let (name, labels, value) = parse_sample(line, |_| true).expect("a sample line");
    assert_eq!((name, value), ("hami_memory_used", 2500.0));
    assert_eq!(label(&labels, "device_uuid"), "GPU-\"a\"");
    assert_eq!(label(&labels, "x"), "1\n");
    assert!(parse_sample("# TYPE hami_memory_used gauge", |_| true).is_none());
    let exposition = "DCGM_FI_DEV_FB_USED{UUID=\"G1\"} 100\n\
        DCGM_FI_DEV_GPU_UTIL{UUID=\"G1\"} 97\n\
        hami_container_device_utilization_ratio{device_uuid=\"G1\",namespace=\"ns\",pod=\"p\",container=\"c\"} 30\n\
        hami_vgpu_memory_used_bytes{device_uuid=\"G1\",namespace=\"ns\",pod=\"p\",container=\"c\"} 3145728\n";
    // Two allocations of one container on G1, one without a core limit: 105 cores; the card
    // is 97 % busy.
    let pod = serde_json::json!({
        "metadata": {"namespace": "ns", "name": "p",
                     "annotations": {"hami.io/vgpu-devices-allocated": "G1,NVIDIA,3,0:G1,NVIDIA,3,5:;"}},
        "spec": {"containers": [{"name": "c"}]},
    });
    let expected = exporter_values(exposition, &allocated_cores(&[pod]));
    let counts = (expected.device_series, expected.container_series);
    assert_eq!((counts, expected.busy_card), ((5, 2), 1));
    let usage = r#"{node="n",provider="NVIDIA",device_type="A",device_uuid="G1",pod_name="p",container_name="c",namespace_name="ns"}"#;
    let mut metrics = String::new();
    for (family, value) in [
        ("hami_memory_used", "100"),
        ("hami_core_used", "97"),
        ("hami_core_util", "97"),
        ("hami_core_used_avg", "97"),
        ("hami_core_util_avg", "97"),
    ] {
        metrics.push_str(&format!("{family}{{device_uuid=\"G1\"}} {value}\n"));
    }
    metrics.push_str(&format!("hami_container_memory_used{usage} 3\n"));
    metrics.push_str(&format!("hami_container_core_used{usage} 101.85\n"));
    let result = agreement(&expected, &published_values(&metrics));
    assert!(result.holds() && result.compared == 7, "{result:?}");
    // One value off, one series gone, one series the exporter does not have.
    let wrong: String = metrics
        .lines()
        .filter(|l| !l.starts_with("hami_container_memory_used"))
        .map(|l| l.replace("} 100", "} 100.001") + "\n")
        .chain(["hami_core_used{device_uuid=\"G2\"} 1\n".to_string()])
        .collect();
    let result = agreement(&expected, &published_values(&wrong));
    assert_eq!(
        (
            result.compared - result.equal,
            result.missing_published,
            result.missing_exporter
        ),
        (1, 1, 1),
        "{result:?}"
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One request written in a single segment (no Nagle wait between head and body) on a
/// `TCP_NODELAY` connection with `Connection: close`; returns the status.
fn send(
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    gzip: bool,
) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut message = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if gzip {
        message.push_str("Accept-Encoding: gzip\r\n");
    }
    if let Some(ct) = content_type {
        message.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    message.push_str("\r\n");
    let mut bytes = message.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    read_status(&mut stream)
}

/// Reads a reply to its end and returns its status. The body is read through one fixed
/// buffer and dropped, as load generators such as `wrk` do: collecting 15 MB per request in
/// a growing `Vec` cost the client more CPU than the server spent, on the cores they share.
fn read_status(stream: &mut impl Read) -> std::io::Result<u16> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut head = Vec::with_capacity(32);
    loop {
        let n = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let wanted = 32usize.saturating_sub(head.len()).min(n);
        head.extend_from_slice(&buffer[..wanted]);
    }
    std::str::from_utf8(&head)
        .ok()
        .and_then(|head| head.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP reply"))
}

/// Sends the refresh cycle's queries (the server's own plan for this NVIDIA cluster)
/// straight to the store, all at once, `rounds` times; the median round. Without `windowed`,
/// the plan's windowed query is left out, as in a cycle that holds its answer.
fn time_store_alone(port: u16, rounds: usize, windowed: bool) -> StoreAlone {
    use hami_webui_server::device::Vendor;
    use hami_webui_server::metrics::queries::plan;

    let vendors = [Vendor::Nvidia].into_iter().collect();
    let types = ["NVIDIA".to_string()].into_iter().collect();
    let exprs: Vec<String> = plan(&vendors, &types)
        .into_iter()
        .filter(|(q, _)| windowed || !q.is_windowed())
        .map(|(_, e)| e)
        .collect();
    let mut results: Vec<StoreAlone> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            let threads: Vec<_> = exprs
                .iter()
                .cloned()
                .map(|expr| {
                    std::thread::spawn(move || {
                        let t = Instant::now();
                        let body = format!("query={}", support::upstream::encode(&expr));
                        let form = [("Content-Type", "application/x-www-form-urlencoded")];
                        let ok = request(port, "POST", "/api/v1/query", &form, body.as_bytes())
                            .is_ok_and(|r| r.status == 200);
                        (expr, t.elapsed().as_secs_f64(), ok)
                    })
                })
                .collect();
            let answers: Vec<_> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
            let round_s = started.elapsed().as_secs_f64();
            let failures = answers.iter().filter(|(_, _, ok)| !ok).count();
            let slowest = answers
                .into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or_default();
            StoreAlone {
                round_s,
                slowest_s: slowest.1,
                slowest: slowest.0.chars().take(48).collect(),
                failures,
            }
        })
        .collect();
    results.sort_by(|a, b| a.round_s.total_cmp(&b.round_s));
    results.swap_remove(results.len() / 2)
}

/// 32 clients asking `route` for `{}`, with or without gzip, within the budget.
fn time_list_route(port: u16, route: &'static str, gzip: bool, budget: &Budget) -> Latency {
    hammer(
        32,
        budget.list_requests_per_client,
        budget.phase_deadline,
        move |_| send(port, "POST", route, Some("application/json"), b"{}", gzip),
    )
}

/// `clients` threads, each sending up to `per_client` requests until `deadline`.
fn hammer(
    clients: usize,
    per_client: usize,
    deadline: Duration,
    send: impl Fn(usize) -> std::io::Result<u16> + Send + Sync + 'static,
) -> Latency {
    let send = Arc::new(send);
    let times = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(0usize));
    let end = Instant::now() + deadline;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (send, times, failures) =
                (Arc::clone(&send), Arc::clone(&times), Arc::clone(&failures));
            std::thread::spawn(move || {
                for i in 0..per_client {
                    if Instant::now() >= end {
                        break;
                    }
                    let t = Instant::now();
                    let ok = send(c * per_client + i).is_ok_and(|status| status == 200);
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    if ok {
                        times.lock().unwrap().push(ms);
                    } else {
                        *failures.lock().unwrap() += 1;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let mut times = times.lock().unwrap().clone();
    times.sort_by(f64::total_cmp);
    let failures = *failures.lock().unwrap();
    Latency {
        p50_ms: percentile(&times, 50.0),
        p99_ms: percentile(&times, 99.0),
        requests: times.len() + failures,
        failures,
    }
}

/// The machine's floor for moving a reply: a bare HTTP/1.1 server on 127.0.0.1 that answers
/// every request with the same bytes in one `write_all` (thread per connection, nothing
/// parsed but the head). Timed with the same clients while the server under test keeps
/// cycling, it separates what serving costs us from what moving the bytes costs on these
/// cores.
struct TransferFloor {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl TransferFloor {
    fn start(
        content_type: &str,
        content_encoding: Option<&str>,
        body: &[u8],
        send_buffer: Option<usize>,
    ) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind floor");
        let port = listener.local_addr().expect("floor address").port();
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(encoding) = content_encoding {
            reply.push_str(&format!("Content-Encoding: {encoding}\r\n"));
        }
        reply.push_str("\r\n");
        let mut reply = reply.into_bytes();
        reply.extend_from_slice(body);
        let reply = Arc::new(reply);
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let reply = Arc::clone(&reply);
                    std::thread::spawn(move || {
                        let _ = stream.set_nodelay(true);
                        if let Some(bytes) = send_buffer {
                            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
                        }
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        if read_request(&mut stream).is_ok() {
                            let _ = stream.write_all(&reply);
                        }
                    });
                }
            })
        };
        Self {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for TransferFloor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wakes the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one request: its head, then `Content-Length` bytes of body.
fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buffer[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = raw.len() - head_end;
    while have < length {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(())
}

/// The exposition as samples at `ts_ms`, for `/api/v1/import/prometheus`.
fn samples_at(exposition: &str, ts_ms: u128) -> String {
    let ts = ts_ms.to_string();
    let mut out = String::with_capacity(exposition.len() + exposition.len() / 4);
    for line in exposition.lines() {
        out.push_str(line);
        out.push(' ');
        out.push_str(&ts);
        out.push('\n');
    }
    out
}

/// Samples 30 s apart covering the vGPU monitor query's ten-minute window and ending now, as
/// a store that has scraped the cluster for a while holds them; `--quick` too. Fewer do not
/// answer every expression: VictoriaMetrics evaluates a `[10m:]` subquery of an instant query
/// at its default `step`, 5 minutes, on multiples of 5 minutes, and a history of one minute
/// (3 samples) mostly holds no such instant, so the vGPU monitor query answers nothing and
/// the server publishes 0 for every container's core usage.
const HISTORY_STEPS: u128 = 21;

/// The store under test and what keeps it fed.
enum Store {
    Vm(VictoriaMetrics),
    Prometheus {
        prometheus: Prometheus,
        /// Kept alive for Prometheus to scrape.
        _exporter: FixtureExporter,
    },
}

impl Store {
    fn port(&self) -> u16 {
        match self {
            Store::Vm(vm) => vm.port,
            Store::Prometheus { prometheus, .. } => prometheus.port,
        }
    }
}

/// Prometheus' `(scrape_interval, evaluation_interval)` for the timed runs: a common
/// production setting. The evaluation interval is the default resolution of the vGPU monitor
/// query's `[10m:]` subquery; at 1 s (the tests' setting) Prometheus evaluates 600 points per
/// series for it, and scraping a 10,000-GPU exposition every second keeps a core busy.
const PROMETHEUS_INTERVALS: (&str, &str) = ("15s", "30s");

fn start_store(upstream: &str, exposition: &str, devices: usize, quick: bool) -> Store {
    match upstream {
        "vm" => {
            let vm = VictoriaMetrics::start();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis();
            for step in 0..HISTORY_STEPS {
                vm.import(&samples_at(
                    exposition,
                    now_ms - (HISTORY_STEPS - 1 - step) * 30_000,
                ));
            }
            Store::Vm(vm)
        }
        "prometheus" => {
            let exporter = FixtureExporter::start(exposition);
            let (scrape, evaluation) = if quick {
                ("1s", "1s")
            } else {
                PROMETHEUS_INTERVALS
            };
            let prometheus =
                Prometheus::start_with_intervals(&[&exporter.target()], scrape, evaluation);
            prometheus.wait_for_series("DCGM_FI_DEV_FB_USED", devices, Duration::from_secs(120));
            // The container core query's `[10m:]` subquery sees a series only from its first
            // evaluation step after the first scrape; a cycle before that publishes 0 for every
            // container, which is a fresh store, not a figure of ours.
            let core = hami_webui_server::metrics::queries::expression(
                hami_webui_server::metrics::CycleQuery::TaskCore(
                    hami_webui_server::device::Vendor::Nvidia,
                ),
            )
            .expect("the NVIDIA core query");
            prometheus.wait_for_series(
                &core,
                devices * realistic::ALLOCATIONS_PER_GPU,
                Duration::from_secs(120),
            );
            Store::Prometheus {
                prometheus,
                _exporter: exporter,
            }
        }
        other => panic!("unknown upstream {other:?} (vm, prometheus)"),
    }
}

fn start_server(store_url: &str, interval: u64, cluster: &str) -> ServerProcess {
    let config = format!(
        "prometheus:\n  address: {store_url}\n  timeout: 30s\nexporter:\n  interval: {interval}s\n  timeout: 30s\n"
    );
    ServerProcess::start(Launch {
        config_yaml: &config,
        args: &["--snapshot", cluster],
        ..Launch::default()
    })
}

/// Waits (up to 150 s, polling slowly: a scrape at 10,000 GPUs is not free) for the first
/// completed refresh cycle; returns that scrape.
fn first_cycle(server: &ServerProcess) -> String {
    let first = (0..600).find_map(|_| {
        let text = scrape(server);
        if completed_cycles(&text) >= 1.0 {
            return Some(text);
        }
        std::thread::sleep(Duration::from_millis(250));
        None
    });
    first.unwrap_or_else(|| panic!("no refresh cycle in 150 s:\n{}", server.log()))
}

fn measure(gpus: usize, upstream: &str, interval: u64, budget: &Budget) -> Run {
    let generated = RealisticCluster::generate(gpus);
    let devices = generated.gpus.len();
    let allocations = generated.allocations;
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = dir.path().join("cluster.json");
    let list = generated.list_json();
    let shape = DataShape {
        pods: generated.pods.len(),
        containers: generated.containers,
        snapshot_bytes: list.len(),
        snapshot_gzip_bytes: gzip_len(list.as_bytes()),
        pod_bytes: generated.pods.iter().map(|p| p.to_string().len()).sum(),
    };
    std::fs::write(&cluster, &list).expect("write cluster");
    drop(list);
    let cluster_arg = cluster.to_string_lossy().into_owned();

    let exposition = generated.exposition();
    let expected = exporter_values(&exposition, &allocated_cores(&generated.pods));
    let store = start_store(upstream, &exposition, devices, budget.quick);
    drop((generated, exposition));

    // Phase 1, through a counting proxy: upstream requests per cycle. The proxy forwards on
    // fresh connections and adds its own latency, so nothing is timed in this phase.
    let proxy = CountingProxy::start(store.port());
    let counted = start_server(&proxy.url(), interval, &cluster_arg);
    let text = first_cycle(&counted);
    let (q0, c0) = (proxy.request_count(), completed_cycles(&text));
    let end = Instant::now() + budget.phase_deadline;
    let mut counted_cycles = 0.0;
    let mut q1 = q0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        let q = proxy.request_count();
        let c = completed_cycles(&scrape(&counted)) - c0;
        (counted_cycles, q1) = (c, q);
        if c >= 2.0 {
            break;
        }
    }
    drop(counted);
    let queries_per_cycle = (q1 - q0) as f64 / counted_cycles.max(1.0);

    // The store alone, no server running: the floor under the cycle's wall time.
    let store_alone = time_store_alone(store.port(), 3, true);
    let store_alone_unwindowed = time_store_alone(store.port(), 3, false);

    // Phase 2, straight to the store: start to ready, then everything timed.
    let started = Instant::now();
    let server = start_server(
        &format!("http://127.0.0.1:{}", store.port()),
        interval,
        &cluster_arg,
    );
    let ready = wait_for(Duration::from_secs(60), || {
        server.get("/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "not ready in 60 s:\n{}", server.log());
    let ready_s = started.elapsed().as_secs_f64();
    first_cycle(&server);

    // Idle window of whole cycles: queries at the proxy, CPU and wall time per cycle. CPU is
    // read after the opening scrape and before the closing one, so scrapes are not counted.
    let pid = server.pid();
    let before = scrape(&server);
    let cpu0 = cpu_seconds(pid);
    let window_end = Instant::now() + budget.phase_deadline;
    let c0 = completed_cycles(&before);
    std::thread::sleep(Duration::from_secs(interval * budget.cycles));
    let mut after;
    let mut cpu1;
    loop {
        cpu1 = cpu_seconds(pid);
        after = scrape(&server);
        if completed_cycles(&after) - c0 >= budget.cycles as f64 || Instant::now() >= window_end {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let cycles = completed_cycles(&after) - c0;
    let sum = |t: &str| metric(t, "hami_webui_refresh_duration_seconds_sum");
    let count = |t: &str| metric(t, "hami_webui_refresh_duration_seconds_count");
    let cycle_mean_s = (sum(&after) - sum(&before)) / (count(&after) - count(&before)).max(1.0);

    // /metrics: sizes, then 8 concurrent scrapers while refreshes keep running.
    let port = server.port;
    let plain = request(port, "GET", "/metrics", &[], b"").expect("scrape");
    let gzip =
        request(port, "GET", "/metrics", &[("Accept-Encoding", "gzip")], b"").expect("gzip scrape");
    assert_eq!(gzip.header("content-encoding"), Some("gzip"), "gzip served");
    let metrics = hammer(
        8,
        budget.scrapes_per_client,
        budget.phase_deadline,
        move |_| send(port, "GET", "/metrics", None, b"", true),
    );

    let containers_plain = {
        let headers = [("Content-Type", "application/json")];
        request(port, "POST", "/v1/containers", &headers, b"{}")
            .map_or_else(|_| Vec::new(), |r| r.body)
    };
    let containers_gzip = {
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept-Encoding", "gzip"),
        ];
        request(port, "POST", "/v1/containers", &headers, b"{}")
            .map_or_else(|_| Vec::new(), |r| r.body)
    };
    let containers_bytes = (containers_plain.len(), containers_gzip.len());

    // List routes: 32 concurrent clients each, asking for gzip as browsers do; the container
    // list once more without it.
    let routes = [
        ("/v1/gpus", true),
        ("/v1/nodes", true),
        ("/v1/containers", true),
        ("/v1/containers", false),
    ];
    let lists = routes
        .into_iter()
        .map(|(route, gzip)| {
            let latency = time_list_route(port, route, gzip, budget);
            let label = if gzip {
                route.to_string()
            } else {
                format!("{route} (no gzip)")
            };
            (label, latency)
        })
        .collect();

    // The floor: the same bytes from a bare server, the same clients, while ours keeps cycling
    // against the store.
    let metrics_floor = |send_buffer: Option<usize>| {
        let floor = TransferFloor::start(
            "text/plain; version=0.0.4",
            Some("gzip"),
            &gzip.body,
            send_buffer,
        );
        let port = floor.port;
        hammer(
            8,
            budget.scrapes_per_client,
            budget.phase_deadline,
            move |_| send(port, "GET", "/metrics", None, b"", true),
        )
    };
    let floor_metrics = metrics_floor(None);
    // Our scrape connections fix their send buffer (`server.http.scrape_send_buffer`), which
    // on its own makes moving the bytes cheaper; this floor does the same.
    let floor_metrics_same_buffer = metrics_floor(Some(DEFAULT_SCRAPE_SEND_BUFFER));
    let list_floor = |encoding: Option<&str>, body: &[u8]| {
        let floor = TransferFloor::start("application/json", encoding, body, None);
        let port = floor.port;
        let gzip = encoding.is_some();
        hammer(
            32,
            budget.list_requests_per_client,
            budget.phase_deadline,
            move |_| {
                send(
                    port,
                    "POST",
                    "/v1/containers",
                    Some("application/json"),
                    b"{}",
                    gzip,
                )
            },
        )
    };
    let floor_containers_gzip = list_floor(Some("gzip"), &containers_gzip);
    let floor_containers_plain = list_floor(None, &containers_plain);

    // Published values against the exporters', from the plain scrape above (taken after the
    // idle cycles, each published from the store's answers); compared once nothing is timed.
    let agreement = agreement(&expected, &published_values(&plain.text()));
    println!(
        "published values equal the exporter's, {devices} GPUs on {upstream}: {}",
        agreement.summary()
    );
    for example in &agreement.examples {
        println!("  {example}");
    }

    Run {
        gpus: devices,
        upstream: upstream.to_string(),
        allocations,
        shape,
        queries_per_cycle,
        reported_queries: metric(&after, "hami_webui_refresh_queries"),
        cycle_mean_s,
        cycle_last_s: metric(&after, "hami_webui_metrics_refresh_duration_seconds"),
        cpu_per_cycle_s: (cpu1 - cpu0) / cycles.max(1.0),
        cycles_measured: cycles,
        store_alone,
        store_alone_unwindowed,
        metrics,
        metrics_plain_bytes: plain.body.len(),
        metrics_gzip_bytes: gzip.body.len(),
        lists,
        containers_bytes,
        floor_metrics,
        floor_metrics_same_buffer,
        floor_containers_gzip,
        floor_containers_plain,
        ready_s,
        peak_rss_mib: peak_rss_mib(pid),
        agreement,
    }
}

fn print_tables(runs: &[Run]) {
    println!("\n### The data (generated as a real API server and real exporters return it)\n");
    println!("| GPUs | store | pods | containers | allocations | snapshot file (bytes) | bytes per pod | file gzip ratio | `/v1/containers` plain / gzip (bytes) | ratio | `/metrics` plain / gzip (bytes) | ratio |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ratio = |plain: usize, packed: usize| plain as f64 / packed.max(1) as f64;
    for r in runs {
        let d = &r.shape;
        let (cp, cg) = r.containers_bytes;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {cp} / {cg} | {:.1} | {} / {} | {:.1} |",
            r.gpus,
            r.upstream,
            d.pods,
            d.containers,
            r.allocations,
            d.snapshot_bytes,
            d.pod_bytes / d.pods.max(1),
            ratio(d.snapshot_bytes, d.snapshot_gzip_bytes),
            ratio(cp, cg),
            r.metrics_plain_bytes,
            r.metrics_gzip_bytes,
            ratio(r.metrics_plain_bytes, r.metrics_gzip_bytes),
        );
    }
    println!("\n### Upstream queries per refresh cycle (goal ≤ 40)\n");
    println!("| GPUs | store | allocations | ours, at the proxy | ours, self-reported | Go design (10·devices + 3·allocations) |");
    println!("|---:|---|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {} | {:.1} | {} | {} |",
            r.gpus,
            r.upstream,
            r.allocations,
            r.queries_per_cycle,
            r.reported_queries,
            10 * r.gpus + 3 * r.allocations
        );
    }
    println!("\n### Refresh cycle (goal at 10,000 GPUs: < 2 s wall, < 0.5 CPU-s)\n");
    println!("| GPUs | store | cycles measured | wall, mean (s) | wall, last (s) | server CPU per cycle (s) | store alone: the cycle's queries at once, windowed held (s) | with the windowed one too (s) | slowest query alone (s) |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} `{}…`{} |",
            r.gpus,
            r.upstream,
            r.cycles_measured,
            r.cycle_mean_s,
            r.cycle_last_s,
            r.cpu_per_cycle_s,
            r.store_alone_unwindowed.round_s,
            r.store_alone.round_s,
            r.store_alone.slowest_s,
            r.store_alone.slowest,
            if r.store_alone.failures > 0 {
                format!(" ({} failed)", r.store_alone.failures)
            } else {
                String::new()
            }
        );
    }
    println!("\n### `/metrics`, 8 concurrent scrapers during refreshes (goal p99 < 50 ms)\n");
    println!(
        "| GPUs | store | requests (failed) | p50 (ms) | p99 (ms) | plain (bytes) | gzip (bytes) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {} ({}) | {:.1} | {:.1} | {} | {} |",
            r.gpus,
            r.upstream,
            r.metrics.requests,
            r.metrics.failures,
            r.metrics.p50_ms,
            r.metrics.p99_ms,
            r.metrics_plain_bytes,
            r.metrics_gzip_bytes
        );
    }
    println!("\n### List routes, 32 concurrent clients, `POST {{}}`, `Accept-Encoding: gzip` unless marked (goal p99 < 150 ms)\n");
    println!("| GPUs | store | route | requests (failed) | p50 (ms) | p99 (ms) |");
    println!("|---:|---|---|---:|---:|---:|");
    for r in runs {
        for (route, l) in &r.lists {
            println!(
                "| {} | {} | `{route}` | {} ({}) | {:.1} | {:.1} |",
                r.gpus, r.upstream, l.requests, l.failures, l.p50_ms, l.p99_ms
            );
        }
    }
    println!("\n### The same bytes from a bare server, same clients, while ours keeps cycling (the floor)\n");
    println!("| GPUs | store | reply | clients | requests (failed) | p50 (ms) | p99 (ms) | ours: p50 / p99 (ms) |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|");
    for r in runs {
        let ours = |label: &str| {
            r.lists
                .iter()
                .find(|(route, _)| route == label)
                .map(|(_, l)| l.clone())
                .unwrap_or_default()
        };
        let ours_plain = ours("/v1/containers (no gzip)");
        let ours_gzip = ours("/v1/containers");
        for (reply, clients, floor, ours) in [
            ("`/metrics` gzip", 8, &r.floor_metrics, &r.metrics),
            (
                "`/metrics` gzip, the floor with our 128 KiB send buffer",
                8,
                &r.floor_metrics_same_buffer,
                &r.metrics,
            ),
            (
                "`/v1/containers` gzip",
                32,
                &r.floor_containers_gzip,
                &ours_gzip,
            ),
            (
                "`/v1/containers` plain",
                32,
                &r.floor_containers_plain,
                &ours_plain,
            ),
        ] {
            println!(
                "| {} | {} | {reply} | {clients} | {} ({}) | {:.1} | {:.1} | {:.1} / {:.1} |",
                r.gpus,
                r.upstream,
                floor.requests,
                floor.failures,
                floor.p50_ms,
                floor.p99_ms,
                ours.p50_ms,
                ours.p99_ms
            );
        }
    }
    println!("\n`POST /v1/containers {{}}` body (bytes, plain / gzip):");
    for r in runs {
        let (plain, gzip) = r.containers_bytes;
        println!("- {} GPUs, {}: {plain} / {gzip}", r.gpus, r.upstream);
    }
    println!("\n### Published values equal to the exporter's (one plain `/metrics` after the timed cycles)\n");
    println!("| GPUs | store | device series ({} families) | container series ({} families) | compared | equal | missing on `/metrics` | without an exporter series | of them core usage on a card over 95 % | |", DEVICE_COPIES.len(), CONTAINER_COPIES.len());
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in runs {
        let a = &r.agreement;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.gpus,
            r.upstream,
            a.device_series,
            a.container_series,
            a.compared,
            a.equal,
            a.missing_published,
            a.missing_exporter,
            a.busy_card,
            if a.holds() { "✓" } else { "✗" }
        );
    }
    println!(
        "\n### Start to ready from a snapshot file (goal < 10 s), peak RSS (goal < 200 MiB)\n"
    );
    println!("| GPUs | store | ready (s) | peak RSS, VmHWM (MiB) |");
    println!("|---:|---|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {:.2} | {:.1} |",
            r.gpus, r.upstream, r.ready_s, r.peak_rss_mib
        );
    }
}
