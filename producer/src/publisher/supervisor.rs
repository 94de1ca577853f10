//! The connection supervisor: [`start`]ed with the [`Publisher`], it connects,
//! sets up, hands out the link, watches it, and reconnects with capped
//! exponential backoff when it fails.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use shared::events::Event;
use shared::{Backoff, Topology};
use tokio::sync::{broadcast, watch, Notify};

use crate::metrics::Metrics;

use super::events::relay;
use super::handle::{Inner, Link, Publisher};

/// Connection settings for [`start`].
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The broker nodes to connect to (one, or a cluster's).
    pub nodes: shared::amqp::Nodes,
    /// Names to declare and publish to.
    pub topology: Topology,
    /// Channels to open.
    pub channels: usize,
    /// Longest wait for a confirm.
    pub publish_timeout: Duration,
    /// Longest wait to connect and set up.
    pub connect_timeout: Duration,
}

/// Start the supervisor task and get the handle that publishes. The task
/// runs until `shutdown` turns true, then closes the connection and ends
/// (await the returned task for that). The handle publishes as soon as the
/// first connection is up; before that it answers `NotConnected`. `metrics` gets the connection state
/// and every confirm's latency.
pub fn start(
    config: PublisherConfig,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> (Publisher, tokio::task::JoinHandle<()>) {
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
    (Publisher { inner }, task)
}

/// Why a connection could not be set up (logged; the supervisor retries).
#[derive(Debug, thiserror::Error)]
enum SetupError {
    /// No node answered.
    #[error(transparent)]
    Connect(#[from] shared::amqp::ConnectError),
    /// Declaring the exchanges and queues failed.
    #[error("cannot declare the topology: {0}")]
    Topology(#[source] lapin::Error),
    /// Opening a publishing channel or putting it in confirm mode failed.
    #[error("{0}")]
    Channel(#[source] lapin::Error),
    /// Binding or consuming the events queue failed.
    #[error("cannot listen for completion events: {0}")]
    Events(#[source] lapin::Error),
    /// The whole setup took longer than its bound.
    #[error("timed out setting up the broker connection")]
    Timeout,
}

/// Run until `shutdown` turns true: keep a link handed out in `inner`
/// whenever the broker can be reached.
async fn supervise(
    inner: Arc<Inner>,
    config: PublisherConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut connected_once = false;
    while !*shutdown.borrow() {
        let link = tokio::select! {
            link = connect(&config, inner.events.clone()) => link,
            _ = shutdown.changed() => break,
        };
        let link = match link {
            Ok(link) => Arc::new(link),
            Err(e) => {
                let delay = backoff.next_delay();
                log::warn!("publisher: {e}; reconnecting in {delay:?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        inner.metrics.broker.set_node(Some(&link.node));
        if connected_once {
            log::info!("publisher: reconnected to RabbitMQ node {}", link.node);
            inner.metrics.broker.record_reconnect();
        } else {
            log::info!("publisher: connected to RabbitMQ node {}", link.node);
            connected_once = true;
        }
        backoff.reset();
        let mut events = link.connection.events_listener();
        inner.set_link(Some(link.clone()));

        // Hold the link until it breaks or we are told to stop. The status
        // poll is a backstop for failures that raise no event.
        let mut poll = tokio::time::interval(Duration::from_millis(500));
        let stop = loop {
            tokio::select! {
                _ = shutdown.changed() => break true,
                _ = inner.broken.notified() => {
                    if !link.is_open() { break false; }
                }
                event = events.next() => match event {
                    Some(lapin::Event::Error(e)) => {
                        log::warn!("publisher: connection error: {e}");
                        break false;
                    }
                    Some(lapin::Event::ConnectionBlocked(reason)) => {
                        log::warn!("publisher: RabbitMQ blocks publishing ({reason}); answering 503 until it unblocks");
                        inner.metrics.broker_blocked.set(1);
                        inner.blocked.notify_waiters();
                    }
                    Some(lapin::Event::ConnectionUnblocked) => {
                        log::info!("publisher: RabbitMQ unblocked publishing");
                        inner.metrics.broker_blocked.set(0);
                    }
                    Some(_) => {}
                    None => break false,
                },
                _ = poll.tick() => {
                    if !link.is_open() { break false; }
                }
            }
        };
        inner.set_link(None);
        inner.metrics.broker.set_node(None);
        inner.metrics.broker_blocked.set(0);
        // Best effort: on a dead connection this fails fast, which is fine.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            link.connection.close(200, "producer shutting down".into()),
        )
        .await;
        if stop {
            break;
        }
        log::warn!("publisher: lost the connection to RabbitMQ; reconnecting");
    }
    inner.set_link(None);
}

async fn connect(
    config: &PublisherConfig,
    events: broadcast::Sender<Event>,
) -> Result<Link, SetupError> {
    let setup = async {
        let name = shared::amqp::connection_name("producer");
        let (connection, node) = config.nodes.connect(&name, config.connect_timeout).await?;
        config
            .topology
            .declare_on(&connection)
            .await
            .map_err(SetupError::Topology)?;
        let mut channels = Vec::with_capacity(config.channels);
        for _ in 0..config.channels {
            let channel = connection
                .create_channel()
                .await
                .map_err(SetupError::Channel)?;
            channel
                .confirm_select(ConfirmSelectOptions { nowait: false })
                .await
                .map_err(SetupError::Channel)?;
            channels.push(channel);
        }
        let events_channel = relay(&connection, &config.topology, events)
            .await
            .map_err(SetupError::Events)?;
        Ok(Link {
            connection,
            node,
            channels,
            next: AtomicUsize::new(0),
            _events: events_channel,
        })
    };
    // Each node may take the connect timeout; then the setup its own.
    let nodes = u32::try_from(config.nodes.len()).unwrap_or(u32::MAX);
    tokio::time::timeout(config.connect_timeout.saturating_mul(nodes + 1), setup)
        .await
        .unwrap_or(Err(SetupError::Timeout))
}
