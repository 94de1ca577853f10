//! The `batches` table: one row per batch, created by whichever consumer
//! stores (or dead-letters) an item first, completed exactly once by the
//! transaction that settles its last item, which also owes the batch's
//! `batch.completed` notification. Its counts are counted from the
//! `messages` and `dead_letters` rows, never kept.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

use super::age::millis;
use super::webhook_deliveries;
use crate::envelope::BatchRef;
use crate::events::{BatchStatus, Notification};
use crate::schema::batches;

/// What settling items did to their batches.
#[derive(Debug, Default)]
pub struct Settled {
    /// The batches this transaction completed.
    pub completed: Vec<BatchStatus>,
    /// Whether notifications were owed (wake the deliverer).
    pub owed: bool,
}

impl Settled {
    /// Add what another transaction settled.
    pub fn absorb(&mut self, other: Settled) {
        self.completed.extend(other.completed);
        self.owed |= other.owed;
    }
}

#[derive(Insertable)]
#[diesel(table_name = batches)]
struct NewBatch<'a> {
    id: Uuid,
    total: i32,
    callback_url: Option<&'a str>,
    created_at: DateTime<Utc>,
}

/// Create the rows of these batches if absent, in id order (two consumers
/// creating the same batches wait for each other in one order: no deadlock).
pub(crate) fn ensure(conn: &mut PgConnection, refs: &[&BatchRef]) -> QueryResult<()> {
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

/// A row of `pipeline_complete_batches`.
#[derive(QueryableByName)]
struct Completed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    total: i32,
    #[diesel(sql_type = BigInt)]
    stored: i64,
    #[diesel(sql_type = BigInt)]
    dead_lettered: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    completed_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    callback_url: Option<String>,
}

/// Complete the batches among `ids` whose items are all settled, and owe
/// `batch.completed` for those with a callback, in the caller's
/// transaction (see the SQL function `pipeline_complete_batches` for why
/// exactly once).
pub fn settle(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<Settled> {
    if ids.is_empty() {
        return Ok(Settled::default());
    }
    let rows: Vec<Completed> = diesel::sql_query("SELECT * FROM pipeline_complete_batches($1)")
        .bind::<Array<SqlUuid>, _>(ids)
        .load(conn)?;
    let mut owed = Vec::new();
    let mut completed = Vec::with_capacity(rows.len());
    for row in rows {
        let batch = BatchStatus {
            id: row.id,
            total: row.total,
            stored: row.stored,
            dead_lettered: row.dead_lettered,
            status: row.status,
            created_at: row.created_at,
            completed_at: Some(row.completed_at),
        };
        if let Some(url) = row.callback_url {
            owed.push((url, Notification::of_batch(&batch)));
        }
        completed.push(batch);
    }
    webhook_deliveries::owe(conn, &owed)?;
    Ok(Settled {
        completed,
        owed: !owed.is_empty(),
    })
}

/// Put batch `id` back to pending: one of its dead letters was redriven.
pub fn reopen(conn: &mut PgConnection, id: Uuid) -> QueryResult<()> {
    use batches::dsl;
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

/// A row of [`find`].
#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Integer)]
    total: i32,
    #[diesel(sql_type = BigInt)]
    stored: i64,
    #[diesel(sql_type = BigInt)]
    dead_lettered: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    completed_at: Option<DateTime<Utc>>,
}

/// The batch `id`, if any item of it has reached the database. Once it is
/// completed, every item not stored counts as dead-lettered, even if its
/// dead letter was purged since.
pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<BatchStatus>> {
    let found = diesel::sql_query(
        "SELECT b.id, b.total, b.status, b.created_at, b.completed_at,
                (SELECT count(*) FROM messages m WHERE m.batch_id = b.id) AS stored,
                (SELECT count(*) FROM dead_letters d
                  WHERE d.batch_id = b.id
                    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = d.id)) AS dead_lettered
         FROM batches b WHERE b.id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .get_result::<Found>(conn)
    .optional()?;
    Ok(found.map(|b| {
        let dead_lettered = match b.completed_at {
            Some(_) => (i64::from(b.total) - b.stored).max(0),
            None => b.dead_lettered,
        };
        BatchStatus {
            id: b.id,
            total: b.total,
            stored: b.stored,
            dead_lettered,
            status: b.status,
            created_at: b.created_at,
            completed_at: b.completed_at,
        }
    }))
}

/// Delete up to `limit` batches completed more than `age` ago (their
/// messages stay: they are the user's data, kept by `MESSAGE_RETENTION`).
/// A batch reopened meanwhile (a dead letter redriven) is pending, not
/// completed: it stays. Returns how many.
pub fn prune_completed(conn: &mut PgConnection, age: Duration, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM batches WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM batches
             WHERE completed_at < now() - $1 * interval '1 millisecond'
             LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind::<BigInt, _>(millis(age))
    .bind::<BigInt, _>(limit)
    .execute(conn)
}
