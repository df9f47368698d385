//! `GET /v1/scheduling/pod`: golden JSON of a pending pod's diagnosis with its
//! `FailedScheduling` events and of a bound pod with GPU init containers (pure builders), then
//! the route against the test API server — one events list for 50 identical requests within
//! the cache window, the bound on events, a forbidden events read still answering with the
//! pod, and the identity errors.
//!
//! Goldens live in `tests/golden/scheduling/`; `UPDATE_GOLDEN=1` rewrites them, after which
//! every changed file must be read before it is committed.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test as atest;
use hami_webui_server::cluster::inventory::{build_inventory, node_entry, IdentityMap};
use hami_webui_server::cluster::scheduling::SchedulingResources;
use hami_webui_server::cluster::scheduling_events::{finish_read, normalize_event, PodEvents};
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::tracked_pod::{self, track_pod};
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::config::Config;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::http;
use hami_webui_server::http::AppState;
use hami_webui_server::reply::scheduling::{
    scheduling_detail, SchedulingPodError, SchedulingPodRequest,
};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use serde::Serialize;
use serde_json::{json, Value};

use support::app;
use support::fixtures;
use support::kube_api::TestApiServer;

// ---------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("valid pod")
}

fn event(value: Value) -> Event {
    serde_json::from_value(value).expect("valid event")
}

/// A pending GPU pod both schedulers turned down, with placement constraints.
fn queued(namespace: &str, name: &str) -> Pod {
    pod(json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                     "creationTimestamp": "2026-03-01T01:00:00Z",
                     "annotations": {"nvidia.com/use-gputype": "A100", "hami.io/gpu-scheduler-policy": "binpack"}},
        "spec": {"schedulerName": "hami-scheduler", "nodeSelector": {"gpu": "on"},
                 "priorityClassName": "high",
                 "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "containers": [{"name": "main", "image": "cuda:12",
                                 "resources": {"limits": {"nvidia.com/gpu": "2", "nvidia.com/gpumem": "20000",
                                                          "nvidia.com/gpucores": "50"}}}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "lastTransitionTime": "2026-03-01T01:00:05Z",
            "message": "0/2 nodes are available: 1 CardInsufficientMemory, 1 node(s) had untolerated taint {dedicated: infra}."}]}
    }))
}

