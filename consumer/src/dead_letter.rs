//! Dead-lettering a message with its reason, and scheduling a retry.
//!
//! The broker's own dead-lettering (reject without requeue) cannot attach a
//! reason, so the consumer republishes the message to the dead-letter
//! exchange itself, with the reason in headers, waits for the broker's
//! confirm, and only then acks the original. A crash in between leaves the
//! original in the queue: at worst the dead letter exists twice, never zero times.

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, LongString};
use lapin::{Channel, Confirmation};
use std::time::Duration;

/// Header holding the human-readable reason.
pub const REASON_HEADER: &str = "x-error";
/// Header holding how many attempts were made.
pub const ATTEMPTS_HEADER: &str = "x-attempts";

/// Why republishing (to the dead-letter exchange or a delay queue) failed;
/// the original must then stay unacked.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The channel failed.
    #[error("republishing the message failed: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker nacked or returned it (target queue missing?).
    #[error("the broker did not accept the republished message")]
    NotAccepted,
    /// No confirm in time.
    #[error("no confirm for the republished message within {0:?}")]
    Timeout(Duration),
}

/// Header holding the last error of a message waiting to be retried.
pub const LAST_ERROR_HEADER: &str = "x-last-error";

/// How many attempts were already made on `delivery` (0 for a fresh one),
/// read from the header a retry carries.
pub fn previous_attempts(delivery: &Delivery) -> u32 {
    let value = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS_HEADER).cloned());
    match value {
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::ShortInt(n)) => u32::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => n,
        _ => 0,
    }
}

/// Publish a copy of `delivery` to `dlx` carrying `reason` and the attempt
/// count, and wait for the broker's confirm. The caller acks the original
/// afterwards.
pub async fn publish(
    channel: &Channel,
    dlx: &str,
    delivery: &Delivery,
    reason: &str,
    attempts: u32,
    timeout: Duration,
) -> Result<(), DeadLetterError> {
    let headers = [
        (REASON_HEADER, long_string(reason)),
        (ATTEMPTS_HEADER, AMQPValue::LongInt(attempts as i32)),
        ("x-dead-lettered-at", long_string(&Utc::now().to_rfc3339())),
        (
            "x-original-exchange",
            long_string(delivery.exchange.as_str()),
        ),
        (
            "x-original-routing-key",
            long_string(delivery.routing_key.as_str()),
        ),
    ];
    republish(
        channel,
        dlx,
        delivery.routing_key.as_str(),
        delivery,
        &headers,
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
) -> Result<(), DeadLetterError> {
    let headers = [
        (ATTEMPTS_HEADER, AMQPValue::LongInt(attempts as i32)),
        (LAST_ERROR_HEADER, long_string(last_error)),
    ];
    // The default exchange routes by queue name.
    republish(channel, "", retry_queue, delivery, &headers, timeout).await
}

/// Publish a copy of `delivery` with `extra` headers added, mandatory and
/// persistent, and wait for the confirm.
async fn republish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    delivery: &Delivery,
    extra: &[(&str, AMQPValue)],
    timeout: Duration,
) -> Result<(), DeadLetterError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    for (name, value) in extra {
        headers.insert((*name).into(), value.clone());
    }
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(shared::envelope::PERSISTENT);

    let options = BasicPublishOptions {
        mandatory: true,  // a missing target queue must fail, not drop the message
        immediate: false, // not supported by RabbitMQ
    };
    let publish = async {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                &delivery.data,
                properties,
            )
            .await?
            .await
    };
    match tokio::time::timeout(timeout, publish).await {
        Err(_) => Err(DeadLetterError::Timeout(timeout)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(_)) => Err(DeadLetterError::NotAccepted),
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}
