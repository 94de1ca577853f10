//! The `messages` table: storing envelopes (the one insert production
//! runs, which the bench measures too), reading them back in commit order,
//! and a message's status.
//!
//! A stored row with a callback owes its `message.stored` notification, and
//! a row of a batch may complete it, in the transaction that stores it. The
//! common message (no batch, no callback) never reaches those statements:
//! [`store`] is then the plain multi-row insert.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

use super::batches;
use super::dead_letters;
use super::error::{DbError, RowOutcome};
use super::scheduled_messages;
use super::webhook_deliveries;
use crate::envelope::{BatchRef, Envelope};
use crate::events::{BatchStatus, MessageStatus, Notification};
use crate::kind::Kind;
use crate::schema::messages;

/// PostgreSQL accepts at most 65 535 bind parameters per statement; a row of
/// `messages` takes at most four.
pub const MAX_ROWS_PER_INSERT: usize = 65_535 / 4;

/// A row to insert: one decoded envelope.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct NewMessage<'a> {
    /// The message id (primary key).
    pub id: Uuid,
    /// The text.
    pub content: &'a str,
    /// When the producer accepted it.
    pub created_at: DateTime<Utc>,
    /// Its batch, if any. `None` is written as `DEFAULT` in a multi-row
    /// insert: no extra bind parameter for the common message.
    pub batch_id: Option<Uuid>,
    /// Its kind; `None` for `default`, written as `DEFAULT` (the column's
    /// default is `'default'`): no extra bind parameter for the common
    /// message.
    pub kind: Option<&'a str>,
}

impl<'a> From<&'a Envelope> for NewMessage<'a> {
    fn from(e: &'a Envelope) -> Self {
        Self {
            id: e.id,
            content: &e.content,
            created_at: e.created_at,
            batch_id: e.batch.as_ref().map(|b| b.id),
            kind: (!e.kind.is_default()).then(|| e.kind.as_str()),
        }
    }
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Message {
    /// The message id.
    pub id: Uuid,
    /// The text.
    pub content: String,
    /// When the producer accepted it.
    pub created_at: DateTime<Utc>,
    /// When the consumer's transaction stored it.
    pub stored_at: DateTime<Utc>,
    /// Its kind of work (`default` unless it named one).
    pub kind: String,
}

/// The status of a stored row of batch `batch_id`.
fn stored_status(m: Message, batch_id: Option<Uuid>) -> MessageStatus {
    MessageStatus::Stored {
        id: m.id,
        content: m.content,
        timestamp: m.created_at,
        stored_at: m.stored_at,
        batch_id,
        kind: m.kind,
    }
}

/// What storing a set of envelopes did.
#[derive(Debug, Default)]
pub struct StoreResult {
    /// Ids newly stored (duplicates are not among them).
    pub new_ids: Vec<Uuid>,
    /// Batches this transaction completed.
    pub completed: Vec<BatchStatus>,
    /// Whether notifications were owed (wake the deliverer).
    pub owed: bool,
}

fn needs_extras(e: &Envelope) -> bool {
    e.batch.is_some() || e.callback_url.is_some()
}

/// Store `envelopes` in one transaction, skipping ids already stored; for
/// the new rows that have a callback or a batch, owe their notifications
/// and complete their batches in the same transaction. Every envelope
/// carries its own `created_at` (see [`store_checked`]).
pub fn store(conn: &mut PgConnection, envelopes: &[Envelope]) -> QueryResult<StoreResult> {
    store_checked(conn, envelopes, &HashSet::new())
}

