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
//! claim and record, never across a request).
//!
//! Not an open proxy: a URL's address is checked again here (it may
//! resolve elsewhere than when the producer checked it): address literals
//! by [`shared::webhook::check_url`], names by the resolver reqwest
//! connects through ([`GuardedResolver`]), so the address checked is the
//! address connected to. Redirects are never followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::db::webhook_deliveries::{self, AttemptOutcome, Claimed};
use shared::db::PgPool;
use shared::webhook::{AllowedHosts, Signer};
use shared::{Backoff, ConfigError, Env};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::database::{Retry, Until};
use crate::metrics::Metrics;

/// Most deliveries claimed in one query.
const CLAIM_BATCH: usize = 32;

/// The webhook settings (all optional; delivery is off without a secret).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// `WEBHOOK_SECRET`: the signing key (`whsec_<base64>` or text). Unset:
    /// no delivery (owed notifications wait in the outbox).
    pub signer: Option<Signer>,
    /// `WEBHOOK_ALLOWED_HOSTS` (comma-separated): hosts that may be private
    /// or local.
    pub allowed_hosts: AllowedHosts,
    /// `WEBHOOK_TIMEOUT_MS` (default 10000): the longest one attempt takes,
    /// connecting and answering included.
    pub timeout: Duration,
    /// `WEBHOOK_CONCURRENCY` (default 16): attempts in flight per process.
    pub concurrency: usize,
    /// `WEBHOOK_MAX_ATTEMPTS` (default 12): attempts before `failed`.
    pub max_attempts: u32,
    /// `WEBHOOK_MAX_AGE_SECS` (default 86400): no retry is scheduled past
    /// this age (from when the notification was owed).
    pub max_age: Duration,
    /// `WEBHOOK_RETRY_BASE_MS` (default 5000): the first retry's delay;
    /// each further one doubles...
    pub retry_base: Duration,
    /// `WEBHOOK_RETRY_MAX_MS` (default 3600000): ...up to this.
    pub retry_max: Duration,
    /// `WEBHOOK_POLL_MS` (default 1000): how often an idle deliverer looks
    /// for due rows (other consumers' and retries); a commit that owes a
    /// notification wakes it at once.
    pub poll: Duration,
}

impl WebhookSettings {
    /// Read the settings from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let signer = env
            .raw("WEBHOOK_SECRET")?
            .map(|s| Signer::new(&s).map_err(|e| ConfigError::new("WEBHOOK_SECRET", e.to_string())))
            .transpose()?;
        Ok(Self {
            signer,
            allowed_hosts: AllowedHosts::parse(&env.string_or("WEBHOOK_ALLOWED_HOSTS", "")?),
            timeout: env.millis_or("WEBHOOK_TIMEOUT_MS", 10_000)?,
            concurrency: env.number_in("WEBHOOK_CONCURRENCY", 16, 1..=1024)?,
            max_attempts: env.number_in("WEBHOOK_MAX_ATTEMPTS", 12, 1..=100)?,
            max_age: Duration::from_secs(env.number_in(
                "WEBHOOK_MAX_AGE_SECS",
                86_400,
                1..=30 * 86_400,
            )?),
            retry_base: env.millis_or("WEBHOOK_RETRY_BASE_MS", 5_000)?,
            retry_max: env.millis_or("WEBHOOK_RETRY_MAX_MS", 3_600_000)?,
            poll: env.millis_or("WEBHOOK_POLL_MS", 1_000)?,
        })
    }

    /// The delay after failed attempt `attempt` (1-based): doubling, capped.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        shared::backoff::grow(
            self.retry_base,
            2,
            attempt.saturating_sub(1),
            self.retry_max,
        )
    }

    /// How long a claim holds a row: longer than an attempt can take, so
    /// that only a dead process lets it run out.
    fn lease(&self) -> Duration {
        self.timeout.saturating_mul(2) + Duration::from_secs(10)
    }
}

/// The deliverer of one consumer process.
pub struct Deliverer {
    pool: PgPool,
    settings: WebhookSettings,
    signer: Signer,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    owed: Arc<Notify>,
    permits: Arc<Semaphore>,
}

