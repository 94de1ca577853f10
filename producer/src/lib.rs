//! The producer: an actix-web service that accepts messages over HTTP and
//! publishes them, with confirms, to RabbitMQ; and serves the stored ones
//! back from PostgreSQL.
//!
//! # Layout
//!
//! Four layers. A module uses modules of the layers below it and, within a
//! layer, only the ones listed as its helpers; no two files import each
//! other (checked in CI by `scripts/check-cycles.sh`).
//!
//! **Assembly.** `cli` (the binary's `main`, in the library so that the
//! e2e tests' copy of the binary runs the same code) reads the
//! [`Settings`] (`config`) and runs the [`Application`] (`startup`:
//! migrations, pool, publisher, HTTP server).
//! `routes` is the route table: every resource, the access it declares and
//! its handlers. `openapi` is the document describing them (and serves it).
//! These two are the only modules that name handlers.
//!
//! **Handlers**, a file per feature, or a folder for a feature of several
//! files. They use helpers and services, never each other:
//! * `messages/`: `single` (`POST /messages`, `GET /messages/{id}`),
//!   `cancel` (`DELETE /messages/{id}`, a scheduled message), `list`
//!   (`GET /messages`), `tutorial` (`POST /add_message`).
//! * `batches`: `POST /messages/batch`, `GET /batches/{id}`.
//! * `dead_letters/`: `browse`, `redrive` (all or one), `purge`; their
//!   shared query is `params`.
//! * `dashboard/`: `page` (the page, its assets, which tokens it needs),
//!   `overview`, `messages`, `scheduled` (its figures and pages of
//!   scheduled messages), `key`.
//! * `webhooks` (the failed-delivery tools, a destination's signing key),
//!   `events` (SSE), `health` (probes and `/metrics`).
//!
//! **Helpers**, without handlers of their own:
//! * `idempotency`: the `Idempotency-Key`, one call per handler.
//! * `callbacks`: a request's `callback_url`, and its notification's state.
//! * `wait`: the `?wait` completion loop of a status lookup.
//! * `schedule/hold`: a request's `deliver_at` / `delay_seconds`, and the
//!   messages held in PostgreSQL until then instead of published.
//! * `slots`: the caps on long-lived requests (`MAX_STREAMS`,
//!   `MAX_WAITERS`), used by `events` and `wait`.
//! * `cursor`: the one keyset cursor format.
//! * `schemas`: the request and answer shapes of the OpenAPI document.
//! * `http/`: `access` (who may call: [`http::access::Access`] and its
//!   guard), `extract` (reading bodies and queries), `rejections`
//!   (counting refused submissions), and `resource` (registering a route
//!   with these; used by `routes`). None of them knows a path.
//!
//! **Services**: `state` ([`state::AppState`], what every handler gets: the
//! publisher, the database pool and the blocking-call helper), `publisher/`
//! ([`publisher::start`] runs the connection `supervisor`; the
//! [`publisher::Publisher`] handle publishes (`publish`), relays the
//! consumers' completion events (`events`) and lends the tools a channel
//! (`admin`)), `metrics` (with `rates`, the per-second window),
//! `schedule/` (its `dispatcher` publishes the scheduled messages that
//! fall due, with its `settings` and `metrics`),
//! `management` (RabbitMQ's HTTP API, optional) and `error`
//! ([`error::ApiError`], the one error shape), which uses nothing of ours.

pub mod batches;
pub mod callbacks;
pub mod cli;
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
pub mod schedule;
pub mod schemas;
pub mod slots;
pub mod startup;
pub mod state;
pub mod wait;
pub mod webhooks;

pub use config::Settings;
pub use startup::Application;
