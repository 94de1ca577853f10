//! The route table: every resource the producer serves, what each requires
//! of its caller, and which handler answers each method. The one place a
//! route is added (see `http::resource`: no route without an access).
//!
//! `Public` routes answer anyone, `Api` routes need `API_TOKEN` when it is
//! set, `Admin` routes exist only with `ADMIN_TOKEN` and need it. A path no
//! resource has is answered as an `Api` route would be ([`UNKNOWN_PATHS`]):
//! a 401 without the API token, else a JSON 404.

use actix_web::web;

use crate::http::access::Access::{self, Admin, Api, Public};
use crate::http::extract::json_config;
use crate::http::resource::{unknown_paths, Entry, Resource};
use crate::{batches, dashboard, dead_letters, events, health, messages, openapi, webhooks};

/// What a path that no resource has requires before its 404.
pub const UNKNOWN_PATHS: Access = Api;

/// Every resource. `batch_body_limit` is the body limit of
/// `POST /messages/batch` (the others use the app-wide one). Built once per
/// worker, so per-resource data (the overview's cache) is per worker.
fn table(batch_body_limit: usize) -> Vec<Resource> {
    use dashboard::{key, overview, page};
    use dead_letters::{browse, purge, redrive};
    use messages::{cancel, list, single, tutorial};
    vec![
        // The dashboard: the page and its assets hold no data.
        Resource::new("/dashboard", Public).get(page::page),
        Resource::new("/dashboard/", Public)
            .get(page::to_page)
            .undocumented(),
        Resource::new("/dashboard/app.js", Public)
            .get(page::script)
            .undocumented(),
        Resource::new("/dashboard/app.css", Public)
            .get(page::style)
            .undocumented(),
        Resource::new("/dashboard/api/access", Public).get(page::access),
        Resource::new("/dashboard/api/overview", Api)
            .get(overview::overview)
            .app_data(web::Data::new(overview::Cache::default()))
            .app_data(web::Data::new(dashboard::scheduled::Cache::default())),
        Resource::new("/dashboard/api/messages", Api).get(dashboard::messages::latest_messages),
        Resource::new("/dashboard/api/messages/{id}", Api).get(dashboard::messages::message_detail),
        Resource::new("/dashboard/api/idempotency-key", Api).get(key::id_for_key),
        // The dead-letter tools.
        Resource::new("/dead-letters/{id}/redrive", Admin).post(redrive::redrive_one),
        Resource::new("/dead-letters", Admin)
            .get(browse::list)
            .delete(purge::purge),
        Resource::new("/dead-letters/redrive", Admin).post(redrive::redrive),
        // The API's description.
        Resource::new("/openapi.json", Api).get(openapi::openapi_json),
        Resource::new("/docs", Api).get(openapi::docs),
        // Messages.
        Resource::new("/events", Api).get(events::stream),
        Resource::new("/messages/batch", Api)
            .app_data(json_config(batch_body_limit))
            .submit(batches::post_batch),
        Resource::new("/messages", Api)
            .get(list::list_messages)
            .submit(single::post_message),
        Resource::new("/batches/{id}", Api).get(batches::get_batch),
        // The failed-webhook tools.
        Resource::new("/webhooks/failed", Admin).get(webhooks::list_failed),
        Resource::new("/webhooks/failed/resend", Admin).post(webhooks::resend_failed),
        Resource::new("/webhooks/signing-key", Admin).get(webhooks::signing_key),
        Resource::new("/messages/{id}", Api)
            .get(single::get_message)
            .delete(cancel::cancel_message),
        Resource::new("/add_message", Api).submit(tutorial::add_message),
        // For orchestrators and Prometheus.
        Resource::new("/healthz", Public).get(health::healthz),
        Resource::new("/readyz", Public).get(health::readyz),
        Resource::new("/metrics", Public).get(health::metrics),
    ]
}

/// Register every resource on `cfg`, and the answer for unknown paths.
pub fn configure(cfg: &mut web::ServiceConfig, batch_body_limit: usize) {
    for resource in table(batch_body_limit) {
        resource.register(cfg);
    }
    cfg.default_service(unknown_paths(UNKNOWN_PATHS));
}

/// What [`configure`] registers: each resource's path, methods and access
/// (for the tests that walk every route).
pub fn entries() -> Vec<Entry> {
    // The body limit changes nothing listed.
    table(1).iter().map(|r| r.entry().clone()).collect()
}
