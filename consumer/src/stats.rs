//! Recording what the consumer did: one call per event, kept in the
//! Prometheus metrics (so there is one set of books), and read back as a
//! [`Snapshot`] for logs and tests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::kind::Kind;
use shared::Envelope;
use uuid::Uuid;

use crate::metrics::{DeadLetterReason, Metrics};

/// Running totals since the process started.
pub struct Stats {
    metrics: Arc<Metrics>,
    /// Not a metric: `pipeline_broker_reconnects_total` is this minus one.
    sessions: AtomicU64,
    /// Not a metric: the supervisor resets its backoff only after progress.
    settled_batches: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Deliveries taken from the broker stream and handed to the worker.
    pub received: u64,
    /// Rows newly inserted.
    pub stored: u64,
    /// Deliveries whose id was already stored (redeliveries).
    pub duplicates: u64,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Insert attempts that failed transiently and were retried.
    pub db_retries: u64,
    /// Messages sent to a delay queue for another attempt.
    pub retries: u64,
    /// Broker sessions started (1 + reconnects).
    pub sessions: u64,
    /// Batches fully settled (every delivery acked).
    pub settled_batches: u64,
}

impl Stats {
    /// The dead letters waiting in `messages.dead`, as just asked.
    pub fn record_dead_letters_queued(&self, n: u32) {
        self.metrics.dead_letters_queued.set(i64::from(n));
    }

    /// Record into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            sessions: AtomicU64::new(0),
            settled_batches: AtomicU64::new(0),
        }
    }

    /// A batch of `n` deliveries taken from the stream.
    pub fn record_received(&self, n: usize) {
        self.metrics.deliveries.inc_by(n as u64);
        self.metrics.batch_size.observe(n as f64);
    }

    /// One insert transaction committed after `elapsed`.
    pub fn record_insert(&self, elapsed: Duration) {
        self.metrics.insert_seconds.observe(elapsed.as_secs_f64());
    }

    /// `envelopes` were committed at `stored_at`; `new_ids` are the ids that
    /// made new rows (the rest were already stored). Each new row's
    /// end-to-end latency is `stored_at - created_at`.
    pub fn record_stored(
        &self,
        kind: &Kind,
        envelopes: &[Envelope],
        new_ids: &[Uuid],
        stored_at: DateTime<Utc>,
    ) {
        self.metrics.rows_stored.inc_by(new_ids.len() as u64);
        self.metrics
            .rows_stored_of(kind)
            .inc_by(new_ids.len() as u64);
        self.metrics
            .duplicates
            .inc_by(envelopes.len().saturating_sub(new_ids.len()) as u64);
        let mut new: HashSet<&Uuid> = new_ids.iter().collect();
        for envelope in envelopes {
            // `remove`, so an id delivered twice in one batch counts once.
            if new.remove(&envelope.id) {
                // A clock behind the producer's must not make a negative latency.
                let latency = (stored_at - envelope.created_at)
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                self.metrics
                    .end_to_end_seconds
                    .observe(latency.as_secs_f64());
                if let Some(due) = envelope.deliver_at {
                    let late = (stored_at - due).to_std().unwrap_or(Duration::ZERO);
                    self.metrics
                        .scheduled_lateness_seconds
                        .observe(late.as_secs_f64());
                }
            }
        }
    }

    /// One message dead-lettered.
    pub fn record_dead_lettered(&self, reason: DeadLetterReason) {
        self.metrics.dead_lettered(reason).inc();
    }

    /// A batch was settled: every delivery of it acked.
    pub fn record_settled(&self) {
        self.settled_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// One transient database failure.
    pub fn record_db_retry(&self) {
        self.metrics.db_retries.inc();
    }

    /// One message scheduled for another attempt.
    pub fn record_retry(&self) {
        self.metrics.retries.inc();
    }

    /// A broker session started consuming: the broker counts as connected
    /// until [`Self::record_session_ended`].
    pub fn record_session(&self) {
        if self.sessions.fetch_add(1, Ordering::Relaxed) > 0 {
            self.metrics.broker.record_reconnect();
        }
        self.metrics.broker.set_connected(true);
    }

    /// The RabbitMQ node the session is on (`None` between sessions).
    pub fn set_node(&self, node: Option<&str>) {
        self.metrics.broker.set_node(node);
    }

    /// The consuming session is over (failed, or shut down).
    pub fn record_session_ended(&self) {
        self.metrics.broker.set_connected(false);
    }

    /// Current totals.
    pub fn snapshot(&self) -> Snapshot {
        let m = &self.metrics;
        Snapshot {
            received: m.deliveries.get(),
            stored: m.rows_stored.get(),
            duplicates: m.duplicates.get(),
            dead_lettered: m.dead_lettered_total(),
            db_retries: m.db_retries.get(),
            retries: m.retries.get(),
            sessions: self.sessions.load(Ordering::Relaxed),
            settled_batches: self.settled_batches.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::kind::Kinds;

    #[test]
    fn stats_and_metrics_keep_one_set_of_books() {
        let metrics = Arc::new(Metrics::new(&Kinds::default()).unwrap());
        let stats = Stats::new(metrics.clone());
        stats.record_session();
        stats.record_session();
        stats.record_received(3);
        let envelopes: Vec<Envelope> = (0..3).map(|i| Envelope::new(format!("m{i}"))).collect();
        let stored_at = Utc::now();
        stats.record_stored(
            &Kind::default_kind(),
            &envelopes,
            &[envelopes[0].id, envelopes[2].id],
            stored_at,
        );
        stats.record_dead_lettered(DeadLetterReason::Rejected);

        let s = stats.snapshot();
        assert_eq!(
            (
                s.received,
                s.stored,
                s.duplicates,
                s.dead_lettered,
                s.sessions
            ),
            (3, 2, 1, 1, 2)
        );
        let text = metrics.render().unwrap();
        for line in [
            "pipeline_consumer_deliveries_total 3\n",
            "pipeline_consumer_rows_stored_total 2\n",
            "pipeline_consumer_duplicates_total 1\n",
            "pipeline_consumer_dead_lettered_total{reason=\"rejected\"} 1\n",
            "pipeline_consumer_dead_lettered_total{reason=\"invalid\"} 0\n",
            "pipeline_consumer_batch_size_count 1\n",
            "pipeline_end_to_end_seconds_count 2\n",
            "pipeline_broker_connected 1\n",
            "pipeline_broker_reconnects_total 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        stats.record_session_ended();
        assert!(!metrics.broker.is_connected());
    }
}
