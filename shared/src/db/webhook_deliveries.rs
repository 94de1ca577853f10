//! The `webhook_deliveries` table, the webhook outbox: one row per
//! notification owed, written in the transaction that makes it owed
//! ([`owe`]), then claimed, attempted and recorded by the consumers'
//! deliverers, and shown and resent by the producer's tools.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid};
use serde::Serialize;
use uuid::Uuid;

use super::age::millis;
use crate::events::Notification;
use crate::schema::webhook_deliveries;

#[derive(Insertable)]
#[diesel(table_name = webhook_deliveries)]
struct NewDelivery<'a> {
    id: Uuid,
    subject_id: Uuid,
    event_type: &'a str,
    url: &'a str,
    payload: &'a str,
}

/// Owe each notification to its URL. Call it in the transaction that
/// writes what the notification reports, so both commit or neither does.
pub fn owe<U: AsRef<str>>(conn: &mut PgConnection, owed: &[(U, Notification)]) -> QueryResult<()> {
    if owed.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewDelivery<'_>> = owed
        .iter()
        .map(|(url, n)| NewDelivery {
            // The `webhook-id`: the same on every attempt.
            id: Uuid::new_v4(),
            subject_id: n.subject,
            event_type: n.event_type,
            url: url.as_ref(),
            payload: &n.payload,
        })
        .collect();
    diesel::insert_into(webhook_deliveries::table)
        .values(&rows)
        .execute(conn)
        .map(|_| ())
}

/// One row of the outbox, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = webhook_deliveries)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Delivery {
    /// The `webhook-id`.
    pub id: Uuid,
    /// The message or batch.
    pub subject_id: Uuid,
    /// `message.stored`, `message.dead_lettered` or `batch.completed`.
    pub event_type: String,
    /// Where it goes.
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made (or started).
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: DateTime<Utc>,
    /// The HTTP status of the last answer.
    pub last_status: Option<i32>,
    /// The last failure without an answer (timeout, refused, ...).
    pub last_error: Option<String>,
    /// When it was owed.
    pub created_at: DateTime<Utc>,
    /// When a 2xx answered it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The latest notification about `subject` (a message or a batch).
pub fn latest(conn: &mut PgConnection, subject: Uuid) -> QueryResult<Option<Delivery>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::subject_id.eq(subject))
        .order(webhook_deliveries::created_at.desc())
        .select(Delivery::as_select())
        .first(conn)
        .optional()
}

/// Failed deliveries, oldest first, and how many there are in all.
pub fn list_failed(conn: &mut PgConnection, limit: i64) -> QueryResult<(Vec<Delivery>, i64)> {
    let rows = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq("failed"))
        .order((
            webhook_deliveries::created_at.asc(),
            webhook_deliveries::id.asc(),
        ))
        .limit(limit)
        .select(Delivery::as_select())
        .load(conn)?;
    let total = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq("failed"))
        .count()
        .get_result(conn)?;
    Ok((rows, total))
}

/// Put up to `limit` failed deliveries (oldest first) back to pending, due
/// now, with a fresh attempt count and age. Returns how many.
pub fn resend_failed(conn: &mut PgConnection, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                next_attempt_at = now(), created_at = now()
         WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'failed'
                      ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<BigInt, _>(limit)
    .execute(conn)
}

/// Delete up to `limit` deliveries delivered more than `age` ago (the outbox
/// would grow for ever otherwise). Returns how many.
pub fn prune_delivered(conn: &mut PgConnection, age: Duration, limit: i64) -> QueryResult<usize> {
    prune_where(conn, "status = 'delivered' AND delivered_at", age, limit)
}

/// Delete up to `limit` deliveries that finally failed and were owed more
/// than `age` ago (a failed row has no time of its own; it failed at most
/// `WEBHOOK_MAX_AGE_SECS` after it was owed). Returns how many.
pub fn prune_failed(conn: &mut PgConnection, age: Duration, limit: i64) -> QueryResult<usize> {
    prune_where(conn, "status = 'failed' AND created_at", age, limit)
}

/// Delete up to `limit` pending deliveries due for more than `age`: no
/// deliverer has claimed them for that long (none is configured: no
/// `WEBHOOK_SECRET` anywhere), so they expire as delivered ones do. A
/// deliverer that runs claims a due row within `WEBHOOK_POLL_MS`, and a
/// claim or a retry moves `next_attempt_at` forward, so a row being
/// delivered is never this overdue. Returns how many.
pub fn expire_undelivered(
    conn: &mut PgConnection,
    age: Duration,
    limit: i64,
) -> QueryResult<usize> {
    prune_where(conn, "status = 'pending' AND next_attempt_at", age, limit)
}

