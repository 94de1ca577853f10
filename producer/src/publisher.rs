//! Publishing with confirms over a supervised RabbitMQ connection.
//!
//! A background task owns the connection: it connects, declares the topology,
//! opens `PUBLISH_CHANNELS` channels in confirm mode and hands them to request
//! handlers through a [`Link`]. When the connection fails it drops the link
//! (so requests answer 503 at once instead of hanging), reconnects with capped
//! exponential backoff and hands out a fresh link.
//!
//! Handlers never hold a lock across an await: they clone the `Arc<Link>` under
//! a read lock, release it, then publish and await their own confirm, so any
//! number of requests pipeline their confirms on the same channels.
//!
//! The supervisor keeps `pipeline_broker_connected` and
//! `pipeline_broker_reconnects_total` up to date; every confirmed publish
//! records its publish→confirm latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use shared::events::Event;
use shared::{Backoff, Envelope, Topology};
use tokio::sync::broadcast;
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;

/// Why a message was not confirmed: the one error of every publish
/// (`shared::publish`). Every variant means "not accepted": the client gets
/// a 503 and may retry (with the same Idempotency-Key).
pub use shared::publish::PublishError;

/// One live connection and its confirm-mode channels.
struct Link {
    connection: Connection,
    /// The node (`host:port`) it is connected to.
    node: String,
    channels: Vec<Channel>,
    next: AtomicUsize,
    /// Kept open for as long as the link: it carries the events consumer.
    _events: Channel,
}

impl Link {
    fn channel(&self) -> &Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        &self.channels[i]
    }

    fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channels.iter().all(|c| c.status().connected())
    }

    fn is_blocked(&self) -> bool {
        shared::publish::is_blocked(&self.connection)
    }
}

struct Inner {
    link: RwLock<Option<Arc<Link>>>,
    /// Wakes the supervisor when a publish saw the link fail.
    broken: Notify,
    /// Wakes every publish waiting for a confirm when the broker blocks the
    /// connection: RabbitMQ says so only once a connection publishes, and
    /// those first requests must get their 503 then, not at the timeout.
    blocked: Notify,
    topology: Topology,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// Completion events from the consumers, relayed to SSE and `?wait`.
    events: broadcast::Sender<Event>,
}

/// A cloneable handle for publishing; see the module docs.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

