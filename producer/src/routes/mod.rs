//! HTTP routes and the fallbacks that keep every error JSON.

mod add_message;
mod batch;
mod batches;
mod dashboard;
mod dashboard_api;
mod dead_letters;
mod events;
mod health;
mod messages;
mod metrics;
mod openapi;
mod overview;
mod redrive_one;
mod rejections;
mod schemas;
mod webhooks;

use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest};

use crate::error::ApiError;

pub use add_message::add_message;
pub use batch::{post_batch, MAX_BATCH};
pub use dashboard::is_public as is_public_dashboard_path;
pub use health::{healthz, readyz};
pub use messages::{get_message, list_messages, post_message};
pub use metrics::metrics;
pub use rejections::count_rejections;

/// Register every route on `cfg`. `batch_body_limit` is the body limit of
/// `POST /messages/batch` (the others use the app-wide one). The three
/// message-submitting resources count their refusals (see [`count_rejections`]).
pub fn configure(cfg: &mut web::ServiceConfig, batch_body_limit: usize) {
    dashboard::configure(cfg);
    cfg.service(
        web::resource("/dead-letters")
            .route(web::get().to(dead_letters::list))
            .route(web::delete().to(dead_letters::purge))
            .default_service(not_allowed("GET, DELETE")),
    )
    .service(
        web::resource("/dead-letters/redrive")
            .route(web::post().to(dead_letters::redrive))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(openapi::openapi_json))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/docs")
            .route(web::get().to(openapi::docs))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/events")
            .route(web::get().to(events::stream))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/messages/batch")
            .app_data(crate::extract::json_config(batch_body_limit))
            .wrap(from_fn(count_rejections))
            .route(web::post().to(post_batch))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/messages")
            .wrap(from_fn(count_rejections))
            .route(web::post().to(post_message))
            .route(web::get().to(list_messages))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/batches/{id}")
            .route(web::get().to(batches::get_batch))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/webhooks/failed")
            .route(web::get().to(webhooks::list_failed))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/webhooks/failed/resend")
            .route(web::post().to(webhooks::resend_failed))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/messages/{id}")
            .route(web::get().to(get_message))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/add_message")
            .wrap(from_fn(count_rejections))
            .route(web::post().to(add_message))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(healthz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(readyz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics))
            .default_service(not_allowed("GET")),
    );
}

/// The fallback of a resource for the methods it lacks: 405 with `Allow`
/// listing the ones it has (the same as the OpenAPI document lists).
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(
        move || async move { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow)) },
    )
}

/// The app-wide fallback: unknown routes are a JSON 404.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
