//! The message envelope: what travels through RabbitMQ between the two sides.
//!
//! On the wire a message is a JSON body with AMQP properties:
//!
//! ```json
//! {"id": "6f1c…-uuid", "content": "hello", "created_at": "2026-11-22T03:56:26.123456Z"}
//! ```
//!
//! * `content` (string, required): the text to store; non-empty, no NUL.
//! * `id` (UUID): the message id. If the body has none, the AMQP `message_id`
//!   property is used. One of the two is required: it is what makes storing
//!   idempotent.
//! * `created_at` (RFC 3339): when the message was accepted. If absent, the AMQP
//!   `timestamp` property (seconds) is used, and failing that the time it is stored.
//! * `callback_url` (optional string): where to POST a signed notification
//!   when the message is stored or dead-lettered.
//! * `batch` (optional `{"id", "total", "callback_url"}`): the batch the
//!   message belongs to, so that the consumer settling its last item can
//!   complete it.
//! * `deliver_at` (optional RFC 3339): the time a scheduled message was due;
//!   the consumer then settles (or, if cancelled, refuses) its row of
//!   `scheduled_messages` in the transaction that stores it.
//!
//! Any AMQP client can publish such a message to the `messages` exchange
//! (routing key ignored); see `docs/api.md`, "Publishing from other clients".

use chrono::{DateTime, SubsecRound, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::kind::{Kind, KIND_HEADER};

/// AMQP delivery mode for messages that must survive a broker restart.
pub const PERSISTENT: u8 = 2;
/// The content type of every envelope.
pub const CONTENT_TYPE: &str = "application/json";

/// A message on its way from the producer to the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The message id; the primary key of the stored row.
    pub id: Uuid,
    /// The text to store.
    pub content: String,
    /// When the producer accepted the message.
    pub created_at: DateTime<Utc>,
    /// Where to send the message's notification (absent: none). Left out of
    /// the JSON when absent, so the common message is unchanged on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The batch this message belongs to (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchRef>,
    /// The kind of work (`crate::kind`). Left out of the JSON for
    /// `default`, so the common message is unchanged on the wire.
    #[serde(default, skip_serializing_if = "Kind::is_default")]
    pub kind: Kind,
    /// When it was scheduled for (absent: sent at once). A scheduled
    /// message is published by a dispatcher when it falls due; this tells
    /// the consumer to settle its row of `scheduled_messages` (and to refuse
    /// it if it was cancelled) in the transaction that stores it. Left out
    /// of the JSON when absent: the common message is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_at: Option<DateTime<Utc>>,
}

/// What each item of a batch carries about its batch: enough for whichever
/// consumer stores an item first to create the batch's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    /// The batch id.
    pub id: Uuid,
    /// How many messages the batch has.
    pub total: u32,
    /// Where to send the `batch.completed` notification (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// When the producer accepted the batch.
    pub created_at: DateTime<Utc>,
}

/// The optional parts of a message body, read leniently: a dead letter
/// whose body is otherwise broken still tells its batch and callback when
/// it can.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `callback_url`, if a string.
    pub callback_url: Option<String>,
    /// `batch`, if well formed.
    pub batch: Option<BatchRef>,
}

/// Whether a callback URL can be stored at all (PostgreSQL `text` holds no
/// NUL). Anything else about it is checked when delivering: a bad URL from
/// another publisher fails its notification, never the message's storing.
fn storable_url(url: &str) -> bool {
    !url.contains('\0') && url.len() <= crate::webhook::MAX_URL_LEN
}

impl Extras {
    /// Read the extras of a JSON object (anything else has none).
    pub fn of_json(value: &serde_json::Value) -> Extras {
        Extras {
            callback_url: value
                .get("callback_url")
                .and_then(|v| v.as_str())
                .filter(|u| storable_url(u))
                .map(str::to_owned),
            batch: value
                .get("batch")
                .and_then(|b| serde_json::from_value::<BatchRef>(b.clone()).ok())
                .filter(|b| b.total > 0 && b.callback_url.as_deref().is_none_or(storable_url)),
        }
    }

    /// Read the extras of a raw body.
    pub fn peek(body: &[u8]) -> Extras {
        serde_json::from_slice::<serde_json::Value>(body)
            .map(|v| Extras::of_json(&v))
            .unwrap_or_default()
    }
}

/// Why a piece of content cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The `content` field is absent (or null).
    #[error("content is required")]
    Missing,
    /// The `content` field is not a JSON string.
    #[error("content must be a string")]
    NotAString,
    /// The `content` field is an empty string.
    #[error("content must not be empty")]
    Empty,
    /// PostgreSQL `text` cannot hold U+0000, so such content would never store.
    #[error("content must not contain NUL (\\u0000) characters")]
    ContainsNul,
}

