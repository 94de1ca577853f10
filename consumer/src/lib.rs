//! The consumer: takes messages off the queue of each kind it consumes
//! (`CONSUME_KINDS`; `messages.store` for `default`) in batches, stores them
//! in PostgreSQL with Diesel, and acks only after the transaction committed;
//! and delivers the webhooks those commits owe.
//!
//! # Layout
//!
//! A message's path: `session` (consume, fill a batch) → `worker` (decode,
//! store, settle on the broker) → `webhooks` (deliver what the commit owed).
//!
//! * `startup` → `session`, `webhooks`, `health`, `config`, `stats`,
//!   `metrics`, `signal`: builds the application and supervises sessions.
//! * `session` → `worker`, `dead_index`, `dead_depth`, `dead_migration`,
//!   `outbound`, `config`, `stats`:
//!   one broker session (a consuming and a publishing connection), with a
//!   channel and batch loop per consumed queue (each kind's, and the queue
//!   of unknown kinds).
//! * `worker` → `database`, `dead_letter`, `outbound`, `config`, `stats`,
//!   `metrics`: storing and settling one batch of deliveries of one queue
//!   (or dead-lettering those of an unknown kind).
//! * `dead_index` → `database`: recording the dead letters the broker made.
//! * `dead_migration`: moving the classic `messages.dead` of before into
//!   the quorum one, in the background (`shared::dead_queue_migration`).
//! * `dead_depth` → `stats`: the depth of `messages.dead`, against
//!   `DEAD_LETTER_ALERT_DEPTH`.
//! * `webhooks/` → `database`, `metrics`: the outbox deliverer (`mod.rs`)
//!   with its `settings`, per-destination slots and circuit breaker
//!   (`destinations`), guarded `resolver` and failure categories
//!   (`classify`); those four use none of each other.
//! * `config` → `webhooks`: every setting.
//! * `health` → `metrics`; `stats` → `metrics`: probes, and the counters.
//! * Leaves: `database` (every blocking database call, retried while its
//!   work can still be settled), `dead_letter` (republishing a copy),
//!   `outbound` (the publishing connection), `metrics`, `signal`.
//!
//! No module imports one that imports it back: there are no import cycles.

pub mod config;
pub mod database;
pub mod dead_depth;
pub mod dead_index;
pub mod dead_letter;
pub mod dead_migration;
pub mod health;
pub mod metrics;
pub mod outbound;
pub mod session;
pub mod signal;
pub mod startup;
pub mod stats;
pub mod webhooks;
pub mod worker;

pub use config::Settings;
pub use startup::Application;
