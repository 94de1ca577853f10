//! End-to-end tests against the real RabbitMQ and PostgreSQL. Each test has
//! its own database and topology (see the `e2e` crate), so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod bad_input;
mod broker_faults;
mod dead_letters;
mod events;
mod flow;
mod hardening;
mod metrics;
mod openapi;
mod poison;
mod retries;
mod shutdown;
mod webhooks;
