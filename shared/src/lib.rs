//! The contract between the producer and the consumer: configuration helpers,
//! the message envelope, the RabbitMQ topology, the database schema, models and pool.
//!
//! Both binaries depend on this crate and never on each other, so everything
//! that must agree on both sides of the queue lives here and only here.

pub mod amqp;
pub mod backoff;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod envelope;
pub mod events;
pub mod metrics;
pub mod migrate;
pub mod models;
pub mod outbox;
pub mod publish;
pub mod redact;
pub mod roles;
pub mod schema;
pub mod tls;
pub mod topology;
pub mod webhook;

pub use backoff::Backoff;
pub use config::{CommonSettings, ConfigError, Env};
pub use envelope::{ContentError, Envelope};
pub use topology::Topology;
