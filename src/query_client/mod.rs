//! `QueryClient`: the only part of the process that talks to Prometheus or VictoriaMetrics.
//!
//! The seed's incident was a vmselect pushed into OOM by an unbounded burst of per-device
//! queries, so every upstream query goes through this one actor, which bounds what we can do
//! to the upstream and what the upstream can do to us:
//!
//! - a **deadline** on every request (the caller's, else now + `prometheus.timeout`), sent
//!   upstream as the `timeout` parameter and enforced here by dropping the request;
//! - a **concurrency cap** (`prometheus.max_concurrency`) split between two [`Lane`]s, and a
//!   **bounded wait queue** (`prometheus.max_queue`; beyond it [`QueryError::Overloaded`] at
//!   once) — see [`admission`];
//! - **coalescing**: identical concurrent queries share one upstream request and its
//!   `Arc<QueryOutput>`;
//! - a **size limit** (`prometheus.max_response_bytes`) enforced while the body streams in;
//! - verified **TLS** and file-based **credentials** re-read on rotation ([`transport`]).
//!
//! Senders: the PromQL pass-through routes (`http::monitor`), the REST handlers and the
//! metrics refresher, all with [`RunQuery`]. The actor runs on its own arbiter (thread), so
//! upstream I/O never competes with the cluster caches; JSON decoding of large answers runs
//! on the blocking pool ([`wire`]).

mod admission;
mod labels;
mod transport;
mod wire;

pub use admission::{lane_capacity, LaneCapacity};
pub use labels::SeriesLabels;
pub use transport::QueryClientError;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::{FutureExt, LocalBoxFuture, Shared};

use crate::config::PrometheusConfig;
use crate::telemetry::SelfMetrics;

use admission::Admission;
use transport::Upstream;

/// Which kind of caller a query serves. The refresher's cycle and interactive requests get
/// separate capacity so one can never starve the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// REST handlers and the PromQL pass-through.
    Interactive,
    /// The metrics refresher's cycle.
    Refresh,
}

/// One PromQL evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// `/api/v1/query` at `time` (Unix seconds; `None` = now as the upstream sees it).
    Instant { expr: String, time: Option<f64> },
    /// `/api/v1/query_range` over `[start, end]` (Unix seconds) every `step`.
    Range {
        expr: String,
        start: f64,
        end: f64,
        step: Duration,
    },
}

/// Run a query. `deadline` = the caller's; `None` = now + `prometheus.timeout`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<QueryOutput>, QueryError>")]
pub struct RunQuery {
    pub query: Query,
    pub deadline: Option<Instant>,
    pub lane: Lane,
}

/// A successful answer: the data and the upstream's warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub data: QueryData,
    pub warnings: Vec<String>,
}

/// The four PromQL result types.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryData {
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    /// `(timestamp seconds, value)`.
    Scalar(f64, f64),
    String(f64, String),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: SeriesLabels,
    /// Unix seconds (fractional).
    pub timestamp: f64,
    pub value: f64,
}

/// One series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: SeriesLabels,
    /// `(Unix seconds, value)` in time order.
    pub values: Vec<(f64, f64)>,
}

/// Why a query produced no data. Messages never carry credentials.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The deadline passed; the in-flight request was dropped.
    #[error("query timed out")]
    Timeout,
    /// No connection could be made (refused, DNS, TLS handshake).
    #[error("metrics store unreachable: {0}")]
    Unreachable(String),
    /// The upstream answered with an error.
    #[error("{message}")]
    Upstream {
        status: u16,
        error_type: String,
        message: String,
    },
    /// The response exceeded `prometheus.max_response_bytes`.
    #[error("response larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The response was not the Prometheus API's JSON.
    #[error("invalid response from the metrics store: {0}")]
    Decode(String),
    /// Too many callers are waiting; retry later.
    #[error("too many queries waiting for the metrics store")]
    Overloaded,
    /// The store answered with a redirect, which is never followed: only the configured
    /// address is asked.
    #[error("the metrics store answered {status} (a redirect); redirects are not followed")]
    Redirected { status: u16 },
}

impl QueryError {
    /// The `outcome` label of `hami_webui_upstream_requests_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Upstream { .. } => "upstream_error",
            Self::TooLarge { .. } => "too_large",
            Self::Decode(_) => "decode_error",
            Self::Overloaded => "overloaded",
            Self::Redirected { .. } => "redirected",
        }
    }
}

impl Query {
    /// The `kind` label of the upstream self-metrics.
    fn kind(&self) -> &'static str {
        match self {
            Self::Instant { .. } => "instant",
            Self::Range { .. } => "range",
        }
    }
}

/// What makes two queries identical for coalescing: expression, evaluation time (or "now")
/// and range. Floats are compared by their bits, so `-0.0` and `0.0` stay apart (harmless:
/// they merely do not share).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum QueryKey {
    Instant {
        expr: String,
        time: Option<u64>,
    },
    Range {
        expr: String,
        start: u64,
        end: u64,
        step: Duration,
    },
}

impl QueryKey {
    fn of(query: &Query) -> Self {
        match query {
            Query::Instant { expr, time } => Self::Instant {
                expr: expr.clone(),
                time: time.map(f64::to_bits),
            },
            Query::Range {
                expr,
                start,
                end,
                step,
            } => Self::Range {
                expr: expr.clone(),
                start: start.to_bits(),
                end: end.to_bits(),
                step: *step,
            },
        }
    }
}

