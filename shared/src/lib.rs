//! The contract between the producer and the consumer: configuration helpers,
//! the message envelope, the RabbitMQ topology, the database and the shapes
//! clients are shown.
//!
//! Both binaries depend on this crate and never on each other, so everything
//! that must agree on both sides of the queue lives here and only here.
//!
//! # Layout
//!
//! Leaves (no module of this crate below them):
//! * `backoff`: the one growing-delay formula, and jittered backoff.
//! * `redact`: URLs and secrets made safe to log.
//! * `duration`: the one parser of durations in settings (`30s`, `24h`, `90d`).
//! * `kind`: kinds of work: the name pattern, the configured set (`KINDS`)
//!   and the check of a request's `kind`.
//! * `tls`: TLS to the broker (amqps://): roots, client certificates.
//! * `roles`: the privileges of the runtime PostgreSQL roles.
//! * `publish`: the one confirmed publish, and the best-effort one.
//! * `events`: what became of a message or batch, in the shapes clients see:
//!   status bodies, completion events (SSE, `?wait`), webhook bodies.
//! * `readiness`: the `/readyz` body.
//! * `schedule` → `duration`: the fields that schedule a message
//!   (`deliver_at`, `delay_seconds`) read once, and a waiting message's
//!   status body.
//! * `metrics`: the broker metrics both binaries export.
//! * `schema`: the Diesel schema, generated (`diesel.toml`).
//!
//! Above them:
//! * `dead_queue_migration` → `publish`: the classic `messages.dead` of
//!   before becomes the quorum one in place (a move through a holding
//!   queue, under a lock), losing no dead letter.
//! * `topology` → `kind`, `dead_queue_migration`: the exchanges and queues
//!   (each kind's), declared from one place.
//! * `dead_letter` → `kind`, `topology`: the headers a dead letter
//!   carries, their one reader, the categories clients are told, and the
//!   kind a dead letter is of.
//! * `amqp` → `redact`, `tls`: opening a broker connection (nodes,
//!   heartbeat, names).
//! * `config` → `amqp`, `duration`, `redact`, `tls`, `topology`, `kind`:
//!   settings from the environment.
//! * `webhook/` → `config` (its `settings` only): which callback URLs
//!   may be called (the SSRF filter, `WEBHOOK_ALLOWED_HOSTS`), signing
//!   with a key per destination, and the error categories clients are
//!   told (see its docs).
//! * `envelope` → `webhook`, `kind`, `dead_letter`: the message on the wire.
//! * `db` → `schema`, `envelope`, `events`, `schedule`, `backoff`: PostgreSQL, one
//!   module per table plus pool, migrations and errors (see its docs).
//! * `migrate` → `db`, `config`, `redact`, `roles`: who migrates and when
//!   (the owner at startup, or the migration step).
//! * `retention` → `db`, `config`: pruning every table by age, one process
//!   at a time, in bounded batches (a folder; see its docs).
//!
//! No module imports one above it, so there are no import cycles.
//! With the `openapi` feature, the status bodies also derive their
//! OpenAPI schema (utoipa), so the producer documents what it sends.

pub mod amqp;
pub mod backoff;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod dead_queue_migration;
pub mod duration;
pub mod envelope;
pub mod events;
pub mod kind;
pub mod metrics;
pub mod migrate;
pub mod publish;
pub mod readiness;
pub mod redact;
pub mod retention;
pub mod roles;
pub mod schedule;
pub mod schema;
pub mod tls;
pub mod topology;
pub mod webhook;

pub use backoff::Backoff;
pub use config::{CommonSettings, ConfigError, Env};
pub use envelope::{ContentError, Envelope};
pub use topology::Topology;
