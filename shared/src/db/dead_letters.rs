//! The `dead_letters` table: which messages were dead-lettered and why (the
//! messages themselves are in `messages.dead`). A new record of a message
//! with a callback owes its `message.dead_lettered` notification, and may
//! complete its batch, in the transaction that writes it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use serde::Serialize;
use uuid::Uuid;

use super::age::millis;
use super::batches::{self, Settled};
use super::webhook_deliveries;
use crate::envelope::Extras;
use crate::events::{MessageStatus, Notification};
use crate::schema::dead_letters;

/// A dead-lettered message id and why (the message is in `messages.dead`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = dead_letters)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct DeadLetter {
    /// The message id.
    pub id: Uuid,
    /// The reason (the `x-error` header of the dead letter).
    pub reason: String,
    /// Attempts made before giving up.
    pub attempts: i32,
    /// When it was dead-lettered (the latest time, if more than once).
    pub dead_lettered_at: DateTime<Utc>,
    /// The batch of the message, if any (kept so that a record put back
    /// after a failed redrive still counts for its batch). Not shown.
    #[serde(skip)]
    pub batch_id: Option<Uuid>,
    /// The kind of the message (`default` unless it had another).
    pub kind: String,
}

impl DeadLetter {
    /// The message's status this record tells.
    pub fn status(&self) -> MessageStatus {
        MessageStatus::DeadLettered {
            id: self.id,
            reason: self.reason.clone(),
            attempts: self.attempts,
            dead_lettered_at: self.dead_lettered_at,
            batch_id: self.batch_id,
            kind: self.kind.clone(),
        }
    }
}

#[derive(QueryableByName)]
struct Put {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// Record a dead letter with its batch and callback, in one transaction:
/// a new record owes its notification when the message has a callback, and
/// its batch is completed if this was its last open item. With `overwrite`
/// the latest reason wins (the consumer's own dead letters), else an
/// existing record is kept (the broker's, indexed). The record's time is
/// the database's.
pub fn record(
    conn: &mut PgConnection,
    record: &DeadLetter,
    extras: &Extras,
    overwrite: bool,
) -> QueryResult<Settled> {
    let batch_id = extras.batch.as_ref().map(|b| b.id);
    conn.transaction(|conn| {
        if let Some(batch) = &extras.batch {
            batches::ensure(conn, &[batch])?;
        }
        // The time of a new record, None when one existed.
        let new_at = diesel::sql_query("SELECT pipeline_put_dead_letter($1, $2, $3, $4, $5) AS at")
            .bind::<SqlUuid, _>(record.id)
            .bind::<Text, _>(&record.reason)
            .bind::<Integer, _>(record.attempts)
            .bind::<Nullable<SqlUuid>, _>(batch_id)
            .bind::<Bool, _>(overwrite)
            .get_result::<Put>(conn)?
            .at;
        if record.kind != crate::kind::DEFAULT {
            // `pipeline_put_dead_letter` predates kinds; only dead letters
            // of another kind pay this statement.
            diesel::update(dead_letters::table.find(record.id))
                .set(dead_letters::kind.eq(&record.kind))
                .execute(conn)?;
        }
        let mut owed = false;
        if let (Some(at), Some(url)) = (new_at, &extras.callback_url) {
            let state = DeadLetter {
                dead_lettered_at: at,
                batch_id,
                ..record.clone()
            }
            .status();
            webhook_deliveries::owe(conn, &[(url, Notification::of_message(&state, at))])?;
            owed = true;
        }
        let mut settled = match batch_id {
            Some(batch) => batches::settle(conn, &[batch])?,
            None => Settled::default(),
        };
        settled.owed |= owed;
        Ok(settled)
    })
}

/// Record dead letters found in the dead-letter index queue, none with a
/// batch or callback (those go through [`record`]); a record the consumer
/// already wrote (with its own reason) is kept.
pub fn index(conn: &mut PgConnection, records: &[DeadLetter]) -> QueryResult<()> {
    diesel::insert_into(dead_letters::table)
        .values(records)
        .on_conflict_do_nothing()
        .execute(conn)
        .map(|_| ())
}

/// The dead-letter record of message `id`, if it was dead-lettered.
pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<DeadLetter>> {
    dead_letters::table
        .find(id)
        .select(DeadLetter::as_select())
        .first(conn)
        .optional()
}

/// Delete the dead-letter record of message `id` (it was redriven: queued
/// again), returning it so that a failed redrive can put it back. Its
/// batch, if any, is pending again (in the same transaction): the item is
/// in flight, and the batch completes anew when it settles.
pub fn forget(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<DeadLetter>> {
    conn.transaction(|conn| {
        let forgotten = diesel::delete(dead_letters::table.find(id))
            .returning(DeadLetter::as_returning())
            .get_result(conn)
            .optional()?;
        if let Some(batch) = forgotten.as_ref().and_then(|d| d.batch_id) {
            batches::reopen(conn, batch)?;
        }
        Ok(forgotten)
    })
}

/// Put back a record [`forget`] removed, unless the message was
/// dead-lettered again meanwhile (the newer record wins).
/// Its batch, reopened by the forgetting, is completed again if this was
/// its last open item.
pub fn restore(conn: &mut PgConnection, record: &DeadLetter) -> QueryResult<()> {
    conn.transaction(|conn| {
        diesel::insert_into(dead_letters::table)
            .values(record)
            .on_conflict(dead_letters::id)
            .do_nothing()
            .execute(conn)?;
        if let Some(batch) = record.batch_id {
            batches::settle(conn, &[batch])?;
        }
        Ok(())
    })
}

/// Delete every dead-letter record (the dead-letter queue was purged).
/// Returns how many.
pub fn forget_all(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::delete(dead_letters::table).execute(conn)
}

/// Delete up to `limit` records older than `age` whose message has been
/// stored since (it was redriven, or republished by another tool, and
/// stored: its row tells its status, and the record counts for nothing,
/// not even for its batch). A record whose message is not stored is the
/// index of a dead letter that may still be in `messages.dead`: it stays,
/// whatever its age (redriving or purging the queue deletes those at
/// once). Returns how many.
pub fn prune_settled(conn: &mut PgConnection, age: Duration, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM dead_letters WHERE ctid = ANY(ARRAY(
            SELECT d.ctid FROM dead_letters d
             WHERE d.dead_lettered_at < now() - $1 * interval '1 millisecond'
               AND EXISTS (SELECT 1 FROM messages m WHERE m.id = d.id)
             LIMIT $2 FOR UPDATE OF d SKIP LOCKED))",
    )
    .bind::<BigInt, _>(millis(age))
    .bind::<BigInt, _>(limit)
    .execute(conn)
}
