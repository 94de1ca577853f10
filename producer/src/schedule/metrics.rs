//! The metrics of scheduled messages, in the producer's registry: how many
//! wait and when the next falls due (read from the database by the
//! dispatcher, so every producer reports the same), and what this
//! producer's dispatcher published and how late. How late they were
//! *stored* is the consumers' `pipeline_scheduled_lateness_seconds`.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Buckets (seconds) of the dispatch lateness: 10 ms to a minute.
const LATENESS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// See the module docs.
#[derive(Clone)]
pub struct ScheduleMetrics {
    /// Messages waiting for their time (`scheduled`, not yet claimed).
    pub waiting: IntGauge,
    /// The earliest `deliver_at` waiting, as a Unix time (0: none).
    pub next_due: Gauge,
    /// Messages accepted for later.
    pub scheduled: IntCounter,
    /// Messages this dispatcher published and the broker confirmed.
    pub dispatched: IntCounter,
    /// Messages cancelled through this producer.
    pub cancelled: IntCounter,
    /// From `deliver_at` to the broker's confirm of its publish.
    pub dispatch_lateness: Histogram,
}

impl ScheduleMetrics {
    /// Register every metric in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let waiting = IntGauge::new(
            "pipeline_scheduled_messages",
            "Scheduled messages waiting for their deliver_at (as last read).",
        )?;
        let next_due = Gauge::new(
            "pipeline_scheduled_next_due_timestamp_seconds",
            "The earliest deliver_at of a waiting message, Unix seconds (0: none).",
        )?;
        let scheduled = IntCounter::new(
            "pipeline_scheduled_accepted_total",
            "Messages accepted (202) with a deliver_at in the future.",
        )?;
        let dispatched = IntCounter::new(
            "pipeline_scheduled_dispatched_total",
            "Scheduled messages published when due and confirmed by the broker.",
        )?;
        let cancelled = IntCounter::new(
            "pipeline_scheduled_cancelled_total",
            "Scheduled messages cancelled with DELETE /messages/{id}.",
        )?;
        let dispatch_lateness = Histogram::with_opts(
            HistogramOpts::new(
                "pipeline_scheduled_dispatch_lateness_seconds",
                "Time from a scheduled message's deliver_at to the broker's confirm of its publish.",
            )
            .buckets(LATENESS_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(waiting.clone()))?;
        registry.register(Box::new(next_due.clone()))?;
        registry.register(Box::new(scheduled.clone()))?;
        registry.register(Box::new(dispatched.clone()))?;
        registry.register(Box::new(cancelled.clone()))?;
        registry.register(Box::new(dispatch_lateness.clone()))?;
        Ok(Self {
            waiting,
            next_due,
            scheduled,
            dispatched,
            cancelled,
            dispatch_lateness,
        })
    }
}
