//! The state the publisher's parts share: the live connection with its
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
