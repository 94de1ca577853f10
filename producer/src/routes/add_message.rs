//! `POST /add_message`: the Flask + RQ tutorial's endpoint, kept compatible
//! so clients written for it work unchanged.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use shared::envelope::{content_from_json, ContentError};
use shared::Envelope;

use crate::error::ApiError;
use crate::metrics::Endpoint;
use crate::state::AppState;

/// Enqueue `{"content": "..."}`; answers 202 `{"message": "Message enqueued",
/// "job_id": "<uuid>"}` once the broker confirmed it.
#[utoipa::path(post, path = "/add_message", tag = "tutorial",
    request_body(content = String, content_type = "application/json", description = r#"{"content": "text"}"#),
    responses(
        (status = 202, description = r#"{"message": "Message enqueued", "job_id"}"#),
        (status = 400, description = r#"{"error": "Content is required"} and other invalid content"#),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong"),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_MS"),
        (status = 413, description = "Body larger than MAX_BODY_BYTES"),
        (status = 415, description = "Content-Type is not application/json"),
        (status = 503, description = "Not confirmed by the broker; see Retry-After"),
    ))]
pub async fn add_message(
    body: web::Json<Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let content = content_from_json(&body).map_err(|e| match e {
        // The tutorial's exact wording.
        ContentError::Missing => ApiError::BadRequest("Content is required".into()),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    let envelope = Envelope::new(content);
    state.publish(&envelope).await?;
    state.metrics.record_accepted(Endpoint::AddMessage, 1);
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/messages/{}", envelope.id)))
        .json(json!({ "message": "Message enqueued", "job_id": envelope.id })))
}
