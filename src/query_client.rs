//! `QueryClient`: the only part of the process that talks to Prometheus or VictoriaMetrics.
//!
//! INTERFACE STUB — the types and the message below are the contract other modules code
//! against; the implementation (awc, deadlines, auth, TLS, concurrency cap, queue bound,
//! coalescing, size limit, self-metrics) is being written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

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
    pub metric: BTreeMap<String, String>,
    /// Unix seconds (fractional).
    pub timestamp: f64,
    pub value: f64,
}

/// One series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
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
}
