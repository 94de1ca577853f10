//! `POST /messages`, `GET /messages` and `GET /messages/{id}`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;
use shared::db::messages::Cursor;
use shared::db::messages::Message;
use shared::envelope::content_from_json;
use shared::Envelope;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::bounded_number;
use crate::idempotency::{self, Scope};
use crate::metrics::Endpoint;
use crate::state::AppState;

use super::schemas::{
    ErrorBody, ListedMessage, MessageStatus, NewMessageBody, NotFound, NotFoundStatus, Queued,
    QueuedStatus,
};

/// Default and maximum page sizes of `GET /messages`.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `POST /messages` `{"content": "..."}`: 202 `{"id", "status": "queued"}`
/// with `Location`, answered only after the broker confirmed the message.
#[utoipa::path(post, path = "/messages", tag = "messages",
    request_body(content = NewMessageBody, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1-255 visible ASCII characters, no spaces. The same key and content always yield the same id; the same key with other content is a 422")),
    responses(
        (status = 202, description = "Confirmed by the broker", body = Queued,
            headers(("Location" = String, description = "/messages/{id}"))),
        (status = 400, description = "Malformed JSON, not an object, content missing/null/empty/not a string/containing NUL, bad Idempotency-Key, callback_url not http(s) or to a private/local host", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "Idempotency-Key already used with different content", body = ErrorBody),
        (status = 503, description = "Not confirmed (broker down, nack, unroutable, timeout), or the database is down for an Idempotency-Key", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn post_message(
    req: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "body must be a JSON object with a \"content\" string".into(),
        ));
    }
    let content = content_from_json(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let callback_url = super::webhooks::callback_url(&body, &state).await?;
    let id = match idempotency::key(&req)? {
        Some(key) => {
            // Bound before publishing: see `idempotency` for why. The
            // callback is part of the request: another one is a 422 too.
            let callback = idempotency::callback_part(callback_url.as_deref());
            let fingerprint = idempotency::fingerprint(
                Scope::Message,
                std::iter::once(content.as_str()).chain(callback.as_deref()),
            );
            idempotency::bind(&state, Scope::Message, &key, fingerprint).await?;
            idempotency::id_for_key(&key)
        }
        None => Uuid::new_v4(),
    };
    let mut envelope = Envelope::with_id(id, content);
    envelope.callback_url = callback_url;
    state.publish(&envelope).await?;
    state.metrics.record_accepted(Endpoint::Single, 1);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/messages/{}", envelope.id)))
        .json(Queued {
            id: envelope.id,
            status: QueuedStatus::Queued,
        }))
}

/// Query parameters of `GET /messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    // A string, so that a non-number gets an error naming `limit`.
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /messages?limit=&cursor=`: stored messages in commit order, in the
/// tutorial's shape `{"id", "content", "timestamp"}`. When more rows follow,
/// a `Link: <…>; rel="next"` header gives the next page's URL; the `Cursor`
/// header always carries the position after this page, for tailing.
#[utoipa::path(get, path = "/messages", tag = "messages",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
           ("cursor" = Option<String>, Query, pattern = "^(0|[1-9][0-9]{0,17})_(0|-?[1-9][0-9]{0,15})_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
            description = "Opaque: from the Cursor or Link header of a previous page, unchanged")),
    responses(
        (status = 200, description = "Stored messages in commit order (see the README: a client following cursors sees every row exactly once, even one that commits late)",
            body = [ListedMessage],
            headers(
                ("Link" = String, description = r#"<URL of the next page>; rel="next", when more rows follow now"#),
                ("Cursor" = String, description = "Opaque position after this page's last row (or the given cursor when the page is empty): pass it as ?cursor= to continue, now or later"),
            )),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn list_messages(
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = bounded_number(
        params.limit.as_deref(),
        "limit",
        DEFAULT_LIMIT.into(),
        1..=MAX_LIMIT.into(),
    )? as u32;
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    // One extra row tells whether there is a next page.
    let fetch = i64::from(limit) + 1;
    let mut rows = state
        .with_db(move |conn| Ok(shared::db::messages::list_committed(conn, after, fetch)?))
        .await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);

    let mut response = HttpResponse::Ok();
    let here = match rows.last() {
        Some((cursor, _)) => Some(encode_cursor(cursor)),
        None => params.cursor.clone(),
    };
    if let Some(here) = &here {
        if has_more {
            let next = format!("</messages?limit={limit}&cursor={here}>; rel=\"next\"");
            response.insert_header((header::LINK, next));
        }
        response.insert_header((CURSOR_HEADER, here.as_str()));
    }
    let body: Vec<ListedMessage> = rows
        .into_iter()
        .map(|(_, m)| ListedMessage {
            id: m.id,
            content: m.content,
            timestamp: m.created_at,
        })
        .collect();
    Ok(response.json(body))
}

/// The response header carrying the position after a page of `GET /messages`.
const CURSOR_HEADER: &str = "Cursor";

/// `GET /messages/{id}[?wait=S]`: 200 `stored` with the row, 200
/// `dead_lettered` with the reason, or 404 `not_found` (still queued, or
/// never accepted). With `wait`, answers as soon as the message is stored or
/// dead-lettered, or after S seconds (at most 30).
#[utoipa::path(get, path = "/messages/{id}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Message id"),
           ("wait" = Option<u32>, Query, minimum = 0, maximum = 30, description = "Seconds (0-30) to wait for the message to be stored or dead-lettered; default 0")),
    responses(
        (status = 200, description = "Stored, or dead-lettered with the reason; with a callback also \"notification\": {\"id\", \"type\", \"status\", \"attempts\", \"last_status\", \"last_error\", \"delivered_at\"}", body = MessageStatus),
        (status = 400, description = "id is not a UUID, or bad wait", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 404, description = "Neither stored nor dead-lettered (still queued, or never accepted)", body = NotFound),
        (status = 503, description = "Database unavailable", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn get_message(
    path: web::Path<Uuid>,
    params: web::Query<GetParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let wait = bounded_number(
        params.wait.as_deref(),
        "wait (seconds)",
        0,
        0..=MAX_WAIT_SECS,
    )?;
    // Subscribe before looking, so an event between the look and the wait
    // is not missed.
    let mut events = state.publisher.subscribe();
    let mut found = lookup(&state, id).await?;
    if found.0.is_none() && found.1.is_none() && wait > 0 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    // Waited long enough. Events are best effort (transient,
                    // lost while reconnecting, never sent for a redelivered
                    // duplicate): the database has the last word.
                    found = lookup(&state, id).await?;
                    break;
                }
                Ok(Ok(event)) if !event.mentions(&id) => continue,
                // Mentioned, lagged or closed: look again either way.
                Ok(_) => {}
            }
            found = lookup(&state, id).await?;
            if found.0.is_some() || found.1.is_some() {
                break;
            }
        }
    }
    let (row, dead) = found;
    let status = match (row, dead) {
        (Some(m), _) => MessageStatus::Stored {
            id: m.id,
            content: m.content,
            timestamp: m.created_at,
            stored_at: m.stored_at,
        },
        (None, Some(d)) => MessageStatus::DeadLettered {
            id: d.id,
            reason: d.reason,
            attempts: d.attempts,
            dead_lettered_at: d.dead_lettered_at,
        },
        // Still queued, or never accepted: we cannot tell which, so we
        // do not make up a "pending".
        (None, None) => {
            return Ok(HttpResponse::NotFound().json(NotFound {
                error: format!("message {id} is neither stored nor dead-lettered"),
                status: NotFoundStatus::NotFound,
            }))
        }
    };
    let mut body = serde_json::to_value(&status).map_err(|e| ApiError::Internal(e.into()))?;
    // With a callback: the notification's state (issue 11).
    super::webhooks::attach_notification(&state, id, &mut body).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The longest `?wait=` on `GET /messages/{id}`.
const MAX_WAIT_SECS: u64 = 30;

/// Query of `GET /messages/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    wait: Option<String>,
}

