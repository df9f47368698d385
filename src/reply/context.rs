//! [`RestContext`]: what every REST handler needs besides its request message — the
//! configured zone and deadline, the cluster snapshot, and the metrics store — gathered by
//! one extractor so the handlers stay a few lines each.
//!
//! This is the one part of [`crate::reply`] that talks to actors: [`RestContext::snapshot`]
//! asks the `PodCache` (never waits on a watcher) and [`RestContext::gauge`] sends one
//! [`RunQuery`] to the `QueryClient` and falls back to "no overrides" on any failure, as the
//! Go backend did. Everything else stays in the pure builders.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::body::SizedStream;
use actix_web::dev::Payload;
use actix_web::http::header::{self, ContentType};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use bytes::Bytes;
use jiff::tz::TimeZone;

use crate::cluster::pod_cache::GetSnapshot;
use crate::cluster::snapshot::ClusterSnapshot;
use crate::config::Config;
use crate::error::ApiError;
use crate::query_client::{Lane, Query, QueryClient, RunQuery};
use crate::reply::cache::{Freshness, ReplyBody};
use crate::reply::upstream::gauge_by_label;
use crate::server::Caches;

/// Deadline of a request when no configuration is registered (`server.http.timeout`'s
/// default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Capacity lookups' budget when no configuration is registered (tests), as configured.
const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-request access to configuration, snapshot and metrics store.
pub struct RestContext {
    /// Zone of rendered times (`server.timezone`).
    pub zone: TimeZone,
    /// `server.http.timeout`.
    pub timeout: Duration,
    /// When the request arrived; its deadline is this plus `timeout`.
    pub started: Instant,
    caches: Option<web::Data<Caches>>,
    query: Option<Recipient<RunQuery>>,
    /// `prometheus.timeout`: no upstream lookup of a handler waits longer than this.
    query_timeout: Duration,
    /// The request's `Accept-Encoding` allows gzip: kept replies are sent compressed.
    accepts_gzip: bool,
}

impl RestContext {
    /// The instant the request must be answered by.
    pub fn deadline(&self) -> Instant {
        self.started + self.timeout
    }

    /// The upstream queries' deadline: a tenth of the budget earlier than the request's, so
    /// a stalled metrics store still leaves time to answer from the snapshot (Go's handlers
    /// fell back when their context expired and answered anyway), and never later than
    /// `prometheus.lookup_timeout` from the start, so a slow or trickling store costs the
    /// lists at most that before they answer from the snapshot.
    pub fn query_deadline(&self) -> Instant {
        (self.started + self.timeout.mul_f64(0.9)).min(self.started + self.query_timeout)
    }

