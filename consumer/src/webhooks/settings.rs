//! The `WEBHOOK_*` settings of the deliverer.

use std::time::Duration;

use shared::webhook::{AllowedHosts, SigningKeys};
use shared::{ConfigError, Env};

/// The webhook settings (all optional; delivery is off without a secret).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_SECRET`: the master secret (`whsec_<base64>` or text) each
    /// destination's key is derived from, and `WEBHOOK_PREVIOUS_SECRET`,
    /// the one before it during a rotation. Unset: no delivery (owed
    /// notifications wait in the outbox).
    pub keys: Option<SigningKeys>,
    /// `WEBHOOK_ALLOWED_HOSTS` (comma-separated `host`, `host:port` or
    /// `host:*`): hosts that may be private or local, and their ports.
    pub allowed_hosts: AllowedHosts,
    /// `WEBHOOK_TIMEOUT_MS` (default 10000): the longest one attempt takes,
    /// connecting and answering included.
    pub timeout: Duration,
    /// `WEBHOOK_CONCURRENCY` (default 16): attempts in flight per process.
    pub concurrency: usize,
    /// `WEBHOOK_CONCURRENCY_PER_DESTINATION` (default 4, at most
    /// `WEBHOOK_CONCURRENCY`): attempts in flight per process to one
    /// origin, so that a slow destination cannot take every slot.
    pub per_destination: usize,
    /// `WEBHOOK_BREAKER_FAILURES` (default 5): failures in a row (no
    /// answer, or a 5xx) that pause a destination.
    pub breaker_failures: u32,
    /// `WEBHOOK_BREAKER_PAUSE_MS` (default 30000): the first pause; each
    /// time the trial after a pause fails, the next pause doubles...
    pub breaker_pause: Duration,
    /// `WEBHOOK_BREAKER_MAX_PAUSE_MS` (default 600000): ...up to this.
    pub breaker_max_pause: Duration,
    /// `WEBHOOK_MAX_ATTEMPTS` (default 12): attempts before `failed`.
    pub max_attempts: u32,
    /// `WEBHOOK_MAX_AGE_SECS` (default 86400): no retry is scheduled past
    /// this age (from when the notification was owed).
    pub max_age: Duration,
    /// `WEBHOOK_RETRY_BASE_MS` (default 5000): the first retry's delay;
    /// each further one doubles...
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_MS` (default 3600000): ...up to this.
    pub retry_max: Duration,
    /// `WEBHOOK_POLL_MS` (default 1000): how often an idle deliverer looks
    /// for due rows (other consumers' and retries); a commit that owes a
    /// notification wakes it at once.
    pub poll: Duration,
}

impl WebhookSettings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let keys = shared::webhook::settings::signing_keys(env)?;
        let allowed_hosts = shared::webhook::settings::allowed_hosts(env)?;
        let concurrency = env.number_in("WEBHOOK_CONCURRENCY", 16, 1..=1024)?;
        Ok(Self {
            keys,
            allowed_hosts,
            timeout: env.millis_or("WEBHOOK_TIMEOUT_MS", 10_000)?,
            concurrency,
            per_destination: env
                .number_in("WEBHOOK_CONCURRENCY_PER_DESTINATION", 4, 1..=1024)?
                .min(concurrency),
            breaker_failures: env.number_in("WEBHOOK_BREAKER_FAILURES", 5, 1..=1000)?,
            breaker_pause: env.millis_or("WEBHOOK_BREAKER_PAUSE_MS", 30_000)?,
            breaker_max_pause: env.millis_or("WEBHOOK_BREAKER_MAX_PAUSE_MS", 600_000)?,
            max_attempts: env.number_in("WEBHOOK_MAX_ATTEMPTS", 12, 1..=100)?,
            max_age: Duration::from_secs(env.number_in(
                "WEBHOOK_MAX_AGE_SECS",
                86_400,
                1..=30 * 86_400,
            )?),
            retry_base: env.millis_or("WEBHOOK_RETRY_BASE_MS", 5_000)?,
            retry_max: env.millis_or("WEBHOOK_RETRY_MAX_MS", 3_600_000)?,
            poll: env.millis_or("WEBHOOK_POLL_MS", 1_000)?,
        })
    }

    /// The delay after failed attempt `attempt` (1-based): doubling, capped.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        shared::backoff::grow(
            self.retry_base,
            2,
            attempt.saturating_sub(1),
            self.retry_max,
        )
    }

    /// How long a claim holds a row: longer than an attempt can take, so
    /// that only a dead process lets it run out.
    pub(crate) fn lease(&self) -> Duration {
        self.timeout.saturating_mul(2) + Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap() {
        let env = Env::from_pairs([
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_RETRY_MAX_MS", "500"),
        ]);
        let s = WebhookSettings::from_env(&env).unwrap();
        let delays: Vec<u128> = (1..=5).map(|a| s.retry_delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert!(s.keys.is_none());
    }

    #[test]
    fn limits_and_secrets_are_checked() {
        let s = WebhookSettings::from_env(&Env::from_pairs([
            ("WEBHOOK_CONCURRENCY", "2"),
            ("WEBHOOK_CONCURRENCY_PER_DESTINATION", "8"),
        ]))
        .unwrap();
        assert_eq!(s.per_destination, 2, "never more than the whole");
        let err = WebhookSettings::from_env(&Env::from_pairs([("WEBHOOK_PREVIOUS_SECRET", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_PREVIOUS_SECRET"), "{err}");
        let err =
            WebhookSettings::from_env(&Env::from_pairs([("WEBHOOK_ALLOWED_HOSTS", "h:port")]))
                .unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_ALLOWED_HOSTS"), "{err}");
    }
}
