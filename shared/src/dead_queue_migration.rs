//! Turning the classic `messages.dead` of releases before issue 17 into the
//! quorum (replicated) queue of the same name, in place, losing no dead
//! letter.
//!
//! A queue cannot change its type, so the letters move twice, through a
//! holding queue (`messages.dead.migrating`, quorum, same arguments):
//!
//! ```text
//!  1. classic messages.dead ──move──► messages.dead.migrating    (swap the binding, delete the classic one)
//!  2. messages.dead.migrating ──move──► quorum messages.dead     (swap the binding, delete the holding one)
//! ```
//!
//! Each move (`relocate`) copies while the source is still bound to the
//! dead-letter exchange (so what is dead-lettered meanwhile is moved too, in
//! its place), then binds the target before unbinding the source (the
//! exchange always has one of them: nothing is dead-lettered into nowhere),
//! takes what arrived in between, and deletes the source only if empty. A
//! letter made in the instant both are bound may be there twice (harmless:
//! storing is idempotent); none is lost, and the order is kept.
//!
//! One process migrates at a time: it holds an exclusive queue
//! (`messages.dead.migration-lock`), which RabbitMQ frees if its connection
//! dies. Every state a crash can leave is picked up by the next run: the
//! classic queue still there, or the holding queue (bound, so it keeps every
//! new letter) not yet emptied.
//!
//! Old releases in a rolling upgrade declare `messages.dead` as classic:
//! once the quorum one exists they are refused (406), log it and go on
//! (their declaration of it was already allowed to fail); they use the
//! quorum queue for browse, redrive and purge like a classic one. If one of
//! them re-creates the classic queue in the instant it does not exist,
//! [`run`] moves it again.

use std::time::Duration;

use lapin::options::{
    BasicAckOptions, BasicGetOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ErrorKind};

use crate::publish::{self, PublishError};

/// Longest wait for one broker operation of the migration (a batch of moves
/// counts as one): a broker that stops answering ends it, to be resumed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Letters moved per round trip: got unacknowledged, republished in order,
/// confirmed, then acknowledged with one multiple-ack.
const BATCH: usize = 200;

/// How many times the classic queue may come back (an old release
/// re-creating it while the quorum one does not exist yet) before giving up
/// until the next run.
const ATTEMPTS: usize = 3;

/// The names and arguments of one migration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `messages.dead`: classic before, quorum after.
    pub queue: String,
    /// `messages.dead.migrating`: where the letters wait in between.
    pub holding: String,
    /// `messages.dead.migration-lock`: the exclusive queue one migrating
    /// process holds.
    pub lock: String,
    /// `messages.dlx`: the fanout exchange the dead-letter queue is bound to.
    pub exchange: String,
    /// The quorum arguments of `queue` (the holding queue gets the same).
    pub arguments: FieldTable,
}

/// What [`run`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `queue` is the quorum queue and holds every letter; this many were
    /// moved (each counted once per move).
    Done { moved: u64 },
    /// Another process holds the lock: it migrates.
    Busy,
}

/// Why a migration stopped. Every letter is still in `queue` or `holding`,
/// and one of them is bound: the next run resumes.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A broker operation failed.
    #[error("{what}: {source}")]
    Broker {
        what: &'static str,
        source: lapin::Error,
    },
    /// A broker operation took longer than [`STEP_TIMEOUT`].
    #[error("{0}: no answer within {STEP_TIMEOUT:?}")]
    Timeout(&'static str),
    /// A moved letter was not confirmed (it is still in its source).
    #[error("moving a dead letter: {0}")]
    Publish(#[from] PublishError),
    /// The classic queue kept coming back.
    #[error(
        "the classic queue was declared again {ATTEMPTS} times meanwhile (old releases running?)"
    )]
    Raced,
}

/// Whether `e` is RabbitMQ refusing a declaration because the queue exists
/// with another `x-queue-type` (a classic `messages.dead` of before).
pub fn is_other_queue_type(e: &lapin::Error) -> bool {
    is_soft(e, AMQPSoftError::PRECONDITIONFAILED) && e.to_string().contains("x-queue-type")
}

fn is_soft(e: &lapin::Error, code: AMQPSoftError) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p) if *p.kind() == AMQPErrorKind::Soft(code))
}

