//! The HTTP layer: every route of the internal listener, mounted by [`configure`] so that
//! `main` and the tests serve exactly the same application.
//!
//! Handlers hold no state: they take shared handles (`web::Data`) to the readiness board,
//! the self-metrics and, in later parts, the actors' addresses; ask; and shape the reply.
//! Errors go through [`crate::error::ApiError`] and nowhere else.

pub mod cards;
pub mod containers;
pub mod device_config;
pub mod fallback;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod nodes;
pub mod openapi;
pub mod public;
pub mod scheduling;
pub mod summary;
pub mod workloads;

use actix_web::web;

use crate::error::ApiError;

/// Largest request body any route accepts (1 MiB); larger ones get 413 with the JSON body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Mounts every route and the request decoding rules. The `App` must also carry
/// `fallback::not_found` as its default service, which `configure` cannot set.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(query_config())
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .service(fallback::resource("/livez").route(web::get().to(health::livez)))
        .service(web::resource("/readyz").to(health::readyz))
        .service(web::resource("/metrics").to(metrics::metrics));
    // REST routes of the frontend (cards, nodes, containers, summary) are registered here.
    // Every route is described in `openapi.rs` (`ROUTES`); a test keeps the two in step.
    cfg.service(fallback::resource("/v1/gpus").route(web::post().to(cards::list)))
        .service(fallback::resource("/v1/gpu-types").route(web::post().to(cards::types)))
        .service(fallback::resource("/v1/gpu").route(web::get().to(cards::detail)))
        .service(fallback::resource("/v1/nodes").route(web::post().to(nodes::list)))
        .service(fallback::resource("/v1/node").route(web::get().to(nodes::detail)))
        .service(fallback::resource("/v1/summary").route(web::post().to(summary::devices)))
        .service(fallback::resource("/v1/containers").route(web::post().to(containers::list)))
        .service(fallback::resource("/v1/container").route(web::get().to(containers::detail)))
        .service(fallback::resource("/v1/workloads").route(web::post().to(workloads::list)))
        .service(fallback::resource("/v1/scheduling/pod").route(web::get().to(scheduling::pod)))
        .service(fallback::resource("/v1/monitor/summary").route(web::post().to(summary::usage)))
        .service(fallback::resource("/v1/device-config").route(web::get().to(device_config::get)))
        .service(fallback::resource("/openapi.json").route(web::get().to(openapi::document)));
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

/// JSON bodies: size limit and decode failures mapped to the contract's errors. The
/// content type is checked by the handlers' own extractor (kratos answers `CODEC` for a
/// missing or foreign one).
fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError;
            match err {
                JsonPayloadError::Overflow { limit }
                | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                    ApiError::PayloadTooLarge { limit }.into()
                }
                JsonPayloadError::ContentType => {
                    ApiError::Codec("unregister Content-Type: expected application/json".into())
                        .into()
                }
                other => ApiError::Codec(format!("body unmarshal {other}")).into(),
            }
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::Codec(format!("query unmarshal {err}")).into())
}
