//! Test harness: each test gets its own PostgreSQL database and its own
//! uniquely prefixed RabbitMQ exchanges and queues, starts the producer and
//! consumers in-process, and removes everything when dropped, so tests run
//! in parallel against the real services and leave nothing behind.
//!
//! `TEST_DATABASE_URL` (default `postgres://root@127.0.0.1:5432`) and
//! `TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) point it
//! at the services.
//!
//! # Layout
//!
//! - `database`: `TestDb`, the test's own PostgreSQL database.
//! - `broker`: `TestBroker`, the test's own topology, and the queue readers
//!   (depth, take all, headers) the bench's fault run uses too.
//! - `services`: the settings the services get in a test; `TestConsumer`.
//!   Uses `database`, `broker`, `exposition`.
//! - `app`: `TestApp`, a producer and the requests the tests make of it
//!   (post a message, read it back, wait for a state, admin calls). Uses
//!   `services`.
//! - `sse`: reading `GET /events`.
//! - `exposition`: parsing `/metrics`.
//! - `process`: `ProducerProcess`, the producer binary as a process of its
//!   own (a file limit, its peak memory, paused). Uses `services`.
//! - `proxy`: `TcpProxy`, a connection a test can cut.
//! - `raw`: HTTP/1.1 by hand over TCP (paths a client would normalise,
//!   no `Host`, a head sent slowly, a stream left idle).
//! - `receiver`: a webhook receiver on 127.0.0.1.
//! - `roles`: `TestRoles`, least-privilege PostgreSQL roles of the test's
//!   own, dropped with it. Uses `database`.
//! - `wait`: `wait_for`, the one way tests wait for a condition.
//!
//! Modules import each other by their own paths, never through the
//! re-exports below, so the root depends on them and not the other way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: fail loudly

pub mod app;
pub mod broker;
pub mod database;
pub mod exposition;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod receiver;
pub mod roles;
pub mod services;
pub mod sse;
pub mod wait;

pub use app::{spawn_producer, TestApp};
pub use broker::TestBroker;
pub use database::TestDb;
pub use exposition::Exposition;
pub use process::ProducerProcess;
pub use proxy::TcpProxy;
pub use receiver::Receiver;
pub use roles::TestRoles;
pub use services::{init_logging, spawn_consumer, TestConsumer};
pub use sse::EventStream;
pub use wait::wait_for;
