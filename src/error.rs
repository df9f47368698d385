//! [`ApiError`]: every error an HTTP caller can receive, and the one place it becomes a
//! response.
//!
//! The body is always the kratos shape the HAMi-WebUI frontend understands,
//! `{"code","reason","message","metadata"}`, with the HTTP status equal to `code`. The
//! frontend's axios interceptor shows `reason` and `message` for statuses 521–525 and a
//! generic toast for the rest, so the codes here are the contract's, not our invention.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::echo::Echo;
use crate::query_client::QueryError;
use crate::reply::monitor::ResultTypeError;
use crate::reply::query_guard::QueryRefused;
use crate::reply::request::CodecError;
use crate::reply::scheduling::SchedulingPodError;
use crate::reply::times::GoTimeError;

/// Errors returned by handlers; handlers use `?` and never build error bodies themselves.
/// Each boundary below keeps its own error type; this is where they all become HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route has this path (quoted cut to a prefix).
    #[error("no route for {method} {}", Echo(path))]
    RouteNotFound { method: String, path: String },
    /// The path exists but not for this method.
    #[error("method {} is not allowed for {}", Echo(method), Echo(path))]
    MethodNotAllowed { method: String, path: String },
    /// The request body or query string could not be decoded (kratos reason `CODEC`).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The request body is larger than we accept.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The client accepts no encoding we can send (`identity;q=0` and nothing we support).
    #[error("no acceptable content encoding: identity is refused and no offered one is supported")]
    NotAcceptable,
    /// The request body did not arrive in time; the connection is closed.
    #[error("the request body did not arrive within {0:?} (server.http.body_timeout)")]
    BodyTimeout(std::time::Duration),
    /// A time or step of a range query does not parse (contract reason `TRANSFORM_ERROR`).
    #[error(transparent)]
    Time(#[from] GoTimeError),
    /// The pass-through guard refused the query before it left (`TRANSFORM_ERROR`).
    #[error(transparent)]
    Refused(#[from] QueryRefused),
    /// The store answered with the other result type (`TRANSFORM_ERROR`, as Go's cast).
    #[error(transparent)]
    ResultType(#[from] ResultTypeError),
    /// The metrics store failed (contract reason `VGPU_DOMAIN_ERROR`), or we shed the query.
    #[error("{}", upstream_message(.0))]
    Upstream(#[from] QueryError),
    /// The store answered with warnings, which Go's handlers returned as an error.
    #[error("warnings: [{}]", .0.join(" "))]
    UpstreamWarnings(Vec<String>),
    /// `GET /v1/node` for an unknown UID: Go's plain `500` with an empty reason, which the
    /// frontend expects exactly.
    #[error("node not found")]
    NodeNotFound,
    /// A reply could not be serialized (not expected: every reply is plain data).
    #[error("cannot render reply: {0}")]
    Render(#[source] serde_json::Error),
    /// A shared reply build failed; every request that waited for it gets its message.
    #[error("cannot build reply: {0}")]
    ReplyBuild(std::sync::Arc<str>),
    /// The request did not finish within `server.http.timeout`.
    #[error("request did not finish within {0:?}")]
    DeadlineExceeded(std::time::Duration),
    /// An actor the request needs is gone (the system is stopping).
    #[error("{0}")]
    Unavailable(&'static str),
    /// `GET /v1/scheduling/pod` has no such GPU pod.
    #[error(transparent)]
    SchedulingPod(#[from] SchedulingPodError),
}

/// Go's `error querying Prometheus: …` text — for an upstream error `<errorType>: <error>`,
/// as Prometheus' Go client wrote it; our own load shedding reads as a plain "retry later".
fn upstream_message(error: &QueryError) -> String {
    match error {
        QueryError::Overloaded => error.to_string(),
        QueryError::Upstream {
            error_type,
            message,
            ..
        } if !error_type.is_empty() => {
            format!("error querying Prometheus: {error_type}: {message}")
        }
        other => format!("error querying Prometheus: {other}"),
    }
}

/// Longest error message sent; anything longer is cut and its length stated.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The wire shape of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: u16,
    pub reason: &'a str,
    pub message: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// The HTTP status and the kratos `reason` of this error: the contract's, since the
    /// frontend shows `reason` and `message` for 521–525 and a generic toast otherwise.
    fn status_and_reason(&self) -> (u16, &'static str) {
        match self {
            Self::RouteNotFound { .. } => (404, "ROUTE_NOT_FOUND"),
            Self::MethodNotAllowed { .. } => (405, "METHOD_NOT_ALLOWED"),
            Self::Codec(_) => (400, "CODEC"),
            Self::PayloadTooLarge { .. } => (413, "PAYLOAD_TOO_LARGE"),
            Self::BodyTimeout(_) => (408, "REQUEST_TIMEOUT"),
            Self::NotAcceptable => (406, "NOT_ACCEPTABLE"),
            Self::Time(_) | Self::Refused(_) | Self::ResultType(_) => (522, "TRANSFORM_ERROR"),
            Self::Upstream(QueryError::Overloaded) => (503, "SERVICE_UNAVAILABLE"),
            Self::Upstream(_) | Self::UpstreamWarnings(_) => (523, "VGPU_DOMAIN_ERROR"),
            Self::NodeNotFound | Self::Render(_) | Self::ReplyBuild(_) => (500, ""),
            Self::DeadlineExceeded(_) => (504, "DEADLINE_EXCEEDED"),
            Self::Unavailable(_) => (503, "SERVICE_UNAVAILABLE"),
            Self::SchedulingPod(SchedulingPodError::IdentityRequired) => {
                (400, "POD_IDENTITY_REQUIRED")
            }
            Self::SchedulingPod(SchedulingPodError::NotFound) => (404, "POD_NOT_FOUND"),
            Self::SchedulingPod(SchedulingPodError::Recreated) => (409, "POD_RECREATED"),
        }
    }

    /// The kratos `reason` string of this error.
    pub fn reason(&self) -> &'static str {
        self.status_and_reason().1
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status_and_reason().0)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Every quoted input is already cut; this bounds what no variant foresaw.
        let message = self.to_string();
        let message = if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}… ({} bytes)", &message[..end], message.len())
        } else {
            message
        };
        let mut response = HttpResponse::build(status);
        if matches!(self, Self::BodyTimeout(_) | Self::PayloadTooLarge { .. }) {
            // The rest of the body is not read: the connection cannot carry another request.
            response.force_close();
        }
        response.json(ErrorBody {
            code: status.as_u16(),
            reason: self.reason(),
            message,
            metadata: serde_json::Map::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_rt::test]
    async fn body_carries_code_reason_message_metadata() {
        let response = ApiError::Time(GoTimeError("parsing time \"x\"".into())).error_response();
        assert_eq!(response.status().as_u16(), 522);
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": 522, "reason": "TRANSFORM_ERROR",
                               "message": "parsing time \"x\"", "metadata": {}})
        );
    }

    #[test]
    fn query_errors_map_to_the_contract() {
        let upstream = ApiError::from(QueryError::Upstream {
            status: 400,
            error_type: "bad_data".into(),
            message: "1:4: parse error: unexpected \"%\"".into(),
        });
        assert_eq!(upstream.status_code().as_u16(), 523);
        assert_eq!(
            upstream.to_string(),
            "error querying Prometheus: bad_data: 1:4: parse error: unexpected \"%\""
        );
        let timeout = ApiError::from(QueryError::Timeout);
        assert_eq!(timeout.reason(), "VGPU_DOMAIN_ERROR");
        assert_eq!(
            timeout.to_string(),
            "error querying Prometheus: query timed out"
        );
        assert_eq!(
            ApiError::from(QueryError::Overloaded)
                .status_code()
                .as_u16(),
            503
        );
    }

    #[test]
    fn messages_are_verbatim_even_with_percent_signs() {
        let warnings = ApiError::UpstreamWarnings(vec!["100% %s".into()]);
        assert_eq!(warnings.to_string(), "warnings: [100% %s]");
    }
}
