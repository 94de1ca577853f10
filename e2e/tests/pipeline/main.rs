//! End-to-end tests against the real RabbitMQ and PostgreSQL. Each test has
//! its own database and topology (see the `e2e` crate), so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod auth;
mod bad_input;
mod broker_faults;
mod dashboard;
mod dead_letters;
mod events;
mod failover;
mod flow;
mod hardening;
mod headers;
mod idempotency;
mod kinds;
mod kinds_visible;
mod metrics;
mod openapi;
mod partitions;
mod poison;
mod redrive;
mod retention;
mod retries;
mod roles;
mod scheduled;
mod shutdown;
mod slow_body;
mod tail;
mod topology;
mod wait_lookup;
mod webhook_keys;
mod webhook_limits;
mod webhook_payloads;
mod webhooks;
