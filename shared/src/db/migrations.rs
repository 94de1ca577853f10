//! Applying `./migrations` (compiled into the binaries), once across
//! processes starting together, and waiting for the database to answer.
//! Who migrates and when (the owner, or the migration step) is
//! `crate::migrate`'s business.

use std::time::Duration;

use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// The migrations in `./migrations`, compiled into the binaries.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Key of the advisory lock that serialises migrations across processes.
const MIGRATION_LOCK_KEY: i64 = 0x6d73_6773_746f_7265; // "msgstore"

/// Why the migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The advisory lock could not be taken.
    #[error("cannot take the migration lock: {0}")]
    Lock(diesel::result::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(Box<dyn std::error::Error + Send + Sync>),
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

/// Connect and run `work`, both retried with backoff until `deadline`
/// passes (the database may still be starting).
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
