//! Liveness and readiness probes.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = r#"{"status": "ok"}: the process serves"#)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 only when the broker connection is open and the
/// database answers; otherwise 503 saying which is down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = r#"{"status": "ready", "broker": "up", "database": "up"}"#),
        (status = 503, description = r#"{"error": "not ready", "broker", "database"}"#),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let broker = state.publisher.is_connected();
    let database = shared::db::pool_answers(&state.pool).await;
    match shared::db::readiness(broker, database) {
        (true, body) => HttpResponse::Ok().json(body),
        (false, body) => HttpResponse::ServiceUnavailable().json(body),
    }
}
