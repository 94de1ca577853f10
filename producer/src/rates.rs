//! Per-second counts over the last minutes, kept in memory: what the
//! dashboard charts as "accepted/s". The producer's accepted counter lives
//! only in this process (nothing about a 202 is in the database until the
//! consumer stores it), so its recent history has to be kept here.

use std::sync::Mutex;

/// Seconds of history kept: the dashboard charts the last five minutes and
/// asks for a little more. 600 slots of 16 bytes: 10 KB per window.
pub const HISTORY_SECS: usize = 600;

/// A ring of per-second counts. One short lock per record (never held
/// across an await); at the producer's ~8 000 requests/s that is noise.
pub struct RateWindow {
    slots: Mutex<Slots>,
}

struct Slots {
    /// The unix second each slot counts, so a stale slot reads as 0.
    second: [i64; HISTORY_SECS],
    count: [u64; HISTORY_SECS],
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            slots: Mutex::new(Slots {
                second: [i64::MIN; HISTORY_SECS],
                count: [0; HISTORY_SECS],
            }),
        }
    }
}

impl RateWindow {
    /// Add `n` to the count of unix second `second`.
    pub fn record(&self, second: i64, n: u64) {
        let slot = second.rem_euclid(HISTORY_SECS as i64) as usize;
        // A panic elsewhere cannot leave the counts half-written: each
        // update is two plain stores, so a poisoned lock is still usable.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.second[slot] != second {
            slots.second[slot] = second;
            slots.count[slot] = 0;
        }
        slots.count[slot] += n;
    }

    /// The counts of seconds `from..to` (0 for seconds not recorded or
    /// older than the history).
    pub fn counts(&self, from: i64, to: i64) -> Vec<u64> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        (from..to)
            .map(|second| {
                let slot = second.rem_euclid(HISTORY_SECS as i64) as usize;
                if slots.second[slot] == second {
                    slots.count[slot]
                } else {
                    0
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_second_and_forgets_old_seconds() {
        let w = RateWindow::default();
        w.record(1000, 2);
        w.record(1000, 3);
        w.record(1002, 1);
        assert_eq!(w.counts(999, 1003), vec![0, 5, 0, 1]);
        // The same slot, one lap later: the old count is gone.
        w.record(1000 + HISTORY_SECS as i64, 7);
        assert_eq!(w.counts(1000, 1001), vec![0]);
        assert_eq!(
            w.counts(1000 + HISTORY_SECS as i64, 1001 + HISTORY_SECS as i64),
            vec![7]
        );
    }
}
