//! Answers for requests no route takes: JSON `404 ROUTE_NOT_FOUND` for unknown paths and
//! `405 METHOD_NOT_ALLOWED` for known paths with the wrong method, as upstream 2.0 answers
//! (the 8f42445 backend sent Go's plain-text 404, which the frontend could not show).

use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, ResponseError};

use crate::error::ApiError;

/// Default service of the `App`.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response()
}

/// Default service of each resource: the path matched, the method did not.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response()
}

/// A resource whose unmatched methods get the JSON 405.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A `GET` resource that answers `HEAD` too (probes and tools use it; the server sends the
/// head without the body), other methods the JSON 405.
pub fn read_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}
