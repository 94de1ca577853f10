//! The retrying client of the fault injectors (`faults`, `cluster`): one
//! attempt of `POST /messages` with an `Idempotency-Key`, sorted into what a
//! client must tell apart, and the wait between attempts. Each injector
//! keeps its own policy (what it retries, when it gives up, what it counts).

use std::time::{Duration, Instant};

use uuid::Uuid;

/// How one attempt ended.
pub enum Attempt {
    /// 202, with the id the producer gave, when the answer came, and
    /// whether it said `"status": "scheduled"` (held until its
    /// `deliver_at`).
    Accepted {
        id: Uuid,
        at: Instant,
        scheduled: bool,
    },
    /// 202 whose body did not arrive whole, or named no id: the outcome is
    /// known, the id is not (retrying with the same key gives it).
    AcceptedWithoutId,
    /// Any other status.
    Status(reqwest::StatusCode),
    /// No answer: connection refused or reset, or the client's timeout.
    Transport,
}

/// `POST {base}/messages` with `body` under `key`.
pub async fn post_message(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &serde_json::Value,
) -> Attempt {
    let response = client
        .post(format!("{base}/messages"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await;
    match response {
        Ok(r) if r.status() == 202 => {
            let at = Instant::now();
            let body = r.json::<serde_json::Value>().await.ok();
            let id = body
                .as_ref()
                .and_then(|b| b["id"].as_str().and_then(|s| s.parse().ok()));
            let scheduled = body.is_some_and(|b| b["status"] == "scheduled");
            match id {
                Some(id) => Attempt::Accepted { id, at, scheduled },
                None => Attempt::AcceptedWithoutId,
            }
        }
        Ok(r) => Attempt::Status(r.status()),
        Err(_) => Attempt::Transport,
    }
}

/// The wait before the next attempt: doubling from the first one, at most
/// a second, so a client keeps up with a service that comes back. No
/// jitter: a benchmark's clients should retry the same way every run.
pub struct Backoff {
    first: Duration,
    step: u32,
}

impl Backoff {
    /// Starting at `first`.
    pub fn new(first: Duration) -> Self {
        Self { first, step: 0 }
    }

    /// The wait to do now (the next one doubles).
    pub fn next_wait(&mut self) -> Duration {
        let now = self.peek();
        self.step = self.step.saturating_add(1);
        now
    }

    /// The wait `next_wait` would give, without moving on.
    pub fn peek(&self) -> Duration {
        shared::backoff::grow(self.first, 2, self.step, Duration::from_secs(1))
    }
}
