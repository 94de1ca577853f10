//! Dead-lettering a message with its reason.
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

/// Why dead-lettering failed; the original must then stay unacked.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The channel failed.
    #[error("publishing the dead letter failed: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker nacked or returned it (no dead-letter queue bound?).
    #[error("the broker did not accept the dead letter")]
    NotAccepted,
    /// No confirm in time.
    #[error("no confirm for the dead letter within {0:?}")]
    Timeout(Duration),
}

/// Publish a copy of `delivery` to `dlx` carrying `reason`, and wait for
/// the broker's confirm. The caller acks the original afterwards.
pub async fn publish(
    channel: &Channel,
    dlx: &str,
    delivery: &Delivery,
    reason: &str,
    attempts: u32,
    timeout: Duration,
) -> Result<(), DeadLetterError> {
    let mut headers = delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    headers.insert(REASON_HEADER.into(), long_string(reason));
    headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongInt(attempts as i32));
    headers.insert(
        "x-dead-lettered-at".into(),
        long_string(&Utc::now().to_rfc3339()),
    );
    headers.insert(
        "x-original-exchange".into(),
        long_string(delivery.exchange.as_str()),
    );
    headers.insert(
        "x-original-routing-key".into(),
        long_string(delivery.routing_key.as_str()),
    );
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(shared::envelope::PERSISTENT);

    let options = BasicPublishOptions {
        mandatory: true,  // a missing dead-letter queue must fail, not drop the message
        immediate: false, // not supported by RabbitMQ
    };
    let publish = async {
        channel
            .basic_publish(
                dlx.into(),
                delivery.routing_key.clone(),
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
