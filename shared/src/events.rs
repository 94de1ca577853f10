//! Completion events: small notifications the consumer publishes after each
//! commit or dead-letter, and the producer relays to clients (SSE, `?wait`).
//! Best effort: the database stays the source of truth.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One event, as JSON on the events exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// These ids were committed (new rows; duplicates are not announced again).
    Stored {
        /// The ids.
        ids: Vec<Uuid>,
    },
    /// This id was dead-lettered.
    DeadLettered {
        /// The id.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// Every item of this batch is settled (announced once per completion).
    BatchCompleted {
        /// The batch id.
        id: Uuid,
        /// `completed` or `completed_with_failures`.
        status: String,
        /// Items in the batch.
        total: i64,
        /// Items stored.
        stored: i64,
        /// Items dead-lettered.
        dead_lettered: i64,
    },
}

impl Event {
    /// Whether the event concerns `id`.
    pub fn mentions(&self, id: &Uuid) -> bool {
        match self {
            Event::Stored { ids } => ids.contains(id),
            Event::DeadLettered { id: dead, .. } => dead == id,
            Event::BatchCompleted { id: batch, .. } => batch == id,
        }
    }

    /// The event narrowed to `ids` (None if nothing is left).
    pub fn only(&self, ids: &[Uuid]) -> Option<Event> {
        match self {
            Event::Stored { ids: stored } => {
                let kept: Vec<Uuid> = stored.iter().filter(|i| ids.contains(i)).copied().collect();
                (!kept.is_empty()).then_some(Event::Stored { ids: kept })
            }
            Event::DeadLettered { id, .. } | Event::BatchCompleted { id, .. } => {
                ids.contains(id).then(|| self.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_filtering() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let e = Event::Stored { ids: vec![a, b] };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "stored");
        assert_eq!(e.only(&[b]), Some(Event::Stored { ids: vec![b] }));
        assert_eq!(e.only(&[Uuid::new_v4()]), None);
        assert!(e.mentions(&a));
    }
}
