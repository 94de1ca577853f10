//! Storing one batch of deliveries. A delivery's path reads straight through:
//! decode → store → decide an outcome → settle it on the broker.
//!
//! Outcomes and what settling does:
//! * stored or duplicate → acked (one multiple-ack when the whole batch is);
//! * invalid (undecodable), rejected (the database refuses the row itself,
//!   SQLSTATE class 22 or 23) or given up (`MAX_ATTEMPTS` reached) →
//!   recorded in `dead_letters`, republished to the dead-letter exchange
//!   with its reason, confirmed, then acked;
//! * retry later (an unexplained failure while the database works) →
//!   republished to a delay queue, confirmed, then acked.
//!
//! A row with a callback or a batch owes its notification, and the batch
//! its completion, in the transaction that stores (or dead-letters) it
//! (`shared::db::messages`, `shared::db::dead_letters`); the deliverer
//! (`crate::webhooks`) is woken after the commit. Rows without either take
//! the plain multi-row insert.
//!
//! A database outage is never an outcome: storing waits it out with capped
//! backoff (`crate::database`), holding the deliveries unacked, for as long
//! as the channel that must ack them lives. An outage is a failure that is not about the row:
//! the connection is gone, the SQLSTATE class says so (08, 40, 53, 57, 58:
//! full disk, out of memory, too many connections, deadlock, timeout,
//! shutdown), or the whole batch, its first row and its last row all fail
//! with the same error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::PgConnection;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::{BasicProperties, Channel};
use shared::db::batches::Settled;
use shared::db::dead_letters::{self, DeadLetter};
use shared::db::messages::{self, StoreResult};
use shared::db::{DbError, FailureClass, PgPool, RowOutcome};
use shared::envelope::Extras;
use shared::events::{BatchStatus, Event};
use shared::kind::Kind;
use shared::publish::PublishError;
use shared::{Envelope, Topology};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::Settings;
use crate::database::{GaveUp, Retry, Until};
use crate::dead_letter;
use crate::metrics::DeadLetterReason;
use crate::outbound::Outbound;
use crate::stats::Stats;

