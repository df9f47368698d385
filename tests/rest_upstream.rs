//! The list routes against real metrics stores: capacity overrides from a real Prometheus
//! behind a counting proxy, a stalled store within the request deadline, and the kept
//! replies (one build shared by identical requests, gzip for clients that take it).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::test as atest;
use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::query_client::QueryClient;
use serde_json::{json, Value};

use support::app::{self};
use support::demo::*;
use support::fixtures;

use support::golden::value as golden_value;

// ---------------------------------------------------------------------------------------
// Real Prometheus behind a counting proxy
// ---------------------------------------------------------------------------------------

/// `node-a` carries the two devices of the fixture exposition; 40 more nodes with 8 GPUs
/// each are unknown to Prometheus (they only make the cluster large).
fn fixture_cluster() -> ClusterExport {
    let devices: Vec<Value> = (0..2)
        .map(|i| {
            json!({"id": format!("GPU-fixture-{i}"), "index": i, "count": 10, "devmem": 81920,
                        "devcore": 100, "type": "NVIDIA A100-SXM4-80GB", "mode": "hami-core",
                        "health": true})
        })
        .collect();
    let mut export = ClusterExport::default();
    export.nodes.push(fixtures::node(
        "node-a",
        json!({"gpu": "on"}),
        json!({"hami.io/node-nvidia-register": Value::Array(devices).to_string()}),
    ));
    for n in 0..40 {
        export
            .nodes
            .push(fixtures::nvidia_node(&format!("big-{n:02}"), 8));
    }
    export
}

#[actix_rt::test]
async fn real_prometheus_overrides_come_through_with_two_concurrent_queries_per_list() {
    use support::upstream::{CountingProxy, FixtureExporter, Prometheus, FIXTURE_EXPOSITION};

    let exporter = FixtureExporter::start(FIXTURE_EXPOSITION);
    let prometheus = Prometheus::start(&[&exporter.target()]);
    prometheus.wait_for_series("hami_memory_size", 2, Duration::from_secs(30));
    let proxy = CountingProxy::start(prometheus.port);
    // Held long enough that two queries sent one after the other could not overlap.
    proxy.set_delay(Duration::from_millis(300));
    // The handlers' store is the proxy; the refresher's is not, so the proxy counts only
    // what the lists ask.
    let state = running(fixture_cluster(), &config()).await;
    let through_proxy = config_with(&proxy.url()).prometheus;
    let client = QueryClient::start(&through_proxy, &state.metrics).expect("query client");
    let app = app!(app::with_query(state, client.recipient()));

    let (status, body) = call!(&app, post("/v1/gpus", json!({}))).await;
    assert_eq!(status, 200);
    let cards = body["list"].as_array().expect("list");
    assert_eq!(cards.len(), 322);
    let fixture_1 = cards
        .iter()
        .find(|c| c["uuid"] == "GPU-fixture-1")
        .expect("fixture card");
    assert_eq!(
        (
            fixture_1["coreTotal"].clone(),
            fixture_1["memoryTotal"].clone()
        ),
        (json!(50), json!(40960)),
        "hami_core_size / hami_memory_size override the registered 100 / 81920"
    );
    let unknown = cards
        .iter()
        .find(|c| c["uuid"] == "GPU-big-00-0")
        .expect("card");
    assert_eq!(
        unknown["memoryTotal"], 81920,
        "registered capacity without a series"
    );
    assert_eq!(proxy.request_count(), 2);
    assert_eq!(proxy.max_in_flight(), 2, "the two queries run concurrently");

    let (status, body) = call!(&app, post("/v1/nodes", json!({}))).await;
    assert_eq!(status, 200);
    let node_a = body["list"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["name"] == "node-a"))
        .expect("node-a");
    assert_eq!(
        (node_a["coreTotal"].clone(), node_a["memoryTotal"].clone()),
        (json!(150), json!(122880))
    );
    assert_eq!(proxy.request_count(), 4);
    let mut expressions: Vec<String> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.form("query"))
        .collect();
    expressions.sort();
    assert_eq!(
        expressions,
        [
            "avg(hami_core_size) by (device_uuid)",
            "avg(hami_memory_size) by (device_uuid)",
            "avg(sum(hami_core_size) by (node, instance)) by (node)",
            "avg(sum(hami_memory_size) by (node, instance)) by (node)",
        ]
    );

    // Routes without overrides never reach the upstream.
    for req in [
        post("/v1/gpu-types", json!({})),
        post("/v1/summary", json!({})),
        post("/v1/containers", json!({})),
        post("/v1/monitor/summary", json!({})),
        atest::TestRequest::get().uri("/v1/gpu?uid=GPU-fixture-1"),
        atest::TestRequest::get().uri("/v1/node?uid=uid-node-a"),
    ] {
        let (status, _) = call!(&app, req).await;
        assert_eq!(status, 200);
    }
    assert_eq!(proxy.request_count(), 4);
}

