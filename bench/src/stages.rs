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
use shared::{Envelope, Topology};

/// Publish `n` envelopes to a fresh copy of the topology (same quorum queue
/// arguments), keeping up to `window` confirms outstanding, while a second
/// connection consumes and acks (multiple-ack every 100). Returns messages/s
/// from the first publish to the last delivery.
pub async fn broker(amqp_url: &str, n: usize, window: usize) -> anyhow::Result<f64> {
    let topology =
        Topology::with_prefix(&format!("bench.stage.{}.", uuid::Uuid::new_v4().simple()));
    let publisher = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let pub_channel = publisher.create_channel().await?;
    topology.declare(&pub_channel).await?;
    pub_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let consumer_conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let con_channel = consumer_conn.create_channel().await?;
    con_channel
        .basic_qos(1000, BasicQosOptions::default())
        .await?;
    let mut consumer = con_channel
        .basic_consume(
            topology.store_queue.as_str().into(),
            "bench-stage".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consume = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < n {
            let delivery = consumer.next().await.context("consumer ended")??;
            seen += 1;
            if seen.is_multiple_of(100) || seen == n {
                delivery
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await?;
            }
        }
        anyhow::Ok(Instant::now())
    });

    let start = Instant::now();
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        let envelope = Envelope::new(format!("stage message {i}"));
        let confirm = pub_channel
            .basic_publish(
                topology.exchange.as_str().into(),
                "".into(),
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
    let done = tokio::time::timeout(Duration::from_secs(300), consume)
        .await
        .context("broker stage: consumer did not receive everything")???;
    let rate = n as f64 / (done - start).as_secs_f64();
    topology.delete(&pub_channel).await?;
    let _ = publisher.close(200, "".into()).await;
    let _ = consumer_conn.close(200, "".into()).await;
    Ok(rate)
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
