//! The consumer's Prometheus metrics, served on `METRICS_ADDR` (see `health`).
//!
//! One registry per [`Metrics`] (built in `Application::build`), never the
//! process-global default, so several consumers in one test process each
//! count only their own work. Recording goes through [`crate::stats::Stats`].

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};
use shared::kind::{Kind, Kinds};
use shared::metrics::{labelled_counter, BrokerMetrics, MetricsError, FAST_BUCKETS};

/// Why a message was dead-lettered: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Undecodable or invalid (no id, bad content, ...).
    Invalid,
    /// The database rejected the row by a constraint.
    Rejected,
    /// Failed unexpectedly `MAX_ATTEMPTS` times.
    MaxAttempts,
    /// Published for a kind that is not configured.
    UnknownKind,
}

impl DeadLetterReason {
    const ALL: [DeadLetterReason; 4] = [
        DeadLetterReason::Invalid,
        DeadLetterReason::Rejected,
        DeadLetterReason::MaxAttempts,
        DeadLetterReason::UnknownKind,
    ];

    /// What clients are told (`shared::dead_letter`).
    pub fn category(self) -> shared::dead_letter::Category {
        use shared::dead_letter::Category;
        match self {
            DeadLetterReason::Invalid => Category::InvalidMessage,
            DeadLetterReason::Rejected => Category::RejectedByDatabase,
            DeadLetterReason::MaxAttempts => Category::MaxAttempts,
            DeadLetterReason::UnknownKind => Category::UnknownKind,
        }
    }

    fn label(self) -> &'static str {
        match self {
            DeadLetterReason::Invalid => "invalid",
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::MaxAttempts => "max_attempts",
            DeadLetterReason::UnknownKind => "unknown_kind",
        }
    }
}

/// Buckets of `pipeline_consumer_batch_size`: up to the largest `BATCH_SIZE`.
const BATCH_SIZE_BUCKETS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Buckets (seconds) of `pipeline_end_to_end_seconds`: 1 ms to a minute, as a
/// backlog or a database outage can hold messages that long.
const END_TO_END_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets (seconds) of `pipeline_webhook_delivery_seconds`: 5 ms to a day,
/// as retries of a receiver that is down take hours.
const WEBHOOK_LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 86400.0,
];

/// The registry and every metric handle; shared behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub(crate) deliveries: IntCounter,
    pub(crate) rows_stored: IntCounter,
    /// `rows_stored` by kind: one series per configured kind, created up
    /// front; a worker stores only its configured kind's queue, so no
    /// label value ever comes from a message.
    rows_stored_by_kind: IntCounterVec,
    pub(crate) duplicates: IntCounter,
    dead_lettered: IntCounterVec,
    pub(crate) retries: IntCounter,
    pub(crate) db_retries: IntCounter,
    pub(crate) batch_size: Histogram,
    pub(crate) insert_seconds: Histogram,
    pub(crate) end_to_end_seconds: Histogram,
    /// How late scheduled messages were stored: commit time minus
    /// `deliver_at`.
    pub(crate) scheduled_lateness_seconds: Histogram,
    pub(crate) webhooks_delivered: IntCounter,
    pub(crate) webhooks_failed: IntCounter,
    pub(crate) webhook_retries: IntCounter,
    pub(crate) webhook_latency_seconds: Histogram,
    /// Claimed notifications put off without an attempt, by `reason`:
    /// `busy` (the destination had all its slots), `paused` (its circuit
    /// breaker is open).
    pub(crate) webhook_deferred: IntCounterVec,
    pub(crate) webhook_breaker_opened: IntCounter,
    pub(crate) webhook_destinations_paused: IntGauge,
    /// Connection state: connected while a session is consuming.
    pub broker: BrokerMetrics,
    /// The retention's last run and the tables' figures.
    pub retention: shared::retention::RetentionMetrics,
    /// Dead letters waiting in `messages.dead`, as last asked.
    pub(crate) dead_letters_queued: IntGauge,
    /// `DEAD_LETTER_ALERT_DEPTH`.
    pub(crate) dead_letter_alert_depth: IntGauge,
}

