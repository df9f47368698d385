//! [`AppState`]: everything a handler of either listener may use, registered once as
//! `web::Data<AppState>` by [`super::app`] and [`super::public::app`].
//!
//! It exists so that there is exactly one way to build the application: `main`, the public
//! listener and every test register the same state, so no handler has to guess what is
//! there or invent a fallback for what is not. It holds addresses and shared handles only;
//! the state itself stays with the actors, which hand out immutable snapshots.

use std::sync::Arc;

use actix::prelude::*;

use crate::cluster::leader_election::Release;
use crate::cluster::Caches;
use crate::config::Config;
use crate::http::reply_cache::ReplyCache;
use crate::metrics::refresher::GetExposition;
use crate::query_client::RunQuery;
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;

/// The running service as the HTTP layer sees it. Cheap to clone (addresses and `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Loaded and validated once at start; every default lives in [`Config`].
    pub config: Arc<Config>,
    pub metrics: SelfMetrics,
    /// What `/readyz` reports; turns 503 when shutdown begins.
    pub board: Arc<ReadinessBoard>,
    /// The node, pod, catalog and event actors.
    pub cluster: Caches,
    /// The `QueryClient` (a recipient, so tests can stand a recorded store in its place).
    pub query: Recipient<RunQuery>,
    /// The `MetricsRefresher`, whose last publication `/metrics` serves.
    pub exposition: Recipient<GetExposition>,
    /// Finished list replies per snapshot generation, shared by both listeners.
    pub replies: Arc<ReplyCache>,
    /// The `LeaderElector`, when leader election is on: told to release the Lease at
    /// shutdown.
    pub leadership: Option<Recipient<Release>>,
}
