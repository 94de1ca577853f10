//! Batches: `POST /messages/batch` takes up to 1000 messages in one
//! request (the JSON array, or `{"messages": [...], "callback_url": "..."}`),
//! publishes them pipelined over the publisher channels and answers once
//! every one is confirmed; `GET /batches/{id}[?wait=S]` says how far the
//! batch has come.
//!
//! Every item carries its batch's id, size and callback (see
//! `shared::envelope::BatchRef`); the consumer that stores or dead-letters
//! the first item creates the batch's row, and the one that settles the
//! last completes it, in the same transaction. Until an item has reached the
//! database the batch is `not_found`, like a message still queued.
//!
//! The body is read by `body` (typed and bounded as it is parsed).

pub mod body;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shared::envelope::BatchRef;
use shared::events::BatchStatus;
use shared::Envelope;
use uuid::Uuid;

use crate::callbacks;
use crate::error::ApiError;
use crate::http::extract::JsonBody;
use crate::idempotency;
use crate::metrics::Endpoint;
use crate::publisher::PublishError;
use crate::schedule::hold;
use crate::schemas::{BatchQueued, ErrorBody, NewBatchBody, QueuedStatus};

use crate::state::AppState;
use crate::wait::{self, WaitParams};
use body::{BatchBody, Item};

