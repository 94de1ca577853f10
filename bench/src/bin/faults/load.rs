//! What the run sends: the real messages (a client that retries until a
//! 202, with the same Idempotency-Key), a stream of malformed requests, and
//! poison straight to the exchange; and the counters of it all.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use bench::client::{post_message, Attempt, Backoff};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection as Amqp, ConnectionProperties};
use shared::Topology;
use uuid::Uuid;

/// Counters printed in the final table.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicUsize,
    pub accepted: AtomicUsize,
    pub retried: AtomicUsize,
    pub client_errors: AtomicUsize,
    pub unexpected: AtomicUsize,
    pub consumer_kills: AtomicUsize,
    pub rabbit_app_restarts: AtomicUsize,
    pub rabbit_hard_kills: AtomicUsize,
    pub pg_restarts: AtomicUsize,
    /// Messages sent with `delay_seconds` whose 202 did not say
    /// `scheduled` (each should be held until it falls due).
    pub not_held: AtomicUsize,
    /// Faults that started after the last message was accepted: they broke
    /// nothing in flight, so they prove nothing.
    pub faults_after_load: AtomicUsize,
}

impl Tally {
    /// The current value of one counter.
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }
}

/// What the client was told: the ids that got a 202 (with the content sent
/// under each), those of them that asked for a notification, and those
/// sent with `delay_seconds`.
pub struct Accepted {
    pub contents: HashMap<Uuid, String>,
    pub with_callback: HashSet<Uuid>,
    pub scheduled: HashSet<Uuid>,
}

/// The messages to send: `n` of them, paced over `duration` (as fast as
/// they go with zero), from 32 concurrent senders; every `callback_every`-th
/// names `hook_url` as its callback, when there is one; every
/// `scheduled_every`-th (none with 0; never one with a callback, unless
/// every message is scheduled) asks to be delivered `delay_secs` later.
pub struct Plan {
    pub n: usize,
    pub duration: Duration,
    pub callback_every: usize,
    pub hook_url: Option<String>,
    pub scheduled_every: usize,
    pub delay_secs: u64,
    /// The run's id: the Idempotency-Keys are `{run}-{i}`.
    pub run: String,
    /// Message i says `{content_prefix}{i}`.
    pub content_prefix: String,
}

