//! `GET /metrics`: the exposition Prometheus scrapes.
//!
//! A scrape only serializes what is already computed; it never queries the metrics store or
//! waits for an actor (the seed's scrape timeouts came from doing otherwise).

use actix_web::{web, HttpResponse};

use crate::telemetry::SelfMetrics;

/// The content type of the Prometheus text format, version 0.0.4.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(self_metrics: web::Data<SelfMetrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(EXPOSITION_CONTENT_TYPE)
        .body(self_metrics.render())
}
