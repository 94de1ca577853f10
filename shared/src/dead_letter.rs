//! The dead-letter contract: the headers a dead letter (or a retry) carries,
//! and the categories clients are told. The consumer writes them, the
//! producer's dead-letter tools read and strip them; both take them from here.
//!
//! Clients (`GET /messages/{id}`, `/events`) see only a [`Category`]: the
//! detailed reason can quote PostgreSQL (constraint and trigger names), so it
//! goes to the logs and to the admin-only dead-letter listing (`x-error`).

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use uuid::Uuid;

use crate::kind::{Kind, KIND_HEADER};
use crate::topology::Topology;

/// Header holding the detailed, human-readable reason (admin only).
pub const REASON_HEADER: &str = "x-error";
/// Header holding the [`Category`] (what clients are told).
pub const CATEGORY_HEADER: &str = "x-error-category";
/// Header holding how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "x-attempts";
/// Header holding the last error of a message waiting to be retried.
pub const LAST_ERROR_HEADER: &str = "x-last-error";
/// Header holding when the consumer dead-lettered the message (RFC 3339).
pub const DEAD_LETTERED_AT_HEADER: &str = "x-dead-lettered-at";
/// Header holding the exchange the message was first published to.
pub const ORIGINAL_EXCHANGE_HEADER: &str = "x-original-exchange";
/// Header holding the routing key the message was first published with.
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-original-routing-key";
/// Set by RabbitMQ when it dead-letters a message itself (`delivery_limit`,
/// `rejected`, `expired`, `maxlen`).
pub const BROKER_REASON_HEADER: &str = "x-first-death-reason";

/// Every header the pipeline (or the broker's dead-lettering) adds; a redrive
/// removes them so that the message starts afresh.
pub const PIPELINE_HEADERS: [&str; 12] = [
    REASON_HEADER,
    CATEGORY_HEADER,
    ATTEMPTS_HEADER,
    LAST_ERROR_HEADER,
    DEAD_LETTERED_AT_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    "x-death",
    BROKER_REASON_HEADER,
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-delivery-count",
];

/// The id of a (dead-lettered) message as a UUID: the body's `"id"`, else
/// the `message_id` property (the same precedence as `Envelope::decode`).
pub fn message_uuid(body: &[u8], properties: &BasicProperties) -> Option<Uuid> {
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("id")?
                .as_str()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
        });
    from_body.or_else(|| {
        let id = properties.message_id().as_ref()?;
        Uuid::parse_str(id.as_str().trim()).ok()
    })
}

/// The kind of a dead letter: the [`KIND_HEADER`] the consumer's copies
/// carry (and the producer's messages of a kind other than `default`), else
/// the queue the broker dead-lettered it from, else the body's `kind`, else
/// `default`. The redrive sends it back to that kind's queue.
pub fn kind_of(body: &[u8], properties: &BasicProperties, topology: &Topology) -> Kind {
    let headers = properties.headers().as_ref();
    if let Some(kind) = text(headers, KIND_HEADER).and_then(|k| Kind::parse(&k)) {
        return kind;
    }
    if let Some(kind) = text(headers, "x-first-death-queue")
        .and_then(|queue| topology.kind_of_queue(&queue).cloned())
    {
        return kind;
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("kind")?.as_str().and_then(Kind::parse))
        .unwrap_or_default()
}

/// A header as the pipeline reads it: text, or a whole number. Serialized
/// as a JSON string or number (the admin dead-letter listing shows them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// A long or short string (invalid UTF-8 replaced).
    Text(String),
    /// A signed or unsigned integer of any width AMQP clients use.
    Int(i64),
}

/// Header `name` of `headers`, if it is text or a whole number: the one
/// reader of the headers of this contract, whoever wrote them (the
/// consumer, the broker, or another client with other integer widths).
pub fn header(headers: Option<&FieldTable>, name: &str) -> Option<HeaderValue> {
    Some(match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => HeaderValue::Text(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ShortString(s) => HeaderValue::Text(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => HeaderValue::Int(*n),
        AMQPValue::LongInt(n) => HeaderValue::Int(i64::from(*n)),
        AMQPValue::ShortInt(n) => HeaderValue::Int(i64::from(*n)),
        AMQPValue::LongUInt(n) => HeaderValue::Int(i64::from(*n)),
        _ => return None,
    })
}

/// Header `name` if it is text.
pub fn text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match header(headers, name)? {
        HeaderValue::Text(s) => Some(s),
        HeaderValue::Int(_) => None,
    }
}

