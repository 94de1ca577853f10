//! Request-body and query-string extraction with JSON errors: malformed JSON
//! is a 400, an oversized body 413, a wrong Content-Type or any
//! Content-Encoding 415, a body that does not arrive in time 408, and a bad
//! query parameter 400, each naming the problem.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// JSON body settings: the size limit and our error mapping.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| json_error(err, limit).into())
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::PayloadTooLarge(limit)
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        // Well-formed JSON that is not what the body must be (a typed
        // body's own rule, such as a batch's item count): its message.
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::BadRequest(e.to_string()),
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        JsonPayloadError::Payload(PayloadError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            ApiError::RequestTimeout
        }
        JsonPayloadError::Payload(e) => ApiError::BadRequest(format!("cannot read body: {e}")),
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
    }
}

/// A JSON request body of type `T`, read per the route's `JsonConfig`
/// (its size limit, `application/json` only, our errors). A body with a
/// `Content-Encoding` (other than `identity`) is refused with a 415 before
/// a byte of it is read: the producer is built without decompression, and
/// a compressed body would be a small one that inflates.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if let Some(encoding) = content_encoding(req) {
            let refused = ApiError::UnsupportedEncoding(encoding).into();
            return Box::pin(async move { Err(refused) });
        }
        let json = web::Json::<T>::from_request(req, payload);
        Box::pin(async move { json.await.map(|body| JsonBody(body.into_inner())) })
    }
}

/// The `Content-Encoding` of a request, unless absent or `identity`.
fn content_encoding(req: &HttpRequest) -> Option<String> {
    let values: Vec<String> = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("identity"))
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Query-string settings: a bad parameter is a 400 naming it.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = match err {
            QueryPayloadError::Deserialize(e) => format!("invalid query string: {e}"),
            other => format!("invalid query string: {other}"),
        };
        ApiError::BadRequest(message).into()
    })
}

/// Path settings: a malformed path segment (such as an id that is not a UUID) is a 400.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _req| ApiError::BadRequest(format!("invalid path: {err}")).into())
}

/// A whole-number query parameter within `range`, `default` when absent.
/// Parameters are taken as strings so that a bad value gets an error naming
/// the parameter, not serde's generic "invalid digit".
pub fn bounded_number(
    value: Option<&str>,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ApiError> {
    match value {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name} must be a whole number between {} and {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// `BODY_TIMEOUT_MS`: the longest a request body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Middleware bounding the time to receive a whole request body.
///
/// actix's `client_request_timeout` covers only the head; a body trickled a
/// byte at a time would hold a worker's connection (and a publish slot's
/// worth of memory) for ever. The payload is wrapped so that once the
/// deadline passes it yields a `TimedOut` I/O error, which the JSON
/// extractor turns into a 408 (see `json_error`). A deadline for the whole
/// body, not per read: per-read timeouts are what a trickle defeats.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(BodyTimeout(timeout)) = req
        .app_data::<web::Data<BodyTimeout>>()
        .map(|t| *t.get_ref())
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let payload = req.take_payload();
        let bounded = futures_util::stream::unfold(Some(payload), move |state| async move {
            let mut payload = state?;
            match tokio::time::timeout_at(deadline, payload.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(payload))),
                Ok(None) => None,
                // Yield the error once, then end the stream.
                Err(_) => Some((
                    Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body not received in time",
                    ))),
                    None,
                )),
            }
        });
        let bounded: std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>> = Box::pin(bounded);
        req.set_payload(Payload::from(bounded));
    }
    next.call(req).await
}