impl Deliverer {
    /// A deliverer, or `None` (logged) when `WEBHOOK_SECRET` is unset.
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        metrics: Arc<Metrics>,
        owed: Arc<Notify>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(signer) = settings.signer.clone() else {
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
        Ok(Some(Self {
            pool,
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            signer,
            client,
            metrics,
            owed,
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

    /// One attempt, and its outcome recorded.
    async fn attempt(&self, row: Claimed) {
        let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        // A URL refused by its form or address literal will never be
        // allowed: failed at once. (A name refused by what it resolves to
        // is retried: DNS answers change.)
        if let Err(e) = shared::webhook::check_url(&row.url, &self.settings.allowed_hosts) {
            self.metrics.webhooks_failed.inc();
            log::warn!("webhook {} to {} refused: {e}", row.id, row.url);
            let error = Some(e.to_string());
            let outcome = AttemptOutcome::Failed {
                status: None,
                error,
            };
            self.record(row.id, outcome).await;
            return;
        }
        let (status, error) = self.post(&row).await;
        let outcome = match (status, error) {
            (Some(s), _) if (200..300).contains(&s) => AttemptOutcome::Delivered { status: s },
            (Some(410), _) => AttemptOutcome::Failed {
                status: Some(410),
                error: Some("the receiver answered 410 Gone: not retried".into()),
            },
            (status, error) => {
                let delay = self.settings.retry_delay(attempt);
                let age = (Utc::now() - row.created_at).to_std().unwrap_or_default();
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
            AttemptOutcome::Retry {
                status,
                error,
                delay,
            } => {
                self.metrics.webhook_retries.inc();
                log::info!(
                    "webhook {} to {} attempt {attempt} failed ({}); retrying in {delay:?}",
                    row.id,
                    row.url,
                    describe(*status, error.as_deref())
                );
            }
            AttemptOutcome::Failed { status, error } => {
                self.metrics.webhooks_failed.inc();
                log::warn!(
                    "webhook {} to {} failed for good after {attempt} attempt(s): {}",
                    row.id,
                    row.url,
                    describe(*status, error.as_deref())
                );
            }
        }
        self.record(row.id, outcome).await;
    }

    /// POST the signed body: the answer's status, or why there was none.
    async fn post(&self, row: &Claimed) -> (Option<i32>, Option<String>) {
        let url = match shared::webhook::check_url(&row.url, &self.settings.allowed_hosts) {
            Ok(url) => url,
            Err(e) => return (None, Some(e.to_string())),
        };
        let id = row.id.to_string();
        let timestamp = Utc::now().timestamp();
        let signature = self.signer.sign(&id, timestamp, row.payload.as_bytes());
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
            Ok(res) => (Some(i32::from(res.status().as_u16())), None),
            Err(e) => (None, Some(error_chain(&e))),
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

fn describe(status: Option<i32>, error: Option<&str>) -> String {
    match (status, error) {
        (Some(s), _) => format!("HTTP {s}"),
        (None, Some(e)) => e.to_owned(),
        (None, None) => "no answer".into(),
    }
}

/// The error and its sources, for `last_error` (reqwest's own message is
/// often just "error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(500).collect()
}

/// The resolver every webhook connection goes through: it resolves and
/// drops the addresses a webhook may not reach, so the check and the
/// connection use the same lookup (no window for DNS rebinding).
struct GuardedResolver {
    allowed: AllowedHosts,
    timeout: Duration,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (allowed, timeout) = (self.allowed.clone(), self.timeout);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                shared::webhook::resolve_checked(name.as_str(), 0, &allowed, timeout).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_cap() {
        let env = Env::from_pairs([
            ("WEBHOOK_RETRY_BASE_MS", "100"),
            ("WEBHOOK_RETRY_MAX_MS", "500"),
        ]);
        let s = WebhookSettings::from_env(&env).unwrap();
        let delays: Vec<u128> = (1..=5).map(|a| s.retry_delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert!(s.signer.is_none());
    }
}