/// Check that `content` is something PostgreSQL will store. Both sides call
/// this: the producer to refuse at the door, the consumer to dead-letter
/// what other clients publish.
pub fn validate_content(content: &str) -> Result<(), ContentError> {
    if content.is_empty() {
        return Err(ContentError::Empty);
    }
    if content.contains('\0') {
        return Err(ContentError::ContainsNul);
    }
    Ok(())
}

/// Extract and validate `content` from a decoded JSON object.
pub fn content_from_json(value: &serde_json::Value) -> Result<String, ContentError> {
    match value.get("content") {
        None | Some(serde_json::Value::Null) => Err(ContentError::Missing),
        Some(serde_json::Value::String(s)) => {
            validate_content(s)?;
            Ok(s.clone())
        }
        Some(_) => Err(ContentError::NotAString),
    }
}

/// Why a delivery cannot be turned into an [`Envelope`]. These are permanent:
/// the message is dead-lettered with this text as its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not a JSON object.
    #[error("body is not a JSON object: {0}")]
    NotJson(String),
    /// Bad or missing content.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// Neither the body nor the properties carry a message id.
    #[error("message id is missing (no \"id\" in the body and no message_id property)")]
    MissingId,
    /// The id is not a UUID.
    #[error("message id {0:?} is not a UUID")]
    BadId(String),
    /// `created_at` is not an RFC 3339 timestamp.
    #[error("created_at {0:?} is not an RFC 3339 timestamp")]
    BadCreatedAt(String),
}

impl Envelope {
    /// A new envelope with a random id, accepted now.
    pub fn new(content: String) -> Self {
        Self::with_id(Uuid::new_v4(), content)
    }

    /// A new envelope with the given id, accepted now.
    pub fn with_id(id: Uuid, content: String) -> Self {
        Self {
            id,
            content,
            // PostgreSQL keeps microseconds; rounding here makes what the
            // producer reports equal to what the row holds.
            created_at: Utc::now().trunc_subsecs(6),
            callback_url: None,
            batch: None,
            kind: Kind::default_kind(),
            deliver_at: None,
        }
    }

    /// The JSON body to publish.
    pub fn to_body(&self) -> Vec<u8> {
        // Serializing a struct of a Uuid, a String and a DateTime cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// AMQP properties for publishing this envelope: persistent, JSON, with
    /// the id and acceptance time also in the standard properties so that
    /// the management UI and other tools can see them.
    pub fn properties(&self) -> BasicProperties {
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT) // survive a broker restart
            .with_content_type(ShortString::from(CONTENT_TYPE))
            .with_message_id(ShortString::from(self.id.to_string()))
            .with_timestamp(self.created_at.timestamp().max(0) as u64);
        if self.kind.is_default() {
            // No headers table at all: the default message is as before.
            return properties;
        }
        let mut headers = FieldTable::default();
        headers.insert(
            KIND_HEADER.into(),
            AMQPValue::LongString(LongString::from(self.kind.as_str())),
        );
        properties.with_headers(headers)
    }

    /// Decode a delivery published by our producer or by any other client
    /// (see the module docs for what is accepted).
    pub fn decode(body: &[u8], properties: &BasicProperties) -> Result<Self, DecodeError> {
        Self::decode_dated(body, properties).map(|(envelope, _)| envelope)
    }

    /// [`Self::decode`], and whether the body carried its own `created_at`.
    /// Without one the time is the AMQP `timestamp` or the time of decoding,
    /// which a redelivery need not repeat: storing such a message must find
    /// an earlier row by its id alone (`db::messages::store_checked`), since
    /// the stored key is (id, created_at).
    pub fn decode_dated(
        body: &[u8],
        properties: &BasicProperties,
    ) -> Result<(Self, bool), DecodeError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(DecodeError::NotJson("not an object".into()));
        }
        let content = content_from_json(&value)?;

        let id_text = match value.get("id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => {
                properties.message_id().as_ref().map(|s| s.to_string())
            }
            Some(other) => return Err(DecodeError::BadId(other.to_string())),
        };
        let id_text = id_text.ok_or(DecodeError::MissingId)?;
        let id = Uuid::parse_str(id_text.trim()).map_err(|_| DecodeError::BadId(id_text))?;

        let created_at = match value.get("created_at") {
            Some(serde_json::Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map_err(|_| DecodeError::BadCreatedAt(s.clone()))?
                .with_timezone(&Utc),
            Some(serde_json::Value::Null) | None => properties
                .timestamp()
                .and_then(|t| i64::try_from(t).ok())
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .unwrap_or_else(Utc::now),
            Some(other) => return Err(DecodeError::BadCreatedAt(other.to_string())),
        };

        let dated = matches!(value.get("created_at"), Some(serde_json::Value::String(_)));
        let extras = Extras::of_json(&value);
        let envelope = Self {
            id,
            content,
            created_at: created_at.trunc_subsecs(6),
            callback_url: extras.callback_url,
            batch: extras.batch,
            kind: kind_of(&value, properties),
            // Read leniently, like the extras: it only says that a row of
            // `scheduled_messages` may exist for this id.
            deliver_at: value
                .get("deliver_at")
                .and_then(|v| v.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc)),
        };
        Ok((envelope, dated))
    }
}

