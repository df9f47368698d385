//! The warm-up: once the caches are ready, the list replies the console asks for first are
//! built, so that the first browser after a start (or a rollout) does not wait for them.
//!
//! At 10,000 GPUs the first unfiltered container list took 1.1 s to build; every client
//! that arrived meanwhile waited for it. Built here, in the background, through the same
//! [`ReplyCache`](crate::http::reply_cache::ReplyCache) the handlers use, those clients find
//! it kept (or in flight). Later changes of the cluster need no warm-up: the kept reply is
//! served while its successor is built.

use std::time::Duration;

use actix_web::web;

use crate::http::context::RestContext;
use crate::http::{cards, containers, nodes, workloads, AppState};
use crate::readiness::Readiness;

/// How often readiness is looked at until the caches are ready.
const POLL: Duration = Duration::from_millis(50);

/// Waits until the caches are ready, then builds the default (unfiltered) card, node,
/// container and workload lists once. Failures are left to the first request, which builds
/// again.
pub async fn warm_lists(state: web::Data<AppState>) {
    while !matches!(state.board.check(), Readiness::Ready) {
        if state.board.is_shutting_down() {
            return;
        }
        actix_rt::time::sleep(POLL).await;
    }
    let ctx = RestContext::detached(state);
    let (gpus, node_list, container_list, workload_list) = futures::join!(
        cards::list_reply(&ctx, Default::default()),
        nodes::list_reply(&ctx, Default::default()),
        containers::list_reply(&ctx, Default::default()),
        workloads::list_reply(&ctx, Default::default()),
    );
    let failed = [
        gpus.is_err(),
        node_list.is_err(),
        container_list.is_err(),
        workload_list.is_err(),
    ];
    tracing::debug!(?failed, "list replies warmed");
}
