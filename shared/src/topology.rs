//! The RabbitMQ topology both sides declare at startup, from this one place.
//!
//! ```text
//!  producer ──► [messages] (fanout) ──► (messages.store, quorum) ──► consumer ──► PostgreSQL
//!  producer ──► [messages.route] (direct, by kind) ──default──► (messages.store)
//!                     │                         └──<kind>──► (messages.store.<kind>, quorum) ──► consumer
//!                     └─ no such kind: alternate exchange [messages.unrouted] ──► (messages.unrouted)
//!                          ──► consumer: dead-lettered with reason unknown_kind
//!                                              │ x-dead-letter-exchange
//!  consumer (poison, with x-error) ──► [messages.dlx] (fanout) ──► (messages.dead)
//!                                                              └──► (messages.dead.index) ──► consumer ──► dead_letters
//!  consumer (unknown error) ──► (messages.retry.<delay>ms, TTL) ──expired──► (messages.store)
//! ```
//!
//! The `default` kind keeps `messages.store` and the `messages` exchange
//! (old producers publish there, and the default message is published
//! there still: the single-kind path is unchanged); every other kind has a
//! queue and delay queues of its own, with the same arguments.
//!
//! Every queue argument is set explicitly so that the same declaration means
//! the same thing on RabbitMQ 3.10 (local) and 4.x (the compose image), whose
//! defaults differ (4.x sets a default delivery limit of 20 on quorum queues).

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

use std::borrow::Cow;

use uuid::Uuid;

use crate::dead_queue_migration::Plan;
use crate::kind::{Kind, Kinds};

/// The shard of message `id` among `shards`: a stable hash (the id's own
/// bits, uniform for random ids), the same on every producer and release.
pub fn shard_of(id: Uuid, shards: u16) -> u16 {
    let shards = u128::from(shards.max(1));
    // The remainder is below `shards`, a u16.
    u16::try_from(id.as_u128() % shards).unwrap_or(0)
}

/// How many times the broker redelivers one message (after consumer crashes
/// or channel losses) before it dead-letters it by itself. This is a safety
/// net against a message that crashes the consumer; it is set high because
/// RabbitMQ 3.10 also counts the redeliveries caused by a consumer being
/// killed, and a valid message must never be dead-lettered for that.
pub const DELIVERY_LIMIT: i32 = 50;

/// The names of every exchange and queue of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Where producers publish (fanout; the routing key is ignored).
    pub exchange: String,
    /// The dead-letter exchange (fanout).
    pub dead_letter_exchange: String,
    /// The durable quorum queue the consumers take messages from.
    pub store_queue: String,
    /// Where messages that cannot be stored wait for inspection.
    pub dead_queue: String,
    /// A second copy of every dead letter, whoever made it (the consumer or
    /// RabbitMQ itself, at the delivery limit): consumers read it to keep the
    /// `dead_letters` table complete, so a status never says `not_found`
    /// for a message sitting in `messages.dead`.
    pub dead_index_queue: String,
    /// Completion events (fanout): the consumer announces what it stored or
    /// dead-lettered; every producer replica listens with a queue of its own.
    pub events_exchange: String,
    /// The prefix every name starts with.
    pub prefix: String,
    /// Where a message of any kind can be published (direct; the routing
    /// key is the kind). Its alternate exchange takes unknown kinds.
    pub route_exchange: String,
    /// The alternate exchange of `route_exchange` (fanout): what no kind's
    /// queue takes.
    pub unrouted_exchange: String,
    /// Messages for a kind that is not configured, waiting for a consumer
    /// to dead-letter them with reason `unknown_kind` (quorum, never lost).
    pub unrouted_queue: String,
    /// The configured kinds (`KINDS`), `default` always among them.
    pub kinds: Kinds,
    /// One delay queue per delay: a message waits there for the delay, then
    /// the broker moves it back to the store queue for another attempt.
    pub retry_delays: Vec<Duration>,
    /// `x-quorum-initial-group-size` of every quorum queue: how many nodes
    /// hold a replica. RabbitMQ uses every node when the cluster has fewer,
    /// so the default 3 spans a 3-node cluster and is valid on one node.
    pub initial_group_size: Option<i32>,
}

