//! Batches and the webhook outbox in PostgreSQL: storing a message, recording
//! a dead letter and completing a batch each owe their notification in the
//! same transaction, and consumers deliver from the `webhook_deliveries`
//! table. Blocking, like everything Diesel: call from `spawn_blocking`.
//!
//! The common message (no batch, no callback) never reaches this module's
//! extra statements: [`store_envelopes`] is then the plain multi-row insert.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use serde::Serialize;
use uuid::Uuid;

use crate::db::{DbError, RowOutcome, MAX_ROWS_PER_INSERT};
use crate::envelope::{BatchRef, Envelope, Extras};
use crate::models::{DeadLetter, NewMessage};
use crate::schema::{batches, messages, webhook_deliveries};

/// A batch whose last item was just settled, by this transaction.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct CompletedBatch {
    /// The batch id.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// `completed` or `completed_with_failures`.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// Items in the batch.
    #[diesel(sql_type = Integer)]
    pub total: i32,
    /// Items stored.
    #[diesel(sql_type = BigInt)]
    pub stored: i64,
    /// Items dead-lettered.
    #[diesel(sql_type = BigInt)]
    pub dead_lettered: i64,
}

/// What storing a set of envelopes did.
#[derive(Debug, Default)]
pub struct StoreResult {
    /// Ids newly stored (duplicates are not among them).
    pub new_ids: Vec<Uuid>,
    /// Batches this transaction completed.
    pub completed: Vec<CompletedBatch>,
    /// Whether notifications were owed (wake the deliverer).
    pub owed: bool,
}

#[derive(Insertable)]
#[diesel(table_name = batches)]
struct NewBatch<'a> {
    id: Uuid,
    total: i32,
    callback_url: Option<&'a str>,
    created_at: DateTime<Utc>,
}

fn needs_extras(e: &Envelope) -> bool {
    e.batch.is_some() || e.callback_url.is_some()
}

/// Store `envelopes` in one transaction, skipping ids already stored; for
/// the new rows that have a callback or a batch, owe their notifications
/// and complete their batches in the same transaction.
pub fn store_envelopes(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
) -> QueryResult<StoreResult> {
    let rows: Vec<NewMessage<'_>> = envelopes.iter().map(NewMessage::from).collect();
    conn.transaction(|conn| {
        let mut new_ids = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
            // RETURNING under ON CONFLICT DO NOTHING yields only the rows
            // actually inserted.
            new_ids.extend(
                diesel::insert_into(messages::table)
                    .values(chunk)
                    .on_conflict(messages::id)
                    .do_nothing()
                    .returning(messages::id)
                    .get_results::<Uuid>(conn)?,
            );
        }
        let mut result = StoreResult {
            new_ids,
            ..StoreResult::default()
        };
        if envelopes.iter().any(needs_extras) {
            after_store(conn, envelopes, &mut result)?;
        }
        Ok(result)
    })
}

/// Store `envelopes` one by one through `pipeline_try_insert`, which
/// reports each row's failure with its SQLSTATE instead of raising it. When
/// some rows need extras, all of it runs in one transaction (each row's
/// failure is rolled back to its own savepoint inside the function), so the
/// extras commit with the rows. `Err`: the connection failed.
pub fn try_store_each(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
) -> Result<(Vec<RowOutcome>, StoreResult), DbError> {
    let rows: Vec<NewMessage<'_>> = envelopes.iter().map(NewMessage::from).collect();
    if !envelopes.iter().any(needs_extras) {
        let outcomes = crate::db::try_insert_each(conn, &rows)?;
        return Ok((outcomes, StoreResult::default()));
    }
    let done = conn.transaction(|conn| -> Result<_, DbError> {
        let outcomes = crate::db::try_insert_each(conn, &rows)?;
        let new_ids = envelopes
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == RowOutcome::Inserted)
            .map(|(e, _)| e.id)
            .collect();
        let mut result = StoreResult {
            new_ids,
            ..StoreResult::default()
        };
        after_store(conn, envelopes, &mut result)?;
        Ok((outcomes, result))
    })?;
    Ok(done)
}

/// The extras of a store, in its transaction: create the batches of the new
/// rows, owe `message.stored` for those with a callback, and complete the
/// batches whose last item this was.
fn after_store(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
    result: &mut StoreResult,
) -> QueryResult<()> {
    let new: std::collections::HashSet<Uuid> = result.new_ids.iter().copied().collect();
    let fresh: Vec<&Envelope> = envelopes
        .iter()
        .filter(|e| new.contains(&e.id) && needs_extras(e))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let refs: Vec<&BatchRef> = fresh.iter().filter_map(|e| e.batch.as_ref()).collect();
    ensure_batches(conn, &refs)?;
    let (ids, urls): (Vec<Uuid>, Vec<String>) = fresh
        .iter()
        .filter_map(|e| e.callback_url.as_ref().map(|u| (e.id, u.clone())))
        .unzip();
    if !ids.is_empty() {
        diesel::sql_query("SELECT pipeline_owe_stored($1, $2)")
            .bind::<Array<SqlUuid>, _>(&ids)
            .bind::<Array<Text>, _>(&urls)
            .execute(conn)?;
        result.owed = true;
    }
    let batch_ids: Vec<Uuid> = refs.iter().map(|b| b.id).collect();
    result.completed = settle_batches(conn, &batch_ids)?;
    result.owed |= refs
        .iter()
        .any(|b| b.callback_url.is_some() && result.completed.iter().any(|c| c.id == b.id));
    Ok(())
}

