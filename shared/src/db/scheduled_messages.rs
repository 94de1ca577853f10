//! The `scheduled_messages` table: messages accepted for later, durable
//! from their 202 until stored or cancelled (see the migration
//! `scheduled_messages` for the states).
//!
//! Three writers, and why none can undo another:
//! * the producer's dispatcher claims what is due ([`claim_due`]), publishes
//!   it, and marks it `dispatched` ([`dispatched`]) or gives it back
//!   ([`release`]); a claim whose dispatcher died is given back when its
//!   lease ends ([`release_expired`]);
//! * the consumer's transaction that stores a scheduled message marks its
//!   row `delivered`, or finds it `cancelled` and stores nothing
//!   ([`settle_for_store`]);
//! * `DELETE /messages/{id}` marks it `cancelled` ([`cancel`]) unless it is
//!   delivered.
//!
//! The last two update the same row, so whichever comes second waits for
//! the first to commit and then sees its state: cancelled or stored, never
//! both and never neither. A dispatch that happens anyway (it raced the
//! cancel, or a dispatcher died after its publish) only puts a message in
//! the queue that the consumer will refuse.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::now;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

use super::age::millis;
use crate::schedule::ScheduleStatus;
use crate::schema::{dead_letters, scheduled_messages};

/// The states of a row (the column's CHECK lists the same).
pub mod state {
    /// Waiting for `deliver_at`.
    pub const SCHEDULED: &str = "scheduled";
    /// Claimed by a dispatcher until `lease_until`.
    pub const DISPATCHING: &str = "dispatching";
    /// Confirmed by the broker, not stored yet.
    pub const DISPATCHED: &str = "dispatched";
    /// Stored.
    pub const DELIVERED: &str = "delivered";
    /// Cancelled: never stored.
    pub const CANCELLED: &str = "cancelled";
}

/// A message to schedule.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = scheduled_messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct NewScheduled<'a> {
    /// The message id.
    pub id: Uuid,
    /// When it falls due.
    pub deliver_at: DateTime<Utc>,
    /// The envelope's JSON body, as it will be published.
    pub body: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Its batch, if any.
    pub batch_id: Option<Uuid>,
}

