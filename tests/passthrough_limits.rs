//! What a caller may make the PromQL pass-through (`/v1/monitor/query/*`) do to the metrics
//! store: query length, points per range and the metric allow-list are checked before
//! anything goes upstream (a counting proxy sees nothing), the frontend's own queries pass
//! an allow-list of `hami_` and `kube_`, and a flood of pass-through queries against a stalled
//! upstream leaves the refresher's cycles running (the real binary).

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hami_webui_server::http;
use serde_json::{json, Value};

use hami_webui_server::cluster::ClusterSource;
use support::app;
use support::process::{request, wait_for, Launch, ServerProcess};
use support::upstream::{one_sample_json, CountingProxy, StubReply, StubServer};

const INSTANT: &str = "/v1/monitor/query/instant-vector";
const RANGE: &str = "/v1/monitor/query/range-vector";

/// The frontend's queries (HAMi-WebUI 8f42445, `packages/web/projects/vgpu`), with its
/// `$node`, `$device_uuid`, … placeholders filled in.
const FRONTEND_QUERIES: &str = include_str!("golden/frontend_queries.txt");

/// The routes as the server mounts them, with the metrics store at `$address` and the
/// `monitor:` section `$monitor`, once ready.
macro_rules! app {
    ($address:expr, $monitor:expr $(,)?) => {{
        let config = app::config(&format!(
            "server:\n  timezone: Asia/Shanghai\nprometheus:\n  address: {}\n  timeout: 10s\n{}",
            $address, $monitor
        ));
        let state = app::start(config, ClusterSource::Snapshot(Default::default())).await;
        // Ready once the start's card and node lists asked the store (four queries).
        app::until_ready(&state, Duration::from_secs(20)).await;
        actix_web::test::init_service(http::app(state)).await
    }};
}

/// POSTs `body` as JSON to `uri` of `app`; status and JSON reply.
macro_rules! post {
    ($app:expr, $uri:expr, $body:expr) => {{
        let request = actix_web::test::TestRequest::post()
            .uri($uri)
            .insert_header(("Content-Type", "application/json"))
            .set_payload(Value::to_string(&$body))
            .to_request();
        let response = actix_web::test::call_service(&$app, request).await;
        let status = response.status().as_u16();
        let bytes = actix_web::test::read_body(response).await;
        let json: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, json)
    }};
}

fn range(query: &str, start: &str, end: &str, step: &str) -> Value {
    json!({"query": query, "range": {"start": start, "end": end, "step": step}})
}

fn transform_error(message: &str) -> Value {
    json!({"code": 522, "reason": "TRANSFORM_ERROR", "message": message, "metadata": {}})
}

