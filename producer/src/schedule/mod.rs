//! Scheduled messages (issue 19): a message with `deliver_at` or
//! `delay_seconds` is not published at its 202 but held in PostgreSQL
//! (`shared::db::scheduled_messages`), and published by a dispatcher when
//! it falls due.
//!
//! Why PostgreSQL and not the broker: a million waiting messages are a
//! million index entries, found by time with `SKIP LOCKED` by any number of
//! producers, cancelled with one UPDATE, listed and counted; RabbitMQ has
//! no such place (per-message TTL expires only at a queue's head, tiered
//! delay queues cannot cancel or list, the delayed-message plugin is
//! archived and keeps its messages on one node). The broker sees a
//! scheduled message only when it is due, as any other message, so every
//! guarantee of the queue (confirms, stored once, dead letters) holds.
//!
//! * `settings`: `MAX_SCHEDULE_AHEAD`, `SCHEDULE_POLL_MS`, `SCHEDULE_BATCH`,
//!   `SCHEDULE_LEASE_MS`.
//! * `hold`: a handler's one call: the request's schedule read, and the
//!   messages held instead of published.
//! * `dispatcher`: the loop that claims what is due, publishes it with
//!   confirms and marks it (a service, started by `startup`).
//! * `metrics`: how many wait, the next due, what was dispatched and how
//!   late.

pub mod dispatcher;
pub mod hold;
pub mod metrics;
pub mod settings;
