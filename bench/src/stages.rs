//! Stage limits, measured on the same machine in the same run: the broker
//! alone (publish with confirms + consume with acks, no HTTP, no database)
//! and the database alone (the consumer's own batched idempotent insert,
//! `shared::db::messages::store`, no broker).

use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::prelude::*;
use diesel::Connection as _;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Confirmation, Connection, ConnectionProperties};
use shared::kind::Kinds;
use shared::{Envelope, Topology};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Publish `n` envelopes to a fresh copy of the topology (same quorum queue
/// arguments), keeping up to `window` confirms outstanding, while a second
/// connection consumes and acks (multiple-ack every 100). Returns messages/s
/// from the first publish to the last delivery.
pub async fn broker(amqp_url: &str, n: usize, window: usize) -> anyhow::Result<f64> {
    broker_kind(amqp_url, n, window, shared::kind::DEFAULT, 1).await
}

/// As [`broker`], for messages of `kind` spread over `shards` queues
/// (`KIND_SHARDS`), each consumed on a channel of its own, as a consumer
/// of that kind does.
pub async fn broker_kind(
    amqp_url: &str,
    n: usize,
    window: usize,
    kind: &str,
    shards: u16,
) -> anyhow::Result<f64> {
    let kinds = Kinds::parse(kind)
        .and_then(|k| k.with_shards(&format!("{kind}:{shards}")))
        .map_err(anyhow::Error::msg)?;
    let the_kind = kinds.check(kind)?;
    let topology =
        Topology::with_prefix(&format!("bench.stage.{}.", uuid::Uuid::new_v4().simple()))
            .with_kinds(&kinds);
    let publisher = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let pub_channel = publisher.create_channel().await?;
    topology.declare(&pub_channel).await?;
    pub_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let consumer_conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let seen = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(Notify::new());
    let mut consumers = Vec::new();
    for queue in topology.shard_queues_of(&the_kind) {
        let channel = consumer_conn.create_channel().await?;
        channel.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "bench-stage".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (seen, all_in) = (seen.clone(), all_in.clone());
        consumers.push(tokio::spawn(async move {
            let mut mine = 0usize;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                mine += 1;
                if mine.is_multiple_of(100) {
                    delivery
                        .acker
                        .ack(BasicAckOptions { multiple: true })
                        .await?;
                }
                if seen.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    all_in.notify_one();
                }
            }
            anyhow::Ok(())
        }));
    }

    let start = Instant::now();
    let envelopes = (0..n).map(|i| Envelope {
        kind: the_kind.clone(),
        ..Envelope::new(format!("stage message {i}"))
    });
    publish_all(&pub_channel, &topology, envelopes, window).await?;
    tokio::time::timeout(Duration::from_secs(300), all_in.notified())
        .await
        .context("broker stage: consumer did not receive everything")?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    for consumer in consumers {
        consumer.abort();
    }
    topology.delete(&pub_channel).await?;
    let _ = publisher.close(200, "".into()).await;
    let _ = consumer_conn.close(200, "".into()).await;
    Ok(rate)
}

/// Publish `envelopes` on `channel` (in confirm mode) where the producer
/// would (by kind, and by shard for a sharded kind), keeping up to `window`
/// confirms outstanding; returns once every one is confirmed.
pub async fn publish_all(
    channel: &lapin::Channel,
    topology: &Topology,
    envelopes: impl Iterator<Item = Envelope>,
    window: usize,
) -> anyhow::Result<()> {
    let mut pending = FuturesUnordered::new();
    for envelope in envelopes {
        let (exchange, key) = topology.publish_target(&envelope.kind, envelope.id);
        let confirm = channel
            .basic_publish(
                exchange.into(),
                key.as_ref().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &envelope.to_body(),
                envelope.properties(),
            )
            .await?;
        pending.push(confirm);
        while pending.len() >= window {
            check(pending.next().await)?;
        }
    }
    while !pending.is_empty() {
        check(pending.next().await)?;
    }
    Ok(())
}

fn check(next: Option<lapin::Result<Confirmation>>) -> anyhow::Result<()> {
    match next {
        Some(Ok(Confirmation::Ack(None))) => Ok(()),
        other => anyhow::bail!("broker stage: publish not confirmed: {other:?}"),
    }
}

/// Store `n` rows into a scratch database in batches of `batch`, from
/// `writers` threads (like that many consumers), through the insert the
/// consumer runs. Returns rows/s.
pub fn database(server_url: &str, n: usize, batch: usize, writers: usize) -> anyhow::Result<f64> {
    let name = format!("bench_stage_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::establish(&format!("{server_url}/postgres"))?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin)?;
    let url = format!("{server_url}/{name}");
    let result = (|| {
        shared::db::run_migrations(&mut PgConnection::establish(&url)?)?;
        let envelopes: Vec<Envelope> = (0..n)
            .map(|i| Envelope::new(format!("stage row {i}")))
            .collect();
        let per_writer = n.div_ceil(writers);
        let start = Instant::now();
        std::thread::scope(|scope| {
            let handles: Vec<_> = envelopes
                .chunks(per_writer)
                .map(|part| {
                    let url = url.clone();
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut conn = PgConnection::establish(&url)?;
                        for chunk in part.chunks(batch) {
                            shared::db::messages::store(&mut conn, chunk)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("writer panicked"))??;
            }
            anyhow::Ok(())
        })?;
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)?;
    result
}
