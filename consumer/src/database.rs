//! Every database call of the consumer goes through [`Retry`]: it runs on
//! the blocking threads (`shared::db::blocking`; Diesel blocks), and a
//! failure is waited out with capped, jittered backoff and tried again for
//! as long as the work the call is for can still be settled ([`Until`]).
//!
//! A database outage is never a message's fault: the deliveries a call is
//! for stay unacked while it waits, and if their channel closes meanwhile
//! the broker has requeued them, so waiting longer is pointless.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use lapin::Channel;
use shared::db::{DbError, PgPool, PgPooled};
use shared::Backoff;

/// Until when a failing call is tried again.
pub enum Until<'a> {
    /// While `channel` is open: the deliveries the call is for are acked
    /// on it.
    ChannelOpen(&'a Channel),
    /// At most this many attempts in all: work that may be dropped because
    /// it comes due again by itself (a webhook row's lease runs out).
    Attempts(u32),
}

/// Why a call was given up.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    /// The channel of the deliveries closed while waiting.
    #[error("the channel closed while waiting for the database")]
    ChannelClosed,
    /// Out of attempts, or a failure no wait can mend (the blocking task
    /// died): the last failure.
    #[error(transparent)]
    Failed(#[from] DbError),
}

/// One call's retries: the backoff between attempts and when to stop.
pub struct Retry<'a> {
    pool: &'a PgPool,
    until: Until<'a>,
    backoff: Backoff,
    /// Called at each wait (the consumer counts the waits of its storing).
    on_wait: Option<&'a (dyn Fn() + Sync)>,
}

impl<'a> Retry<'a> {
    /// Waits of 100 ms growing to 5 s, as long as `until` allows.
    pub fn new(pool: &'a PgPool, until: Until<'a>) -> Self {
        Self::with_backoff(
            pool,
            until,
            Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        )
    }

    /// Waits as `backoff` says.
    pub fn with_backoff(pool: &'a PgPool, until: Until<'a>, backoff: Backoff) -> Self {
        Self {
            pool,
            until,
            backoff,
            on_wait: None,
        }
    }

    /// Call `on_wait` at each wait.
    pub fn counting(mut self, on_wait: &'a (dyn Fn() + Sync)) -> Self {
        self.on_wait = Some(on_wait);
        self
    }

    /// Run `f` until it succeeds or [`Until`] says stop; `what` names the
    /// call in the log of each wait.
    pub async fn run<T, F>(&mut self, what: impl Display, f: F) -> Result<T, GaveUp>
    where
        F: Fn(&mut PgPooled) -> Result<T, DbError> + Send + Sync + 'static,
        T: Send + 'static,
    {
        let f = Arc::new(f);
        loop {
            let attempt = Arc::clone(&f);
            match self.attempt(move |conn| attempt(conn)).await {
                Ok(value) => return Ok(value),
                Err(e @ DbError::Task(_)) => return Err(GaveUp::Failed(e)),
                Err(e) if self.out_of_attempts() => return Err(GaveUp::Failed(e)),
                Err(e) => self.wait(format!("{what}: {e}")).await?,
            }
        }
    }

    /// One attempt, for callers whose success can be partial (some rows
    /// stored, some to try again): they [`Self::wait`] themselves.
    pub async fn attempt<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut PgPooled) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        shared::db::blocking(self.pool, f).await
    }

    /// Wait before the next attempt, logging `why`; an error when the
    /// channel closed before or during the wait.
    pub async fn wait(&mut self, why: impl Display) -> Result<(), GaveUp> {
        self.check()?;
        let delay = self.backoff.next_delay();
        if let Some(on_wait) = self.on_wait {
            on_wait();
        }
        log::warn!("{why}; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        self.check()
    }

    /// Whether this call waited at all.
    pub fn waited(&self) -> bool {
        self.backoff.attempts() > 0
    }

    fn check(&self) -> Result<(), GaveUp> {
        match self.until {
            Until::ChannelOpen(channel) if !channel.status().connected() => {
                Err(GaveUp::ChannelClosed)
            }
            _ => Ok(()),
        }
    }

    fn out_of_attempts(&self) -> bool {
        match self.until {
            Until::Attempts(n) => self.backoff.attempts() + 1 >= n,
            Until::ChannelOpen(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A pool whose every checkout fails at once (nothing listens on port 1).
    fn dead_pool() -> PgPool {
        shared::db::build_pool(
            "postgres://nobody@127.0.0.1:1/none",
            1,
            Duration::from_millis(200),
        )
    }

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2))
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_each_wait_counted() {
        let pool = dead_pool();
        let waits = AtomicU32::new(0);
        let count = || {
            waits.fetch_add(1, Ordering::Relaxed);
        };
        let mut retry = Retry::with_backoff(&pool, Until::Attempts(3), quick()).counting(&count);
        let result = retry.run("ping", |conn| Ok(shared::db::ping(conn)?)).await;
        assert!(matches!(result, Err(GaveUp::Failed(DbError::Pool(_)))));
        assert_eq!(
            waits.load(Ordering::Relaxed),
            2,
            "three attempts, two waits"
        );
        assert!(retry.waited());
    }

    #[tokio::test]
    async fn a_dead_task_is_not_waited_on() {
        // The local server's maintenance database: nothing is written.
        let server = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into());
        let pool = shared::db::build_pool(&format!("{server}/postgres"), 1, Duration::from_secs(5));
        let waits = AtomicU32::new(0);
        let count = || {
            waits.fetch_add(1, Ordering::Relaxed);
        };
        let mut retry = Retry::with_backoff(&pool, Until::Attempts(5), quick()).counting(&count);
        let result: Result<(), GaveUp> = retry.run("a bug", |_| panic!("a bug")).await;
        assert!(matches!(result, Err(GaveUp::Failed(DbError::Task(_)))));
        assert_eq!(waits.load(Ordering::Relaxed), 0);
        // The pool still works for the next call.
        assert!(retry
            .run("ping", |conn| Ok(shared::db::ping(conn)?))
            .await
            .is_ok());
    }
}