/// How many attempts a message's headers say were made ([`ATTEMPTS_HEADER`]).
pub fn attempts(headers: Option<&FieldTable>) -> Option<u32> {
    match header(headers, ATTEMPTS_HEADER)? {
        HeaderValue::Int(n) => u32::try_from(n).ok(),
        HeaderValue::Text(_) => None,
    }
}

/// Why a message was dead-lettered, as clients see it (and as the
/// `reason` label of the dead-letter metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Undecodable or invalid: not JSON, no id, bad content.
    InvalidMessage,
    /// The database refused the row itself (a constraint or bad data).
    RejectedByDatabase,
    /// Storing failed unexpectedly `MAX_ATTEMPTS` times.
    MaxAttempts,
    /// RabbitMQ dead-lettered it after too many redeliveries.
    DeliveryLimit,
    /// Published (by another AMQP client) for a kind that is not configured.
    UnknownKind,
    /// RabbitMQ dead-lettered it for another reason (expired, rejected, ...).
    Broker,
}

impl Category {
    /// Every category, for metrics that show zeros.
    pub const ALL: [Category; 6] = [
        Category::InvalidMessage,
        Category::RejectedByDatabase,
        Category::MaxAttempts,
        Category::DeliveryLimit,
        Category::UnknownKind,
        Category::Broker,
    ];

    /// The stable name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::InvalidMessage => "invalid_message",
            Category::RejectedByDatabase => "rejected_by_database",
            Category::MaxAttempts => "max_attempts",
            Category::DeliveryLimit => "delivery_limit",
            Category::UnknownKind => "unknown_kind",
            Category::Broker => "dead_lettered_by_broker",
        }
    }

    /// The category of a dead letter, from its headers: ours if the consumer
    /// made it, else the broker's own reason.
    pub fn of(headers: Option<&FieldTable>) -> Category {
        if let Some(ours) = text(headers, CATEGORY_HEADER) {
            return Category::ALL
                .into_iter()
                .find(|c| c.as_str() == ours)
                .unwrap_or(Category::Broker);
        }
        match text(headers, BROKER_REASON_HEADER).as_deref() {
            Some("delivery_limit") => Category::DeliveryLimit,
            _ => Category::Broker,
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::LongString;

    #[test]
    fn categories_round_trip_and_broker_reasons_map() {
        for c in Category::ALL {
            let mut h = FieldTable::default();
            h.insert(
                CATEGORY_HEADER.into(),
                AMQPValue::LongString(LongString::from(c.as_str())),
            );
            assert_eq!(Category::of(Some(&h)), c);
        }
        let mut h = FieldTable::default();
        h.insert(
            BROKER_REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from("delivery_limit")),
        );
        assert_eq!(Category::of(Some(&h)), Category::DeliveryLimit);
        assert_eq!(Category::of(None), Category::Broker);
    }

    #[test]
    fn headers_read_text_and_any_integer_width() {
        let mut h = FieldTable::default();
        h.insert(ATTEMPTS_HEADER.into(), AMQPValue::ShortInt(3));
        h.insert("x-long".into(), AMQPValue::LongUInt(7));
        h.insert(REASON_HEADER.into(), AMQPValue::ShortString("why".into()));
        h.insert("x-bool".into(), AMQPValue::Boolean(true));
        assert_eq!(attempts(Some(&h)), Some(3));
        assert_eq!(header(Some(&h), "x-long"), Some(HeaderValue::Int(7)));
        assert_eq!(text(Some(&h), REASON_HEADER).as_deref(), Some("why"));
        assert_eq!(attempts(None), None);
        assert_eq!(header(Some(&h), "x-bool"), None);
        assert_eq!(
            serde_json::to_string(&[header(Some(&h), REASON_HEADER), header(Some(&h), "x-long")])
                .unwrap(),
            r#"["why",7]"#
        );
    }
}
