//! The PromQL pass-through routes the frontend's charts are drawn from:
//! `POST /v1/monitor/query/instant-vector` and `POST /v1/monitor/query/range-vector`
//! (API contract §6.9–6.10).
//!
//! Each decodes its request (kratos rules), parses the range in the configured zone
//! ([`crate::reply::times`]), passes the guard ([`crate::reply::query_guard`]), asks the
//! `QueryClient` once and shapes the reply ([`crate::reply::monitor`]).

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::ProtoBody;
use crate::query_client::Query;
use crate::reply::monitor::{
    instant_reply, range_reply, unix_seconds, Grid, InstantRequest, RangeRequest,
};
use crate::reply::query_guard::{check_query, check_range_points};
use crate::reply::times::{parse_datetime, parse_step};

/// `POST /v1/monitor/query/instant-vector`: the query at the upstream's "now".
pub async fn instant_vector(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<InstantRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        check_query(&request.query, &ctx.state().config.monitor)?;
        let query = Query::Instant {
            expr: request.query,
            time: None,
        };
        let output = ctx.query(query).await?;
        Ok(HttpResponse::Ok().json(instant_reply(&output)?))
    })
    .await
}

/// `POST /v1/monitor/query/range-vector`.
pub async fn range_vector(
    ctx: RestContext,
    ProtoBody(request): ProtoBody<RangeRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        let start = parse_datetime(&request.range.start, ctx.zone())?;
        let end = parse_datetime(&request.range.end, ctx.zone())?;
        let step = parse_step(&request.range.step)?;
        check_query(&request.query, &ctx.state().config.monitor)?;
        check_range_points(start, end, step)?;
        let query = Query::Range {
            expr: request.query,
            start: unix_seconds(start),
            end: unix_seconds(end),
            step,
        };
        let output = ctx.query(query).await?;
        let grid = Grid {
            start_ms: start.as_millisecond(),
            end_ms: end.as_millisecond(),
            step_ms: i64::try_from(step.as_millis()).unwrap_or(i64::MAX),
        };
        Ok(HttpResponse::Ok().json(range_reply(&output, grid)?))
    })
    .await
}
