//! `GET /metrics`: the Prometheus text exposition.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::error::ApiError;
use crate::state::AppState;

/// Every metric of this producer, for Prometheus to scrape.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    super::health::database_up(&state).await;
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, shared::metrics::CONTENT_TYPE))
        .body(text))
}
