//! The application as every in-process test builds it: the configuration from YAML text, the
//! actors started by [`server::start`] on a cluster source, and the routes served through
//! [`hami_webui_server::http::app`] — exactly what the server runs, so no test builds a
//! partial app of its own.
//!
//! ```ignore
//! let state = app::start(app::config(""), ClusterSource::Snapshot(export)).await;
//! let service = actix_web::test::init_service(http::app(state.clone())).await;
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use hami_webui_server::cluster::pod_cache::GetSnapshot;
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::config::Config;
use hami_webui_server::http::reply_cache::ReplyCache;
use hami_webui_server::http::AppState;
use hami_webui_server::query_client::RunQuery;
use hami_webui_server::server;

/// An `http://` address on loopback that nothing listens on.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A configuration from YAML text, loaded as `--conf` loads it (no environment). Unless the
/// text names one, the metrics store is an address nothing listens on, so no test reaches a
/// store on a default port by accident.
pub fn config(yaml: &str) -> Config {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    let text = if yaml.contains("prometheus:") {
        yaml.to_string()
    } else {
        format!("{yaml}\nprometheus:\n  address: {}\n", closed_port_url())
    };
    std::fs::write(&path, text).expect("write config");
    Config::load_with_env(&path, Vec::<(String, String)>::new()).expect("valid config")
}

/// Starts every actor on the current actix system, as the server does.
pub async fn start(config: Config, source: ClusterSource) -> AppState {
    server::start(config, source).await.expect("server state")
}

/// `state` with another metrics store in place of the `QueryClient` (a recorded or scripted
/// one); the refresher keeps the real client. The list replies kept so far (the start's
/// warm-up asked the configured store) are dropped with the store they were built from.
pub fn with_query(mut state: AppState, query: Recipient<RunQuery>) -> AppState {
    let http = &state.config.server.http;
    state.replies = Arc::new(ReplyCache::new(
        http.reply_cache_ttl,
        http.reply_max_staleness,
        http.reply_store_staleness,
    ));
    state.query = query;
    state
}

/// Waits until `state` reports ready: its caches synced and the start's list replies built
/// (the warm-up asks the configured store for the card and node capacities).
pub async fn until_ready(state: &AppState, deadline: Duration) {
    let end = Instant::now() + deadline;
    while state.board.check() != hami_webui_server::readiness::Readiness::Ready {
        assert!(Instant::now() < end, "not ready within {deadline:?}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The snapshot the pod cache publishes now.
pub async fn snapshot(state: &AppState) -> Arc<ClusterSnapshot> {
    state
        .cluster
        .pods
        .send(GetSnapshot)
        .await
        .expect("pod cache")
}

/// Polls the published snapshot until `check` holds, failing the test after `deadline`.
pub async fn until_snapshot(
    state: &AppState,
    deadline: Duration,
    what: &str,
    check: impl Fn(&ClusterSnapshot) -> bool,
) -> Arc<ClusterSnapshot> {
    let end = Instant::now() + deadline;
    loop {
        let snapshot = snapshot(state).await;
        if check(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}
