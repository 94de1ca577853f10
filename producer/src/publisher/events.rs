//! The completion-event relay: the consumers announce each message stored
//! or dead-lettered on the events exchange; every producer replica binds a
//! queue of its own to it and forwards what arrives to its subscribers
//! (`GET /events`, `?wait`). Best effort: the database is the truth.

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use shared::events::Event;
use shared::Topology;
use tokio::sync::broadcast;

/// Bind a queue of this replica's own (server-named, exclusive, gone with
/// the connection) to the events exchange, so every replica sees every
/// event, and forward what arrives to `events`.
pub(super) async fn relay(
    connection: &Connection,
    topology: &Topology,
    events: broadcast::Sender<Event>,
) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let queue = channel
        .queue_declare(
            "".into(), // server-named
            QueueDeclareOptions {
                passive: false,
                durable: false,    // notifications only
                exclusive: true,   // this replica's own
                auto_delete: true, // gone with the connection
                nowait: false,
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            topology.events_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "producer-events".into(),
            BasicConsumeOptions {
                no_local: false,
                no_ack: true, // best effort: a lost event costs nothing
                exclusive: true,
                nowait: false,
            },
            FieldTable::default(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Ok(event) = serde_json::from_slice::<Event>(&delivery.data) {
                // No subscriber is fine.
                let _ = events.send(event);
            }
        }
    });
    Ok(channel)
}
