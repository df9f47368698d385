//! Kubernetes faults against the node and pod caches (in process, through a kubeconfig, as
//! `tests/caches.rs`, harness in `tests/support/cluster_harness.rs`): a burst of 10,000 pod
//! events, hostile annotations, watch streams cut while changes keep coming, and the API
//! server unreachable for 30 s while objects change on it. Expected: no panic, every object
//! kept, decode errors counted, the last state served meanwhile, and convergence to the
//! API's state.

mod support;

use std::time::{Duration, Instant};

use actix_web::test as atest;
use hami_webui_server::cluster::SOURCES;
use hami_webui_server::http;
use serde_json::{json, Value};
use support::cluster_harness::{allocated_memory, counts, resident_bytes, start};
use support::fixtures::{node, nvidia_node, nvidia_pod, pod};
use support::kube_api::TestApiServer;

/// `kubernetes.unready_after` where a test does not turn readiness off on purpose.
const PATIENT: Duration = Duration::from_secs(300);
const SYNC_DEADLINE: Duration = Duration::from_secs(10);

#[actix_rt::test]
async fn a_burst_of_10000_pod_events_converges_to_the_apis_state() {
    let api = TestApiServer::start().await;
    for n in 0..4 {
        api.apply_node(nvidia_node(&format!("gpu-{n}"), 8));
    }
    let h = start(&api, PATIENT).await;
    h.until_ready(SYNC_DEADLINE).await;
    let gpu = |i: usize| format!("GPU-gpu-{}-{}", i % 4, (i / 4) % 8);
    let make = |i: usize, mem: u32| {
        nvidia_pod(
            &format!("ns-{}", i % 7),
            &format!("job-{i:05}"),
            &format!("gpu-{}", i % 4),
            &[(gpu(i).as_str(), mem, 10)],
        )
    };
    // 5,000 creations, 3,000 updates, 2,000 deletions: 10,000 events, no pause between them.
    api.apply_many_pods((0..5_000).map(|i| make(i, 1024)).collect());
    api.apply_many_pods((0..3_000).map(|i| make(i, 2048)).collect());
    for i in 3_000..5_000 {
        api.delete_pod(&format!("ns-{}", i % 7), &format!("job-{i:05}"));
    }
    let s = h
        .until(Duration::from_secs(60), "3,000 pods after the burst", |s| {
            s.pods.len() == 3_000 && allocated_memory(s, "job-02999") == Some(2048)
        })
        .await;
    assert_eq!(allocated_memory(&s, "job-00000"), Some(2048));
    assert_eq!(allocated_memory(&s, "job-03000"), None);
    assert!(s
        .pods
        .iter()
        .all(|p| allocated_memory(&s, &p.name) == Some(2048)));
    assert_eq!(h.decode_errors(), 0);
}

/// Annotation values no device plugin writes: huge, deeply nested, overflowing, mistyped.
fn hostile_values() -> Vec<String> {
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let device = |fields: Value| Value::Array(vec![fields]).to_string();
    vec![
        "x".repeat(1 << 20),
        format!("[{}]", "{\"id\":\"GPU-x\",".repeat(50_000)),
        nested,
        device(
            json!({"id": "GPU-a", "count": 1e300, "devmem": 99999999999999999999u128 as f64, "devcore": -1}),
        ),
        "[{\"id\":\"GPU-b\",\"count\":99999999999999999999999999,\"devmem\":1e400}]".to_string(),
        device(
            json!({"id": ["not", "a", "string"], "count": "ten", "devmem": {"a": 1}, "health": "yes"}),
        ),
        "GPU-c,99999999999999999999,-5,1e999,NVIDIA,0,true:".to_string(),
        "GPU-d,NVIDIA,99999999999999999999,100:;".to_string(),
        "\u{0}\u{1}\u{7f}\u{feff}:::;;;,,,".repeat(10_000),
    ]
}

