//! `GET /dashboard`: the operator's page (overview, messages, dead letters,
//! batches), plain HTML, CSS and JavaScript compiled into the binary with
//! `include_str!`: no build step, no CDN, nothing fetched from elsewhere.
//!
//! The page and its two assets hold no data, so they are served without a
//! token (the page asks for one); everything it shows comes from the API
//! with the same tokens as any client (`API_TOKEN`, `ADMIN_TOKEN`).

use actix_web::http::header;
use actix_web::{web, Handler, HttpRequest, HttpResponse, Responder};
use serde_json::json;

use crate::auth::{AdminToken, ApiToken};

use super::{dashboard_api, not_allowed, overview, redrive_one};

const PAGE: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/app.css");

/// The page and its assets: public, like `/healthz` (see [`is_public`]).
/// The access endpoint is public too: it says only what any client learns
/// from a 401 or a 404, and saves the page from provoking either.
pub const PUBLIC_PATHS: [&str; 5] = [
    "/dashboard",
    "/dashboard/",
    "/dashboard/app.js",
    "/dashboard/app.css",
    "/dashboard/api/access",
];

/// Whether `path` is the page or one of its assets (served without a token).
pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
}

/// Register the page, its assets, its data endpoints and the one-message
/// redrive (kept here so that the shared route table grows by one line).
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Per worker: seconds already counted in the database (see overview.rs).
    cfg.app_data(web::Data::new(overview::Cache::default()));
    cfg.service(get("/dashboard", page))
        .service(get("/dashboard/", to_page))
        .service(get("/dashboard/app.js", script))
        .service(get("/dashboard/app.css", style))
        .service(get("/dashboard/api/access", access))
        .service(get("/dashboard/api/overview", overview::overview))
        .service(get(
            "/dashboard/api/messages",
            dashboard_api::latest_messages,
        ))
        .service(get(
            "/dashboard/api/messages/{id}",
            dashboard_api::message_detail,
        ))
        .service(get(
            "/dashboard/api/idempotency-key",
            dashboard_api::id_for_key,
        ))
        .service(
            web::resource("/dead-letters/{id}/redrive")
                .route(web::post().to(redrive_one::redrive_one))
                .default_service(not_allowed("POST")),
        );
}

/// A GET-only resource (other methods: the usual JSON 405 with `Allow`).
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(not_allowed("GET"))
}

/// Nothing but this origin: no inline script, no external anything. A
/// stray CDN link or inline handler would fail loudly in the browser test.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // Small and versioned with the binary: revalidate rather than cache
        // across a deploy.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body)
}

/// `GET /dashboard`.
#[utoipa::path(get, path = "/dashboard", tag = "dashboard",
    responses((status = 200, description = "The dashboard page (self-contained HTML; asks for a token when API_TOKEN is set)", content_type = "text/html")))]
pub async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard/`: the page's assets are relative to `/dashboard`, so
/// send the browser there rather than serve a page whose links break.
pub async fn to_page() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "../dashboard"))
        .finish()
}

/// `GET /dashboard/app.js`.
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard/app.css`.
pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /dashboard/api/access`: which tokens the page must ask for.
#[utoipa::path(get, path = "/dashboard/api/access", tag = "dashboard",
    responses((status = 200, description = r#"{"api_token": true|false (API_TOKEN is set: data needs it), "admin": true|false (ADMIN_TOKEN is set: the dead-letter tools exist)}; needs no token"#)))]
pub async fn access(req: HttpRequest) -> HttpResponse {
    let api = req
        .app_data::<web::Data<ApiToken>>()
        .is_some_and(|t| t.0.is_some());
    let admin = req
        .app_data::<web::Data<AdminToken>>()
        .is_some_and(|t| t.0.is_some());
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "api_token": api, "admin": admin }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_self_contained() {
        let total = PAGE.len() + SCRIPT.len() + STYLE.len();
        assert!(total < 100_000, "dashboard assets are {total} bytes");
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://"), "no absolute URLs");
            assert!(!text.contains("https://"), "no absolute URLs");
            assert!(!text.contains("//cdn"), "no CDN");
        }
    }
}
