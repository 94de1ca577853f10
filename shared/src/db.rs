//! The PostgreSQL side: connection pool, migrations, and the queries both
//! binaries run. All functions here are blocking (Diesel is synchronous):
//! call them from `spawn_blocking` / `web::block`, never on an async thread.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PoolError, PooledConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use uuid::Uuid;

use crate::models::{DeadLetter, Message, NewIdempotencyKey, NewMessage};
use crate::schema::messages;

/// The pool type both binaries use.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;
/// One checked-out connection.
pub type PgPooled = PooledConnection<ConnectionManager<PgConnection>>;

/// The migrations in `./migrations`, compiled into the binaries.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK_KEY: i64 = 0x6d73_6773_746f_7265; // "msgstore"

/// PostgreSQL accepts at most 65 535 bind parameters per statement; a row of
/// `messages` takes at most four.
pub const MAX_ROWS_PER_INSERT: usize = 65_535 / 4;

/// A database failure: either no connection could be had, or a query failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection within the checkout timeout (database down or pool exhausted).
    #[error("database connection unavailable: {0}")]
    Pool(#[from] PoolError),
    /// The statement failed.
    #[error("database query failed: {0}")]
    Query(#[from] DieselError),
}

impl DbError {
    /// True when the failure says nothing about the data: the database is
    /// down, restarting, read-only, or the transaction lost a race. Retrying
    /// the same statement later is expected to succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Pool(_) => true,
            DbError::Query(DieselError::DatabaseError(kind, _)) => matches!(
                kind,
                DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand
                    | DatabaseErrorKind::SerializationFailure
                    | DatabaseErrorKind::ReadOnlyTransaction
            ),
            DbError::Query(DieselError::BrokenTransactionManager) => true,
            DbError::Query(_) => false,
        }
    }
}

impl DbError {
    /// True when the database rejected the row itself, for a reason that
    /// will not change on retry (a CHECK or NOT NULL constraint).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation,
                _
            ))
        )
    }
}

impl DbError {
    /// True when PostgreSQL itself raised the error (whatever its SQLSTATE),
    /// as opposed to a failure to get a connection or to decode a row.
    pub fn is_database_error(&self) -> bool {
        matches!(self, DbError::Query(DieselError::DatabaseError(..)))
    }

    /// The primary message of a statement's error, to compare two failures.
    pub fn message(&self) -> String {
        match self {
            DbError::Query(DieselError::DatabaseError(_, info)) => info.message().to_owned(),
            other => other.to_string(),
        }
    }
}

/// What to make of a failure, by SQLSTATE class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The database, not the row: connection (08), transaction rollback
    /// such as deadlock or serialization (40), insufficient resources such
    /// as a full disk or too many connections (53), operator intervention
    /// such as a statement timeout or shutdown (57), system error (58).
    /// Retrying the same row later is expected to work.
    Transient,
    /// The row itself: data exception (22) or integrity violation (23).
    /// It will fail the same way every time.
    Rejection,
    /// Anything else (a trigger's own exception, ...): retried a few
    /// times through the delay queues, then given up.
    Unknown,
}

impl FailureClass {
    /// The class of a five-character SQLSTATE.
    pub fn of_sqlstate(sqlstate: &str) -> FailureClass {
        match sqlstate.get(..2) {
            Some("08" | "40" | "53" | "57" | "58") => FailureClass::Transient,
            Some("22" | "23") => FailureClass::Rejection,
            _ => FailureClass::Unknown,
        }
    }
}

/// What storing one row through `pipeline_try_insert` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    /// A new row.
    Inserted,
    /// The id was already stored.
    Duplicate,
    /// The insert failed with this SQLSTATE and message.
    Failed {
        /// The five-character SQLSTATE.
        sqlstate: String,
        /// PostgreSQL's message (may name constraints: log it, never
        /// show it to clients).
        message: String,
    },
}

impl RowOutcome {
    fn parse(text: &str) -> RowOutcome {
        match text {
            "inserted" => RowOutcome::Inserted,
            "duplicate" => RowOutcome::Duplicate,
            other => {
                let rest = other.strip_prefix("error:").unwrap_or(other);
                let (sqlstate, message) = rest.split_once(':').unwrap_or(("XX000", rest));
                RowOutcome::Failed {
                    sqlstate: sqlstate.to_owned(),
                    message: message.to_owned(),
                }
            }
        }
    }
}

#[derive(QueryableByName)]
struct TryInsert {
    #[diesel(sql_type = diesel::sql_types::Text)]
    outcome: String,
}

