//! The refresher and the vGPU monitor's windowed query (`[10m:]` subqueries), in process: the
//! real caches on a synthetic cluster, the real `MetricsRefresher`, and a metrics store that
//! holds the windowed query's reply for as long as the test says.
//!
//! Once an answer is held, cycles publish with it while the store is still evaluating a newer
//! one; at most one windowed request is out at a time; and the newer answer reaches a later
//! publication. With `exporter.window_refresh` longer than the interval, a good answer is
//! not asked again before it passes, and a failed one is asked again at once. Every wait
//! polls a condition until a deadline.

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use hami_webui_server::cluster::snapshot_file;
use hami_webui_server::cluster::{start as start_caches, ClusterSource, SOURCES};
use hami_webui_server::config::Config;
use hami_webui_server::metrics::publication::Exposition;
use hami_webui_server::metrics::refresher::{GetExposition, MetricsRefresher};
use hami_webui_server::query_client::{QueryData, QueryError, QueryOutput, RunQuery, Sample};
use hami_webui_server::readiness::{Readiness, ReadinessBoard};
use hami_webui_server::synthetic::ClusterShape;
use hami_webui_server::telemetry::SelfMetrics;

/// What the store answers the windowed query with: `None` holds the reply back.
#[derive(Default)]
struct Window {
    value: Option<f64>,
    /// Answer with an error instead.
    fail: bool,
    asked: usize,
    outstanding: usize,
    most_outstanding: usize,
}

/// A metrics store that answers every expression at once with an empty vector, except the
/// windowed one: one sample for `labels`, valued by [`Window`].
struct HoldingStore {
    window: Arc<Mutex<Window>>,
    labels: Vec<(String, String)>,
}

impl Actor for HoldingStore {
    type Context = Context<Self>;
}

impl Handler<RunQuery> for HoldingStore {
    type Result = ResponseFuture<Result<Arc<QueryOutput>, QueryError>>;

    fn handle(&mut self, msg: RunQuery, _: &mut Context<Self>) -> Self::Result {
        let expr = match msg.query {
            hami_webui_server::query_client::Query::Instant { expr, .. } => expr,
            _ => return Box::pin(async { Err(QueryError::Decode("not expected".into())) }),
        };
        let vector = |samples| {
            Ok(Arc::new(QueryOutput {
                data: QueryData::Vector(samples),
                warnings: Vec::new(),
            }))
        };
        if !expr.contains("[10m:]") {
            return Box::pin(async move { vector(Vec::new()) });
        }
        {
            let mut window = self.window.lock().unwrap();
            window.asked += 1;
            window.outstanding += 1;
            window.most_outstanding = window.most_outstanding.max(window.outstanding);
            if window.fail {
                window.outstanding -= 1;
                return Box::pin(async { Err(QueryError::Timeout) });
            }
        }
        let window = Arc::clone(&self.window);
        let labels = self.labels.clone();
        Box::pin(async move {
            // Bounded: a test that never releases the reply fails on its own deadline first.
            let give_up = Instant::now() + Duration::from_secs(60);
            let value = loop {
                let value = window.lock().unwrap().value;
                if let Some(value) = value {
                    break Some(value);
                }
                if Instant::now() > give_up {
                    break None;
                }
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            };
            window.lock().unwrap().outstanding -= 1;
            let value = value.ok_or(QueryError::Timeout)?;
            vector(vec![Sample {
                metric: labels.into_iter().collect(),
                timestamp: 0.0,
                value,
            }])
        })
    }
}

/// Takes the exporter identities a cycle learns, and drops them.
struct Sink;
impl Actor for Sink {
    type Context = Context<Self>;
}
impl Handler<hami_webui_server::cluster::node_cache::SetIdentities> for Sink {
    type Result = ();
    fn handle(
        &mut self,
        _: hami_webui_server::cluster::node_cache::SetIdentities,
        _: &mut Context<Self>,
    ) {
    }
}

fn config_with(window_refresh: &str) -> Config {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "prometheus:\n  address: http://127.0.0.1:9\nexporter:\n  interval: 1s\n  timeout: 30s\n  window_refresh: {window_refresh}\n"
        ),
    )
    .expect("write config");
    Config::load_with_env(&path, Vec::new()).expect("valid config")
}

/// The value of the first `hami_container_core_util` series of `pod`, if published.
fn core_util(exposition: &Exposition, pod: &str) -> Option<f64> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&exposition.gzip[..])
        .read_to_string(&mut text)
        .expect("gzip text");
    let needle = format!("pod_name=\"{pod}\"");
    text.lines()
        .filter(|l| l.starts_with("hami_container_core_util{") && l.contains(&needle))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

