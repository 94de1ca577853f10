//! `DELETE /dead-letters?confirm=true`: purge the dead-letter queue.

use actix_web::{web, HttpResponse};
use lapin::options::QueuePurgeOptions;
use serde_json::json;

use crate::error::ApiError;
use crate::schemas::{AdminRefusal, ConfirmTrue, ErrorBody, Purged};
use crate::state::AppState;

use super::params::Params;

/// `DELETE /dead-letters?confirm=true`: purge the dead-letter queue.
/// Without `confirm=true` it only says how many would go.
#[utoipa::path(delete, path = "/dead-letters", tag = "dead letters",
    params(("confirm" = inline(ConfirmTrue), Query, description = "Must be true: purging deletes every dead letter for good")),
    responses(
        (status = 200, description = "How many were deleted", body = Purged),
        (status = 400, description = "confirm=true missing", body = ErrorBody),
        AdminRefusal,
        (status = 503, description = "Broker unavailable", body = ErrorBody),
    ))]
pub async fn purge(
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !params.confirmed() {
        return Err(ApiError::BadRequest(
            "purging deletes every dead letter for good: repeat with ?confirm=true".into(),
        ));
    }
    let queue = state.publisher.topology().dead_queue.as_str();
    let purge = QueuePurgeOptions { nowait: false };
    let purged = state
        .with_channel("purged", async |channel| {
            channel.queue_purge(queue.into(), purge).await
        })
        .await?
        .map_err(|e| state.broker_unavailable(e))?;
    // The purged messages are gone for good: their records must not say
    // `dead_lettered` for ever. Deleted, not marked: a purged id then reads
    // like one never accepted (404 `not_found`). A message dead-lettered
    // between the purge and this delete loses its record too (its copy sits
    // in messages.dead); the window is one round trip.
    // The purge happened whatever the database says: a failure here is
    // logged, not turned into an error the client would retry.
    match state
        .with_db(|conn| Ok(shared::db::dead_letters::forget_all(conn)?))
        .await
    {
        Ok(n) => log::info!("purged {purged} dead letters and {n} dead-letter records"),
        Err(e) => log::warn!("purged {purged} dead letters but kept their records: {e}"),
    }
    Ok(HttpResponse::Ok().json(json!({ "purged": purged })))
}
