//! Caps on long-lived requests: `GET /events` streams (`MAX_STREAMS`) and
//! `?wait` lookups (`MAX_WAITERS`). Each holds a connection, so a file
//! descriptor, for as long as it lasts; without a cap, enough idle ones
//! take every descriptor the process may open, and then nothing, not even
//! `/healthz`, can be accepted. Past its cap a request is refused at once
//! with a 503 and `Retry-After`, and its connection closed, rather than
//! queued: the defaults (see `config::long_lived_default`) keep half the
//! file limit for everything else.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// A fixed number of slots for one kind of long-lived request.
#[derive(Debug, Clone)]
pub struct Slots {
    what: &'static str,
    setting: &'static str,
    max: usize,
    free: Arc<Semaphore>,
}

/// A slot taken: given back when dropped (the stream ends, the lookup
/// answers, or the client goes away).
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Slots {
    /// `max` slots for `what` (`open event streams`), bounded by the
    /// setting named `setting` (for the error).
    pub fn new(what: &'static str, setting: &'static str, max: usize) -> Self {
        Self {
            what,
            setting,
            max,
            free: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot, or at once the 503 (with `retry_after` seconds) that says
    /// which cap is reached.
    pub fn take(&self, retry_after: u32) -> Result<Slot, ApiError> {
        self.free
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| ApiError::Busy {
                what: self.what,
                setting: self.setting,
                max: self.max,
                retry_after,
            })
    }

    /// Slots in use.
    pub fn in_use(&self) -> usize {
        self.max - self.free.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_slots_refuse_at_once_and_free_on_drop() {
        let slots = Slots::new("open event streams", "MAX_STREAMS", 2);
        let a = slots.take(1).unwrap();
        let _b = slots.take(1).unwrap();
        assert_eq!(slots.in_use(), 2);
        let refused = slots.take(3).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "too many open event streams at once (MAX_STREAMS=2); retry later"
        );
        assert!(matches!(refused, ApiError::Busy { retry_after: 3, .. }));
        drop(a);
        assert!(slots.take(1).is_ok());
    }
}