/// [`store`], where the ids in `undated` came without a `created_at` of
/// their own. The key is (id, created_at), the partition key being part of
/// it: a redelivery of a dated envelope hits its row, but an undated one
/// may carry another time than its first delivery, so those ids are looked
/// up by id alone first (each under a transaction lock of its id, so two
/// deliveries of one id wait for each other) and skipped if stored.
pub fn store_checked(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
    undated: &HashSet<Uuid>,
) -> QueryResult<StoreResult> {
    conn.transaction(|conn| {
        let skip = skipped(conn, envelopes, undated)?;
        let rows: Vec<NewMessage<'_>> = envelopes
            .iter()
            .zip(&skip)
            .filter(|(_, skip)| !**skip)
            .map(|(e, _)| NewMessage::from(e))
            .collect();
        let mut new_ids = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
            // RETURNING under ON CONFLICT DO NOTHING yields only the rows
            // actually inserted.
            new_ids.extend(
                diesel::insert_into(messages::table)
                    .values(chunk)
                    .on_conflict((messages::id, messages::created_at))
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

/// Which envelopes not to insert: an undated one whose id is stored
/// already, or came earlier in this batch (under another time, maybe); and
/// a scheduled one that was cancelled (the others have their rows of
/// `scheduled_messages` marked delivered, in this transaction).
fn skipped(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
    undated: &HashSet<Uuid>,
) -> QueryResult<Vec<bool>> {
    let mut seen = stored_undated(conn, envelopes, undated)?;
    let scheduled: Vec<Uuid> = envelopes
        .iter()
        .filter(|e| e.deliver_at.is_some())
        .map(|e| e.id)
        .collect();
    let cancelled = scheduled_messages::settle_for_store(conn, &scheduled)?;
    Ok(envelopes
        .iter()
        .map(|e| cancelled.contains(&e.id) || (undated.contains(&e.id) && !seen.insert(e.id)))
        .collect())
}

/// Of the envelopes whose ids are in `undated`, the ids already stored
/// (under any `created_at`), after locking each id for this transaction
/// (in one order: no deadlock between two consumers).
fn stored_undated(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
    undated: &HashSet<Uuid>,
) -> QueryResult<HashSet<Uuid>> {
    let mut ids: Vec<Uuid> = envelopes
        .iter()
        .map(|e| e.id)
        .filter(|id| undated.contains(id))
        .collect();
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    ids.sort();
    ids.dedup();
    // The two-key form of the lock: a key space apart from the bigint
    // locks (migrations, retention).
    diesel::sql_query(
        "SELECT pg_advisory_xact_lock(1835365491, hashtext(i::text))
           FROM unnest($1) WITH ORDINALITY AS u(i, n) ORDER BY n",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(&ids)
    .execute(conn)?;
    let stored: Vec<Uuid> = messages::table
        .filter(messages::id.eq_any(&ids))
        .select(messages::id)
        .load(conn)?;
    Ok(stored.into_iter().collect())
}

#[derive(QueryableByName)]
struct TryInsert {
    #[diesel(sql_type = Text)]
    outcome: String,
}

/// Store each row on its own through the `pipeline_try_insert` function,
/// which reports failures with their SQLSTATE instead of raising them
/// (Diesel hides the SQLSTATE of most errors). One round trip per row.
fn try_insert_each(
    conn: &mut PgConnection,
    rows: &[NewMessage<'_>],
) -> Result<Vec<RowOutcome>, DbError> {
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in rows {
        // The kind goes in with the row, in one statement: no row is ever
        // seen without it, and the consumer's role may insert into
        // messages but not update it.
        let result = diesel::sql_query("SELECT pipeline_try_insert($1, $2, $3, $4, $5) AS outcome")
            .bind::<SqlUuid, _>(row.id)
            .bind::<Text, _>(row.content)
            .bind::<Timestamptz, _>(row.created_at)
            .bind::<Nullable<SqlUuid>, _>(row.batch_id)
            .bind::<Nullable<Text>, _>(row.kind)
            .get_result::<TryInsert>(conn)?;
        outcomes.push(RowOutcome::parse(&result.outcome));
    }
    Ok(outcomes)
}

/// Store `envelopes` one by one through `pipeline_try_insert` (the slow
/// path, after [`store`] failed), one outcome each. When some rows need
/// extras, all of it runs in one transaction (each row's failure is rolled
/// back to its own savepoint inside the function), so the extras commit
/// with the rows. `Err`: the connection failed.
pub fn try_store_each(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
    undated: &HashSet<Uuid>,
) -> Result<(Vec<RowOutcome>, StoreResult), DbError> {
    let rows: Vec<NewMessage<'_>> = envelopes.iter().map(NewMessage::from).collect();
    // Undated and scheduled rows are checked first (see `skipped`).
    let checked = envelopes
        .iter()
        .any(|e| undated.contains(&e.id) || e.deliver_at.is_some());
    if !checked && !envelopes.iter().any(needs_extras) {
        let outcomes = try_insert_each(conn, &rows)?;
        return Ok((outcomes, StoreResult::default()));
    }
    conn.transaction(|conn| -> Result<_, DbError> {
        let skip = skipped(conn, envelopes, undated)?;
        let fresh: Vec<NewMessage<'_>> = rows
            .iter()
            .zip(&skip)
            .filter(|(_, skip)| !**skip)
            .map(|(r, _)| r.clone())
            .collect();
        let mut inserted = try_insert_each(conn, &fresh)?.into_iter();
        // An undated row stored before is a duplicate, as the key makes a
        // dated one.
        let outcomes: Vec<RowOutcome> = skip
            .iter()
            .map(|skip| match skip {
                true => RowOutcome::Duplicate,
                false => inserted.next().unwrap_or(RowOutcome::Duplicate),
            })
            .collect();
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
    })
}

/// The extras of a store, in its transaction: create the batches of the new
/// rows, owe `message.stored` for those with a callback (once per message,
/// even if it came twice), and complete the batches whose last item this was.
fn after_store(
    conn: &mut PgConnection,
    envelopes: &[Envelope],
    result: &mut StoreResult,
) -> QueryResult<()> {
    let mut new: HashSet<Uuid> = result.new_ids.iter().copied().collect();
    let fresh: Vec<&Envelope> = envelopes
        .iter()
        .filter(|e| needs_extras(e) && new.remove(&e.id))
        .collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let refs: Vec<&BatchRef> = fresh.iter().filter_map(|e| e.batch.as_ref()).collect();
    if !refs.is_empty() {
        batches::ensure(conn, &refs)?;
    }
    let callbacks: Vec<(Uuid, &str)> = fresh
        .iter()
        .filter_map(|e| e.callback_url.as_deref().map(|u| (e.id, u)))
        .collect();
    if !callbacks.is_empty() {
        owe_stored(conn, &callbacks)?;
        result.owed = true;
    }
    if !refs.is_empty() {
        let batch_ids: Vec<Uuid> = refs.iter().map(|b| b.id).collect();
        let settled = batches::settle(conn, &batch_ids)?;
        result.completed = settled.completed;
        result.owed |= settled.owed;
    }
    Ok(())
}

/// Owe `message.stored` to each URL for its row, as stored (read back in
/// this transaction: `stored_at` is the database's), at the database's time.
fn owe_stored(conn: &mut PgConnection, callbacks: &[(Uuid, &str)]) -> QueryResult<()> {
    use diesel::dsl::sql;
    let ids: Vec<Uuid> = callbacks.iter().map(|(id, _)| *id).collect();
    let rows: Vec<(Message, Option<Uuid>, DateTime<Utc>)> = messages::table
        .filter(messages::id.eq_any(&ids))
        .select((
            Message::as_select(),
            messages::batch_id,
            sql::<Timestamptz>("clock_timestamp()"),
        ))
        .load(conn)?;
    let mut states: HashMap<Uuid, (MessageStatus, DateTime<Utc>)> = rows
        .into_iter()
        .map(|(m, batch_id, at)| (m.id, (stored_status(m, batch_id), at)))
        .collect();
    let owed: Vec<(&str, Notification)> = callbacks
        .iter()
        .filter_map(|(id, url)| {
            let (state, at) = states.remove(id)?;
            Some((*url, Notification::of_message(&state, at)))
        })
        .collect();
    webhook_deliveries::owe(conn, &owed)
}

/// A keyset cursor: the commit-order key of the last row of the previous
/// page: its inserting transaction's id, `created_at` and id.
pub type Cursor = (i64, DateTime<Utc>, Uuid);

/// Stored messages in commit order, after `after`: by inserting
/// transaction id, then acceptance time, then id; each with its cursor.
/// With `kind`, only that kind's rows (a kind other than `default` through
/// its own partial index, `messages_kind_txid_created_at_id_idx`).
///
/// Only rows whose transaction id is below the xmin of the current snapshot
/// are listed: every transaction older than such a row has ended, so no
/// row can still commit before it. A row of a later transaction that
/// committed first waits until the older ones end; a client following
/// cursors therefore never skips a row that commits late.
pub fn list_committed(
    conn: &mut PgConnection,
    after: Option<Cursor>,
    limit: i64,
    kind: Option<&Kind>,
) -> QueryResult<Vec<(Cursor, Message)>> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    let horizon = sql::<BigInt>("pg_snapshot_xmin(pg_current_snapshot())::text::bigint");
    let mut query = messages::table
        .select((messages::txid, Message::as_select()))
        .filter(messages::txid.lt(horizon))
        .order((
            messages::txid.asc(),
            messages::created_at.asc(),
            messages::id.asc(),
        ))
        .limit(limit)
        .into_boxed();
    if let Some(kind) = kind {
        query = query.filter(messages::kind.eq(kind.as_str().to_owned()));
        if !kind.is_default() {
            // The partial index's predicate, as a literal: implied by the
            // bound kind, but the planner can only prove it for a literal.
            query = query.filter(sql::<diesel::sql_types::Bool>("kind <> 'default'"));
        }
    }
    if let Some((txid, ts, id)) = after {
        query = query.filter(
            messages::txid.gt(txid).or(messages::txid.eq(txid).and(
                messages::created_at
                    .gt(ts)
                    .or(messages::created_at.eq(ts).and(messages::id.gt(id))),
            )),
        );
    }
    let rows: Vec<(i64, Message)> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(txid, m)| ((txid, m.created_at, m.id), m))
        .collect())
}

/// One stored message, if it is stored. By id alone: each partition's
/// primary key (id, created_at) answers it by its leading column.
pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Message>> {
    messages::table
        .filter(messages::id.eq(id))
        .select(Message::as_select())
        .first(conn)
        .optional()
}

/// What became of message `id`: stored, dead-lettered, or `None` (still
/// queued, or never accepted). Stored wins over dead-lettered: a redriven
/// message may be both.
pub fn status(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<MessageStatus>> {
    let row = messages::table
        .filter(messages::id.eq(id))
        .select((Message::as_select(), messages::batch_id))
        .first::<(Message, Option<Uuid>)>(conn)
        .optional()?;
    Ok(match row {
        Some((m, batch_id)) => Some(stored_status(m, batch_id)),
        None => dead_letters::find(conn, id)?.map(|d| d.status()),
    })
}
