//! List replies built in the background (`http::reply_cache`), seen through the real app on
//! caches that watch a test API server: after the cluster changes, the first list request is
//! answered at once with the reply built before it arrived while the next one is built, and a
//! burst of changes never has more than one build of a list in flight. Nothing is timed: every
//! wait polls a condition until a deadline.

mod support;

use std::time::{Duration, Instant};

use actix_web::test as atest;
use hami_webui_server::http;
use hami_webui_server::readiness::Readiness;
use serde_json::{json, Value};
use support::cluster_harness::start;
use support::fixtures::{nvidia_node, nvidia_pod};
use support::kube_api::TestApiServer;

const PATIENT: Duration = Duration::from_secs(300);
const DEADLINE: Duration = Duration::from_secs(20);
/// Lists built before ready: containers, workloads, cards and nodes.
const WARMED: u64 = 4;

fn job(i: usize) -> k8s_openapi::api::core::v1::Pod {
    let node = format!("gpu-{}", i % 2);
    let uuid = format!("GPU-{node}-{}", i % 4);
    nvidia_pod(
        "default",
        &format!("job-{i:03}"),
        &node,
        &[(uuid.as_str(), 1024, 10)],
    )
}

/// Names in a container list reply.
fn names(reply: &Value) -> Vec<String> {
    reply["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

macro_rules! containers {
    ($app:expr) => {{
        let request = atest::TestRequest::post()
            .uri("/v1/containers")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(json!({}).to_string());
        let response = atest::call_service(&$app, request.to_request()).await;
        assert_eq!(response.status(), 200);
        let bytes = atest::read_body(response).await;
        serde_json::from_slice::<Value>(&bytes).expect("JSON reply")
    }};
}

#[actix_rt::test]
async fn after_a_change_the_first_list_request_gets_the_reply_built_before_it() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-0", 4));
    api.apply_node(nvidia_node("gpu-1", 4));
    api.apply_many_pods((0..20).map(job).collect());
    let h = start(&api, PATIENT).await;
    h.until_ready(DEADLINE).await;
    h.until(DEADLINE, "20 pods", |s| s.pods.len() == 20).await;
    let replies = std::sync::Arc::clone(&h.state.replies);
    let app = atest::init_service(http::app(h.state.clone())).await;

    // Ready means warmed: the container, workload, card and node lists were built.
    assert_eq!(replies.builds_started(), WARMED);
    let before = containers!(app);
    assert_eq!(names(&before).len(), 20);
    assert_eq!(replies.builds_started(), WARMED);

    // The cluster changes and the caches publish it.
    api.apply_pod(job(20));
    h.until(DEADLINE, "21 pods", |s| s.pods.len() == 21).await;
    // The first request after the change: the reply built before it arrived, and one build
    // of the new one started on its behalf.
    let first = containers!(app);
    assert_eq!(first, before);
    assert_eq!(replies.builds_started(), WARMED + 1);
    // The new reply follows without another build.
    let deadline = Instant::now() + DEADLINE;
    while names(&containers!(app)).len() != 21 {
        assert!(Instant::now() < deadline, "the new reply never came");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(replies.builds_started(), WARMED + 1);

    // A burst of 100 changes, the list asked for after each: never two builds at once, and
    // the list ends at the API's state.
    for i in 21..121 {
        api.apply_pod(job(i));
        let reply = containers!(app);
        let shown = names(&reply).len();
        assert!((20..=121).contains(&shown), "{shown} containers shown");
    }
    h.until(DEADLINE, "121 pods", |s| s.pods.len() == 121).await;
    let deadline = Instant::now() + DEADLINE;
    while names(&containers!(app)).len() != 121 {
        assert!(Instant::now() < deadline, "the list never caught up");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(replies.most_builds_in_flight("/v1/containers"), 1);
    assert!(
        replies.builds_started() <= WARMED + 1 + 101,
        "{} builds for 101 requests",
        replies.builds_started()
    );
}

#[actix_rt::test]
async fn readiness_waits_for_the_default_lists_to_be_built() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-0", 4));
    api.apply_many_pods((0..10).map(job).collect());
    let h = start(&api, PATIENT).await;
    let replies = std::sync::Arc::clone(&h.state.replies);
    // Polled as the kubelet would: the first time it reads ready, the container, workload,
    // card and node lists have been built.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match h.board.check() {
            Readiness::Ready => break,
            Readiness::Waiting(names) => {
                assert!(Instant::now() < deadline, "never ready: {names:?}");
                assert!(replies.builds_started() <= WARMED);
            }
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(replies.builds_started(), WARMED);
    let app = atest::init_service(http::app(h.state.clone())).await;
    assert_eq!(names(&containers!(app)).len(), 10);
    assert_eq!(
        replies.builds_started(),
        WARMED,
        "served from the warmed reply"
    );
}

/// The pods named in a container list reply, sorted.
fn pods_listed(reply: &Value) -> Vec<String> {
    let mut pods: Vec<String> = reply["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["appName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    pods.sort();
    pods
}

#[actix_rt::test]
async fn a_long_list_kept_in_pieces_follows_the_cluster_through_changes() {
    use std::io::Read;

    // 300 containers: long enough for the list to be kept in stretches of rows.
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-0", 4));
    api.apply_node(nvidia_node("gpu-1", 4));
    api.apply_many_pods((0..300).map(job).collect());
    let h = start(&api, PATIENT).await;
    h.until_ready(DEADLINE).await;
    h.until(DEADLINE, "300 pods", |s| s.pods.len() == 300).await;
    let app = atest::init_service(http::app(h.state.clone())).await;
    macro_rules! gzipped_containers {
        () => {{
            let request = atest::TestRequest::post()
                .uri("/v1/containers")
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("Accept-Encoding", "gzip"))
                .set_payload(json!({}).to_string());
            let response = atest::call_service(&app, request.to_request()).await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                response
                    .headers()
                    .get("content-encoding")
                    .map(|v| v.as_bytes()),
                Some(&b"gzip"[..])
            );
            let packed = atest::read_body(response).await;
            let mut text = String::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_string(&mut text)
                .expect("one whole gzip member");
            serde_json::from_str::<Value>(&text).expect("JSON reply")
        }};
    }
    let expected = |range: std::ops::Range<usize>, gone: &[usize]| -> Vec<String> {
        let mut pods: Vec<String> = range
            .filter(|i| !gone.contains(i))
            .map(|i| format!("job-{i:03}"))
            .collect();
        pods.sort();
        pods
    };
    let first = gzipped_containers!();
    assert_eq!(pods_listed(&first), expected(0..300, &[]));
    // The same text as a client without gzip gets.
    assert_eq!(containers!(app), first);

    // Pods leave, arrive and change (a new record with the same content) between requests.
    let gone = [0, 77, 150, 299];
    for (step, i) in gone.iter().enumerate() {
        api.delete_pod("default", &format!("job-{i:03}"));
        api.apply_pod(job(300 + step));
        let mut changed = job(10 + step);
        changed.metadata.labels = Some([("step".to_string(), step.to_string())].into());
        api.apply_pod(changed);
        let reply = gzipped_containers!();
        assert!((296..=304).contains(&pods_listed(&reply).len()));
    }
    h.until(DEADLINE, "300 pods again", |s| s.pods.len() == 300)
        .await;
    let want = expected(0..304, &gone);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let reply = gzipped_containers!();
        if pods_listed(&reply) == want {
            assert_eq!(containers!(app), reply);
            break;
        }
        assert!(Instant::now() < deadline, "the list never caught up");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}
