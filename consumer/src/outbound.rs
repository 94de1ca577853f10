//! The consumer's publishing side: a connection of its own.
//!
//! On a memory or disk alarm RabbitMQ blocks every connection that publishes
//! and stops reading from it, acks included. Publishing dead letters,
//! retries and events on the consuming connection would therefore stop the
//! acks too, so the queue could never drain (which keeps a disk alarm from
//! clearing). Here the consuming connection never publishes; this one does.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use shared::amqp::{ConnectError, Nodes};

/// Why the publishing connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// No node answered.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A channel could not be opened or put in confirm mode.
    #[error("{0}")]
    Channel(#[from] lapin::Error),
    /// The whole setup took too long.
    #[error("timed out opening the publishing connection")]
    Timeout,
}

/// The publishing connection and its two channels.
pub struct Outbound {
    /// The connection (named `<consumer name>-publish` in the management UI).
    pub connection: Connection,
    /// Confirm mode: dead letters and retries, acked by the broker before
    /// the original is.
    pub confirms: Channel,
    /// No confirms: completion events, best effort.
    pub events: Channel,
}

impl Outbound {
    /// Connect (to `node` when it answers, else the next live node) and
    /// open both channels, within `timeout` per step.
    pub async fn open(
        nodes: &Nodes,
        node: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, OutboundError> {
        let setup = async {
            let (connection, _) = nodes.connect_near(node, name, timeout).await?;
            let confirms = connection.create_channel().await?;
            confirms
                .confirm_select(ConfirmSelectOptions { nowait: false })
                .await?;
            let events = connection.create_channel().await?;
            Ok(Self {
                connection,
                confirms,
                events,
            })
        };
        let bound = timeout.saturating_mul(u32::try_from(nodes.len()).unwrap_or(u32::MAX) + 1);
        tokio::time::timeout(bound, setup)
            .await
            .unwrap_or(Err(OutboundError::Timeout))
    }

    /// Whether the broker blocks this connection (resource alarm).
    pub fn is_blocked(&self) -> bool {
        shared::publish::is_blocked(&self.connection)
    }

    /// Close, best effort and bounded.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.connection.close(200, "consumer session over".into()),
        )
        .await;
    }
}