/// Why a batch could not be settled. The session ends and its channels are
/// closed, so the broker requeues whatever was not acked.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Acking failed: nothing can be acked.
    #[error("the consuming channel is gone: {0}")]
    Ack(#[from] lapin::Error),
    /// lapin skipped the ack on a failed channel: it was not sent.
    #[error("the consuming channel is gone: ack not sent")]
    AckNotSent,
    /// The consuming channel died while the database was down.
    #[error("the consuming channel is gone: closed while waiting for the database")]
    ClosedWhileWaiting,
    /// A dead letter or retry could not be published.
    #[error("republishing failed: {0}")]
    Publish(#[from] PublishError),
    /// The blocking database task died (the only failure not waited out).
    #[error("{0}")]
    Database(DbError),
}

impl From<GaveUp> for WorkerError {
    fn from(gave_up: GaveUp) -> Self {
        match gave_up {
            GaveUp::ChannelClosed => WorkerError::ClosedWhileWaiting,
            GaveUp::Failed(e) => WorkerError::Database(e),
        }
    }
}

/// What becomes of one delivery.
#[derive(Debug)]
enum Outcome {
    /// A new row.
    Stored,
    /// Already stored (a redelivery).
    Duplicate,
    /// Dead-letter it.
    DeadLetter {
        reason: DeadLetterReason,
        detail: String,
        attempt: u32,
    },
    /// Send it to a delay queue for another attempt.
    RetryLater { detail: String, attempt: u32 },
}

/// What storing did with one decoded row.
#[derive(Debug, Clone)]
enum Stored {
    New,
    Duplicate,
    /// The database refuses the row itself.
    Rejected(String),
    /// It failed for an unexplained reason while the database works.
    Failed(String),
}

/// Stores batches for one channel. Batches must be processed one at a
/// time, in delivery order: the multiple-ack relies on every earlier
/// delivery of the channel being settled already.
pub struct Worker {
    /// The consuming channel: acks only, never a publish.
    pub channel: Channel,
    /// The publishing connection (dead letters, retries, events).
    pub outbound: Arc<Outbound>,
    /// The database pool.
    pub pool: PgPool,
    /// Where dead letters and events go.
    pub topology: Topology,
    /// Longest wait for a publish's confirm.
    pub publish_timeout: Duration,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Retry policy (`MAX_ATTEMPTS`, delays).
    pub settings: Settings,
    /// Woken after a commit that owed webhook notifications.
    pub owed: Arc<Notify>,
    /// The kind whose queue this worker's channel consumes: every message
    /// it stores is of that kind. `None`: the queue of messages for kinds
    /// that are not configured, each dead-lettered as `unknown_kind`.
    pub kind: Option<Kind>,
}

impl Worker {
    /// Settle every delivery of `batch`. Returns only when all are settled
    /// (it waits out database outages), or with an error when the channel
    /// or a republish failed.
    pub async fn process(&self, batch: Vec<Delivery>) -> Result<(), WorkerError> {
        self.stats.record_received(batch.len());
        let Some(kind) = &self.kind else {
            return self.unknown_kind(batch).await;
        };

        // Decode.
        let mut envelopes = Vec::with_capacity(batch.len());
        let mut decoded = Vec::with_capacity(batch.len());
        // Ids without a created_at of their own: looked up by id before
        // storing (see `messages::store_checked`). Our producer dates every
        // message, so this is empty but for other publishers.
        let mut undated = HashSet::new();
        for delivery in &batch {
            match Envelope::decode_dated(&delivery.data, &delivery.properties) {
                Ok((mut envelope, dated)) => {
                    if !dated {
                        undated.insert(envelope.id);
                    }
                    // The queue decides: whatever the body says, a message
                    // taken from a kind's queue is of that kind.
                    if envelope.kind != *kind {
                        envelope.kind = kind.clone();
                    }
                    envelopes.push(envelope);
                    decoded.push(Ok(envelopes.len() - 1));
                }
                Err(reason) => decoded.push(Err(format!("invalid message: {reason}"))),
            }
        }

        // Store.
        let envelopes: Arc<[Envelope]> = envelopes.into();
        let (stored, committed) = self.store(&envelopes, Arc::new(undated)).await?;
        let new_ids: Vec<Uuid> = envelopes
            .iter()
            .zip(&stored)
            .filter(|(_, s)| matches!(s, Stored::New))
            .map(|(e, _)| e.id)
            .collect();
        // Counted at commit: the rows are stored even if an ack below fails
        // (the redelivery then counts as duplicates).
        if stored
            .iter()
            .all(|s| matches!(s, Stored::New | Stored::Duplicate))
        {
            self.stats
                .record_stored(kind, &envelopes, &new_ids, Utc::now());
        } else {
            let committed: Vec<Envelope> = envelopes
                .iter()
                .zip(&stored)
                .filter(|(_, s)| matches!(s, Stored::New | Stored::Duplicate))
                .map(|(e, _)| e.clone())
                .collect();
            self.stats
                .record_stored(kind, &committed, &new_ids, Utc::now());
        }
        self.announce(Event::Stored {
            ids: new_ids,
            kind: Some(kind.as_str().to_owned()),
        })
        .await;
        self.after_commit(committed.completed, committed.owed).await;

        // Decide.
        let outcomes: Vec<Outcome> = batch
            .iter()
            .zip(decoded)
            .map(|(delivery, decoded)| match decoded {
                Err(detail) => Outcome::DeadLetter {
                    reason: DeadLetterReason::Invalid,
                    detail,
                    attempt: attempt_of(delivery),
                },
                Ok(i) => self.decide(stored[i].clone(), delivery),
            })
            .collect();

        // Settle.
        if outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Stored | Outcome::Duplicate))
        {
            // One multiple-ack: safe because batches are settled in order,
            // so every earlier tag on this channel is already acked.
            if let Some(last) = batch.last() {
                ack(last, true).await?;
            }
        } else {
            for (delivery, outcome) in batch.iter().zip(outcomes) {
                self.settle(delivery, outcome).await?;
            }
        }
        self.stats.record_settled();
        Ok(())
    }

    /// Dead-letter every delivery of `batch` as `unknown_kind`: they were
    /// published to the route exchange for a kind no queue is bound for.
    async fn unknown_kind(&self, batch: Vec<Delivery>) -> Result<(), WorkerError> {
        for delivery in &batch {
            let detail = format!(
                "kind {:?} is not configured (configured kinds: {})",
                delivery.routing_key.as_str(),
                self.topology.kinds.names()
            );
            self.dead_letter(
                delivery,
                DeadLetterReason::UnknownKind,
                &detail,
                attempt_of(delivery),
            )
            .await?;
        }
        self.stats.record_settled();
        Ok(())
    }

    /// The kind a dead letter of `delivery` records: this worker's, or for
    /// an unknown kind the routing key it was published with (if it is a
    /// kind name), so that a redrive after the kind is configured finds its
    /// queue.
    fn kind_of(&self, delivery: &Delivery) -> Kind {
        match &self.kind {
            Some(kind) => kind.clone(),
            None => Kind::parse(delivery.routing_key.as_str()).unwrap_or_default(),
        }
    }

    fn decide(&self, stored: Stored, delivery: &Delivery) -> Outcome {
        match stored {
            Stored::New => Outcome::Stored,
            Stored::Duplicate => Outcome::Duplicate,
            Stored::Rejected(detail) => Outcome::DeadLetter {
                reason: DeadLetterReason::Rejected,
                detail: format!("database rejected the message: {detail}"),
                attempt: attempt_of(delivery),
            },
            Stored::Failed(detail) => {
                let attempt = attempt_of(delivery);
                if attempt >= self.settings.max_attempts {
                    Outcome::DeadLetter {
                        reason: DeadLetterReason::MaxAttempts,
                        detail: format!("storing failed {attempt} times: {detail}"),
                        attempt,
                    }
                } else {
                    Outcome::RetryLater { detail, attempt }
                }
            }
        }
    }

    async fn settle(&self, delivery: &Delivery, outcome: Outcome) -> Result<(), WorkerError> {
        match outcome {
            Outcome::Stored | Outcome::Duplicate => ack(delivery, false).await,
            Outcome::DeadLetter {
                reason,
                detail,
                attempt,
            } => self.dead_letter(delivery, reason, &detail, attempt).await,
            Outcome::RetryLater { detail, attempt } => {
                let delay = self.settings.retry_delay(attempt);
                log::warn!(
                    "message {} failed attempt {attempt}/{} ({detail}); retrying in {delay:?}",
                    log_id(&delivery.properties),
                    self.settings.max_attempts
                );
                self.check_not_blocked()?;
                // Back to this kind's queue when the delay has passed.
                let kind = self.kind_of(delivery);
                dead_letter::schedule_retry(
                    &self.outbound.confirms,
                    &self.topology.retry_queue_of(&kind, delay),
                    delivery,
                    &detail,
                    attempt,
                    self.publish_timeout,
                )
                .await?;
                ack(delivery, false).await?;
                self.stats.record_retry();
                Ok(())
            }
        }
    }

    /// Announce the batches a commit completed, and wake the deliverer if
    /// it owed notifications.
    async fn after_commit(&self, completed: Vec<BatchStatus>, owed: bool) {
        if owed {
            self.owed.notify_one();
        }
        for batch in completed {
            log::info!("batch {} {}", batch.id, batch.status);
            self.announce(Event::from(&batch)).await;
        }
    }

    /// Store `envelopes`; one result each, and what else was committed.
    /// Waits out outages. Shared with the blocking tasks, never copied but
    /// for the rare retry of some rows only.
    async fn store(
        &self,
        envelopes: &Arc<[Envelope]>,
        undated: Arc<HashSet<Uuid>>,
    ) -> Result<(Vec<Stored>, Settled), WorkerError> {
        let mut committed = Settled::default();
        let mut results: Vec<Option<Stored>> = vec![None; envelopes.len()];
        let stats = &*self.stats;
        let count = || stats.record_db_retry();
        let mut retry = Retry::new(&self.pool, Until::ChannelOpen(&self.channel)).counting(&count);
        loop {
            let pending: Vec<usize> = (0..envelopes.len())
                .filter(|i| results[*i].is_none())
                .collect();
            if pending.is_empty() {
                if retry.waited() {
                    log::info!("database is back; stored the waiting messages");
                }
                return Ok((results.into_iter().flatten().collect(), committed));
            }
            let rows: Arc<[Envelope]> = if pending.len() == envelopes.len() {
                envelopes.clone()
            } else {
                // Some rows are settled already: try the others (rare).
                pending.iter().map(|i| envelopes[*i].clone()).collect()
            };
            let timings = self.stats.clone();
            let undated = undated.clone();
            let attempt = retry
                .attempt(move |conn| store_blocking(conn, &timings, &rows, &undated))
                .await;
            let why = match attempt {
                Ok(Some((stored, result))) => {
                    committed.absorb(Settled {
                        completed: result.completed,
                        owed: result.owed,
                    });
                    for (i, s) in pending.iter().zip(stored) {
                        results[*i] = s;
                    }
                    // Rows left unresolved failed transiently: wait, then
                    // try those again.
                    if results.iter().all(Option::is_some) {
                        continue;
                    }
                    "rows failed transiently".to_owned()
                }
                Ok(None) => "the whole batch, its first and last rows fail alike".to_owned(),
                Err(e @ DbError::Task(_)) => return Err(WorkerError::Database(e)),
                Err(e) => e.to_string(),
            };
            retry
                .wait(format!("database unavailable ({why}); holding messages"))
                .await?;
        }
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        reason: DeadLetterReason,
        detail: &str,
        attempts: u32,
    ) -> Result<(), WorkerError> {
        let category = reason.category();
        log::warn!(
            "dead-lettering message {} ({category}) after {attempts} attempt(s): {detail}",
            log_id(&delivery.properties)
        );
        let id = shared::dead_letter::message_uuid(&delivery.data, &delivery.properties);
        let kind = self.kind_of(delivery);
        // Recorded first, so that once the original is acked its status can
        // always be looked up; redone harmlessly if we crash before the ack.
        let mut settled = Settled::default();
        let mut event = None;
        if let Some(id) = id {
            let extras = Extras::peek(&delivery.data);
            let record = DeadLetter {
                id,
                reason: category.as_str().to_owned(),
                attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
                dead_lettered_at: Utc::now(),
                batch_id: extras.batch.as_ref().map(|b| b.id),
                kind: kind.as_str().to_owned(),
            };
            event = Some(Event::from(&record.status()));
            settled = self.record_dead_letter(record, extras).await?;
            if settled.owed {
                self.owed.notify_one();
            }
        }
        self.check_not_blocked()?;
        dead_letter::publish(
            &self.outbound.confirms,
            &self.topology.dead_letter_exchange,
            delivery,
            dead_letter::Why {
                kind: &kind,
                category,
                reason: detail,
                attempts,
            },
            self.publish_timeout,
        )
        .await?;
        ack(delivery, false).await?;
        self.stats.record_dead_lettered(reason);
        if let Some(event) = event {
            self.announce(event).await;
        }
        // Announced after the ack, like the dead letter itself.
        self.after_commit(settled.completed, false).await;
        Ok(())
    }

    /// A blocked publishing connection would only time out: fail at once,
    /// so the session hands the message back and backs off.
    fn check_not_blocked(&self) -> Result<(), WorkerError> {
        if self.outbound.is_blocked() {
            return Err(PublishError::Blocked.into());
        }
        Ok(())
    }

    /// Publish a completion event, best effort: transient, unconfirmed,
    /// skipped while the broker blocks publishing, errors only logged.
    /// Clients use it as a hint and read the database for the truth.
    async fn announce(&self, event: Event) {
        if matches!(&event, Event::Stored { ids, .. } if ids.is_empty()) {
            return;
        }
        let Ok(body) = serde_json::to_vec(&event) else {
            return;
        };
        let sent = shared::publish::best_effort(
            &self.outbound.connection,
            &self.outbound.events,
            &self.topology.events_exchange,
            &body,
            BasicProperties::default()
                .with_delivery_mode(1) // transient: a notification, not data
                .with_content_type("application/json".into()),
            self.publish_timeout,
        )
        .await;
        if let Err(e) = sent {
            log::debug!("completion event not sent: {e}");
        }
    }

    /// Upsert the dead-letter record (owing its notification and completing
    /// its batch in the same transaction), holding on any failure: a message
    /// must not sit in `messages.dead` while its status says `not_found`.
    async fn record_dead_letter(
        &self,
        record: DeadLetter,
        extras: Extras,
    ) -> Result<Settled, WorkerError> {
        let stats = &*self.stats;
        let count = || stats.record_db_retry();
        let what = format!(
            "database unavailable (cannot record dead letter {})",
            record.id
        );
        let settled = Retry::new(&self.pool, Until::ChannelOpen(&self.channel))
            .counting(&count)
            .run(what, move |conn| {
                Ok(dead_letters::record(conn, &record, &extras, true)?)
            })
            .await?;
        Ok(settled)
    }
}

