//! `/metrics`: the exposition Prometheus scrapes.
//!
//! The device and container families are what the refresher last published: gzip scrapes get
//! its bytes compressed once per cycle; plain scrapes get the text of the same published
//! state, rendered piece by piece as it is sent (its label sets are pre-rendered, so this is
//! mostly copying, and ~100 MB of text is never held). The self-metrics (a few dozen lines)
//! are rendered per scrape and appended. A scrape never queries the metrics store and never
//! waits for a cycle (the seed's scrape timeouts came from doing otherwise).

use std::convert::Infallible;
use std::sync::Arc;

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::stream;

use crate::http::encoding::{accepts_gzip, pieces};
use crate::http::AppState;
use crate::metrics::exposition::gzip;
use crate::metrics::refresher::GetExposition;
use crate::metrics::CycleState;

/// About how much text a plain scrape renders per piece it sends.
const PLAIN_PIECE_BYTES: usize = 256 * 1024;

/// The content type of the Prometheus text format, version 0.0.4.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    // Self-metrics first: the refresher counts a cycle in the same step as it publishes it,
    // so read in this order a scrape never reports a cycle whose state it does not carry
    // (the other order could show `cycles_total` 1 beside the state before that cycle).
    let own = state.metrics.render();
    // A refresher that is gone (the system is stopping) leaves only the self-metrics.
    let published = state.exposition.send(GetExposition).await.ok();
    let mut response = HttpResponse::Ok();
    response.content_type(EXPOSITION_CONTENT_TYPE);
    let published = published.unwrap_or_default();
    if accepts_gzip(req.headers()) {
        // gzip members back to back are one valid gzip stream (RFC 1952 §2.2).
        let own = gzip(own.as_bytes());
        let size = (published.gzip.len() + own.len()) as u64;
        // In pieces: a whole `Bytes` body would be copied into each connection's buffer.
        let parts = pieces(published.gzip.clone())
            .chain(std::iter::once(own))
            .map(Ok::<_, Infallible>);
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(SizedStream::new(size, stream::iter(parts)))
    } else {
        let size = (published.text_len + own.len()) as u64;
        let state = Arc::clone(&published.state);
        response.body(SizedStream::new(size, plain_text(state, own)))
    }
}

/// The published state's text, rendered as it is sent, then the self-metrics.
fn plain_text(
    state: Arc<CycleState>,
    own: String,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    let pieces = state
        .text_chunks(PLAIN_PIECE_BYTES)
        .map(Bytes::from)
        .chain(std::iter::once(Bytes::from(own)));
    stream::iter(pieces.map(Ok))
}
