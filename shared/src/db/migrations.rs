//! Applying `./migrations` (compiled into the binaries) at startup, once
//! across processes starting together.

use std::time::Duration;

use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::pool::{build_pool, PgPool};

/// The migrations in `./migrations`, compiled into the binaries.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK_KEY: i64 = 0x6d73_6773_746f_7265; // "msgstore"

/// Why the database could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// No connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// The advisory lock could not be taken.
    #[error("cannot take the migration lock: {0}")]
    Lock(diesel::result::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(Box<dyn std::error::Error + Send + Sync>),
    /// The blocking task migrating died.
    #[error("migration task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Apply pending migrations, holding an advisory lock so that several
/// processes starting together apply them once. Returns how many ran.
pub fn run_migrations(conn: &mut PgConnection) -> Result<usize, MigrationError> {
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .execute(conn)
        .map_err(MigrationError::Lock)?;
    let result = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|applied| applied.len())
        .map_err(MigrationError::Migrate);
    // Unlock even if migrating failed; closing the connection would too.
    let _ =
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")).execute(conn);
    result
}

/// Connect once and migrate, retrying with backoff until `deadline` passes.
pub fn migrate_with_retry(database_url: &str, deadline: Duration) -> Result<usize, MigrationError> {
    let started = std::time::Instant::now();
    let mut backoff = crate::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let attempt = PgConnection::establish(database_url)
            .map_err(MigrationError::from)
            .and_then(|mut conn| run_migrations(&mut conn));
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

/// Startup for either binary: migrate (off the async threads, retrying
/// until `startup_timeout`), then build the lazily connecting pool.
pub async fn migrate_and_pool(common: &crate::CommonSettings) -> Result<PgPool, MigrationError> {
    let url = common.database_url.clone();
    let deadline = common.startup_timeout;
    let applied = tokio::task::spawn_blocking(move || migrate_with_retry(&url, deadline)).await??;
    log::info!("database ready ({applied} migrations applied)");
    Ok(build_pool(
        &common.database_url,
        common.db_pool_size,
        common.db_timeout,
    ))
}
