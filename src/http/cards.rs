//! Card routes: `POST /v1/gpus` (list, two batched capacity queries), `POST /v1/gpu-types`
//! and `GET /v1/gpu` (snapshot only). Replies are built by [`crate::reply::cards`].

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::{ProtoBody, ProtoQuery};
use crate::http::reply_cache::Freshness;
use crate::reply::cards::{
    gpu_detail, gpu_list, gpu_types, DeviceCapacity, GpuRequest, GpusRequest,
};
use crate::reply::upstream::{DEVICE_CORE_QUERY, DEVICE_LABEL, DEVICE_MEMORY_QUERY};

/// `POST /v1/gpus`: both capacity queries are awaited together, and the reply is shared by
/// identical requests for `server.http.reply_cache_ttl` on the same snapshot.
pub async fn list(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<GpusRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(list_reply(&ctx, request)).await
}

/// [`list`]'s reply, also built by [`crate::http::warm`] before the first request.
pub async fn list_reply(ctx: &RestContext, request: GpusRequest) -> Result<HttpResponse, ApiError> {
    {
        let snapshot = ctx.snapshot().await?;
        let (source, filters) = (snapshot.clone(), request.filters.clone());
        ctx.cached_json(
            "/v1/gpus",
            &request,
            &snapshot,
            Freshness::WithUpstream,
            |store| async move {
                let (core, memory) = futures::join!(
                    store.gauge(DEVICE_CORE_QUERY, DEVICE_LABEL),
                    store.gauge(DEVICE_MEMORY_QUERY, DEVICE_LABEL),
                );
                DeviceCapacity { core, memory }
            },
            move |capacity| gpu_list(&source, &filters, &capacity),
        )
        .await
    }
}

/// `POST /v1/gpu-types`.
pub async fn types(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<GpusRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        Ok(HttpResponse::Ok().json(gpu_types(&snapshot, &request.filters)))
    })
    .await
}

/// `GET /v1/gpu?uid=`: an unknown card is `200` with an empty card, as in Go.
pub async fn detail(
    ctx: RestContext,
    ProtoQuery(request): ProtoQuery<GpuRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        Ok(HttpResponse::Ok().json(gpu_detail(&snapshot, &request.uid)))
    })
    .await
}
