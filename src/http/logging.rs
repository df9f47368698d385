//! Request logging through tracing-actix-web: one span per request (with its request id) and
//! one line when it ends, with method, path, status and latency.
//!
//! Probe and scrape paths log at debug so a kubelet probing every few seconds does not bury
//! the requests people care about. A client error (4xx) is counted in
//! `hami_webui_client_errors_total{route,reason}` and logged once, at INFO, with its message
//! cut to a prefix, and at most a few per window ([`Throttle`]): a client sending megabytes of
//! bad requests costs a counter, not the log. Paths are cut as well; control characters are
//! escaped by the text format.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

use crate::echo::{echo, Echo};
use crate::error::ApiError;
use crate::telemetry::{Throttle, CLIENT_ERRORS};

/// Plugged into `TracingLogger::<RequestLog>`.
pub struct RequestLog;

/// When the request entered the middleware, kept in the request's extensions.
#[derive(Clone, Copy)]
struct Started(Instant);

/// Client-error lines: ten per ten seconds, the rest counted on the next line.
static CLIENT_ERROR_LOG: Throttle = Throttle::new(Duration::from_secs(10), 10);

impl RootSpanBuilder for RequestLog {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let Ok(response) = outcome else {
            // The service itself failed (no response was built); its error is not client text.
            return;
        };
        let status = response.status().as_u16();
        span.record("http.status_code", i64::from(status));
        let request = response.request();
        let elapsed_ms = request
            .extensions()
            .get::<Started>()
            .map(|s| s.0.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or_default();
        let path = Echo(request.path());
        let method = request.method().as_str();
        if response.status().is_client_error() {
            let error = response.response().error();
            let reason = error
                .and_then(|e| e.as_error::<ApiError>())
                .map_or_else(|| status.to_string(), |e| e.reason().to_string());
            let route = request.match_pattern().unwrap_or_default();
            CLIENT_ERRORS.with_label_values(&[&route, &reason]).inc();
            if let Some(held_back) = CLIENT_ERROR_LOG.admit() {
                let message = error.map(echo).unwrap_or_default();
                tracing::info!(method, %path, status, %reason, %message, held_back, elapsed_ms, "client error");
            }
        } else if response.status().is_server_error() {
            let message = response.response().error().map(echo).unwrap_or_default();
            tracing::warn!(method, %path, status, %message, elapsed_ms, "request failed");
        } else if matches!(
            request.path(),
            "/livez" | "/readyz" | "/metrics" | "/health_check"
        ) {
            tracing::debug!(method, %path, status, elapsed_ms, "request");
        } else {
            tracing::info!(method, %path, status, elapsed_ms, "request");
        }
    }
}
