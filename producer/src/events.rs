//! `GET /events[?ids=a,b]`: completion events as Server-Sent Events.
//!
//! Each event is `data: {"type": "stored", "ids": […], "kind"}`, `data:
//! {"type": "dead_lettered", "id", "reason", "kind"}` or `data: {"type":
//! "batch_completed", …}`; with `ids`, only events about those ids
//! (narrowed to them) are sent. `kind` is relayed as the consumer sent it
//! (a consumer of before kinds sends none). A comment line every 15 s keeps proxies
//! from closing an idle stream. Best effort: the database is the truth.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use serde::Deserialize;
use shared::events::Event;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::error::ApiError;
use crate::schemas::ErrorBody;
use crate::state::AppState;

/// Query of `GET /events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    ids: Option<String>,
}

/// Parse a comma-separated list of UUIDs (an error names the bad one).
pub fn parse_ids(text: &str) -> Result<Vec<Uuid>, ApiError> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Uuid::parse_str(s.trim())
                .map_err(|_| ApiError::BadRequest(format!("ids: {s:?} is not a UUID")))
        })
        .collect()
}

/// Stream completion events.
#[utoipa::path(get, path = "/events", tag = "events",
    params(("ids" = Option<Vec<uuid::Uuid>>, Query, style = Form, explode = false, description = "Comma-separated message ids to follow; all events when absent")),
    responses(
        (status = 200, description = r#"text/event-stream: data: {"type": "stored", "ids", "kind"} / {"type": "dead_lettered", "id", "reason", "kind"} / {"type": "batch_completed", "id", "status", "total", "stored", "dead_lettered"}; kind: the messages' kind of work (absent from a consumer of before kinds)"#, content_type = "text/event-stream"),
        (status = 400, description = "An id is not a UUID", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 403, description = "No API_TOKEN, and the request was not addressed to localhost, 127.0.0.1 or [::1]", body = ErrorBody),
        (status = 503, description = "MAX_STREAMS streams are open already; the connection is closed", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn stream(
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter = params.ids.as_deref().map(parse_ids).transpose()?;
    // Held by the stream, so given back when it ends or is dropped.
    let slot = state.streams.take(state.retry_after_secs)?;
    let rx = state.publisher.subscribe();
    let body =
        futures_util::stream::unfold((rx, filter, slot), |(mut rx, filter, slot)| async move {
            loop {
                let chunk = match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
                    Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                    Ok(Err(RecvError::Closed)) => return None,
                    Ok(Err(RecvError::Lagged(n))) => {
                        Bytes::from(format!(": missed {n} events\n\n"))
                    }
                    Ok(Ok(event)) => {
                        let event: Option<Event> = match &filter {
                            Some(ids) => event.only(ids),
                            None => Some(event),
                        };
                        let Some(event) = event else { continue };
                        let Ok(json) = serde_json::to_string(&event) else {
                            continue;
                        };
                        Bytes::from(format!("data: {json}\n\n"))
                    }
                };
                return Some((Ok::<_, actix_web::Error>(chunk), (rx, filter, slot)));
            }
        });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(body))
}
