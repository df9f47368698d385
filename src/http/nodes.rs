//! Node routes: `POST /v1/nodes` (list, two batched capacity queries) and `GET /v1/node`
//! (snapshot only). Replies are built by [`crate::reply::nodes`].

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::reply::context::RestContext;
use crate::reply::nodes::{node_detail, node_list, NodeCapacity, NodeRequest, NodesRequest};
use crate::reply::request::{ProtoBody, ProtoQuery};
use crate::reply::upstream::{NODE_CORE_QUERY, NODE_LABEL, NODE_MEMORY_QUERY};

/// `POST /v1/nodes`: snapshot and both capacity queries are awaited together.
pub async fn list(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<NodesRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let (snapshot, core, memory) = futures::join!(
            ctx.snapshot(),
            ctx.gauge(NODE_CORE_QUERY, NODE_LABEL),
            ctx.gauge(NODE_MEMORY_QUERY, NODE_LABEL),
        );
        let capacity = NodeCapacity { core, memory };
        let snapshot = snapshot?;
        Ok(HttpResponse::Ok().json(node_list(&snapshot, &request.filters, &capacity, &ctx.zone)))
    })
    .await
}

/// `GET /v1/node?uid=`: an unknown UID is Go's `500` with an empty reason and
/// `node not found` (the frontend shows its generic error).
pub async fn detail(
    ctx: RestContext,
    ProtoQuery(request): ProtoQuery<NodeRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        node_detail(&snapshot, &request.uid, &ctx.zone)
            .map(|reply| HttpResponse::Ok().json(reply))
            .ok_or_else(|| ApiError::Plain("node not found".into()))
    })
    .await
}
