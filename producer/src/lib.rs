//! The producer: an actix-web service that accepts messages over HTTP and
//! publishes them, with confirms, to RabbitMQ; and serves the stored ones
//! back from PostgreSQL.
//!
//! # Layout
//!
//! Three layers; a module uses only modules of its own layer or below, and
//! no two files import each other.
//!
//! **Assembly.** `main` reads the [`Settings`] (`config`) and runs the
//! [`Application`] (`startup`: migrations, pool, publisher, HTTP server).
//! `routes` is the route table: every resource with its declared access
//! and its handlers; `openapi` is the document describing them. These two
//! are the only modules that name handlers.
//!
//! **Handlers**, a module (or a folder, for a feature of several files)
//! per feature; they use helpers and services, never each other:
//! * `messages/`: `single` (`POST /messages`, `GET /messages/{id}`),
//!   `list` (`GET /messages`), `tutorial` (`POST /add_message`).
//! * `batches`: `POST /messages/batch`, `GET /batches/{id}`.
//! * `dead_letters/`: `browse`, `redrive` (all or one), `purge`, and their
//!   query (`params`).
//! * `dashboard/`: `page` (the page, its assets, which tokens it needs),
//!   `overview`, `messages`, `key`.
//! * `webhooks` (the failed-delivery tools), `events` (SSE), `health`
//!   (probes and `/metrics`).
//!
//! **Helpers** (used by handlers; no handlers of their own):
//! * `idempotency`: the `Idempotency-Key`, one call per handler.
//! * `callbacks`: a request's `callback_url`, and its notification's state.
//! * `wait`: the `?wait` completion loop of a status lookup.
//! * `cursor`: the one keyset cursor format.
//! * `schemas`: the request and answer shapes of the OpenAPI document.
//! * `http/`: `access` (who may call: [`http::access::Access`] and the
//!   guard), `extract` (body and query reading), `rejections` (counting
//!   refused submissions) and `resource` (registering a route with all of
//!   these); none knows a path.
//!
//! **Services** below the handlers: `state` (the handlers' [`state::AppState`]:
//! the publisher, the database pool, the blocking-call helper), `publisher/`
//! (`supervisor` owns the connection, `publish`, `events` relays completion
//! events, `admin` opens channels for the tools; `handle` is what they
//! share), `metrics` (with `rates`), `management` (RabbitMQ's
//! HTTP API) and `error` ([`error::ApiError`], the one error shape).

pub mod batches;
pub mod callbacks;
pub mod config;
pub mod cursor;
pub mod dashboard;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod management;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod publisher;
pub mod rates;
pub mod routes;
pub mod schemas;
pub mod startup;
pub mod state;
pub mod wait;
pub mod webhooks;

pub use config::Settings;
pub use startup::Application;
