//! A handler's one call for scheduling: [`requested`] reads the request's
//! `deliver_at` / `delay_seconds`, and [`hold`] keeps the messages that
//! ask for later in PostgreSQL instead of publishing them. The 202 follows
//! the commit: from then on the message is as durable as the database.

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::db::scheduled_messages::{self, NewScheduled};
use shared::Envelope;

use crate::error::ApiError;
use crate::state::AppState;

/// What a request asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// When to deliver: `None` for now (neither field, or a time not in
    /// the future).
    pub deliver_at: Option<DateTime<Utc>>,
    /// The fields as sent (`None` if neither): part of an
    /// `Idempotency-Key`'s fingerprint, so that a retry whose `delay_seconds`
    /// resolves to another time is still the same request.
    pub asked: Option<String>,
}

/// Read `deliver_at` / `delay_seconds`: a 400 naming the field when
/// malformed, both given, or beyond `MAX_SCHEDULE_AHEAD`. `prefix` goes
/// before the error (a batch item's index).
pub fn requested(
    state: &AppState,
    deliver_at: Option<&Value>,
    delay_seconds: Option<&Value>,
    prefix: &str,
) -> Result<Requested, ApiError> {
    let at = shared::schedule::requested(
        deliver_at,
        delay_seconds,
        Utc::now(),
        state.max_schedule_ahead,
    )
    .map_err(|e| ApiError::BadRequest(format!("{prefix}{e}")))?;
    let given =
        |name: &str, v: Option<&Value>| v.filter(|v| !v.is_null()).map(|v| format!("{name}={v}"));
    Ok(Requested {
        deliver_at: at,
        asked: given("deliver_at", deliver_at).or_else(|| given("delay_seconds", delay_seconds)),
    })
}

/// One row to hold, owned (it moves to the blocking thread): id,
/// `deliver_at`, body, kind, batch.
type HeldRow = (
    uuid::Uuid,
    DateTime<Utc>,
    String,
    String,
    Option<uuid::Uuid>,
);

/// Hold `envelopes` (each with its `deliver_at`) until they are due, in one
/// transaction. Returns each one's `deliver_at` as held: a retried
/// `Idempotency-Key` is answered with the time its first request set.
pub async fn hold(
    state: &AppState,
    envelopes: &[Envelope],
) -> Result<Vec<DateTime<Utc>>, ApiError> {
    let rows: Vec<HeldRow> = envelopes
        .iter()
        .map(|e| {
            (
                e.id,
                e.deliver_at.unwrap_or(e.created_at),
                String::from_utf8_lossy(&e.to_body()).into_owned(),
                e.kind.as_str().to_owned(),
                e.batch.as_ref().map(|b| b.id),
            )
        })
        .collect();
    let held = state
        .with_db(move |conn| {
            let new: Vec<NewScheduled<'_>> = rows
                .iter()
                .map(|(id, deliver_at, body, kind, batch_id)| NewScheduled {
                    id: *id,
                    deliver_at: *deliver_at,
                    body,
                    kind,
                    batch_id: *batch_id,
                })
                .collect();
            Ok(scheduled_messages::schedule(conn, &new)?)
        })
        .await?;
    state
        .metrics
        .schedule
        .scheduled
        .inc_by(envelopes.len() as u64);
    Ok(held)
}
