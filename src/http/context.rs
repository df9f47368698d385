//! [`RestContext`]: what every REST handler needs besides its request message — the
//! configured zone and deadlines, the cluster snapshot, the metrics store and the kept
//! replies — gathered by one extractor from the [`AppState`] so the handlers stay a few
//! lines each.
//!
//! [`RestContext::snapshot`] asks the `PodCache` (never waits on a watcher);
//! [`StoreLookups::gauge`] sends one [`RunQuery`] to the `QueryClient` and falls back to "no
//! overrides" on any failure, as the Go backend did; [`RestContext::query`] is the
//! pass-through's one question, whose failure is the caller's answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header::{self, ContentType};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use jiff::tz::TimeZone;

use crate::cluster::pod_cache::GetSnapshot;
use crate::cluster::snapshot::ClusterSnapshot;
use crate::error::ApiError;
use crate::http::encoding::{accepts_gzip, encode_json, in_pieces, inflated, EncodedBody};
use crate::http::reply_cache::{Freshness, ReplyBody, SnapshotVersion};
use crate::http::state::AppState;
use crate::query_client::{Lane, Query, QueryOutput, RunQuery};
use crate::reply::upstream::gauge_by_label;

/// Per-request access to configuration, snapshot and metrics store.
pub struct RestContext {
    state: web::Data<AppState>,
    /// When the request arrived; its deadline is this plus `server.http.timeout`.
    pub started: Instant,
    /// The request's `Accept-Encoding` allows gzip: kept replies are sent compressed.
    accepts_gzip: bool,
}

impl RestContext {
    /// A context that no request carries, for work the server does on its own
    /// ([`crate::http::warm`]): it takes gzip, as browsers do.
    pub fn detached(state: web::Data<AppState>) -> Self {
        RestContext {
            state,
            started: Instant::now(),
            accepts_gzip: true,
        }
    }

    /// Zone of rendered times (`server.timezone`).
    pub fn zone(&self) -> &TimeZone {
        &self.state.config.server.timezone
    }

    /// `server.http.timeout`.
    pub fn timeout(&self) -> Duration {
        self.state.config.server.http.timeout
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The instant the request must be answered by.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout()
    }

    /// The current cluster snapshot.
    pub async fn snapshot(&self) -> Result<Arc<ClusterSnapshot>, ApiError> {
        self.state
            .cluster
            .pods
            .send(GetSnapshot)
            .await
            .map_err(|_| ApiError::Unavailable("the cluster caches are not running"))
    }

    /// The JSON reply for `request` on `snapshot`, through the shared
    /// [`ReplyCache`](crate::http::reply_cache::ReplyCache): identical requests get the same
    /// bytes, built once per snapshot generation, in the background while the previous reply
    /// is still served. The decoded request's `Debug` form is the cache key: it is derived,
    /// covers every field, and is equal exactly when the requests are.
    ///
    /// A build is two halves so that no request-serving thread does its CPU work: `fetch`
    /// waits for what the reply needs from the metrics store (through [`StoreLookups`], as
    /// the build outlives the request), and `render` builds and serializes it on the build
    /// thread ([`crate::background`]), below the request threads' priority.
    pub async fn cached_json<Request, Inputs, Reply, Fetch, FetchFut, Render>(
        &self,
        route: &'static str,
        request: &Request,
        snapshot: &ClusterSnapshot,
        freshness: Freshness,
        fetch: Fetch,
        render: Render,
    ) -> Result<HttpResponse, ApiError>
    where
        Request: std::fmt::Debug,
        Fetch: FnOnce(StoreLookups) -> FetchFut + 'static,
        FetchFut: Future<Output = Inputs> + 'static,
        Inputs: Send + 'static,
        Render: FnOnce(Inputs) -> Reply + Send + 'static,
        Reply: serde::Serialize,
    {
        self.cached_encoded(
            route,
            request,
            snapshot,
            freshness,
            fetch,
            move |inputs, _| encode_json(&render(inputs)).map_err(ApiError::Render),
        )
        .await
    }

