//! The retention task: every `RETENTION_INTERVAL`, the process that gets
//! its kind's advisory lock runs every rule; the others skip that round. Each `DELETE` is a bounded batch in its own transaction, run on
//! the blocking threads (`crate::db::blocking`) over a connection of its
//! own, so pruning never holds a connection the storing path needs, nor a
//! lock for longer than one batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::metrics::RetentionMetrics;
use super::outcome::{Outcome, Report};
use super::partitions::MessagePartitions;
use super::rules::Rule;
use super::schedule::Schedule;
use crate::db::{lock, table_stats, DbError, PgPool};

/// The retention of one process.
pub struct Retention {
    /// A pool of one connection, the retention's own: its session holds
    /// the advisory lock across the batches of a run.
    pool: PgPool,
    schedule: Schedule,
    rules: Vec<Rule>,
    /// The advisory lock of this kind of process (`db::lock`).
    lock: i64,
    /// The partitions of `messages` to keep (the consumers').
    partitions: Option<MessagePartitions>,
    /// Where runs are recorded, and whether the tables' figures are read
    /// after each (the consumers', whose run covers most tables).
    metrics: Option<(RetentionMetrics, bool)>,
}

/// The longest wait for the retention's connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

impl Retention {
    /// The retention of the database at `database_url`: `rules`, run by
    /// one process holding advisory lock `lock` at a time.
    pub fn new(database_url: &str, schedule: Schedule, rules: Vec<Rule>, lock: i64) -> Self {
        Self {
            pool: crate::db::build_pool(database_url, 1, CHECKOUT_TIMEOUT),
            schedule,
            rules,
            lock,
            partitions: None,
            metrics: None,
        }
    }

    /// Record each run in `metrics`, and with `tables` each table's rows,
    /// bytes and oldest row after it.
    pub fn with_metrics(mut self, metrics: RetentionMetrics, tables: bool) -> Self {
        self.metrics = Some((metrics, tables));
        self
    }

    /// Also create the partitions of `messages` ahead and drop those past
    /// their retention, first in each run.
    pub fn with_partitions(mut self, partitions: MessagePartitions) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Run at once (the partitions of the hour must exist before its
    /// first row), then every `RETENTION_INTERVAL`, until `shutdown` turns
    /// true. A failed run is logged and tried again at the next interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let started: DateTime<Utc> = Utc::now();
            let outcome = self.run_once(&shutdown).await;
            self.record(&outcome).await;
            match outcome {
                Ok(Outcome::Skipped) => log::debug!("retention: another process prunes"),
                Ok(Outcome::Pruned(r) | Outcome::Interrupted(r)) => {
                    let total: usize = r.deleted.values().sum();
                    if total > 0 || !r.created.is_empty() || !r.dropped.is_empty() {
                        log::info!("retention run of {started}: {r:?}");
                    }
                }
                Err(e) => log::warn!("retention run of {started} failed: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.schedule.interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
    }

    /// Record a run, and read the tables' figures if this process does.
    async fn record(&self, outcome: &Result<Outcome, DbError>) {
        let Some((metrics, tables)) = &self.metrics else {
            return;
        };
        metrics.record(outcome, Utc::now());
        if *tables && !matches!(outcome, Ok(Outcome::Skipped)) {
            let read = crate::db::blocking(&self.pool, |conn| {
                Ok((table_stats::sizes(conn)?, table_stats::oldest(conn)?))
            })
            .await;
            match read {
                Ok((sizes, oldest)) => metrics.record_tables(&sizes, &oldest, Utc::now()),
                Err(e) => log::warn!("retention: cannot read the tables' figures: {e}"),
            }
        }
    }

    /// One run: take the lock or skip, then every rule until it deletes
    /// less than a batch, then let the lock go.
    pub async fn run_once(&self, shutdown: &watch::Receiver<bool>) -> Result<Outcome, DbError> {
        let key = self.lock;
        let locked =
            crate::db::blocking(&self.pool, move |conn| Ok(lock::try_lock(conn, key)?)).await?;
        if !locked {
            return Ok(Outcome::Skipped);
        }
        let outcome = self.prune_all(shutdown).await;
        // On a broken connection the lock went with its session.
        if let Err(e) = crate::db::blocking(&self.pool, |conn| Ok(lock::unlock_all(conn)?)).await {
            log::warn!("retention: cannot release its lock: {e}");
        }
        outcome
    }

    async fn prune_all(&self, shutdown: &watch::Receiver<bool>) -> Result<Outcome, DbError> {
        let mut report = Report::default();
        if let Some(partitions) = self.partitions {
            let (created, dropped) = crate::db::blocking(&self.pool, move |conn| {
                Ok(partitions.maintain(conn, Utc::now())?)
            })
            .await?;
            report.created = created;
            report.dropped = dropped;
        }
        let limit = self.schedule.batch;
        for rule in self.rules.iter().copied() {
            let count = report.deleted.entry(rule.name).or_insert(0);
            loop {
                if *shutdown.borrow() {
                    return Ok(Outcome::Interrupted(report));
                }
                let n = crate::db::blocking(&self.pool, move |conn| {
                    Ok((rule.prune)(conn, rule.age, limit)?)
                })
                .await?;
                *count += n;
                if i64::try_from(n).unwrap_or(i64::MAX) < limit {
                    break;
                }
            }
        }
        Ok(Outcome::Pruned(report))
    }
}