#[actix_rt::test]
async fn hostile_annotations_keep_their_objects_and_count_decode_errors() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("good", 2));
    let h = start(&api, PATIENT).await;
    h.until_ready(SYNC_DEADLINE).await;
    h.until(Duration::from_secs(5), "good node", |s| {
        s.inventory.device_count() == 2
    })
    .await;
    let values = hostile_values();
    for (i, value) in values.iter().enumerate() {
        api.apply_node(node(
            &format!("bad-{i}"),
            json!({"gpu": "on"}),
            json!({
                "hami.io/node-nvidia-register": value,
                "hami.io/node-handshake": value,
            }),
        ));
        api.apply_pod(pod(
            "default",
            &format!("bad-{i}"),
            "good",
            json!({"hami.io/vgpu-node": "good", "hami.io/vgpu-devices-allocated": value}),
            "Running",
        ));
    }
    // A valid change after the hostile ones: the caches are still alive and in order.
    api.apply_pod(nvidia_pod(
        "default",
        "after",
        "good",
        &[("GPU-good-0", 512, 5)],
    ));
    let n = values.len();
    let s = h
        .until(
            Duration::from_secs(30),
            "every object, then the valid pod",
            |s| s.inventory.nodes.len() == n + 1 && allocated_memory(s, "after") == Some(512),
        )
        .await;
    // The hostile nodes are kept (listed, without devices); the good node is untouched.
    assert_eq!(s.inventory.device_count(), 2);
    for i in 0..n {
        let name = format!("bad-{i}");
        assert!(
            s.inventory.nodes.iter().any(|node| node.name == name),
            "{name}"
        );
        assert!(allocated_memory(&s, &name).is_none(), "{name}");
    }
    let kept_pods = s.pods.iter().filter(|p| p.name.starts_with("bad-")).count();
    assert_eq!(kept_pods, n, "hostile pods are kept, without allocations");
    let errors = h.decode_errors();
    assert!(
        errors >= n as u64,
        "{errors} decode errors for {n} hostile nodes"
    );
}

