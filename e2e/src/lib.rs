//! Test harness: each test gets its own PostgreSQL database and its own
//! uniquely prefixed RabbitMQ exchanges and queues, starts the producer and
//! consumers in-process, and removes everything when dropped, so tests run
//! in parallel against the real services and leave nothing behind.
//!
//! `TEST_DATABASE_URL` (default `postgres://root@127.0.0.1:5432`) and
//! `TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) point it
//! at the services.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: fail loudly

pub mod broker;
pub mod database;
pub mod exposition;
pub mod proxy;
pub mod receiver;
pub mod roles;
pub mod services;

pub use broker::TestBroker;
pub use database::TestDb;
pub use exposition::Exposition;
pub use proxy::TcpProxy;
pub use receiver::Receiver;
pub use roles::TestRoles;
pub use services::{spawn_consumer, spawn_producer, TestConsumer, TestProducer};

use std::future::Future;
use std::time::Duration;

/// Poll `check` every 25 ms until it returns `Some`, or panic with `what`
/// after `timeout`. This waits for a condition; it never sleeps and hopes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Start a logger once for the whole test binary (quiet unless RUST_LOG is set).
pub fn init_logging() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .is_test(true)
        .try_init();
}