/// Store each row on its own through the `pipeline_try_insert` function,
/// which reports failures with their SQLSTATE instead of raising them
/// (Diesel hides the SQLSTATE of most errors). For the slow path only:
/// one round trip per row. `Err` means the connection itself failed.
pub fn try_insert_each(
    conn: &mut PgConnection,
    rows: &[NewMessage<'_>],
) -> Result<Vec<RowOutcome>, DbError> {
    use diesel::sql_types::{Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in rows {
        let result = diesel::sql_query("SELECT pipeline_try_insert($1, $2, $3, $4) AS outcome")
            .bind::<SqlUuid, _>(row.id)
            .bind::<Text, _>(row.content)
            .bind::<Timestamptz, _>(row.created_at)
            .bind::<Nullable<SqlUuid>, _>(row.batch_id)
            .get_result::<TryInsert>(conn)?;
        outcomes.push(RowOutcome::parse(&result.outcome));
    }
    Ok(outcomes)
}

/// Record dead letters found in the dead-letter index queue; a record the
/// consumer already wrote (with its own reason) is kept.
pub fn index_dead_letters(conn: &mut PgConnection, records: &[DeadLetter]) -> QueryResult<()> {
    use crate::schema::dead_letters::dsl;
    diesel::insert_into(dsl::dead_letters)
        .values(records)
        .on_conflict_do_nothing()
        .execute(conn)
        .map(|_| ())
}

/// Build a pool that connects lazily: the process starts even while the
/// database is down, and a checkout waits at most `checkout_timeout`.
pub fn build_pool(database_url: &str, max_size: u32, checkout_timeout: Duration) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(database_url);
    Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(checkout_timeout)
        // Check each connection on checkout so that connections broken by a
        // PostgreSQL restart are replaced instead of failing a query.
        .test_on_check_out(true)
        .build_unchecked(manager)
}

/// Apply pending migrations, holding an advisory lock so that several
/// processes starting together apply them once. Returns how many ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, String> {
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(conn)
        .map_err(|e| format!("cannot take the migration lock: {e}"))?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.len())
        .map_err(|e| format!("migration failed: {e}"));
    // Unlock even if migrating failed; closing the connection would too.
    let _ =
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(conn);
    result
}

