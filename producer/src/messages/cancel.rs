//! `DELETE /messages/{id}`: cancel a scheduled message that is not stored
//! yet. The database decides (see `shared::db::scheduled_messages`): the
//! cancel and the consumer's store update the same row, so a message is
//! either cancelled (200, and never stored) or stored (409), never both.

use actix_web::{web, HttpResponse};
use shared::db::scheduled_messages::{self, Cancel};
use uuid::Uuid;

use crate::error::ApiError;
use crate::schemas::{Cancelled, CancelledStatus, ErrorBody};
use crate::state::AppState;

/// Cancel scheduled message `id`.
#[utoipa::path(delete, path = "/messages/{id}", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Cancelled (now or before): it will never be stored", body = Cancelled),
        (status = 400, description = "id is not a UUID", body = ErrorBody),
        (status = 401, description = "API_TOKEN is set and the bearer token is missing or wrong", body = ErrorBody),
        (status = 404, description = "No scheduled message has this id (never accepted, not scheduled and not stored, or its record pruned after SCHEDULE_RETENTION)", body = ErrorBody),
        (status = 409, description = "Too late or not cancellable: already stored, dead-lettered, not a scheduled message, or an item of a batch (a batch completes when all its items are settled, so its items are not cancelled one by one)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
pub async fn cancel_message(
    path: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let outcome = state
        .with_db(move |conn| {
            let outcome = scheduled_messages::cancel(conn, id)?;
            // Not scheduled: stored at once (409) or unknown (404)?
            let stored = matches!(outcome, Cancel::NotScheduled)
                && shared::db::messages::find(conn, id)?.is_some();
            Ok((outcome, stored))
        })
        .await?;
    match outcome {
        (Cancel::Cancelled { deliver_at }, _) => {
            state.metrics.schedule.cancelled.inc();
            Ok(HttpResponse::Ok().json(Cancelled {
                id,
                status: CancelledStatus::Cancelled,
                deliver_at,
            }))
        }
        (Cancel::Delivered, _) => Err(ApiError::Conflict(format!(
            "message {id} is already stored: too late to cancel"
        ))),
        (Cancel::DeadLettered, _) => Err(ApiError::Conflict(format!(
            "message {id} was dead-lettered: nothing to cancel (see GET /messages/{id})"
        ))),
        (Cancel::InBatch(batch), _) => Err(ApiError::Conflict(format!(
            "message {id} is an item of batch {batch}: a batch's items are not cancelled one by one"
        ))),
        (Cancel::NotScheduled, true) => Err(ApiError::Conflict(format!(
            "message {id} was not scheduled and is stored: nothing to cancel"
        ))),
        (Cancel::NotScheduled, false) => {
            Err(ApiError::NotFound(format!("no scheduled message {id}")))
        }
    }
}
