//! Batches that complete: the shape of a `POST /messages/batch` body (the
//! JSON array, or `{"messages": [...], "callback_url": "..."}`), its batch
//! id, and `GET /batches/{id}[?wait=S]`.
//!
//! Every item carries its batch's id, size and callback (see
//! `shared::envelope::BatchRef`); the consumer that stores or dead-letters
//! the first item creates the batch's row, and the one that settles the
//! last completes it, in the same transaction. Until an item has reached the
//! database the batch is `not_found`, like a message still queued.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::envelope::BatchRef;
use shared::events::BatchStatus;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::bounded_number;
use crate::state::AppState;

/// Namespace of batch ids derived from an `Idempotency-Key` (UUID v5): a
/// retried batch keeps its id, and no message id can equal it.
const BATCH_NAMESPACE: Uuid = Uuid::from_u128(0x8d5e_61a4_3b0f_4c2e_9a57_2f0e_b1c3_d4a9);

/// What a batch body may be, for errors.
const SHAPES: &str = "body must be a JSON array of {\"content\": \"...\"} objects, \
    or an object {\"messages\": [...], \"callback_url\": \"...\"}";

/// The longest `?wait=` on `GET /batches/{id}`.
const MAX_WAIT_SECS: u64 = 30;

/// A batch body taken apart: its items, and its batch (without the total,
/// which the caller knows once the items are checked).
pub struct BatchBody<'a> {
    /// The items, unchecked.
    pub items: &'a [Value],
    /// The batch id.
    pub id: Uuid,
    /// The batch's callback, checked.
    pub callback_url: Option<String>,
}

/// Read either body form. With an `Idempotency-Key` the batch id is derived
/// from it, else random.
pub async fn read_body<'a>(
    body: &'a Value,
    key: Option<&str>,
    state: &AppState,
) -> Result<BatchBody<'a>, ApiError> {
    let (items, callback_url) = match body {
        Value::Array(items) => (items, None),
        Value::Object(fields) => {
            if let Some(unknown) = fields
                .keys()
                .find(|k| !matches!(k.as_str(), "messages" | "callback_url"))
            {
                return Err(ApiError::BadRequest(format!(
                    "unknown field {unknown:?}: {SHAPES}"
                )));
            }
            let items = fields
                .get("messages")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "\"messages\" must be an array of {\"content\": \"...\"} objects".into(),
                    )
                })?;
            (items, super::webhooks::callback_url(body, state).await?)
        }
        _ => return Err(ApiError::BadRequest(SHAPES.into())),
    };
    let id = match key {
        Some(k) => Uuid::new_v5(&BATCH_NAMESPACE, k.as_bytes()),
        None => Uuid::new_v4(),
    };
    Ok(BatchBody {
        items,
        id,
        callback_url,
    })
}

impl BatchBody<'_> {
    /// What each of its `total` items carries.
    pub fn reference(&self, total: usize, created_at: DateTime<Utc>) -> BatchRef {
        BatchRef {
            id: self.id,
            total: u32::try_from(total).unwrap_or(u32::MAX),
            callback_url: self.callback_url.clone(),
            created_at,
        }
    }
}

/// Query of `GET /batches/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    wait: Option<String>,
}

/// `GET /batches/{id}[?wait=S]`: the batch's counts, counted from the
/// stored and dead-lettered rows. With `wait`, answers as soon as the batch
/// is completed, or after S seconds (at most 30).
#[utoipa::path(get, path = "/batches/{id}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Batch id (batch_id of POST /messages/batch)"),
           ("wait" = Option<u32>, Query, minimum = 0, maximum = 30, description = "Seconds (0-30) to wait for the batch to complete; default 0")),
    responses(
        (status = 200, description = r#"{"id", "total", "stored", "dead_lettered", "pending", "status": "pending|completed|completed_with_failures", "created_at", "completed_at", "notification"?}"#),
        (status = 400, description = "id is not a UUID, or bad wait"),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong"),
        (status = 404, description = r#"{"status": "not_found"}: no item of it has reached the database (still queued, or never accepted)"#),
        (status = 503, description = "Database unavailable; see Retry-After"),
    ))]
pub async fn get_batch(
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
    // Subscribe before looking, so a completion between the look and the
    // wait is not missed.
    let mut events = state.publisher.subscribe();
    let done = |b: &Option<BatchStatus>| b.as_ref().is_some_and(|b| b.completed_at.is_some());
    let mut found = lookup(&state, id).await?;
    if !done(&found) && wait > 0 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    // The wait is over: look once more (the event may be lost).
                    found = lookup(&state, id).await?;
                    break;
                }
                Ok(Ok(event)) if !event.mentions(&id) => continue,
                Ok(_) => {}
            }
            found = lookup(&state, id).await?;
            if done(&found) {
                break;
            }
        }
    }
    let Some(batch) = found else {
        return Ok(HttpResponse::NotFound().json(json!({
            "error": format!("batch {id} is not known yet (no item has reached the database)"),
            "status": "not_found",
        })));
    };
    let mut body = json!({
        "id": batch.id,
        "total": batch.total,
        "stored": batch.stored,
        "dead_lettered": batch.dead_lettered,
        "pending": batch.pending(),
        "status": batch.status,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
    });
    super::webhooks::attach_notification(&state, id, &mut body).await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn lookup(state: &AppState, id: Uuid) -> Result<Option<BatchStatus>, ApiError> {
    state
        .with_db(move |conn| Ok(shared::db::batches::find(conn, id)?))
        .await
}
