//! Scheduled messages on the dashboard (issue 19): how many wait, when the
//! next falls due and the soonest few, for the overview; and the page of a
//! message that waits or was cancelled. Cancelling is the API's own
//! `DELETE /messages/{id}` (API token): the page adds no route of its own.
//!
//! The overview's figures are read from the database with the same reuse
//! as its other counts: polls within the overview's reuse interval share
//! one query per worker, so the work stays bounded however many pages are
//! open. Both reads walk the partial due index (`state = 'scheduled'`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::db::scheduled_messages::{self, Upcoming, Waiting};
use shared::schedule::ScheduleStatus;
use shared::Envelope;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// How many of the soonest the overview lists: enough to find one to look
/// at, small enough for every poll.
pub const UPCOMING: i64 = 20;

/// The last figures read, per worker.
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, Value)>>,
}

/// `scheduled` of the overview: `{"waiting", "next_due", "next": [{"id",
/// "deliver_at", "kind"}]}`, or null when the database does not answer.
/// A poll within `reuse_for` of the last query gets its answer.
pub async fn overview_figures(state: &AppState, cache: &Cache, reuse_for: Duration) -> Value {
    {
        let last = cache.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, figures)) = last.as_ref() {
            if at.elapsed() < reuse_for {
                return figures.clone();
            }
        }
    }
    let read = state
        .with_db(|conn| {
            Ok((
                scheduled_messages::waiting(conn)?,
                scheduled_messages::upcoming(conn, UPCOMING)?,
            ))
        })
        .await;
    let figures = match read {
        Ok((waiting, next)) => figures(waiting, &next),
        Err(e) => {
            log::debug!("overview: cannot read the scheduled messages: {e}");
            return Value::Null;
        }
    };
    *cache.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), figures.clone()));
    figures
}

fn figures(waiting: Waiting, next: &[Upcoming]) -> Value {
    let next: Vec<Value> = next
        .iter()
        .map(|u| json!({ "id": u.id, "deliver_at": u.deliver_at, "kind": u.kind }))
        .collect();
    json!({ "waiting": waiting.count, "next_due": waiting.next_due, "next": next })
}

/// The dashboard's page of message `id` if it waits or was cancelled (its
/// schedule's row, while the retention keeps it): the fields of a stored
/// one, plus `deliver_at`, `kind` and `cancelled_at`. `None` if it has no
/// such row (or was delivered meanwhile: a reload shows it stored).
pub async fn message_detail(state: &AppState, id: Uuid) -> Result<Option<Value>, ApiError> {
    let (status, body) = state
        .with_db(move |conn| {
            Ok((
                scheduled_messages::status(conn, id)?,
                scheduled_messages::body(conn, id)?,
            ))
        })
        .await?;
    // The content and acceptance time are in the envelope it will be
    // published with; a body that is not one (never written so) shows none.
    let envelope = body.and_then(|b| serde_json::from_str::<Envelope>(&b).ok());
    let (content, created_at) = match &envelope {
        Some(e) => (json!(e.content), json!(e.created_at)),
        None => (Value::Null, Value::Null),
    };
    Ok(status.map(|status| {
        let (name, deliver_at, kind, cancelled_at) = match status {
            ScheduleStatus::Scheduled {
                deliver_at, kind, ..
            } => ("scheduled", deliver_at, kind, None),
            ScheduleStatus::Cancelled {
                deliver_at,
                kind,
                cancelled_at,
                ..
            } => ("cancelled", deliver_at, kind, Some(cancelled_at)),
        };
        json!({
            "id": id,
            "status": name,
            "content": content,
            "created_at": created_at,
            "stored_at": Value::Null,
            "dead_letter": Value::Null,
            "deliver_at": deliver_at,
            "kind": kind,
            "cancelled_at": cancelled_at,
        })
    }))
}