/// A bound pod whose main container HAMi allocated, with GPU init containers.
fn prep() -> Pod {
    pod(json!({
        "metadata": {"name": "prep", "namespace": "dev", "uid": "uid-prep",
                     "creationTimestamp": "2026-03-01T02:00:00Z",
                     "annotations": {"hami.io/vgpu-node": "gpu-a",
                                     "hami.io/vgpu-devices-allocated": "GPU-gpu-a-0,NVIDIA,512,10:;"}},
        "spec": {"nodeName": "gpu-a", "schedulerName": "hami-scheduler",
                 "initContainers": [
                     {"name": "warmup", "resources": {"limits": {"nvidia.com/gpu": "1"}}},
                     {"name": "proxy", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpucores": "5"}}}],
                 "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                    "lastTransitionTime": "2026-03-01T02:00:01Z"}],
                   "initContainerStatuses": [
                       {"name": "warmup", "ready": false, "restartCount": 1, "image": "", "imageID": "",
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}
    }))
}

/// A `FailedScheduling` event about a pod, as kube-scheduler or HAMi report it.
fn failed_scheduling(namespace: &str, pod: &str, uid: &str, n: usize, source: &str) -> Event {
    event(json!({
        "metadata": {"name": format!("{pod}.{n:04}"), "namespace": namespace, "uid": format!("ev-{pod}-{n:04}"),
                     "creationTimestamp": "2026-03-01T01:00:06Z"},
        "involvedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "uid": uid},
        "reason": "FailedScheduling", "type": "Warning",
        "message": format!("0/2 nodes are available: 1 CardInsufficientMemory (attempt {n})"),
        "source": {"component": source},
        "count": 3,
        "firstTimestamp": "2026-03-01T01:00:06Z",
        "lastTimestamp": format!("2026-03-01T01:{:02}:{:02}Z", 1 + n / 60, n % 60)
    }))
}

fn cluster() -> (Vec<Node>, Vec<Pod>) {
    (
        vec![fixtures::nvidia_node("gpu-a", 2)],
        vec![queued("dev", "queued"), prep()],
    )
}

fn config() -> Config {
    app::config("")
}

fn zone() -> TimeZone {
    TimeZone::get("Asia/Shanghai").expect("zone")
}

fn snapshot_of(nodes: &[Node], pods: &[Pod]) -> ClusterSnapshot {
    let config = config();
    let entries: Vec<_> = nodes
        .iter()
        .map(|n| node_entry(n, &config.node_selectors, &DeviceContext::default()).0)
        .collect();
    let inventory = Arc::new(build_inventory(
        entries.iter(),
        &IdentityMap::new(),
        Default::default(),
    ));
    let resources = SchedulingResources::default();
    let now: Timestamp = "2026-03-01T03:00:00Z".parse().expect("timestamp");
    let tracked: Vec<_> = pods
        .iter()
        .filter_map(|p| track_pod(p, now, &resources, &DeviceContext::default()).0)
        .collect();
    {
        let (pods, views) = tracked_pod::split(tracked.iter());
        ClusterSnapshot::build(1, inventory, pods, views)
    }
}

fn assert_golden(name: &str, reply: &impl Serialize) {
    support::golden::assert_golden(&format!("scheduling/{name}"), reply);
}

fn identity(namespace: &str, name: &str, uid: &str) -> SchedulingPodRequest {
    SchedulingPodRequest {
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Pure builders
// ---------------------------------------------------------------------------------------

#[test]
fn pending_pod_with_failed_scheduling_events_matches_golden() {
    let (nodes, pods) = cluster();
    let snapshot = snapshot_of(&nodes, &pods);
    let mut events: Vec<_> = (0..2)
        .map(|n| {
            normalize_event(&failed_scheduling(
                "dev",
                "queued",
                "uid-dev-queued",
                n,
                "hami-scheduler",
            ))
        })
        .collect();
    events.push(normalize_event(&event(json!({
        "metadata": {"name": "queued.series", "namespace": "dev", "uid": "ev-series"},
        "involvedObject": {"uid": "uid-dev-queued"},
        "reason": "FailedScheduling", "type": "Warning",
        "message": "0/2 nodes are available: 1 node(s) had untolerated taint.",
        "reportingComponent": "default-scheduler",
        "eventTime": "2026-03-01T01:00:07.000000Z",
        "series": {"count": 12, "lastObservedTime": "2026-03-01T01:30:00.000000Z"}
    }))));
    let fetched: Timestamp = "2026-03-01T02:00:00Z".parse().expect("timestamp");
    let read = finish_read(events, "available", false, fetched);
    let reply = scheduling_detail(
        &snapshot,
        &identity("dev", "queued", "uid-dev-queued"),
        &read,
        &zone(),
    )
    .expect("pod found");
    assert_golden("queued", &reply);
    let pod = reply.pod.expect("pod part");
    assert_eq!(pod.stage, "waiting");
    assert_eq!(
        pod.reason_codes,
        ["CardInsufficientMemory", "UntoleratedTaint"]
    );
    assert_eq!(pod.reason_source, "mixed");
    assert_eq!(reply.events[0].uid, "ev-series", "newest first");
}

#[test]
fn bound_pod_with_gpu_init_containers_matches_golden() {
    let (nodes, pods) = cluster();
    let snapshot = snapshot_of(&nodes, &pods);
    let read = finish_read(
        Vec::new(),
        "available",
        false,
        "2026-03-01T02:10:00Z".parse().expect("timestamp"),
    );
    let reply = scheduling_detail(
        &snapshot,
        &identity("dev", "prep", "uid-prep"),
        &read,
        &zone(),
    )
    .expect("pod found");
    assert_golden("prep", &reply);
    let pod = reply.pod.expect("pod part");
    assert_eq!(pod.stage, "bound");
    assert_eq!(pod.allocated_containers, ["main"]);
    let kinds: Vec<_> = pod
        .requests
        .iter()
        .map(|r| (r.container.as_str(), r.container_kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("main", "regular"),
            ("warmup", "init"),
            ("proxy", "sidecar")
        ]
    );
    assert_eq!(reply.event_status, "empty");
}

#[test]
fn identity_is_checked_before_anything_else() {
    let (nodes, pods) = cluster();
    let snapshot = snapshot_of(&nodes, &pods);
    let none = PodEvents::failed("error");
    let zone = zone();
    let ask = |request: SchedulingPodRequest| {
        scheduling_detail(&snapshot, &request, &none, &zone).map(|_| ())
    };
    assert_eq!(
        ask(identity("dev", "queued", "")),
        Err(SchedulingPodError::IdentityRequired)
    );
    assert_eq!(
        ask(identity("dev", "gone", "u")),
        Err(SchedulingPodError::NotFound)
    );
    assert_eq!(
        ask(identity("dev", "queued", "uid-old")),
        Err(SchedulingPodError::Recreated)
    );
    assert_eq!(ask(identity("dev", "queued", "uid-dev-queued")), Ok(()));
}

// ---------------------------------------------------------------------------------------
// The route against the test API server
// ---------------------------------------------------------------------------------------

async fn start(api: &TestApiServer, dir: &Path) -> AppState {
    let path = api.write_kubeconfig(dir);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("client config");
    let client = kube::Client::try_from(client_config).expect("client");
    app::start(config(), ClusterSource::Client(client)).await
}

/// Polls the pod cache until it tracks `pods` GPU pods.
async fn until_tracked(state: &AppState, pods: usize) {
    let what = format!("{pods} tracked GPU pods");
    app::until_snapshot(state, Duration::from_secs(20), &what, |s| {
        s.scheduling.len() == pods
    })
    .await;
}

macro_rules! app {
    ($state:expr) => {
        atest::init_service(http::app($state.clone())).await
    };
}

/// Status and JSON body of a GET.
async fn respond<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = atest::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

macro_rules! get {
    ($app:expr, $uri:expr) => {
        respond(atest::call_service($app, atest::TestRequest::get().uri($uri).to_request()).await)
            .await
    };
}

#[actix_rt::test]
async fn fifty_identical_requests_within_the_cache_window_list_events_once() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    api.apply_node(fixtures::nvidia_node("gpu-a", 2));
    api.apply_pod(queued("clicks", "queued"));
    for n in 0..3 {
        api.add_event(failed_scheduling(
            "clicks",
            "queued",
            "uid-clicks-queued",
            n,
            "hami-scheduler",
        ));
    }
    // Another pod's event in the same namespace: the field selector keeps it out.
    api.add_event(failed_scheduling(
        "clicks",
        "other",
        "uid-other",
        0,
        "default-scheduler",
    ));
    let state = start(&api, dir.path()).await;
    until_tracked(&state, 1).await;
    let app = app!(state);
    let uri = "/v1/scheduling/pod?namespace=clicks&name=queued&uid=uid-clicks-queued";
    let answers = futures::future::join_all((0..50).map(|_| async { get!(&app, uri) })).await;
    let first = &answers[0];
    assert_eq!(first.0, 200, "{}", first.1);
    for answer in &answers {
        assert_eq!(answer, first, "every request sees the same read");
    }
    let reply = &first.1;
    assert_eq!(reply["eventStatus"], "available");
    assert_eq!(reply["eventsIncomplete"], false);
    assert_eq!(reply["events"].as_array().map(Vec::len), Some(3));
    assert_eq!(reply["events"][0]["reason"], "FailedScheduling");
    assert_eq!(reply["pod"]["stage"], "waiting");
    assert_eq!(reply["pod"]["reasonSource"], "mixed");
    assert_eq!(api.request_count("/api/v1/namespaces/clicks/events"), 1);
    // Sequential repeats inside the window are served from the cache too.
    for _ in 0..5 {
        assert_eq!(get!(&app, uri).0, 200);
    }
    assert_eq!(api.request_count("/api/v1/namespaces/clicks/events"), 1);
}

#[actix_rt::test]
async fn events_are_bounded_and_a_failed_read_still_answers_with_the_pod() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    api.apply_node(fixtures::nvidia_node("gpu-a", 2));
    api.apply_pod(queued("noisy", "queued"));
    api.apply_pod(queued("locked", "queued"));
    for n in 0..700 {
        api.add_event(failed_scheduling(
            "noisy",
            "queued",
            "uid-noisy-queued",
            n,
            "hami-scheduler",
        ));
    }
    let state = start(&api, dir.path()).await;
    until_tracked(&state, 2).await;
    let app = app!(state);

    let (status, reply) = get!(
        &app,
        "/v1/scheduling/pod?namespace=noisy&name=queued&uid=uid-noisy-queued"
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["eventsIncomplete"], true,
        "three pages of 200 cut off 700 events"
    );
    assert_eq!(reply["events"].as_array().map(Vec::len), Some(50));
    assert_eq!(api.request_count("/api/v1/namespaces/noisy/events"), 3);

    api.set_forbidden("events", true);
    let (status, reply) = get!(
        &app,
        "/v1/scheduling/pod?namespace=locked&name=queued&uid=uid-locked-queued"
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["eventStatus"], "forbidden");
    assert_eq!(reply["eventsIncomplete"], true);
    assert_eq!(reply["events"], json!([]));
    assert_eq!(reply["pod"]["name"], "queued");
}

#[actix_rt::test]
async fn identity_errors_answer_upstream_codes_without_reading_events() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    api.apply_pod(queued("dev", "queued"));
    let state = start(&api, dir.path()).await;
    until_tracked(&state, 1).await;
    let app = app!(state);
    for (uri, code, reason) in [
        (
            "/v1/scheduling/pod?namespace=dev&name=queued",
            400,
            "POD_IDENTITY_REQUIRED",
        ),
        (
            "/v1/scheduling/pod?namespace=dev&name=gone&uid=x",
            404,
            "POD_NOT_FOUND",
        ),
        (
            "/v1/scheduling/pod?namespace=dev&name=queued&uid=old",
            409,
            "POD_RECREATED",
        ),
    ] {
        let (status, body) = get!(&app, uri);
        assert_eq!(
            (status, body["code"].as_u64()),
            (code, Some(u64::from(code))),
            "{uri}"
        );
        assert_eq!(body["reason"], reason, "{uri}");
    }
    assert_eq!(api.request_count("/api/v1/namespaces/dev/events"), 0);
}
