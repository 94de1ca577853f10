//! Growing delays: [`grow`], the one formula (a base multiplied at each
//! step, capped), and [`Backoff`], its jittered form for reconnect and
//! retry loops.
//!
//! Jitter matters there: after a broker restart every consumer replica wakes
//! up at once, and without it they would all hammer the broker in lockstep.
//! Scheduled delays (the consumer's delay queues, webhook retries) use
//! [`grow`] without jitter: the delay queues are named after them.

use std::time::Duration;

/// Steps past this one grow no more (a million times the base with a
/// factor of 2): it keeps the multiplier within `u32`.
const MAX_STEP: u32 = 20;

/// The delay of step `step` (from 0): `base · factor^step`, at most `cap`.
pub fn grow(base: Duration, factor: u32, step: u32, cap: Duration) -> Duration {
    base.saturating_mul(factor.saturating_pow(step.min(MAX_STEP)))
        .min(cap)
}

/// Capped exponential backoff: `base`, `2·base`, `4·base`, … up to `cap`,
/// each delay scaled by a random factor in `[0.5, 1.0]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let capped = grow(self.base, 2, self.attempt, self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // fastrand (already used to shuffle the broker nodes) rather than
        // the clock: a clock of microsecond resolution has no nanoseconds
        // to spread replicas with.
        capped.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Start again from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d0 = b.next_delay();
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
        assert_eq!(b.attempts(), 32);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn the_formula_multiplies_and_caps() {
        let ms = Duration::from_millis;
        let steps: Vec<Duration> = (0..5).map(|s| grow(ms(1000), 4, s, ms(20_000))).collect();
        assert_eq!(
            steps,
            [ms(1000), ms(4000), ms(16_000), ms(20_000), ms(20_000)]
        );
        assert_eq!(grow(ms(1), 2, 1000, Duration::MAX), ms(1 << 20));
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(delays.len() > 1, "every replica would wait the same");
    }
}
