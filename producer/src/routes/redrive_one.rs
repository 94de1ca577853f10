//! `POST /dead-letters/{id}/redrive`: send one dead letter back for another
//! try (the dashboard's per-row button). Same rules as the other
//! dead-letter tools: only with `ADMIN_TOKEN` set, and with that token.

use actix_web::{web, HttpRequest, HttpResponse};
use lapin::options::{BasicGetOptions, ConfirmSelectOptions};
use lapin::Channel;
use serde_json::json;
use shared::dead_letter;
use uuid::Uuid;

use crate::error::ApiError;
use crate::publisher::PublishError;
use crate::state::AppState;

/// The most dead letters looked through for the id. Every one looked at is
/// held unacknowledged until the end (then handed back in its place), so
/// the search is bounded; a longer queue is redriven or purged whole.
pub const MAX_SCAN: usize = 10_000;

fn broker_error(state: &AppState, source: impl Into<PublishError>) -> ApiError {
    ApiError::BrokerUnavailable {
        source: source.into(),
        retry_after: state.retry_after_secs,
    }
}

/// Redrive message `id` out of the dead-letter queue.
#[utoipa::path(post, path = "/dead-letters/{id}/redrive", tag = "dead letters",
    params(("id" = uuid::Uuid, Path, description = "Message id of the dead letter")),
    responses(
        (status = 200, description = r#"{"redriven": 1, "id"}: republished, confirmed, then removed from the dead-letter queue"#),
        (status = 400, description = "id is not a UUID"),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN"),
        (status = 404, description = "ADMIN_TOKEN is not set, or no dead letter with this id among the first 10 000"),
        (status = 503, description = "Broker unavailable or the republish not confirmed"),
    ))]
pub async fn redrive_one(
    req: HttpRequest,
    path: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::dead_letters::authorize(&req)?;
    let id = path.into_inner();
    let channel = state
        .publisher
        .open_channel()
        .await
        .map_err(|e| broker_error(&state, e))?;
    let result = find_and_move(&channel, &state, id).await;
    // Hands every other dead letter looked at back to its place.
    let _ = channel.close(200, "redrove one".into()).await;
    if result? {
        Ok(HttpResponse::Ok().json(json!({ "redriven": 1, "id": id })))
    } else {
        Err(ApiError::NotFound(format!(
            "message {id} is not in the dead-letter queue (searched the first {MAX_SCAN})"
        )))
    }
}

async fn find_and_move(channel: &Channel, state: &AppState, id: Uuid) -> Result<bool, ApiError> {
    let topology = state.publisher.topology();
    channel
        .confirm_select(ConfirmSelectOptions { nowait: false })
        .await
        .map_err(|e| broker_error(state, e))?;
    for _ in 0..MAX_SCAN {
        let got = channel
            .basic_get(
                topology.dead_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(|e| broker_error(state, e))?;
        let Some(msg) = got else { return Ok(false) };
        // The id the consumer stores it by (body `id`, else `message_id`).
        if dead_letter::message_uuid(&msg.delivery.data, &msg.delivery.properties) != Some(id) {
            continue; // left unacked: back in place when the channel closes
        }
        // Exactly as redriving all does it (record, confirm, then ack).
        super::dead_letters::move_one(channel, state, msg).await?;
        return Ok(true);
    }
    Ok(false)
}
