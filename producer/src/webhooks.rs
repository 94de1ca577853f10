//! The admin tools over failed webhook deliveries: `GET /webhooks/failed`
//! and `POST /webhooks/failed/resend`. A request's callback is checked in
//! `callbacks`; delivering is the consumers' job (`consumer::webhooks`).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::db::webhook_deliveries::Delivery;

use crate::error::ApiError;
use crate::http::extract::bounded_number;
use crate::state::AppState;

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
