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
use crate::metrics::exposition::gzip as gzip_member;
use crate::metrics::refresher::GetExposition;
use crate::metrics::CycleState;

/// About how much text a plain scrape renders per piece it sends.
const PLAIN_PIECE_BYTES: usize = 256 * 1024;

/// The content type of the Prometheus text format, version 0.0.4.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one scrape sends, whichever path writes it: the gzip parts are whole (the published
/// bytes and the self-metrics member), the plain ones rendered piece by piece.
pub struct ScrapeBody {
    pub gzip: bool,
    pub size: u64,
    pub parts: Box<dyn Iterator<Item = Bytes>>,
}

/// The body of a scrape now. Self-metrics first: the refresher counts a cycle in the same
/// step as it publishes it, so read in this order a scrape never reports a cycle whose state
/// it does not carry (the other order could show `cycles_total` 1 beside the state before
/// that cycle). A refresher that is gone (the system is stopping) leaves only the
/// self-metrics.
pub async fn scrape_body(state: &AppState, gzip: bool) -> ScrapeBody {
    let own = state.metrics.render();
    let published = state.exposition.send(GetExposition).await.ok();
    let published = published.unwrap_or_default();
    if gzip {
        // gzip members back to back are one valid gzip stream (RFC 1952 §2.2).
        let own = gzip_member(own.as_bytes());
        ScrapeBody {
            gzip,
            size: (published.gzip.len() + own.len()) as u64,
            parts: Box::new([published.gzip.clone(), own].into_iter()),
        }
    } else {
        ScrapeBody {
            gzip,
            size: (published.text_len + own.len()) as u64,
            parts: Box::new(plain_text(Arc::clone(&published.state), own)),
        }
    }
}

/// `/metrics` for every request the listener's own path ([`super::direct_scrape`]) does
/// not take: other methods, and the public listener's `/api/vgpu/metrics`.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let body = scrape_body(&state, accepts_gzip(req.headers())).await;
    let mut response = HttpResponse::Ok();
    response.content_type(EXPOSITION_CONTENT_TYPE);
    if body.gzip {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
    }
    // In pieces: a whole `Bytes` body would be copied into each connection's buffer.
    let parts = body.parts.flat_map(pieces).map(Ok::<_, Infallible>);
    response.body(SizedStream::new(body.size, stream::iter(parts)))
}

/// The published state's text, rendered as it is sent, then the self-metrics.
fn plain_text(state: Arc<CycleState>, own: String) -> impl Iterator<Item = Bytes> {
    state
        .text_chunks(PLAIN_PIECE_BYTES)
        .map(Bytes::from)
        .chain(std::iter::once(Bytes::from(own)))
}
