//! The consumer's retention: how long each table it writes is kept, and
//! its rules (pruned by `shared::retention`).

use std::time::Duration;

use shared::retention::{MessagePartitions, Rule, Schedule};
use shared::{ConfigError, Env};

const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of data is kept, and how pruning runs.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
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
    /// `WEBHOOK_RETENTION_HOURS` (default 168, a webhook setting): delivered
    /// notifications this long after delivery, failed ones this long after
    /// they were owed, and pending ones overdue this long (no deliverer).
    pub webhooks: Duration,
}

impl RetentionSettings {
    /// Read the settings from `env`; the webhook retention is read with the
    /// webhook settings.
    pub fn from_env(env: &Env, webhooks: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule: Schedule::from_env(env)?,
            messages: MessagePartitions::from_env(env)?,
            dead_letters: env.duration_or("DEAD_LETTER_RETENTION", 30 * DAY, SECOND)?,
            batches: env.duration_or("BATCH_RETENTION", 30 * DAY, SECOND)?,
            webhooks,
        })
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
