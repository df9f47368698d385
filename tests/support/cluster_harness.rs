//! The node and pod caches started in process against a [`TestApiServer`], through a
//! kubeconfig exactly as in production, and the polling helpers the cache tests share
//! (`tests/caches.rs`, `tests/kube_faults.rs`).
//!
//! Every wait polls a condition until a deadline and fails the test with what it waited
//! for; nothing sleeps a fixed time hoping the caches caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hami_webui_server::cluster::pod_cache::GetSnapshot;
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::{Caches, ClusterSource};
use hami_webui_server::config::Config;
use hami_webui_server::http::AppState;
use hami_webui_server::readiness::{Readiness, ReadinessBoard};
use hami_webui_server::telemetry::SelfMetrics;

use super::app;
use super::kube_api::TestApiServer;

/// The running service (as `server::start` builds it) and, for brevity, its parts.
pub struct Harness {
    /// What the HTTP layer is given: `http::app(state)` serves it.
    pub state: AppState,
    pub caches: Caches,
    pub board: Arc<ReadinessBoard>,
    pub metrics: SelfMetrics,
    /// The default configuration with the harness' `kubernetes.unready_after`.
    pub config: Config,
    /// Holds the kubeconfig for as long as the client may re-read it.
    _dir: tempfile::TempDir,
}

/// Starts the caches on the current actix system, watching `api`, with readiness turning
/// off after `unready_after` of failures.
pub async fn start(api: &TestApiServer, unready_after: Duration) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = api.write_kubeconfig(dir.path());
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("client config");
    let client = kube::Client::try_from(client_config).expect("client");
    let config = app::config(&format!(
        "kubernetes:\n  unready_after: {}ms\n",
        unready_after.as_millis()
    ));
    let state = app::start(config, ClusterSource::Client(client)).await;
    Harness {
        caches: state.cluster.clone(),
        board: Arc::clone(&state.board),
        metrics: state.metrics.clone(),
        config: Config::clone(&state.config),
        state,
        _dir: dir,
    }
}

impl Harness {
    pub async fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.caches.pods.send(GetSnapshot).await.expect("pod cache")
    }

    /// Polls the snapshot until `check` holds, failing the test after `deadline`.
    pub async fn until(
        &self,
        deadline: Duration,
        what: &str,
        check: impl Fn(&ClusterSnapshot) -> bool,
    ) -> Arc<ClusterSnapshot> {
        let end = Instant::now() + deadline;
        loop {
            let snapshot = self.snapshot().await;
            if check(&snapshot) {
                return snapshot;
            }
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn until_ready(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.board.check() != Readiness::Ready {
            assert!(Instant::now() < end, "not ready: {:?}", self.board.check());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `hami_webui_cache_objects{resource}`.
    pub fn cache_objects(&self, resource: &str) -> i64 {
        self.metrics
            .cache_objects
            .with_label_values(&[resource])
            .get()
    }

    /// Watch errors seen so far by both caches (`hami_webui_watch_events_total{type="error"}`).
    pub fn watch_errors(&self) -> u64 {
        ["nodes", "pods"]
            .iter()
            .map(|source| {
                self.metrics
                    .watch_events
                    .with_label_values(&[source, "error"])
                    .get()
            })
            .sum()
    }

    /// Polls until both caches have noticed an outage (a watch error), failing after `deadline`.
    pub async fn until_outage_noticed(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.watch_errors() == 0 {
            assert!(Instant::now() < end, "the outage was never noticed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `hami_webui_decode_errors_total`, summed over every label.
    pub fn decode_errors(&self) -> u64 {
        self.metrics
            .registry
            .gather()
            .iter()
            .filter(|f| f.name() == "hami_webui_decode_errors_total")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// `(nodes, devices, pods)` of a snapshot.
pub fn counts(s: &ClusterSnapshot) -> (usize, usize, usize) {
    (
        s.inventory.nodes.len(),
        s.inventory.device_count(),
        s.pods.len(),
    )
}

/// Memory (MiB) of the first allocation of pod `name`, if it is in the snapshot.
pub fn allocated_memory(s: &ClusterSnapshot, name: &str) -> Option<i32> {
    let pod = s.pods.iter().find(|p| p.name == name)?;
    pod.containers
        .iter()
        .flat_map(|c| c.allocations.iter())
        .map(|a| a.usedmem)
        .next()
}

/// Resident memory of this test process in bytes (`VmRSS` of Linux `/proc/self/status`),
/// for "memory stays bounded" checks; `None` where that file does not exist.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
