//! Callbacks on the producer's side: a request's `callback_url` checked at
//! the door, and the state of its notification shown beside a message or a
//! batch. Delivering is the consumers' job (`consumer::webhooks`); the admin
//! tools over failed deliveries are in `webhooks`.

use std::time::Duration;

use serde_json::{json, Value};
use shared::db::webhook_deliveries::Delivery;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest wait for DNS when checking a callback host at the door.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `callback_url` of a request body: absent or null is none; anything
/// but an http(s) URL on port 80 or 443 whose host is public (unless
/// `WEBHOOK_ALLOWED_HOSTS` opens it) is a 400 naming the category, never
/// an address the host resolved to. Checked again by the consumer when
/// delivering.
pub async fn callback_url(body: &Value, state: &AppState) -> Result<Option<String>, ApiError> {
    let text = match body.get("callback_url") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::BadRequest("callback_url must be a string".into())),
    };
    check_callback(text, state).await.map(Some)
}

/// A callback URL given as text: checked as [`callback_url`] checks one,
/// resolving its host (so, call it after every check that does not wait).
pub async fn check_callback(text: &str, state: &AppState) -> Result<String, ApiError> {
    check(text, &state.webhook_hosts)?;
    let url = shared::webhook::check_url_resolving(text, &state.webhook_hosts, RESOLVE_TIMEOUT)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(url.to_string())
}

/// What can be told of a callback URL without resolving its host: the
/// rules the OpenAPI document's `pattern` states (a unit test there holds
/// them to each other), and the host's address when it is a literal one.
pub fn check(text: &str, allowed: &shared::webhook::AllowedHosts) -> Result<(), ApiError> {
    // Stricter than URL parsing (which lowercases the scheme and strips
    // leading spaces), so that the document's pattern says exactly which
    // schemes pass.
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Err(ApiError::BadRequest(
            "callback_url must start with http:// or https://".into(),
        ));
    }
    shared::webhook::check_url(text, allowed).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(())
}

/// Add `"notification"` (the latest notification about `subject`) to the
/// status body of `GET /messages/{id}` or `GET /batches/{id}`; nothing
/// without a callback.
pub async fn attach_notification(
    state: &AppState,
    subject: Uuid,
    body: &mut Value,
) -> Result<(), ApiError> {
    let found = state
        .with_db(move |conn| Ok(shared::db::webhook_deliveries::latest(conn, subject)?))
        .await?;
    if let Some(d) = found {
        body["notification"] = summary(&d);
    }
    Ok(())
}

fn summary(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "delivered_at": d.delivered_at,
    })
}
