//! Keeping the `dead_letters` table complete: every dead letter, whoever
//! made it, is also routed to `messages.dead.index`, and each consumer
//! records what it takes from there.
//!
//! The consumer records its own dead letters before acking them; this is
//! for the ones RabbitMQ makes by itself (a message redelivered past the
//! delivery limit), which would otherwise sit in `messages.dead` while
//! `GET /messages/{id}` says `not_found`. A record that exists is kept
//! (`ON CONFLICT DO NOTHING`): the consumer's own reason wins. A new record
//! of a message with a callback or a batch owes its notification and may
//! complete its batch, in the same transaction (`shared::db::dead_letters`).

use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use shared::db::dead_letters::{self, DeadLetter};
use shared::db::PgPool;
use shared::dead_letter::{attempts, message_uuid, Category};
use shared::envelope::Extras;

use shared::dead_letter::kind_of;
use shared::Topology;

use crate::database::{GaveUp, Retry, Until};

/// Most index entries recorded in one transaction.
const BATCH: usize = 100;

/// Why indexing stopped (the session's supervisor restarts it with the
/// next session).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The channel or its consumer failed.
    #[error("{0}")]
    Broker(#[from] lapin::Error),
    /// The database could not record a batch before the channel closed (the
    /// broker has requeued the entries), or its task died.
    #[error("{0}")]
    Database(#[from] GaveUp),
}

/// Consume `queue` on `channel` and record every entry, acking after the
/// commit, until the channel fails. `topology` tells the kind of a dead
/// letter the broker made, by the queue it came from.
pub async fn run(channel: Channel, topology: Topology, pool: PgPool) -> Result<(), IndexError> {
    let queue = topology.dead_index_queue.clone();
    channel
        .basic_qos(BATCH as u16, BasicQosOptions { global: false })
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(), // server-named tag
            BasicConsumeOptions {
                no_local: false,
                no_ack: false,    // ack only after the record is committed
                exclusive: false, // every consumer replica shares the work
                nowait: false,
            },
            FieldTable::default(),
        )
        .await?;
    while let Some(first) = consumer.next().await {
        let mut batch = vec![first?];
        // Take what is already buffered, without waiting for more.
        while batch.len() < BATCH {
            match tokio::time::timeout(Duration::ZERO, consumer.next()).await {
                Ok(Some(delivery)) => batch.push(delivery?),
                Ok(None) | Err(_) => break,
            }
        }
        // Plain records in one statement; those with a batch or callback
        // one by one, each owing its notification.
        let (plain, extra): (Vec<_>, Vec<_>) = batch
            .iter()
            .filter_map(|d| record_of(d, &topology))
            .partition(|(_, x)| x.batch.is_none() && x.callback_url.is_none());
        let plain: Vec<DeadLetter> = plain.into_iter().map(|(r, _)| r).collect();
        Retry::new(&pool, Until::ChannelOpen(&channel))
            .run("cannot index dead letters", move |conn| {
                dead_letters::index(conn, &plain)?;
                for (record, extras) in &extra {
                    dead_letters::record(conn, record, extras, false)?;
                }
                Ok(())
            })
            .await?;
        if let Some(last) = batch.last() {
            last.acker.ack(BasicAckOptions { multiple: true }).await?;
        }
    }
    Ok(())
}

/// The record of one index entry; `None` for a message without a UUID id
/// (it is in `messages.dead` all the same, for the admin tools).
fn record_of(delivery: &Delivery, topology: &Topology) -> Option<(DeadLetter, Extras)> {
    let id = message_uuid(&delivery.data, &delivery.properties)?;
    let headers = delivery.properties.headers().as_ref();
    let category = Category::of(headers);
    let attempts = attempts(headers)
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        .unwrap_or(shared::topology::DELIVERY_LIMIT + 1);
    let extras = Extras::peek(&delivery.data);
    let record = DeadLetter {
        id,
        reason: category.as_str().to_owned(),
        attempts,
        dead_lettered_at: Utc::now(),
        batch_id: extras.batch.as_ref().map(|b| b.id),
        kind: kind_of(&delivery.data, &delivery.properties, topology)
            .as_str()
            .to_owned(),
    };
    Some((record, extras))
}
