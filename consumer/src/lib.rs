//! The consumer: takes messages off `messages.store` in batches, stores them
//! in PostgreSQL with Diesel, and acks only after the transaction committed.

pub mod config;
pub mod dead_index;
pub mod dead_letter;
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
