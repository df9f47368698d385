//! Summary routes: `POST /v1/summary` (device totals, as Go) and `POST /v1/monitor/summary`
//! (allocation rates; Go answered 501). Both from the snapshot only; replies are built by
//! [`crate::reply::summary`].

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::ProtoBody;
use crate::reply::summary::{device_summary, usage_overview, SummaryRequest, UsageFilter};

/// `POST /v1/summary`.
pub async fn devices(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<SummaryRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        Ok(HttpResponse::Ok().json(device_summary(&snapshot, &request.filters)))
    })
    .await
}

/// `POST /v1/monitor/summary`.
pub async fn usage(
    ctx: RestContext,
    ProtoBody(filter): ProtoBody<UsageFilter>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let snapshot = ctx.snapshot().await?;
        Ok(HttpResponse::Ok().json(usage_overview(&snapshot, &filter)))
    })
    .await
}
