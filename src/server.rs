//! Wiring: builds the shared handles, starts the actors and the HTTP listener, and runs until
//! a stop signal. `main` only parses flags, configuration and the snapshot file, then calls
//! [`run`].
//!
//! The listener is bound before any cluster contact, so `/livez` answers at once and
//! `/readyz` can say what we are waiting for.

use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use kube::api::Api;
use tracing_actix_web::TracingLogger;

use crate::catalog::{watcher as catalog_watch, DeviceCatalogWatcher};
use crate::cluster::node_cache::{self, NodeCache};
use crate::cluster::pod_cache::{self, PodCache};
use crate::cluster::scheduling::SchedulingResources;
use crate::cluster::scheduling_events::SchedulingEvents;
use crate::cluster::snapshot_file::{ClusterExport, SnapshotObjects};
use crate::cluster::watch;
use crate::config::Config;
use crate::http;
use crate::http::logging::RequestLog;
use crate::metrics::refresher::MetricsRefresher;
use crate::query_client::QueryClient;
use crate::readiness::ReadinessBoard;
use crate::reply::cache::ReplyCache;
use crate::telemetry::SelfMetrics;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("server.http.addr: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    QueryClient(#[from] crate::query_client::QueryClientError),
    #[error(transparent)]
    Web(#[from] crate::http::public::WebError),
    #[error("self-metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the cluster state comes from.
pub enum ClusterSource {
    /// Watch the API server found by in-cluster config or kubeconfig.
    Kubernetes,
    /// Watch through a client built by the caller (tests build one from a kubeconfig file
    /// without touching the process environment).
    Client(kube::Client),
    /// Serve objects given by the caller (tests); no Kubernetes contact at all.
    Snapshot(ClusterExport),
    /// Serve the file loaded at start (`--snapshot`); no Kubernetes contact at all.
    SnapshotFile(SnapshotObjects),
}

/// The running cluster caches.
#[derive(Clone)]
pub struct Caches {
    pub nodes: Addr<NodeCache>,
    pub pods: Addr<PodCache>,
    /// HAMi's device ConfigMap (`device_config`), watched from the same source.
    pub catalog: Addr<DeviceCatalogWatcher>,
    /// One pod's events for `GET /v1/scheduling/pod`, read per request from the same API
    /// server and briefly cached.
    pub events: Addr<SchedulingEvents>,
    /// Finished list replies per snapshot generation, shared by both listeners.
    pub replies: Arc<ReplyCache>,
}

/// Readiness sources: one per watcher.
pub const SOURCES: [&str; 2] = [node_cache::SOURCE, pod_cache::SOURCE];

/// Starts the node and pod caches and the device catalog on the current actix system. With a
/// Kubernetes source whose client cannot be built, the caches start empty and never sync (the
/// catalog stays `loading`); the error is logged.
pub async fn start_caches(
    config: &Config,
    metrics: &SelfMetrics,
    board: &Arc<ReadinessBoard>,
    source: ClusterSource,
) -> Caches {
    let device_config = &config.device_config;
    let mut catalog_source = (futures::StreamExt::boxed(futures::stream::pending()), None);
    let mut events_client = None;
    let (node_events, pod_events, node_api, pod_api) = match source {
        ClusterSource::Snapshot(export) => {
            catalog_source.0 = watch::replay(export.config_maps);
            (
                watch::replay(export.nodes),
                watch::replay(export.pods),
                None,
                None,
            )
        }
        ClusterSource::SnapshotFile(objects) => {
            catalog_source.0 = watch::replay_json(objects.config_maps);
            (
                watch::replay_json(objects.nodes),
                watch::replay_json(objects.pods),
                None,
                None,
            )
        }
        ClusterSource::Kubernetes | ClusterSource::Client(_) => match client_for(source).await {
            Ok(client) => {
                events_client = Some(client.clone());
                if catalog_watch::is_enabled(device_config) {
                    let api = Api::namespaced(client.clone(), &device_config.namespace);
                    catalog_source = (
                        catalog_watch::live(api.clone(), &device_config.name),
                        Some(api),
                    );
                }
                let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
                let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client);
                (
                    watch::live(nodes.clone()),
                    watch::live(pods.clone()),
                    Some(nodes),
                    Some(pods),
                )
            }
            Err(error) => {
                tracing::error!(%error, "cannot reach Kubernetes; serving an empty cluster");
                (
                    futures::StreamExt::boxed(futures::stream::pending()),
                    futures::StreamExt::boxed(futures::stream::pending()),
                    None,
                    None,
                )
            }
        },
    };
    let catalog =
        DeviceCatalogWatcher::new(device_config.clone(), catalog_source.0, catalog_source.1)
            .start();
    let pods = PodCache::new(metrics.clone(), Arc::clone(board), pod_events, pod_api)
        .with_scheduling_resources(SchedulingResources::new(&config.scheduling.resource_names))
        .start();
    let events = SchedulingEvents::new(events_client).start();
    let nodes = NodeCache::new(
        config.node_selectors.clone(),
        metrics.clone(),
        Arc::clone(board),
        node_events,
        node_api,
    )
    .with_annotationless_pod_mode(config.ascend.annotationless_pod_mode)
    .start();
    nodes.do_send(node_cache::Subscribe(pods.clone().recipient()));
    catalog.do_send(crate::catalog::SubscribeCatalog(nodes.clone().recipient()));
    Caches {
        nodes,
        pods,
        catalog,
        events,
        replies: Arc::new(ReplyCache::new(config.server.http.reply_cache_ttl)),
    }
}

async fn client_for(
    source: ClusterSource,
) -> Result<kube::Client, crate::cluster::kubernetes::KubeClientError> {
    match source {
        ClusterSource::Client(client) => Ok(client),
        _ => crate::cluster::kubernetes::client().await,
    }
}

pub async fn run(config: Config, source: ClusterSource) -> Result<(), ServeError> {
    let self_metrics = SelfMetrics::new()?;
    let board = ReadinessBoard::new(&SOURCES, config.kubernetes.unready_after);

    let addr = config.server.http.addr.clone();
    let metrics_data = web::Data::new(self_metrics.clone());
    let board_data = web::Data::from(Arc::clone(&board));
    let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let caches = start_caches(&config, &self_metrics, &board, source).await;
    let catalog_data = web::Data::new(caches.catalog.clone());
    let caches_data = web::Data::new(caches);
    let query_client = web::Data::new(QueryClient::start(&config.prometheus, &self_metrics)?);
    let config_data = web::Data::new(config.clone());
    // The public listener (web console, /api/vgpu/v1, /health_check) runs the same handlers,
    // so it gets the same app data: every handle given to the internal App goes here too.
    let public = crate::http::public::public_server(&config, {
        let (metrics, board, caches) = (
            metrics_data.clone(),
            board_data.clone(),
            caches_data.clone(),
        );
        let (query, conf) = (query_client.clone(), config_data.clone());
        let catalog = catalog_data.clone();
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(metrics.clone())
                .app_data(board.clone())
                .app_data(caches.clone())
                .app_data(catalog.clone())
                .app_data(query.clone())
                .app_data(conf.clone());
        }
    })
    .await?;
    // The refresher publishes what the internal listener's /metrics serves.
    let refresher = web::Data::new(
        MetricsRefresher::new(
            config.exporter.clone(),
            caches_data.pods.clone(),
            query_client.get_ref().clone().recipient(),
            caches_data.nodes.clone().recipient(),
            Arc::clone(&board),
            &self_metrics,
        )?
        .start(),
    );
    let limits = config.server.http.limits;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(refresher.clone())
            .wrap(TracingLogger::<RequestLog>::new())
            .app_data(metrics_data.clone())
            .app_data(board_data.clone())
            .app_data(caches_data.clone())
            .app_data(catalog_data.clone())
            .app_data(query_client.clone())
            .app_data(config_data.clone())
            .configure(http::configure)
            .default_service(web::to(http::fallback::not_found))
    })
    .client_request_timeout(limits.client_request_timeout)
    .keep_alive(limits.keep_alive)
    .max_connections(limits.max_connections)
    .listen(listener)?
    // Signals are ours: readiness must turn 503 before the listener closes.
    .disable_signals()
    .shutdown_timeout(config.server.shutdown_timeout.as_secs().max(1))
    .run();
    tracing::info!(%addr, "listening");
    let public_handle = public.as_ref().map(|p| p.handle());
    actix_rt::spawn(stop_on_signal(
        server.handle(),
        public_handle,
        Arc::clone(&board),
    ));
    futures::future::try_join(server, crate::http::public::run_optional(public)).await?;
    tracing::info!("stopped");
    Ok(())
}

/// On SIGTERM or SIGINT: `/readyz` answers 503 from this moment, both listeners stop
/// accepting, and in-flight requests get up to `server.shutdown_timeout` to finish. The
/// actors stop with the actix system when `run` returns.
async fn stop_on_signal(
    handle: actix_web::dev::ServerHandle,
    public: Option<actix_web::dev::ServerHandle>,
    board: Arc<ReadinessBoard>,
) {
    let signal = wait_for_stop_signal().await;
    board.begin_shutdown();
    tracing::info!(signal, "stopping: finishing in-flight requests");
    let public = async {
        if let Some(public) = public {
            public.stop(true).await;
        }
    };
    futures::future::join(handle.stop(true), public).await;
}

async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Without signal handlers the process can still be killed; never stop on our own.
            tracing::error!("cannot install signal handlers");
            futures::future::pending().await
        }
    }
}
