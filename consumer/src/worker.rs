//! Storing one batch of deliveries: decode, dead-letter the poison, insert
//! the rest in one transaction, and ack only after it committed.
//!
//! Failure policy:
//! * undecodable or invalid message → dead-lettered at once with the reason;
//! * database unavailable (transient) → keep the deliveries unacked and retry
//!   with capped backoff until it is back; never dead-letter for that;
//! * any other insert error → split the batch and store row by row, so one
//!   bad row cannot sink its neighbours. A row the database rejects by a
//!   constraint is dead-lettered with the reason; a row failing for another
//!   reason (while the database answers pings) goes to a delay queue and is
//!   tried again later, up to `MAX_ATTEMPTS`, then dead-lettered with the
//!   reason and the attempt count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::BasicProperties;
use lapin::Channel;
use shared::db::{DbError, PgPool};
use shared::events::Event;
use shared::models::{DeadLetter, NewMessage};
use shared::{Backoff, Envelope, Topology};
use uuid::Uuid;

use crate::config::Settings;
use crate::dead_letter;
use crate::metrics::DeadLetterReason;
use crate::stats::Stats;

/// Why a batch could not be settled. The session ends and the channel is
/// closed, so the broker requeues whatever was not acked.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Acking failed: the channel is gone.
    #[error("ack failed: {0}")]
    Ack(String),
    /// A dead letter could not be published.
    #[error(transparent)]
    DeadLetter(#[from] dead_letter::DeadLetterError),
    /// The blocking database task panicked.
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Stores batches for one channel. Batches must be processed one at a
/// time, in delivery order: the multiple-ack relies on every earlier
/// delivery of the channel being settled already.
pub struct Worker {
    /// The consuming channel (in confirm mode, for dead letters).
    pub channel: Channel,
    /// The database pool.
    pub pool: PgPool,
    /// Where dead letters go.
    pub topology: Topology,
    /// Longest wait for a dead letter's confirm.
    pub confirm_timeout: Duration,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Retry policy (`MAX_ATTEMPTS`, delays).
    pub settings: Settings,
}

impl Worker {
    /// Settle every delivery of `batch`: stored and acked, or dead-lettered
    /// and acked. Returns only when all are settled (it waits out database
    /// outages), or with an error when the channel failed.
    pub async fn process(&self, batch: Vec<Delivery>) -> Result<(), WorkerError> {
        self.stats.record_received(batch.len());
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut envelopes = Vec::with_capacity(batch.len());
        for delivery in batch {
            match Envelope::decode(&delivery.data, &delivery.properties) {
                Ok(envelope) => {
                    deliveries.push(delivery);
                    envelopes.push(envelope);
                }
                Err(reason) => {
                    let attempt = dead_letter::previous_attempts(&delivery) + 1;
                    let reason = format!("invalid message: {reason}");
                    self.dead_letter(&delivery, &reason, DeadLetterReason::Invalid, attempt)
                        .await?
                }
            }
        }
        if deliveries.is_empty() {
            return Ok(());
        }
        match self.insert_until_available(envelopes).await? {
            (envelopes, Ok(new_ids)) => {
                // Counted at commit: the rows are stored even if the ack
                // below fails (the redelivery then counts as duplicates).
                self.stats.record_stored(&envelopes, &new_ids, Utc::now());
                self.announce(Event::Stored { ids: new_ids }).await;
                self.ack_through(&deliveries).await
            }
            (envelopes, Err(e)) => {
                log::warn!(
                    "batch of {} rejected by the database ({e}); storing row by row",
                    envelopes.len()
                );
                for (delivery, envelope) in deliveries.iter().zip(envelopes) {
                    self.store_one(delivery, envelope).await?;
                }
                Ok(())
            }
        }
    }

    /// Store a single row; dead-letter it if the database rejects it for
    /// a reason that is not an outage.
    async fn store_one(&self, delivery: &Delivery, envelope: Envelope) -> Result<(), WorkerError> {
        match self.insert_until_available(vec![envelope]).await? {
            (envelopes, Ok(new_ids)) => {
                self.stats.record_stored(&envelopes, &new_ids, Utc::now());
                self.announce(Event::Stored { ids: new_ids }).await;
                ack(delivery, false).await
            }
            (_, Err(e)) => {
                let attempt = dead_letter::previous_attempts(delivery) + 1;
                let reason = format!("database rejected the message: {e}");
                if e.is_rejection() {
                    return self
                        .dead_letter(delivery, &reason, DeadLetterReason::Rejected, attempt)
                        .await;
                }
                if attempt >= self.settings.max_attempts {
                    return self
                        .dead_letter(delivery, &reason, DeadLetterReason::MaxAttempts, attempt)
                        .await;
                }
                let delay = self.settings.retry_delay(attempt);
                log::warn!(
                    "message {} failed attempt {attempt}/{} ({e}); retrying in {delay:?}",
                    envelope_id(delivery),
                    self.settings.max_attempts
                );
                dead_letter::schedule_retry(
                    &self.channel,
                    &self.topology.retry_queue(delay),
                    delivery,
                    &reason,
                    attempt,
                    self.confirm_timeout,
                )
                .await?;
                ack(delivery, false).await?;
                self.stats.record_retry();
                Ok(())
            }
        }
    }

    /// Insert, retrying for as long as the failure is transient (the database
    /// is down or restarting). Returns the envelopes back with either the
    /// ids of the new rows or a non-transient error.
    async fn insert_until_available(
        &self,
        mut envelopes: Vec<Envelope>,
    ) -> Result<(Vec<Envelope>, Result<Vec<Uuid>, DbError>), WorkerError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let pool = self.pool.clone();
            let (back, result) = tokio::task::spawn_blocking(move || {
                let result = insert(&pool, &envelopes);
                (envelopes, result)
            })
            .await?;
            envelopes = back;
            let result = result.map(|(ids, elapsed)| {
                self.stats.record_insert(elapsed);
                ids
            });
            let result = match result {
                // A non-transient error while the database does not even
                // answer a ping is an outage in disguise: treat it as one.
                Err(e) if !e.is_transient() && !shared::db::pool_answers(&self.pool).await => {
                    Err(e)
                }
                Err(e) if !e.is_transient() => return Ok((envelopes, Err(e))),
                other => other,
            };
            match result {
                Ok(ids) => {
                    if backoff.attempts() > 0 {
                        log::info!("database is back; stored the waiting batch");
                    }
                    return Ok((envelopes, Ok(ids)));
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    self.stats.record_db_retry();
                    log::warn!(
                        "database unavailable ({e}); holding {} messages, retrying in {delay:?}",
                        envelopes.len()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Ack every delivery of a fully stored batch with one multiple-ack on
    /// its last tag. Safe because batches are settled in order: every earlier
    /// tag on this channel is already acked.
    async fn ack_through(&self, deliveries: &[Delivery]) -> Result<(), WorkerError> {
        match deliveries.last() {
            Some(last) => {
                log::debug!(
                    "acking {} deliveries through tag {}",
                    deliveries.len(),
                    last.delivery_tag
                );
                ack(last, true).await
            }
            None => Ok(()),
        }
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        kind: DeadLetterReason,
        attempts: u32,
    ) -> Result<(), WorkerError> {
        log::warn!(
            "dead-lettering message {} after {attempts} attempt(s): {reason}",
            envelope_id(delivery)
        );
        // Recorded first, so that once the original is acked its status can
        // always be looked up; redone harmlessly if we crash before the ack.
        if let Some(id) = message_uuid(delivery) {
            self.record_dead_letter(DeadLetter {
                id,
                reason: reason.to_owned(),
                attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
                dead_lettered_at: Utc::now(),
            })
            .await?;
        }
        dead_letter::publish(
            &self.channel,
            &self.topology.dead_letter_exchange,
            delivery,
            reason,
            attempts,
            self.confirm_timeout,
        )
        .await?;
        ack(delivery, false).await?;
        self.stats.record_dead_lettered(kind);
        if let Some(id) = message_uuid(delivery) {
            let reason = reason.to_owned();
            self.announce(Event::DeadLettered { id, reason }).await;
        }
        Ok(())
    }
}

impl Worker {
    /// Publish a completion event, best effort: not persistent, not
    /// confirmed, errors only logged. Clients use it as a hint and read the
    /// database for the truth.
    async fn announce(&self, event: Event) {
        if matches!(&event, Event::Stored { ids } if ids.is_empty()) {
            return;
        }
        let Ok(body) = serde_json::to_vec(&event) else {
            return;
        };
        let sent = self
            .channel
            .basic_publish(
                self.topology.events_exchange.as_str().into(),
                "".into(),
                BasicPublishOptions {
                    mandatory: false, // no listening producer is fine
                    immediate: false,
                },
                &body,
                BasicProperties::default()
                    .with_delivery_mode(1) // transient: a notification, not data
                    .with_content_type("application/json".into()),
            )
            .await;
        if let Err(e) = sent {
            log::debug!("completion event not sent: {e}");
        }
    }

    /// Upsert the dead-letter record, waiting out database outages like an
    /// insert does. Any other failure is logged and skipped: the message
    /// itself is safe in `messages.dead` either way.
    async fn record_dead_letter(&self, record: DeadLetter) -> Result<(), WorkerError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let (pool, rec) = (self.pool.clone(), record.clone());
            let result = tokio::task::spawn_blocking(move || -> Result<(), DbError> {
                let mut conn = pool.get()?;
                Ok(shared::db::record_dead_letter(&mut conn, &rec)?)
            })
            .await?;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => {
                    let delay = backoff.next_delay();
                    log::warn!(
                        "cannot record dead letter {} ({e}); retrying in {delay:?}",
                        record.id
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    log::error!("cannot record dead letter {}: {e}", record.id);
                    return Ok(());
                }
            }
        }
    }
}

/// The message id as a UUID: the body's `"id"`, else the `message_id`
/// property (the same precedence as [`Envelope::decode`]).
fn message_uuid(delivery: &Delivery) -> Option<Uuid> {
    let from_body = serde_json::from_slice::<serde_json::Value>(&delivery.data)
        .ok()
        .and_then(|v| {
            v.get("id")?
                .as_str()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
        });
    from_body.or_else(|| {
        let id = delivery.properties.message_id().as_ref()?;
        Uuid::parse_str(id.as_str().trim()).ok()
    })
}

/// The message id for logs, from the AMQP property.
fn envelope_id(delivery: &Delivery) -> String {
    delivery
        .properties
        .message_id()
        .as_ref()
        .map_or_else(|| "<no id>".to_owned(), |id| id.to_string())
}

/// Insert in one transaction; the ids of the new rows, and how long the
/// transaction took (not counting the wait for a pooled connection).
fn insert(pool: &PgPool, envelopes: &[Envelope]) -> Result<(Vec<Uuid>, Duration), DbError> {
    let mut conn = pool.get()?;
    let rows: Vec<NewMessage<'_>> = envelopes.iter().map(NewMessage::from).collect();
    let started = Instant::now();
    let ids = shared::db::insert_new_messages(&mut conn, &rows)?;
    Ok((ids, started.elapsed()))
}

async fn ack(delivery: &Delivery, multiple: bool) -> Result<(), WorkerError> {
    let options = BasicAckOptions { multiple };
    match delivery.acker.ack(options).await {
        Ok(true) => Ok(()),
        // lapin skips the ack on a failed channel: it was not sent.
        Ok(false) => Err(WorkerError::Ack("channel no longer usable".into())),
        Err(e) => Err(WorkerError::Ack(e.to_string())),
    }
}