/// One attempt's results: one per row (`None` for a row that failed
/// transiently), and what else was committed.
type StoreAttempt = (Vec<Option<Stored>>, StoreResult);

/// The blocking part of [`Worker::store`]: the batch insert, and on a
/// failure that is not plainly transient, the rows one by one. `Ok(None)`:
/// the failure looks like an outage; `Err`: the database is unavailable.
fn store_blocking(
    conn: &mut PgConnection,
    stats: &Stats,
    rows: &[Envelope],
    undated: &HashSet<Uuid>,
) -> Result<Option<StoreAttempt>, DbError> {
    let started = Instant::now();
    let batch_error = match messages::store_checked(conn, rows, undated) {
        Ok(mut result) => {
            stats.record_insert(started.elapsed());
            let new_ids: HashSet<Uuid> = std::mem::take(&mut result.new_ids).into_iter().collect();
            let results = rows
                .iter()
                .map(|r| {
                    Some(if new_ids.contains(&r.id) {
                        Stored::New
                    } else {
                        Stored::Duplicate
                    })
                })
                .collect();
            return Ok(Some((results, result)));
        }
        Err(e) => DbError::Query(e),
    };
    if batch_error.is_transient() {
        return Err(batch_error);
    }
    // Row by row, through the function that reports SQLSTATEs.
    let (outcomes, result) = messages::try_store_each(conn, rows, undated)?;
    Ok(classify(&batch_error.message(), outcomes).map(|stored| (stored, result)))
}

