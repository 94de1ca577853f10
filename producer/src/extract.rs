//! Request-body and query-string extraction with JSON errors: malformed JSON
//! is a 400, an oversized body 413, a wrong Content-Type 415, and a bad
//! query parameter 400, each naming the problem.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::web;

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
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        JsonPayloadError::Payload(e) => ApiError::BadRequest(format!("cannot read body: {e}")),
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
    }
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
