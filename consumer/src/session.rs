//! One broker session: connect (a consuming and a publishing connection),
//! declare, consume in batches until a connection fails or shutdown is
//! requested, then close.
//!
//! The supervisor in `startup` runs sessions in a loop with backoff, so a
//! consumer stream that ends is an error to recover from, not an exit.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use shared::amqp::ConnectError;
use shared::db::PgPool;
use shared::dead_queue_migration;
use shared::kind::Kind;
use shared::topology::DeadQueue;
use tokio::sync::{watch, Notify};
use tokio_util::task::AbortOnDropHandle;

use crate::config::Settings;
use crate::dead_depth;
use crate::dead_index;
use crate::dead_migration;
use crate::outbound::{Outbound, OutboundError};
use crate::stats::Stats;
use crate::worker::{Worker, WorkerError};

/// Why a session ended: the broker connection or a channel failed (the
/// supervisor reconnects).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No node answered.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The publishing connection could not be opened.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// The topology could not be declared.
    #[error("cannot declare the topology: {0}")]
    Declare(lapin::Error),
    /// A channel operation failed.
    #[error("{0}")]
    Broker(#[from] lapin::Error),
    /// The consumer stream failed.
    #[error("consumer stream failed: {0}")]
    Stream(lapin::Error),
    /// The consumer stream ended.
    #[error("consumer stream ended (channel or connection closed)")]
    StreamEnded,
    /// A batch could not be settled.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// How a session ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was requested and everything in hand was settled.
    Drained,
}

/// Run one session. `Err` means the broker connection failed (reconnect);
/// `Ok` means shutdown was requested and handled.
pub async fn run(
    settings: &Settings,
    pool: &PgPool,
    stats: &Arc<Stats>,
    owed: &Arc<Notify>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Ended, SessionError> {
    let common = &settings.common;
    let name = shared::amqp::connection_name("consumer");
    let nodes = &common.amqp_nodes;
    let connect = async {
        let (connection, node) = nodes.connect(&name, common.amqp_timeout).await?;
        // The publishing connection goes to the same node when it can.
        let outbound = Outbound::open(
            nodes,
            &node,
            &format!("{name}-publish"),
            common.amqp_timeout,
        )
        .await?;
        log::info!("connected to RabbitMQ node {node}");
        Ok::<_, SessionError>((connection, outbound, node))
    };
    let (connection, outbound, node) = tokio::select! {
        c = connect => c?,
        _ = shutdown.wait_for(|stop| *stop) => return Ok(Ended::Drained),
    };
    let outbound = Arc::new(outbound);
    stats.set_node(Some(&node));
    let result = async {
        let topology = settings.topology();
        let dead_queue = topology
            .declare_on(&connection)
            .await
            .map_err(SessionError::Declare)?;
        // The classic dead-letter queue of before becomes the quorum one, in
        // the background (see `dead_migration`); it ends with the session.
        // Consumers also resume a migration a crash interrupted (its holding
        // queue still exists: one passive declare, which the broker answers
        // with 404 on a channel of its own in the usual case).
        let resume = dead_queue == DeadQueue::Ready
            && matches!(
                dead_queue_migration::interrupted(&connection, &topology.dead_queue_migration())
                    .await,
                Ok(true)
            );
        let _migration = (dead_queue == DeadQueue::NeedsMigration || resume).then(|| {
            AbortOnDropHandle::new(tokio::spawn(dead_migration::run(
                settings.common.amqp_nodes.clone(),
                node.clone(),
                settings.common.amqp_timeout,
                topology,
            )))
        });
        consume(
            settings,
            pool,
            stats,
            owed,
            shutdown,
            &connection,
            outbound.clone(),
        )
        .await
    }
    .await;
    stats.set_node(None);
    outbound.close().await;
    // Closing returns unacked deliveries to the queue at once instead of
    // after a heartbeat timeout.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        connection.close(200, "consumer session over".into()),
    )
    .await;
    result
}

