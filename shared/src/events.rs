//! What became of a message or a batch, described once and shown three ways:
//!
//! * the status body of `GET /messages/{id}` ([`MessageStatus`], serde) and
//!   of `GET /batches/{id}` ([`BatchStatus`], serde);
//! * the completion event on the events exchange, relayed to clients as
//!   Server-Sent Events and used by `?wait` ([`Event`], built from the states);
//! * the webhook body ([`Notification`], built from the same states).
//!
//! Events are best effort: the database stays the source of truth.
//!
//! Webhook bodies are rendered byte for byte as PostgreSQL's `jsonb` text
//! output rendered them when they were built in SQL (keys ordered by length,
//! then bytes; `": "` and `", "` between them; timestamps in UTC with six
//! digits), so receivers see the same bytes as before.

use chrono::{DateTime, Utc};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// `200` of `GET /messages/{id}`: stored or dead-lettered.
// The serde shape is the status body's; the producer adds `notification`
// through a `serde_json::Value`, so its keys come out sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum MessageStatus {
    /// In the database.
    Stored {
        /// The message id.
        id: Uuid,
        /// The text.
        content: String,
        /// When the producer accepted it.
        timestamp: DateTime<Utc>,
        /// When the consumer's transaction stored it.
        stored_at: DateTime<Utc>,
        /// Its batch: in the webhook body, not in the status body.
        #[serde(skip)]
        batch_id: Option<Uuid>,
        /// Its kind of work: in the status body, and in the webhook body
        /// after its id (added there in issue 17: the other bytes are as
        /// before).
        kind: String,
    },
    /// In `messages.dead`.
    DeadLettered {
        /// The message id.
        id: Uuid,
        /// Why.
        reason: String,
        /// Attempts made.
        attempts: i32,
        /// When.
        dead_lettered_at: DateTime<Utc>,
        /// Its batch: in the webhook body, not in the status body.
        #[serde(skip)]
        batch_id: Option<Uuid>,
        /// Its kind of work, as for a stored message.
        kind: String,
    },
}

impl MessageStatus {
    /// The message id.
    pub fn id(&self) -> Uuid {
        match self {
            MessageStatus::Stored { id, .. } | MessageStatus::DeadLettered { id, .. } => *id,
        }
    }
}

/// A batch as `GET /batches/{id}` shows it (`notification` aside); the
/// counts are counted from the rows, never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchStatus {
    /// The batch id.
    pub id: Uuid,
    /// Items in the batch.
    pub total: i32,
    /// Items stored.
    pub stored: i64,
    /// Items dead-lettered (and not stored since).
    pub dead_lettered: i64,
    /// `pending`, `completed` or `completed_with_failures`.
    pub status: String,
    /// When the producer accepted it.
    pub created_at: DateTime<Utc>,
    /// When its last item was settled (None while pending).
    pub completed_at: Option<DateTime<Utc>>,
}

impl BatchStatus {
    /// Items neither stored nor dead-lettered yet.
    pub fn pending(&self) -> i64 {
        (i64::from(self.total) - self.stored - self.dead_lettered).max(0)
    }
}

// By hand for `pending`, and with the keys in the sorted order the body
// has always had (it was built as a `serde_json::Value`).
impl Serialize for BatchStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("BatchStatus", 8)?;
        s.serialize_field("completed_at", &self.completed_at)?;
        s.serialize_field("created_at", &self.created_at)?;
        s.serialize_field("dead_lettered", &self.dead_lettered)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("pending", &self.pending())?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("stored", &self.stored)?;
        s.serialize_field("total", &self.total)?;
        s.end()
    }
}