#[actix_rt::test]
async fn watches_cut_while_changes_keep_coming_converge() {
    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-0", 8));
    let h = start(&api, PATIENT).await;
    h.until_ready(SYNC_DEADLINE).await;
    // Ten rounds: a batch of changes, a cut in the middle of it, more changes.
    for round in 0..10usize {
        for i in 0..20usize {
            let name = format!("job-{round}-{i}");
            let uuid = format!("GPU-gpu-0-{}", i % 8);
            api.apply_pod(nvidia_pod(
                "default",
                &name,
                "gpu-0",
                &[(uuid.as_str(), 100, 1)],
            ));
            if i == 10 {
                api.cut_watches();
            }
        }
        if round % 2 == 1 {
            api.delete_pod("default", &format!("job-{}-0", round - 1));
        }
        api.apply_node(nvidia_node(&format!("extra-{round}"), 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = h
        .until(Duration::from_secs(30), "API state after cuts", |s| {
            s.pods.len() == 200 - 5 && s.inventory.nodes.len() == 11
        })
        .await;
    assert!(allocated_memory(&s, "job-0-0").is_none());
    assert_eq!(allocated_memory(&s, "job-9-19"), Some(100));
    assert_eq!(s.inventory.device_count(), 8 + 10);
}

/// The routes a client reads during an outage, as `GET`/`POST` requests.
fn list_requests() -> [(&'static str, atest::TestRequest); 3] {
    let post = |uri: &str| {
        atest::TestRequest::post()
            .uri(uri)
            .insert_header(("Content-Type", "application/json"))
            .set_payload(json!({"filters": {}}).to_string())
    };
    [
        ("nodes", post("/v1/nodes")),
        ("gpus", post("/v1/gpus")),
        ("containers", post("/v1/containers")),
    ]
}

/// Status and body of one request: JSON when it parses, else the text as a JSON string.
macro_rules! call {
    ($app:expr, $req:expr) => {{
        let response = atest::call_service(&$app, ($req).to_request()).await;
        let status = response.status().as_u16();
        let bytes = atest::read_body(response).await;
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }};
}

/// The three list replies, each asserted `200`.
macro_rules! lists {
    ($app:expr) => {{
        let mut replies = Vec::new();
        for (name, request) in list_requests() {
            let (status, body) = call!($app, request);
            assert_eq!(status, 200, "{name}: {body}");
            replies.push(body);
        }
        replies
    }};
}

/// Lengths of the node, GPU and container lists.
fn list_lengths(replies: &[Value]) -> (usize, usize, usize) {
    let len = |v: &Value, key: &str| v[key].as_array().map_or(0, Vec::len);
    (
        len(&replies[0], "list"),
        len(&replies[1], "list"),
        len(&replies[2], "items"),
    )
}

/// The API server refuses connections for 30 s while nodes and pods change on it. Meanwhile
/// the list routes answer `200` with the last state, `/livez` is `200`, `/readyz` stays `200`
/// for `kubernetes.unready_after` (10 s) of failures and is `503` naming the watchers after
/// it, and memory stays bounded. Once the API is back, readiness returns and the snapshot
/// and the routes converge to the API's state, without a restart.
#[actix_rt::test]
async fn api_down_for_30_s_serves_last_state_then_converges() {
    const OUTAGE: Duration = Duration::from_secs(30);
    const UNREADY_AFTER: Duration = Duration::from_secs(10);
    /// Slack for scheduling: a probe this close to the `unready_after` edge may see either.
    const EDGE: Duration = Duration::from_secs(1);

    let api = TestApiServer::start().await;
    api.apply_node(nvidia_node("gpu-0", 4));
    api.apply_node(nvidia_node("gpu-1", 4));
    let job = |i: usize, mem: u32| {
        let node = format!("gpu-{}", i % 2);
        let uuid = format!("GPU-{node}-{}", i % 4);
        nvidia_pod(
            "default",
            &format!("job-{i:03}"),
            &node,
            &[(uuid.as_str(), mem, 10)],
        )
    };
    api.apply_many_pods((0..20).map(|i| job(i, 1024)).collect());
    let h = start(&api, UNREADY_AFTER).await;
    h.until_ready(SYNC_DEADLINE).await;
    h.until(Duration::from_secs(5), "initial state", |s| {
        counts(s) == (2, 8, 20)
    })
    .await;
    let app = atest::init_service(http::app(h.state.clone())).await;
    let before = lists!(app);
    assert_eq!(list_lengths(&before), (2, 8, 20));
    let baseline = resident_bytes();

    let down_at = Instant::now();
    api.stop().await;
    h.until_outage_noticed(Duration::from_secs(15)).await;
    let noticed_at = Instant::now();
    // Changes the caches cannot see: a node added, one resized, half the pods deleted, one
    // updated and 100 created.
    api.apply_node(nvidia_node("gpu-2", 2));
    api.apply_node(nvidia_node("gpu-0", 6));
    for i in 0..10 {
        api.delete_pod("default", &format!("job-{i:03}"));
    }
    api.apply_pod(job(19, 2048));
    api.apply_many_pods((100..200).map(|i| job(i, 512)).collect());

    let mut probes = (0, 0);
    let mut peak = baseline;
    while down_at.elapsed() < OUTAGE {
        assert_eq!(counts(&*h.snapshot().await), (2, 8, 20), "last state kept");
        assert_eq!(lists!(app), before, "routes serve the last state");
        let (status, body) = call!(app, atest::TestRequest::get().uri("/livez"));
        assert_eq!(status, 200, "/livez during the outage: {body}");
        // Sampled before and after the probe: the board's verdict moves only one way.
        let (early, late) = (down_at.elapsed(), noticed_at.elapsed());
        let (status, body) = call!(app, atest::TestRequest::get().uri("/readyz"));
        if early + EDGE < UNREADY_AFTER {
            assert_eq!(status, 200, "/readyz {early:?} into the outage: {body}");
            probes.0 += 1;
        } else if late > UNREADY_AFTER + EDGE {
            assert_eq!(status, 503, "/readyz {late:?} after the outage was noticed");
            assert_eq!(body["ready"], false, "{body}");
            let waiting = body["waiting_for"].as_array().expect("waiting_for list");
            assert!(!waiting.is_empty(), "{body}");
            assert!(
                waiting
                    .iter()
                    .all(|s| s.as_str().is_some_and(|s| SOURCES.contains(&s))),
                "{body}"
            );
            probes.1 += 1;
        }
        peak = peak.max(resident_bytes());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        probes.0 > 0 && probes.1 > 0,
        "readiness probed on both sides of unready_after: {probes:?}"
    );
    if let (Some(baseline), Some(peak)) = (baseline, peak) {
        let growth = peak.saturating_sub(baseline);
        assert!(
            growth < 64 << 20,
            "resident memory grew by {} MiB during the outage",
            growth >> 20
        );
    }

    api.restart().await;
    let s = h
        .until(
            Duration::from_secs(90),
            "the API's state after the outage",
            |s| counts(s) == (3, 12, 110) && allocated_memory(s, "job-019") == Some(2048),
        )
        .await;
    assert_eq!(allocated_memory(&s, "job-000"), None, "deleted meanwhile");
    assert_eq!(allocated_memory(&s, "job-199"), Some(512));
    h.until_ready(Duration::from_secs(30)).await;
    let (status, _) = call!(app, atest::TestRequest::get().uri("/readyz"));
    assert_eq!(status, 200);
    // The lists follow within `server.http.reply_max_staleness`: the first requests after
    // the change may still get the replies built before it, while the new ones are built.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lengths = list_lengths(&lists!(app));
        if lengths == (3, 12, 110) {
            break;
        }
        assert!(Instant::now() < deadline, "lists stuck at {lengths:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.decode_errors(), 0);
}
