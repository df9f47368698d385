//! `POST /v1/workloads`: upstream 2.0's paged workload list, from the snapshot only (no
//! event is read). The reply is built by [`crate::reply::workloads`].

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::ProtoBody;
use crate::http::reply_cache::Freshness;
use crate::reply::workloads::{workload_list, WorkloadsRequest};

/// One build per snapshot and distinct request (filters and page): browsers paging the same
/// list share it.
pub async fn list(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<WorkloadsRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(list_reply(&ctx, request)).await
}

/// [`list`]'s reply, also built by [`crate::http::warm`] before the first request.
pub async fn list_reply(
    ctx: &RestContext,
    request: WorkloadsRequest,
) -> Result<HttpResponse, ApiError> {
    {
        let snapshot = ctx.snapshot().await?;
        let (source, wanted, zone) = (snapshot.clone(), request.clone(), ctx.zone().clone());
        ctx.cached_json(
            "/v1/workloads",
            &request,
            &snapshot,
            Freshness::Snapshot,
            |_| async {},
            move |()| workload_list(&source, &wanted, &zone),
        )
        .await
    }
}