/// The default [`Topology::initial_group_size`].
pub const INITIAL_GROUP_SIZE: i32 = 3;

/// Longest wait for declaring the dead-letter queue when (re)connecting;
/// see `Topology::declare_dead_queue_on`.
pub const DEAD_QUEUE_DECLARE_TIMEOUT: Duration = Duration::from_secs(3);

/// `x-delivery-limit` of the dead-letter queue: one no browse ever reaches.
/// Browsing hands every letter it read back by closing its channel, and a
/// quorum queue counts that as a delivery: RabbitMQ 4.x drops a message of
/// a queue without a dead-letter exchange at its default limit of 20.
/// Unlimited (`-1`) is a 4.x value (the same declaration must mean the same
/// on 3.10), and no limit at all makes 4.x requeue at the back of the
/// whole queue; with a limit set, returns go before the letters never
/// handed out on both (see the producer's `dead_letters::hand_back`).
pub const DEAD_QUEUE_DELIVERY_LIMIT: i32 = i32::MAX;

/// What [`Topology::declare_on`] found of `messages.dead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadQueue {
    /// The quorum queue, declared and bound.
    Ready,
    /// Still the classic queue of before issue 17: run
    /// [`crate::dead_queue_migration::run`] with
    /// [`Topology::dead_queue_migration`]. (`Ready` does not tell whether a
    /// migration was interrupted after the quorum queue was declared: see
    /// [`crate::dead_queue_migration::interrupted`].)
    NeedsMigration,
    /// Not declared this time (logged); it was on an earlier start.
    Unknown,
}

