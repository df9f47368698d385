//! The PromQL pass-through routes (`/v1/monitor/query/*`), mounted through the same
//! `http::configure` as the server, against a real VictoriaMetrics and against stub upstreams
//! for the error paths (API contract §6.9–6.10).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::test;
use hami_webui_server::config::Config;
use hami_webui_server::http;
use serde_json::{json, Value};

use hami_webui_server::cluster::ClusterSource;
use support::app;
use support::process::free_port;
use support::upstream::{StubReply, StubServer, VictoriaMetrics, FIXTURE_EXPOSITION};

const INSTANT: &str = "/v1/monitor/query/instant-vector";
const RANGE: &str = "/v1/monitor/query/range-vector";

fn load_config(address: &str) -> Config {
    app::config(&format!(
        "server:\n  timezone: Asia/Shanghai\nprometheus:\n  address: {address}\n  timeout: 10s\n"
    ))
}

/// POSTs `body` (JSON unless `content_type` says otherwise) and returns status and JSON.
async fn post(address: &str, uri: &str, content_type: Option<&str>, body: &str) -> (u16, Value) {
    let state = app::start(
        load_config(address),
        ClusterSource::Snapshot(Default::default()),
    )
    .await;
    // Ready once the start's card and node lists asked the store, so that the store sees
    // this request last.
    app::until_ready(&state, std::time::Duration::from_secs(20)).await;
    let app = test::init_service(http::app(state)).await;
    let mut request = test::TestRequest::post()
        .uri(uri)
        .set_payload(body.to_string());
    if let Some(ct) = content_type {
        request = request.insert_header(("Content-Type", ct));
    }
    let response = test::call_service(&app, request.to_request()).await;
    let status = response.status().as_u16();
    let bytes = test::read_body(response).await;
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

async fn post_json(address: &str, uri: &str, body: Value) -> (u16, Value) {
    post(address, uri, Some("application/json"), &body.to_string()).await
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds in Asia/Shanghai (UTC+8, no DST).
fn shanghai(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .expect("valid time")
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone"))
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn error_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"code": code, "reason": reason, "message": message, "metadata": {}})
}

#[actix_rt::test]
async fn routes_answer_from_victoria_metrics_with_string_timestamps_and_filled_ranges() {
    let vm = VictoriaMetrics::start();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let last = ((now - 10) / 10) * 10;
    let first = last - 60;
    let mut import = String::new();
    for t in (first..=last).step_by(10) {
        for line in FIXTURE_EXPOSITION.lines().filter(|l| !l.starts_with('#')) {
            import.push_str(&format!("{line} {}\n", t * 1000));
        }
    }
    vm.import(&import);

    // Instant: one sample per device, value as a number, timestamp as a string.
    let (status, body) = post_json(&vm.url(), INSTANT, json!({"query": "hami_core_size"})).await;
    assert_eq!(status, 200, "{body}");
    let mut data = body["data"].as_array().expect("data").clone();
    data.sort_by_key(|d| {
        d["metric"]["device_uuid"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    assert_eq!(data.len(), 2, "{body}");
    assert_eq!(data[0]["metric"]["device_uuid"], "GPU-fixture-0");
    assert_eq!(data[0]["metric"]["__name__"], "hami_core_size");
    assert_eq!(data[0]["value"], json!(100));
    assert_eq!(data[1]["value"], json!(50));
    let ts = data[0]["timestamp"]
        .as_str()
        .expect("timestamp is a string");
    assert!(
        ts.len() == 13 && ts.bytes().all(|b| b.is_ascii_digit()),
        "{ts}"
    );

    // Range starting 30 s before the first sample: the grid starts at `start` and the three
    // points without data are filled with 0.
    let request = json!({
        "query": "hami_memory_size{device_uuid=\"GPU-fixture-1\"}",
        "range": {"start": shanghai(first - 30), "end": shanghai(last), "step": "10s"},
        "unknownField": true,
    });
    let (status, body) = post_json(&vm.url(), RANGE, request).await;
    assert_eq!(status, 200, "{body}");
    let series = body["data"].as_array().expect("data");
    assert_eq!(series.len(), 1, "{body}");
    let values: Vec<(String, Value)> = series[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            (
                p["timestamp"].as_str().expect("string").to_string(),
                p["value"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, Value)> = (first - 30..=last)
        .step_by(10)
        .map(|t| {
            let v = if t < first { json!(0) } else { json!(40960) };
            ((t * 1000).to_string(), v)
        })
        .collect();
    assert_eq!(values, expected);

    // The upstream's own parse error, as the contract's 523 body.
    let (status, body) =
        post_json(&vm.url(), INSTANT, json!({"query": "sum(hami_core_size"})).await;
    assert_eq!(status, 523, "{body}");
    assert_eq!(body["reason"], "VGPU_DOMAIN_ERROR");
    assert_eq!(body["code"], 523);
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with("error querying Prometheus: ")
            && message.contains("sum(hami_core_size"),
        "{message}"
    );
}

#[actix_rt::test]
async fn upstream_error_json_becomes_the_contract_error_body_verbatim() {
    let stub = StubServer::start(StubReply::Json(
        400,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis (100% sure)"}"#.into(),
    ));
    let (status, body) = post_json(&stub.url(), INSTANT, json!({"query": "sum(up"})).await;
    assert_eq!(status, 523);
    assert_eq!(
        body,
        error_body(
            523,
            "VGPU_DOMAIN_ERROR",
            "error querying Prometheus: bad_data: invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis (100% sure)"
        )
    );
    let last = stub.requests().last().and_then(|r| r.form("query"));
    assert_eq!(last.as_deref(), Some("sum(up"));
}

#[actix_rt::test]
async fn warnings_and_wrong_result_types_are_errors() {
    let stub = StubServer::start(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["w one","w2"]}"#.into(),
    ));
    let (status, body) = post_json(&stub.url(), INSTANT, json!({"query": "up"})).await;
    assert_eq!(
        (status, body),
        (
            523,
            error_body(523, "VGPU_DOMAIN_ERROR", "warnings: [w one w2]")
        )
    );

    stub.set_reply(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#.into(),
    ));
    let (status, body) = post_json(&stub.url(), INSTANT, json!({"query": "1+1"})).await;
    assert_eq!(
        (status, body),
        (
            522,
            error_body(
                522,
                "TRANSFORM_ERROR",
                "Error casting result to model.Vector"
            )
        )
    );

    stub.set_reply(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
    ));
    let range = json!({"query": "up", "range": {"start": "2025-05-01 10:00:00", "end": "2025-05-01 11:00:00", "step": "1m"}});
    let (status, body) = post_json(&stub.url(), RANGE, range).await;
    assert_eq!(
        (status, body),
        (
            522,
            error_body(
                522,
                "TRANSFORM_ERROR",
                "Error casting result to model.Matrix"
            )
        )
    );
    // The range went upstream in Unix seconds of Asia/Shanghai times, the step in seconds.
    let seen = stub.requests();
    let last = seen.last().expect("range request");
    assert_eq!(last.path, "/api/v1/query_range");
    assert_eq!(last.form("start").as_deref(), Some("1746064800"));
    assert_eq!(last.form("end").as_deref(), Some("1746068400"));
    assert_eq!(last.form("step").as_deref(), Some("60"));
}