/// Schedule `rows` in one statement; an id scheduled already (a retried
/// `Idempotency-Key`) keeps its first row. Returns each id's `deliver_at`
/// as stored, in the order of `rows`: a retry is answered with the time
/// the first request set.
pub fn schedule(
    conn: &mut PgConnection,
    rows: &[NewScheduled<'_>],
) -> QueryResult<Vec<DateTime<Utc>>> {
    conn.transaction(|conn| {
        diesel::insert_into(scheduled_messages::table)
            .values(rows)
            .on_conflict(scheduled_messages::id)
            .do_nothing()
            .execute(conn)?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let stored: std::collections::HashMap<Uuid, DateTime<Utc>> = scheduled_messages::table
            .filter(scheduled_messages::id.eq_any(&ids))
            .select((scheduled_messages::id, scheduled_messages::deliver_at))
            .load::<(Uuid, DateTime<Utc>)>(conn)?
            .into_iter()
            .collect();
        Ok(rows
            .iter()
            .map(|r| stored.get(&r.id).copied().unwrap_or(r.deliver_at))
            .collect())
    })
}

/// A claimed row: what the dispatcher publishes.
#[derive(Debug, Clone, QueryableByName)]
pub struct Due {
    /// The message id.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// The envelope's JSON body.
    #[diesel(sql_type = Text)]
    pub body: String,
    /// When it fell due.
    #[diesel(sql_type = Timestamptz)]
    pub deliver_at: DateTime<Utc>,
}

/// Claim up to `limit` rows due by the database's clock, oldest first, for
/// `lease`: rows other dispatchers hold are skipped (`SKIP LOCKED`), so
/// several producers share the work without waiting for each other.
pub fn claim_due(conn: &mut PgConnection, limit: i64, lease: Duration) -> QueryResult<Vec<Due>> {
    diesel::sql_query(
        "UPDATE scheduled_messages s
            SET state = 'dispatching',
                lease_until = clock_timestamp() + $2 * interval '1 millisecond'
           FROM (SELECT id FROM scheduled_messages
                  WHERE state = 'scheduled' AND deliver_at <= clock_timestamp()
                  ORDER BY deliver_at
                  LIMIT $1
                  FOR UPDATE SKIP LOCKED) due
          WHERE s.id = due.id
      RETURNING s.id, s.body, s.deliver_at",
    )
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(millis(lease))
    .load(conn)
}

/// These claimed rows were confirmed by the broker. Rows no longer
/// `dispatching` (cancelled meanwhile, or already stored) keep their state.
pub fn dispatched(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(
        scheduled_messages::table
            .filter(scheduled_messages::id.eq_any(ids))
            .filter(scheduled_messages::state.eq(state::DISPATCHING)),
    )
    .set((
        scheduled_messages::state.eq(state::DISPATCHED),
        scheduled_messages::lease_until.eq(None::<DateTime<Utc>>),
        scheduled_messages::settled_at.eq(now),
    ))
    .execute(conn)
}

/// Give claimed rows back (their publish failed): due again at once.
pub fn release(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(
        scheduled_messages::table
            .filter(scheduled_messages::id.eq_any(ids))
            .filter(scheduled_messages::state.eq(state::DISPATCHING)),
    )
    .set((
        scheduled_messages::state.eq(state::SCHEDULED),
        scheduled_messages::lease_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
}

/// Give back the claims whose lease has ended (their dispatcher died or
/// hung): they are published again, and a copy already published is
/// stored once (the consumer's insert skips a stored id).
pub fn release_expired(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::update(
        scheduled_messages::table
            .filter(scheduled_messages::state.eq(state::DISPATCHING))
            .filter(scheduled_messages::lease_until.lt(now)),
    )
    .set((
        scheduled_messages::state.eq(state::SCHEDULED),
        scheduled_messages::lease_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
}

/// In the consumer's store transaction: mark the rows of `ids` delivered
/// (waiting for a cancel that holds one), and return the ids that were
/// cancelled, which must not be stored. Rows are locked in id order: two
/// consumers storing redeliveries of the same ids cannot deadlock. An id
/// without a row (another client's `deliver_at`, or pruned) is stored as
/// any message.
pub fn settle_for_store(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        state: String,
    }
    // Lock first (in order), then decide on what the lock shows: under READ
    // COMMITTED a row locked after a cancel committed is read as cancelled.
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id, state FROM scheduled_messages
          WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)?;
    let cancelled: HashSet<Uuid> = rows
        .iter()
        .filter(|r| r.state == state::CANCELLED)
        .map(|r| r.id)
        .collect();
    let deliver: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.state != state::CANCELLED && r.state != state::DELIVERED)
        .map(|r| r.id)
        .collect();
    if !deliver.is_empty() {
        diesel::update(scheduled_messages::table.filter(scheduled_messages::id.eq_any(&deliver)))
            .set((
                scheduled_messages::state.eq(state::DELIVERED),
                scheduled_messages::lease_until.eq(None::<DateTime<Utc>>),
                scheduled_messages::settled_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(cancelled)
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Cancelled now, or before (cancelling twice is not an error).
    Cancelled {
        /// When it was due.
        deliver_at: DateTime<Utc>,
    },
    /// Stored already: too late.
    Delivered,
    /// Dead-lettered after it was dispatched: nothing left to cancel.
    DeadLettered,
    /// An item of a batch: a batch completes when all its items are
    /// settled, so its items are not cancelled one by one.
    InBatch(Uuid),
    /// No scheduled message has this id (it may be an unscheduled one).
    NotScheduled,
}

/// Cancel message `id` if it is still waiting (or dispatched but not
/// stored: the consumer will refuse it). Waits for a consumer's transaction
/// that holds the row, then sees what it did.
pub fn cancel(conn: &mut PgConnection, id: Uuid) -> QueryResult<Cancel> {
    conn.transaction(|conn| {
        let row = scheduled_messages::table
            .filter(scheduled_messages::id.eq(id))
            .select((
                scheduled_messages::state,
                scheduled_messages::deliver_at,
                scheduled_messages::batch_id,
            ))
            .for_update()
            .first::<(String, DateTime<Utc>, Option<Uuid>)>(conn)
            .optional()?;
        let Some((current, deliver_at, batch_id)) = row else {
            return Ok(Cancel::NotScheduled);
        };
        match current.as_str() {
            state::CANCELLED => return Ok(Cancel::Cancelled { deliver_at }),
            state::DELIVERED => return Ok(Cancel::Delivered),
            _ => {}
        }
        if let Some(batch) = batch_id {
            return Ok(Cancel::InBatch(batch));
        }
        let dead: i64 = dead_letters::table
            .filter(dead_letters::id.eq(id))
            .count()
            .get_result(conn)?;
        if dead > 0 {
            return Ok(Cancel::DeadLettered);
        }
        diesel::update(scheduled_messages::table.filter(scheduled_messages::id.eq(id)))
            .set((
                scheduled_messages::state.eq(state::CANCELLED),
                scheduled_messages::lease_until.eq(None::<DateTime<Utc>>),
                scheduled_messages::settled_at.eq(now),
            ))
            .execute(conn)?;
        Ok(Cancel::Cancelled { deliver_at })
    })
}

/// The status of a message that is scheduled (not stored yet) or
/// cancelled; `None` if it has no row or is delivered (its stored row
/// answers then).
pub fn status(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<ScheduleStatus>> {
    let row = scheduled_messages::table
        .filter(scheduled_messages::id.eq(id))
        .select((
            scheduled_messages::state,
            scheduled_messages::deliver_at,
            scheduled_messages::kind,
            scheduled_messages::settled_at,
        ))
        .first::<(String, DateTime<Utc>, String, Option<DateTime<Utc>>)>(conn)
        .optional()?;
    Ok(row.and_then(
        |(current, deliver_at, kind, settled_at)| match current.as_str() {
            state::DELIVERED => None,
            state::CANCELLED => Some(ScheduleStatus::Cancelled {
                id,
                deliver_at,
                cancelled_at: settled_at.unwrap_or(deliver_at),
                kind,
            }),
            _ => Some(ScheduleStatus::Scheduled {
                id,
                deliver_at,
                kind,
            }),
        },
    ))
}

/// How many wait, and when the next falls due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// Rows `scheduled` (not yet claimed).
    pub count: i64,
    /// The earliest `deliver_at` among them.
    pub next_due: Option<DateTime<Utc>>,
}

/// [`Waiting`] now: one index-only pass over the due index.
pub fn waiting(conn: &mut PgConnection) -> QueryResult<Waiting> {
    let (count, next_due) = scheduled_messages::table
        .filter(scheduled_messages::state.eq(state::SCHEDULED))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(scheduled_messages::deliver_at),
        ))
        .first::<(i64, Option<DateTime<Utc>>)>(conn)?;
    Ok(Waiting { count, next_due })
}

/// A waiting message, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Upcoming {
    /// The message id.
    pub id: Uuid,
    /// When it falls due.
    pub deliver_at: DateTime<Utc>,
    /// Its kind.
    pub kind: String,
}

/// The first `limit` messages waiting, soonest first: the first entries
/// of the due index, so as cheap with a million waiting as with ten.
pub fn upcoming(conn: &mut PgConnection, limit: i64) -> QueryResult<Vec<Upcoming>> {
    scheduled_messages::table
        .filter(scheduled_messages::state.eq(state::SCHEDULED))
        .select((
            scheduled_messages::id,
            scheduled_messages::deliver_at,
            scheduled_messages::kind,
        ))
        .order((
            scheduled_messages::deliver_at.asc(),
            scheduled_messages::id.asc(),
        ))
        .limit(limit)
        .load(conn)
}

/// The envelope (JSON) a scheduled message will be published with, while
/// its row is kept (see `prune_settled`).
pub fn body(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<String>> {
    scheduled_messages::table
        .filter(scheduled_messages::id.eq(id))
        .select(scheduled_messages::body)
        .first(conn)
        .optional()
}

/// Delete up to `limit` delivered or cancelled rows settled more than
/// `age` ago (the retention). Waiting ones are never pruned.
pub fn prune_settled(conn: &mut PgConnection, age: Duration, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM scheduled_messages WHERE id IN (
            SELECT id FROM scheduled_messages
             WHERE state IN ('delivered', 'cancelled')
               AND settled_at < now() - $1 * interval '1 millisecond'
             LIMIT $2)",
    )
    .bind::<BigInt, _>(millis(age))
    .bind::<BigInt, _>(limit)
    .execute(conn)
}
