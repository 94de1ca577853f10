//! What orchestrators and Prometheus call, without credentials: the
//! liveness and readiness probes and the metrics scrape.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = r#"{"status": "ok"}: the process serves"#)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 while messages can be accepted, that is while the
/// broker connection is open and not blocked by a resource alarm. The
/// database is reported (`"database": "up"|"down"`, and the
/// `pipeline_database_up` metric) but does not count: publishing does not
/// touch it, and an orchestrator must not stop ingestion for a database
/// outage that the consumers wait out.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = r#"{"status": "ready", "broker": "up", "database": "up"|"down"}"#),
        (status = 503, description = r#"{"error": "not ready", "broker": "down"|"blocked", "database"}"#),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let broker = broker_state(&state);
    let database = database_up(&state).await;
    let node = state.metrics.broker.node();
    match shared::readiness::report(broker, node, database, false) {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// Every metric of this producer, for Prometheus to scrape.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    database_up(&state).await;
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, shared::metrics::CONTENT_TYPE))
        .body(text))
}

/// The broker connection as `/readyz` reports it.
fn broker_state(state: &AppState) -> shared::readiness::BrokerState {
    use shared::readiness::BrokerState;
    if !state.publisher.is_connected() {
        BrokerState::Down
    } else if state.publisher.is_blocked() {
        BrokerState::Blocked
    } else {
        BrokerState::Up
    }
}

/// Whether the database answers, kept in `pipeline_database_up` too.
async fn database_up(state: &AppState) -> bool {
    let up = shared::db::pool_answers(&state.pool).await;
    state.metrics.database_up.set(i64::from(up));
    up
}
