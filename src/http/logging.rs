//! Request logging through tracing-actix-web: one span per request (with its request id)
//! and one event when it ends, with method, path, status and latency.
//!
//! Probe and scrape paths log at debug so a kubelet probing every few seconds does not bury
//! the requests people care about.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

/// Plugged into `TracingLogger::<RequestLog>`.
pub struct RequestLog;

/// When the request entered the middleware, kept in the request's extensions.
#[derive(Clone, Copy)]
struct Started(Instant);

impl RootSpanBuilder for RequestLog {
    fn on_request_start(request: &ServiceRequest) -> Span {
        request.extensions_mut().insert(Started(Instant::now()));
        tracing_actix_web::root_span!(request)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
        let Ok(response) = outcome else { return };
        let request = response.request();
        let elapsed_ms = request
            .extensions()
            .get::<Started>()
            .map(|s| s.0.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or_default();
        let path = request.path();
        let status = response.status().as_u16();
        let method = request.method().as_str();
        if matches!(path, "/livez" | "/readyz" | "/metrics" | "/health_check") {
            tracing::debug!(method, path, status, elapsed_ms, "request");
        } else {
            tracing::info!(method, path, status, elapsed_ms, "request");
        }
    }
}