/// Migrate under the lock, on channels of `connection`: see the module's
/// docs. `Busy` at once if another process holds the lock.
pub async fn run(connection: &Connection, plan: &Plan) -> Result<Outcome, MigrationError> {
    let lock = step("open a channel", connection.create_channel()).await?;
    let exclusive = QueueDeclareOptions {
        passive: false,
        durable: false,    // a lock, not data
        exclusive: true,   // one connection holds it; freed when it closes
        auto_delete: true, // and never left behind
        nowait: false,
    };
    let take = lock.queue_declare(plan.lock.as_str().into(), exclusive, FieldTable::default());
    match tokio::time::timeout(STEP_TIMEOUT, take).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if is_soft(&e, AMQPSoftError::RESOURCELOCKED) => return Ok(Outcome::Busy),
        Ok(Err(source)) => {
            return Err(MigrationError::Broker {
                what: "take the migration lock",
                source,
            })
        }
        Err(_) => return Err(MigrationError::Timeout("take the migration lock")),
    }
    let result = migrate(connection, plan).await;
    // Released also if this fails: the connection may live on.
    let release = lock.queue_delete(plan.lock.as_str().into(), QueueDeleteOptions::default());
    let _ = tokio::time::timeout(STEP_TIMEOUT, release).await;
    let _ = tokio::time::timeout(STEP_TIMEOUT, lock.close(200, "migrated".into())).await;
    result
}

async fn migrate(connection: &Connection, plan: &Plan) -> Result<Outcome, MigrationError> {
    let mut moved = 0;
    for _ in 0..ATTEMPTS {
        // A refused declaration closes its channel: each on one of its own.
        let probe = step("open a channel", connection.create_channel()).await?;
        let declared = tokio::time::timeout(
            STEP_TIMEOUT,
            declare(&probe, &plan.queue, plan.arguments.clone()),
        )
        .await
        .map_err(|_| MigrationError::Timeout("declare the dead-letter queue"))?;
        match declared {
            Ok(()) => {
                let _ = probe.close(200, "declared".into()).await;
                // Quorum: whatever waits in the holding queue goes back.
                if holding_exists(connection, &plan.holding).await? {
                    moved += relocate(connection, &plan.holding, &plan.queue, plan).await?;
                }
                let channel = step("open a channel", connection.create_channel()).await?;
                step(
                    "bind the dead-letter queue",
                    bind(&channel, &plan.queue, plan),
                )
                .await?;
                let _ = channel.close(200, "migrated".into()).await;
                return Ok(Outcome::Done { moved });
            }
            Err(e) if is_other_queue_type(&e) => {
                let channel = step("open a channel", connection.create_channel()).await?;
                step(
                    "declare the holding queue",
                    declare(&channel, &plan.holding, plan.arguments.clone()),
                )
                .await?;
                let _ = channel.close(200, "declared".into()).await;
                moved += relocate(connection, &plan.queue, &plan.holding, plan).await?;
            }
            Err(source) => {
                return Err(MigrationError::Broker {
                    what: "declare the dead-letter queue",
                    source,
                })
            }
        }
    }
    Err(MigrationError::Raced)
}

/// Move every letter of `from` into `to` (which exists), hand the binding
/// over, and delete `from`: see the module's docs. The number moved.
async fn relocate(
    connection: &Connection,
    from: &str,
    to: &str,
    plan: &Plan,
) -> Result<u64, MigrationError> {
    let channel = confirming_channel(connection).await?;
    // While `from` is bound, what arrives there is moved behind the rest.
    let mut moved = move_all(&channel, from, to).await?;
    // Bind before unbinding: the exchange always has a dead-letter queue.
    step("bind the new queue", bind(&channel, to, plan)).await?;
    for _ in 0..ATTEMPTS {
        step("unbind the old queue", unbind(&channel, from, plan)).await?;
        moved += move_all(&channel, from, to).await?;
        // Deleted only when nothing is left (quorum queues refuse the
        // if-empty flag, so the depth is asked first). Unbound, it receives
        // nothing more; a letter that slipped in means another round.
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let left = step(
            "ask the old queue's depth",
            channel.queue_declare(from.into(), passive, FieldTable::default()),
        )
        .await?
        .message_count();
        if left > 0 {
            continue;
        }
        step(
            "delete the old queue",
            channel.queue_delete(from.into(), QueueDeleteOptions::default()),
        )
        .await?;
        let _ = channel.close(200, "moved".into()).await;
        log::info!("dead-letter queue migration: moved {moved} from {from} to {to}");
        return Ok(moved);
    }
    Err(MigrationError::Raced)
}

