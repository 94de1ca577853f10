//! When and how much the retention deletes: the settings both binaries'
//! retention tasks read.

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// `RETENTION_INTERVAL` and `RETENTION_BATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// `RETENTION_INTERVAL` (default `1m`): time between two runs of a
    /// process (one process of each kind at a time runs: the others skip).
    pub interval: Duration,
    /// `RETENTION_BATCH` (default 1000): most rows one `DELETE` removes;
    /// each is its own short transaction, so ingest never waits long
    /// behind one and vacuum keeps up.
    pub batch: i64,
}

impl Schedule {
    /// Read the schedule from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let second = Duration::from_secs(1);
        Ok(Self {
            interval: env.duration_or("RETENTION_INTERVAL", 60 * second, second)?,
            batch: env.number_in("RETENTION_BATCH", 1000, 1..=100_000)?,
        })
    }
}
