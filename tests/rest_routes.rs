//! The REST routes through the app the server runs (`http::app`) with real caches on the
//! demo cluster: decoding rules, error shapes, the upstream budget (≤ 2 queries per list
//! request, none elsewhere), the answers when the metrics store is down, and
//! `/openapi.json` against the registered routes.

mod support;

use std::collections::HashMap;

use actix_web::test as atest;
use hami_webui_server::cluster::snapshot_file::ClusterExport;
use hami_webui_server::http;
use serde_json::{json, Value};

use support::app::{self, closed_port_url};
use support::demo::*;
use support::fixtures;

use support::golden::value as golden_value;

#[actix_rt::test]
async fn every_route_answers_from_the_snapshot_when_the_upstream_is_down() {
    let config = config_with(&closed_port_url());
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let cases: Vec<(atest::TestRequest, &str)> = vec![
        (post("/v1/gpus", json!({"filters": {}})), "demo/gpus"),
        (
            post("/v1/gpu-types", json!({"filters": {}})),
            "demo/gpu-types",
        ),
        (
            atest::TestRequest::get().uri("/v1/gpu?uid=GPU-e01f5057-d17f-4505-a571-59a5b1fee08f"),
            "demo/gpu-detail",
        ),
        (post("/v1/nodes", json!({"filters": {}})), "demo/nodes"),
        (
            atest::TestRequest::get().uri("/v1/node?uid=21b38a9d-0000-4000-8000-000000000003"),
            "demo/node-detail-mixed",
        ),
        (post("/v1/summary", json!({"filters": {}})), "demo/summary"),
        (
            post(
                "/v1/containers",
                json!({"filters": {}, "pageSize": {"pageSize": 10, "pageNo": 1}}),
            ),
            "demo/containers",
        ),
        (
            atest::TestRequest::get()
                .uri("/v1/container?name=main&podUid=d1bc52d9-1111-4000-8000-000000000016"),
            "demo/container-detail",
        ),
        (
            post("/v1/monitor/summary", json!({})),
            "demo/monitor-summary",
        ),
    ];
    for (req, golden) in cases {
        let (status, body) = call!(&app, req).await;
        assert_eq!(status, 200, "{golden}: {body}");
        assert_eq!(body, golden_value(golden), "{golden}");
    }
}

#[actix_rt::test]
async fn list_routes_issue_two_queries_and_apply_overrides_others_none() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let log = QueryLog::default();
    let gpu = "GPU-e01f5057-d17f-4505-a571-59a5b1fee08f";
    let answers = HashMap::from([
        (
            "avg(hami_core_size) by (device_uuid)".to_string(),
            vec![sample("device_uuid", gpu, 100.0)],
        ),
        (
            "avg(hami_memory_size) by (device_uuid)".to_string(),
            vec![sample("device_uuid", gpu, 23034.9)],
        ),
        (
            "avg(sum(hami_core_size) by (node, instance)) by (node)".to_string(),
            vec![sample("node", "mixed-01", 400.0)],
        ),
        (
            "avg(sum(hami_memory_size) by (node, instance)) by (node)".to_string(),
            vec![sample("node", "mixed-01", 12345.0)],
        ),
    ]);
    let app = app!(app::with_query(state, FakeStore::serving(&log, answers)));
    let taken = |log: &QueryLog| std::mem::take(&mut *log.0.lock().expect("log"));

    let (status, body) = call!(
        &app,
        post("/v1/gpus", json!({"filters": {"nodeName": "mixed-01"}}))
    )
    .await;
    assert_eq!(status, 200);
    let card = body["list"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["uuid"] == gpu))
        .expect("overridden card listed");
    assert_eq!(card["memoryTotal"], 23034, "truncated toward zero");
    let mut issued = taken(&log);
    issued.sort();
    assert_eq!(
        issued,
        [
            "avg(hami_core_size) by (device_uuid)",
            "avg(hami_memory_size) by (device_uuid)"
        ]
    );

    let (status, body) = call!(&app, post("/v1/nodes", json!({}))).await;
    assert_eq!(status, 200);
    let node = body["list"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["name"] == "mixed-01"))
        .expect("mixed-01 listed");
    assert_eq!(
        (node["coreTotal"].clone(), node["memoryTotal"].clone()),
        (json!(400), json!(12345))
    );
    assert_eq!(taken(&log).len(), 2);

    // The detail routes show registered capacity and query nothing.
    let (_, card) = call!(
        &app,
        atest::TestRequest::get().uri(&format!("/v1/gpu?uid={gpu}"))
    )
    .await;
    assert_eq!(card["memoryTotal"], 24576);
    for req in [
        post("/v1/gpu-types", json!({})),
        post("/v1/summary", json!({})),
        post("/v1/containers", json!({})),
        post("/v1/monitor/summary", json!({})),
        atest::TestRequest::get().uri("/v1/node?uid=21b38a9d-0000-4000-8000-000000000003"),
        atest::TestRequest::get().uri("/v1/container?name=main&podUid=x"),
    ] {
        let (status, _) = call!(&app, req).await;
        assert_eq!(status, 200);
    }
    assert!(taken(&log).is_empty());
}

