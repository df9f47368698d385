//! Workload routes: `POST /v1/containers` and `GET /v1/container`, from the snapshot only.
//! Replies are built by [`crate::reply::containers`].

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::{ProtoBody, ProtoQuery};
use crate::http::reply_cache::Freshness;
use crate::reply::containers::{
    container_detail, ContainerListing, ContainerRequest, ContainersRequest,
};

/// `POST /v1/containers`: `pageSize` and `resourceGroup` are accepted and ignored (the
/// frontend pages locally). One build per snapshot and distinct request.
pub async fn list(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<ContainersRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(list_reply(&ctx, request)).await
}

/// [`list`]'s reply, also built by [`crate::http::warm`] before the first request.
pub async fn list_reply(
    ctx: &RestContext,
    request: ContainersRequest,
) -> Result<HttpResponse, ApiError> {
    {
        let snapshot = ctx.snapshot().await?;
        let (source, filters, zone) = (
            snapshot.clone(),
            request.filters.clone(),
            ctx.zone().clone(),
        );
        ctx.cached_json(
            "/v1/containers",
            &request,
            &snapshot,
            Freshness::Snapshot,
            |_| async {},
            move |()| ContainerListing {
                snapshot: source,
                filters,
                zone,
            },
        )
        .await
    }
}

/// `GET /v1/container?name=&podUid=&deviceId=`: not found is `200` with an empty container.
pub async fn detail(
    ctx: RestContext,
    ProtoQuery(request): ProtoQuery<ContainerRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        Ok(HttpResponse::Ok().json(container_detail(&snapshot, &request, ctx.zone())))
    })
    .await
}