/// Turn the row-by-row outcomes of a failed batch into results, or `None`
/// when the failure looks like the database's, not the rows': the batch,
/// its first row and its last row (two rows at least) fail with one error.
fn classify(batch_message: &str, outcomes: Vec<RowOutcome>) -> Option<Vec<Option<Stored>>> {
    let same = |o: &RowOutcome| {
        matches!(o, RowOutcome::Failed { sqlstate, message }
        if message == batch_message
            && FailureClass::of_sqlstate(sqlstate) == FailureClass::Unknown)
    };
    if outcomes.len() >= 2
        && outcomes.first().is_some_and(same)
        && outcomes.last().is_some_and(same)
    {
        return None;
    }
    Some(
        outcomes
            .into_iter()
            .map(|outcome| match outcome {
                RowOutcome::Inserted => Some(Stored::New),
                RowOutcome::Duplicate => Some(Stored::Duplicate),
                RowOutcome::Failed { sqlstate, message } => {
                    let detail = format!("{message} (SQLSTATE {sqlstate})");
                    match FailureClass::of_sqlstate(&sqlstate) {
                        FailureClass::Transient => {
                            log::warn!("row failed transiently: {detail}");
                            None
                        }
                        FailureClass::Rejection => Some(Stored::Rejected(detail)),
                        FailureClass::Unknown => Some(Stored::Failed(detail)),
                    }
                }
            })
            .collect(),
    )
}

