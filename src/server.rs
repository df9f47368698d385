//! Wiring: [`start`] starts the actors and returns the [`AppState`] the HTTP layer serves;
//! [`run`] serves it on bound [`Listeners`] until a shutdown future resolves. `main` binds
//! the listeners, passes the signal future and maps errors to exit codes; tests pass their
//! own listeners and futures, so start and drain are tested in process.
//!
//! The listeners are bound before any cluster contact, so a port conflict fails at once and
//! the kernel queues early probes until the server answers.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::dev::Server;
use actix_web::{web, HttpServer};
use kube::api::Api;

use crate::cluster::leader_election::{leader_gauge, LeaderElector, Release};
use crate::cluster::{self, ClusterSource, SOURCES};
use crate::config::Config;
use crate::http::public::{self, Console, WebError};
use crate::http::reply_cache::ReplyCache;
use crate::http::{self, AppState};
use crate::metrics::refresher::MetricsRefresher;
use crate::query_client::QueryClient;
use crate::readiness::ReadinessBoard;
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
    Web(#[from] WebError),
    #[error("self-metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// The sockets the server answers on.
pub struct Listeners {
    /// `server.http.addr`: `/v1/*`, `/metrics`, `/readyz`, `/livez`.
    pub internal: TcpListener,
    /// `web.listen_address`: the console, `/api/vgpu/v1/*`, `/health_check`; `None` when the
    /// public listener is off ([`public::serves_console`]).
    pub public: Option<TcpListener>,
}

impl Listeners {
    /// Binds the configured addresses.
    pub fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let addr = &config.server.http.addr;
        let internal = TcpListener::bind(addr).map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let public = if public::serves_console(&config.web) {
            let addr = config.web.bind_address();
            let listener =
                TcpListener::bind(&addr).map_err(|source| WebError::Bind { addr, source })?;
            Some(listener)
        } else {
            None
        };
        Ok(Listeners { internal, public })
    }
}

/// One listener with the connection limits every listener shares. Signals are ours (see
/// [`run`]): readiness must turn 503 before the listener closes. (A macro because
/// `HttpServer`'s bounds name types actix-web does not re-export.)
macro_rules! serve {
    ($listener:expr, $config:expr, $factory:expr) => {{
        let limits = $config.server.http.limits;
        HttpServer::new($factory)
            .client_request_timeout(limits.client_request_timeout)
            .keep_alive(limits.keep_alive)
            .max_connections(limits.max_connections)
            .workers($config.server.http.workers)
            .listen($listener)
            .map(|server| {
                server
                    .disable_signals()
                    .shutdown_timeout($config.server.shutdown_timeout.as_secs().max(1))
                    .run()
            })
    }};
}

/// The internal listener: [`serve!`]'s settings, assembled by hand so that connections
/// whose first request is `GET /metrics` take [`http::direct_scrape`]'s path. As
/// `HttpServer` does, with one difference: the app's configured host (used only for
/// requests without a `Host` header) is actix-web's default, as its constructor is private.
fn serve_internal(
    listener: TcpListener,
    config: &Config,
    state: AppState,
) -> Result<Server, ServeError> {
    let limits = config.server.http.limits;
    let scrape = http::direct_scrape::ScrapePath {
        request_timeout: limits.client_request_timeout,
        send_buffer: config.server.http.scrape_send_buffer,
        linger: CLIENT_DISCONNECT_TIMEOUT,
    };
    let addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder
        .workers(config.server.http.workers)
        .max_concurrent_connections(limits.max_connections)
        .disable_signals()
        .shutdown_timeout(config.server.shutdown_timeout.as_secs().max(1))
        .listen("internal", listener, move || {
            let shutdown = shutdown.clone();
            let app = actix_service::map_config(http::app(state.clone()), |_| {
                actix_web::dev::AppConfig::default()
            });
            let http = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(limits.keep_alive)
                .client_request_timeout(limits.client_request_timeout)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .finish(app)
                .tcp();
            http::direct_scrape::route(http, state.clone(), scrape)
        })?
        .run();
    Ok(server)
}

