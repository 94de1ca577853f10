//! Per-destination limits of one consumer's deliverer: at most
//! `WEBHOOK_CONCURRENCY_PER_DESTINATION` attempts in flight to one origin,
//! and a circuit breaker per origin.
//!
//! Why: the global permits (`WEBHOOK_CONCURRENCY`) bound the attempts in
//! flight, but without a share per destination one slow or dead receiver
//! takes every permit, and everyone's notifications wait for its timeouts.
//! A destination that fails `WEBHOOK_BREAKER_FAILURES` times in a row (no
//! answer, or a 5xx) is paused: its notifications are put off, without
//! spending their attempts, until the pause ends; then one trial attempt
//! goes through (half-open). Its success closes the breaker; its failure
//! pauses the destination again, twice as long (up to
//! `WEBHOOK_BREAKER_MAX_PAUSE_MS`).
//!
//! The map is bounded: a destination leaves it as soon as it has nothing in
//! flight and nothing to remember (no failures, not paused), and past
//! [`MAX_TRACKED`] the longest-idle destination with nothing in flight is
//! forgotten (it then starts again closed). The lock is never held across
//! an `.await`: every method takes and releases it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use shared::webhook::{Failure, Origin};

/// Most destinations remembered at once.
pub const MAX_TRACKED: usize = 10_000;

/// The breaker's settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attempts in flight per destination.
    pub per_destination: usize,
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// The first pause.
    pub pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Failures in a row while closed.
    failures: u32,
    /// Pauses in a row (the next pause doubles with each).
    pauses: u32,
    /// Open until then; past it, half-open.
    paused_until: Option<Instant>,
    /// The half-open trial is in flight.
    trial: bool,
    last_used: Instant,
}

impl State {
    fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            failures: 0,
            pauses: 0,
            paused_until: None,
            trial: false,
            last_used: now,
        }
    }

    /// Nothing in flight and nothing to remember.
    fn forgettable(&self) -> bool {
        self.in_flight == 0 && self.failures == 0 && self.paused_until.is_none()
    }
}

/// What a claimed notification may do now.
#[derive(Debug)]
pub enum Admission {
    /// Attempt it, holding this slot until the outcome is known.
    Go(Slot),
    /// The destination has all its slots in flight: put it off briefly.
    Busy,
    /// The destination is paused for this long yet: put it off as long.
    Paused(Duration),
}

/// The per-destination state of one deliverer.
pub struct Destinations {
    limits: Limits,
    map: Mutex<HashMap<Origin, State>>,
    opened: IntCounter,
    paused_gauge: IntGauge,
}

