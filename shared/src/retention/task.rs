//! The retention task: every `RETENTION_INTERVAL`, the process that gets
//! its kind's advisory lock runs every rule; the others skip that round. Each `DELETE` is a bounded batch in its own transaction, run on
//! the blocking threads (`crate::db::blocking`) over a connection of its
//! own, so pruning never holds a connection the storing path needs, nor a
//! lock for longer than one batch.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::rules::Rule;
use super::schedule::Schedule;
use crate::db::{lock, DbError, PgPool};

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another process holds the lock: it prunes this round.
    Skipped,
    /// Every rule ran to the end: rows deleted per rule.
    Pruned(BTreeMap<&'static str, usize>),
    /// Stopped by shutdown before the end: rows deleted so far.
    Interrupted(BTreeMap<&'static str, usize>),
}

/// The retention of one consumer process.
pub struct Retention {
    /// A pool of one connection, the retention's own: its session holds
    /// the advisory lock across the batches of a run.
    pool: PgPool,
    schedule: Schedule,
    rules: Vec<Rule>,
    /// The advisory lock of this kind of process (`db::lock`).
    lock: i64,
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
        }
    }

    /// Run every `RETENTION_INTERVAL` until `shutdown` turns true. A failed
    /// run is logged and tried again at the next interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.schedule.interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            let started: DateTime<Utc> = Utc::now();
            match self.run_once(&shutdown).await {
                Ok(Outcome::Skipped) => log::debug!("retention: another process prunes"),
                Ok(Outcome::Pruned(n) | Outcome::Interrupted(n)) => {
                    let total: usize = n.values().sum();
                    if total > 0 {
                        log::info!("retention run of {started}: deleted {n:?}");
                    }
                }
                Err(e) => log::warn!("retention run of {started} failed: {e}"),
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
        let mut deleted = BTreeMap::new();
        let limit = self.schedule.batch;
        for rule in self.rules.iter().copied() {
            let count = deleted.entry(rule.name).or_insert(0);
            loop {
                if *shutdown.borrow() {
                    return Ok(Outcome::Interrupted(deleted));
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
        Ok(Outcome::Pruned(deleted))
    }
}
