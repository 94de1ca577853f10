//! Building and running the consumer: migrations, pool, the metrics and
//! health listener, and the session supervisor that reconnects with backoff.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use anyhow::Context;
use shared::db::PgPool;
use shared::Backoff;
use tokio::sync::{watch, Notify};
use tokio_util::task::AbortOnDropHandle;

use crate::config::Settings;
use crate::health;
use crate::metrics::Metrics;
use crate::session::{self, Ended};
use crate::stats::Stats;
use crate::webhooks::Deliverer;
use shared::retention::Retention;

/// A built consumer, ready to run.
pub struct Application {
    settings: Settings,
    pool: PgPool,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    /// The health listener: bound in `build`, serving from `run`.
    listener: Server,
    metrics_port: u16,
}

impl Application {
    /// Migrate the database (retrying until `STARTUP_TIMEOUT_MS`), build the
    /// pool and bind `METRICS_ADDR`. The broker is connected to, and the
    /// listener served, in [`Self::run`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = shared::migrate::migrate_and_pool(&settings.common).await?;
        // One registry per application, not the global one: tests run
        // several consumers in one process.
        let metrics = Arc::new(Metrics::new(&settings.common.kinds)?);
        metrics
            .dead_letter_alert_depth
            .set(i64::from(settings.dead_letter_alert_depth));
        let addr = &settings.metrics_addr;
        let tcp = TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on METRICS_ADDR={addr}"))?;
        let metrics_port = tcp.local_addr()?.port();
        let listener = health::server(tcp, metrics.clone(), pool.clone())
            .with_context(|| format!("cannot serve on METRICS_ADDR={addr}"))?;
        log::info!("metrics and health probes on port {metrics_port}");
        Ok(Self {
            stats: Arc::new(Stats::new(metrics.clone())),
            settings,
            pool,
            metrics,
            listener,
            metrics_port,
        })
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The consumer's Prometheus metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The port of `/metrics`, `/healthz` and `/readyz` (useful with
    /// `METRICS_ADDR=127.0.0.1:0`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// Run until SIGTERM or SIGINT, then shut down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(crate::signal::shutdown_on_signal()).await;
        Ok(())
    }

    /// Serve the health listener and consume until `shutdown` turns true.
    /// Broker failures are retried forever with capped backoff; after
    /// shutdown, messages in hand get `SHUTDOWN_TIMEOUT_MS` to be stored
    /// before the channel is closed (which hands any left back to the
    /// broker, so nothing is lost). The listener stops last.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let listener = self.listener;
        let handle = listener.handle();
        let serving = tokio::spawn(async move {
            if let Err(e) = listener.await {
                log::error!("health listener failed: {e}");
            }
        });
        // Webhook delivery lives as long as the process, across broker
        // sessions: it needs only the database.
        let owed = Arc::new(Notify::new());
        let deliverer = match Deliverer::new(
            self.pool.clone(),
            self.settings.webhooks.clone(),
            self.metrics.clone(),
            owed.clone(),
        ) {
            Ok(d) => d.map(|d| tokio::spawn(Arc::new(d).run(shutdown.clone()))),
            Err(e) => {
                log::error!("webhook delivery disabled: {e}");
                None
            }
        };
        // The deliverer stops with the consumer (or with the test that
        // aborted it), and its leases bring its claims back.
        let _deliverer = deliverer.map(AbortOnDropHandle::new);
        // Pruning needs only the database too; it stops with the consumer.
        let retention = Retention::new(
            &self.settings.common.database_url,
            self.settings.retention.schedule,
            self.settings.retention.rules(),
            shared::db::lock::CONSUMER_RETENTION,
        )
        .with_partitions(self.settings.retention.messages)
        .with_metrics(self.metrics.retention.clone(), true);
        let _retention = AbortOnDropHandle::new(tokio::spawn(retention.run(shutdown.clone())));
        supervise(&self.settings, &self.pool, &self.stats, &owed, shutdown).await;
        handle.stop(true).await;
        let _ = serving.await;
        log::info!("consumer stopped: {:?}", self.stats.snapshot());
    }
}

/// Run broker sessions one after another until shutdown; see [`Application::run`].
async fn supervise(
    settings: &Settings,
    pool: &PgPool,
    stats: &Arc<Stats>,
    owed: &Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let timeout = settings.shutdown_timeout;
    loop {
        let settled_before = stats.snapshot().settled_batches;
        let mut session_shutdown = shutdown.clone();
        let session = session::run(settings, pool, stats, owed, &mut session_shutdown);
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
                // Only a session that settled a batch resets the backoff:
                // one that fails on every batch (even after it started
                // consuming) backs off further, instead of reconnecting ten
                // times a second and handing the whole prefetch back each
                // time, which burns the messages' delivery limit.
                if stats.snapshot().settled_batches > settled_before {
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
}
