//! How long each kind of data is kept: read by both binaries (each prunes
//! its own tables, and the producer's dashboard shows them all).

use std::time::Duration;

use super::partitions::MessagePartitions;
use super::rules::Rule;
use super::schedule::Schedule;
use crate::config::{ConfigError, Env};

const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of data is kept, and how pruning runs.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    // (Schedule first: how pruning runs; then the ages.)
    /// `RETENTION_INTERVAL`, `RETENTION_BATCH`.
    pub schedule: Schedule,
    /// `MESSAGE_PARTITION` (default `month`) and `MESSAGE_RETENTION`
    /// (default: for ever): the stored messages' partitions.
    pub messages: MessagePartitions,
    /// `DEAD_LETTER_RETENTION` (default `30d`): dead-letter records whose
    /// message has been stored since are deleted this long after they were
    /// written. Records of dead letters still queued stay.
    pub dead_letters: Duration,
    /// `BATCH_RETENTION` (default `30d`): completed batches are deleted this
    /// long after completion.
    pub batches: Duration,
    /// `WEBHOOK_RETENTION_HOURS` (default 168): delivered notifications
    /// this long after delivery, failed ones this long after they were
    /// owed, and pending ones overdue this long (no deliverer).
    pub webhooks: Duration,
    /// `IDEMPOTENCY_KEY_TTL` (default `24h`, read with the common settings).
    pub idempotency_keys: Duration,
    /// `SCHEDULE_RETENTION` (default `30d`): rows of scheduled messages
    /// that were delivered or cancelled, this long after (a cancelled
    /// message answers `cancelled` until then). Waiting ones stay.
    pub scheduled: Duration,
}

impl RetentionSettings {
    /// Read the settings from `env`; the key TTL is the common settings'.
    pub fn from_env(env: &Env, idempotency_keys: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule: Schedule::from_env(env)?,
            messages: MessagePartitions::from_env(env)?,
            dead_letters: env.duration_or("DEAD_LETTER_RETENTION", 30 * DAY, SECOND)?,
            batches: env.duration_or("BATCH_RETENTION", 30 * DAY, SECOND)?,
            webhooks: Duration::from_secs(
                3600 * env.number_in("WEBHOOK_RETENTION_HOURS", 168u64, 1..=24 * 365)?,
            ),
            idempotency_keys,
            scheduled: env.duration_or("SCHEDULE_RETENTION", 30 * DAY, SECOND)?,
        })
    }

    /// Every setting as the dashboard shows it (`forever`, or `30d`...).
    pub fn describe(&self) -> serde_json::Value {
        let d = crate::duration::format;
        serde_json::json!({
            "interval": d(self.schedule.interval),
            "batch": self.schedule.batch,
            "idempotency_key_ttl": d(self.idempotency_keys),
            "scheduled": d(self.scheduled),
            "dead_letters": d(self.dead_letters),
            "batches": d(self.batches),
            "webhooks": d(self.webhooks),
            "messages": self.messages.retention.map_or_else(|| "forever".to_owned(), d),
            "message_partition": self.messages.size.to_string(),
        })
    }

    /// The producer's rules: the idempotency keys, and the scheduled
    /// messages its dispatcher is done with.
    pub fn producer_rules(&self) -> Vec<Rule> {
        vec![
            Rule::idempotency_keys(self.idempotency_keys),
            Rule::scheduled(self.scheduled),
        ]
    }

    /// The consumer's rules: every table it writes (not the idempotency
    /// keys, which its role never sees: the producer prunes those).
    pub fn rules(&self) -> Vec<Rule> {
        let mut rules = vec![
            Rule::dead_letters(self.dead_letters),
            Rule::batches(self.batches),
        ];
        rules.extend(Rule::webhooks(self.webhooks));
        rules
    }
}
