//! Delivering webhooks from the outbox (`webhook_deliveries`), as a task
//! inside each consumer process: `--scale consumer=N` scales it too.
//!
//! At least once: a notification is owed from the commit that wrote its
//! row. The task claims due rows with `FOR UPDATE SKIP LOCKED` and a lease
//! (a crash before the outcome is recorded makes the row due again when the
//! lease ends), POSTs the signed body, and records the outcome: a 2xx is
//! delivered; a 410 stops; anything else, a timeout or a refused connection
//! is retried with growing delays, until `WEBHOOK_MAX_ATTEMPTS` or
//! `WEBHOOK_MAX_AGE_SECS`. A semaphore of `WEBHOOK_CONCURRENCY` permits
//! bounds the attempts in flight, and each attempt is bounded by
//! `WEBHOOK_TIMEOUT_MS`: a slow receiver holds permits, never the storing
//! path, which shares nothing with this task but the pool (used only to
//! claim and record, never across a request). Within the permits, each
//! destination gets at most its share and is paused when it keeps failing
//! (`destinations`); a notification put off that way keeps its attempts.
//!
//! Not an open proxy: a URL's port and address are checked again here (it
//! may resolve elsewhere than when the producer checked it): address
//! literals by [`shared::webhook::check_url`], names by the resolver
//! reqwest connects through (`resolver`), so the address checked is the
//! address connected to. Redirects are never followed.
//!
//! What clients see of a failure is its category (`last_error`); the log
//! has the detail, and every URL in it is redacted to scheme, host, port
//! and path ([`shared::redact::callback_url`]).
//!
//! Files: `settings` (the `WEBHOOK_*` settings), `destinations`
//! (per-destination slots and circuit breaker), `resolver`, `classify`
//! (a failed request's category and detail). This file uses them all; they
//! use none of each other.

pub mod classify;
pub mod destinations;
pub mod resolver;
pub mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::db::webhook_deliveries::{self, AttemptOutcome, Claimed};
use shared::db::PgPool;
use shared::redact;
use shared::webhook::{Failure, Origin, SigningKeys};
use shared::Backoff;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::database::{Retry, Until};
use crate::metrics::Metrics;

use destinations::{Admission, Destinations, Limits};
use resolver::GuardedResolver;
pub use settings::WebhookSettings;

/// Most deliveries claimed in one query.
const CLAIM_BATCH: usize = 32;
/// How long a notification whose destination has all its slots in flight
/// is put off (short: a slot frees as soon as an attempt ends).
const BUSY_DELAY: Duration = Duration::from_secs(1);

/// The deliverer of one consumer process.
pub struct Deliverer {
    pool: PgPool,
    settings: WebhookSettings,
    keys: SigningKeys,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    owed: Arc<Notify>,
    permits: Arc<Semaphore>,
    destinations: Arc<Destinations>,
}

/// What one attempt got: the status of an answer, and the category of a
/// failure (`None` for a 2xx).
struct Attempted {
    status: Option<i32>,
    failure: Option<Failure>,
}