/// Accept `[{"content": "..."}, …]` or `{"messages": [...], "callback_url"}`;
/// the answer names the `batch_id` (see `GET /batches/{id}`). All items are validated before any is
/// published: one bad item rejects the batch with a 400 naming its index.
/// 202 `{"status": "queued", "ids": […]}` when every message is confirmed;
/// otherwise 503 listing which were confirmed and which must be retried.
/// With `Idempotency-Key: K`, item `i` gets an id derived from `K` and `i`
/// (a namespace apart from single POSTs), so a retried batch yields the same
/// ids; `K` reused with a different batch is a 422.
#[utoipa::path(post, path = "/messages/batch", tag = "messages",
    request_body(content = NewBatchBody, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1-255 visible ASCII characters, no spaces. The same key and batch always yield the same ids; the same key with another batch is a 422")),
    responses(
        (status = 202, description = "All confirmed, or held until their deliver_at (items with deliver_at or delay_seconds)", body = BatchQueued),
        (status = 400, description = "Not an array or batch object, empty, over 1000, an invalid item (named by index, a bad schedule included), a refused callback_url, or a bad Idempotency-Key", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 413, description = "Body larger than MAX_BATCH_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json, or the body is compressed (Content-Encoding)", body = ErrorBody),
        (status = 422, description = "Idempotency-Key already used with a different batch", body = ErrorBody),
        (status = 503, description = r#"Some not confirmed: {"error", "queued": [ids], "failed": [{"index", "id"}]}; or the database is down for an Idempotency-Key or scheduled items"#, body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn post_batch(
    req: HttpRequest,
    body: JsonBody<BatchBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // At most MAX_BATCH items: counted while parsing (see `body`).
    let BatchBody {
        items,
        callback_url,
    } = body.0;
    if items.is_empty() {
        return Err(ApiError::BadRequest("batch must not be empty".into()));
    }
    let mut contents = Vec::with_capacity(items.len());
    let mut kinds = Vec::with_capacity(items.len());
    let mut schedules = Vec::with_capacity(items.len());
    for (i, mut item) in items.into_iter().enumerate() {
        if matches!(item, Item::NotAnObject) {
            return Err(ApiError::BadRequest(format!(
                "item {i}: must be an object with a \"content\" string"
            )));
        }
        contents.push(
            item.content()
                .map_err(|e| ApiError::BadRequest(format!("item {i}: {e}")))?,
        );
        // A batch may mix kinds; each item's must be configured.
        kinds.push(
            state
                .kind(item.kind().as_ref())
                .map_err(|e| ApiError::BadRequest(format!("item {i}: {e}")))?,
        );
        // Each item may be scheduled on its own (or not at all).
        let (deliver_at, delay_seconds) = item.schedule();
        schedules.push(hold::requested(
            &state,
            deliver_at,
            delay_seconds,
            &format!("item {i}: "),
        )?);
    }
    // Last, as it may wait for DNS: after every check that cannot.
    let callback_url = match callback_url.optional_text() {
        Ok(Some(url)) => Some(callbacks::check_callback(&url, &state).await?),
        Ok(None) => None,
        Err(body::NotAString) => {
            return Err(ApiError::BadRequest("callback_url must be a string".into()))
        }
    };
    // Bound before publishing: see `idempotency` for why.
    let asked: Vec<Option<String>> = schedules.iter().map(|s| s.asked.clone()).collect();
    let ids = idempotency::batch_ids(
        &state,
        &req,
        &contents,
        callback_url.as_deref(),
        &kinds,
        &asked,
    )
    .await?;
    let batch_id = ids.batch;
    let mut envelopes: Vec<Envelope> = ids
        .items
        .iter()
        .zip(contents)
        .zip(kinds)
        .zip(&schedules)
        .map(|(((id, content), kind), schedule)| Envelope {
            // Every retry of a keyed batch carries the time of the first.
            created_at: ids.created_at,
            kind,
            deliver_at: schedule.deliver_at,
            ..Envelope::with_id(*id, content)
        })
        .collect();
    if let Some(first) = envelopes.first() {
        let batch = BatchRef {
            id: batch_id,
            total: u32::try_from(envelopes.len()).unwrap_or(u32::MAX),
            callback_url,
            created_at: first.created_at,
        };
        for envelope in &mut envelopes {
            envelope.batch = Some(batch.clone());
        }
    }

    // The scheduled items first, in one transaction: if the database
    // cannot take them, nothing of the batch was accepted (a plain 503).
    let later: Vec<Envelope> = envelopes
        .iter()
        .filter(|e| e.deliver_at.is_some())
        .cloned()
        .collect();
    let mut deliver_at: Option<Vec<Option<DateTime<Utc>>>> = None;
    if !later.is_empty() {
        let mut held = hold::hold(&state, &later).await?.into_iter();
        deliver_at = Some(
            envelopes
                .iter()
                .map(|e| e.deliver_at.and_then(|_| held.next()))
                .collect(),
        );
    }
    let now: Vec<Envelope> = envelopes
        .iter()
        .filter(|e| e.deliver_at.is_none())
        .cloned()
        .collect();
    let mut published = state.publisher.publish_many(&now).await.into_iter();
    // Each item's outcome in request order: a held one is accepted.
    let results: Vec<Result<(), PublishError>> = envelopes
        .iter()
        .map(|e| match e.deliver_at {
            Some(_) => Ok(()),
            None => published.next().unwrap_or(Err(PublishError::NotConnected)),
        })
        .collect();
    let ids: Vec<Uuid> = envelopes.iter().map(|e| e.id).collect();
    let failed: Vec<(usize, &PublishError)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
        .collect();
    // Confirmed messages are accepted even when others of the batch were not:
    // the broker has them, and the 503 below lists them as queued.
    state
        .metrics
        .record_accepted(Endpoint::Batch, ids.len() - failed.len());
    if failed.is_empty() {
        let status = if now.is_empty() {
            QueuedStatus::Scheduled
        } else {
            QueuedStatus::Queued
        };
        return Ok(HttpResponse::Accepted().json(BatchQueued {
            status,
            batch_id,
            ids,
            deliver_at,
        }));
    }
    log::warn!(
        "batch: {} of {} messages not confirmed (first: {})",
        failed.len(),
        ids.len(),
        failed[0].1
    );
    let queued: Vec<Uuid> = results
        .iter()
        .zip(&ids)
        .filter(|(r, _)| r.is_ok())
        .map(|(_, id)| *id)
        .collect();
    let failed: Vec<Value> = failed
        .iter()
        .map(|(i, _)| json!({ "index": i, "id": ids[*i] }))
        .collect();
    Ok(HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, state.retry_after_secs.to_string()))
        .json(json!({
            "error": format!(
                "message broker unavailable: {} of {} messages were not accepted; retry them",
                failed.len(),
                ids.len()
            ),
            "batch_id": batch_id,
            "queued": queued,
            "failed": failed,
        })))
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
        (status = 503, description = "Database unavailable, or MAX_WAITERS lookups are waiting already (with wait); see Retry-After"),
    ))]
pub async fn get_batch(
    path: web::Path<Uuid>,
    params: web::Query<WaitParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let wait = params.seconds()?;
    let found = wait::until_done(
        &state,
        id,
        wait,
        || lookup(&state, id),
        |b: &Option<BatchStatus>| b.as_ref().is_some_and(|b| b.completed_at.is_some()),
    )
    .await?;
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
    callbacks::attach_notification(&state, id, &mut body).await?;
    Ok(HttpResponse::Ok().json(body))
}

async fn lookup(state: &AppState, id: Uuid) -> Result<Option<BatchStatus>, ApiError> {
    state
        .with_db(move |conn| Ok(shared::db::batches::find(conn, id)?))
        .await
}
