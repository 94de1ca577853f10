//! Building and running the consumer: migrations, pool, and the session
//! supervisor that reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shared::db::PgPool;
use shared::Backoff;
use tokio::sync::watch;

use crate::config::Settings;
use crate::session::{self, Ended};
use crate::stats::Stats;

/// A built consumer, ready to run.
pub struct Application {
    settings: Settings,
    pool: PgPool,
    stats: Arc<Stats>,
}

impl Application {
    /// Migrate the database (retrying until `STARTUP_TIMEOUT_MS`) and build
    /// the pool. The broker is connected to in [`Self::run`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let url = settings.common.database_url.clone();
        let deadline = settings.common.startup_timeout;
        let applied =
            tokio::task::spawn_blocking(move || shared::db::migrate_with_retry(&url, deadline))
                .await
                .context("migration task panicked")?
                .map_err(|e| anyhow::anyhow!(e))?;
        log::info!("database ready ({applied} migrations applied)");
        let pool = shared::db::build_pool(
            &settings.common.database_url,
            settings.common.db_pool_size,
            settings.common.db_timeout,
        );
        Ok(Self {
            settings,
            pool,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Run until SIGTERM or SIGINT, then shut down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            log::info!("signal received; shutting down");
            let _ = tx.send(true);
        });
        self.run(rx).await;
        Ok(())
    }

    /// Consume until `shutdown` turns true. Broker failures are retried
    /// forever with capped backoff; after shutdown, messages in hand get
    /// `SHUTDOWN_TIMEOUT_MS` to be stored before the channel is closed
    /// (which hands any left back to the broker, so nothing is lost).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let timeout = self.settings.shutdown_timeout;
        loop {
            let sessions_before = self.stats.snapshot().sessions;
            let mut session_shutdown = shutdown.clone();
            let session = session::run(
                &self.settings,
                &self.pool,
                &self.stats,
                &mut session_shutdown,
            );
            let deadline = async {
                let _ = shutdown.wait_for(|stop| *stop).await;
                tokio::time::sleep(timeout).await;
            };
            let outcome = tokio::select! {
                outcome = session => outcome,
                _ = deadline => {
                    log::warn!("shutdown timeout ({timeout:?}) reached; unsettled messages return to the queue");
                    Ok(Ended::Drained)
                }
            };
            match outcome {
                Ok(Ended::Drained) => break,
                Err(e) => {
                    // A session that got as far as consuming resets the
                    // backoff; one that keeps failing at once backs off further.
                    if self.stats.snapshot().sessions > sessions_before {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    log::warn!("broker session failed: {e}; reconnecting in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            }
        }
        log::info!("consumer stopped: {:?}", self.stats.snapshot());
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