/// Create the rows of these batches if absent, in id order (two consumers
/// creating the same batches wait for each other in one order: no deadlock).
fn ensure_batches(conn: &mut PgConnection, refs: &[&BatchRef]) -> QueryResult<()> {
    let mut sorted: Vec<&BatchRef> = refs.to_vec();
    sorted.sort_by_key(|b| b.id);
    sorted.dedup_by_key(|b| b.id);
    if sorted.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewBatch<'_>> = sorted
        .iter()
        .map(|b| NewBatch {
            id: b.id,
            total: i32::try_from(b.total).unwrap_or(i32::MAX),
            callback_url: b.callback_url.as_deref(),
            created_at: b.created_at,
        })
        .collect();
    diesel::insert_into(batches::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .map(|_| ())
}

/// Complete the batches among `ids` whose items are all settled (see the
/// SQL function `pipeline_settle_batches` for why exactly once).
pub fn settle_batches(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<Vec<CompletedBatch>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query("SELECT * FROM pipeline_settle_batches($1)")
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

/// Record a dead letter with its batch and callback, owing its
/// notification and completing its batch in one transaction. With
/// `overwrite` the latest reason wins (the consumer's own dead letters),
/// else an existing record is kept (the broker's, indexed). Returns the
/// batches completed, and whether a notification was owed.
pub fn record_dead_letter(
    conn: &mut PgConnection,
    record: &DeadLetter,
    extras: &Extras,
    overwrite: bool,
) -> QueryResult<(Vec<CompletedBatch>, bool)> {
    conn.transaction(|conn| {
        if let Some(batch) = &extras.batch {
            ensure_batches(conn, &[batch])?;
        }
        let new =
            diesel::sql_query("SELECT pipeline_record_dead_letter($1, $2, $3, $4, $5, $6) AS flag")
                .bind::<SqlUuid, _>(record.id)
                .bind::<Text, _>(&record.reason)
                .bind::<Integer, _>(record.attempts)
                .bind::<Nullable<SqlUuid>, _>(extras.batch.as_ref().map(|b| b.id))
                .bind::<Nullable<Text>, _>(extras.callback_url.as_deref())
                .bind::<Bool, _>(overwrite)
                .get_result::<Flag>(conn)?
                .flag;
        let mut owed = new && extras.callback_url.is_some();
        let completed = match &extras.batch {
            Some(batch) => settle_batches(conn, &[batch.id])?,
            None => Vec::new(),
        };
        owed |= extras
            .batch
            .as_ref()
            .is_some_and(|b| b.callback_url.is_some())
            && !completed.is_empty();
        Ok((completed, owed))
    })
}

/// Put batch `id` back to pending: one of its dead letters was redriven.
pub fn reopen_batch(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
    use crate::schema::batches::dsl;
    diesel::update(
        dsl::batches
            .find(id)
            .filter(dsl::completed_at.is_not_null()),
    )
    .set((
        dsl::completed_at.eq(None::<DateTime<Utc>>),
        dsl::status.eq("pending"),
    ))
    .execute(conn)
    .map(|_| ())
}

/// A batch as `GET /batches/{id}` shows it; the counts are counted from the
/// rows, never kept.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct BatchView {
    /// The batch id.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// Items in the batch.
    #[diesel(sql_type = Integer)]
    pub total: i32,
    /// Items stored.
    #[diesel(sql_type = BigInt)]
    pub stored: i64,
    /// Items dead-lettered (and not stored since).
    #[diesel(sql_type = BigInt)]
    pub dead_lettered: i64,
    /// `pending`, `completed` or `completed_with_failures`.
    #[diesel(sql_type = Text)]
    pub status: String,
    /// When the producer accepted it.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// When its last item was settled (None while pending).
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub completed_at: Option<DateTime<Utc>>,
}

impl BatchView {
    /// Items neither stored nor dead-lettered yet.
    pub fn pending(&self) -> i64 {
        (i64::from(self.total) - self.stored - self.dead_lettered).max(0)
    }
}

/// The batch `id`, if any item of it has reached the database. Once it is
/// completed, every item not stored counts as dead-lettered, even if its
/// dead letter was purged since.
pub fn find_batch(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<BatchView>> {
    diesel::sql_query(
        "SELECT b.id, b.total, b.status, b.created_at, b.completed_at,
                (SELECT count(*) FROM messages m WHERE m.batch_id = b.id) AS stored,
                (SELECT count(*) FROM dead_letters d
                  WHERE d.batch_id = b.id
                    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.id)) AS dead_lettered
         FROM batches b WHERE b.id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .get_result::<BatchView>(conn)
    .optional()
    .map(|found| {
        found.map(|mut b| {
            if b.completed_at.is_some() {
                b.dead_lettered = (i64::from(b.total) - b.stored).max(0);
            }
            b
        })
    })
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
pub fn latest_delivery(conn: &mut PgConnection, subject: Uuid) -> QueryResult<Option<Delivery>> {
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
    diesel::sql_query(
        "DELETE FROM webhook_deliveries
          WHERE id IN (SELECT id FROM webhook_deliveries
                        WHERE status = 'delivered'
                          AND delivered_at < now() - $1 * interval '1 second'
                        LIMIT $2
                        FOR UPDATE SKIP LOCKED)",
    )
    .bind::<BigInt, _>(i64::try_from(age.as_secs()).unwrap_or(i64::MAX))
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
