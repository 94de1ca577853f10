//! The dispatcher: every `SCHEDULE_POLL_MS`, claim what is due (up to
//! `SCHEDULE_BATCH`, oldest first, `SKIP LOCKED` so every producer's
//! dispatcher shares the work), publish it pipelined with confirms, mark
//! what the broker confirmed `dispatched` and give the rest back.
//!
//! Nothing is lost between the two stores: a claim is a lease, so a
//! producer dying after its publish leaves rows that another dispatcher
//! publishes again when the lease ends, and the consumer stores an id once.
//! A broker or database outage at the due time only delays: claims fail
//! (nothing changes) or publishes fail (the rows are given back), and the
//! loop tries again with a growing pause until both answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::db::scheduled_messages::{self, Due};
use shared::db::{DbError, PgPool};
use shared::Envelope;
use tokio::sync::watch;
use uuid::Uuid;

use super::metrics::ScheduleMetrics;
use super::settings::ScheduleSettings;
use crate::publisher::Publisher;

/// Connections of the dispatcher's own pool: claiming never waits for a
/// connection the HTTP handlers hold, nor takes theirs.
const POOL_SIZE: u32 = 2;
/// The longest wait for one of them.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the waiting count and the next due are read for the metrics
/// (one pass over the due index).
const GAUGE_EVERY: Duration = Duration::from_secs(5);
/// The longest pause after a failure (database or broker down).
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The dispatcher of one producer.
pub struct Dispatcher {
    pool: PgPool,
    publisher: Publisher,
    settings: ScheduleSettings,
    metrics: ScheduleMetrics,
}

/// What one round did.
enum Round {
    /// Claimed a full batch: more may be due, go on at once.
    Full,
    /// Claimed less than a batch (maybe nothing): wait a poll.
    Drained,
    /// The database or the broker failed: pause, growing.
    Failed,
}

impl Dispatcher {
    /// A dispatcher over the database at `database_url`.
    pub fn new(
        database_url: &str,
        publisher: Publisher,
        settings: ScheduleSettings,
        metrics: ScheduleMetrics,
    ) -> Self {
        Self {
            pool: shared::db::build_pool(database_url, POOL_SIZE, CHECKOUT_TIMEOUT),
            publisher,
            settings,
            metrics,
        }
    }

    /// Dispatch until `shutdown` turns true. A round in flight finishes
    /// (its publishes are bounded by `PUBLISH_TIMEOUT_MS`), so nothing is
    /// left claimed by a clean stop.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut pause = self.settings.poll;
        let mut last_gauge: Option<tokio::time::Instant> = None;
        let mut last_release: Option<tokio::time::Instant> = None;
        while !*shutdown.borrow() {
            if last_gauge.is_none_or(|t| t.elapsed() >= GAUGE_EVERY) {
                last_gauge = Some(tokio::time::Instant::now());
                self.read_gauges().await;
            }
            // Half a lease: a dead dispatcher's claims wait at most 1.5 leases.
            if last_release.is_none_or(|t| t.elapsed() >= self.settings.lease / 2) {
                last_release = Some(tokio::time::Instant::now());
                self.release_expired().await;
            }
            let wait = match self.round().await {
                Round::Full => {
                    pause = self.settings.poll;
                    continue;
                }
                Round::Drained => {
                    pause = self.settings.poll;
                    self.settings.poll
                }
                Round::Failed => {
                    let now = pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                    now
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claim, publish, mark.
    async fn round(&self) -> Round {
        let (limit, lease) = (self.settings.batch, self.settings.lease);
        let claimed = self
            .db(move |conn| Ok(scheduled_messages::claim_due(conn, limit, lease)?))
            .await;
        let due = match claimed {
            Ok(due) => due,
            Err(e) => {
                log::warn!("scheduled messages: cannot claim what is due: {e}");
                return Round::Failed;
            }
        };
        if due.is_empty() {
            return Round::Drained;
        }
        let full = i64::try_from(due.len()).unwrap_or(i64::MAX) >= limit;
        let (envelopes, times, broken) = decode(due);
        if !broken.is_empty() {
            // Written by our own producer, so this is a bug, not input:
            // marked dispatched so it is not claimed for ever.
            log::error!(
                "scheduled messages: {} rows have a body that is not an envelope (first: {}); not published",
                broken.len(),
                broken[0]
            );
            let _ = self
                .db(move |conn| Ok(scheduled_messages::dispatched(conn, &broken)?))
                .await;
        }
        let results = self.publisher.publish_many(&envelopes).await;
        let confirmed_at = Utc::now();
        let mut confirmed = Vec::with_capacity(envelopes.len());
        let mut failed = Vec::new();
        for ((envelope, due_at), result) in envelopes.iter().zip(&times).zip(&results) {
            match result {
                Ok(()) => {
                    let late = (confirmed_at - *due_at).to_std().unwrap_or_default();
                    self.metrics.dispatch_lateness.observe(late.as_secs_f64());
                    confirmed.push(envelope.id);
                }
                Err(_) => failed.push(envelope.id),
            }
        }
        self.metrics.dispatched.inc_by(confirmed.len() as u64);
        let first_error = results
            .iter()
            .find_map(|r| r.as_ref().err().map(ToString::to_string));
        let any_failed = !failed.is_empty();
        let marked = self
            .db(move |conn| {
                scheduled_messages::dispatched(conn, &confirmed)?;
                scheduled_messages::release(conn, &failed)?;
                Ok(())
            })
            .await;
        if let Err(e) = marked {
            // The rows stay claimed until their lease ends, then are
            // published again: the consumer stores each id once.
            log::warn!("scheduled messages: published, but cannot mark them: {e}");
            return Round::Failed;
        }
        if any_failed {
            log::warn!(
                "scheduled messages: not confirmed, given back to be published again ({})",
                first_error.unwrap_or_default()
            );
            return Round::Failed;
        }
        if full {
            Round::Full
        } else {
            Round::Drained
        }
    }

    /// Claims whose lease ended, given back.
    async fn release_expired(&self) {
        match self
            .db(|conn| Ok(scheduled_messages::release_expired(conn)?))
            .await
        {
            Ok(0) => {}
            Ok(n) => log::warn!(
                "scheduled messages: {n} claims outlived their lease (a producer stopped mid-publish?); publishing them again"
            ),
            Err(e) => log::debug!("scheduled messages: cannot release expired claims: {e}"),
        }
    }

    /// The waiting count and the next due, for the metrics.
    async fn read_gauges(&self) {
        if let Ok(waiting) = self.db(|conn| Ok(scheduled_messages::waiting(conn)?)).await {
            self.metrics.waiting.set(waiting.count);
            self.metrics.next_due.set(
                waiting
                    .next_due
                    .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0),
            );
        }
    }

    async fn db<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut shared::db::PgPooled) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        shared::db::blocking(&self.pool, f).await
    }
}

/// The claimed rows as envelopes with their due times, and the ids whose
/// body is not an envelope.
fn decode(due: Vec<Due>) -> (Vec<Envelope>, Vec<DateTime<Utc>>, Vec<Uuid>) {
    let mut envelopes = Vec::with_capacity(due.len());
    let mut times = Vec::with_capacity(due.len());
    let mut broken = Vec::new();
    for row in due {
        match serde_json::from_str::<Envelope>(&row.body) {
            Ok(envelope) => {
                envelopes.push(envelope);
                times.push(row.deliver_at);
            }
            Err(_) => broken.push(row.id),
        }
    }
    (envelopes, times, broken)
}