/// One event, as JSON on the events exchange and in `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// These ids were committed (new rows; duplicates are not announced again).
    Stored {
        /// The ids.
        ids: Vec<Uuid>,
        /// Their kind: a consumer's worker stores one kind's queue, so
        /// the rows of one commit share it. Absent from a consumer of
        /// before kinds (a rolling upgrade): then not relayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
    },
    /// This id was dead-lettered.
    DeadLettered {
        /// The id.
        id: Uuid,
        /// Why.
        reason: String,
        /// Its kind, as for `Stored`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
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

impl From<&MessageStatus> for Event {
    /// The event announcing one message's state. The consumer announces the
    /// rows of one commit together, as one `Stored` with all their ids.
    fn from(state: &MessageStatus) -> Event {
        match state {
            MessageStatus::Stored { id, kind, .. } => Event::Stored {
                ids: vec![*id],
                kind: Some(kind.clone()),
            },
            MessageStatus::DeadLettered {
                id, reason, kind, ..
            } => Event::DeadLettered {
                id: *id,
                reason: reason.clone(),
                kind: Some(kind.clone()),
            },
        }
    }
}

impl From<&BatchStatus> for Event {
    fn from(batch: &BatchStatus) -> Event {
        Event::BatchCompleted {
            id: batch.id,
            status: batch.status.clone(),
            total: i64::from(batch.total),
            stored: batch.stored,
            dead_lettered: batch.dead_lettered,
        }
    }
}

impl Event {
    /// Whether the event concerns `id`.
    pub fn mentions(&self, id: &Uuid) -> bool {
        match self {
            Event::Stored { ids, .. } => ids.contains(id),
            Event::DeadLettered { id: dead, .. } => dead == id,
            Event::BatchCompleted { id: batch, .. } => batch == id,
        }
    }

    /// The event narrowed to `ids` (None if nothing is left).
    pub fn only(&self, ids: &[Uuid]) -> Option<Event> {
        match self {
            Event::Stored { ids: stored, kind } => {
                let kept: Vec<Uuid> = stored.iter().filter(|i| ids.contains(i)).copied().collect();
                (!kept.is_empty()).then(|| Event::Stored {
                    ids: kept,
                    kind: kind.clone(),
                })
            }
            Event::DeadLettered { id, .. } | Event::BatchCompleted { id, .. } => {
                ids.contains(id).then(|| self.clone())
            }
        }
    }
}

/// A webhook notification: its type, what it is about, and the exact body
/// sent and signed (`{"id", "data", "type", "status", "timestamp"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `message.stored`, `message.dead_lettered` or `batch.completed`.
    pub event_type: &'static str,
    /// The message or batch.
    pub subject: Uuid,
    /// The body.
    pub payload: String,
}

impl Notification {
    /// The notification of a message's state; `at` is when it was owed
    /// (a dead letter's is its own time).
    pub fn of_message(state: &MessageStatus, at: DateTime<Utc>) -> Notification {
        match state {
            MessageStatus::Stored {
                id,
                content,
                timestamp,
                stored_at,
                batch_id,
                kind,
            } => Notification::render(
                "message.stored",
                *id,
                "stored",
                at,
                // In jsonb's key order (see the module docs).
                &StoredData {
                    id: *id,
                    kind,
                    status: "stored",
                    content,
                    batch_id: *batch_id,
                    stored_at: Micros(*stored_at),
                    timestamp: Micros(*timestamp),
                },
            ),
            MessageStatus::DeadLettered {
                id,
                reason,
                attempts,
                dead_lettered_at,
                batch_id,
                kind,
            } => Notification::render(
                "message.dead_lettered",
                *id,
                "dead_lettered",
                *dead_lettered_at,
                &DeadLetteredData {
                    id: *id,
                    kind,
                    reason,
                    status: "dead_lettered",
                    attempts: *attempts,
                    batch_id: *batch_id,
                    dead_lettered_at: Micros(*dead_lettered_at),
                },
            ),
        }
    }

    /// The notification of a completed batch, at its completion.
    pub fn of_batch(batch: &BatchStatus) -> Notification {
        let completed_at = batch.completed_at.unwrap_or(batch.created_at);
        Notification::render(
            "batch.completed",
            batch.id,
            &batch.status,
            completed_at,
            &BatchData {
                id: batch.id,
                total: batch.total,
                status: &batch.status,
                stored: batch.stored,
                pending: batch.pending(),
                created_at: Micros(batch.created_at),
                completed_at: Micros(completed_at),
                dead_lettered: batch.dead_lettered,
            },
        )
    }

    fn render<D: Serialize>(
        event_type: &'static str,
        subject: Uuid,
        status: &str,
        at: DateTime<Utc>,
        data: &D,
    ) -> Notification {
        let body = Body {
            id: subject,
            data,
            kind: event_type,
            status,
            timestamp: Micros(at),
        };
        let mut out = Vec::with_capacity(256);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, Jsonb);
        // Plain structs of strings, numbers and UUIDs: writing to a Vec
        // cannot fail, and serde_json writes UTF-8 only.
        let payload = match body.serialize(&mut serializer) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            Err(_) => String::new(),
        };
        Notification {
            event_type,
            subject,
            payload,
        }
    }
}

/// The envelope of every webhook body, fields in jsonb's order.
#[derive(Serialize)]
struct Body<'a, D> {
    id: Uuid,
    data: &'a D,
    #[serde(rename = "type")]
    kind: &'a str,
    status: &'a str,
    timestamp: Micros,
}

#[derive(Serialize)]
struct StoredData<'a> {
    id: Uuid,
    kind: &'a str,
    status: &'a str,
    content: &'a str,
    batch_id: Option<Uuid>,
    stored_at: Micros,
    timestamp: Micros,
}

#[derive(Serialize)]
struct DeadLetteredData<'a> {
    id: Uuid,
    kind: &'a str,
    reason: &'a str,
    status: &'a str,
    attempts: i32,
    batch_id: Option<Uuid>,
    dead_lettered_at: Micros,
}

