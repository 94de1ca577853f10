//! `GET /dead-letters?limit=N`: browse the dead-letter queue without
//! losing or reordering anything.

use actix_web::{web, HttpResponse};
use lapin::options::BasicGetOptions;
use lapin::{Acker, Channel};
use serde_json::{json, Value};
use shared::dead_letter;

use crate::error::ApiError;
use crate::schemas::{AdminRefusal, DeadLetterList, ErrorBody};
use crate::state::AppState;

use super::hand_back::{hand_back, SCAN};
use super::params::Params;

/// Header `name` as the listing shows it (the contract's one reader).
fn header_text(props: &lapin::BasicProperties, name: &str) -> Option<dead_letter::HeaderValue> {
    dead_letter::header(props.headers().as_ref(), name)
}

/// `GET /dead-letters?limit=N`: the first N dead letters, oldest first,
/// with id, content (when decodable), reason, attempts and when. Read with
/// unacknowledged gets on a channel of its own, then handed back in order
/// (`hand_back`): nothing is lost and the queue keeps its order.
#[utoipa::path(get, path = "/dead-letters", tag = "dead letters",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many, default 100")),
    responses(
        (status = 200, description = "The first dead letters, oldest first, and how many there are", body = DeadLetterList),
        (status = 400, description = "Bad limit", body = ErrorBody),
        AdminRefusal,
        (status = 503, description = "Broker unavailable", body = ErrorBody),
    ))]
pub async fn list(
    params: web::Query<Params>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit_or_default()?;
    let queue = state.publisher.topology().dead_queue.as_str();
    let timeout = state.publisher.publish_timeout();
    let (items, remaining) = state
        .with_channel("browsed", async |channel| {
            let (items, remaining, looked) = browse(channel, queue, limit).await?;
            hand_back(looked, timeout).await;
            Ok::<_, lapin::Error>((items, remaining))
        })
        .await?
        .map_err(|e| state.broker_unavailable(e))?;
    Ok(HttpResponse::Ok().json(json!({ "dead_letters": items, "total": remaining })))
}

/// The first `limit` letters as the listing shows them, the depth, and
/// the letters read (unacknowledged, oldest first) to hand back.
async fn browse(
    channel: &Channel,
    queue: &str,
    limit: u32,
) -> Result<(Vec<Value>, u32, Vec<Acker>), lapin::Error> {
    let mut items = Vec::new();
    let mut looked = Vec::new();
    let mut total = 0;
    // Every letter up to SCAN, not only the first `limit`: handing back
    // all of them is what keeps the order (see `hand_back`).
    while looked.len() < SCAN {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?;
        let Some(msg) = got else { break };
        looked.push(msg.delivery.acker.clone());
        if looked.len() == 1 {
            total = msg.message_count + 1;
        }
        if items.len() >= limit as usize {
            continue;
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
    Ok((items, total, looked))
}
