//! [`Publisher`]: the cloneable handle the request handlers hold, and what
//! the publisher's jobs share behind it: the live connection with its
//! confirm-mode channels (a [`Link`], absent while disconnected) and the
//! signals between the supervisor and the publishing requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lapin::{Channel, Connection};
use shared::events::Event;
use shared::Topology;
use tokio::sync::{broadcast, Notify};

use crate::metrics::Metrics;

/// A cloneable handle for publishing; see the module docs.
#[derive(Clone)]
pub struct Publisher {
    pub(super) inner: Arc<Inner>,
}

impl Publisher {
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

/// One live connection and its confirm-mode channels.
pub(super) struct Link {
    pub(super) connection: Connection,
    /// The node (`host:port`) it is connected to.
    pub(super) node: String,
    pub(super) channels: Vec<Channel>,
    pub(super) next: AtomicUsize,
    /// Kept open for as long as the link: it carries the events consumer.
    pub(super) _events: Channel,
}

impl Link {
    /// The next channel, round-robin: each channel is one process on the
    /// broker, so spreading publishes lets it work in parallel.
    pub(super) fn channel(&self) -> &Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        &self.channels[i]
    }

    pub(super) fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channels.iter().all(|c| c.status().connected())
    }

    pub(super) fn is_blocked(&self) -> bool {
        shared::publish::is_blocked(&self.connection)
    }
}

pub(super) struct Inner {
    pub(super) link: RwLock<Option<Arc<Link>>>,
    /// Wakes the supervisor when a publish saw the link fail.
    pub(super) broken: Notify,
    /// Wakes every publish waiting for a confirm when the broker blocks the
    /// connection: RabbitMQ says so only once a connection publishes, and
    /// those first requests must get their 503 then, not at the timeout.
    pub(super) blocked: Notify,
    pub(super) topology: Topology,
    pub(super) timeout: Duration,
    pub(super) metrics: Arc<Metrics>,
    /// Completion events from the consumers, relayed to SSE and `?wait`.
    pub(super) events: broadcast::Sender<Event>,
}

impl Inner {
    /// The live link, if any.
    pub(super) fn current(&self) -> Option<Arc<Link>> {
        // A poisoned lock only means a panic elsewhere; the Option inside is
        // still valid, so keep serving.
        match self.link.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Hand out `link` (or none), keeping `pipeline_broker_connected` in step.
    pub(super) fn set_link(&self, link: Option<Arc<Link>>) {
        self.metrics.broker.set_connected(link.is_some());
        match self.link.write() {
            Ok(mut guard) => *guard = link,
            Err(poisoned) => *poisoned.into_inner() = link,
        }
    }
}