async fn consume(
    settings: &Settings,
    pool: &PgPool,
    stats: &Arc<Stats>,
    owed: &Arc<Notify>,
    shutdown: &mut watch::Receiver<bool>,
    connection: &Connection,
    outbound: Arc<Outbound>,
) -> Result<Ended, SessionError> {
    let topology = settings.topology();
    // Dead letters made anywhere are recorded by a task on a channel of its
    // own (its acks must not mix with the store queue's multiple-acks). It
    // ends with the session, by any path.
    let index_channel = connection.create_channel().await?;
    let _indexer = AbortOnDropHandle::new(tokio::spawn({
        let (topology, pool) = (topology.clone(), pool.clone());
        async move {
            if let Err(e) = dead_index::run(index_channel, topology, pool).await {
                log::warn!("dead-letter index stopped: {e}");
            }
        }
    }));
    // The dead-letter queue's depth, on a channel of its own (a failed
    // passive declare closes its channel).
    let depth_channel = connection.create_channel().await?;
    let _depth = AbortOnDropHandle::new(tokio::spawn(dead_depth::watch(
        depth_channel,
        topology.dead_queue.clone(),
        stats.clone(),
    )));
    // One channel, prefetch and batch loop per queue: each kind's queue
    // (CONSUME_KINDS), and the queue of unknown kinds. A kind's backlog
    // fills only its own prefetch and its own loop, so the other kinds'
    // messages are taken and stored alongside it: fair shares inside one
    // consumer, with no scheduler on the per-message path.
    // A sharded kind: every shard, each with a loop of its own.
    let mut queues: Vec<(String, Option<Kind>, u16)> = settings
        .consume_kinds
        .iter()
        .flat_map(|k| {
            topology
                .shard_queues_of(k)
                .into_iter()
                .map(|q| (q, Some(k.clone()), settings.prefetch))
        })
        .collect();
    // Rare traffic: a small prefetch is plenty.
    let unrouted_prefetch = settings.prefetch.min(UNROUTED_PREFETCH);
    queues.push((topology.unrouted_queue.clone(), None, unrouted_prefetch));
    let mut loops = Vec::with_capacity(queues.len());
    for (queue, kind, prefetch) in queues {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        let tag = format!(
            "{}-{}",
            shared::amqp::connection_name("consumer"),
            uuid::Uuid::new_v4().simple()
        );
        let options = BasicConsumeOptions {
            no_local: false,
            no_ack: false,    // manual acks: ack only after the row is committed
            exclusive: false, // any number of consumers share the queue
            nowait: false,
        };
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await?;
        log::info!(
            "consuming {queue} (prefetch {prefetch}, batch {} / {:?})",
            settings.batch_size,
            settings.batch_wait
        );
        let worker = Worker {
            channel: channel.clone(),
            outbound: outbound.clone(),
            pool: pool.clone(),
            topology: topology.clone(),
            publish_timeout: settings.common.amqp_timeout,
            stats: stats.clone(),
            settings: settings.clone(),
            owed: owed.clone(),
            kind,
        };
        loops.push(consume_queue(
            settings,
            shutdown.clone(),
            worker,
            consumer,
            tag,
        ));
    }
    stats.record_session();
    // From here until this function returns, by any path, the broker counts
    // as connected (for /readyz and pipeline_broker_connected).
    let _consuming = Consuming(stats);
    // The first queue whose loop fails ends the session (the others are
    // dropped: what they hold unacked goes back with the connection).
    futures_util::future::try_join_all(loops).await?;
    Ok(Ended::Drained)
}

/// Most unacked deliveries of the queue of unknown kinds per consumer.
const UNROUTED_PREFETCH: u16 = 10;

/// Store batches from one queue until shutdown, then cancel and settle
/// what is in hand.
async fn consume_queue(
    settings: &Settings,
    mut shutdown: watch::Receiver<bool>,
    worker: Worker,
    mut consumer: Consumer,
    tag: String,
) -> Result<(), SessionError> {
    // Normal operation: batches until shutdown.
    loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            next = consumer.next() => next,
        };
        let first = delivery_or_error(first)?;
        let (batch, ended) = fill_batch(
            &mut consumer,
            first,
            settings.batch_size,
            settings.batch_wait,
        )
        .await;
        // Settle what we have even if the stream just ended: if the channel
        // still works the acks go through, and if not the broker requeues.
        worker.process(batch).await?;
        if let Some(reason) = ended {
            return Err(reason);
        }
    }

    // Shutdown: stop the broker from sending more, then settle what was
    // already delivered to us. The caller bounds this with SHUTDOWN_TIMEOUT_MS.
    log::info!("shutdown requested: cancelling the consumer and draining what is in hand");
    let channel = &worker.channel;
    channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions { nowait: false })
        .await?;
    loop {
        // After cancel-ok no new deliveries come; the stream yields what is
        // buffered and then ends (or goes quiet).
        let next = match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
            Ok(Some(next)) => next,
            Ok(None) | Err(_) => break,
        };
        let first = next.map_err(SessionError::Stream)?;
        let (batch, ended) =
            fill_batch(&mut consumer, first, settings.batch_size, Duration::ZERO).await;
        log::debug!(
            "draining a batch of {} (stream ended: {ended:?})",
            batch.len()
        );
        worker.process(batch).await?;
        if ended.is_some() {
            break; // the stream ends after the cancel: all in hand is settled
        }
    }
    let _ = channel.close(200, "consumer stopping".into()).await;
    Ok(())
}

/// Reports the session over when dropped.
struct Consuming<'a>(&'a Stats);

impl Drop for Consuming<'_> {
    fn drop(&mut self) {
        self.0.record_session_ended();
    }
}

fn delivery_or_error(next: Option<lapin::Result<Delivery>>) -> Result<Delivery, SessionError> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(e)) => Err(SessionError::Stream(e)),
        None => Err(SessionError::StreamEnded),
    }
}

/// Add deliveries to `first` until the batch is full or `wait` has passed.
/// If the stream ends or fails on the way, the batch so far is returned
/// with the reason, so the caller can still settle it: dropping it would
/// hand those deliveries back to the broker unsettled.
async fn fill_batch(
    consumer: &mut Consumer,
    first: Delivery,
    size: usize,
    wait: Duration,
) -> (Vec<Delivery>, Option<SessionError>) {
    let mut batch = Vec::with_capacity(size);
    batch.push(first);
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < size {
        // With a zero wait this still takes what is already buffered:
        // `timeout_at` polls the stream before it checks the deadline.
        let next = match tokio::time::timeout_at(deadline, consumer.next()).await {
            Ok(next) => next,
            Err(_) => break,
        };
        match delivery_or_error(next) {
            Ok(delivery) => batch.push(delivery),
            Err(reason) => return (batch, Some(reason)),
        }
    }
    (batch, None)
}
