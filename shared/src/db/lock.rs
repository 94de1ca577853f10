//! Session advisory locks: work that any replica may do, done by one at a
//! time (the retention). A session lock, not a transaction's: the work
//! runs as many short transactions (bounded batches), never one long one
//! that would hold back vacuum; and it ends with the session, so a process
//! that dies mid-work frees it.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

/// The key of the consumers' retention lock ("retainc" in ASCII): the same
/// in every consumer, apart from any other user of advisory locks.
pub const CONSUMER_RETENTION: i64 = 0x0072_6574_6169_6e63;
/// The key of the producers' retention lock ("retainp"): they prune other
/// tables, so they take turns among themselves, not with the consumers.
pub const PRODUCER_RETENTION: i64 = 0x0072_6574_6169_6e70;

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Take lock `key` for this session if no other session holds it; never waits.
pub fn try_lock(conn: &mut PgConnection, key: i64) -> QueryResult<bool> {
    diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(key)
        .get_result::<Locked>(conn)
        .map(|l| l.locked)
}

/// Release every advisory lock of this session (however many times each
/// was taken: they stack).
pub fn unlock_all(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_unlock_all()")
        .execute(conn)
        .map(|_| ())
}