#[derive(Serialize)]
struct BatchData<'a> {
    id: Uuid,
    total: i32,
    status: &'a str,
    stored: i64,
    pending: i64,
    created_at: Micros,
    completed_at: Micros,
    dead_lettered: i64,
}

/// A time as the webhook bodies have always shown it: RFC 3339 in UTC with
/// exactly six fractional digits (`2026-11-26T10:00:00.000000Z`).
struct Micros(DateTime<Utc>);

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

/// serde_json's compact output with jsonb's separators. String escaping is
/// already the same: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other control
/// characters as `\u00xx`, everything else as is.
struct Jsonb;

impl serde_json::ser::Formatter for Jsonb {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64, micros: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, micros * 1000).unwrap()
    }

    #[test]
    fn json_shape_and_filtering() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let kind = Some("email".to_owned());
        let e = Event::Stored {
            ids: vec![a, b],
            kind: kind.clone(),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "stored");
        assert_eq!(json["kind"], "email");
        assert_eq!(e.only(&[b]), Some(Event::Stored { ids: vec![b], kind }));
        // From a consumer of before kinds: no kind, and none relayed.
        let old: Event =
            serde_json::from_str(&format!(r#"{{"type":"stored","ids":["{a}"]}}"#)).unwrap();
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            format!(r#"{{"type":"stored","ids":["{a}"]}}"#)
        );
        assert_eq!(e.only(&[Uuid::new_v4()]), None);
        assert!(e.mentions(&a));
    }

    #[test]
    fn status_bodies_keep_their_shape() {
        let id = Uuid::from_u128(1);
        let stored = MessageStatus::Stored {
            id,
            content: "hi".into(),
            timestamp: at(1_764_000_000, 120_000),
            stored_at: at(1_764_000_001, 0),
            batch_id: Some(Uuid::from_u128(2)),
            kind: "default".into(),
        };
        // As the producer sends it: through a Value, so keys sorted.
        assert_eq!(
            serde_json::to_value(&stored).unwrap().to_string(),
            format!(
                r#"{{"content":"hi","id":"{id}","kind":"default","status":"stored","stored_at":"2025-11-24T16:00:01Z","timestamp":"2025-11-24T16:00:00.120Z"}}"#
            )
        );
        let dead = MessageStatus::DeadLettered {
            id,
            reason: "invalid_message".into(),
            attempts: 3,
            dead_lettered_at: at(1_764_000_002, 5),
            batch_id: None,
            kind: "default".into(),
        };
        assert_eq!(
            serde_json::to_value(&dead).unwrap().to_string(),
            format!(
                r#"{{"attempts":3,"dead_lettered_at":"2025-11-24T16:00:02.000005Z","id":"{id}","kind":"default","reason":"invalid_message","status":"dead_lettered"}}"#
            )
        );
        assert_eq!(
            Event::from(&dead),
            Event::DeadLettered {
                id,
                reason: "invalid_message".into(),
                kind: Some("default".into()),
            }
        );

        let batch = BatchStatus {
            id,
            total: 3,
            stored: 1,
            dead_lettered: 1,
            status: "pending".into(),
            created_at: at(1_764_000_000, 0),
            completed_at: None,
        };
        let direct = serde_json::to_string(&batch).unwrap();
        assert_eq!(direct, serde_json::to_value(&batch).unwrap().to_string());
        assert_eq!(
            direct,
            format!(
                r#"{{"completed_at":null,"created_at":"2025-11-24T16:00:00Z","dead_lettered":1,"id":"{id}","pending":1,"status":"pending","stored":1,"total":3}}"#
            )
        );
    }

    #[test]
    fn webhook_bodies_are_jsonb_text() {
        let id = Uuid::from_u128(1);
        let stored = MessageStatus::Stored {
            id,
            content: "a\"b\\c\n\u{1}é\u{7f}".into(),
            timestamp: at(1_764_000_000, 120_000),
            stored_at: at(1_764_000_001, 0),
            batch_id: None,
            kind: "email".into(),
        };
        let n = Notification::of_message(&stored, at(1_764_000_002, 7));
        assert_eq!(n.event_type, "message.stored");
        assert_eq!(
            n.payload,
            format!(
                "{{\"id\": \"{id}\", \"data\": {{\"id\": \"{id}\", \"kind\": \"email\", \"status\": \"stored\", \
                 \"content\": \"a\\\"b\\\\c\\n\\u0001é\u{7f}\", \"batch_id\": null, \
                 \"stored_at\": \"2025-11-24T16:00:01.000000Z\", \"timestamp\": \
                 \"2025-11-24T16:00:00.120000Z\"}}, \"type\": \"message.stored\", \
                 \"status\": \"stored\", \"timestamp\": \"2025-11-24T16:00:02.000007Z\"}}"
            )
        );
    }
}
