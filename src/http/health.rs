//! `/livez` and `/readyz`, probed by the kubelet.
//!
//! Liveness only says the process can still answer; it never depends on Kubernetes or the
//! metrics store, so an outage there does not get us restarted. Readiness reads the
//! [`ReadinessBoard`], which says which watchers have not synced (or have failed for longer
//! than `kubernetes.unready_after`), and turns 503 the moment shutdown begins.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::http::AppState;
use crate::readiness::Readiness;

pub async fn livez() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok")
}

#[derive(Serialize)]
struct NotReady<'a> {
    ready: bool,
    waiting_for: &'a [&'static str],
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.board.check() {
        Readiness::Ready => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ok"),
        Readiness::Waiting(sources) => HttpResponse::ServiceUnavailable().json(NotReady {
            ready: false,
            waiting_for: &sources,
        }),
    }
}
