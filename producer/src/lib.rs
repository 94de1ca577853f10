//! The producer: an actix-web service that accepts messages over HTTP and
//! publishes them, with confirms, to RabbitMQ; and serves the stored ones
//! back from PostgreSQL.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod management;
pub mod metrics;
pub mod publisher;
pub mod rates;
pub mod routes;
pub mod startup;
pub mod state;

pub use config::Settings;
pub use startup::Application;
