//! After the load: waiting until the system has done all it owes (every
//! accepted message stored, the queues empty, every notification sent).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use shared::Topology;
use uuid::Uuid;

use crate::target::Target;

/// Wait (5 minutes at most) until `expected` rows are stored, the store
/// and retry queues are empty and (local) no scheduled message is left
/// undelivered; whether that happened. The messages sent with
/// `delay_seconds` are among the `expected`: the wait lasts until the last
/// of them has fallen due and been stored.
pub async fn wait_drained(
    target: &Target,
    client: &reqwest::Client,
    base: &str,
    content_prefix: &str,
    expected: usize,
    channel: &lapin::Channel,
    topology: &Topology,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let mut queued = 0;
        let mut queues = vec![topology.store_queue.clone()];
        queues.extend(
            topology
                .retry_delays
                .iter()
                .map(|d| topology.retry_queue(*d)),
        );
        for q in &queues {
            queued += e2e::broker::depth(channel, q).await.unwrap_or(1);
        }
        // Count rows only once the queues look empty: through the API
        // (compose) that means reading every page.
        if queued == 0
            && target.count(client, base, content_prefix).await >= expected
            && match target.scheduled().await {
                Ok(Some(s)) => s.pending == 0,
                Ok(None) => true,
                Err(_) => false,
            }
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// What the webhook receiver got.
pub struct Notifications {
    /// Messages sent with a callback that were never notified.
    pub unnotified: usize,
    /// Requests whose signature did not verify.
    pub bad_signatures: usize,
    /// Requests received.
    pub received: usize,
    /// Distinct webhook-ids among them.
    pub distinct: usize,
}

/// Wait (2 minutes at most) until every message of `owed` was notified
/// (answered 200); what the receiver got. Notifications go on while the
/// consumers live: call this before stopping them.
pub async fn wait_notified(
    receiver: &e2e::Receiver,
    secret: &str,
    owed: &HashSet<Uuid>,
) -> Notifications {
    eprintln!("waiting for {} notifications…", owed.len());
    let notified = |receiver: &e2e::Receiver| -> HashSet<Uuid> {
        receiver
            .received()
            .iter()
            .filter(|r| r.answered == 200)
            .filter_map(|r| r.json()["id"].as_str().and_then(|s| s.parse().ok()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && !owed.is_subset(&notified(receiver)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let received = receiver.received();
    let seen = notified(receiver);
    let webhook_ids: HashSet<&String> = received.iter().map(|r| &r.id).collect();
    // Each destination has a key of its own, derived from the master secret.
    let key = receiver.key(secret);
    Notifications {
        unnotified: owed.difference(&seen).count(),
        bad_signatures: received
            .iter()
            .filter(|r| !e2e::receiver::verify(&key, r))
            .count(),
        received: received.len(),
        distinct: webhook_ids.len(),
    }
}
