//! The public listener's own handlers: the console's files and page, and `/health_check`.
//! They only read the [`Console`] built at start; the `/api/vgpu/v1` routes are the internal
//! listener's handlers, mounted in [`super::public_app`].

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use super::route::{self, Target};
use super::site::{Asset, StaticSite};
use crate::error::ApiError;
use crate::http::encoding::accepts_gzip;

/// Everything the console handlers read: the files, where they are mounted, and the framing
/// policy. Built once at start, shared by every worker.
#[derive(Debug)]
pub struct Console {
    pub site: StaticSite,
    /// The base path without its trailing slash: `""` for `/`, `/hami` for `/hami/`.
    pub mount: String,
    /// `Content-Security-Policy` of the console page ([`console_policy`]).
    pub policy: String,
}

/// What the console page may load: its own scripts, styles, images and fonts, the API on the
/// same origin; inline styles (the component library sets `style` attributes) and `data:`
/// images and fonts; no plugins, no other base URL, no form targets elsewhere.
pub const CONSOLE_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'";

/// The console page's `Content-Security-Policy`: [`CONSOLE_POLICY`], extended by the
/// configured `frame-ancestors` directive (`web.frame_ancestors`), when there is one.
pub fn console_policy(frame_ancestors: Option<&str>) -> String {
    match frame_ancestors {
        Some(directive) => format!("{CONSOLE_POLICY}; {directive}"),
        None => CONSOLE_POLICY.to_string(),
    }
}

/// Body of a healthy `/health_check`, as upstream's web entry answers it.
pub const HEALTH_BODY: &str = "OK\n";

/// `GET`/`HEAD /health_check`: the process serves HTTP. Deliberately independent of the
/// cluster and the metrics store, like `/livez`, so it can back readiness and liveness probes
/// of the public port without restarts during an outage elsewhere.
pub async fn health_check(req: HttpRequest) -> HttpResponse {
    if !is_read(req.method()) {
        return method_not_allowed(&req);
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body(HEALTH_BODY)
}

/// Every public request no route took: a file of the build, the console page, or 404.
pub async fn console(req: HttpRequest, console: web::Data<Console>) -> HttpResponse {
    let Some(path) = req.uri().path().strip_prefix(console.mount.as_str()) else {
        return not_found(&req);
    };
    let target = route::resolve(&console.site, path);
    if target == Target::NotFound {
        return not_found(&req);
    }
    if !is_read(req.method()) {
        return method_not_allowed(&req);
    }
    let asset = match &target {
        Target::File(key) => console.site.file(key),
        _ => Some(console.site.index()),
    };
    match asset {
        Some(asset) => respond(&req, asset, &console.policy),
        None => not_found(&req),
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// One file: the gzip form when the client takes it, `304` when its validator matches.
fn respond(req: &HttpRequest, asset: &Asset, policy: &str) -> HttpResponse {
    let packed = asset.gzip.as_ref().filter(|_| accepts_gzip(req.headers()));
    let etag = if packed.is_some() {
        &asset.gzip_etag
    } else {
        &asset.etag
    };
    let not_modified = if_none_match(req.headers(), etag);
    let mut reply = HttpResponse::build(if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    reply
        .insert_header((header::CACHE_CONTROL, asset.cache.header_value()))
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if asset.gzip.is_some() {
        reply.insert_header((header::VARY, "Accept-Encoding"));
    }
    if asset.content_type.starts_with("text/html") {
        reply.insert_header((header::CONTENT_SECURITY_POLICY, policy));
    }
    if not_modified {
        return reply.finish();
    }
    reply.insert_header((header::CONTENT_TYPE, asset.content_type));
    match packed {
        Some(body) => reply
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(body.clone()),
        None => reply.body(asset.body.clone()),
    }
}

/// `If-None-Match` names this validator (weak comparison, as RFC 9110 wants for it) or `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// Default service of the public `App`: outside the base path.
pub async fn not_found_route(req: HttpRequest) -> HttpResponse {
    not_found(&req)
}

/// The contract's JSON 404, never cached (a later build may add the file).
pub fn not_found(req: &HttpRequest) -> HttpResponse {
    let mut reply = ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response();
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn method_not_allowed(req: &HttpRequest) -> HttpResponse {
    let mut reply = ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response();
    reply
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let req = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "\"a\", W/\"b\""))
            .to_http_request();
        assert!(if_none_match(req.headers(), "\"a\""));
        assert!(if_none_match(req.headers(), "\"b\""));
        assert!(!if_none_match(req.headers(), "\"c\""));
    }
}