#[actix_rt::test]
async fn list_routes_query_twice_whatever_the_cluster_size() {
    let config = config();
    let mut export = ClusterExport::default();
    for n in 0..60 {
        export
            .nodes
            .push(fixtures::nvidia_node(&format!("gpu-{n:02}"), 8));
        let uuid = format!("GPU-gpu-{n:02}-0");
        export.pods.push(fixtures::nvidia_pod(
            "big",
            &format!("job-{n}"),
            &format!("gpu-{n:02}"),
            &[(&uuid, 1024, 10)],
        ));
    }
    let state = running(export, &config).await;
    let log = QueryLog::default();
    let app = app!(app::with_query(
        state,
        FakeStore::serving(&log, HashMap::new())
    ));
    let (status, body) = call!(&app, post("/v1/gpus", json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["list"].as_array().map(Vec::len), Some(480));
    let (status, body) = call!(&app, post("/v1/nodes", json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(body["list"].as_array().map(Vec::len), Some(60));
    assert_eq!(log.0.lock().expect("log").len(), 4);
}

#[actix_rt::test]
async fn requests_decode_like_kratos() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let node_names = |body: &Value| -> Vec<String> {
        body["list"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|c| c["nodeName"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };

    // snake_case, unknown fields, missing `filters`, empty body.
    let (status, body) = call!(
        &app,
        post(
            "/v1/gpus",
            json!({"filters": {"node_name": "dcu-01", "x": 1}, "y": []})
        )
    )
    .await;
    assert_eq!(status, 200);
    assert!(!node_names(&body).is_empty() && node_names(&body).iter().all(|n| n == "dcu-01"));
    for path in [
        "/v1/gpus",
        "/v1/gpu-types",
        "/v1/nodes",
        "/v1/summary",
        "/v1/containers",
        "/v1/monitor/summary",
    ] {
        let (status, _) = call!(&app, post(path, json!({}))).await;
        assert_eq!(status, 200, "{path} without filters");
        let req = atest::TestRequest::post()
            .uri(path)
            .insert_header(("content-type", "application/json; charset=utf-8"));
        let (status, _) = call!(&app, req).await;
        assert_eq!(status, 200, "{path} with an empty body");
    }

    // The query string is bound on POST too, nested, and wins over the body.
    let req = post(
        "/v1/gpus?filters.nodeName=mixed-01",
        json!({"filters": {"nodeName": "dcu-01"}}),
    );
    let (_, body) = call!(&app, req).await;
    assert!(!node_names(&body).is_empty() && node_names(&body).iter().all(|n| n == "mixed-01"));

    // Codec errors.
    let codec = |status: u16, body: &Value| {
        status == 400 && body["reason"] == "CODEC" && body["code"] == 400
    };
    let bad = [
        atest::TestRequest::post().uri("/v1/gpus").set_payload("{}"),
        atest::TestRequest::post()
            .uri("/v1/gpus")
            .insert_header(("content-type", "text/plain"))
            .set_payload("{}"),
        atest::TestRequest::post()
            .uri("/v1/gpus")
            .insert_header(("content-type", "application/json"))
            .set_payload("{"),
        post("/v1/nodes", json!({"filters": {"isSchedulable": true}})),
        post("/v1/containers", json!({"pageSize": {"pageNo": "x"}})),
        post(
            "/v1/gpus",
            json!({"filters": {"nodeName": "a", "node_name": "b"}}),
        ),
        atest::TestRequest::get().uri("/v1/gpu?uid=a&uid=b"),
        post("/v1/gpus?filters=x", json!({})),
    ];
    for req in bad {
        let (status, body) = call!(&app, req).await;
        assert!(codec(status, &body), "{status} {body}");
    }

    // Body limit: 413 with the JSON error body.
    let big = format!(
        "{{\"filters\":{{\"uid\":\"{}\"}}}}",
        "x".repeat(super_limit())
    );
    let req = atest::TestRequest::post()
        .uri("/v1/gpus")
        .insert_header(("content-type", "application/json"))
        .set_payload(big);
    let (status, body) = call!(&app, req).await;
    assert_eq!((status, body["code"].clone()), (413, json!(413)));
}

fn super_limit() -> usize {
    http::MAX_BODY_BYTES + 1
}

#[actix_rt::test]
async fn not_found_answers_follow_go() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let (status, body) = call!(&app, atest::TestRequest::get().uri("/v1/node?uid=nope")).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"code": 500, "reason": "", "message": "node not found", "metadata": {}})
    );
    let (status, body) = call!(&app, atest::TestRequest::get().uri("/v1/gpu?uid=nope")).await;
    assert_eq!(
        (status, body),
        (200, golden_value("demo/gpu-detail-unknown"))
    );
    let (status, body) = call!(
        &app,
        atest::TestRequest::get().uri("/v1/container?name=main")
    )
    .await;
    assert_eq!(
        (status, body),
        (200, golden_value("demo/container-detail-unknown"))
    );
    let (status, body) = call!(&app, atest::TestRequest::get().uri("/v1/gpus")).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (405, json!("METHOD_NOT_ALLOWED"))
    );
}

