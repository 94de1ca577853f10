//! The OpenAPI 3 document (`GET /openapi.json`), generated from the
//! handlers' `#[utoipa::path]` annotations and completed from the route
//! table's declared access ([`document`]), and a self-contained page
//! (`GET /docs`) that renders it without fetching anything else.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use base64::Engine;
use sha2::{Digest, Sha256};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::OpenApi;

use serde_json::Value;
use shared::kind::Kinds;

use crate::http::access::Access;
use crate::http::resource::Entry;
use crate::schemas::KIND_PATTERN;

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
        crate::messages::cancel::cancel_message,
        crate::batches::post_batch,
        crate::messages::tutorial::add_message,
        crate::events::stream,
        crate::dead_letters::browse::list,
        crate::dead_letters::redrive::redrive,
        crate::dead_letters::purge::purge,
        crate::batches::get_batch,
        crate::webhooks::list_failed,
        crate::webhooks::resend_failed,
        crate::webhooks::signing_key,
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

/// The document as served: [`ApiDoc`], with the 403 every API route
/// (per `routes`: `Access::Api`) answers without `API_TOKEN` to a request
/// not addressed to a loopback name. Built once, at startup.
pub struct Document(pub utoipa::openapi::OpenApi);

/// [`Document`] for the routes `routes` (the route table's entries) and
/// the configured `kinds`.
pub fn document(routes: &[Entry], kinds: &Kinds) -> Document {
    let mut doc = with_kinds(ApiDoc::openapi(), kinds);
    let refusal = ResponseBuilder::new()
        .description(
            "No API_TOKEN is set, and the request was not addressed to localhost, \
             127.0.0.1 or [::1] (its Host header)",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build();
    for route in routes.iter().filter(|r| r.access == Access::Api) {
        let Some(item) = doc.paths.paths.get_mut(route.path) else {
            continue;
        };
        for method in &route.methods {
            let operation: Option<&mut Operation> = match method.as_str() {
                "GET" => item.get.as_mut(),
                "POST" => item.post.as_mut(),
                "DELETE" => item.delete.as_mut(),
                _ => None,
            };
            if let Some(operation) = operation {
                operation
                    .responses
                    .responses
                    .insert("403".into(), refusal.clone().into());
            }
        }
    }
    Document(doc)
}

/// `doc` with every `kind` field (the schemas with the kind pattern)
/// limited to the configured kinds (or null), so a schema-valid request is
/// an accepted one: which kinds exist is configuration (`KINDS`), which the
/// annotations cannot know.
fn with_kinds(doc: utoipa::openapi::OpenApi, kinds: &Kinds) -> utoipa::openapi::OpenApi {
    fn limit(value: &mut Value, names: &Value) {
        match value {
            Value::Object(map) => {
                if map.get("pattern").and_then(Value::as_str) == Some(KIND_PATTERN) {
                    map.insert("enum".into(), names.clone());
                }
                map.values_mut().for_each(|v| limit(v, names));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| limit(v, names)),
            _ => {}
        }
    }
    let mut names: Vec<Value> = kinds
        .all()
        .iter()
        .map(|k| Value::String(k.to_string()))
        .collect();
    names.push(Value::Null);
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    limit(&mut value, &Value::Array(names));
    // The document came from these types: it reads back.
    serde_json::from_value(value).unwrap_or(doc)
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document")))]
pub async fn openapi_json(doc: Option<web::Data<Document>>) -> HttpResponse {
    match doc {
        Some(doc) => HttpResponse::Ok().json(&doc.0),
        None => HttpResponse::Ok().json(ApiDoc::openapi()),
    }
}

/// `GET /docs`: a plain page listing every operation and its answers,
/// rendered in the browser from `/openapi.json` (no external assets),
/// under a Content-Security-Policy that allows its own inline style and
/// script by their hashes and nothing else (no other inline code, nothing
/// from elsewhere, no framing).
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "HTML page rendering /openapi.json", content_type = "text/html")))]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP.as_str()))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(DOCS_PAGE.as_str())
}

const DOCS_STYLE: &str =
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}
h2{margin-top:1.5em;font-family:monospace}code{background:#eee;padding:0 .3em}
td{vertical-align:top;padding:.2em .6em}";

const DOCS_SCRIPT: &str = "
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
";

static DOCS_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>pipeline API</title>\n\
         <style>{DOCS_STYLE}</style></head>\n<body><h1>pipeline API</h1><p id=\"desc\"></p>\
         <p><a href=\"dashboard\">Dashboard</a>: live overview, message lookup, dead letters.</p>\
         <div id=\"ops\">Loading /openapi.json…</div>\n<script>{DOCS_SCRIPT}</script></body></html>\n"
    )
});

/// Only this page's own style and script (by their SHA-256), fetching only
/// from this origin.
static DOCS_CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = |text: &str| {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    };
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(DOCS_SCRIPT),
        hash(DOCS_STYLE)
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_fields_list_the_configured_kinds() {
        let kinds = Kinds::parse("email").unwrap();
        let doc = serde_json::to_value(document(&[], &kinds).0).unwrap();
        let schemas = &doc["components"]["schemas"];
        let want = serde_json::json!(["default", "email", null]);
        assert_eq!(schemas["NewMessage"]["properties"]["kind"]["enum"], want);
        assert_eq!(schemas["AddMessage"]["properties"]["kind"]["enum"], want);
        let item = &schemas["NewBatch"]["oneOf"][0]["items"]["properties"]["kind"];
        assert_eq!(item["enum"], want, "{item}");
    }

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
    /// here are public IP literals or names it does not resolve, on ports
    /// 80 and 443, so no rule beyond JSON Schema applies). An empty host in
    /// any form is refused.
    #[test]
    fn callback_url_pattern_refuses_what_the_handler_refuses() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let allowed = shared::webhook::AllowedHosts::default();
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
            "http://93.184.216.34:80",
            "https://93.184.216.34:443/x",
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