/// Connection settings for [`Publisher::start`].
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
            link: RwLock::new(None),
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

    /// A fresh channel on the current connection, for work that needs its
    /// own channel (browsing or moving dead letters). Closing it returns
    /// anything it got and did not ack to its queue.
    pub async fn open_channel(&self) -> Result<Channel, PublishError> {
        let link = self.current().ok_or(PublishError::NotConnected)?;
        let open = link.connection.create_channel();
        tokio::time::timeout(self.inner.timeout, open)
            .await
            .map_err(|_| PublishError::Timeout(self.inner.timeout))?
            .map_err(PublishError::Broker)
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
        self.current().is_some_and(|l| l.is_open())
    }

    /// True while the broker blocks publishing on the connection (memory or
    /// disk alarm).
    pub fn is_blocked(&self) -> bool {
        self.current().is_some_and(|l| l.is_blocked())
    }

    /// The live link, unless there is none or the broker blocks it: a
    /// blocked connection's frames would only pile up in lapin's unbounded
    /// queue while the request waits for a confirm that cannot come, so
    /// the answer is an immediate 503 instead.
    fn usable(&self) -> Result<Arc<Link>, PublishError> {
        let link = self.current().ok_or(PublishError::NotConnected)?;
        if link.is_blocked() {
            return Err(PublishError::Blocked);
        }
        Ok(link)
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

    fn current(&self) -> Option<Arc<Link>> {
        // A poisoned lock only means a panic elsewhere; the Option inside is
        // still valid, so keep serving.
        match self.inner.link.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publish one envelope and wait for the broker's confirm. `Ok` means the
    /// broker has taken responsibility for the message (for a quorum queue:
    /// written to a majority and fsynced).
    pub async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
        let link = self.usable()?;
        let started = Instant::now();
        let blocked = self.inner.blocked.notified();
        let body = envelope.to_body();
        let result = tokio::select! {
            result = shared::publish::confirmed(
                link.channel(),
                &self.inner.topology.exchange,
                "", // fanout exchange: the routing key is ignored
                &body,
                envelope.properties(),
                self.inner.timeout,
            ) => result,
            _ = blocked => Err(PublishError::Blocked),
        };
        if result.is_ok() {
            self.inner.metrics.record_confirm(started.elapsed());
        }
        if let Err(PublishError::Broker(_)) = &result {
            // The channel or connection is gone: let the supervisor rebuild.
            self.inner.broken.notify_one();
        }
        result
    }

    /// Publish many envelopes, pipelined: every message is
    /// sent before any confirm is awaited, then each confirm is awaited.
    /// The whole batch shares one publish timeout. The result for item `i`
    /// says whether envelope `i` was confirmed.
    pub async fn publish_many(&self, envelopes: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let link = match self.usable() {
            Ok(link) => link,
            Err(e) => {
                let kind = matches!(e, PublishError::Blocked);
                return envelopes
                    .iter()
                    .map(|_| {
                        Err(if kind {
                            PublishError::Blocked
                        } else {
                            PublishError::NotConnected
                        })
                    })
                    .collect();
            }
        };
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut pending = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let started = Instant::now();
            let sent = tokio::time::timeout_at(
                deadline,
                // Round-robin over the channels: each channel is one process
                // on the broker, so spreading a batch lets it work in parallel.
                link.channel().basic_publish(
                    self.inner.topology.exchange.as_str().into(),
                    "".into(),
                    shared::publish::OPTIONS,
                    &envelope.to_body(),
                    envelope.properties(),
                ),
            )
            .await;
            pending.push(match sent {
                Ok(Ok(confirm)) => Ok((confirm, started)),
                Ok(Err(e)) => Err(PublishError::Broker(e)),
                Err(_) => Err(PublishError::Timeout(self.inner.timeout)),
            });
        }
        let confirms = pending.into_iter().map(|sent| async move {
            let (confirm, started) = sent?;
            let blocked = self.inner.blocked.notified();
            let confirm = async {
                tokio::select! {
                    confirmation = confirm => Some(confirmation),
                    _ = blocked => None,
                }
            };
            match tokio::time::timeout_at(deadline, confirm).await {
                Err(_) => Err(PublishError::Timeout(self.inner.timeout)),
                Ok(None) => Err(PublishError::Blocked),
                Ok(Some(Err(e))) => Err(PublishError::Broker(e)),
                Ok(Some(Ok(confirmation))) => {
                    shared::publish::check(confirmation)?;
                    self.inner.metrics.record_confirm(started.elapsed());
                    Ok(())
                }
            }
        });
        let results = futures_util::future::join_all(confirms).await;
        if results
            .iter()
            .any(|r| matches!(r, Err(PublishError::Broker(_))))
        {
            self.inner.broken.notify_one();
        }
        results
    }
}

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
        set_link(&inner, Some(link.clone()));

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
        set_link(&inner, None);
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
    set_link(&inner, None);
}

fn set_link(inner: &Inner, link: Option<Arc<Link>>) {
    inner.metrics.broker.set_connected(link.is_some());
    match inner.link.write() {
        Ok(mut guard) => *guard = link,
        Err(poisoned) => *poisoned.into_inner() = link,
    }
}

async fn connect(
    config: &PublisherConfig,
    events: broadcast::Sender<Event>,
) -> Result<Link, String> {
    let setup = async {
        let name = shared::amqp::connection_name("producer");
        let (connection, node) = config
            .nodes
            .connect(&name, config.connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        config
            .topology
            .declare_on(&connection)
            .await
            .map_err(|e| format!("cannot declare the topology: {e}"))?;
        let mut channels = Vec::with_capacity(config.channels);
        for _ in 0..config.channels {
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            channel
                .confirm_select(ConfirmSelectOptions { nowait: false })
                .await
                .map_err(|e| e.to_string())?;
            channels.push(channel);
        }
        let events_channel = listen_for_events(&connection, &config.topology, events)
            .await
            .map_err(|e| format!("cannot listen for completion events: {e}"))?;
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
        .unwrap_or_else(|_| Err("timed out setting up the broker connection".into()))
}

/// Bind a queue of this replica's own (server-named, exclusive, gone with
/// the connection) to the events exchange, so every replica sees every
/// event, and forward what arrives to `events`.
async fn listen_for_events(
    connection: &Connection,
    topology: &Topology,
    events: broadcast::Sender<Event>,
) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    let queue = channel
        .queue_declare(
            "".into(), // server-named
            QueueDeclareOptions {
                passive: false,
                durable: false,    // notifications only
                exclusive: true,   // this replica's own
                auto_delete: true, // gone with the connection
                nowait: false,
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            queue.name().clone(),
            topology.events_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "producer-events".into(),
            BasicConsumeOptions {
                no_local: false,
                no_ack: true, // best effort: a lost event costs nothing
                exclusive: true,
                nowait: false,
            },
            FieldTable::default(),
        )
        .await?;
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Ok(event) = serde_json::from_slice::<Event>(&delivery.data) {
                // No subscriber is fine.
                let _ = events.send(event);
            }
        }
    });
    Ok(channel)
}
