//! `POST /messages/batch`: up to 1000 messages in one request, published
//! pipelined over the publisher channels and answered once every one is confirmed.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use shared::envelope::content_from_json;
use shared::Envelope;
use uuid::Uuid;

use crate::error::ApiError;
use crate::idempotency::{self, Scope};
use crate::metrics::Endpoint;
use crate::state::AppState;

use super::schemas::{BatchQueued, ErrorBody, NewBatchBody, QueuedStatus};

/// Most messages in one batch.
pub const MAX_BATCH: usize = 1000;

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
        (status = 202, description = "All confirmed", body = BatchQueued),
        (status = 400, description = "Not an array or batch object, empty, over 1000, an invalid item (named by index), a refused callback_url, or a bad Idempotency-Key", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 408, description = "The body did not arrive within BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 413, description = "Body larger than MAX_BATCH_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "Idempotency-Key already used with a different batch", body = ErrorBody),
        (status = 503, description = r#"Some not confirmed: {"error", "queued": [ids], "failed": [{"index", "id"}]}; or the database is down for an Idempotency-Key"#, body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn post_batch(
    req: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::key(&req)?;
    // Either body form; the batch id and callback (issue 11) live in batches.rs.
    let shape = super::batches::read_body(&body, key.as_deref(), &state).await?;
    let items = shape.items;
    if items.is_empty() {
        return Err(ApiError::BadRequest("batch must not be empty".into()));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "batch has {} messages; at most {MAX_BATCH} are allowed",
            items.len()
        )));
    }
    let mut envelopes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(ApiError::BadRequest(format!(
                "item {i}: must be an object with a \"content\" string"
            )));
        }
        let content =
            content_from_json(item).map_err(|e| ApiError::BadRequest(format!("item {i}: {e}")))?;
        let id = match &key {
            Some(k) => idempotency::batch_item_id(k, i),
            None => Uuid::new_v4(),
        };
        envelopes.push(Envelope::with_id(id, content));
    }
    let batch_id = shape.id;
    if let Some(first) = envelopes.first() {
        let batch = shape.reference(envelopes.len(), first.created_at);
        for envelope in &mut envelopes {
            envelope.batch = Some(batch.clone());
        }
    }
    if let Some(key) = &key {
        // Bound before publishing: see `idempotency` for why.
        let callback = idempotency::callback_part(shape.callback_url.as_deref());
        let fingerprint = idempotency::fingerprint(
            Scope::Batch,
            envelopes
                .iter()
                .map(|e| e.content.as_str())
                .chain(callback.as_deref()),
        );
        idempotency::bind(&state, Scope::Batch, key, fingerprint).await?;
    }

    let results = state.publisher.publish_many(&envelopes).await;
    let ids: Vec<Uuid> = envelopes.iter().map(|e| e.id).collect();
    let failed: Vec<(usize, &crate::publisher::PublishError)> = results
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
        return Ok(HttpResponse::Accepted().json(BatchQueued {
            status: QueuedStatus::Queued,
            batch_id,
            ids,
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
