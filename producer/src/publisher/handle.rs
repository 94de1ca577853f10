//! [`Publisher`]: the cloneable handle the request handlers hold, and the
//! state of the connection as they see it.

use std::sync::Arc;
use std::time::Duration;

use shared::events::Event;
use shared::Topology;
use tokio::sync::{broadcast, watch, Notify};

use crate::metrics::Metrics;

use super::link::Inner;
use super::supervisor::{supervise, PublisherConfig};

/// A cloneable handle for publishing; see the module docs.
#[derive(Clone)]
pub struct Publisher {
    pub(super) inner: Arc<Inner>,
}

impl Publisher {
    /// Start the supervisor task. It runs until `shutdown` turns true, then
    /// closes the connection and ends (await the returned task for that).
    /// The handle publishes as soon as the first connection is up; before
    /// that it answers `NotConnected`. `metrics` gets the connection state
    /// and every confirm's latency.
    pub fn start(
        config: PublisherConfig,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let inner = Arc::new(Inner {
            link: std::sync::RwLock::new(None),
            broken: Notify::new(),
            blocked: Notify::new(),
            topology: config.topology.clone(),
            timeout: config.publish_timeout,
            metrics,
            events: broadcast::channel(4096).0,
        });
        let task = tokio::spawn(supervise(inner.clone(), config, shutdown));
        (Self { inner }, task)
    }

    /// Completion events from now on (best effort; see `shared::events`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Longest wait for a confirm (`PUBLISH_TIMEOUT_MS`), for every publish
    /// of this process.
    pub fn publish_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The names this publisher declared.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// True while a connection with open channels is available.
    pub fn is_connected(&self) -> bool {
        self.inner.current().is_some_and(|l| l.is_open())
    }

    /// True while the broker blocks publishing on the connection (memory or
    /// disk alarm).
    pub fn is_blocked(&self) -> bool {
        self.inner.current().is_some_and(|l| l.is_blocked())
    }

    /// Wait up to `timeout` for the first connection (used at startup so the
    /// first requests do not see a spurious 503).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.is_connected() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.is_connected()
    }
}