/// The kind a message says it is: the body's `kind`, else the
/// [`KIND_HEADER`], else `default`; a malformed one counts as absent (the
/// consumer records the kind of the queue it took the message from anyway).
fn kind_of(value: &serde_json::Value, properties: &BasicProperties) -> Kind {
    if let Some(kind) = value
        .get("kind")
        .and_then(|k| k.as_str())
        .and_then(Kind::parse)
    {
        return kind;
    }
    crate::dead_letter::text(properties.headers().as_ref(), KIND_HEADER)
        .and_then(|k| Kind::parse(&k))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_round_trips_and_default_stays_off_the_wire() {
        let plain = Envelope::new("x".into());
        assert!(!String::from_utf8(plain.to_body()).unwrap().contains("kind"));
        assert!(plain.properties().headers().is_none());
        let mut e = Envelope::new("y".into());
        e.kind = Kind::parse("email").unwrap();
        let back = Envelope::decode(&e.to_body(), &e.properties()).unwrap();
        assert_eq!(back.kind.as_str(), "email");
        let header_only = Envelope::decode(&plain.to_body(), &e.properties()).unwrap();
        assert_eq!(header_only.kind.as_str(), "email");
    }

    #[test]
    fn round_trips_through_body_and_properties() {
        let e = Envelope::new("hello".into());
        let back = Envelope::decode(&e.to_body(), &e.properties()).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.properties().delivery_mode(), &Some(PERSISTENT));
    }

    #[test]
    fn extras_round_trip_and_are_absent_by_default() {
        let plain = Envelope::new("x".into());
        let body = String::from_utf8(plain.to_body()).unwrap();
        assert!(!body.contains("callback_url") && !body.contains("batch"));
        let mut e = Envelope::new("y".into());
        e.callback_url = Some("https://example.com/hook".into());
        e.batch = Some(BatchRef {
            id: Uuid::new_v4(),
            total: 3,
            callback_url: None,
            created_at: e.created_at,
        });
        let back = Envelope::decode(&e.to_body(), &e.properties()).unwrap();
        assert_eq!(back, e);
        assert_eq!(Extras::peek(&e.to_body()).batch, e.batch);
        assert_eq!(Extras::peek(b"\xff"), Extras::default());
    }

    #[test]
    fn id_and_time_fall_back_to_properties() {
        let id = Uuid::new_v4();
        let props = BasicProperties::default()
            .with_message_id(id.to_string().into())
            .with_timestamp(1_700_000_000);
        let (e, dated) = Envelope::decode_dated(br#"{"content":"x"}"#, &props).unwrap();
        assert_eq!(e.id, id);
        assert_eq!(e.created_at.timestamp(), 1_700_000_000);
        assert!(
            !dated,
            "a redelivery need not repeat a time it was not given"
        );
        let own = Envelope::new("y".into());
        assert!(
            Envelope::decode_dated(&own.to_body(), &own.properties())
                .unwrap()
                .1
        );
    }

    #[test]
    fn rejects_what_cannot_be_stored() {
        let p = BasicProperties::default().with_message_id("not-a-uuid".into());
        let none = BasicProperties::default();
        assert!(matches!(
            Envelope::decode(b"\xff\xfe", &none),
            Err(DecodeError::NotJson(_))
        ));
        assert!(matches!(
            Envelope::decode(br#"[1]"#, &none),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            Envelope::decode(br#"{"content":"x"}"#, &none),
            Err(DecodeError::MissingId)
        );
        assert!(matches!(
            Envelope::decode(br#"{"content":"x"}"#, &p),
            Err(DecodeError::BadId(_))
        ));
        assert_eq!(
            Envelope::decode(
                br#"{"content":"a\u0000b","id":"00000000-0000-0000-0000-000000000001"}"#,
                &none
            ),
            Err(DecodeError::Content(ContentError::ContainsNul))
        );
        assert_eq!(
            Envelope::decode(br#"{"content":7}"#, &none),
            Err(DecodeError::Content(ContentError::NotAString))
        );
    }
}
