//! PostgreSQL: one module per table, plus the pool, the migrations and the
//! classification of failures. Every function taking a `PgConnection`
//! blocks (Diesel is synchronous): run it through [`blocking`], never on an
//! async thread.
//!
//! ```text
//! messages ──► dead_letters ──► batches ──► webhook_deliveries ──► events (shapes)
//!    │  │           │              ▲
//!    │  └───────────┴──────────────┘          pool, migrations, error: used by all
//!    └──► scheduled_messages (a stored scheduled message settles its row)
//! ```
//!
//! A table's module may call the modules to its right (storing a message
//! can complete its batch, which owes a notification), never the other way.
//! `schema.rs` is generated (`diesel migration run`, see `diesel.toml`).

pub mod age;
pub mod batches;
pub mod dead_letters;
pub mod error;
pub mod idempotency_keys;
pub mod lock;
pub mod message_partitions;
pub mod messages;
pub mod migrations;
pub mod pool;
pub mod scheduled_messages;
pub mod table_stats;
pub mod webhook_deliveries;

pub use error::{DbError, FailureClass, RowOutcome};
pub use migrations::{run_migrations, with_retry, MigrationError, MIGRATIONS};
pub use pool::{blocking, build_pool, ping, pool_answers, PgPool, PgPooled};
