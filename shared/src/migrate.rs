//! Who applies the migrations, and when.
//!
//! * The migration step, `producer migrate` (or `consumer migrate`: the
//!   same code): run as the schema's owner, before the services start (in
//!   compose a one-shot service they wait for). It applies the pending
//!   migrations, then gives the roles named by `PRODUCER_DB_ROLE` and
//!   `CONSUMER_DB_ROLE` exactly their privileges ([`crate::roles`]), and
//!   exits. It needs only `DATABASE_URL` (the owner's), not the broker.
//!
//! Depends on `db` (the pool, the migrations and the retry loop), `roles`
//! and `config`; `db` knows nothing of this module.
//!
//! * At startup, a binary whose role may create objects in the schema (the
//!   owner, as in the no-Docker quick start and `cargo run`) migrates as it
//!   always did. One that may not (a runtime role) never tries: it checks
//!   that every migration it knows is applied, and waits for the migration
//!   step (within `STARTUP_TIMEOUT_MS`) if not.

use std::process::ExitCode;
use std::time::Duration;

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use crate::config::{ConfigError, Env};
use crate::db::PgPool;
use crate::roles::{self, RoleError, Runtime};

/// What the migration step reads from the environment.
#[derive(Clone)]
pub struct MigrateSettings {
    /// `DATABASE_URL` (required): the schema owner's.
    pub database_url: String,
    /// `PRODUCER_DB_ROLE` (optional): the role the producer connects as.
    pub producer_role: Option<String>,
    /// `CONSUMER_DB_ROLE` (optional): the role the consumer connects as.
    pub consumer_role: Option<String>,
    /// `STARTUP_TIMEOUT_MS` (default 60000): how long to wait for the
    /// database to answer.
    pub deadline: Duration,
}

impl std::fmt::Debug for MigrateSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateSettings")
            .field("database_url", &crate::redact::url(&self.database_url))
            .field("producer_role", &self.producer_role)
            .field("consumer_role", &self.consumer_role)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl MigrateSettings {
    /// Read the step's settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            database_url: env.required("DATABASE_URL")?,
            producer_role: env.raw("PRODUCER_DB_ROLE")?,
            consumer_role: env.raw("CONSUMER_DB_ROLE")?,
            deadline: env.millis_or("STARTUP_TIMEOUT_MS", 60_000)?,
        })
    }
}

/// Why migrating (or checking the schema) failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// No connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A query failed.
    #[error("{0}")]
    Database(String),
    /// A migration (or its lock) failed.
    #[error(transparent)]
    Migrations(#[from] crate::db::MigrationError),
    /// The step was given a role that may not change the schema.
    #[error("role {role:?} may not create objects in schema {schema:?}: the migration step needs the owner's DATABASE_URL")]
    NotOwner {
        /// The connected role.
        role: String,
        /// The schema.
        schema: String,
    },
    /// A runtime role found migrations missing.
    #[error("the database lacks {pending} migration(s) and role {role:?} may not apply them: run `producer migrate` (or `consumer migrate`) with the owner's DATABASE_URL")]
    Pending {
        /// How many.
        pending: usize,
        /// The connected role.
        role: String,
    },
    /// A runtime role that was never given its privileges.
    #[error("role {role:?} may not read the schema's version: the migration step grants it (run `producer migrate` with PRODUCER_DB_ROLE or CONSUMER_DB_ROLE naming it)")]
    NotGranted {
        /// The connected role.
        role: String,
    },
    /// A runtime role could not be given its privileges.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The blocking task died.
    #[error("the migration task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<diesel::result::Error> for MigrateError {
    fn from(e: diesel::result::Error) -> Self {
        MigrateError::Database(e.to_string())
    }
}

#[derive(QueryableByName)]
struct Identity {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Text)]
    schema: String,
    #[diesel(sql_type = Bool)]
    may_create: bool,
}

/// The connected role, the schema migrations go to, and whether the role
/// may create objects there (what migrating takes).
fn identity(conn: &mut PgConnection) -> QueryResult<Identity> {
    diesel::sql_query(
        "SELECT current_user::text AS role, current_schema() AS schema,
                has_schema_privilege(current_schema(), 'CREATE') AS may_create",
    )
    .get_result(conn)
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = Bool)]
    flag: bool,
}

