//! The admin tools over webhooks: the failed deliveries (`GET
//! /webhooks/failed`, `POST /webhooks/failed/resend`) and a destination's
//! signing key (`GET /webhooks/signing-key`). A request's callback is
//! checked in `callbacks`; delivering is the consumers' job
//! (`consumer::webhooks`).
//!
//! A delivery's URL is shown redacted (scheme, host, port and path): its
//! userinfo and query may hold the receiver's secrets, and an admin
//! listing is no place for them either.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::db::webhook_deliveries::Delivery;
use shared::webhook::Origin;

use crate::error::ApiError;
use crate::http::extract::bounded_number;
use crate::schemas::{AdminRefusal, ErrorBody, SigningKey};
use crate::state::AppState;

fn detail(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "subject_id": d.subject_id,
        "type": d.event_type,
        "url": shared::redact::callback_url(&d.url),
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at,
    })
}

/// Query of the admin tools.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    limit: Option<String>,
}

fn limit(params: &Params) -> Result<i64, ApiError> {
    Ok(bounded_number(params.limit.as_deref(), "limit", 100, 1..=1000)? as i64)
}

/// `GET /webhooks/failed?limit=`: (admin) deliveries given up, oldest first.
#[utoipa::path(get, path = "/webhooks/failed", tag = "webhooks",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "How many, oldest first; default 100")),
    responses(
        (status = 200, description = r#"{"deliveries": [{"id", "subject_id", "type", "url", "status", "attempts", "last_status", "last_error", "created_at"}], "total"}"#),
        (status = 400, description = "Bad limit"),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN"),
        (status = 404, description = "ADMIN_TOKEN is not set: the tools are disabled"),
        (status = 503, description = "Database unavailable; see Retry-After"),
    ))]
pub async fn list_failed(
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = limit(&params)?;
    let (rows, total) = state
        .with_db(move |conn| Ok(shared::db::webhook_deliveries::list_failed(conn, limit)?))
        .await?;
    let items: Vec<Value> = rows.iter().map(detail).collect();
    Ok(HttpResponse::Ok().json(json!({ "deliveries": items, "total": total })))
}

/// `POST /webhooks/failed/resend?limit=`: (admin) put failed deliveries
/// back in the outbox, due now, with a fresh attempt count.
#[utoipa::path(post, path = "/webhooks/failed/resend", tag = "webhooks",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "How many, oldest first; default 100")),
    responses(
        (status = 200, description = r#"{"resent": n}"#),
        (status = 400, description = "Bad limit"),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN"),
        (status = 404, description = "ADMIN_TOKEN is not set: the tools are disabled"),
        (status = 503, description = "Database unavailable; see Retry-After"),
    ))]
pub async fn resend_failed(
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = limit(&params)?;
    let resent = state
        .with_db(move |conn| Ok(shared::db::webhook_deliveries::resend_failed(conn, limit)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "resent": resent })))
}

/// Query of `GET /webhooks/signing-key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyParams {
    origin: Option<String>,
}

/// `GET /webhooks/signing-key?origin=`: (admin) the key the consumers sign
/// a destination's webhooks with, derived from `WEBHOOK_SECRET` and the
/// origin (see `shared::webhook::signing`), for its receiver to verify with.
#[utoipa::path(get, path = "/webhooks/signing-key", tag = "webhooks",
    params(("origin" = String, Query, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?/?$",
        description = "The destination's origin, scheme://host[:port] (e.g. https://hooks.example.com); the port defaults to the scheme's. A host or port the URL standard refuses (a port above 65535, a dotted number that is no IPv4 address) is a 400 though it matches the pattern")),
    responses(
        (status = 200, description = "The destination's key (and its previous one during a rotation)", body = SigningKey),
        (status = 400, description = "origin missing, or not scheme://host:port", body = ErrorBody),
        AdminRefusal,
        (status = 503, description = "WEBHOOK_SECRET is not set on the producer", body = ErrorBody),
    ))]
pub async fn signing_key(
    params: web::Query<KeyParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let text = params.origin.as_deref().ok_or_else(|| {
        ApiError::BadRequest("origin is required: ?origin=scheme://host:port".into())
    })?;
    let origin = Origin::parse(text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let keys = state.webhook_keys.as_ref().ok_or(ApiError::NotConfigured(
        "WEBHOOK_SECRET is not set on this producer: set the consumers' WEBHOOK_SECRET here too to hand out signing keys",
    ))?;
    let derived = keys.for_origin(&origin);
    Ok(HttpResponse::Ok().json(SigningKey {
        origin: origin.to_string(),
        secret: derived.current.secret(),
        previous_secret: derived.previous.as_ref().map(|p| p.secret()),
    }))
}
