//! The warm-up: once the caches have synced, the list replies the console asks for first
//! (the unfiltered container, workload, card and node lists) are built before `/readyz`
//! turns ready, so that no browser after a start (or a rollout) waits for them.
//!
//! At 10,000 GPUs the first unfiltered container list takes about a second to build; every
//! client that arrived meanwhile waited for it (p99 872 ms in the load driver's first watch
//! phase). Built here, in the background, through the same
//! [`ReplyCache`](crate::http::reply_cache::ReplyCache) the handlers use, and only then is
//! [`SOURCE`] marked synced on the readiness board. The card and node lists take tens of
//! milliseconds but ask the metrics store (two queries each); cold, under a refresh cycle
//! and the store's own work on two cores, the first card list took up to a second, so they
//! are built here too, at the cost of four store queries per start. Later changes need no
//! warm-up: the kept reply is served while its successor is built, and a card or node
//! list's aged-out store values likewise (`server.http.reply_store_staleness`).

use std::time::Duration;

use actix_web::web;

use crate::http::context::RestContext;
use crate::http::{cards, containers, nodes, workloads, AppState};
use crate::readiness::Readiness;

/// The warm-up's name on the readiness board (and in `/readyz`'s `waiting_for`).
pub const SOURCE: &str = "lists";

/// How often readiness is looked at until the caches have synced.
const POLL: Duration = Duration::from_millis(50);

/// Longest the warm-up holds readiness back; past it the lists are left to the first
/// requests.
const LIMIT: Duration = Duration::from_secs(10);

/// Waits until every other source is synced, builds the default (unfiltered) container,
/// workload, card and node lists once, then marks [`SOURCE`] synced. Failures are left to the first
/// request, which builds again.
pub async fn warm_lists(state: web::Data<AppState>) {
    loop {
        match state.board.check() {
            Readiness::Ready => break,
            Readiness::Waiting(names) if names.iter().all(|name| *name == SOURCE) => break,
            Readiness::Waiting(_) if state.board.is_shutting_down() => return,
            Readiness::Waiting(_) => actix_rt::time::sleep(POLL).await,
        }
    }
    let ctx = RestContext::detached(web::Data::clone(&state));
    let built = actix_rt::time::timeout(LIMIT, async {
        futures::join!(
            containers::list_reply(&ctx, Default::default()),
            workloads::list_reply(&ctx, Default::default()),
            cards::list_reply(&ctx, Default::default()),
            nodes::list_reply(&ctx, Default::default()),
        )
    })
    .await;
    match built {
        Ok((containers, workloads, cards, nodes)) => tracing::debug!(
            containers = containers.is_ok(),
            workloads = workloads.is_ok(),
            cards = cards.is_ok(),
            nodes = nodes.is_ok(),
            "list replies warmed"
        ),
        Err(_) => tracing::warn!(
            limit = ?LIMIT,
            "list replies not built in time; the first requests build them"
        ),
    }
    state.board.mark_synced(SOURCE);
}
