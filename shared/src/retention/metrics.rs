//! What the retention exports to Prometheus: its last run (time, result,
//! what it deleted and dropped) and, from the process that prunes the
//! most tables (the consumer), every table's rows, bytes and oldest row.

use chrono::{DateTime, Utc};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::outcome::Outcome;
use crate::db::table_stats::{self, TableStats};
use crate::metrics::{labelled_counter, MetricsError};

/// The retention's metrics, registered in a process's registry.
#[derive(Clone)]
pub struct RetentionMetrics {
    last_run: IntGauge,
    last_success: IntGauge,
    deleted: IntCounterVec,
    partitions_created: IntCounter,
    partitions_dropped: IntCounter,
    rows: IntGaugeVec,
    bytes: IntGaugeVec,
    oldest: IntGaugeVec,
}

impl RetentionMetrics {
    /// Create every metric and register it in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, MetricsError> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, MetricsError> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let by_table = |name: &str, help: &str| -> Result<IntGaugeVec, MetricsError> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["table"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let deleted = labelled_counter(
            registry,
            "pipeline_retention_deleted_total",
            "Rows the retention of this process deleted, by rule.",
            "rule",
            [],
        )?;
        Ok(Self {
            last_run: gauge(
                "pipeline_retention_last_run_timestamp_seconds",
                "When this process last ran the retention (it held the lock), Unix seconds.",
            )?,
            last_success: gauge(
                "pipeline_retention_last_run_success",
                "1 if the last retention run of this process succeeded, 0 if it failed.",
            )?,
            deleted,
            partitions_created: counter(
                "pipeline_retention_partitions_created_total",
                "Partitions of messages this process created ahead of their time.",
            )?,
            partitions_dropped: counter(
                "pipeline_retention_partitions_dropped_total",
                "Partitions of messages this process dropped past MESSAGE_RETENTION.",
            )?,
            rows: by_table(
                "pipeline_table_rows",
                "Live rows per table (PostgreSQL's statistics), at the last retention run.",
            )?,
            bytes: by_table(
                "pipeline_table_bytes",
                "On-disk size per table, indexes and TOAST included, at the last retention run.",
            )?,
            oldest: by_table(
                "pipeline_table_oldest_age_seconds",
                "Age of the oldest row per table (messages: the start of its oldest partition with rows).",
            )?,
        })
    }

    /// Record a run that ended at `at` (a skipped round records nothing).
    pub fn record<E>(&self, outcome: &Result<Outcome, E>, at: DateTime<Utc>) {
        let report = match outcome {
            Ok(Outcome::Skipped) => return,
            Ok(Outcome::Pruned(r) | Outcome::Interrupted(r)) => r,
            Err(_) => {
                self.last_run.set(at.timestamp());
                self.last_success.set(0);
                return;
            }
        };
        self.last_run.set(at.timestamp());
        self.last_success.set(1);
        for (rule, n) in &report.deleted {
            self.deleted
                .with_label_values(&[rule])
                .inc_by(u64::try_from(*n).unwrap_or(0));
        }
        self.partitions_created.inc_by(report.created.len() as u64);
        self.partitions_dropped.inc_by(report.dropped.len() as u64);
    }

    /// Record the tables' figures, read at `at`.
    pub fn record_tables(
        &self,
        sizes: &[TableStats],
        oldest: &[table_stats::Oldest],
        at: DateTime<Utc>,
    ) {
        for t in sizes {
            self.rows.with_label_values(&[&t.table]).set(t.rows);
            self.bytes.with_label_values(&[&t.table]).set(t.bytes);
        }
        for (table, time) in oldest {
            let age = time.map_or(0, |t| (at - t).num_seconds().max(0));
            self.oldest.with_label_values(&[table]).set(age);
        }
    }
}
