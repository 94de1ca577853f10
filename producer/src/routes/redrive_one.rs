//! `POST /dead-letters/{id}/redrive`: send one dead letter back for another
//! try (the dashboard's per-row button). Same rules as the other
//! dead-letter tools: only with `ADMIN_TOKEN` set, and with that token.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use lapin::message::BasicGetMessage;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::publisher::PublishError;
use crate::state::AppState;

/// The most dead letters looked through for the id. Every one looked at is
/// held unacknowledged until the end (then handed back in its place), so
/// the search is bounded; a longer queue is redriven or purged whole.
pub const MAX_SCAN: usize = 10_000;

/// Longest wait for the broker to confirm the republished message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

fn broker_error(state: &AppState, source: impl Into<PublishError>) -> ApiError {
    ApiError::BrokerUnavailable {
        source: source.into(),
        retry_after: state.retry_after_secs,
    }
}

/// The message id of a dead letter: the body's `id`, else the AMQP
/// `message_id` (the same rule the consumer stores by).
fn id_of(msg: &BasicGetMessage) -> Option<Uuid> {
    let from_body = serde_json::from_slice::<Value>(&msg.delivery.data)
        .ok()
        .and_then(|b| b.get("id").and_then(Value::as_str).map(str::to_owned));
    let text = from_body.or_else(|| {
        msg.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
    })?;
    Uuid::parse_str(&text).ok()
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
        if id_of(&msg) != Some(id) {
            continue; // left unacked: back in place when the channel closes
        }
        // Start afresh: without the dead-letter and retry headers the
        // pipeline (or the broker) added, as the contract lists them.
        let mut props = msg.delivery.properties.clone();
        if let Some(headers) = props.headers().clone() {
            let mut kept = FieldTable::default();
            for (name, value) in headers.inner() {
                if !shared::dead_letter::PIPELINE_HEADERS.contains(&name.as_str()) {
                    kept.insert(name.clone(), value.clone());
                }
            }
            props = props.with_headers(kept);
        }
        let publish = async {
            channel
                .basic_publish(
                    topology.exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions {
                        mandatory: true,  // nowhere to go must fail, not drop it
                        immediate: false, // not supported by RabbitMQ
                    },
                    &msg.delivery.data,
                    props,
                )
                .await?
                .await
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => {}
            other => {
                log::warn!("redrive of {id} stopped: republish not confirmed: {other:?}");
                return Err(broker_error(state, PublishError::Nacked));
            }
        }
        // Only now, with the copy confirmed, does the dead letter go.
        msg.delivery
            .acker
            .ack(BasicAckOptions { multiple: false })
            .await
            .map_err(|e| broker_error(state, e))?;
        return Ok(true);
    }
    Ok(false)
}