/// Send every message of the plan until accepted; returns when all are.
pub async fn send_all(
    plan: Plan,
    client: &reqwest::Client,
    base: &str,
    tally: &Arc<Tally>,
    start: Instant,
) -> anyhow::Result<Accepted> {
    let accepted: Arc<Mutex<HashMap<Uuid, String>>> = Arc::default();
    let with_callback: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let scheduled: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let interval = plan.duration.div_f64(plan.n.max(1) as f64);
    let plan = Arc::new(plan);
    let mut senders = Vec::new();
    for _ in 0..32 {
        let (client, base, tally, accepted, with_callback, scheduled, next, plan) = (
            client.clone(),
            base.to_owned(),
            tally.clone(),
            accepted.clone(),
            with_callback.clone(),
            scheduled.clone(),
            next.clone(),
            plan.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.n {
                    return;
                }
                tokio::time::sleep_until((start + interval * i as u32).into()).await;
                let content = format!("{}{i}", plan.content_prefix);
                let callback = plan
                    .hook_url
                    .as_deref()
                    .filter(|_| i % plan.callback_every == 0);
                // Offset by half a period from the callbacks: a scheduled
                // message is judged by itself.
                let delay = (plan.scheduled_every > 0
                    && i % plan.scheduled_every == plan.scheduled_every / 2)
                    .then_some(plan.delay_secs);
                let key = format!("{}-{i}", plan.run);
                let mut body = serde_json::json!({ "content": content });
                if let Some(url) = callback {
                    body["callback_url"] = url.into();
                }
                if let Some(delay) = delay {
                    body["delay_seconds"] = delay.into();
                }
                if let Some((id, held)) = send_until_accepted(&client, &base, &key, &body, &tally).await
                {
                    if let Ok(mut map) = accepted.lock() {
                        map.insert(id, content);
                    }
                    if callback.is_some() {
                        if let Ok(mut set) = with_callback.lock() {
                            set.insert(id);
                        }
                    }
                    if delay.is_some() {
                        if !held {
                            eprintln!("{id} was sent with delay_seconds, but its 202 did not say scheduled");
                            tally.not_held.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Ok(mut set) = scheduled.lock() {
                            set.insert(id);
                        }
                    }
                }
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    let poisoned = || anyhow::anyhow!("a sender panicked holding the results");
    let contents = std::mem::take(&mut *accepted.lock().map_err(|_| poisoned())?);
    let with_callback = std::mem::take(&mut *with_callback.lock().map_err(|_| poisoned())?);
    let scheduled = std::mem::take(&mut *scheduled.lock().map_err(|_| poisoned())?);
    Ok(Accepted {
        contents,
        with_callback,
        scheduled,
    })
}

/// POST until a 202, retrying 503s, 408s and transport errors with the same
/// key; the id and whether the 202 said `scheduled`, or `None` for an answer
/// no retry can change.
async fn send_until_accepted(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &serde_json::Value,
    tally: &Tally,
) -> Option<(Uuid, bool)> {
    let mut backoff = Backoff::new(Duration::from_millis(50));
    for _ in 0..10_000 {
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match post_message(client, base, key, body).await {
            Attempt::Accepted { id, scheduled, .. } => {
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                return Some((id, scheduled));
            }
            Attempt::AcceptedWithoutId => return None,
            Attempt::Status(status) if status == 503 => {}
            // 408: the server gave up waiting for the request (RFC 9110 says
            // the client may repeat it); seen when the machine is starved
            // during container restarts. Retried with the same key, and
            // reported.
            Attempt::Status(status) if status == 408 => {
                eprintln!("408 for a valid message: retrying with the same key");
            }
            Attempt::Status(status) => {
                eprintln!("unexpected {status} for a valid message");
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Attempt::Transport => {} // connection refused/reset/timeout: retry
        }
        tally.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff.next_wait()).await;
    }
    None
}

/// Bad requests, about 20 a second, while `sending` holds.
pub async fn malformed_stream(
    client: reqwest::Client,
    base: String,
    tally: Arc<Tally>,
    sending: Arc<AtomicBool>,
) {
    let bodies: [(&str, &str); 4] = [
        ("application/json", "{\"content\": "),
        ("application/json", "{\"content\": \"\"}"),
        ("application/json", "{\"content\": \"a\\u0000b\"}"),
        ("text/plain", "{\"content\": \"x\"}"),
    ];
    let mut i = 0usize;
    while sending.load(Ordering::SeqCst) {
        let (ctype, body) = bodies[i % bodies.len()];
        i += 1;
        if let Ok(r) = client
            .post(format!("{base}/messages"))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
        {
            if r.status().is_client_error() {
                tally.client_errors.fetch_add(1, Ordering::Relaxed);
            } else {
                eprintln!("malformed request answered {}", r.status());
                tally.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publish `n` poison messages (not JSON, or a NUL in the content) to the
/// exchange, each confirmed; their message ids.
pub async fn publish_poison(
    amqp_url: &str,
    topology: &Topology,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let conn = Amqp::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4().to_string();
        let body: &[u8] = if i % 2 == 0 {
            b"\xff not json"
        } else {
            br#"{"content": "nul \u0000"}"#
        };
        let confirm = channel
            .basic_publish(
                topology.exchange.as_str().into(),
                "".into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_delivery_mode(2),
            )
            .await?
            .await?;
        if confirm != Confirmation::Ack(None) {
            bail!("poison publish not confirmed");
        }
        ids.push(id);
    }
    let _ = conn.close(200, "".into()).await;
    Ok(ids)
}
