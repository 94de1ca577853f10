//! `?wait=S`: answer as soon as a message or batch is complete, or after S
//! seconds (at most 30). One loop for `GET /messages/{id}` and
//! `GET /batches/{id}`.
//!
//! Woken by the completion events (`publisher` relays them), but events are
//! best effort (transient, lost while reconnecting, never sent for a
//! redelivered duplicate): the database has the last word, so each wake-up
//! and the deadline end in a lookup.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::extract::bounded_number;
use crate::state::AppState;

/// The longest `?wait=`.
const MAX_WAIT_SECS: u64 = 30;

/// The query of a status lookup: `wait`, the seconds to wait.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    // A string, so that a non-number gets an error naming `wait`.
    wait: Option<String>,
}

impl WaitParams {
    /// The seconds asked for: 0 (no wait) to 30, else a 400.
    pub fn seconds(&self) -> Result<u64, ApiError> {
        bounded_number(self.wait.as_deref(), "wait (seconds)", 0, 0..=MAX_WAIT_SECS)
    }
}

/// `lookup()` the state of `id`; while `done` says it is not complete and
/// `wait_secs` have not passed, look again whenever an event mentions `id`.
/// Returns the last lookup.
pub async fn until_done<T, L, F>(
    state: &AppState,
    id: Uuid,
    wait_secs: u64,
    lookup: L,
    done: impl Fn(&T) -> bool,
) -> Result<T, ApiError>
where
    L: Fn() -> F,
    F: Future<Output = Result<T, ApiError>>,
{
    // Subscribe before looking, so an event between the look and the wait
    // is not missed.
    let mut events = state.publisher.subscribe();
    let mut found = lookup().await?;
    if done(&found) || wait_secs == 0 {
        return Ok(found);
    }
    // Only a lookup that will wait takes a slot (given back on return).
    let _slot = state.waiters.take(state.retry_after_secs)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            // Waited long enough: one last look (the event may be lost).
            Err(_) => return lookup().await,
            Ok(Ok(event)) if !event.mentions(&id) => continue,
            // Mentioned, lagged or closed: look again either way.
            Ok(_) => {}
        }
        found = lookup().await?;
        if done(&found) {
            return Ok(found);
        }
    }
}
