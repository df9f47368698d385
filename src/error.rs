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

/// Errors returned by handlers; handlers use `?` and never build error bodies themselves.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    /// The path exists but not for this method.
    #[error("method {method} is not allowed for {path}")]
    MethodNotAllowed { method: String, path: String },
    /// The request body or query string could not be decoded (kratos reason `CODEC`).
    #[error("{0}")]
    Codec(String),
    /// The request body is larger than we accept.
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A value of the request could not be converted (contract reason `TRANSFORM_ERROR`).
    #[error("{0}")]
    Transform(String),
    /// The metrics store failed or warned (contract reason `VGPU_DOMAIN_ERROR`).
    #[error("{0}")]
    Domain(String),
    /// A plain error the Go backend returned with an empty reason and status 500, e.g.
    /// `node not found`; the frontend expects exactly that.
    #[error("{0}")]
    Plain(String),
    /// The request did not finish within `server.http.timeout`.
    #[error("request did not finish within {0}")]
    DeadlineExceeded(String),
    /// The server is overloaded; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// `GET /v1/scheduling/pod` has no such GPU pod (status and reason from the error).
    #[error(transparent)]
    SchedulingPod(#[from] crate::reply::scheduling::SchedulingPodError),
}

/// The wire shape of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub code: u16,
    pub reason: &'a str,
    pub message: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// The kratos `reason` string of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RouteNotFound { .. } => "ROUTE_NOT_FOUND",
            Self::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            Self::Codec(_) => "CODEC",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::Transform(_) => "TRANSFORM_ERROR",
            Self::Domain(_) => "VGPU_DOMAIN_ERROR",
            Self::Plain(_) => "",
            Self::DeadlineExceeded(_) => "DEADLINE_EXCEEDED",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::SchedulingPod(error) => error.reason(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        let code = match self {
            Self::RouteNotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Codec(_) => 400,
            Self::PayloadTooLarge { .. } => 413,
            Self::Transform(_) => 522,
            Self::Domain(_) => 523,
            Self::Plain(_) => 500,
            Self::DeadlineExceeded(_) => 504,
            Self::Unavailable(_) => 503,
            Self::SchedulingPod(error) => error.status(),
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        HttpResponse::build(status).json(ErrorBody {
            code: status.as_u16(),
            reason: self.reason(),
            message: self.to_string(),
            metadata: serde_json::Map::new(),
        })
    }
}

/// Query failures as the pass-through routes answer them (contract §6.9): every upstream
/// failure is `523 VGPU_DOMAIN_ERROR` with Go's `error querying Prometheus: …` text — for
/// an upstream error `<errorType>: <error>`, as Prometheus' Go client wrote it. Only our
/// own load shedding (`Overloaded`, which Go never did) is `503`, a plain "retry later".
impl From<crate::query_client::QueryError> for ApiError {
    fn from(error: crate::query_client::QueryError) -> Self {
        use crate::query_client::QueryError;
        match error {
            QueryError::Overloaded => Self::Unavailable(error.to_string()),
            QueryError::Upstream {
                error_type,
                message,
                ..
            } if !error_type.is_empty() => Self::Domain(format!(
                "error querying Prometheus: {error_type}: {message}"
            )),
            other => Self::Domain(format!("error querying Prometheus: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_rt::test]
    async fn body_carries_code_reason_message_metadata() {
        let response = ApiError::Transform("parsing time \"x\"".into()).error_response();
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
        use crate::query_client::QueryError;
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
        assert_eq!(ApiError::Domain("100% %s".into()).to_string(), "100% %s");
    }
}