impl Deliverer {
    /// A deliverer, or `None` (logged) when `WEBHOOK_SECRET` is unset.
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        metrics: Arc<Metrics>,
        owed: Arc<Notify>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(keys) = settings.keys.clone() else {
            log::warn!("WEBHOOK_SECRET is not set: webhooks are not delivered by this consumer");
            return Ok(None);
        };
        let client = reqwest::Client::builder()
            // A redirect could point anywhere, past every check.
            .redirect(reqwest::redirect::Policy::none())
            // No HTTP(S)_PROXY from the environment: the address checked must
            // be the address connected to.
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: settings.allowed_hosts.clone(),
                timeout: settings.timeout,
            }))
            .user_agent("pipeline-webhooks/1")
            .build()?;
        let destinations = Destinations::new(
            Limits {
                per_destination: settings.per_destination,
                failures: settings.breaker_failures,
                pause: settings.breaker_pause,
                max_pause: settings.breaker_max_pause,
            },
            metrics.webhook_breaker_opened.clone(),
            metrics.webhook_destinations_paused.clone(),
        );
        Ok(Some(Self {
            pool,
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            keys,
            client,
            metrics,
            owed,
            destinations,
        }))
    }

    /// Deliver until `shutdown` turns true, then give the attempts in flight
    /// a few seconds to finish. Any still running are abandoned: their
    /// leases run out and another consumer sends them again.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut attempts = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Wait for one free permit before claiming, so nothing claimed
            // waits for a permit while its lease runs.
            let first = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match self.permits.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let claimed = self.claim(permits.len()).await;
            let found = !claimed.is_empty();
            for row in claimed {
                let Some(permit) = permits.pop() else { break };
                let me = self.clone();
                attempts.spawn(async move {
                    me.attempt(row).await;
                    drop(permit);
                });
            }
            drop(permits);
            // Reap finished attempts (the set stays bounded by the permits).
            while attempts.try_join_next().is_some() {}
            if !found {
                tokio::select! {
                    _ = self.owed.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
        let grace = self.settings.timeout.min(Duration::from_secs(5));
        let finish = async { while attempts.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, finish).await.is_err() {
            log::info!("webhook attempts still in flight at shutdown are left to their leases");
        }
    }

    /// Claim up to `n` due deliveries. One try: the loop claims again soon.
    async fn claim(&self, n: usize) -> Vec<Claimed> {
        let lease = self.settings.lease();
        let claimed = Retry::new(&self.pool, Until::Attempts(1))
            .run("cannot claim webhook deliveries", move |conn| {
                Ok(webhook_deliveries::claim_due(conn, n as i64, lease)?)
            })
            .await;
        claimed.unwrap_or_else(|e| {
            log::warn!("cannot claim webhook deliveries: {e}");
            Vec::new()
        })
    }

    /// One attempt (or its postponement), and its outcome recorded.
    async fn attempt(&self, row: Claimed) {
        let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        let shown = redact::callback_url(&row.url);
        // A URL refused by its form, port or address literal will never be
        // allowed: failed at once. (A name refused by what it resolves to
        // is retried: DNS answers change.)
        let url = match shared::webhook::check_url(&row.url, &self.settings.allowed_hosts) {
            Ok(url) => url,
            Err(e) => {
                self.metrics.webhooks_failed.inc();
                log::warn!("webhook {} to {shown} refused: {e} ({e:?})", row.id);
                let outcome = AttemptOutcome::Failed {
                    status: None,
                    error: Some(e.category().to_string()),
                };
                self.record(row.id, outcome).await;
                return;
            }
        };
        let age = (Utc::now() - row.created_at).to_std().unwrap_or_default();
        let attempted = match Origin::of(&url) {
            // `check_url` lets only http(s) URLs with a host through.
            Err(_) => Attempted {
                status: None,
                failure: Some(Failure::InvalidUrl),
            },
            Ok(origin) => match self.destinations.admit(&origin, Instant::now()) {
                Admission::Go(slot) => {
                    let attempted = self.post(&row, url, &origin, &shown).await;
                    slot.finish(attempted.failure);
                    attempted
                }
                Admission::Busy => {
                    self.postpone(&row, "busy", BUSY_DELAY).await;
                    return;
                }
                Admission::Paused(left) if age + left <= self.settings.max_age => {
                    self.postpone(&row, "paused", left).await;
                    return;
                }
                // Paused past its age: given up, not attempted.
                Admission::Paused(_) => Attempted {
                    status: None,
                    failure: Some(Failure::CircuitOpen),
                },
            },
        };
        let Attempted { status, failure } = attempted;
        let error = failure.map(|f| f.to_string());
        let outcome = match (status, failure) {
            (Some(s), None) => AttemptOutcome::Delivered { status: s },
            (Some(410), _) => AttemptOutcome::Failed {
                status: Some(410),
                error,
            },
            (status, Some(Failure::CircuitOpen)) => AttemptOutcome::Failed { status, error },
            (status, _) => {
                let delay = self.settings.retry_delay(attempt);
                if attempt >= self.settings.max_attempts || age + delay > self.settings.max_age {
                    AttemptOutcome::Failed { status, error }
                } else {
                    AttemptOutcome::Retry {
                        status,
                        error,
                        delay,
                    }
                }
            }
        };
        match &outcome {
            AttemptOutcome::Delivered { .. } => {
                self.metrics.webhooks_delivered.inc();
                let latency = (Utc::now() - row.created_at).to_std().unwrap_or_default();
                self.metrics
                    .webhook_latency_seconds
                    .observe(latency.as_secs_f64());
            }
            AttemptOutcome::Retry { delay, .. } => {
                self.metrics.webhook_retries.inc();
                log::info!(
                    "webhook {} to {shown} attempt {attempt} failed; retrying in {delay:?}",
                    row.id
                );
            }
            AttemptOutcome::Failed { status, .. } => {
                self.metrics.webhooks_failed.inc();
                let why = match status {
                    Some(410) => "the receiver answered 410 Gone, which is not retried",
                    _ if failure == Some(Failure::CircuitOpen) => {
                        "its destination stays paused past WEBHOOK_MAX_AGE_SECS"
                    }
                    _ => "out of attempts or time",
                };
                log::warn!(
                    "webhook {} to {shown} failed for good after {attempt} attempt(s): {why}",
                    row.id
                );
            }
            AttemptOutcome::Postponed { .. } => {}
        }
        self.record(row.id, outcome).await;
    }

    /// Put a claimed notification off without an attempt.
    async fn postpone(&self, row: &Claimed, reason: &str, delay: Duration) {
        self.metrics
            .webhook_deferred
            .with_label_values(&[reason])
            .inc();
        log::debug!(
            "webhook {} put off for {delay:?}: destination {reason}",
            row.id
        );
        self.record(row.id, AttemptOutcome::Postponed { delay })
            .await;
    }

    /// POST the signed body, with the keys of its destination; what came
    /// of it. Every failure is logged here with its detail (the URL
    /// redacted); what is returned is only its category.
    async fn post(
        &self,
        row: &Claimed,
        url: reqwest::Url,
        origin: &Origin,
        shown: &str,
    ) -> Attempted {
        let id = row.id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = self
            .keys
            .for_origin(origin)
            .sign(&id, timestamp, row.payload.as_bytes());
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(shared::webhook::ID_HEADER, &id)
            .header(shared::webhook::TIMESTAMP_HEADER, timestamp.to_string())
            .header(shared::webhook::SIGNATURE_HEADER, signature)
            .body(row.payload.clone())
            .send()
            .await;
        log::debug!("webhook {id} attempt took {:?}", started.elapsed());
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                let failure = Failure::of_status(status);
                if failure.is_some() {
                    log::info!("webhook {id} to {shown}: HTTP {status}");
                }
                Attempted {
                    status: Some(i32::from(status)),
                    failure,
                }
            }
            Err(e) => {
                let failure = classify::category(&e);
                log::info!(
                    "webhook {id} to {shown}: {failure}: {}",
                    classify::detail(e)
                );
                Attempted {
                    status: None,
                    failure: Some(failure),
                }
            }
        }
    }

    /// Record an outcome, retrying briefly; if it cannot be recorded the
    /// lease runs out and the notification is sent again (at least once).
    async fn record(&self, id: uuid::Uuid, outcome: AttemptOutcome) {
        let brief = Backoff::new(Duration::from_millis(500), Duration::from_millis(500));
        let recorded = Retry::with_backoff(&self.pool, Until::Attempts(3), brief)
            .run(format!("cannot record webhook {id}"), move |conn| {
                Ok(webhook_deliveries::record_attempt(conn, id, &outcome)?)
            })
            .await;
        if let Err(e) = recorded {
            log::warn!("cannot record webhook {id}: {e}; its lease will bring it back");
        }
    }
}
