//! A uniquely named RabbitMQ topology per test, and a test-side connection
//! to publish raw messages and inspect queues.

use std::time::Duration;

use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use shared::{Envelope, Topology};
use uuid::Uuid;

/// The broker URL for tests.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A topology whose names carry a unique prefix, deleted on drop.
pub struct TestBroker {
    /// The `TOPOLOGY_PREFIX` to give the services.
    pub prefix: String,
    /// The names.
    pub topology: Topology,
    /// Every delay queue a consumer of this test declared, for clean-up.
    retry_delays: std::sync::Mutex<Vec<Duration>>,
    connection: Connection,
    channel: Channel,
}

impl TestBroker {
    /// Connect and declare the topology.
    pub async fn new() -> Self {
        Self::with_kinds("").await
    }

    /// Connect and declare the topology with the kinds of `kinds` (as
    /// `KINDS` says them: `email,profile`); the services of the test get
    /// the same `KINDS`.
    pub async fn with_kinds(kinds: &str) -> Self {
        Self::with_sharded_kinds(kinds, "").await
    }

    /// As [`Self::with_kinds`], with `shards` as `KIND_SHARDS` says them
    /// (`email:4`); the services get the same.
    pub async fn with_sharded_kinds(kinds: &str, shards: &str) -> Self {
        let prefix = format!("test.{}.", &Uuid::new_v4().simple().to_string()[..12]);
        let kinds = shared::kind::Kinds::parse(kinds)
            .and_then(|k| k.with_shards(shards))
            .expect("kind names and shards");
        let topology = Topology::with_prefix(&prefix).with_kinds(&kinds);
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ is not reachable at TEST_AMQP_URL");
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        topology.declare(&channel).await.unwrap();
        Self {
            prefix,
            topology,
            retry_delays: std::sync::Mutex::default(),
            connection,
            channel,
        }
    }

    /// Publish raw bytes to the `messages` exchange, as any AMQP client could,
    /// and wait for the confirm.
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        self.publish_to(&self.topology.exchange, body, properties)
            .await;
    }

    /// Publish raw bytes to `exchange` (say, the dead-letter exchange, as
    /// anyone allowed to publish there could) and wait for the confirm.
    pub async fn publish_to(&self, exchange: &str, body: &[u8], properties: BasicProperties) {
        self.publish_keyed(exchange, "", body, properties).await;
    }

    /// Publish raw bytes to `exchange` with `routing_key` (say, the route
    /// exchange with a kind, as a third-party publisher would) and wait for
    /// the confirm.
    pub async fn publish_keyed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            confirm,
            Confirmation::Ack(None),
            "test publish not confirmed"
        );
    }

    /// Publish an envelope exactly as the producer does.
    pub async fn publish(&self, envelope: &Envelope) {
        self.publish_raw(&envelope.to_body(), envelope.properties())
            .await;
    }

    /// Messages ready in `queue` (not counting unacked ones).
    pub async fn depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.unwrap();
        let depth = depth(&channel, queue).await.unwrap();
        let _ = channel.close(200, "".into()).await;
        depth
    }

    /// Take (and ack) every message ready in `queue`.
    pub async fn take_all(&self, queue: &str) -> Vec<BasicGetMessage> {
        take_all(&self.channel, queue).await.unwrap()
    }

    /// Declare delay queues for `delays` too (and delete them on drop), to
    /// match a consumer started with the corresponding retry settings.
    pub async fn add_retry_delays(&mut self, delays: &[Duration]) {
        self.topology = self.topology.clone().with_retry_delays(delays);
        self.topology.declare(&self.channel).await.unwrap();
    }

    /// Remember delay queues a consumer declares, so that drop deletes them.
    pub fn track_retry_delays(&self, delays: &[Duration]) {
        self.retry_delays.lock().unwrap().extend_from_slice(delays);
    }

    /// A new channel on the test connection.
    pub async fn channel(&self) -> Channel {
        self.connection.create_channel().await.unwrap()
    }
}

/// Messages ready in `queue` (not counting unacked ones), by a passive
/// declare on `channel` (which the broker closes if there is no such queue).
pub async fn depth(channel: &Channel, queue: &str) -> lapin::Result<u32> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Take (and ack) every message ready in `queue`.
pub async fn take_all(channel: &Channel, queue: &str) -> lapin::Result<Vec<BasicGetMessage>> {
    let mut out = Vec::new();
    while let Some(msg) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        msg.delivery.acker.ack(BasicAckOptions::default()).await?;
        out.push(msg);
    }
    Ok(out)
}

/// The string value of header `name`, if present.
pub fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    use lapin::types::AMQPValue;
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        AMQPValue::LongInt(n) => Some(n.to_string()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Async clean-up from a sync Drop: run it on a thread of its own,
        // which works whether or not we are inside a runtime.
        let mut delays = self.topology.retry_delays.clone();
        delays.extend(
            self.retry_delays
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default(),
        );
        let topology = self.topology.clone().with_retry_delays(&delays);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let conn = tokio::time::timeout(
                    Duration::from_secs(5),
                    Connection::connect(&amqp_url(), ConnectionProperties::default()),
                )
                .await;
                if let Ok(Ok(conn)) = conn {
                    if let Ok(channel) = conn.create_channel().await {
                        let _ = topology.delete(&channel).await;
                    }
                    let _ = conn.close(200, "".into()).await;
                }
            });
        })
        .join();
    }
}
