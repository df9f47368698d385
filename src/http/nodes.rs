//! Node routes: `POST /v1/nodes` (list, two batched capacity queries) and `GET /v1/node`
//! (snapshot only). Replies are built by [`crate::reply::nodes`].

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::{ProtoBody, ProtoQuery};
use crate::http::reply_cache::Freshness;
use crate::reply::nodes::{node_detail, node_list, NodeCapacity, NodeRequest, NodesRequest};
use crate::reply::upstream::{NODE_CORE_QUERY, NODE_LABEL, NODE_MEMORY_QUERY};

/// `POST /v1/nodes`: both capacity queries are awaited together, and the reply is shared by
/// identical requests for `server.http.reply_cache_ttl` on the same snapshot.
pub async fn list(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<NodesRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(list_reply(&ctx, request)).await
}

/// [`list`]'s reply, also built by [`crate::http::warm`] before the first request.
pub async fn list_reply(
    ctx: &RestContext,
    request: NodesRequest,
) -> Result<HttpResponse, ApiError> {
    {
        let snapshot = ctx.snapshot().await?;
        let (source, filters, zone) = (
            snapshot.clone(),
            request.filters.clone(),
            ctx.zone().clone(),
        );
        ctx.cached_json(
            "/v1/nodes",
            &request,
            &snapshot,
            Freshness::WithUpstream,
            |store| async move {
                let (core, memory) = futures::join!(
                    store.gauge(NODE_CORE_QUERY, NODE_LABEL),
                    store.gauge(NODE_MEMORY_QUERY, NODE_LABEL),
                );
                NodeCapacity { core, memory }
            },
            move |capacity| node_list(&source, &filters, &capacity, &zone),
        )
        .await
    }
}

/// `GET /v1/node?uid=`: an unknown UID is Go's `500` with an empty reason and
/// `node not found` (the frontend shows its generic error).
pub async fn detail(
    ctx: RestContext,
    ProtoQuery(request): ProtoQuery<NodeRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        node_detail(&snapshot, &request.uid, ctx.zone())
            .map(|reply| HttpResponse::Ok().json(reply))
            .ok_or(ApiError::NodeNotFound)
    })
    .await
}
