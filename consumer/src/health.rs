//! The consumer's own small HTTP listener on `METRICS_ADDR`: `GET /metrics`
//! for Prometheus, `GET /healthz` and `GET /readyz` for orchestrators.
//!
//! One actix worker is plenty for probes and scrapes. It is started when the
//! consumer runs and stopped after the consumer has drained, so probes keep
//! answering during a graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use shared::db::PgPool;
use shared::readiness::BrokerState;

use crate::metrics::Metrics;

/// What the handlers need.
#[derive(Clone)]
struct ProbeState {
    metrics: Arc<Metrics>,
    pool: PgPool,
}

/// The HTTP server on `listener`. It does nothing until polled (spawn it),
/// and ignores signals: the consumer stops it once it has drained.
pub fn server(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    pool: PgPool,
) -> std::io::Result<Server> {
    let state = ProbeState { metrics, pool };
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(metrics_text))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    // Probes are short; a stop should not wait the default 30 s for them.
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

/// `GET /metrics`: every metric of this consumer.
async fn metrics_text(state: web::Data<ProbeState>) -> HttpResponse {
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, shared::metrics::CONTENT_TYPE))
            .body(text),
        Err(e) => {
            log::error!("{e}");
            HttpResponse::InternalServerError().json(json!({ "error": "internal server error" }))
        }
    }
}

/// `GET /healthz`: the process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 only while a broker session is consuming and the
/// database answers a ping; otherwise 503 saying which is down.
async fn readyz(state: web::Data<ProbeState>) -> HttpResponse {
    let broker = state.metrics.broker.is_connected();
    // Diesel blocks: the ping runs on the blocking pool, never on this thread.
    let database = shared::db::pool_answers(&state.pool).await;
    let broker = if broker {
        BrokerState::Up
    } else {
        BrokerState::Down
    };
    let node = state.metrics.broker.node();
    let (ready, mut body) = shared::readiness::report(broker, node, database, true);
    // Told when above DEAD_LETTER_ALERT_DEPTH, never a failure: a deep
    // dead-letter queue needs a look, not a restart (issue 18).
    if let Some((queued, true)) = state.metrics.dead_letters() {
        body["dead_letters"] = json!({ "queued": queued, "alert": true });
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": "not found" }))
}
