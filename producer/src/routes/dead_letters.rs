//! The dead-letter tools: `GET /dead-letters` (browse), `POST
//! /dead-letters/redrive` (move back for another try) and `DELETE
//! /dead-letters?confirm=true` (purge). Only with `ADMIN_TOKEN` set (404
//! otherwise) and presented as `Authorization: Bearer <ADMIN_TOKEN>`.

use actix_web::{web, HttpRequest, HttpResponse};
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::dead_letter;

use crate::auth::AdminToken;
use crate::error::ApiError;
use crate::publisher::PublishError;
use crate::state::AppState;

use super::schemas::{ConfirmTrue, DeadLetterList, ErrorBody, Purged, Redriven};

/// Default and maximum messages per call.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `limit` and `confirm` query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    limit: Option<String>,
    confirm: Option<String>,
}

fn limit(params: &Params) -> Result<u32, ApiError> {
    let n = crate::extract::bounded_number(
        params.limit.as_deref(),
        "limit",
        DEFAULT_LIMIT.into(),
        1..=MAX_LIMIT.into(),
    )?;
    Ok(n as u32)
}

fn broker_error(state: &AppState, source: impl Into<PublishError>) -> ApiError {
    ApiError::BrokerUnavailable {
        source: source.into(),
        retry_after: state.retry_after_secs,
    }
}

/// Disabled without `ADMIN_TOKEN` (404, as if the route did not exist);
/// otherwise the admin bearer token is required.
pub(super) fn authorize(req: &HttpRequest) -> Result<(), ApiError> {
    let admin = req
        .app_data::<web::Data<AdminToken>>()
        .and_then(|t| t.0.clone());
    let Some(secret) = admin else {
        return Err(ApiError::NotFound(format!(
            "no route for {} {}",
            req.method(),
            req.path()
        )));
    };
    let presented = crate::auth::bearer_of(req.headers());
    if presented.is_some_and(|t| secret.matches(t)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or invalid admin bearer token (Authorization: Bearer <ADMIN_TOKEN>)".into(),
        ))
    }
}

fn header_text(props: &lapin::BasicProperties, name: &str) -> Option<Value> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(json!(String::from_utf8_lossy(s.as_bytes()))),
        AMQPValue::ShortString(s) => Some(json!(s.as_str())),
        AMQPValue::LongInt(n) => Some(json!(n)),
        AMQPValue::LongLongInt(n) => Some(json!(n)),
        AMQPValue::ShortInt(n) => Some(json!(n)),
        AMQPValue::LongUInt(n) => Some(json!(n)),
        _ => None,
    }
}

/// `GET /dead-letters?limit=N`: the first N dead letters, oldest first,
/// with id, content (when decodable), reason, attempts and when. Read with
/// unacknowledged gets on a channel of its own, then handed back by closing
/// it: nothing is lost and the queue keeps its order.
#[utoipa::path(get, path = "/dead-letters", tag = "dead letters",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many, default 100")),
    responses(
        (status = 200, description = "The first dead letters, oldest first, and how many there are", body = DeadLetterList),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 404, description = "ADMIN_TOKEN is not set: the tools are disabled", body = ErrorBody),
        (status = 503, description = "Broker unavailable", body = ErrorBody),
    ))]
pub async fn list(
    req: HttpRequest,
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req)?;
    let limit = limit(&params)?;
    let channel = state
        .publisher
        .open_channel()
        .await
        .map_err(|e| broker_error(&state, e))?;
    let queue = state.publisher.topology().dead_queue.clone();
    let result = browse(&channel, &queue, limit).await;
    // Hands every unacked get back to its place in the queue.
    let _ = channel.close(200, "browsed".into()).await;
    let (items, remaining) = result.map_err(|e| broker_error(&state, e))?;
    Ok(HttpResponse::Ok().json(json!({ "dead_letters": items, "total": remaining })))
}