impl Default for Topology {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

impl Topology {
    /// The standard names (`messages`, `messages.dlx`, `messages.store`,
    /// `messages.dead`), each preceded by `prefix`. The prefix lets tests and
    /// side-by-side pipelines share one vhost without touching each other.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}messages"),
            dead_letter_exchange: format!("{prefix}messages.dlx"),
            store_queue: format!("{prefix}messages.store"),
            dead_queue: format!("{prefix}messages.dead"),
            dead_index_queue: format!("{prefix}messages.dead.index"),
            events_exchange: format!("{prefix}messages.events"),
            route_exchange: format!("{prefix}messages.route"),
            unrouted_exchange: format!("{prefix}messages.unrouted"),
            unrouted_queue: format!("{prefix}messages.unrouted"),
            kinds: Kinds::default(),
            prefix: prefix.to_owned(),
            retry_delays: Vec::new(),
            initial_group_size: Some(INITIAL_GROUP_SIZE),
        }
    }

    /// The same topology with delay queues for `delays`.
    pub fn with_retry_delays(mut self, delays: &[Duration]) -> Self {
        let mut delays = delays.to_vec();
        delays.sort();
        delays.dedup();
        self.retry_delays = delays;
        self
    }

    /// The same topology with a queue for each of `kinds`.
    pub fn with_kinds(mut self, kinds: &Kinds) -> Self {
        self.kinds = kinds.clone();
        self
    }

    /// The store queue of `kind`: `messages.store` for `default` (the one
    /// queue of every deployment before kinds), else `messages.store.<kind>`.
    pub fn store_queue_of(&self, kind: &Kind) -> String {
        if kind.is_default() {
            self.store_queue.clone()
        } else {
            format!("{}.{kind}", self.store_queue)
        }
    }

    /// Every queue of `kind`: its store queue, then with `KIND_SHARDS` its
    /// other shards, `messages.store.<kind>.1` … `.<n-1>`. Shard 0 is the
    /// kind's queue of before, unchanged, so sharding a kind keeps its
    /// queue and what waits there.
    pub fn shard_queues_of(&self, kind: &Kind) -> Vec<String> {
        let first = self.store_queue_of(kind);
        let mut queues = Vec::with_capacity(usize::from(self.kinds.shards(kind)));
        for shard in 1..self.kinds.shards(kind) {
            queues.push(format!("{first}.{shard}"));
        }
        queues.insert(0, first);
        queues
    }

    /// The kind whose store queue (or shard) is `queue`, if any (a dead
    /// letter the broker made names the queue it came from).
    pub fn kind_of_queue(&self, queue: &str) -> Option<&Kind> {
        self.kinds
            .all()
            .iter()
            .find(|k| self.shard_queues_of(k).iter().any(|q| q == queue))
    }

    /// Where to publish message `id` of `kind`: `default` to the `messages`
    /// exchange exactly as before kinds (so old consumers and the common
    /// path are unchanged: nothing allocated), any other to the route
    /// exchange by its name, and for a sharded kind to the shard a stable
    /// hash of the id picks (`<kind>.<shard>`; shard 0 is `<kind>`).
    pub fn publish_target<'a>(&'a self, kind: &'a Kind, id: Uuid) -> (&'a str, Cow<'a, str>) {
        if kind.is_default() {
            return (&self.exchange, Cow::Borrowed("")); // fanout: the key is ignored
        }
        let shards = self.kinds.shards(kind);
        match shard_of(id, shards) {
            0 => (&self.route_exchange, Cow::Borrowed(kind.as_str())),
            shard => (&self.route_exchange, Cow::Owned(format!("{kind}.{shard}"))),
        }
    }

    /// The delay queue of the default kind for `delay` (`messages.retry.1000ms`).
    pub fn retry_queue(&self, delay: Duration) -> String {
        self.retry_queue_of(&Kind::default_kind(), delay)
    }

    /// The delay queue of `kind` for `delay`: `messages.retry.1000ms` for
    /// `default` (as before kinds), else `messages.retry.<kind>.1000ms`.
    pub fn retry_queue_of(&self, kind: &Kind, delay: Duration) -> String {
        if kind.is_default() {
            format!("{}messages.retry.{}ms", self.prefix, delay.as_millis())
        } else {
            format!(
                "{}messages.retry.{kind}.{}ms",
                self.prefix,
                delay.as_millis()
            )
        }
    }

    /// The arguments of the default kind's delay queue.
    pub fn retry_queue_arguments(&self, delay: Duration) -> FieldTable {
        self.retry_queue_arguments_of(&Kind::default_kind(), delay)
    }

    /// The arguments of a delay queue of `kind`: it moves an expired retry
    /// back to that kind's store queue.
    pub fn retry_queue_arguments_of(&self, kind: &Kind, delay: Duration) -> FieldTable {
        let mut args = FieldTable::default();
        // Quorum (with message TTL, 3.10+) so that a waiting retry survives
        // a broker restart and is moved back with at-least-once guarantees.
        args.insert("x-queue-type".into(), long_string("quorum"));
        self.insert_group_size(&mut args);
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        // Expired messages go back through the default exchange straight to
        // the store queue, not to other queues bound to `messages`.
        args.insert("x-dead-letter-exchange".into(), long_string(""));
        args.insert(
            "x-dead-letter-routing-key".into(),
            long_string(&self.store_queue_of(kind)),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        args.insert("x-overflow".into(), long_string("reject-publish"));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
        args
    }

    /// The arguments of the store queue.
    pub fn store_queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        // Quorum: replicated, fsynced before confirms, tracks delivery counts.
        args.insert("x-queue-type".into(), long_string("quorum"));
        self.insert_group_size(&mut args);
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
        // At-least-once dead-lettering (3.10+): a message the broker
        // dead-letters itself stays in the queue until the DLX target has
        // confirmed it, so the safety net cannot lose it. It requires the
        // reject-publish overflow behaviour.
        args.insert(
            "x-dead-letter-strategy".into(),
            long_string("at-least-once"),
        );
        args.insert("x-overflow".into(), long_string("reject-publish"));
        args
    }

    fn insert_group_size(&self, args: &mut FieldTable) {
        if let Some(size) = self.initial_group_size {
            args.insert(
                "x-quorum-initial-group-size".into(),
                AMQPValue::LongInt(size),
            );
        }
    }

    /// The arguments of the dead-letter queue.
    pub fn dead_queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        // Quorum: replicated, so losing one node neither loses the dead
        // letters nor blocks dead-lettering. No dead-letter exchange: a
        // letter leaves only by redrive or purge.
        args.insert("x-queue-type".into(), long_string("quorum"));
        self.insert_group_size(&mut args);
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DEAD_QUEUE_DELIVERY_LIMIT),
        );
        args
    }

    /// How the classic `messages.dead` of before becomes the quorum one
    /// (`messages.dead.migrating` holds the letters in between).
    pub fn dead_queue_migration(&self) -> Plan {
        Plan {
            queue: self.dead_queue.clone(),
            holding: format!("{}.migrating", self.dead_queue),
            lock: format!("{}.migration-lock", self.dead_queue),
            exchange: self.dead_letter_exchange.clone(),
            arguments: self.dead_queue_arguments(),
        }
    }

    /// The arguments of the dead-letter index queue.
    pub fn dead_index_queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        // Quorum: the broker's at-least-once dead-lettering confirms into it,
        // and an entry must survive a restart until a consumer recorded it.
        args.insert("x-queue-type".into(), long_string("quorum"));
        self.insert_group_size(&mut args);
        args
    }

    /// Every queue with its arguments, in declaration order.
    ///
    /// Shards 1 and up of every sharded kind come first. Their leaders are
    /// placed by `x-queue-leader-locator: balanced` (the node leading the
    /// fewest quorum queues when each is created), and every process
    /// declares at startup, the producer and each consumer at once on a
    /// fresh cluster. Declared after the other queues, which lead from the
    /// node of whichever client created them, the shards met counts that
    /// those concurrent declarations were changing, and three nodes ended
    /// with 0 + 3 + 1 or 0 + 2 + 2 of four shards (seen in
    /// `scripts/cluster-test.sh`; members were complete every time).
    /// Declared first, each shard is created after the one before it (a
    /// declaration returns once the queue exists) with nothing else created
    /// in between, so they go to distinct nodes: with shard 0 anywhere,
    /// four shards over three nodes are 2 + 1 + 1.
    fn queues(&self) -> Vec<(String, FieldTable)> {
        let sharded = || self.kinds.all().iter().filter(|k| !k.is_default());
        let mut queues = Vec::new();
        for kind in sharded() {
            for queue in self.shard_queues_of(kind).into_iter().skip(1) {
                let mut args = self.store_queue_arguments();
                // Leaders spread over the cluster's nodes: a sharded kind
                // is the path past one queue's (one node's) ceiling. Not on
                // shard 0: it is the kind's queue of before, declared as it
                // was.
                args.insert("x-queue-leader-locator".into(), long_string("balanced"));
                queues.push((queue, args));
            }
        }
        queues.push((self.store_queue.clone(), self.store_queue_arguments()));
        queues.push((self.dead_queue.clone(), self.dead_queue_arguments()));
        queues.push((
            self.dead_index_queue.clone(),
            self.dead_index_queue_arguments(),
        ));
        for delay in &self.retry_delays {
            queues.push((self.retry_queue(*delay), self.retry_queue_arguments(*delay)));
        }
        // Every other kind: a store queue with the store queue's every
        // argument, and its own delay queues.
        for kind in sharded() {
            queues.push((self.store_queue_of(kind), self.store_queue_arguments()));
            for delay in &self.retry_delays {
                queues.push((
                    self.retry_queue_of(kind, *delay),
                    self.retry_queue_arguments_of(kind, *delay),
                ));
            }
        }
        // Same arguments as a store queue: what waits there is a message
        // accepted by the broker, owed a dead letter.
        queues.push((self.unrouted_queue.clone(), self.store_queue_arguments()));
        queues
    }

    /// Declare everything, idempotently. Safe to call from every process at
    /// every start and after every reconnect. Strict: a queue that exists
    /// with other arguments fails it (see [`Self::declare_on`]).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_exchanges(channel).await?;
        for (name, args) in self.queues() {
            declare_queue(channel, &name, args).await?;
        }
        self.declare_bindings(channel, true).await
    }

    /// Declare everything on channels of `connection` (closed afterwards).
    /// A quorum queue created by a version without
    /// `x-quorum-initial-group-size` cannot be redeclared with it (RabbitMQ
    /// refuses an inequivalent argument, and closes the channel), and it
    /// keeps its membership anyway: such a queue is declared again, on a new
    /// channel, without the argument, with a warning naming `rabbitmq-queues
    /// grow`. Every queue is checked on its own, so a mix of old and new
    /// queues works too.
    ///
    /// `messages.dead` comes last, may fail, and may still be the classic
    /// queue of before: see `Topology::declare_dead_queue_on`.
    pub async fn declare_on(&self, connection: &lapin::Connection) -> lapin::Result<DeadQueue> {
        let mut channel = connection.create_channel().await?;
        self.declare_exchanges(&channel).await?;
        let legacy = Self {
            initial_group_size: None,
            ..self.clone()
        };
        let queues = self
            .queues()
            .into_iter()
            .zip(legacy.queues())
            .filter(|((name, _), _)| *name != self.dead_queue);
        for ((name, args), (_, legacy_args)) in queues {
            match declare_queue(&channel, &name, args).await {
                Ok(()) => {}
                Err(e)
                    if self.initial_group_size.is_some()
                        && e.to_string().contains("x-quorum-initial-group-size") =>
                {
                    log::warn!(
                        "queue {name} was created without x-quorum-initial-group-size; it keeps \
                         its membership (use `rabbitmq-queues grow` to add replicas)"
                    );
                    channel = connection.create_channel().await?;
                    declare_queue(&channel, &name, legacy_args).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.declare_bindings(&channel, false).await?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(self.declare_dead_queue_on(connection).await)
    }

    /// Declare `messages.dead` (quorum) and its binding on a channel of its
    /// own, waiting at most [`DEAD_QUEUE_DECLARE_TIMEOUT`]; a failure is
    /// logged, not returned.
    ///
    /// Until it is migrated it is the classic queue of before issue 17:
    /// declaring it as quorum is refused and [`DeadQueue::NeedsMigration`]
    /// says so (the classic queue keeps its binding and takes the dead
    /// letters meanwhile). A classic queue lives on one node: while that
    /// node is down, declaring it may fail or wait (seen in
    /// `scripts/cluster-test.sh`: 20 s and more with no 202), and every
    /// reconnect would wait with it; the queue and its binding exist by then
    /// (the first start declared them), so going on without them loses
    /// nothing.
    async fn declare_dead_queue_on(&self, connection: &lapin::Connection) -> DeadQueue {
        let attempt = async {
            let channel = connection.create_channel().await?;
            match declare_queue(&channel, &self.dead_queue, self.dead_queue_arguments()).await {
                Ok(()) => {}
                Err(e) if crate::dead_queue_migration::is_other_queue_type(&e) => {
                    return Ok(DeadQueue::NeedsMigration)
                }
                Err(e) => return Err(e),
            }
            bind(&channel, &self.dead_queue, &self.dead_letter_exchange).await?;
            let _ = channel.close(200, "declared".into()).await;
            Ok::<_, lapin::Error>(DeadQueue::Ready)
        };
        match tokio::time::timeout(DEAD_QUEUE_DECLARE_TIMEOUT, attempt).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                log::warn!(
                    "cannot declare {}: {e}; going on without it",
                    self.dead_queue
                );
                DeadQueue::Unknown
            }
            Err(_) => {
                log::warn!(
                    "declaring {} took over {DEAD_QUEUE_DECLARE_TIMEOUT:?} (the classic queue of \
                     before, whose node may be down?); going on without it",
                    self.dead_queue
                );
                DeadQueue::Unknown
            }
        }
    }

    async fn declare_exchanges(&self, channel: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            passive: false,     // create it if missing
            durable: true,      // survive a broker restart
            auto_delete: false, // keep it with no queue bound
            internal: false,    // clients publish to it directly
            nowait: false,      // wait so errors surface here
        };
        for exchange in [
            &self.exchange,
            &self.dead_letter_exchange,
            &self.events_exchange,
            &self.unrouted_exchange,
        ] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Fanout,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await?;
        }
        // A kind no queue is bound for goes to the alternate exchange, not
        // back to the publisher nor into the void: a third-party publisher
        // without `mandatory` would otherwise lose it silently.
        let mut args = FieldTable::default();
        args.insert(
            "alternate-exchange".into(),
            long_string(&self.unrouted_exchange),
        );
        channel
            .exchange_declare(
                self.route_exchange.as_str().into(),
                ExchangeKind::Direct,
                durable_exchange,
                args,
            )
            .await
    }

    /// The bindings; the dead-letter queue's only with `with_dead_queue`
    /// ([`Self::declare_on`] binds it on its own).
    async fn declare_bindings(
        &self,
        channel: &Channel,
        with_dead_queue: bool,
    ) -> lapin::Result<()> {
        // Fanout exchanges: the routing key is ignored. Delay queues are
        // reached through the default exchange by name: no binding.
        bind(channel, &self.store_queue, &self.exchange).await?;
        if with_dead_queue {
            bind(channel, &self.dead_queue, &self.dead_letter_exchange).await?;
        }
        bind(channel, &self.dead_index_queue, &self.dead_letter_exchange).await?;
        bind(channel, &self.unrouted_queue, &self.unrouted_exchange).await?;
        // The route exchange: each kind's queue by the kind's name (the
        // default kind too, so third parties can name every kind alike).
        for kind in self.kinds.all() {
            for (shard, queue) in self.shard_queues_of(kind).iter().enumerate() {
                let key = match shard {
                    0 => kind.to_string(),
                    shard => format!("{kind}.{shard}"),
                };
                bind_key(channel, queue, &self.route_exchange, &key).await?;
            }
        }
        Ok(())
    }

    /// Delete every exchange and queue of this topology, messages included.
    /// For tests and tear-down tooling; never called by the services.
    pub async fn delete(&self, channel: &Channel) -> lapin::Result<()> {
        let mut queues = vec![
            self.store_queue.clone(),
            self.dead_queue.clone(),
            self.dead_queue_migration().holding,
            self.dead_index_queue.clone(),
        ];
        queues.extend(self.retry_delays.iter().map(|d| self.retry_queue(*d)));
        for kind in self.kinds.all().iter().filter(|k| !k.is_default()) {
            queues.extend(self.shard_queues_of(kind));
            queues.extend(
                self.retry_delays
                    .iter()
                    .map(|d| self.retry_queue_of(kind, *d)),
            );
        }
        queues.push(self.unrouted_queue.clone());
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [
            &self.exchange,
            &self.dead_letter_exchange,
            &self.events_exchange,
            &self.route_exchange,
            &self.unrouted_exchange,
        ] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }
}

