//! Answers for requests no route takes: JSON `404 ROUTE_NOT_FOUND` for unknown paths and
//! `405 METHOD_NOT_ALLOWED` for known paths with the wrong method, as upstream 2.0 answers
//! (the 8f42445 backend sent Go's plain-text 404, which the frontend could not show).

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

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
