//! Counters of what the consumer did, for logs and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Running totals since the process started.
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    dead_lettered: AtomicU64,
    db_retries: AtomicU64,
    retries: AtomicU64,
    sessions: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Deliveries taken from the broker stream and handed to the worker.
    pub received: u64,
    /// Rows newly inserted.
    pub stored: u64,
    /// Deliveries whose id was already stored (redeliveries).
    pub duplicates: u64,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Insert attempts that failed transiently and were retried.
    pub db_retries: u64,
    /// Messages sent to a delay queue for another attempt.
    pub retries: u64,
    /// Broker sessions started (1 + reconnects).
    pub sessions: u64,
}

impl Stats {
    /// `n` deliveries taken from the stream.
    pub fn record_received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `inserted` of `delivered` messages were new rows.
    pub fn record_stored(&self, inserted: usize, delivered: usize) {
        self.stored.fetch_add(inserted as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(delivered.saturating_sub(inserted) as u64, Ordering::Relaxed);
    }

    /// One message dead-lettered.
    pub fn record_dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// One transient database failure.
    pub fn record_db_retry(&self) {
        self.db_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// One message scheduled for another attempt.
    pub fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// One broker session started.
    pub fn record_session(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Current totals.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.received.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            db_retries: self.db_retries.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }
}