/// How many of the migrations compiled in are not applied yet, read
/// without creating anything (diesel's own check creates its table).
fn pending(conn: &mut PgConnection, role: &str) -> Result<usize, MigrateError> {
    let known = MigrationSource::<Pg>::migrations(&crate::db::MIGRATIONS)
        .map_err(|e| MigrateError::Database(format!("cannot list the migrations: {e}")))?;
    let table = diesel::sql_query(
        "SELECT coalesce(to_regclass('__diesel_schema_migrations')::text, '') AS version",
    )
    .get_result::<Version>(conn)?;
    if table.version.is_empty() {
        return Ok(known.len());
    }
    let readable = diesel::sql_query(
        "SELECT has_table_privilege('__diesel_schema_migrations', 'SELECT') AS flag",
    )
    .get_result::<Flag>(conn)?;
    if !readable.flag {
        return Err(MigrateError::NotGranted {
            role: role.to_owned(),
        });
    }
    let applied: Vec<String> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load::<Version>(conn)?
        .into_iter()
        .map(|v| v.version)
        .collect();
    Ok(known
        .iter()
        .filter(|m| !applied.contains(&m.name().version().to_string()))
        .count())
}

/// At startup: migrate when this role may (the owner), else check that the
/// migration step has run. Returns how many migrations were applied.
pub fn at_startup(conn: &mut PgConnection) -> Result<usize, MigrateError> {
    let me = identity(conn)?;
    if me.may_create {
        return Ok(crate::db::run_migrations(conn)?);
    }
    match pending(conn, &me.role)? {
        0 => {
            log::info!(
                "role {:?} may not change schema {:?}: not migrating (the migration step does); the schema is up to date",
                me.role,
                me.schema
            );
            Ok(0)
        }
        n => Err(MigrateError::Pending {
            pending: n,
            role: me.role,
        }),
    }
}

/// Connect once and migrate (or, as a role that may not, check that the
/// migration step has run), retrying with backoff until `deadline` passes.
pub fn migrate_with_retry(database_url: &str, deadline: Duration) -> Result<usize, MigrateError> {
    crate::db::with_retry(database_url, deadline, at_startup)
}

/// Startup for either binary: migrate (off the async threads, retrying
/// until `startup_timeout`), then build the lazily connecting pool.
pub async fn migrate_and_pool(common: &crate::CommonSettings) -> Result<PgPool, MigrateError> {
    let url = common.database_url.clone();
    let deadline = common.startup_timeout;
    let applied = tokio::task::spawn_blocking(move || migrate_with_retry(&url, deadline)).await??;
    log::info!("database ready ({applied} migrations applied)");
    Ok(crate::db::build_pool(
        &common.database_url,
        common.db_pool_size,
        common.db_timeout,
    ))
}

/// What the migration step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Migrations applied.
    pub applied: usize,
    /// Roles given their privileges.
    pub granted: Vec<String>,
}

/// The migration step: wait for the database (until `deadline`), then, as
/// the owner, apply the pending migrations and grant each runtime role
/// named its privileges. Blocking: call it off the async threads.
pub fn step(settings: &MigrateSettings) -> Result<StepReport, MigrateError> {
    // Waiting is for a database still starting; what fails once connected
    // (a role that is not the owner, a missing runtime role) fails at once.
    crate::db::with_retry(&settings.database_url, settings.deadline, |conn| {
        crate::db::ping(conn).map_err(MigrateError::from)
    })?;
    let mut conn = PgConnection::establish(&settings.database_url)?;
    let me = identity(&mut conn)?;
    if !me.may_create {
        return Err(MigrateError::NotOwner {
            role: me.role,
            schema: me.schema,
        });
    }
    let applied = crate::db::run_migrations(&mut conn)?;
    let mut granted = Vec::new();
    for (runtime, role) in [
        (Runtime::Producer, &settings.producer_role),
        (Runtime::Consumer, &settings.consumer_role),
    ] {
        if let Some(role) = role {
            roles::grant(&mut conn, runtime, role)?;
            granted.push(role.clone());
        }
    }
    Ok(StepReport { applied, granted })
}

/// The binaries' command line: `None` to start the service (no argument),
/// else the exit code of the command given (`migrate`, or a usage error).
pub async fn command(binary: &str, env: &Env) -> Option<ExitCode> {
    let arg = std::env::args().nth(1)?;
    if arg != "migrate" {
        eprintln!("{binary}: unknown command {arg:?}; usage: {binary} [migrate]");
        return Some(ExitCode::from(2));
    }
    let settings = match MigrateSettings::from_env(env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{binary} migrate: {e}");
            return Some(ExitCode::from(2));
        }
    };
    let outcome = tokio::task::spawn_blocking(move || step(&settings)).await;
    Some(match outcome.map_err(MigrateError::from).and_then(|r| r) {
        Ok(report) => {
            log::info!(
                "{binary} migrate: {} migration(s) applied; privileges granted to {:?}",
                report.applied,
                report.granted
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{binary} migrate: {e}");
            ExitCode::FAILURE
        }
    })
}