#[actix_rt::test]
async fn refused_queries_never_reach_the_upstream() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("1")));
    let proxy = CountingProxy::start(stub.port);
    let app = app!(
        &proxy.url(),
        "monitor:\n  allowed_metric_prefixes: [hami_, kube_]\n",
    );
    let warmed = proxy.request_count();
    let forwarded = || proxy.request_count() - warmed;

    let long = format!("hami_x{{a=\"{}\"}}", "a".repeat(16_384));
    let (status, body) = post!(app, INSTANT, json!({"query": long}));
    assert_eq!(status, 522, "{body}");
    assert_eq!(
        body,
        transform_error(&format!(
            "query is {} bytes long; at most 16384 are accepted (monitor.max_query_length)",
            long.len()
        ))
    );

    // One day at 1 s: 86,401 points per series.
    let day = range(
        "hami_core_util",
        "2025-05-01 00:00:00",
        "2025-05-02 00:00:00",
        "1s",
    );
    let (status, body) = post!(app, RANGE, day);
    assert_eq!(status, 522, "{body}");
    assert_eq!(
        body,
        transform_error(
            "the range has 86401 points per series; at most 11001 are accepted (Prometheus' limit, (end - start) / step <= 11000): increase the step or shorten the range"
        )
    );
    let zero_step = range("hami_x", "2025-05-01 00:00:00", "2025-05-01 01:00:00", "0s");
    assert_eq!(post!(app, RANGE, zero_step).0, 522);

    let (status, body) = post!(app, INSTANT, json!({"query": "up"}));
    assert_eq!(status, 522, "{body}");
    assert_eq!(
        body,
        transform_error(
            "metric \"up\" is not allowed; metric names must start with one of: hami_, kube_ (monitor.allowed_metric_prefixes)"
        )
    );
    for query in [
        "sum(hami_memory_used) / sum(node_memory_MemTotal_bytes)",
        "{__name__=~\".+\"}",
        "{__name__=~\"hami_.*|process_.*\"}",
        "topk(scalar(count(up)), hami_core_util)",
        "sum(rate(hami_x[5m]",
    ] {
        let (status, body) = post!(app, INSTANT, json!({"query": query}));
        assert_eq!(status, 522, "{query}: {body}");
        assert_eq!(body["reason"], "TRANSFORM_ERROR", "{query}");
        let in_range = range(query, "2025-05-01 00:00:00", "2025-05-01 01:00:00", "1m");
        assert_eq!(post!(app, RANGE, in_range).0, 522, "{query}");
    }
    assert_eq!(forwarded(), 0, "{:?}", proxy.requests());

    // The proxy is on the path: an allowed query at the limits goes through.
    let edge = range(
        "hami_core_util",
        "2025-05-01 00:00:00",
        "2025-05-08 15:19:00",
        "1m",
    );
    stub.set_reply(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into(),
    ));
    let (status, body) = post!(app, RANGE, edge);
    assert_eq!(status, 200, "{body}");
    assert_eq!(forwarded(), 1);
}

/// Prometheus refuses a range when `(end - start) / step > 11000` (whole steps): 11,001
/// points per series pass, 11,002 do not, and a partial last step does not count.
#[actix_rt::test]
async fn range_limit_is_prometheus_rule_at_the_boundary() {
    let stub = StubServer::start(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into(),
    ));
    let proxy = CountingProxy::start(stub.port);
    let app = app!(&proxy.url(), "");
    let warmed = proxy.request_count();
    let start = "2025-05-01 00:00:00";
    // (end, step, accepted): 11,000 minutes end at 2025-05-08 15:20, 11,000 s at 03:03:20.
    let cases = [
        ("2025-05-08 15:19:00", "1m", true),
        ("2025-05-08 15:20:00", "1m", true),
        ("2025-05-08 15:20:59", "1m", true),
        ("2025-05-08 15:21:00", "1m", false),
        ("2025-05-01 03:03:20", "1s", true),
        ("2025-05-01 03:03:21", "1s", false),
    ];
    let mut forwarded = 0;
    for (end, step, accepted) in cases {
        let (status, body) = post!(app, RANGE, range("hami_core_util", start, end, step));
        if accepted {
            forwarded += 1;
            assert_eq!(status, 200, "{end} at {step}: {body}");
        } else {
            assert_eq!(status, 522, "{end} at {step}: {body}");
            assert_eq!(body["reason"], "TRANSFORM_ERROR", "{body}");
        }
        assert_eq!(proxy.request_count() - warmed, forwarded, "{end} at {step}");
    }
    let (_, body) = post!(
        app,
        RANGE,
        range("hami_core_util", start, "2025-05-08 15:21:00", "1m")
    );
    assert_eq!(
        body,
        transform_error(
            "the range has 11002 points per series; at most 11001 are accepted (Prometheus' limit, (end - start) / step <= 11000): increase the step or shorten the range"
        )
    );
}

