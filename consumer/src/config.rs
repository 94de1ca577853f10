//! The consumer's settings, read from the environment (see `.env.example`).

use std::time::Duration;

use shared::kind::Kind;
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
    /// `MAX_ATTEMPTS` (default 5): attempts for a message whose insert fails
    /// with an unexpected error, before it is dead-lettered.
    pub max_attempts: u32,
    /// `RETRY_BASE_MS` (default 1000): delay before the second attempt; each
    /// further attempt waits four times longer...
    pub retry_base: Duration,
    /// `RETRY_MAX_MS` (default 60000): ...up to this.
    pub retry_max: Duration,
    /// `METRICS_ADDR` (default `127.0.0.1:9090`): where `/metrics`, `/healthz`
    /// and `/readyz` are served: loopback unless told otherwise (compose
    /// sets `0.0.0.0:9090` inside each container, for its healthcheck and
    /// Prometheus). Each consumer on one host needs its own port
    /// (`127.0.0.1:0` picks a free one).
    pub metrics_addr: String,
    /// `WEBHOOK_*`: delivering notifications (see `crate::webhooks`).
    pub webhooks: crate::webhooks::WebhookSettings,
    /// `RETENTION_*` and the ages of each kind of data (`shared::retention`).
    pub retention: shared::retention::RetentionSettings,
    /// `DEAD_LETTER_ALERT_DEPTH` (default 1000): more dead letters than this
    /// waiting in `messages.dead` is reported (a metric, a `/readyz` field),
    /// never dropped: the queue has no length limit.
    pub dead_letter_alert_depth: u32,
    /// `CONSUME_KINDS` (default: every kind of `KINDS`): the kinds whose
    /// queues this consumer takes messages from, each on a channel of its
    /// own with its own `PREFETCH`, so one kind's backlog never starves
    /// another's inside one consumer.
    pub consume_kinds: Vec<Kind>,
}

impl Settings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let common = CommonSettings::from_env(env)?;
        let webhooks = crate::webhooks::WebhookSettings::from_env(env)?;
        let retention =
            shared::retention::RetentionSettings::from_env(env, common.idempotency_key_ttl)?;
        let consume_kinds = match env.raw("CONSUME_KINDS")? {
            None => common.kinds.all().to_vec(),
            Some(list) => consume_kinds(&common.kinds, &list)?,
        };
        let settings = Self {
            common,
            consume_kinds,
            prefetch: env.number_in("PREFETCH", 1000, 1..=65_535)?,
            batch_size: env.number_in("BATCH_SIZE", 500, 1..=10_000)?,
            batch_wait: env.millis_or("BATCH_WAIT_MS", 20)?,
            shutdown_timeout: env.millis_or("SHUTDOWN_TIMEOUT_MS", 30_000)?,
            max_attempts: env.number_in("MAX_ATTEMPTS", 5, 1..=20)?,
            retry_base: env.millis_or("RETRY_BASE_MS", 1000)?,
            retry_max: env.millis_or("RETRY_MAX_MS", 60_000)?,
            metrics_addr: env.string_or("METRICS_ADDR", "127.0.0.1:9090")?,
            webhooks,
            retention,
            dead_letter_alert_depth: env.number_in(
                "DEAD_LETTER_ALERT_DEPTH",
                1000,
                1..=u32::MAX,
            )?,
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

    /// How long a message waits after failed attempt `attempt` (1-based).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        shared::backoff::grow(
            self.retry_base,
            4,
            attempt.saturating_sub(1),
            self.retry_max,
        )
    }

    /// The topology, with one delay queue per distinct retry delay.
    pub fn topology(&self) -> shared::Topology {
        let delays: Vec<Duration> = (1..self.max_attempts)
            .map(|a| self.retry_delay(a))
            .collect();
        self.common.topology().with_retry_delays(&delays)
    }
}

/// `CONSUME_KINDS`: a non-empty comma-separated subset of `KINDS`.
fn consume_kinds(kinds: &shared::kind::Kinds, list: &str) -> Result<Vec<Kind>, ConfigError> {
    let mut chosen: Vec<Kind> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let kind = kinds
            .check(name)
            .map_err(|e| ConfigError::new("CONSUME_KINDS", e.to_string()))?;
        if !chosen.contains(&kind) {
            chosen.push(kind);
        }
    }
    if chosen.is_empty() {
        return Err(ConfigError::new("CONSUME_KINDS", "names no kind"));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut all = vec![
            ("AMQP_URL", "amqp://127.0.0.1"),
            ("DATABASE_URL", "postgres://127.0.0.1/x"),
        ];
        all.extend_from_slice(pairs);
        Settings::from_env(&Env::from_pairs(all.iter().copied()))
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        let s = settings(&[("RETRY_BASE_MS", "1000"), ("RETRY_MAX_MS", "20000")]).unwrap();
        let delays: Vec<u64> = (1..=4)
            .map(|a| s.retry_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![1000, 4000, 16000, 20000]);
        // Five attempts: four waits, in four distinct queues.
        assert_eq!(s.topology().retry_delays.len(), 4);
    }

    #[test]
    fn probes_and_metrics_listen_on_loopback_unless_told_otherwise() {
        // Outside compose (which sets 0.0.0.0:9090 in the container) the
        // listener is not open to the network by default (issue 16 #2).
        let addr: std::net::SocketAddr = settings(&[]).unwrap().metrics_addr.parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 9090);
    }

    #[test]
    fn consume_kinds_default_to_every_kind_and_must_be_configured() {
        let every = settings(&[("KINDS", "email,profile")]).unwrap();
        let names: Vec<&str> = every.consume_kinds.iter().map(Kind::as_str).collect();
        assert_eq!(names, ["default", "email", "profile"]);
        let one = settings(&[("KINDS", "email"), ("CONSUME_KINDS", "email")]).unwrap();
        assert_eq!(one.consume_kinds.len(), 1);
        let err = settings(&[("KINDS", "email"), ("CONSUME_KINDS", "sms")]).unwrap_err();
        assert_eq!(err.var, "CONSUME_KINDS");
        assert!(err.reason.contains("default, email"), "{}", err.reason);
    }

    #[test]
    fn prefetch_below_batch_size_is_refused() {
        let err = settings(&[("PREFETCH", "10"), ("BATCH_SIZE", "50")]).unwrap_err();
        assert_eq!(err.var, "PREFETCH");
    }
}