/// Bind `queue` to the fanout `exchange` (the routing key is ignored).
async fn bind(channel: &Channel, queue: &str, exchange: &str) -> lapin::Result<()> {
    bind_key(channel, queue, exchange, "").await
}

/// Bind `queue` to `exchange` with routing key `key`.
async fn bind_key(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            ShortString::from(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Declare one durable, shared queue.
async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    let durable_queue = QueueDeclareOptions {
        passive: false,
        durable: true,      // messages survive a broker restart
        exclusive: false,   // shared by every consumer replica
        auto_delete: false, // keep messages while no consumer runs
        nowait: false,
    };
    channel
        .queue_declare(name.into(), durable_queue, args)
        .await
        .map(|_| ())
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_the_contract() {
        let t = Topology::default();
        assert_eq!(t.exchange, "messages");
        assert_eq!(t.dead_letter_exchange, "messages.dlx");
        assert_eq!(t.store_queue, "messages.store");
        assert_eq!(t.dead_queue, "messages.dead");
    }

    #[test]
    fn store_queue_sets_every_argument() {
        let args = Topology::with_prefix("t1.").store_queue_arguments();
        let inner = args.inner();
        for key in [
            "x-queue-type",
            "x-dead-letter-exchange",
            "x-delivery-limit",
            "x-dead-letter-strategy",
            "x-overflow",
        ] {
            assert!(inner.contains_key(key), "{key} missing");
        }
        assert_eq!(
            inner.get("x-dead-letter-exchange"),
            Some(&long_string("t1.messages.dlx"))
        );
    }

    #[test]
    fn kinds_get_queues_of_their_own_and_default_keeps_the_old_ones() {
        let kinds = Kinds::parse("email").unwrap();
        let t = Topology::with_prefix("p.")
            .with_kinds(&kinds)
            .with_retry_delays(&[Duration::from_secs(1)]);
        let email = Kind::parse("email").unwrap();
        let default = Kind::default_kind();
        assert_eq!(t.store_queue_of(&default), "p.messages.store");
        assert_eq!(t.store_queue_of(&email), "p.messages.store.email");
        let id = Uuid::new_v4();
        assert_eq!(t.publish_target(&default, id), ("p.messages", "".into()));
        assert_eq!(
            t.publish_target(&email, id),
            ("p.messages.route", "email".into())
        );
        assert_eq!(t.kind_of_queue("p.messages.store.email"), Some(&email));
        let retry = t.retry_queue_of(&email, Duration::from_secs(1));
        assert_eq!(retry, "p.messages.retry.email.1000ms");
        assert_eq!(
            t.retry_queue_arguments_of(&email, Duration::from_secs(1))
                .inner()
                .get("x-dead-letter-routing-key"),
            Some(&long_string("p.messages.store.email"))
        );
        let names: Vec<String> = t.queues().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&retry) && names.contains(&t.unrouted_queue));
        assert_eq!(
            t.queues()
                .into_iter()
                .find(|(n, _)| n == "p.messages.store.email")
                .map(|(_, a)| a),
            Some(t.store_queue_arguments()),
            "every guarantee of the store queue"
        );
    }

    #[test]
    fn a_sharded_kind_spreads_by_a_stable_hash_and_keeps_its_first_queue() {
        let kinds = Kinds::parse("email")
            .unwrap()
            .with_shards("email:4")
            .unwrap();
        let t = Topology::with_prefix("p.").with_kinds(&kinds);
        let email = Kind::parse("email").unwrap();
        assert_eq!(
            t.shard_queues_of(&email),
            [
                "p.messages.store.email",
                "p.messages.store.email.1",
                "p.messages.store.email.2",
                "p.messages.store.email.3"
            ]
        );
        assert_eq!(t.kind_of_queue("p.messages.store.email.3"), Some(&email));
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            let id = Uuid::new_v4();
            let (_, key) = t.publish_target(&email, id);
            assert_eq!(key, t.publish_target(&email, id).1, "stable");
            let shard = shard_of(id, 4);
            assert_eq!(
                key,
                if shard == 0 {
                    "email".to_owned()
                } else {
                    format!("email.{shard}")
                }
            );
            seen[usize::from(shard)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "spread: {seen:?}");
        let queues = t.queues();
        let args = |name: &str| {
            queues
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.clone())
                .unwrap()
        };
        assert_eq!(
            args("p.messages.store.email"),
            t.store_queue_arguments(),
            "shard 0 as before"
        );
        assert_eq!(
            args("p.messages.store.email.3")
                .inner()
                .get("x-queue-leader-locator"),
            Some(&long_string("balanced"))
        );
        // The balanced shards are declared before any other queue.
        let names: Vec<&str> = queues.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..3],
            [
                "p.messages.store.email.1",
                "p.messages.store.email.2",
                "p.messages.store.email.3"
            ]
        );
    }

    #[test]
    fn retry_queues_route_back_to_the_store_queue() {
        let t = Topology::with_prefix("p.").with_retry_delays(&[
            Duration::from_secs(4),
            Duration::from_secs(1),
            Duration::from_secs(4),
        ]);
        assert_eq!(
            t.retry_delays,
            vec![Duration::from_secs(1), Duration::from_secs(4)]
        );
        assert_eq!(
            t.retry_queue(Duration::from_secs(1)),
            "p.messages.retry.1000ms"
        );
        let args = t.retry_queue_arguments(Duration::from_secs(1));
        let inner = args.inner();
        assert_eq!(
            inner.get("x-dead-letter-routing-key"),
            Some(&long_string("p.messages.store"))
        );
        assert_eq!(
            inner.get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1000))
        );
    }
}