/// Polls the refresher until `done` holds for a new publication; every publication seen on
/// the way goes through `each`.
async fn until_published(
    refresher: &Addr<MetricsRefresher>,
    last: &mut Arc<Exposition>,
    deadline: Duration,
    what: &str,
    mut each: impl FnMut(&Exposition) -> bool,
) {
    let end = Instant::now() + deadline;
    loop {
        let current = refresher.send(GetExposition).await.expect("refresher");
        // Before the first cycle the refresher serves an empty exposition.
        if !current.gzip.is_empty() && !Arc::ptr_eq(&current, last) {
            *last = current;
            if each(last) {
                return;
            }
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A refresher on the real caches of a one-GPU cluster, asking a [`HoldingStore`] that starts
/// from `window`; returns it with the pod the windowed sample names.
async fn start_refresher(
    window_refresh: &str,
    window: &Arc<Mutex<Window>>,
) -> (Addr<MetricsRefresher>, String) {
    let shape = ClusterShape::gpus(1);
    let export = snapshot_file::parse("synthetic", &shape.list().to_string()).expect("cluster");
    let config = config_with(window_refresh);
    let metrics = SelfMetrics::new().expect("metrics");
    let board = ReadinessBoard::new(&SOURCES, Duration::from_secs(300));
    let caches = start_caches(&config, &metrics, &board, ClusterSource::Snapshot(export)).await;
    let end = Instant::now() + Duration::from_secs(20);
    while board.check() != Readiness::Ready {
        assert!(Instant::now() < end, "caches not ready");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = caches
        .pods
        .send(hami_webui_server::cluster::pod_cache::GetSnapshot)
        .await
        .expect("pod cache");
    let (pod, container, allocation) = snapshot
        .pods
        .iter()
        .flat_map(|p| p.containers.iter().map(move |c| (p, c)))
        .find_map(|(p, c)| Some((p, c, c.allocations.first()?)))
        .expect("a container with an allocation");
    let labels = [
        ("device_uuid", allocation.uuid.as_str()),
        ("namespace", pod.namespace.as_str()),
        ("pod", pod.name.as_str()),
        ("container", container.name.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let store = HoldingStore {
        window: Arc::clone(window),
        labels,
    }
    .start();
    let refresher = MetricsRefresher::new(
        config.exporter.clone(),
        caches.pods.clone(),
        store.recipient(),
        Sink.start().recipient(),
        Arc::clone(&board),
        &metrics,
    )
    .expect("refresher")
    .start();
    (refresher, pod.name.clone())
}

#[actix_rt::test]
async fn cycles_publish_with_the_held_window_answer_while_the_store_evaluates_a_newer_one() {
    let window = Arc::new(Mutex::new(Window {
        value: Some(0.5),
        ..Window::default()
    }));
    let (refresher, pod_name) = start_refresher("0s", &window).await;

    // The first cycle waits for the windowed answer: its publication carries it.
    let mut last = Arc::new(Exposition::default());
    let mut first = None;
    until_published(
        &refresher,
        &mut last,
        Duration::from_secs(20),
        "a publication",
        |e| {
            first = core_util(e, &pod_name);
            true
        },
    )
    .await;
    let first = first.expect("the first publication carries the windowed family");

    // Hold the store's next windowed reply back until one request is waiting on it.
    window.lock().unwrap().value = None;
    let end = Instant::now() + Duration::from_secs(20);
    while window.lock().unwrap().outstanding == 0 {
        assert!(
            Instant::now() < end,
            "the windowed query was not asked again"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = window.lock().unwrap().asked;

    // Cycles go on publishing with the held answer meanwhile, and ask nothing more of it.
    let mut published = 0;
    until_published(
        &refresher,
        &mut last,
        Duration::from_secs(20),
        "three publications while the window is held",
        |e| {
            assert_eq!(core_util(e, &pod_name), Some(first), "the held answer");
            published += 1;
            published == 3
        },
    )
    .await;
    {
        let window = window.lock().unwrap();
        assert_eq!(window.outstanding, 1);
        assert_eq!(window.asked, asked, "asked again while one was out");
        assert_eq!(window.most_outstanding, 1);
    }

    // Released with a newer value, it reaches a later publication.
    window.lock().unwrap().value = Some(0.9);
    until_published(
        &refresher,
        &mut last,
        Duration::from_secs(20),
        "the newer windowed answer",
        |e| {
            let now = core_util(e, &pod_name).expect("the windowed family stays published");
            now != first
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_good_windowed_answer_waits_for_its_refresh_time_and_a_failed_one_does_not() {
    let window = Arc::new(Mutex::new(Window {
        value: Some(0.5),
        fail: true,
        ..Window::default()
    }));
    // Cycles every second; a good windowed answer is kept for an hour.
    let (refresher, pod_name) = start_refresher("1h", &window).await;

    // Failed answers are asked again cycle after cycle.
    let end = Instant::now() + Duration::from_secs(20);
    while window.lock().unwrap().asked < 3 {
        assert!(
            Instant::now() < end,
            "a failed windowed answer was not asked again"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    // Once one succeeds, it reaches a publication and is not asked again for the hour.
    window.lock().unwrap().fail = false;
    let mut last = Arc::new(Exposition::default());
    let mut held = None;
    until_published(
        &refresher,
        &mut last,
        Duration::from_secs(20),
        "the windowed answer",
        |e| {
            held = core_util(e, &pod_name);
            held.is_some()
        },
    )
    .await;
    let asked = window.lock().unwrap().asked;
    let mut published = 0;
    until_published(
        &refresher,
        &mut last,
        Duration::from_secs(20),
        "three more publications",
        |e| {
            assert_eq!(core_util(e, &pod_name), held, "the held answer");
            published += 1;
            published == 3
        },
    )
    .await;
    assert_eq!(
        window.lock().unwrap().asked,
        asked,
        "asked again within the hour"
    );
}
