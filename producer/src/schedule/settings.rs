//! The settings of scheduled messages.

use std::time::Duration;

use shared::{ConfigError, Env};

/// How scheduled messages are accepted and dispatched.
#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// `MAX_SCHEDULE_AHEAD` (default `365d`): a later `deliver_at` is a 400.
    pub max_ahead: Duration,
    /// `SCHEDULE_POLL_MS` (default 100): how often the dispatcher asks what
    /// is due. The lateness of a message is about half of it on average,
    /// plus the publish and the store; each ask is one index probe.
    pub poll: Duration,
    /// `SCHEDULE_BATCH` (default 1000): messages claimed and published per
    /// round; a full round is followed at once by the next, so a burst
    /// due together drains at the publish rate.
    pub batch: i64,
    /// `SCHEDULE_LEASE_MS` (default 30000): how long a claim is held before
    /// another dispatcher takes it over (its producer died mid-publish).
    /// Longer than any publish (`PUBLISH_TIMEOUT_MS`), so a live
    /// dispatcher's claim is never taken.
    pub lease: Duration,
}

impl ScheduleSettings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            max_ahead: env.duration_or(
                "MAX_SCHEDULE_AHEAD",
                shared::schedule::DEFAULT_MAX_AHEAD,
                Duration::from_secs(1),
            )?,
            poll: Duration::from_millis(env.number_in("SCHEDULE_POLL_MS", 100u64, 10..=60_000)?),
            batch: env.number_in("SCHEDULE_BATCH", 1000i64, 1..=10_000)?,
            lease: Duration::from_millis(env.number_in(
                "SCHEDULE_LEASE_MS",
                30_000u64,
                1000..=3_600_000,
            )?),
        })
    }
}