#[actix_rt::test]
async fn a_stalled_upstream_still_gets_an_answer_from_the_snapshot_within_the_deadline() {
    use support::upstream::StalledServer;

    let stalled = StalledServer::start();
    let config = config_timed(&stalled.url(), "1s");
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    for (path, golden) in [("/v1/gpus", "demo/gpus"), ("/v1/nodes", "demo/nodes")] {
        let started = std::time::Instant::now();
        let (status, body) = call!(&app, post(path, json!({}))).await;
        assert_eq!((status, body), (200, golden_value(golden)), "{path}");
        assert!(started.elapsed() < Duration::from_millis(1500), "{path}");
    }
}

#[actix_rt::test]
async fn identical_list_requests_share_one_build_until_the_reply_ages_out() {
    let mut config = config();
    config.server.http.reply_cache_ttl = Duration::from_millis(300);
    let state = running(demo_export(), &config).await;
    let log = QueryLog::default();
    let app = app!(app::with_query(
        state,
        FakeStore::serving(&log, HashMap::new())
    ));
    let queries = |log: &QueryLog| log.0.lock().expect("log").len();

    // 32 browsers polling the same page at once: one build, two capacity queries, and the
    // same body for every one of them.
    let replies = futures::future::join_all(
        (0..32).map(|_| async { call!(&app, post("/v1/gpus", json!({"filters": {}}))).await }),
    )
    .await;
    assert!(replies.iter().all(|(status, _)| *status == 200));
    assert!(replies.iter().all(|(_, body)| *body == replies[0].1));
    assert_eq!(queries(&log), 2);
    let containers = futures::future::join_all(
        (0..32).map(|_| async { call!(&app, post("/v1/containers", json!({}))).await }),
    )
    .await;
    assert!(containers.iter().all(|reply| *reply == containers[0]));
    assert_eq!(containers[0].1, golden_value("demo/containers"));

    // A different request is built on its own; the same one later is built again once its
    // metrics-store values are older than `server.http.reply_cache_ttl`.
    let (status, _) = call!(
        &app,
        post("/v1/gpus", json!({"filters": {"nodeName": "x"}}))
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(queries(&log), 4);
    // Aged out, it is still served while one build in the background asks again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while queries(&log) < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never aged out"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let (status, _) = call!(&app, post("/v1/gpus", json!({"filters": {}}))).await;
        assert_eq!(status, 200);
    }
    assert_eq!(queries(&log), 6);
}

#[actix_rt::test]
async fn kept_lists_go_gzipped_to_clients_that_accept_it_and_plain_to_the_rest() {
    use std::io::Read;
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(app::with_query(
        state,
        FakeStore::serving(&QueryLog::default(), HashMap::new())
    ));
    let ask = |gzip: bool| {
        let mut req = post("/v1/containers", json!({}));
        if gzip {
            req = req.insert_header(("Accept-Encoding", "gzip, deflate, br"));
        }
        atest::call_service(&app, req.to_request())
    };
    let plain = ask(false).await;
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(
        plain.headers().get("vary").and_then(|v| v.to_str().ok()),
        Some("Accept-Encoding")
    );
    let plain = atest::read_body(plain).await;

    let packed = ask(true).await;
    assert_eq!(
        packed
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let packed = atest::read_body(packed).await;
    assert!(
        packed.len() < plain.len(),
        "{} ≥ {}",
        packed.len(),
        plain.len()
    );
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut unpacked)
        .expect("a gzip body");
    assert_eq!(unpacked, plain);
    let value: Value = serde_json::from_slice(&unpacked).expect("JSON");
    assert_eq!(value, golden_value("demo/containers"));
}
