//! The actix extractors of the request messages: [`ProtoBody`] (POST routes: `Content-Type`
//! check, body, then query string) and [`ProtoQuery`] (GET routes: query string only), built
//! on the pure kratos rules of [`crate::reply::request`]. Decode failures are `400 CODEC`,
//! bodies over [`MAX_BODY_BYTES`] `413`, both in the contract's JSON shape.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use serde_json::Map;

use crate::error::ApiError;
use crate::http::MAX_BODY_BYTES;
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
        let payload = payload.take();
        Box::pin(async move {
            let content_type = req
                .headers()
                .get(actix_web::http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            if !is_json_content_type(&content_type) {
                return Err(ApiError::from(CodecError::ContentType(content_type)).into());
            }
            let body = read_body(&req, payload).await?;
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
async fn read_body(req: &HttpRequest, mut payload: Payload) -> Result<Vec<u8>, ApiError> {
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
        let chunk = chunk.map_err(|e| CodecError::Body(e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
