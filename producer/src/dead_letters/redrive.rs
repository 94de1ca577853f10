//! Moving dead letters back for another try: `POST /dead-letters/redrive`
//! (all, or the first N) and `POST /dead-letters/{id}/redrive` (one, the
//! dashboard's per-row button). Each is republished and confirmed before it
//! is acked off the dead-letter queue, in one place: `move_one`.

use actix_web::{web, HttpResponse};
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use serde_json::json;
use shared::dead_letter;
use uuid::Uuid;

use crate::error::ApiError;
use crate::schemas::{AdminRefusal, ErrorBody, Redriven};
use crate::state::AppState;

use super::hand_back::{hand_back, SCAN};
use super::params::Params;

/// The most dead letters looked through for the id. Every one looked at is
/// held unacknowledged until the end (then handed back in order), so
/// the search is bounded; a longer queue is redriven or purged whole.
pub const MAX_SCAN: usize = SCAN;

/// `POST /dead-letters/redrive?limit=N`: move up to N (default all, in
/// pages of 1000) back to the `messages` exchange. Each is republished and
/// confirmed before it is acked off the dead-letter queue, so a crash midway
/// loses nothing (a duplicate is harmless: storing is idempotent).
#[utoipa::path(post, path = "/dead-letters/redrive", tag = "dead letters",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many; default: every dead letter there was when the call began")),
    responses(
        (status = 200, description = "How many were moved back", body = Redriven),
        (status = 400, description = "Bad limit", body = ErrorBody),
        AdminRefusal,
        (status = 503, description = "Broker unavailable or a republish not confirmed", body = ErrorBody),
    ))]
pub async fn redrive(
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit()?.map_or(usize::MAX, |n| n as usize);
    let moved = state
        .with_channel("redriven", async |channel| {
            move_back(channel, &state, limit).await
        })
        .await??;
    Ok(HttpResponse::Ok().json(json!({ "redriven": moved })))
}

async fn move_back(channel: &Channel, state: &AppState, limit: usize) -> Result<usize, ApiError> {
    let topology = state.publisher.topology();
    channel
        .confirm_select(ConfirmSelectOptions { nowait: false })
        .await
        .map_err(|e| state.broker_unavailable(e))?;
    let mut moved = 0;
    // Set by the first get: the depth of the queue when the call began. A
    // message that fails again is dead-lettered back onto the tail within
    // milliseconds; without this bound one call would redrive it again and
    // again (and count it each time).
    let mut bound = limit;
    while moved < bound {
        let got = channel
            .basic_get(
                topology.dead_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(|e| state.broker_unavailable(e))?;
        let Some(msg) = got else { break };
        if moved == 0 {
            // `message_count` is what is left besides this one.
            bound = bound.min(msg.message_count as usize + 1);
        }
        move_one(channel, state, msg).await?;
        moved += 1;
    }
    Ok(moved)
}

/// Move one dead letter (got unacknowledged on `channel`, in confirm mode)
/// back to its kind's queue (`default`: the `messages` exchange): drop its record, republish it afresh
/// and wait for the confirm, and only then ack it off the dead-letter
/// queue. Shared by redriving all and redriving one.
async fn move_one(
    channel: &Channel,
    state: &AppState,
    msg: lapin::message::BasicGetMessage,
) -> Result<(), ApiError> {
    let topology = state.publisher.topology();
    // Queued again, no longer dead-lettered: drop its record before the
    // republish, so that failing again (which writes a new one) wins.
    let id = dead_letter::message_uuid(&msg.delivery.data, &msg.delivery.properties);
    let forgotten = match id {
        Some(id) => {
            state
                .with_db(move |conn| Ok(shared::db::dead_letters::forget(conn, id)?))
                .await?
        }
        None => None,
    };
    // Back to its kind's queue (a kind no longer configured goes to the
    // queue of unknown kinds, and is dead-lettered again, not lost).
    let kind = dead_letter::kind_of(&msg.delivery.data, &msg.delivery.properties, topology);
    let (exchange, routing_key) = topology.publish_target(&kind, id.unwrap_or_default());
    let published = shared::publish::confirmed(
        channel,
        exchange,
        &routing_key,
        &msg.delivery.data,
        fresh_properties(&msg.delivery.properties),
        state.publisher.publish_timeout(),
    )
    .await;
    match published {
        Ok(()) => {}
        Err(e) => {
            log::warn!("redrive stopped: republish not confirmed: {e}");
            // Still in messages.dead (the unacked get goes back when the
            // channel closes): put its record back unless a newer one exists.
            if let Some(record) = forgotten {
                let restored = state
                    .with_db(move |conn| Ok(shared::db::dead_letters::restore(conn, &record)?))
                    .await;
                if let Err(e) = restored {
                    log::warn!("redrive: cannot restore a dead-letter record: {e}");
                }
            }
            return Err(state.broker_unavailable(e));
        }
    }
    msg.delivery
        .acker
        .ack(BasicAckOptions { multiple: false })
        .await
        .map_err(|e| state.broker_unavailable(e))?;
    Ok(())
}

/// The properties of a redriven message: the original's, without the
/// headers the pipeline (or the broker's dead-lettering) added, so it starts
/// afresh (attempts from zero).
pub fn fresh_properties(props: &lapin::BasicProperties) -> lapin::BasicProperties {
    let mut props = props.clone();
    if let Some(headers) = props.headers().clone() {
        let mut kept = FieldTable::default();
        for (name, value) in headers.inner() {
            if !dead_letter::PIPELINE_HEADERS.contains(&name.as_str()) {
                kept.insert(name.clone(), value.clone());
            }
        }
        props = props.with_headers(kept);
    }
    props
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
    path: web::Path<Uuid>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    // Every other dead letter looked at goes back in its order.
    let found = state
        .with_channel("redrove one", async |channel| {
            find_and_move(channel, &state, id).await
        })
        .await??;
    if found {
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
        .map_err(|e| state.broker_unavailable(e))?;
    // Every letter looked at before it, handed back in order at the end.
    let mut looked = Vec::new();
    let mut found = false;
    for _ in 0..MAX_SCAN {
        let got = channel
            .basic_get(
                topology.dead_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(|e| state.broker_unavailable(e))?;
        let Some(msg) = got else { break };
        // The id the consumer stores it by (body `id`, else `message_id`).
        // Once found, the rest is read on too: handing back every letter
        // is what keeps the order (see `hand_back`).
        if found
            || dead_letter::message_uuid(&msg.delivery.data, &msg.delivery.properties) != Some(id)
        {
            looked.push(msg.delivery.acker.clone());
            continue;
        }
        // Exactly as redriving all does it (record, confirm, then ack).
        move_one(channel, state, msg).await?;
        found = true;
    }
    hand_back(looked, state.publisher.publish_timeout()).await;
    Ok(found)
}