/// Delete up to `limit` rows where `status_and_time` (a status test and
/// the time column, each covered by a partial index) is older than `age`.
fn prune_where(
    conn: &mut PgConnection,
    status_and_time: &'static str,
    age: Duration,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "DELETE FROM webhook_deliveries WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM webhook_deliveries
             WHERE {status_and_time} < now() - $1 * interval '1 millisecond'
             LIMIT $2 FOR UPDATE SKIP LOCKED))"
    ))
    .bind::<BigInt, _>(millis(age))
    .bind::<BigInt, _>(limit)
    .execute(conn)
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    /// The `webhook-id`.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// Where it goes.
    #[diesel(sql_type = Text)]
    pub url: String,
    /// The body.
    #[diesel(sql_type = Text)]
    pub payload: String,
    /// Attempts including this one.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    /// When it was owed.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// Claim up to `limit` due deliveries for an attempt. `SKIP LOCKED` lets
/// consumers claim side by side without waiting on each other, and the
/// claim pushes `next_attempt_at` forward by `lease`: if this process dies
/// before recording the outcome, the row is due again when the lease ends.
pub fn claim_due(
    conn: &mut PgConnection,
    limit: i64,
    lease: Duration,
) -> QueryResult<Vec<Claimed>> {
    diesel::sql_query(
        "UPDATE webhook_deliveries w
            SET next_attempt_at = now() + $2 * interval '1 millisecond',
                attempts = w.attempts + 1
          WHERE w.id IN (SELECT id FROM webhook_deliveries
                          WHERE status = 'pending' AND next_attempt_at <= now()
                          ORDER BY next_attempt_at
                          LIMIT $1
                          FOR UPDATE SKIP LOCKED)
      RETURNING w.id, w.url, w.payload, w.attempts, w.created_at",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
    .load(conn)
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx.
    Delivered {
        /// The status.
        status: i32,
    },
    /// Try again after `delay`.
    Retry {
        /// The HTTP status, if there was an answer.
        status: Option<i32>,
        /// Why, if there was no answer.
        error: Option<String>,
        /// How long to wait.
        delay: Duration,
    },
    /// Not attempted (the destination was busy or paused): due again after
    /// `delay`, and the claim's attempt given back.
    Postponed {
        /// How long to wait.
        delay: Duration,
    },
    /// Give up: a 410, or out of attempts or time.
    Failed {
        /// The HTTP status, if there was an answer.
        status: Option<i32>,
        /// Why.
        error: Option<String>,
    },
}

/// Record the outcome of an attempt on delivery `id`.
pub fn record_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    outcome: &AttemptOutcome,
) -> QueryResult<()> {
    use webhook_deliveries::dsl as w;
    let target = w::webhook_deliveries.find(id);
    match outcome {
        AttemptOutcome::Delivered { status } => diesel::update(target)
            .set((
                w::status.eq("delivered"),
                w::last_status.eq(Some(*status)),
                w::last_error.eq(None::<String>),
                w::delivered_at.eq(Some(Utc::now())),
            ))
            .execute(conn),
        AttemptOutcome::Retry {
            status,
            error,
            delay,
        } => {
            let due = Utc::now()
                + chrono::Duration::from_std(*delay).unwrap_or(chrono::Duration::hours(1));
            diesel::update(target)
                .set((
                    w::last_status.eq(*status),
                    w::last_error.eq(error.as_deref()),
                    w::next_attempt_at.eq(due),
                ))
                .execute(conn)
        }
        AttemptOutcome::Postponed { delay } => {
            let due = Utc::now()
                + chrono::Duration::from_std(*delay).unwrap_or(chrono::Duration::hours(1));
            diesel::update(target)
                .set((w::attempts.eq(w::attempts - 1), w::next_attempt_at.eq(due)))
                .execute(conn)
        }
        AttemptOutcome::Failed { status, error } => diesel::update(target)
            .set((
                w::status.eq("failed"),
                w::last_status.eq(*status),
                w::last_error.eq(error.as_deref()),
            ))
            .execute(conn),
    }
    .map(|_| ())
}
