//! Publishing with confirms over a supervised RabbitMQ connection.
//!
//! Four jobs, a file each, around the [`Publisher`] handle (`handle`: the
//! live link and the signals they share):
//! * `supervisor`: owns the connection. It connects, declares the
//!   topology, opens `PUBLISH_CHANNELS` channels in confirm mode and hands
//!   them out as a link. When the connection fails it drops the
//!   link (so requests answer 503 at once instead of hanging), reconnects
//!   with capped exponential backoff and hands out a fresh link.
//! * `publish`: one message, or a batch pipelined, each awaiting its confirm.
//! * `events`: relays the consumers' completion events to SSE and `?wait`.
//! * `admin`: a channel of its own for the dead-letter tools.
//!
//! Handlers never hold a lock across an await: they clone the `Arc<Link>`
//! under a read lock, release it, then publish and await their own confirm,
//! so any number of requests pipeline their confirms on the same channels.
//!
//! The supervisor keeps `pipeline_broker_connected` and
//! `pipeline_broker_reconnects_total` up to date; every confirmed publish
//! records its publish→confirm latency.

mod admin;
mod events;
mod handle;
mod publish;
mod supervisor;

pub use handle::Publisher;
pub use supervisor::{start, PublisherConfig};

/// Why a message was not confirmed: the one error of every publish
/// (`shared::publish`). Every variant means "not accepted": the client gets
/// a 503 and may retry (with the same Idempotency-Key).
pub use shared::publish::PublishError;