/// The message id for logs, from the AMQP property.
fn log_id(properties: &BasicProperties) -> String {
    properties
        .message_id()
        .as_ref()
        .map_or_else(|| "<no id>".to_owned(), |id| id.to_string())
}

/// The attempt a delivery is at: one more than its headers say were made
/// (read only when the outcome needs it, never for a stored message).
fn attempt_of(delivery: &Delivery) -> u32 {
    shared::dead_letter::attempts(delivery.properties.headers().as_ref()).unwrap_or(0) + 1
}

async fn ack(delivery: &Delivery, multiple: bool) -> Result<(), WorkerError> {
    let options = BasicAckOptions { multiple };
    match delivery.acker.ack(options).await? {
        true => Ok(()),
        // lapin skips the ack on a failed channel: it was not sent.
        false => Err(WorkerError::AckNotSent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(sqlstate: &str, message: &str) -> RowOutcome {
        RowOutcome::Failed {
            sqlstate: sqlstate.into(),
            message: message.into(),
        }
    }

    #[test]
    fn an_outage_is_not_poison() {
        // Every row failing like the batch: the database's problem.
        assert!(classify(
            "boom",
            vec![failed("P0001", "boom"), failed("P0001", "boom")]
        )
        .is_none());
        // One poison row among good ones.
        let r = classify("boom", vec![failed("P0001", "boom"), RowOutcome::Inserted]).unwrap();
        assert!(matches!(r[0], Some(Stored::Failed(_))));
        assert!(matches!(r[1], Some(Stored::New)));
        // A single row cannot tell: retried through the delay queues.
        assert!(classify("boom", vec![failed("P0001", "boom")]).is_some());
        // By SQLSTATE class: a full disk is transient, a constraint is not.
        let r = classify(
            "x",
            vec![failed("53100", "disk full"), failed("23514", "check")],
        )
        .unwrap();
        assert!(r[0].is_none());
        assert!(matches!(r[1], Some(Stored::Rejected(_))));
    }
}
