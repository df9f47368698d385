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

use actix::Addr;
use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::stream;

use crate::metrics::refresher::{gzip, GetExposition, MetricsRefresher};
use crate::metrics::CycleState;
use crate::reply::context::pieces;
use crate::telemetry::SelfMetrics;

/// About how much text a plain scrape renders per piece it sends.
const PLAIN_PIECE_BYTES: usize = 256 * 1024;

/// The content type of the Prometheus text format, version 0.0.4.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    req: HttpRequest,
    self_metrics: web::Data<SelfMetrics>,
    refresher: Option<web::Data<Addr<MetricsRefresher>>>,
) -> HttpResponse {
    // Self-metrics first: the refresher counts a cycle in the same step as it publishes it,
    // so read in this order a scrape never reports a cycle whose state it does not carry
    // (the other order could show `cycles_total` 1 beside the state before that cycle).
    let own = self_metrics.render();
    let published = match refresher {
        Some(refresher) => refresher.send(GetExposition).await.ok(),
        None => None,
    };
    let mut response = HttpResponse::Ok();
    response.content_type(EXPOSITION_CONTENT_TYPE);
    let published = published.unwrap_or_default();
    if accepts_gzip(&req) {
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

/// Whether `Accept-Encoding` allows gzip (a `gzip` token without `q=0`).
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn gzip_negotiation() {
        let with = |v: &str| {
            accepts_gzip(
                &TestRequest::default()
                    .insert_header((header::ACCEPT_ENCODING, v))
                    .to_http_request(),
            )
        };
        assert!(with("gzip"));
        assert!(with("br, gzip;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }
}