async fn browse(
    channel: &Channel,
    queue: &str,
    limit: u32,
) -> Result<(Vec<Value>, u32), lapin::Error> {
    let mut items = Vec::new();
    let mut total = 0;
    while items.len() < limit as usize {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?;
        let Some(msg) = got else { break };
        if items.is_empty() {
            total = msg.message_count + 1;
        }
        let props = &msg.delivery.properties;
        let body: Option<Value> = serde_json::from_slice(&msg.delivery.data).ok();
        let content = body
            .as_ref()
            .and_then(|b| b.get("content"))
            .and_then(Value::as_str);
        let id = body
            .as_ref()
            .and_then(|b| b.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| props.message_id().as_ref().map(|s| s.to_string()));
        let reason = header_text(props, dead_letter::REASON_HEADER)
            .or_else(|| header_text(props, dead_letter::BROKER_REASON_HEADER));
        items.push(json!({
            "id": id,
            "content": content,
            "reason": reason,
            "category": dead_letter::Category::of(props.headers().as_ref()).as_str(),
            "attempts": header_text(props, dead_letter::ATTEMPTS_HEADER),
            "dead_lettered_at": header_text(props, dead_letter::DEAD_LETTERED_AT_HEADER),
        }));
    }
    Ok((items, total))
}

/// `POST /dead-letters/redrive?limit=N`: move up to N (default all, in
/// pages of 1000) back to the `messages` exchange. Each is republished and
/// confirmed before it is acked off the dead-letter queue, so a crash midway
/// loses nothing (a duplicate is harmless: storing is idempotent).
#[utoipa::path(post, path = "/dead-letters/redrive", tag = "dead letters",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many; default: every dead letter there was when the call began")),
    responses(
        (status = 200, description = "How many were moved back", body = Redriven),
        (status = 400, description = "Bad limit", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 404, description = "ADMIN_TOKEN is not set: the tools are disabled", body = ErrorBody),
        (status = 503, description = "Broker unavailable or a republish not confirmed", body = ErrorBody),
    ))]
pub async fn redrive(
    req: HttpRequest,
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req)?;
    let limit = match params.limit {
        Some(_) => limit(&params)? as usize,
        None => usize::MAX,
    };
    let channel = state
        .publisher
        .open_channel()
        .await
        .map_err(|e| broker_error(&state, e))?;
    let result = move_back(&channel, &state, limit).await;
    let _ = channel.close(200, "redriven".into()).await;
    let moved = result?;
    Ok(HttpResponse::Ok().json(json!({ "redriven": moved })))
}

async fn move_back(channel: &Channel, state: &AppState, limit: usize) -> Result<usize, ApiError> {
    let topology = state.publisher.topology();
    channel
        .confirm_select(ConfirmSelectOptions { nowait: false })
        .await
        .map_err(|e| broker_error(state, e))?;
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
            .map_err(|e| broker_error(state, e))?;
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
/// back to the `messages` exchange: drop its record, republish it afresh
/// and wait for the confirm, and only then ack it off the dead-letter
/// queue. Shared by redriving all and redriving one.
pub(super) async fn move_one(
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
    let published = shared::publish::confirmed(
        channel,
        &topology.exchange,
        "",
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
            return Err(broker_error(state, e));
        }
    }
    msg.delivery
        .acker
        .ack(BasicAckOptions { multiple: false })
        .await
        .map_err(|e| broker_error(state, e))?;
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

/// `DELETE /dead-letters?confirm=true`: purge the dead-letter queue.
/// Without `confirm=true` it only says how many would go.
#[utoipa::path(delete, path = "/dead-letters", tag = "dead letters",
    params(("confirm" = inline(ConfirmTrue), Query, description = "Must be true: purging deletes every dead letter for good")),
    responses(
        (status = 200, description = "How many were deleted", body = Purged),
        (status = 400, description = "confirm=true missing", body = ErrorBody),
        (status = 401, description = "Missing or wrong ADMIN_TOKEN", body = ErrorBody),
        (status = 404, description = "ADMIN_TOKEN is not set: the tools are disabled", body = ErrorBody),
        (status = 503, description = "Broker unavailable", body = ErrorBody),
    ))]
pub async fn purge(
    req: HttpRequest,
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req)?;
    if params.confirm.as_deref() != Some("true") {
        return Err(ApiError::BadRequest(
            "purging deletes every dead letter for good: repeat with ?confirm=true".into(),
        ));
    }
    let channel = state
        .publisher
        .open_channel()
        .await
        .map_err(|e| broker_error(&state, e))?;
    let queue = state.publisher.topology().dead_queue.clone();
    let result = channel
        .queue_purge(queue.as_str().into(), QueuePurgeOptions { nowait: false })
        .await;
    let _ = channel.close(200, "purged".into()).await;
    let purged = result.map_err(|e| broker_error(&state, e))?;
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
