//! The consumer's settings, read from the environment (see `.env.example`).

use std::time::Duration;

use shared::{CommonSettings, ConfigError, Env};

/// Everything the consumer needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker, database and topology settings shared with the producer.
    pub common: CommonSettings,
    /// `PREFETCH` (default 1000): unacknowledged deliveries the broker may
    /// push to this consumer; at least twice the batch size keeps batches full.
    pub prefetch: u16,
    /// `BATCH_SIZE` (default 500): most rows stored in one transaction.
    pub batch_size: usize,
    /// `BATCH_WAIT_MS` (default 20): longest wait for a batch to fill once it
    /// has its first message.
    pub batch_wait: Duration,
    /// `SHUTDOWN_TIMEOUT_MS` (default 30000): on SIGTERM, how long to keep
    /// trying to store the messages in hand before leaving them to the broker.
    pub shutdown_timeout: Duration,
}

impl Settings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let settings = Self {
            common: CommonSettings::from_env(env)?,
            prefetch: env.number_in("PREFETCH", 1000, 1..=65_535)?,
            batch_size: env.number_in("BATCH_SIZE", 500, 1..=10_000)?,
            batch_wait: env.millis_or("BATCH_WAIT_MS", 20)?,
            shutdown_timeout: env.millis_or("SHUTDOWN_TIMEOUT_MS", 30_000)?,
        };
        if usize::from(settings.prefetch) < settings.batch_size {
            return Err(ConfigError::new(
                "PREFETCH",
                format!(
                    "must be at least BATCH_SIZE ({}), or batches can never fill",
                    settings.batch_size
                ),
            ));
        }
        Ok(settings)
    }
}
