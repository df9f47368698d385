//! The HTTP layer: every route of the internal listener, and [`app`], the one way to build the
//! application from an [`AppState`] — used by the server, by the public listener (which
//! mounts the same routes under `/api/vgpu`) and by every test.
//!
//! Handlers hold no state: they take the [`AppState`] (through [`context::RestContext`] or
//! directly), ask an actor, call a pure builder of [`crate::reply`], and serialize. Errors go
//! through [`crate::error::ApiError`] and nowhere else.
//!
//! - [`state`]: the application state; [`context`]: the REST handlers' extractor over it;
//!   [`extract`]: request messages; [`encoding`]: gzip negotiation and large bodies;
//!   [`reply_cache`]: kept list replies, built on [`builder`]'s low-priority thread, the
//!   container list in [`list_pieces`] reused across builds; [`warm`]: the first ones built
//!   before they are asked.
//! - One file per group of routes: [`cards`], [`nodes`], [`containers`], [`summary`],
//!   [`workloads`], [`scheduling`], [`monitor`], [`device_config`], [`metrics`],
//!   [`health`], [`openapi`]; [`fallback`] answers what no route takes.
//! - [`logging`]: one log line per request; [`pipelining`]: keeps pipelined requests moving;
//!   [`public`]: the public listener and console.

pub mod cards;
pub mod containers;
pub mod context;
pub mod device_config;
pub mod direct_scrape;
pub mod encoding;
pub mod extract;
pub mod fallback;
pub mod health;
pub mod list_pieces;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod nodes;
pub mod openapi;
pub mod pipelining;
pub mod public;
pub mod reply_cache;
pub mod scheduling;
pub mod state;
pub mod summary;
pub mod warm;
pub mod workloads;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App};
use tracing_actix_web::TracingLogger;

pub use state::AppState;

/// Largest request body any route accepts (1 MiB); larger ones get 413 with the JSON body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The internal listener's application (port 8000): every route of [`configure`], request
/// logging, and the JSON 404 for anything else.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .wrap(api_headers())
        .wrap(TracingLogger::<logging::RequestLog>::new())
        .wrap_fn(pipelining::answer_then_yield)
        .configure(configure)
        .default_service(web::to(fallback::not_found))
}

/// The headers every API answer carries: its JSON must not be sniffed as anything else, and
/// it describes the cluster at one moment (caches in between would serve stale state).
/// Answers that set their own (the console's files) keep theirs.
pub fn api_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::CACHE_CONTROL, "no-store"))
}

/// Mounts every route. The public listener mounts the same table below `/api/vgpu`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(fallback::read_resource("/livez", health::livez))
        .service(web::resource("/readyz").to(health::readyz))
        .service(web::resource("/metrics").to(metrics::metrics));
    // REST routes of the frontend (cards, nodes, containers, summary) are registered here.
    // Every route is described in `openapi.rs` (`ROUTES`); a test keeps the two in step.
    cfg.service(fallback::resource("/v1/gpus").route(web::post().to(cards::list)))
        .service(fallback::resource("/v1/gpu-types").route(web::post().to(cards::types)))
        .service(fallback::read_resource("/v1/gpu", cards::detail))
        .service(fallback::resource("/v1/nodes").route(web::post().to(nodes::list)))
        .service(fallback::read_resource("/v1/node", nodes::detail))
        .service(fallback::resource("/v1/summary").route(web::post().to(summary::devices)))
        .service(fallback::resource("/v1/containers").route(web::post().to(containers::list)))
        .service(fallback::read_resource("/v1/container", containers::detail))
        .service(fallback::resource("/v1/workloads").route(web::post().to(workloads::list)))
        .service(fallback::read_resource(
            "/v1/scheduling/pod",
            scheduling::pod,
        ))
        .service(fallback::resource("/v1/monitor/summary").route(web::post().to(summary::usage)))
        .service(fallback::read_resource(
            "/v1/device-config",
            device_config::get,
        ))
        .service(fallback::read_resource("/openapi.json", openapi::document));
    // PromQL pass-through routes (monitor) are registered here.
    cfg.service(
        fallback::resource("/v1/monitor/query/instant-vector")
            .route(web::post().to(monitor::instant_vector)),
    )
    .service(
        fallback::resource("/v1/monitor/query/range-vector")
            .route(web::post().to(monitor::range_vector)),
    );
}
