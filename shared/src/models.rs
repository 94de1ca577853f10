//! Diesel models for the `messages`, `dead_letters` and `idempotency_keys` tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::schema::messages;

/// A row to insert: one decoded envelope.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct NewMessage<'a> {
    /// The message id (primary key).
    pub id: Uuid,
    /// The text.
    pub content: &'a str,
    /// When the producer accepted it.
    pub created_at: DateTime<Utc>,
    /// Its batch, if any. `None` is written as `DEFAULT` in a multi-row
    /// insert: no extra bind parameter for the common message.
    pub batch_id: Option<Uuid>,
}

impl<'a> From<&'a Envelope> for NewMessage<'a> {
    fn from(e: &'a Envelope) -> Self {
        Self {
            id: e.id,
            content: &e.content,
            created_at: e.created_at,
            batch_id: e.batch.as_ref().map(|b| b.id),
        }
    }
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Message {
    /// The message id.
    pub id: Uuid,
    /// The text.
    pub content: String,
    /// When the producer accepted it.
    pub created_at: DateTime<Utc>,
    /// When the consumer's transaction stored it.
    pub stored_at: DateTime<Utc>,
}

/// A dead-lettered message id and why (the message is in `messages.dead`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = crate::schema::dead_letters)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct DeadLetter {
    /// The message id.
    pub id: Uuid,
    /// The reason (the `x-error` header of the dead letter).
    pub reason: String,
    /// Attempts made before giving up.
    pub attempts: i32,
    /// When it was dead-lettered (the latest time, if more than once).
    pub dead_lettered_at: DateTime<Utc>,
    /// The batch of the message, if any (kept so that a record put back
    /// after a failed redrive still counts for its batch). Not shown.
    #[serde(skip)]
    pub batch_id: Option<Uuid>,
}

/// An `Idempotency-Key` bound to the request it was first used with.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = crate::schema::idempotency_keys)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct NewIdempotencyKey<'a> {
    /// `message` (`POST /messages`) or `batch` (`POST /messages/batch`).
    pub scope: &'a str,
    /// The key as the client sent it.
    pub key: &'a str,
    /// SHA-256 of the canonical request.
    pub fingerprint: &'a [u8],
}