type QueryResult = Result<Arc<QueryOutput>, QueryError>;

/// One upstream request in flight, which identical queries join instead of sending their own.
struct InFlight {
    /// Distinguishes this request from a later one with the same key, so that only the
    /// request itself removes its entry.
    id: u64,
    result: Shared<LocalBoxFuture<'static, QueryResult>>,
}

/// The upstream self-metrics, cloned out of [`SelfMetrics`].
#[derive(Clone)]
struct UpstreamMetrics {
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
    inflight: prometheus::IntGauge,
    coalesced: prometheus::IntCounter,
}

/// Counts one request as in flight and records its duration when dropped, so that a
/// request cancelled by its deadline is accounted for like a finished one.
struct RequestTimer {
    inflight: prometheus::IntGauge,
    duration: prometheus::Histogram,
    started: Instant,
}

impl RequestTimer {
    fn begin(metrics: &UpstreamMetrics, kind: &str) -> Self {
        metrics.inflight.inc();
        Self {
            inflight: metrics.inflight.clone(),
            duration: metrics.duration.with_label_values(&[kind]),
            started: Instant::now(),
        }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.inflight.dec();
        self.duration.observe(self.started.elapsed().as_secs_f64());
    }
}

/// The actor. State: the queries in flight (for coalescing) and the admission gates; the
/// HTTP client and credentials live in [`Upstream`], shared with the request futures.
pub struct QueryClient {
    upstream: Rc<Upstream>,
    admission: Admission,
    in_flight: HashMap<QueryKey, InFlight>,
    next_id: u64,
    default_timeout: Duration,
    metrics: UpstreamMetrics,
}

impl Actor for QueryClient {
    type Context = Context<Self>;
}

impl QueryClient {
    /// Validates the `prometheus` section (address, TLS files) and starts the actor on an
    /// arbiter of its own. Must be called inside a running actix system. Fails only for a
    /// configuration that can never work (unreadable CA or client certificate, bad URL);
    /// credentials files are read per request, so a missing secret heals once mounted.
    pub fn start(
        config: &PrometheusConfig,
        metrics: &SelfMetrics,
    ) -> Result<Addr<QueryClient>, QueryClientError> {
        let settings = transport::UpstreamSettings::new(config)?;
        let admission_config = (config.max_concurrency, config.max_queue);
        let default_timeout = config.timeout;
        let metrics = UpstreamMetrics {
            requests: metrics.upstream_requests.clone(),
            duration: metrics.upstream_duration.clone(),
            inflight: metrics.upstream_inflight.clone(),
            coalesced: metrics.upstream_coalesced.clone(),
        };
        let arbiter = Arbiter::new();
        Ok(QueryClient::start_in_arbiter(
            &arbiter.handle(),
            move |_| {
                QueryClient {
                    // The awc client is not `Send`: it is built here, on the actor's thread.
                    upstream: Rc::new(Upstream::new(settings)),
                    admission: Admission::new(admission_config.0, admission_config.1),
                    in_flight: HashMap::new(),
                    next_id: 0,
                    default_timeout,
                    metrics,
                }
            },
        ))
    }
}

impl Handler<RunQuery> for QueryClient {
    type Result = ResponseActFuture<Self, QueryResult>;

    fn handle(&mut self, msg: RunQuery, _: &mut Context<Self>) -> Self::Result {
        let deadline = msg
            .deadline
            .unwrap_or_else(|| Instant::now() + self.default_timeout);
        let key = QueryKey::of(&msg.query);

        // Join an identical request in flight. It runs under its first caller's deadline;
        // a joiner with a shorter one stops waiting at its own.
        if let Some(flight) = self.in_flight.get(&key) {
            self.metrics.coalesced.inc();
            let shared = flight.result.clone();
            return Box::pin(
                async move {
                    tokio::time::timeout_at(deadline.into(), shared)
                        .await
                        .unwrap_or(Err(QueryError::Timeout))
                }
                .into_actor(self),
            );
        }

        let kind = msg.query.kind();
        let Some(ticket) = self.admission.enter(msg.lane) else {
            self.metrics
                .requests
                .with_label_values(&[kind, QueryError::Overloaded.outcome()])
                .inc();
            return Box::pin(fut::ready(Err(QueryError::Overloaded)));
        };

        let id = self.next_id;
        self.next_id += 1;
        let upstream = Rc::clone(&self.upstream);
        let metrics = self.metrics.clone();
        let work: LocalBoxFuture<'static, QueryResult> = async move {
            let result = tokio::time::timeout_at(deadline.into(), async {
                let _permit = ticket.admit().await?;
                // Dropped when the request ends, also when the deadline cancels it.
                let _timer = RequestTimer::begin(&metrics, kind);
                upstream.run(&msg.query, deadline).await
            })
            .await
            .unwrap_or(Err(QueryError::Timeout));
            let outcome = match &result {
                Ok(_) => "success",
                Err(e) => e.outcome(),
            };
            metrics.requests.with_label_values(&[kind, outcome]).inc();
            result.map(Arc::new)
        }
        .boxed_local();
        let shared = work.shared();
        self.in_flight.insert(
            key.clone(),
            InFlight {
                id,
                result: shared.clone(),
            },
        );
        Box::pin(shared.into_actor(self).map(move |result, act, _| {
            if act.in_flight.get(&key).is_some_and(|f| f.id == id) {
                act.in_flight.remove(&key);
            }
            result
        }))
    }
}