impl Metrics {
    /// A fresh registry with every metric registered (every `reason` and
    /// every kind of `kinds` created at 0, so `rate()` sees the first one).
    pub fn new(kinds: &Kinds) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| -> Result<Histogram, MetricsError> {
                let h =
                    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let deliveries = counter(
            "pipeline_consumer_deliveries_total",
            "Deliveries taken from the broker and handed to the worker.",
        )?;
        let rows_stored = counter(
            "pipeline_consumer_rows_stored_total",
            "Rows newly inserted (committed) into PostgreSQL.",
        )?;
        let rows_stored_by_kind = labelled_counter(
            &registry,
            "pipeline_consumer_rows_stored_by_kind_total",
            "Rows newly inserted (committed) into PostgreSQL, by kind (the configured KINDS).",
            "kind",
            kinds.all().iter().map(Kind::as_str),
        )?;
        let duplicates = counter(
            "pipeline_consumer_duplicates_total",
            "Deliveries whose id was already stored (redeliveries); acked without a new row.",
        )?;
        let retries = counter(
            "pipeline_consumer_retries_total",
            "Messages sent to a delay queue for another attempt.",
        )?;
        let db_retries = counter(
            "pipeline_consumer_db_retries_total",
            "Inserts retried because the database was unavailable.",
        )?;
        let dead_lettered = labelled_counter(
            &registry,
            "pipeline_consumer_dead_lettered_total",
            "Messages sent to the dead-letter queue, by reason.",
            "reason",
            DeadLetterReason::ALL.iter().map(|r| r.label()),
        )?;
        let batch_size = histogram(
            "pipeline_consumer_batch_size",
            "Deliveries per batch handed to the worker.",
            &BATCH_SIZE_BUCKETS,
        )?;
        let insert_seconds = histogram(
            "pipeline_consumer_insert_seconds",
            "Time to insert and commit one batch (successful inserts).",
            &FAST_BUCKETS,
        )?;
        let end_to_end_seconds = histogram(
            "pipeline_end_to_end_seconds",
            "Time from the producer accepting a message (created_at) to its row being committed.",
            &END_TO_END_BUCKETS,
        )?;
        let scheduled_lateness_seconds = histogram(
            "pipeline_scheduled_lateness_seconds",
            "Time from a scheduled message's deliver_at to its row being committed.",
            &END_TO_END_BUCKETS,
        )?;
        let webhooks_delivered = counter(
            "pipeline_webhooks_delivered_total",
            "Webhook notifications answered with a 2xx.",
        )?;
        let webhooks_failed = counter(
            "pipeline_webhooks_failed_total",
            "Webhook notifications given up (410, or out of attempts or time).",
        )?;
        let webhook_retries = counter(
            "pipeline_webhook_retries_total",
            "Webhook attempts that failed and were scheduled again.",
        )?;
        let webhook_latency_seconds = histogram(
            "pipeline_webhook_delivery_seconds",
            "Time from the commit that owed a notification to the receiver's 2xx.",
            &WEBHOOK_LATENCY_BUCKETS,
        )?;
        let webhook_deferred = labelled_counter(
            &registry,
            "pipeline_webhook_deferred_total",
            "Webhook notifications put off without an attempt: busy (the destination's slots are taken) or paused (its circuit breaker is open).",
            "reason",
            ["busy", "paused"],
        )?;
        let webhook_breaker_opened = counter(
            "pipeline_webhook_breaker_opened_total",
            "Times a destination's circuit breaker opened (it failed WEBHOOK_BREAKER_FAILURES times in a row, or its trial failed).",
        )?;
        let webhook_destinations_paused = IntGauge::new(
            "pipeline_webhook_destinations_paused",
            "Destinations whose circuit breaker is open or half-open now.",
        )?;
        registry.register(Box::new(webhook_destinations_paused.clone()))?;
        let broker = BrokerMetrics::register(&registry)?;
        let retention = shared::retention::RetentionMetrics::register(&registry)?;
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let dead_letters_queued = gauge(
            "pipeline_dead_letters_queued",
            "Dead letters waiting in messages.dead (asked every few seconds; -1 until known).",
        )?;
        dead_letters_queued.set(-1);
        let dead_letter_alert_depth = gauge(
            "pipeline_dead_letter_alert_depth",
            "DEAD_LETTER_ALERT_DEPTH: more queued dead letters than this is an alert, never a limit.",
        )?;
        Ok(Self {
            registry,
            deliveries,
            rows_stored,
            rows_stored_by_kind,
            duplicates,
            dead_lettered,
            retries,
            db_retries,
            batch_size,
            insert_seconds,
            end_to_end_seconds,
            scheduled_lateness_seconds,
            webhooks_delivered,
            webhooks_failed,
            webhook_retries,
            webhook_latency_seconds,
            webhook_deferred,
            webhook_breaker_opened,
            webhook_destinations_paused,
            broker,
            retention,
            dead_letters_queued,
            dead_letter_alert_depth,
        })
    }

    /// The stored-rows counter of `kind` (a configured kind: the kind of
    /// the queue a worker consumes).
    pub(crate) fn rows_stored_of(&self, kind: &Kind) -> IntCounter {
        self.rows_stored_by_kind.with_label_values(&[kind.as_str()])
    }

    /// The dead-letter counter for `reason`.
    pub(crate) fn dead_lettered(&self, reason: DeadLetterReason) -> IntCounter {
        self.dead_lettered.with_label_values(&[reason.label()])
    }

    /// Dead letters for every reason together.
    pub(crate) fn dead_lettered_total(&self) -> u64 {
        DeadLetterReason::ALL
            .iter()
            .map(|r| self.dead_lettered(*r).get())
            .sum()
    }

    /// The dead letters waiting, if known, and whether more than the alert
    /// depth.
    pub(crate) fn dead_letters(&self) -> Option<(u64, bool)> {
        let queued = u64::try_from(self.dead_letters_queued.get()).ok()?;
        Some((
            queued,
            queued > self.dead_letter_alert_depth.get().max(0) as u64,
        ))
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        shared::metrics::render(&self.registry)
    }
}