/// The row and the dead-letter record of `id`. Stored wins over
/// dead-lettered: a redriven message may be both.
async fn lookup(
    state: &AppState,
    id: Uuid,
) -> Result<
    (
        Option<Message>,
        Option<shared::db::dead_letters::DeadLetter>,
    ),
    ApiError,
> {
    state
        .with_db(move |conn| {
            let row = shared::db::messages::find(conn, id)?;
            let dead = match row {
                Some(_) => None,
                None => shared::db::dead_letters::find(conn, id)?,
            };
            Ok((row, dead))
        })
        .await
}

/// A cursor is the last row's commit-order key: its transaction id,
/// `created_at` (microseconds since the epoch) and id, as
/// `812345_1763783786123456_6f1c…`. Opaque to clients (only ever handed
/// back), readable in logs.
fn encode_cursor((txid, created_at, id): &Cursor) -> String {
    format!("{txid}_{}_{id}", created_at.timestamp_micros())
}

/// Only the canonical form [`encode_cursor`] writes is accepted: exactly
/// what the OpenAPI `pattern` allows (no sign, no leading zeros, at most
/// 18 and 16 digits, a lowercase hyphenated UUID), so the document and
/// this function agree on every string.
fn decode_cursor(cursor: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::BadRequest("cursor is malformed; use the Link header's URL".into());
    let mut parts = cursor.splitn(3, '_');
    let (Some(txid), Some(micros), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if txid.len() > 18 || micros.trim_start_matches('-').len() > 16 {
        return Err(bad());
    }
    let txid: i64 = txid.parse().ok().filter(|n| *n >= 0).ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let ts = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    let decoded = (txid, ts, id);
    if encode_cursor(&decoded) != cursor {
        return Err(bad());
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor: Cursor = (
            812_345,
            DateTime::from_timestamp_micros(1_763_783_786_123_456).unwrap(),
            Uuid::new_v4(),
        );
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        assert!(decode_cursor("nope").is_err());
        // Only the canonical form: no sign, no leading zero, lowercase UUID.
        let id = Uuid::new_v4();
        assert!(decode_cursor(&format!("+5_1_{id}")).is_err());
        assert!(decode_cursor(&format!("05_1_{id}")).is_err());
        assert!(decode_cursor(&format!("5_-0_{id}")).is_err());
        assert!(decode_cursor(&format!("5_1_{}", id.to_string().to_uppercase())).is_err());
        assert!(decode_cursor(&format!("5_1_{}", id.simple())).is_err());
        assert!(decode_cursor(&format!("5_-1_{id}")).is_ok());
        assert!(decode_cursor("1_12_notauuid").is_err());
        // The format before commit order (no transaction id) is refused.
        assert!(decode_cursor(&format!("12_{}", Uuid::new_v4())).is_err());
    }
}
