//! `GET /dashboard`: the operator's page (overview, messages, dead letters,
//! batches), plain HTML, CSS and JavaScript compiled into the binary with
//! `include_str!`: no build step, no CDN, nothing fetched from elsewhere.
//!
//! The page and its two assets hold no data, so they are public routes (the
//! page asks for a token); everything it shows comes from the API with the
//! same tokens as any client (`API_TOKEN`, `ADMIN_TOKEN`). So is the access
//! endpoint: it says only what any client learns from a 401 or a 404, and
//! saves the page from provoking either.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::http::access::{AdminToken, ApiAccess};

const PAGE: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/app.js");
const STYLE: &str = include_str!("../../dashboard/app.css");

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
        .app_data::<web::Data<ApiAccess>>()
        .is_some_and(|a| a.needs_token());
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
