//! `GET /v1/scheduling/pod?namespace=&name=&uid=`: one GPU pod's scheduling state from the
//! snapshot and its recent events from the `SchedulingEvents` actor. The identity is checked
//! before the events are asked for, and the pod part is taken after they arrive, so a pod
//! bound meanwhile shows bound. A failed event read still answers with the pod part.

use actix_web::HttpResponse;

use crate::cluster::scheduling_events::{GetPodEvents, PodEvents};
use crate::error::ApiError;
use crate::http::context::RestContext;
use crate::http::extract::ProtoQuery;
use crate::reply::scheduling::{find_scheduling_pod, scheduling_detail, SchedulingPodRequest};

pub async fn pod(
    ctx: RestContext,
    ProtoQuery(request): ProtoQuery<SchedulingPodRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.within_deadline(async {
        find_scheduling_pod(ctx.snapshot().await?.as_ref(), &request)?;
        let events = ctx
            .state()
            .cluster
            .events
            .send(GetPodEvents {
                namespace: request.namespace.clone(),
                uid: request.uid.clone(),
            })
            .await
            .unwrap_or_else(|_| PodEvents::failed("error"));
        let snapshot = ctx.snapshot().await?;
        let reply = scheduling_detail(&snapshot, &request, &events, ctx.zone())?;
        Ok(HttpResponse::Ok().json(reply))
    })
    .await
}
