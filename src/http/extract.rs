//! The actix extractors of the request messages: [`ProtoBody`] (POST routes: `Content-Type`
//! check, body, then query string) and [`ProtoQuery`] (GET routes: query string only), built
//! on the pure kratos rules of [`crate::reply::request`]. Decode failures are `400 CODEC`,
//! bodies over [`MAX_BODY_BYTES`] `413`, bodies slower than `server.http.body_timeout` `408`,
//! all in the contract's JSON shape.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{web, FromRequest, HttpRequest};
use futures::StreamExt;
use serde_json::Map;

use crate::echo::echo;
use crate::error::ApiError;
use crate::http::{AppState, MAX_BODY_BYTES};
use crate::reply::request::{
    bind_query, decode_body, into_request, is_json_content_type, CodecError, ProtoRequest,
};

/// A POST request message: body (JSON only) then query string.
#[derive(Debug)]
pub struct ProtoBody<T>(pub T);

/// A GET request message: query string only.
#[derive(Debug)]
pub struct ProtoQuery<T>(pub T);

impl<T: ProtoRequest + 'static> FromRequest for ProtoBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let content_type = req
                .headers()
                .get(actix_web::http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            if !is_json_content_type(&content_type) {
                let content_type = echo(content_type);
                return Err(ApiError::from(CodecError::ContentType(content_type)).into());
            }
            let limit = req
                .app_data::<web::Data<AppState>>()
                .map(|state| state.config.server.http.limits.body_timeout)
                .ok_or(ApiError::Unavailable(
                    "the application state is not registered",
                ))?;
            let read = actix_rt::time::timeout(limit, read_body(&req, &mut payload)).await;
            let body = match read {
                Ok(Ok(body)) => body,
                Ok(Err(error)) => {
                    hold_until_closed(payload);
                    return Err(error.into());
                }
                Err(_) => {
                    hold_until_closed(payload);
                    return Err(ApiError::BodyTimeout(limit).into());
                }
            };
            let mut message = decode_body(T::SCHEMA, &body).map_err(ApiError::from)?;
            bind_query(T::SCHEMA, req.query_string(), &mut message).map_err(ApiError::from)?;
            Ok(ProtoBody(into_request(message).map_err(ApiError::from)?))
        })
    }
}

impl<T: ProtoRequest + 'static> FromRequest for ProtoQuery<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut message = Map::new();
        let decoded = bind_query(T::SCHEMA, req.query_string(), &mut message)
            .and_then(|()| into_request(message))
            .map(ProtoQuery)
            .map_err(|e| ApiError::from(e).into());
        std::future::ready(decoded)
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] (413 with the JSON error
/// body; actix's own limit answers without it).
async fn read_body(req: &HttpRequest, payload: &mut Payload) -> Result<Vec<u8>, ApiError> {
    let too_large = ApiError::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| {
            tracing::debug!(%error, "request body not read");
            CodecError::Body(body_failure(&error).into())
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How long an unread payload is kept after its request was refused.
const HOLD_UNREAD_PAYLOAD: Duration = Duration::from_secs(5);

/// Keeps the payload of a refused request (too slow, too large, unreadable) alive until its
/// answer has gone out. actix-http closes a connection whose body is still being read; but
/// a *dropped* chunked body it drains first, to keep the connection, and a client trickling
/// chunks would hold it open forever. Kept alive, the body counts as unread and the
/// connection closes after the answer.
fn hold_until_closed(payload: Payload) {
    actix_rt::spawn(async move {
        actix_rt::time::sleep(HOLD_UNREAD_PAYLOAD).await;
        drop(payload);
    });
}

/// What a client is told when its body cannot be read: the case, not the library's text.
fn body_failure(error: &PayloadError) -> &'static str {
    match error {
        PayloadError::Incomplete(_) => "the request body ended before its declared length",
        PayloadError::Overflow => "the request body is larger than its declared length",
        PayloadError::EncodingCorrupted => "the request body's content encoding is corrupt",
        _ => "the request body could not be read",
    }
}
