//! `POST /add_message`: the Flask + RQ tutorial's endpoint, kept compatible
//! so clients written for it work unchanged.

use actix_web::{web, HttpResponse};
use serde_json::Value;
use shared::envelope::{content_from_json, ContentError};
use shared::Envelope;

use crate::error::ApiError;
use crate::http::extract::JsonBody;
use crate::metrics::Endpoint;
use crate::schedule::hold;
use crate::schemas::{AddMessageBody, Enqueued, ErrorBody, QueuedStatus};
use crate::state::AppState;

/// Enqueue `{"content": "..."}`; answers 202 `{"message": "Message enqueued",
/// "job_id": "<uuid>"}` once the broker confirmed it. With `deliver_at` or
/// `delay_seconds`: `{"message": "Message scheduled", "job_id", "status":
/// "scheduled", "deliver_at"}` once the database holds it.
#[utoipa::path(post, path = "/add_message", tag = "tutorial",
    request_body(content = AddMessageBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Confirmed by the broker", body = Enqueued,
            headers(("Location" = String, description = "/messages/{job_id}"))),
        (status = 400, description = r#"{"error": "Content is required"} and other invalid content, a kind malformed or not one of KINDS (the error names them), or a bad schedule: deliver_at malformed, with delay_seconds, or beyond MAX_SCHEDULE_AHEAD"#, body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 413, description = "Body larger than MAX_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json, or the body is compressed (Content-Encoding)", body = ErrorBody),
        (status = 503, description = "Not confirmed by the broker, or (scheduled) the database is down", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn add_message(
    body: JsonBody<Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let content = content_from_json(&body).map_err(|e| match e {
        // The tutorial's exact wording.
        ContentError::Missing => ApiError::BadRequest("Content is required".into()),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    let mut envelope = Envelope::new(content);
    envelope.kind = state.kind(body.get("kind"))?;
    // RQ's `enqueue_at` / `enqueue_in`, as fields.
    let schedule = hold::requested(
        &state,
        body.get("deliver_at"),
        body.get("delay_seconds"),
        "",
    )?;
    envelope.deliver_at = schedule.deliver_at;
    let answer = if envelope.deliver_at.is_some() {
        let held = hold::hold(&state, std::slice::from_ref(&envelope)).await?;
        Enqueued {
            message: "Message scheduled".into(),
            job_id: envelope.id,
            status: Some(QueuedStatus::Scheduled),
            deliver_at: held.first().copied(),
        }
    } else {
        state.publish(&envelope).await?;
        Enqueued {
            message: "Message enqueued".into(),
            job_id: envelope.id,
            status: None,
            deliver_at: None,
        }
    };
    state.metrics.record_accepted(Endpoint::AddMessage, 1);
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/messages/{}", envelope.id)))
        .json(answer))
}