#[actix_rt::test]
async fn bad_range_times_and_steps_are_522_with_gos_texts() {
    let down = format!("http://127.0.0.1:{}", free_port());
    let cases = [
        (
            json!({"query": "up", "range": {"start": "2025/05/01 10:00:00", "end": "2025-05-01 11:00:00", "step": "1m"}}),
            "parsing time \"2025/05/01 10:00:00\" as \"2006-01-02 15:04:05\": cannot parse \"/05/01 10:00:00\" as \"-\"",
        ),
        (
            json!({"query": "up", "range": {"start": "2025-05-01 10:00:00", "end": "2025-05-01 11:00:00", "step": "1d"}}),
            "time: unknown unit \"d\" in duration \"1d\"",
        ),
        (
            json!({"query": "up"}),
            "parsing time \"\" as \"2006-01-02 15:04:05\": cannot parse \"\" as \"2006\"",
        ),
    ];
    for (request, message) in cases {
        let (status, body) = post_json(&down, RANGE, request).await;
        assert_eq!(
            (status, body),
            (522, error_body(522, "TRANSFORM_ERROR", message))
        );
    }
}

#[actix_rt::test]
async fn snake_case_range_and_decoding_errors_follow_kratos() {
    let stub = StubServer::start(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#.into(),
    ));
    let range = r#"{"query":"up","range":{"start":"2025-05-01 10:00:00","end":"2025-05-01 10:01:00","step":"30s"}}"#;
    let (status, body) = post(
        &stub.url(),
        RANGE,
        Some("application/json; charset=utf-8"),
        range,
    )
    .await;
    assert_eq!((status, body), (200, json!({"data": []})));

    let (status, body) = post(&stub.url(), INSTANT, None, r#"{"query":"up"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "CODEC");

    let (status, body) = post(
        &stub.url(),
        INSTANT,
        Some("application/json"),
        r#"{"query":5}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reason"], "CODEC");
}

#[actix_rt::test]
async fn unreachable_upstream_is_523_naming_the_failure() {
    let down = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let (status, body) = post_json(&down, INSTANT, json!({"query": "up"})).await;
    assert_eq!(status, 523);
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with("error querying Prometheus: metrics store unreachable: "),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
