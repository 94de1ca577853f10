//! What the retention deletes: one rule per kind of data, each a bounded
//! `DELETE` of one table's module (`crate::db`), run again until it
//! deletes less than a batch. Each binary prunes what its database role
//! may delete: the producer the idempotency keys (the consumer's role
//! never sees them) and the scheduled messages, the consumer the rest.

use std::time::Duration;

use diesel::prelude::*;

use crate::db::{batches, dead_letters, idempotency_keys, scheduled_messages, webhook_deliveries};

/// A bounded delete: `(connection, age, most rows)` → rows deleted.
pub type Prune = fn(&mut PgConnection, Duration, i64) -> QueryResult<usize>;

/// One kind of data and how long it is kept.
#[derive(Clone, Copy)]
pub struct Rule {
    /// The `rule` label of the metrics, and the name in logs.
    pub name: &'static str,
    /// Its age limit.
    pub age: Duration,
    /// The delete.
    pub prune: Prune,
}

impl Rule {
    /// `Idempotency-Key` bindings older than their TTL.
    pub fn idempotency_keys(ttl: Duration) -> Self {
        Self {
            name: "idempotency_keys_expired",
            age: ttl,
            prune: idempotency_keys::prune_expired,
        }
    }

    /// Scheduled messages delivered or cancelled more than `age` ago.
    pub fn scheduled(age: Duration) -> Self {
        Self {
            name: "scheduled_settled",
            age,
            prune: scheduled_messages::prune_settled,
        }
    }

    /// Dead-letter records of messages stored since, older than `age`.
    pub fn dead_letters(age: Duration) -> Self {
        Self {
            name: "dead_letters_settled",
            age,
            prune: dead_letters::prune_settled,
        }
    }

    /// Batches completed more than `age` ago.
    pub fn batches(age: Duration) -> Self {
        Self {
            name: "batches_completed",
            age,
            prune: batches::prune_completed,
        }
    }

    /// Webhook rows past `age`: delivered, finally failed, and pending
    /// without a deliverer (three rules, one per partial index).
    pub fn webhooks(age: Duration) -> [Self; 3] {
        [
            Self {
                name: "webhooks_delivered",
                age,
                prune: webhook_deliveries::prune_delivered,
            },
            Self {
                name: "webhooks_failed",
                age,
                prune: webhook_deliveries::prune_failed,
            },
            Self {
                name: "webhooks_undelivered",
                age,
                prune: webhook_deliveries::expire_undelivered,
            },
        ]
    }
}
