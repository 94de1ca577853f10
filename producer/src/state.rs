//! State shared by every request handler.

use std::sync::Arc;

use shared::db::{DbError, PgPool, PgPooled};
use shared::kind::Kind;
use shared::Envelope;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::publisher::{PublishError, Publisher};
use crate::slots::Slots;

/// Handles to the broker and the database, cloned into each worker.
#[derive(Clone)]
pub struct AppState {
    /// Publishes with confirms.
    pub publisher: Publisher,
    /// Reads stored messages.
    pub pool: PgPool,
    /// `Retry-After` seconds for 503s.
    pub retry_after_secs: u32,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
    /// Callback hosts allowed although private or local.
    pub webhook_hosts: shared::webhook::AllowedHosts,
    /// The master secrets destination keys are derived from, if set.
    pub webhook_keys: Option<shared::webhook::SigningKeys>,
    /// Open `GET /events` streams (`MAX_STREAMS`).
    pub streams: Slots,
    /// Lookups waiting with `?wait` (`MAX_WAITERS`).
    pub waiters: Slots,
    /// `IDEMPOTENCY_KEY_TTL`: how long a key stays bound to its request.
    pub idempotency_key_ttl: std::time::Duration,
    /// Every retention setting, for the dashboard.
    pub retention: shared::retention::RetentionSettings,
    /// `MAX_SCHEDULE_AHEAD`: the furthest `deliver_at` accepted.
    pub max_schedule_ahead: std::time::Duration,
}

impl AppState {
    /// Publish and map a failure to a 503 with `Retry-After`.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), ApiError> {
        self.publisher
            .publish(envelope)
            .await
            .map_err(|e| self.broker_unavailable(e))
    }

    /// The kind a request names in its `kind` field (absent or null:
    /// `default`), which must be one of `KINDS`: a 400 naming them if not.
    pub fn kind(&self, value: Option<&serde_json::Value>) -> Result<Kind, ApiError> {
        self.publisher
            .topology()
            .kinds
            .of_json(value)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// The configured kind `name` (a query's `kind`): a 400 naming the
    /// configured kinds if it is malformed or not one of them.
    pub fn kind_named(&self, name: &str) -> Result<Kind, ApiError> {
        self.publisher
            .topology()
            .kinds
            .check(name)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }

    /// Run `work` on a channel of its own (see `Publisher::with_channel`);
    /// a 503 when the broker cannot give one.
    pub async fn with_channel<T, W>(&self, reason: &str, work: W) -> Result<T, ApiError>
    where
        W: AsyncFnOnce(&lapin::Channel) -> T,
    {
        self.publisher
            .with_channel(reason, work)
            .await
            .map_err(|e| self.broker_unavailable(e))
    }

    /// A broker failure as the client sees it: 503 with `Retry-After`.
    pub fn broker_unavailable(&self, source: impl Into<PublishError>) -> ApiError {
        ApiError::BrokerUnavailable {
            source: source.into(),
            retry_after: self.retry_after_secs,
        }
    }

    /// Run a blocking database function off the async threads
    /// (`shared::db::blocking`), its failure as the client sees it.
    pub async fn with_db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgPooled) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let result = shared::db::blocking(&self.pool, f).await;
        // The producer's statements are fixed and its rows its own, so an
        // error PostgreSQL raises is the database's state (full disk, out of
        // memory, too many connections, shutdown...), not the client's
        // request and not a bug: 503, retry later. Only a failure on our
        // side of the wire (decoding a row, say) is a 500.
        result.map_err(|e| {
            if e.is_transient() || e.is_database_error() {
                ApiError::DatabaseUnavailable(e.into())
            } else {
                ApiError::Internal(e.into())
            }
        })
    }
}