#[actix_rt::test]
async fn query_length_limit_is_inclusive_and_configurable() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("1")));
    let proxy = CountingProxy::start(stub.port);
    let app = app!(&proxy.url(), "");
    let warmed = proxy.request_count();
    let at_limit = |len: usize| format!("x{{a=\"{}\"}}", "a".repeat(len - 7));
    assert_eq!(at_limit(16_384).len(), 16_384);
    let (status, body) = post!(app, INSTANT, json!({"query": at_limit(16_384)}));
    assert_eq!(status, 200, "{body}");
    let (status, _) = post!(app, INSTANT, json!({"query": at_limit(16_385)}));
    assert_eq!(status, 522);
    assert_eq!(proxy.request_count() - warmed, 1);

    let small = app!(&proxy.url(), "monitor:\n  max_query_length: 100\n");
    let warmed = proxy.request_count() - 1;
    assert_eq!(
        post!(small, INSTANT, json!({"query": at_limit(100)})).0,
        200
    );
    assert_eq!(
        post!(small, INSTANT, json!({"query": at_limit(101)})).0,
        522
    );
    assert_eq!(proxy.request_count() - warmed, 2);
}

#[actix_rt::test]
async fn frontend_queries_pass_a_hami_and_kube_allow_list() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("1")));
    let app = app!(
        &stub.url(),
        "monitor:\n  allowed_metric_prefixes: [hami_, kube_]\n",
    );
    let warmed = stub.requests().len();
    let queries: Vec<&str> = FRONTEND_QUERIES.lines().filter(|l| !l.is_empty()).collect();
    assert!(queries.len() >= 60, "{} queries", queries.len());
    for query in &queries {
        let (status, body) = post!(app, INSTANT, json!({"query": query}));
        assert_eq!(status, 200, "{query}: {body}");
    }
    let seen: Vec<String> = stub.requests()[warmed..]
        .iter()
        .filter_map(|r| r.form("query"))
        .collect();
    assert_eq!(seen, queries);
}

/// An upstream that answers the refresher at once (empty results) and holds every query
/// containing [`STALL_MARKER`] open until the test ends, counting how many it holds.
struct SplitUpstream {
    port: u16,
    held: Arc<AtomicUsize>,
    most_held: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

const STALL_MARKER: &str = "hami_stall_probe";

impl SplitUpstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let upstream = Self {
            port,
            held: Arc::default(),
            most_held: Arc::default(),
            answered: Arc::default(),
            stop: Arc::default(),
        };
        let (held, most, answered, stop) = (
            Arc::clone(&upstream.held),
            Arc::clone(&upstream.most_held),
            Arc::clone(&upstream.answered),
            Arc::clone(&upstream.stop),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (held, most, answered, stop) = (
                    Arc::clone(&held),
                    Arc::clone(&most),
                    Arc::clone(&answered),
                    Arc::clone(&stop),
                );
                std::thread::spawn(move || {
                    Self::connection(stream, &held, &most, &answered, &stop)
                });
            }
        });
        upstream
    }

    fn connection(
        stream: TcpStream,
        held: &AtomicUsize,
        most: &AtomicUsize,
        answered: &AtomicUsize,
        stop: &AtomicBool,
    ) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
        let mut writer = stream;
        for _ in 0..10_000 {
            let Some((head, length)) = support::wire::read_head(&mut reader) else {
                return;
            };
            let mut body = vec![0; length.min(1 << 20)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let text = format!("{head}{}", String::from_utf8_lossy(&body));
            if text.contains(STALL_MARKER) {
                let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let since = Instant::now();
                while !stop.load(Ordering::Relaxed) && since.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                held.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            let kind = if head.contains("query_range") {
                "matrix"
            } else {
                "vector"
            };
            let reply =
                format!(r#"{{"status":"success","data":{{"resultType":"{kind}","result":[]}}}}"#);
            let ok = write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                reply.len()
            )
            .is_ok();
            answered.fetch_add(1, Ordering::SeqCst);
            if !ok {
                return;
            }
        }
    }
}

