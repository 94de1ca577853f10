//! The OpenAPI 3 document (`GET /openapi.json`), generated from the
//! handlers' `#[utoipa::path]` annotations, and a self-contained page
//! (`GET /docs`) that renders it without fetching anything.

use actix_web::HttpResponse;
use utoipa::OpenApi;

/// The document: every route with every status it answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pipeline producer",
        description = "HTTP → RabbitMQ → PostgreSQL. Every error is JSON {\"error\": \"...\"}; \
            a known path with the wrong method answers 405, an unknown path 404."
    ),
    paths(
        crate::messages::single::post_message,
        crate::messages::list::list_messages,
        crate::messages::single::get_message,
        crate::batches::post_batch,
        crate::messages::tutorial::add_message,
        crate::events::stream,
        crate::dead_letters::browse::list,
        crate::dead_letters::redrive::redrive,
        crate::dead_letters::purge::purge,
        crate::batches::get_batch,
        crate::webhooks::list_failed,
        crate::webhooks::resend_failed,
        crate::health::healthz,
        crate::health::readyz,
        crate::health::metrics,
        crate::dashboard::page::page,
        crate::dashboard::page::access,
        crate::dashboard::overview::overview,
        crate::dashboard::messages::latest_messages,
        crate::dashboard::messages::message_detail,
        crate::dashboard::key::id_for_key,
        crate::dead_letters::redrive::redrive_one,
        openapi_json,
        docs,
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// `GET /docs`: a plain page listing every operation and its answers,
/// rendered in the browser from `/openapi.json` (no external assets).
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "HTML page rendering /openapi.json", content_type = "text/html")))]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DOCS_PAGE)
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>pipeline API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
h2{margin-top:1.5em;font-family:monospace}code{background:#eee;padding:0 .3em}
td{vertical-align:top;padding:.2em .6em}</style></head>
<body><h1>pipeline API</h1><p id="desc"></p><p><a href="dashboard">Dashboard</a>: live overview, message lookup, dead letters.</p><div id="ops">Loading /openapi.json…</div>
<script>
fetch('openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('desc').textContent = doc.info.description || '';
  const out = document.getElementById('ops'); out.textContent = '';
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const h = document.createElement('h2');
      h.textContent = method.toUpperCase() + ' ' + path; out.appendChild(h);
      const params = (op.parameters || []).map(p => p.name + ' (' + p.in + ')').join(', ');
      if (params) { const p = document.createElement('p'); p.textContent = 'Parameters: ' + params; out.appendChild(p); }
      const t = document.createElement('table');
      for (const [status, resp] of Object.entries(op.responses)) {
        const tr = t.insertRow(); tr.insertCell().textContent = status; tr.insertCell().textContent = resp.description;
      }
      out.appendChild(t);
    }
  }
});
</script></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The `callback_url` schemas of `POST /messages` and of the batch
    /// object form.
    fn callback_schemas(doc: &Value) -> Vec<Value> {
        let message = &doc["components"]["schemas"]["NewMessage"]["properties"]["callback_url"];
        let batch =
            &doc["components"]["schemas"]["NewBatch"]["oneOf"][1]["properties"]["callback_url"];
        vec![message.clone(), batch.clone()]
    }

    /// The schema's pattern and the handler agree on each of these URLs:
    /// the handler refuses exactly those the pattern does not match (hosts
    /// here are public IP literals or names it does not resolve, so no rule
    /// beyond JSON Schema applies). An empty host in any form is refused.
    #[test]
    fn callback_url_pattern_refuses_what_the_handler_refuses() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let allowed = shared::webhook::AllowedHosts::parse("");
        let urls = [
            "http://",
            "https://",
            "http://:80/",
            "https://user@/",
            "http://u:p@:8080/hook",
            "http:///path",
            "http://?q",
            "https://#f",
            "https://93.184.216.34/hook",
            "http://93.184.216.34:8080",
            "https://user:pw@93.184.216.34/x?y#z",
            // What WHATWG URL parsing forgives, the pattern allows too.
            "http:///93.184.216.34/",
            "http://\\93.184.216.34/",
            "http://@93.184.216.34/",
            "http://a@@93.184.216.34/",
            "http://u@:80",
            // The handler's prefix rule, stricter than URL parsing.
            "HTTPS://93.184.216.34/",
            " https://93.184.216.34/",
            "http:/93.184.216.34/",
        ];
        for schema in callback_schemas(&doc) {
            let pattern = schema["pattern"].as_str().unwrap();
            let re = regex::Regex::new(pattern).unwrap();
            for url in urls {
                let accepted = crate::callbacks::check(url, &allowed).is_ok();
                assert_eq!(
                    re.is_match(url),
                    accepted,
                    "{url:?}: pattern {pattern:?} and the handler disagree"
                );
            }
        }
    }
}
