//! The copies the consumer republishes: a dead letter (to the dead-letter
//! exchange, with its reason) and a retry (to a delay queue).
//!
//! The broker's own dead-lettering (reject without requeue) cannot attach a
//! reason, so the consumer republishes the message itself, through the one
//! confirmed publish (`shared::publish::confirmed`), and the caller acks the
//! original only after the confirm. A crash in between leaves the original
//! in the queue: at worst the copy exists twice, never zero times.

use std::time::Duration;

use chrono::Utc;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, LongString};
use lapin::{BasicProperties, Channel};
use shared::dead_letter::{
    Category, ATTEMPTS_HEADER, CATEGORY_HEADER, DEAD_LETTERED_AT_HEADER, LAST_ERROR_HEADER,
    ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER, REASON_HEADER,
};
use shared::kind::{Kind, KIND_HEADER};
use shared::publish::PublishError;

/// What a dead letter says about itself, in its headers.
pub struct Why<'a> {
    /// The kind of the message (the redrive sends it back to its queue).
    pub kind: &'a Kind,
    /// What clients are told.
    pub category: Category,
    /// The detailed reason (admin only).
    pub reason: &'a str,
    /// Attempts made.
    pub attempts: u32,
}

/// Publish a copy of `delivery` to `dlx` carrying `why` (the client-facing
/// category, the detailed reason, the attempt count and the kind), and wait
/// for the broker's confirm.
pub async fn publish(
    channel: &Channel,
    dlx: &str,
    delivery: &Delivery,
    why: Why<'_>,
    timeout: Duration,
) -> Result<(), PublishError> {
    let Why {
        kind,
        category,
        reason,
        attempts,
    } = why;
    let headers = [
        (REASON_HEADER, long_string(reason)),
        (CATEGORY_HEADER, long_string(category.as_str())),
        (ATTEMPTS_HEADER, attempts_value(attempts)),
        (
            DEAD_LETTERED_AT_HEADER,
            long_string(&Utc::now().to_rfc3339()),
        ),
        (
            ORIGINAL_EXCHANGE_HEADER,
            long_string(delivery.exchange.as_str()),
        ),
        (
            ORIGINAL_ROUTING_KEY_HEADER,
            long_string(delivery.routing_key.as_str()),
        ),
        // The redrive sends it back to this kind's queue.
        (KIND_HEADER, long_string(kind.as_str())),
    ];
    let properties = copy_properties(&delivery.properties, &headers);
    shared::publish::confirmed(
        channel,
        dlx,
        delivery.routing_key.as_str(),
        &delivery.data,
        properties,
        timeout,
    )
    .await
}

/// Send `delivery` to the delay queue `retry_queue` after failed attempt
/// number `attempts`; the broker moves it back to the store queue when its
/// delay has passed. Confirmed before the caller acks the original.
pub async fn schedule_retry(
    channel: &Channel,
    retry_queue: &str,
    delivery: &Delivery,
    last_error: &str,
    attempts: u32,
    timeout: Duration,
) -> Result<(), PublishError> {
    let headers = [
        (ATTEMPTS_HEADER, attempts_value(attempts)),
        (LAST_ERROR_HEADER, long_string(last_error)),
    ];
    let properties = copy_properties(&delivery.properties, &headers);
    // The default exchange routes by queue name.
    shared::publish::confirmed(
        channel,
        "",
        retry_queue,
        &delivery.data,
        properties,
        timeout,
    )
    .await
}

/// The original's properties for a copy, with `extra` headers added,
/// persistent, and without what must not follow it:
/// * `expiration`: a per-message TTL would make the copy expire silently
///   inside `messages.dead` (or a delay queue);
/// * `user_id`: RabbitMQ checks it against the publishing connection's user
///   and closes the channel when a third-party client set another one.
fn copy_properties(original: &BasicProperties, extra: &[(&str, AMQPValue)]) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    for (name, value) in extra {
        headers.insert((*name).into(), value.clone());
    }
    let mut copy = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(shared::envelope::PERSISTENT);
    if let Some(v) = original.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = original.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = original.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = original.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    copy
}

fn attempts_value(attempts: u32) -> AMQPValue {
    AMQPValue::LongInt(i32::try_from(attempts).unwrap_or(i32::MAX))
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_drop_the_ttl_and_keep_the_rest() {
        let original = BasicProperties::default()
            .with_expiration("60000".into())
            .with_message_id("m-1".into())
            .with_content_type("application/json".into());
        let copy = copy_properties(&original, &[(REASON_HEADER, long_string("why"))]);
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        assert_eq!(copy.delivery_mode(), &Some(shared::envelope::PERSISTENT));
        assert!(copy
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().contains_key(REASON_HEADER)));
    }
}
