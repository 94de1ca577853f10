//! The `idempotency_keys` table: each `Idempotency-Key` bound, first come
//! first served, to the fingerprint of the request it was first used with,
//! for `IDEMPOTENCY_KEY_TTL`. An older binding is expired: the next use of
//! the key binds it afresh (a new request), whether or not the retention
//! has pruned the old row yet.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Text, Timestamptz};

use super::age::millis;
use crate::schema::idempotency_keys;

/// An `Idempotency-Key` bound to the request it was first used with.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = idempotency_keys)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct NewIdempotencyKey<'a> {
    /// `message` (`POST /messages`) or `batch` (`POST /messages/batch`).
    pub scope: &'a str,
    /// The key as the client sent it.
    pub key: &'a str,
    /// SHA-256 of the canonical request.
    pub fingerprint: &'a [u8],
}

/// A key's live binding.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Binding {
    /// SHA-256 of the request the key is bound to.
    #[diesel(sql_type = Bytea)]
    pub fingerprint: Vec<u8>,
    /// When it was bound: the time of the first 202, which every retry
    /// carries as the message's `created_at` (the partition it is stored in).
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// Whether the ids derive from the key and `created_at` (bindings made
    /// since keys expire), or from the key alone (older ones).
    #[diesel(sql_type = Bool)]
    pub timed_ids: bool,
}

/// Bind an `Idempotency-Key` to a request fingerprint, first come first
/// served, and return the live binding: `record`'s own when this call
/// bound it (or an equal request did, less than `ttl` ago), another's when
/// the key was first used with another request. A binding older than `ttl`
/// is replaced: the key is a new request. Safe under concurrency: of two
/// first uses racing, the primary key lets one win and the other reads the
/// winner (each statement commits on its own, so the read sees it); of two
/// uses of an expired key, the second's update waits for the first's, sees
/// a live binding and leaves it.
pub fn bind(
    conn: &mut PgConnection,
    record: &NewIdempotencyKey<'_>,
    ttl: Duration,
) -> QueryResult<Binding> {
    // The read after a conflict misses only if the row was pruned in
    // between (an expired row the insert did not replace: another process
    // with a shorter TTL); the next round inserts it.
    let mut last = diesel::result::Error::NotFound;
    for _ in 0..3 {
        let bound = diesel::sql_query(
            "INSERT INTO idempotency_keys AS k (scope, key, fingerprint, timed_ids)
             VALUES ($1, $2, $3, true)
             ON CONFLICT (scope, key) DO UPDATE
                SET fingerprint = EXCLUDED.fingerprint, created_at = now(), timed_ids = true
              WHERE k.created_at < now() - $4 * interval '1 millisecond'
             RETURNING fingerprint, created_at, timed_ids",
        )
        .bind::<Text, _>(record.scope)
        .bind::<Text, _>(record.key)
        .bind::<Bytea, _>(record.fingerprint)
        .bind::<BigInt, _>(millis(ttl))
        .get_result::<Binding>(conn)
        .optional()?;
        if let Some(binding) = bound {
            return Ok(binding);
        }
        match find(conn, record.scope, record.key, ttl) {
            Ok(Some(binding)) => return Ok(binding),
            Ok(None) => last = diesel::result::Error::NotFound,
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The live binding of `key` in `scope`, if it has one (bound less than
/// `ttl` ago).
pub fn find(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    ttl: Duration,
) -> QueryResult<Option<Binding>> {
    diesel::sql_query(
        "SELECT fingerprint, created_at, timed_ids FROM idempotency_keys
          WHERE scope = $1 AND key = $2
            AND created_at >= now() - $3 * interval '1 millisecond'",
    )
    .bind::<Text, _>(scope)
    .bind::<Text, _>(key)
    .bind::<BigInt, _>(millis(ttl))
    .get_result(conn)
    .optional()
}

/// Delete up to `limit` bindings older than `ttl` (already expired for
/// [`bind`]). Returns how many. A binding renewed meanwhile has moved to
/// another `ctid` (an update writes a new row version), which the delete
/// does not name: it stays.
pub fn prune_expired(conn: &mut PgConnection, ttl: Duration, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM idempotency_keys
             WHERE created_at < now() - $1 * interval '1 millisecond'
             LIMIT $2))",
    )
    .bind::<BigInt, _>(millis(ttl))
    .bind::<BigInt, _>(limit)
    .execute(conn)
}
