//! `GET /dashboard/api/idempotency-key?key=K`: the id an `Idempotency-Key`
//! stands for.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;

/// Query of `GET /dashboard/api/idempotency-key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyParams {
    key: Option<String>,
}

/// `GET /dashboard/api/idempotency-key?key=K`: the message id `POST
/// /messages` gave the request `Idempotency-Key: K` is bound to, or `null`
/// when the key is not bound (never used, or expired: the next use is a
/// new request, with an id of its own). Computed here, not in the page, so
/// there is one derivation (and none in JavaScript).
#[utoipa::path(get, path = "/dashboard/api/idempotency-key", tag = "dashboard",
    params(("key" = String, Query, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "An Idempotency-Key: 1-255 visible ASCII characters, no spaces")),
    responses(
        (status = 200, description = r#"{"key", "id"}: id is null when the key is not bound (never used, or older than IDEMPOTENCY_KEY_TTL)"#),
        (status = 400, description = "key missing, empty, too long or not visible ASCII"),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong"),
        (status = 503, description = "Database unavailable"),
    ))]
pub async fn id_for_key(
    params: web::Query<KeyParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = params
        .key
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("key is missing".into()))?;
    // The rule POST /messages applies, from the one place it lives.
    if !idempotency::is_valid_key(key) {
        return Err(ApiError::BadRequest(format!(
            "key must be 1 to {} visible ASCII characters (no spaces)",
            idempotency::MAX_LEN
        )));
    }
    let id = idempotency::bound_id(&state, key).await?;
    Ok(HttpResponse::Ok().json(json!({ "key": key, "id": id })))
}