/// actix-web's default: how long a closing connection waits for the client's side.
const CLIENT_DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the actors on the current actix system: the cluster caches on `source`, the query
/// client and the refresher. The caches start empty and fill as their watchers sync.
pub async fn start(config: Config, source: ClusterSource) -> Result<AppState, ServeError> {
    let metrics = SelfMetrics::new()?;
    let sources: Vec<&'static str> = SOURCES
        .iter()
        .copied()
        .chain([http::warm::SOURCE])
        .collect();
    let board = ReadinessBoard::new(&sources, config.kubernetes.unready_after);
    let snapshot = matches!(
        source,
        ClusterSource::Snapshot(_) | ClusterSource::SnapshotFile(_)
    );
    let cluster = cluster::start(&config, &metrics, &board, source).await;
    let query = QueryClient::start(&config.prometheus, &metrics)?;
    let refresher = MetricsRefresher::new(
        config.exporter.clone(),
        cluster.pods.clone(),
        query.clone().recipient(),
        cluster.nodes.clone().recipient(),
        Arc::clone(&board),
        &metrics,
    )?;
    let (refresher, leadership) = elect(&config, &cluster, refresher, snapshot, &metrics)?;
    let state = AppState {
        replies: Arc::new(ReplyCache::new(
            config.server.http.reply_cache_ttl,
            config.server.http.reply_max_staleness,
            config.server.http.reply_store_staleness,
        )),
        config: Arc::new(config),
        metrics,
        board,
        cluster,
        query: query.recipient(),
        exposition: refresher.recipient(),
        leadership,
    };
    // Readiness waits for it too (`http::warm::SOURCE`).
    actix_rt::spawn(http::warm::warm_lists(web::Data::new(state.clone())));
    Ok(state)
}

/// Starts the refresher as the only publisher (leader election off, or a snapshot, which no
/// other replica shares) or as a follower of a `LeaderElector`; the elector's address is
/// kept to release the Lease at shutdown.
fn elect(
    config: &Config,
    cluster: &cluster::Caches,
    refresher: MetricsRefresher,
    snapshot: bool,
    metrics: &SelfMetrics,
) -> Result<(Addr<MetricsRefresher>, Option<Recipient<Release>>), ServeError> {
    let election = &config.leader_election;
    if !election.enabled || snapshot {
        if election.enabled {
            tracing::info!("leader election does not apply to a snapshot: this process publishes");
        }
        leader_gauge(metrics)?.set(1);
        return Ok((refresher.start(), None));
    }
    let refresher = refresher.following().start();
    let Some(client) = &cluster.client else {
        // Publishing without the Lease could double every series another replica publishes.
        leader_gauge(metrics)?.set(0);
        tracing::error!("leader election is on but there is no Kubernetes client: this replica never publishes the device families");
        return Ok((refresher, None));
    };
    let elector = LeaderElector::new(
        Api::namespaced(client.clone(), &election.namespace),
        election.clone(),
        vec![refresher.clone().recipient()],
        metrics,
    )?
    .start();
    tracing::info!(
        lease = %election.lease_name, namespace = %election.namespace,
        identity = %election.identity, "leader election on: publishing the device families only while leading"
    );
    Ok((refresher, Some(elector.recipient())))
}

/// Serves `state`-to-be on `listeners` until `shutdown` resolves: `/readyz` answers 503 from
/// that moment, both listeners stop accepting, and in-flight requests get up to
/// `server.shutdown_timeout` to finish. The actors stop with the actix system when the
/// caller's `System` ends.
pub async fn run(
    config: Config,
    source: ClusterSource,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + 'static,
) -> Result<(), ServeError> {
    let console = match &listeners.public {
        Some(_) => Some(web::Data::new(Console::load(&config.web).await?)),
        None => None,
    };
    let state = start(config, source).await?;
    let config = Arc::clone(&state.config);
    let internal = serve_internal(listeners.internal, &config, state.clone())?;
    let addr = config.server.http.addr.as_str();
    tracing::info!(%addr, "listening");
    let public = match (listeners.public, console) {
        (Some(listener), Some(console)) => {
            let state = state.clone();
            let server = serve!(listener, config, move || {
                public::app(state.clone(), console.clone())
            })?;
            let addr = config.web.bind_address();
            tracing::info!(%addr, "public listener (web console, /api/vgpu, /health_check)");
            Some(server)
        }
        _ => None,
    };
    let handles = (internal.handle(), public.as_ref().map(Server::handle));
    let board = Arc::clone(&state.board);
    let leadership = state.leadership.clone();
    actix_rt::spawn(async move {
        shutdown.await;
        board.begin_shutdown();
        // A follower takes over at its next try instead of after a whole lease_duration.
        if let Some(elector) = leadership {
            let _ = elector.send(Release).await;
        }
        tracing::info!("stopping: finishing in-flight requests");
        let public = async {
            if let Some(public) = handles.1 {
                public.stop(true).await;
            }
        };
        futures::future::join(handles.0.stop(true), public).await;
    });
    let public = async {
        match public {
            Some(server) => server.await,
            None => Ok(()),
        }
    };
    futures::future::try_join(internal, public).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, naming it in the log. Without signal handlers the process
/// can still be killed; it never stops on its own.
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stop signal");
        }
        _ => {
            tracing::error!("cannot install signal handlers");
            futures::future::pending::<()>().await
        }
    }
}