/// Connect and run `work`, both retried with backoff until `deadline`
/// passes.
pub fn with_retry<T, E>(
    database_url: &str,
    deadline: Duration,
    mut work: impl FnMut(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: std::fmt::Display + From<diesel::ConnectionError>,
{
    let started = std::time::Instant::now();
    let mut backoff = crate::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let attempt = PgConnection::establish(database_url)
            .map_err(E::from)
            .and_then(|mut conn| work(&mut conn));
        match attempt {
            Ok(n) => return Ok(n),
            Err(e) if started.elapsed() < deadline => {
                let delay = backoff.next_delay();
                log::warn!("{e}; retrying in {delay:?}");
                std::thread::sleep(delay);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Insert `rows` in one transaction, skipping ids already stored. Returns
/// how many rows were new.
pub fn insert_messages(conn: &mut PgConnection, rows: &[NewMessage<'_>]) -> QueryResult<usize> {
    insert_new_messages(conn, rows).map(|ids| ids.len())
}

/// Insert `rows` in one transaction, skipping ids already stored. Returns
/// the ids that were new (a redelivered message is not among them), so the
/// caller can tell stored rows from duplicates.
pub fn insert_new_messages(
    conn: &mut PgConnection,
    rows: &[NewMessage<'_>],
) -> QueryResult<Vec<Uuid>> {
    conn.transaction(|conn| {
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
            // RETURNING under ON CONFLICT DO NOTHING yields only the rows
            // actually inserted.
            inserted.extend(
                diesel::insert_into(messages::table)
                    .values(chunk)
                    .on_conflict(messages::id)
                    .do_nothing()
                    .returning(messages::id)
                    .get_results::<Uuid>(conn)?,
            );
        }
        Ok(inserted)
    })
}

/// A keyset cursor: the commit-order key of the last row of the previous
/// page: its inserting transaction's id, `created_at` and id.
pub type Cursor = (i64, DateTime<Utc>, Uuid);

/// Stored messages in commit order, after `after`: by inserting
/// transaction id, then acceptance time, then id; each with its cursor.
///
/// Only rows whose transaction id is below the xmin of the current snapshot
/// are listed: every transaction older than such a row has ended, so no
/// row can still commit before it. A row of a later transaction that
/// committed first waits until the older ones end; a client following
/// cursors therefore never skips a row that commits late.
pub fn list_committed_messages(
    conn: &mut PgConnection,
    after: Option<Cursor>,
    limit: i64,
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

/// One stored message, if it is stored.
pub fn find_message(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Message>> {
    messages::table
        .find(id)
        .select(Message::as_select())
        .first(conn)
        .optional()
}

/// Record that message `id` was dead-lettered (the latest reason wins).
pub fn record_dead_letter(conn: &mut PgConnection, record: &DeadLetter) -> QueryResult<()> {
    use crate::schema::dead_letters::dsl;
    diesel::insert_into(dsl::dead_letters)
        .values(record)
        .on_conflict(dsl::id)
        .do_update()
        .set((
            dsl::reason.eq(&record.reason),
            dsl::attempts.eq(record.attempts),
            dsl::dead_lettered_at.eq(record.dead_lettered_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The dead-letter record of message `id`, if it was dead-lettered.
pub fn find_dead_letter(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<DeadLetter>> {
    crate::schema::dead_letters::table
        .find(id)
        .select(DeadLetter::as_select())
        .first(conn)
        .optional()
}

/// Bind an `Idempotency-Key` to a request fingerprint, first come first
/// served, and return the fingerprint it is bound to: `record`'s own when
/// this call bound it (or an equal one did before), another when the key
/// was first used with another request. Safe under concurrency: of two
/// first uses racing, the primary key lets one insert win and the other
/// reads the winner (each statement commits on its own, so the read sees it).
pub fn bind_idempotency_key(
    conn: &mut PgConnection,
    record: &NewIdempotencyKey<'_>,
) -> QueryResult<Vec<u8>> {
    use crate::schema::idempotency_keys::dsl;
    let inserted = diesel::insert_into(dsl::idempotency_keys)
        .values(record)
        .on_conflict((dsl::scope, dsl::key))
        .do_nothing()
        .returning(dsl::fingerprint)
        .get_result::<Vec<u8>>(conn)
        .optional()?;
    match inserted {
        Some(fingerprint) => Ok(fingerprint),
        None => dsl::idempotency_keys
            .find((record.scope, record.key))
            .select(dsl::fingerprint)
            .first(conn),
    }
}

/// Delete the dead-letter record of message `id` (it was redriven: queued
/// again), returning it so that a failed redrive can put it back. Its
/// batch, if any, is pending again (in the same transaction): the item is
/// in flight, and the batch completes anew when it settles.
pub fn forget_dead_letter(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<DeadLetter>> {
    use crate::schema::dead_letters::dsl;
    conn.transaction(|conn| {
        let forgotten = diesel::delete(dsl::dead_letters.find(id))
            .returning(DeadLetter::as_returning())
            .get_result(conn)
            .optional()?;
        if let Some(batch) = forgotten.as_ref().and_then(|d| d.batch_id) {
            crate::outbox::reopen_batch(conn, batch)?;
        }
        Ok(forgotten)
    })
}

/// Put back a record [`forget_dead_letter`] removed, unless the message was
/// dead-lettered again meanwhile (the newer record wins).
/// Its batch, reopened by the forgetting, is completed again if this was
/// its last open item.
pub fn restore_dead_letter(conn: &mut PgConnection, record: &DeadLetter) -> QueryResult<()> {
    use crate::schema::dead_letters::dsl;
    conn.transaction(|conn| {
        diesel::insert_into(dsl::dead_letters)
            .values(record)
            .on_conflict(dsl::id)
            .do_nothing()
            .execute(conn)?;
        if let Some(batch) = record.batch_id {
            crate::outbox::settle_batches(conn, &[batch])?;
        }
        Ok(())
    })
}

/// Delete every dead-letter record (the dead-letter queue was purged).
/// Returns how many.
pub fn forget_all_dead_letters(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::delete(crate::schema::dead_letters::table).execute(conn)
}

/// Whether a pooled connection can be had and answers a ping, checked off
/// the async threads (readiness probes, outage detection).
pub async fn pool_answers(pool: &PgPool) -> bool {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        pool.get()
            .ok()
            .is_some_and(|mut conn| ping(&mut conn).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// The broker connection as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Connected and free to publish.
    Up,
    /// Not connected.
    Down,
    /// Connected, but the broker blocks publishing (resource alarm).
    Blocked,
}

impl BrokerState {
    fn as_str(self) -> &'static str {
        match self {
            BrokerState::Up => "up",
            BrokerState::Down => "down",
            BrokerState::Blocked => "blocked",
        }
    }
}

/// The `/readyz` answer both binaries give: whether ready, and the JSON body
/// saying the state of each dependency. Readiness needs the broker up, and
/// the database only where it is `database_required` (the consumer stores;
/// the producer publishes without it, and reports it only).
/// `node` is the RabbitMQ node (`host:port`) the process is connected to.
pub fn readiness(
    broker: BrokerState,
    node: Option<String>,
    database: bool,
    database_required: bool,
) -> (bool, serde_json::Value) {
    let ready = broker == BrokerState::Up && (database || !database_required);
    let database = if database { "up" } else { "down" };
    if ready {
        let body = serde_json::json!({
            "status": "ready",
            "broker": broker.as_str(),
            "node": node,
            "database": database,
        });
        (true, body)
    } else {
        (
            false,
            serde_json::json!({
                "error": "not ready",
                "status": "not ready",
                "broker": broker.as_str(),
                "node": node,
                "database": database,
            }),
        )
    }
}

/// A cheap round trip proving the database answers.
pub fn ping(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).map(|_| ())
}
