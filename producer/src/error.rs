//! The producer's HTTP errors: one enum, one JSON shape `{"error": "..."}`.
//!
//! Broker and database details are logged here and never sent to clients.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use shared::publish::PublishError;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the text says what to fix.
    #[error("{0}")]
    BadRequest(String),
    /// The body exceeds `MAX_BODY_BYTES`.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not `application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// No `API_TOKEN`, and the request was addressed to a host that is not
    /// a loopback name (see `http::access`).
    #[error(
        "this producer has no API_TOKEN, so its API answers only requests addressed to \
         localhost, 127.0.0.1 or [::1]; set API_TOKEN to serve other hosts \
         (or ALLOW_ANONYMOUS=true to serve anyone without a token)"
    )]
    LocalOnly,
    /// The body is compressed (`Content-Encoding`), which the producer
    /// does not accept: a small body could inflate to any size.
    #[error("Content-Encoding {0:?} is not accepted: send the body uncompressed")]
    UnsupportedEncoding(String),
    /// Every slot for a long-lived request of this kind is taken (see
    /// `slots`): retry later.
    #[error("too many {what} at once ({setting}={max}); retry later")]
    Busy {
        /// What is full: `open event streams`, `waiting lookups`.
        what: &'static str,
        /// The setting that bounds it.
        setting: &'static str,
        /// Its value.
        max: usize,
        /// Seconds for `Retry-After`.
        retry_after: u32,
    },
    /// A feature this producer is not configured for (the text names the
    /// setting).
    #[error("{0}")]
    NotConfigured(&'static str),
    /// Unknown route or id.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method; the methods it has (the
    /// `Allow` header, which RFC 9110 requires with a 405).
    #[error("method not allowed; this resource allows {0}")]
    MethodNotAllowed(String),
    /// Well-formed, but cannot be processed (an `Idempotency-Key` reused
    /// with a different request).
    #[error("{0}")]
    Unprocessable(String),
    /// The resource is not in a state that allows this (a message already
    /// stored cannot be cancelled).
    #[error("{0}")]
    Conflict(String),
    /// The body did not arrive within `BODY_TIMEOUT_MS`.
    #[error("request body not received in time (BODY_TIMEOUT_MS); send it faster or smaller")]
    RequestTimeout,
    /// The broker did not confirm the message; retry later.
    #[error("message broker unavailable, retry later")]
    BrokerUnavailable {
        /// The underlying failure, logged only.
        source: PublishError,
        /// Seconds for `Retry-After`.
        retry_after: u32,
    },
    /// The database could not answer; retry later.
    #[error("database unavailable, retry later")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure.
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The answer to a path no route serves (or a route that is disabled).
    pub fn no_route(req: &HttpRequest) -> Self {
        Self::NotFound(format!("no route for {} {}", req.method(), req.path()))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::LocalOnly => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::BrokerUnavailable { .. }
            | ApiError::DatabaseUnavailable(_)
            | ApiError::Busy { .. }
            | ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::BrokerUnavailable { source, .. } => {
                log::warn!("publish failed: {source}")
            }
            ApiError::DatabaseUnavailable(e) => log::warn!("database unavailable: {e:#}"),
            ApiError::Internal(e) => log::error!("internal error: {e:#}"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::BrokerUnavailable { retry_after, .. }
        | ApiError::Busy { retry_after, .. } = self
        {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
        }
        if let ApiError::Busy { .. } | ApiError::UnsupportedEncoding(_) = self {
            // Busy: the connection is what is scarce, give it back now.
            // Encoded: the body was not read, and is not wanted.
            response.force_close();
        }
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            if let Ok(allow) = HeaderValue::from_str(allow) {
                response.insert_header((header::ALLOW, allow));
            }
        }
        if let ApiError::RequestTimeout = self {
            // The rest of the body may still be on its way: do not try to
            // read another request from this connection.
            response.force_close();
        }
        if let ApiError::DatabaseUnavailable(_) = self {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(1u32)));
        }
        response.json(json!({ "error": self.to_string() }))
    }
}
