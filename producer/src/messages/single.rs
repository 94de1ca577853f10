//! One message: `POST /messages` takes it in, `GET /messages/{id}[?wait=S]`
//! says what became of it.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use shared::db::{messages, scheduled_messages};
use shared::envelope::content_from_json;
use shared::events::MessageStatus;
use shared::schedule::ScheduleStatus;
use shared::Envelope;
use uuid::Uuid;

use crate::callbacks;
use crate::error::ApiError;
use crate::http::extract::JsonBody;
use crate::idempotency;
use crate::metrics::Endpoint;
use crate::schedule::hold;
use crate::schemas::{
    ErrorBody, MessageState, NewMessageBody, NotFound, NotFoundStatus, Queued, QueuedStatus,
};
use crate::state::AppState;
use crate::wait::{self, WaitParams};

/// `POST /messages` `{"content": "..."}`: 202 `{"id", "status": "queued"}`
/// with `Location`, answered only after the broker confirmed the message.
#[utoipa::path(post, path = "/messages", tag = "messages",
    request_body(content = NewMessageBody, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1-255 visible ASCII characters, no spaces. The same key and content always yield the same id; the same key with other content is a 422")),
    responses(
        (status = 202, description = "Confirmed by the broker (queued), or with deliver_at/delay_seconds held in the database until then (scheduled, with deliver_at)", body = Queued,
            headers(("Location" = String, description = "/messages/{id}"))),
        (status = 400, description = "Malformed JSON, not an object, content missing/null/empty/not a string/containing NUL, kind malformed or not one of KINDS (the error names them), bad Idempotency-Key, callback_url not http(s) or to a private/local host, or a bad schedule (deliver_at malformed, both deliver_at and delay_seconds, or beyond MAX_SCHEDULE_AHEAD)", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json, or the body is compressed (Content-Encoding)", body = ErrorBody),
        (status = 422, description = "Idempotency-Key already used with different content", body = ErrorBody),
        (status = 503, description = "Not confirmed (broker down, nack, unroutable, timeout), or the database is down for an Idempotency-Key or a scheduled message", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn post_message(
    req: HttpRequest,
    body: JsonBody<Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "body must be a JSON object with a \"content\" string".into(),
        ));
    }
    let content = content_from_json(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let kind = state.kind(body.get("kind"))?;
    let schedule = hold::requested(
        &state,
        body.get("deliver_at"),
        body.get("delay_seconds"),
        "",
    )?;
    let callback_url = callbacks::callback_url(&body, &state).await?;
    // Bound before publishing: see `idempotency` for why.
    let assigned = idempotency::message_id(
        &state,
        &req,
        &content,
        callback_url.as_deref(),
        &kind,
        schedule.asked.as_deref(),
    )
    .await?;
    let mut envelope = Envelope::with_id(assigned.id, content);
    // Every retry of a keyed request carries the time of the first.
    envelope.created_at = assigned.created_at;
    envelope.callback_url = callback_url;
    envelope.kind = kind;
    envelope.deliver_at = schedule.deliver_at;
    let (status, deliver_at) = if envelope.deliver_at.is_some() {
        let held = hold::hold(&state, std::slice::from_ref(&envelope)).await?;
        (QueuedStatus::Scheduled, held.first().copied())
    } else {
        state.publish(&envelope).await?;
        (QueuedStatus::Queued, None)
    };
    state.metrics.record_accepted(Endpoint::Single, 1);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/messages/{}", envelope.id)))
        .json(Queued {
            id: envelope.id,
            status,
            deliver_at,
        }))
}

/// `GET /messages/{id}[?wait=S]`: 200 `stored` with the row, 200
/// `dead_lettered` with the reason, or 404 `not_found` (still queued, or
/// never accepted). With `wait`, answers as soon as the message is stored or
/// dead-lettered, or after S seconds (at most 30).
#[utoipa::path(get, path = "/messages/{id}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Message id"),
           ("wait" = Option<u32>, Query, minimum = 0, maximum = 30, description = "Seconds (0-30) to wait for the message to be stored, dead-lettered or cancelled (a scheduled message is waited through); default 0")),
    responses(
        (status = 200, description = "Stored, or dead-lettered with the reason, or scheduled (with deliver_at) or cancelled; with a callback also \"notification\": {\"id\", \"type\", \"status\", \"attempts\", \"last_status\", \"last_error\", \"delivered_at\"}", body = MessageState),
        (status = 400, description = "id is not a UUID, or bad wait", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 404, description = "Neither stored nor dead-lettered (still queued, or never accepted)", body = NotFound),
        (status = 503, description = "Database unavailable, or MAX_WAITERS lookups are waiting already (with wait)", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn get_message(
    path: web::Path<Uuid>,
    params: web::Query<WaitParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let wait = params.seconds()?;
    let status = wait::until_done(
        &state,
        id,
        wait,
        || state.with_db(move |conn| Ok(Lookup::of(conn, id)?)),
        Lookup::is_final,
    )
    .await?;
    let mut body = match status {
        Lookup::Settled(status) => serde_json::to_value(&status),
        Lookup::Waiting(status) => serde_json::to_value(&status),
        // Still queued, or never accepted: we cannot tell which, so we do
        // not make up a "pending".
        Lookup::Unknown => {
            return Ok(HttpResponse::NotFound().json(NotFound {
                error: format!("message {id} is neither stored nor dead-lettered"),
                status: NotFoundStatus::NotFound,
            }))
        }
    }
    .map_err(|e| ApiError::Internal(e.into()))?;
    // With a callback: the notification's state (issue 11).
    callbacks::attach_notification(&state, id, &mut body).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// What a status lookup found: stored or dead-lettered (final), scheduled
/// or cancelled, or nothing.
enum Lookup {
    Settled(MessageStatus),
    Waiting(ScheduleStatus),
    Unknown,
}

impl Lookup {
    /// The stored or dead-lettered row first (a delivered scheduled
    /// message answers as any stored one), then the schedule.
    fn of(conn: &mut diesel::PgConnection, id: Uuid) -> diesel::QueryResult<Lookup> {
        if let Some(status) = messages::status(conn, id)? {
            return Ok(Lookup::Settled(status));
        }
        Ok(match scheduled_messages::status(conn, id)? {
            Some(status) => Lookup::Waiting(status),
            None => Lookup::Unknown,
        })
    }

    /// Whether `?wait` may answer: stored, dead-lettered or cancelled; a
    /// scheduled message is waited through, as a queued one.
    fn is_final(&self) -> bool {
        match self {
            Lookup::Settled(_) => true,
            Lookup::Waiting(ScheduleStatus::Cancelled { .. }) => true,
            Lookup::Waiting(ScheduleStatus::Scheduled { .. }) | Lookup::Unknown => false,
        }
    }
}
