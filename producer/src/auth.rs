//! Optional bearer-token access control (`API_TOKEN`).
//!
//! When `API_TOKEN` is set, every request except the probes and `/metrics`
//! (which orchestrators and Prometheus call without credentials) must carry
//! `Authorization: Bearer <token>`. Tokens are compared in constant time and
//! never logged: [`Secret`] redacts itself in `Debug`.

use std::fmt;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};
use serde_json::json;
use subtle::ConstantTimeEq;

/// Paths reachable without a token.
const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// A credential: compared in constant time, printed as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// Whether `candidate` equals this secret, in time independent of where
    /// they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The configured API token, shared with the middleware as app data.
#[derive(Debug, Clone, Default)]
pub struct ApiToken(pub Option<Secret>);

/// The configured admin token for the dead-letter tools (unset: disabled).
#[derive(Debug, Clone, Default)]
pub struct AdminToken(pub Option<Secret>);

/// Paths guarded by [`AdminToken`] instead of the API token: the
/// dead-letter tools and the failed-webhook tools.
pub const ADMIN_PREFIXES: [&str; 2] = ["/dead-letters", "/webhooks/"];

/// Middleware: refuse requests without the right bearer token (when one is
/// configured) with a JSON 401.
pub async fn require_api_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let expected = req
        .app_data::<web::Data<ApiToken>>()
        .and_then(|t| t.0.clone());
    let allowed = match expected {
        None => true,
        Some(_) if PUBLIC_PATHS.contains(&req.path()) => true,
        // The dashboard's page and assets hold no data; it asks for the token.
        Some(_) if crate::routes::is_public_dashboard_path(req.path()) => true,
        // The admin tools check the admin token themselves.
        Some(_) if ADMIN_PREFIXES.iter().any(|p| req.path().starts_with(p)) => true,
        Some(secret) => bearer_of(req.headers()).is_some_and(|token| secret.matches(token)),
    };
    if allowed {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let response = HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({ "error": "missing or invalid bearer token (Authorization: Bearer <API_TOKEN>)" }));
    Ok(req.into_response(response).map_into_right_body())
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_of(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_and_never_print() {
        let s = Secret::new("hunter2".into());
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter"));
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", ApiToken(Some(s))).contains("hunter2"));
    }
}