impl Destinations {
    /// No destination known yet.
    pub fn new(limits: Limits, opened: IntCounter, paused_gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            limits,
            map: Mutex::new(HashMap::new()),
            opened,
            paused_gauge,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Origin, State>> {
        // A panic while holding the lock leaves counts that are still
        // usable: carry on with them.
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// May a notification to `origin` be attempted now?
    pub fn admit(self: &Arc<Self>, origin: &Origin, now: Instant) -> Admission {
        let mut map = self.lock();
        if !map.contains_key(origin) && map.len() >= MAX_TRACKED {
            evict(&mut map);
        }
        let state = map.entry(origin.clone()).or_insert_with(|| State::new(now));
        state.last_used = now;
        if let Some(until) = state.paused_until {
            if now < until {
                return Admission::Paused(until - now);
            }
            // Half-open: one trial at a time decides.
            if state.trial || state.in_flight > 0 {
                return Admission::Busy;
            }
            state.trial = true;
        } else if state.in_flight >= self.limits.per_destination {
            return Admission::Busy;
        }
        state.in_flight += 1;
        Admission::Go(Slot {
            destinations: self.clone(),
            origin: origin.clone(),
            done: false,
        })
    }

    /// Record what became of an attempt and free its slot. `failure` is
    /// `None` for a 2xx.
    fn finish(&self, origin: &Origin, failure: Option<Failure>, now: Instant) {
        let mut map = self.lock();
        let Some(state) = map.get_mut(origin) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        let was_trial = std::mem::take(&mut state.trial);
        match failure {
            // An attempt begun before the pause that fails after it
            // began says nothing new: the trial decides.
            Some(f) if f.is_destination_down() && state.paused_until.is_some() && !was_trial => {}
            Some(f) if f.is_destination_down() => {
                state.failures += 1;
                if was_trial || state.failures >= self.limits.failures {
                    let pause = shared::backoff::grow(
                        self.limits.pause,
                        2,
                        state.pauses,
                        self.limits.max_pause,
                    );
                    state.paused_until = Some(now + pause);
                    state.pauses = state.pauses.saturating_add(1);
                    state.failures = 0;
                    self.opened.inc();
                    log::warn!(
                        "webhook destination {origin} paused for {pause:?}: it keeps failing ({f})"
                    );
                }
            }
            // An answer (even a 4xx) says the destination is up.
            _ => {
                state.failures = 0;
                if state.paused_until.is_some() && was_trial {
                    log::info!("webhook destination {origin} answers again: resumed");
                    state.paused_until = None;
                    state.pauses = 0;
                }
            }
        }
        if state.forgettable() {
            map.remove(origin);
        }
        self.update_gauge(&map);
    }

    /// A slot given back without an outcome (the attempt was abandoned).
    fn release(&self, origin: &Origin) {
        let mut map = self.lock();
        if let Some(state) = map.get_mut(origin) {
            state.in_flight = state.in_flight.saturating_sub(1);
            state.trial = false;
            if state.forgettable() {
                map.remove(origin);
            }
        }
    }

    fn update_gauge(&self, map: &HashMap<Origin, State>) {
        let paused = map.values().filter(|s| s.paused_until.is_some()).count();
        self.paused_gauge
            .set(i64::try_from(paused).unwrap_or(i64::MAX));
    }

    /// How many destinations are remembered (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Forget the longest-idle destination with nothing in flight. (With
/// nothing forgettable, every one has an attempt in flight, and those are
/// bounded by the permits, far below [`MAX_TRACKED`].)
fn evict(map: &mut HashMap<Origin, State>) {
    let oldest = map
        .iter()
        .filter(|(_, s)| s.in_flight == 0)
        .min_by_key(|(_, s)| s.last_used)
        .map(|(o, _)| o.clone());
    if let Some(origin) = oldest {
        map.remove(&origin);
    }
}

/// An attempt's hold on its destination; give it back with
/// [`Slot::finish`] (dropped without it, the slot is freed, nothing
/// recorded).
#[derive(Debug)]
pub struct Slot {
    destinations: Arc<Destinations>,
    origin: Origin,
    done: bool,
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destinations")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// Record the attempt's outcome (`None`: a 2xx) and free the slot.
    pub fn finish(mut self, failure: Option<Failure>) {
        self.done = true;
        self.destinations
            .finish(&self.origin, failure, Instant::now());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.done {
            self.destinations.release(&self.origin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destinations(per_destination: usize, failures: u32) -> Arc<Destinations> {
        Destinations::new(
            Limits {
                per_destination,
                failures,
                pause: Duration::from_secs(10),
                max_pause: Duration::from_secs(25),
            },
            IntCounter::new("opened", "test").unwrap(),
            IntGauge::new("paused", "test").unwrap(),
        )
    }

    fn origin(n: u32) -> Origin {
        Origin::parse(&format!("http://127.0.0.1:{}", 1000 + n)).unwrap()
    }

    fn go(a: Admission) -> Slot {
        match a {
            Admission::Go(slot) => slot,
            other => panic!("expected Go, got {other:?}"),
        }
    }

    #[test]
    fn each_destination_has_its_own_slots() {
        let d = destinations(2, 5);
        let now = Instant::now();
        let a1 = go(d.admit(&origin(1), now));
        let _a2 = go(d.admit(&origin(1), now));
        assert!(matches!(d.admit(&origin(1), now), Admission::Busy));
        let _b = go(d.admit(&origin(2), now));
        a1.finish(None);
        let _a3 = go(d.admit(&origin(1), now));
    }

    #[test]
    fn failures_in_a_row_pause_then_a_trial_decides() {
        let d = destinations(4, 3);
        let a = origin(1);
        let t0 = Instant::now();
        // Two failures, a success: the count starts again.
        go(d.admit(&a, t0)).finish(Some(Failure::Timeout));
        go(d.admit(&a, t0)).finish(Some(Failure::Http5xx));
        go(d.admit(&a, t0)).finish(Some(Failure::Http4xx));
        for _ in 0..2 {
            go(d.admit(&a, t0)).finish(Some(Failure::Refused));
        }
        assert_eq!(d.opened.get(), 0);
        d.finish_slot_at(go(d.admit(&a, t0)), Some(Failure::Refused), t0);
        assert_eq!(d.opened.get(), 1);
        assert_eq!(d.paused_gauge.get(), 1);
        match d.admit(&a, t0 + Duration::from_secs(4)) {
            Admission::Paused(left) => assert_eq!(left, Duration::from_secs(6)),
            other => panic!("{other:?}"),
        }
        // Past the pause: one trial, the others wait for it.
        let t1 = t0 + Duration::from_secs(10);
        let trial = go(d.admit(&a, t1));
        assert!(matches!(d.admit(&a, t1), Admission::Busy));
        // The trial fails: paused again, twice as long.
        d.finish_slot_at(trial, Some(Failure::Timeout), t1);
        assert_eq!(d.opened.get(), 2);
        match d.admit(&a, t1) {
            Admission::Paused(left) => assert_eq!(left, Duration::from_secs(20)),
            other => panic!("{other:?}"),
        }
        // Capped, then the trial succeeds: closed, forgotten.
        let t2 = t1 + Duration::from_secs(20);
        d.finish_slot_at(go(d.admit(&a, t2)), Some(Failure::Timeout), t2);
        match d.admit(&a, t2) {
            Admission::Paused(left) => assert_eq!(left, Duration::from_secs(25)),
            other => panic!("{other:?}"),
        }
        let t3 = t2 + Duration::from_secs(25);
        d.finish_slot_at(go(d.admit(&a, t3)), None, t3);
        assert_eq!(d.paused_gauge.get(), 0);
        assert_eq!(d.tracked(), 0, "nothing to remember");
    }

    #[test]
    fn the_map_stays_bounded() {
        let d = destinations(1, 1);
        let now = Instant::now();
        for n in 0..(MAX_TRACKED as u32 + 50) {
            // Each fails once: paused, so remembered.
            d.finish_slot_at(go(d.admit(&origin(n), now)), Some(Failure::Refused), now);
        }
        assert_eq!(d.tracked(), MAX_TRACKED);
        // A slot dropped without an outcome frees it.
        let fresh = origin(MAX_TRACKED as u32 + 100);
        drop(go(d.admit(&fresh, now)));
        assert!(matches!(d.admit(&fresh, now), Admission::Go(_)));
    }

    impl Destinations {
        fn finish_slot_at(&self, mut slot: Slot, failure: Option<Failure>, now: Instant) {
            slot.done = true;
            self.finish(&slot.origin, failure, now);
        }
    }
}