impl Drop for SplitUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ok_cycles(server: &ServerProcess) -> f64 {
    let text = server.get("/metrics").map(|r| r.text()).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("hami_webui_refresh_cycles_total{outcome=\"ok\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn pass_through_flood_cannot_starve_the_refresher() {
    let upstream = SplitUpstream::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = dir.path().join("cluster.json");
    let shape = hami_webui_server::synthetic::ClusterShape {
        nodes: 2,
        allocations_per_device: 1,
        vendor_mix: false,
    };
    std::fs::write(&cluster, shape.list().to_string()).expect("write cluster");
    let cluster_arg = cluster.to_string_lossy().into_owned();
    // N = 4: each lane may hold 3 upstream requests, one slot is kept for the other lane.
    let config = format!(
        "server:\n  http:\n    timeout: 30s\nprometheus:\n  address: http://127.0.0.1:{}\n  timeout: 25s\n  max_concurrency: 4\nexporter:\n  interval: 1s\n  timeout: 5s\n",
        upstream.port
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
    wait_for(Duration::from_secs(10), || {
        (ok_cycles(&server) >= 1.0).then_some(())
    })
    .unwrap_or_else(|| panic!("no first cycle:\n{}", server.log()));

    // Twelve chart queries that the upstream never answers: three fill the interactive
    // lane, the rest wait in the queue.
    let port = server.port;
    let flood: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"query": format!("sum({STALL_MARKER}{{i=\"{i}\"}})")});
                let _ = request(
                    port,
                    "POST",
                    INSTANT,
                    &[("Content-Type", "application/json")],
                    body.to_string().as_bytes(),
                );
            })
        })
        .collect();
    wait_for(Duration::from_secs(5), || {
        (upstream.held.load(Ordering::SeqCst) == 3).then_some(())
    })
    .expect("the interactive lane fills up");

    let before = ok_cycles(&server);
    let answered_before = upstream.answered.load(Ordering::SeqCst);
    let started = Instant::now();
    wait_for(Duration::from_secs(8), || {
        (ok_cycles(&server) >= before + 2.0).then_some(())
    })
    .unwrap_or_else(|| panic!("refresh cycles stalled behind the flood:\n{}", server.log()));
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(upstream.answered.load(Ordering::SeqCst) > answered_before);
    // The flood still holds its lane, and never more than its lane.
    assert_eq!(upstream.held.load(Ordering::SeqCst), 3);
    assert_eq!(upstream.most_held.load(Ordering::SeqCst), 3);
    assert_eq!(server.get("/readyz").expect("readyz").status, 200);

    drop(server);
    drop(upstream);
    for client in flood {
        let _ = client.join();
    }
}

/// The chart's default `monitor.allowedMetricPrefixes` closes the pass-through to anything
/// but the console's families, and lets every query of the console through.
#[test]
fn the_chart_default_allow_list_admits_every_console_query_and_nothing_else() {
    use hami_webui_server::config::MonitorConfig;
    use hami_webui_server::reply::query_guard::check_query;
    let values = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/hami-webui-server/values.yaml"
    ))
    .expect("values.yaml");
    let values: Value = serde_saphyr::from_str(&values).expect("values.yaml is YAML");
    let prefixes: Vec<String> = values["monitor"]["allowedMetricPrefixes"]
        .as_array()
        .expect("a default list")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    assert!(!prefixes.is_empty(), "the default is not an open door");
    let limits = MonitorConfig {
        allowed_metric_prefixes: prefixes,
        ..MonitorConfig::default()
    };
    for query in FRONTEND_QUERIES.lines().filter(|l| !l.is_empty()) {
        assert_eq!(check_query(query, &limits), Ok(()), "{query}");
    }
    for other in [
        "up",
        "node_cpu_seconds_total",
        "{job=\"x\"}",
        "DCGM_FI_DEV_GPU_UTIL",
    ] {
        assert!(check_query(other, &limits).is_err(), "{other} was allowed");
    }
}
