//! The connection pool both binaries use, and [`blocking`]: the one way an
//! async task runs a Diesel call (Diesel is synchronous), on tokio's
//! blocking threads with a pooled connection, never on an async thread.

use std::time::Duration;

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};

use super::error::DbError;

/// The pool type both binaries use.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;
/// One checked-out connection.
pub type PgPooled = PooledConnection<ConnectionManager<PgConnection>>;

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

/// Run `f` with a connection of `pool` on the blocking threads. Every
/// failure is a [`DbError`]: no connection (`Pool`), the statement's
/// (`Query`), or the task's own (`Task`).
pub async fn blocking<T, F>(pool: &PgPool, f: F) -> Result<T, DbError>
where
    F: FnOnce(&mut PgPooled) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
}

/// Whether a pooled connection can be had and answers a ping, checked off
/// the async threads (readiness probes, outage detection).
pub async fn pool_answers(pool: &PgPool) -> bool {
    blocking(pool, |conn| Ok(ping(conn)?)).await.is_ok()
}

/// A cheap round trip proving the database answers.
pub fn ping(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).map(|_| ())
}