    /// The current cluster snapshot.
    pub async fn snapshot(&self) -> Result<Arc<ClusterSnapshot>, ApiError> {
        let caches = self
            .caches
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable("cluster caches are not running".into()))?;
        caches
            .pods
            .send(GetSnapshot)
            .await
            .map_err(|_| ApiError::Unavailable("cluster caches are not running".into()))
    }

    /// The JSON reply `build` makes for `request` on `snapshot`, through the shared
    /// [`ReplyCache`](crate::reply::cache::ReplyCache) when the server runs one: identical requests on the same snapshot get
    /// the same bytes, built once. The decoded request's `Debug` form is the cache key: it is
    /// derived, covers every field, and is equal exactly when the requests are.
    pub async fn cached_json<Request, Reply, Build, Fut>(
        &self,
        route: &'static str,
        request: &Request,
        snapshot: &ClusterSnapshot,
        freshness: Freshness,
        build: Build,
    ) -> Result<HttpResponse, ApiError>
    where
        Request: std::fmt::Debug,
        Reply: serde::Serialize,
        Build: FnOnce() -> Fut,
        Fut: Future<Output = Result<Reply, ApiError>>,
    {
        let serialize = || async {
            let reply = build().await?;
            serde_json::to_vec(&reply)
                .map(Bytes::from)
                .map_err(|error| ApiError::Plain(format!("cannot render reply: {error}")))
        };
        let reply = match self.caches.as_ref() {
            Some(caches) => {
                caches
                    .replies
                    .get_or_build_encoded(
                        route,
                        format!("{request:?}"),
                        snapshot.generation,
                        freshness,
                        self.accepts_gzip,
                        serialize,
                    )
                    .await?
            }
            None => ReplyBody {
                bytes: serialize().await?,
                gzip: false,
            },
        };
        let mut response = HttpResponse::Ok();
        response
            .content_type(ContentType::json())
            .insert_header((header::VARY, "Accept-Encoding"));
        if reply.gzip {
            // Set here, the public listener's `Compress` leaves the body as it is.
            response.insert_header((header::CONTENT_ENCODING, "gzip"));
        }
        Ok(response.body(in_pieces(reply.bytes)))
    }

    /// One instant query, its vector keyed by `label`; empty on any failure.
    pub async fn gauge(&self, expr: &str, label: &str) -> HashMap<String, i32> {
        let Some(query) = &self.query else {
            return HashMap::new();
        };
        let answer = query
            .send(RunQuery {
                query: Query::Instant {
                    expr: expr.to_string(),
                    time: None,
                },
                deadline: Some(self.query_deadline()),
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

    /// Runs a handler's work under the request deadline (`server.http.timeout`).
    pub async fn within_deadline<T>(
        &self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let left = self.deadline().saturating_duration_since(Instant::now());
        actix_rt::time::timeout(left, work)
            .await
            .unwrap_or_else(|_| Err(ApiError::DeadlineExceeded(format!("{:?}", self.timeout))))
    }
}

/// How much of a kept reply one connection takes at a time. 32 clients of the 15 MB
/// container list: 64 KiB gave p50 200 ms, 256 KiB 126 ms (a bare server writing the same
/// bytes: 92 ms), for at most 8 MiB of copies across them.
const PIECE_BYTES: usize = 256 * 1024;

/// A reply body as slices of the same shared bytes, pulled as the socket drains. Given one
/// `Bytes`, actix-http copies all of it into the connection's write buffer at once: 32 clients
/// of the 15 MB container list held about 490 MB of copies (peak RSS 829 MiB at 10,000 GPUs).
/// A stream is read only while that buffer is nearly empty.
fn in_pieces(bytes: Bytes) -> SizedStream<impl futures::Stream<Item = Result<Bytes, Infallible>>> {
    let size = bytes.len() as u64;
    SizedStream::new(size, futures::stream::iter(pieces(bytes).map(Ok)))
}

/// `bytes` as slices of at most [`PIECE_BYTES`], sharing its buffer.
pub fn pieces(bytes: Bytes) -> impl Iterator<Item = Bytes> {
    let size = bytes.len();
    (0..size)
        .step_by(PIECE_BYTES)
        .map(move |start| bytes.slice(start..(start + PIECE_BYTES).min(size)))
}

impl FromRequest for RestContext {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let config = req.app_data::<web::Data<Config>>();
        // The server registers the client's address; tests may register any recipient.
        let query = req
            .app_data::<web::Data<Addr<QueryClient>>>()
            .map(|addr| addr.get_ref().clone().recipient())
            .or_else(|| {
                req.app_data::<web::Data<Recipient<RunQuery>>>()
                    .map(|r| r.get_ref().clone())
            });
        std::future::ready(Ok(RestContext {
            zone: config.map_or_else(TimeZone::system, |c| c.server.timezone.clone()),
            timeout: config.map_or(DEFAULT_TIMEOUT, |c| c.server.http.timeout),
            started: Instant::now(),
            caches: req.app_data::<web::Data<Caches>>().cloned(),
            query,
            query_timeout: config.map_or(DEFAULT_LOOKUP_TIMEOUT, |c| {
                c.prometheus.lookup_timeout.min(c.prometheus.timeout)
            }),
            accepts_gzip: crate::http::public::serve::accepts_gzip(req.headers()),
        }))
    }
}

#[cfg(test)]
mod tests {
    #[actix_rt::test]
    async fn pieces_are_slices_that_add_up_to_the_body() {
        let size = 3 * super::PIECE_BYTES + 1234;
        let body = bytes::Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
        let pieces: Vec<bytes::Bytes> = super::pieces(body.clone()).collect();
        assert_eq!(pieces.len(), 4);
        assert!(pieces
            .iter()
            .all(|p| p.len() <= super::PIECE_BYTES && !p.is_empty()));
        // Slices of the one buffer, not copies.
        assert_eq!(pieces[1].as_ptr(), body[super::PIECE_BYTES..].as_ptr());
        assert_eq!(super::pieces(bytes::Bytes::new()).count(), 0);
        let sent = actix_web::body::to_bytes(super::in_pieces(body.clone()))
            .await
            .unwrap();
        assert_eq!(sent, body);
    }
}