/// A new channel of `connection` in confirm mode.
async fn confirming_channel(connection: &Connection) -> Result<Channel, MigrationError> {
    let channel = step("open a channel", connection.create_channel()).await?;
    step(
        "confirm mode",
        channel.confirm_select(ConfirmSelectOptions { nowait: false }),
    )
    .await?;
    Ok(channel)
}

/// Move the letters ready in `from` to `to` through the default exchange,
/// in order, until `from` is empty: each batch got unacknowledged,
/// republished with its properties, confirmed, then acknowledged. A failure
/// leaves the unconfirmed ones in `from` (handed back when the channel
/// closes); a confirmed one not yet acked may end up in both (a duplicate,
/// never a loss).
async fn move_all(channel: &Channel, from: &str, to: &str) -> Result<u64, MigrationError> {
    let mut moved = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let got = step(
                "get a dead letter",
                channel.basic_get(from.into(), BasicGetOptions { no_ack: false }),
            )
            .await?;
            let Some(message) = got else { break };
            batch.push(message);
        }
        let Some(last) = batch.last() else {
            return Ok(moved);
        };
        let last = last.delivery.acker.clone();
        let publish = async {
            let mut confirms = Vec::with_capacity(batch.len());
            for message in &batch {
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        to.into(),
                        publish::OPTIONS,
                        &message.delivery.data,
                        message.delivery.properties.clone(),
                    )
                    .await?;
                confirms.push(confirm);
            }
            let mut outcomes = Vec::with_capacity(confirms.len());
            for confirm in confirms {
                outcomes.push(confirm.await?);
            }
            Ok::<_, lapin::Error>(outcomes)
        };
        let outcomes = tokio::time::timeout(STEP_TIMEOUT, publish)
            .await
            .map_err(|_| MigrationError::Timeout("move a batch of dead letters"))?
            .map_err(PublishError::Broker)?;
        for outcome in outcomes {
            publish::check(outcome)?;
        }
        step(
            "acknowledge the moved letters",
            last.ack(BasicAckOptions { multiple: true }),
        )
        .await?;
        moved += batch.len() as u64;
    }
}

/// Whether queue `name` exists (a passive declare, on a channel of its own:
/// RabbitMQ closes it when there is no such queue).
async fn holding_exists(connection: &Connection, name: &str) -> Result<bool, MigrationError> {
    let channel = step("open a channel", connection.create_channel()).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declare = channel.queue_declare(name.into(), passive, FieldTable::default());
    match tokio::time::timeout(STEP_TIMEOUT, declare).await {
        Ok(Ok(_)) => {
            let _ = channel.close(200, "looked".into()).await;
            Ok(true)
        }
        Ok(Err(e)) if is_soft(&e, AMQPSoftError::NOTFOUND) => Ok(false),
        Ok(Err(source)) => Err(MigrationError::Broker {
            what: "look for the holding queue",
            source,
        }),
        Err(_) => Err(MigrationError::Timeout("look for the holding queue")),
    }
}

/// Whether the holding queue of `plan` exists: a migration stopped midway
/// (a crash) and must be resumed.
pub async fn interrupted(connection: &Connection, plan: &Plan) -> Result<bool, MigrationError> {
    holding_exists(connection, &plan.holding).await
}

async fn declare(channel: &Channel, name: &str, arguments: FieldTable) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: false,
        nowait: false,
    };
    channel
        .queue_declare(name.into(), durable, arguments)
        .await
        .map(|_| ())
}

async fn unbind(channel: &Channel, queue: &str, plan: &Plan) -> lapin::Result<()> {
    channel
        .queue_unbind(
            queue.into(),
            plan.exchange.as_str().into(),
            "".into(),
            FieldTable::default(),
        )
        .await
}

async fn bind(channel: &Channel, queue: &str, plan: &Plan) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            plan.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// `operation` within [`STEP_TIMEOUT`], its failure named by `what`.
async fn step<T>(
    what: &'static str,
    operation: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<T, MigrationError> {
    match tokio::time::timeout(STEP_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(MigrationError::Broker { what, source }),
        Err(_) => Err(MigrationError::Timeout(what)),
    }
}