    /// [`Self::cached_json`] for a reply that encodes itself: `encode` is also told the
    /// cache key, under which it may keep pieces of its work for the next build (as the
    /// container list does, [`crate::http::list_pieces`]).
    pub async fn cached_encoded<Request, Inputs, Fetch, FetchFut, Encode>(
        &self,
        route: &'static str,
        request: &Request,
        snapshot: &ClusterSnapshot,
        freshness: Freshness,
        fetch: Fetch,
        encode: Encode,
    ) -> Result<HttpResponse, ApiError>
    where
        Request: std::fmt::Debug,
        Fetch: FnOnce(StoreLookups) -> FetchFut + 'static,
        FetchFut: Future<Output = Inputs> + 'static,
        Inputs: Send + 'static,
        Encode: FnOnce(Inputs, &str) -> Result<EncodedBody, ApiError> + Send + 'static,
    {
        let lookups = StoreLookups {
            state: self.state.clone(),
        };
        let build_thread = self.state.replies.build_thread();
        let key = format!("{route} {request:?}");
        let build =
            move || async move {
                let inputs = fetch(lookups).await;
                build_thread.run(move || encode(inputs, &key)).await.ok_or(
                    ApiError::Unavailable("the reply build thread is not running"),
                )?
            };
        let reply: ReplyBody = self
            .state
            .replies
            .get_or_build_encoded(
                route,
                format!("{request:?}"),
                SnapshotVersion {
                    generation: snapshot.generation,
                    published: snapshot.published.unwrap_or_else(Instant::now),
                },
                freshness,
                self.accepts_gzip,
                build,
            )
            .await?;
        let mut response = HttpResponse::Ok();
        response
            .content_type(ContentType::json())
            .insert_header((header::VARY, "Accept-Encoding"));
        Ok(match reply {
            ReplyBody::Plain(bytes) => response.body(in_pieces(bytes)),
            ReplyBody::Gzip(packed) => response
                // Set here, the public listener's `Compress` leaves the body as it is.
                .insert_header((header::CONTENT_ENCODING, "gzip"))
                .body(in_pieces(packed)),
            ReplyBody::Inflate { packed, plain_len } => response.body(inflated(packed, plain_len)),
        })
    }

    /// Runs a handler's work under the request deadline (`server.http.timeout`).
    pub async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let left = self.deadline().saturating_duration_since(Instant::now());
        actix_rt::time::timeout(left, work)
            .await
            .unwrap_or_else(|_| Err(ApiError::DeadlineExceeded(self.timeout())))
    }

    /// One pass-through query with the request's deadline, shortened to `prometheus.timeout`
    /// (Go sent that as the upstream `timeout` and bounded the call by the request's
    /// deadline). A reply with warnings is Go's `warnings: [...]` error.
    pub async fn query(&self, query: Query) -> Result<Arc<QueryOutput>, ApiError> {
        let deadline = self
            .deadline()
            .min(Instant::now() + self.state.config.prometheus.timeout);
        let output = self
            .state
            .query
            .send(RunQuery {
                query,
                deadline: Some(deadline),
                lane: Lane::Interactive,
            })
            .await
            .map_err(|_| ApiError::Unavailable("the metrics store client is not running"))??;
        if !output.warnings.is_empty() {
            return Err(ApiError::UpstreamWarnings(output.warnings.clone()));
        }
        Ok(output)
    }
}

/// The metrics-store lookups of a reply build, which may outlive the request that started
/// it: each lookup is bounded from when it is asked (see [`StoreLookups::gauge`]).
pub struct StoreLookups {
    state: web::Data<AppState>,
}

impl StoreLookups {
    /// One instant query, its vector keyed by `label`; empty on any failure, as the Go
    /// backend fell back to "no overrides".
    pub async fn gauge(&self, expr: &str, label: &str) -> HashMap<String, i32> {
        // A tenth of the request budget short of `server.http.timeout`, so that a stalled
        // store still leaves the request that waits for this build time to be answered
        // from the snapshot (Go's handlers fell back when their context expired).
        let config = &self.state.config;
        let budget = (config.prometheus.lookup_timeout)
            .min(config.prometheus.timeout)
            .min(config.server.http.timeout.mul_f64(0.9));
        let deadline = Instant::now() + budget;
        let answer = self
            .state
            .query
            .send(RunQuery {
                query: Query::Instant {
                    expr: expr.to_string(),
                    time: None,
                },
                deadline: Some(deadline),
                lane: Lane::Interactive,
            })
            .await;
        match answer {
            Ok(Ok(output)) => gauge_by_label(Ok(&output), label),
            Ok(Err(error)) => {
                tracing::debug!(%error, expr, "capacity overrides unavailable");
                HashMap::new()
            }
            Err(_) => HashMap::new(),
        }
    }
}

impl FromRequest for RestContext {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Registered by `http::app` and `http::public::app`, the only ways to build the app.
        let context = req
            .app_data::<web::Data<AppState>>()
            .map(|state| RestContext {
                state: state.clone(),
                started: Instant::now(),
                accepts_gzip: accepts_gzip(req.headers()),
            })
            .ok_or_else(|| ApiError::Unavailable("the application state is not registered").into());
        std::future::ready(context)
    }
}
