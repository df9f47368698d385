//! `/metrics`: the exposition Prometheus scrapes.
//!
//! The device and container families are what the refresher last published, already rendered
//! and already gzip-compressed; the self-metrics (a few dozen lines) are rendered per scrape
//! and appended. A scrape never queries the metrics store and never waits for a cycle (the
//! seed's scrape timeouts came from doing otherwise).

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::metrics_refresher::{gzip, GetExposition, MetricsRefresher};
use crate::telemetry::SelfMetrics;

/// The content type of the Prometheus text format, version 0.0.4.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    req: HttpRequest,
    self_metrics: web::Data<SelfMetrics>,
    refresher: Option<web::Data<Addr<MetricsRefresher>>>,
) -> HttpResponse {
    let published = match refresher {
        Some(refresher) => refresher.send(GetExposition).await.ok(),
        None => None,
    };
    let own = self_metrics.render();
    let mut response = HttpResponse::Ok();
    response.content_type(EXPOSITION_CONTENT_TYPE);
    if accepts_gzip(&req) {
        // Two gzip members back to back are one valid gzip stream (RFC 1952 §2.2).
        let mut body = published.map(|p| p.gzip.to_vec()).unwrap_or_default();
        body.extend_from_slice(&gzip(own.as_bytes()));
        response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(body)
    } else {
        let mut body = published.map(|p| p.text.to_vec()).unwrap_or_default();
        body.extend_from_slice(own.as_bytes());
        response.body(body)
    }
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