// ---------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------

/// The path literals registered in `configure` (read from its source, so a route added
/// there without a description fails here).
fn configured_paths() -> Vec<String> {
    let source = include_str!("../src/http/mod.rs");
    let start = source.find("pub fn configure").expect("configure");
    let body = &source[start..];
    let end = body.find("\n}\n").expect("end of configure");
    body[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_configured_route_is_described() {
    let described: Vec<&str> = http::openapi::ROUTES.iter().map(|r| r.path).collect();
    let configured = configured_paths();
    assert!(configured.len() >= 13, "{configured:?}");
    for path in &configured {
        assert!(
            described.contains(&path.as_str()),
            "{path} is not described in openapi.rs"
        );
    }
}

#[actix_rt::test]
async fn every_described_route_exists() {
    let config = config();
    let state = running(demo_export(), &config).await;
    let app = app!(state);
    let (status, document) = call!(&app, atest::TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().expect("paths");
    let mut probed = 0;
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let req = match method.as_str() {
                "get" => atest::TestRequest::get().uri(path),
                "post" => post(path, json!({})),
                other => panic!("unexpected method {other}"),
            };
            let (status, body) = call!(&app, req).await;
            assert!(
                status != 404 && status != 405,
                "{method} {path}: {status} {body}"
            );
            probed += 1;
        }
    }
    assert_eq!(probed, http::openapi::ROUTES.len());
    // Every referenced schema is defined.
    let text = document.to_string();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for reference in text.split("#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        assert!(schemas.contains_key(name), "{name} undefined");
    }
}
