//! The one confirmed publish both binaries use: persistent, mandatory, bounded
//! in time, and only a plain `basic.ack` counts as accepted.
//!
//! Every publish in the project goes through [`confirmed`] or [`best_effort`]
//! (the producer's pipelined batch publish uses [`OPTIONS`] and [`check`], the
//! same pieces). Both await the `PublisherConfirm` (lapin)
//! they get: lapin parks every confirm dropped unawaited in the channel's
//! returned-messages list and never frees it, which leaked ~650 bytes per
//! completion event before this module existed.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation, Connection};

/// Options of every publish that must not be lost.
pub const OPTIONS: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,  // unroutable must come back as an error, not vanish
    immediate: false, // not supported by RabbitMQ
};

/// Why a message was not accepted by the broker. Every variant means "not
/// taken": the caller keeps responsibility for the message.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection to the broker right now.
    #[error("not connected to the broker")]
    NotConnected,
    /// The broker blocked the connection (memory or disk alarm): publishing
    /// would only queue frames it will not read.
    #[error("the broker has blocked publishing (resource alarm)")]
    Blocked,
    /// The broker answered `basic.nack` (or the channel is not in confirm mode).
    #[error("the broker refused the message (nack)")]
    Nacked,
    /// The message was returned: no queue is bound to the exchange.
    #[error("the message was unroutable ({0})")]
    Unroutable(String),
    /// No confirm within the timeout.
    #[error("no confirm within {0:?}")]
    Timeout(Duration),
    /// The channel or connection failed during the publish.
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
}

/// Whether the broker currently blocks `connection` (`connection.blocked`).
pub fn is_blocked(connection: &Connection) -> bool {
    connection.status().blocked()
}

/// Only a plain ack means the broker took the message.
pub fn check(confirmation: Confirmation) -> Result<(), PublishError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        // With mandatory, an unroutable message is returned, then acked.
        Confirmation::Ack(Some(returned)) => {
            Err(PublishError::Unroutable(returned.reply_text.to_string()))
        }
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        // A channel that is not in confirm mode proves nothing.
        Confirmation::NotRequested => Err(PublishError::Nacked),
    }
}

/// Publish on `channel` (which must be in confirm mode) with [`OPTIONS`] and
/// wait at most `timeout` for the broker's confirm. `Ok` means the broker
/// has taken responsibility for the message (for a quorum queue: written to
/// a majority and fsynced). The caller sets `properties` (persistence
/// included): this function sends exactly what it is given.
pub async fn confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    let publish = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                OPTIONS,
                body,
                properties,
            )
            .await?;
        confirm.await
    };
    match tokio::time::timeout(timeout, publish).await {
        Err(_) => Err(PublishError::Timeout(timeout)),
        Ok(Err(e)) => Err(PublishError::Broker(e)),
        Ok(Ok(confirmation)) => check(confirmation),
    }
}

/// Publish a notification that may be lost: not mandatory, on a channel
/// without confirms, skipped while `connection` is blocked, and bounded by
/// `timeout`. The confirm lapin hands back (already resolved on such a
/// channel) is awaited all the same, so nothing is left behind.
pub async fn best_effort(
    connection: &Connection,
    channel: &Channel,
    exchange: &str,
    body: &[u8],
    properties: BasicProperties,
    timeout: Duration,
) -> Result<(), PublishError> {
    if is_blocked(connection) {
        return Err(PublishError::Blocked);
    }
    let publish = async {
        let confirm = channel
            .basic_publish(
                exchange.into(),
                "".into(),
                BasicPublishOptions {
                    mandatory: false, // no listener is fine for a notification
                    immediate: false, // not supported by RabbitMQ
                },
                body,
                properties,
            )
            .await?;
        confirm.await
    };
    match tokio::time::timeout(timeout, publish).await {
        Err(_) => Err(PublishError::Timeout(timeout)),
        Ok(Err(e)) => Err(PublishError::Broker(e)),
        Ok(Ok(_)) => Ok(()),
    }
}
