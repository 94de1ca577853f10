//! Webhooks on the producer's side: `callback_url` checked at the door, the
//! notification's state shown beside a message or batch, and the admin
//! tools over failed deliveries (`GET /webhooks/failed`,
//! `POST /webhooks/failed/resend`). Delivering is the consumers' job
//! (`consumer::webhooks`).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::db::webhook_deliveries::Delivery;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::bounded_number;
use crate::state::AppState;

/// Longest wait for DNS when checking a callback host at the door.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `callback_url` of a request body: absent or null is none; anything
/// but an http(s) URL whose host is public (or in `WEBHOOK_ALLOWED_HOSTS`)
/// is a 400. Checked again by the consumer when delivering.
pub async fn callback_url(body: &Value, state: &AppState) -> Result<Option<String>, ApiError> {
    let text = match body.get("callback_url") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::BadRequest("callback_url must be a string".into())),
    };
    // Stricter than URL parsing (which lowercases the scheme and strips
    // leading spaces), so that the document's pattern `^https?://` says
    // exactly which schemes pass.
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Err(ApiError::BadRequest(
            "callback_url must start with http:// or https://".into(),
        ));
    }
    let url = shared::webhook::check_url_resolving(text, &state.webhook_hosts, RESOLVE_TIMEOUT)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Some(url.to_string()))
}

/// The latest notification about `subject`, as shown in
/// `GET /messages/{id}` and `GET /batches/{id}`; `None` without a callback.
pub async fn notification(state: &AppState, subject: Uuid) -> Result<Option<Value>, ApiError> {
    let found = state
        .with_db(move |conn| Ok(shared::db::webhook_deliveries::latest(conn, subject)?))
        .await?;
    Ok(found.map(|d| summary(&d)))
}

/// Add `"notification"` to a status body when there is one.
pub async fn attach_notification(
    state: &AppState,
    subject: Uuid,
    body: &mut Value,
) -> Result<(), ApiError> {
    if let Some(n) = notification(state, subject).await? {
        body["notification"] = n;
    }
    Ok(())
}

fn summary(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "delivered_at": d.delivered_at,
    })
}

fn detail(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "subject_id": d.subject_id,
        "type": d.event_type,
        "url": d.url,
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
    req: HttpRequest,
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::dead_letters::authorize(&req)?;
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
    req: HttpRequest,
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::dead_letters::authorize(&req)?;
    let limit = limit(&params)?;
    let resent = state
        .with_db(move |conn| Ok(shared::db::webhook_deliveries::resend_failed(conn, limit)?))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "resent": resent })))
}
