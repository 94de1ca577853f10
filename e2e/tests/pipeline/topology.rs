//! The broker-side promises of the topology (`shared::topology`), checked
//! on whatever broker `TEST_AMQP_URL` names: the local RabbitMQ 3.10 by
//! default, and the compose stack's RabbitMQ 4.0 in `scripts/compose-test.sh`.
//! Declaring is idempotent and the arguments are really in force; a rejected
//! message is dead-lettered with its reason; the delivery limit dead-letters a
//! message the broker redelivered too often; a delay queue hands an expired
//! retry back to the store queue.

use std::time::Duration;

use e2e::broker::header;
use e2e::{wait_for, TestBroker};
use lapin::options::{BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation};
use shared::topology::DELIVERY_LIMIT;
use uuid::Uuid;

fn with_id(id: Uuid) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(id.to_string().into())
        .with_delivery_mode(2)
}

/// Declare `queue` with `args` on a fresh channel; the broker's refusal as text.
async fn declare_with(broker: &TestBroker, queue: &str, args: FieldTable) -> Result<(), String> {
    let channel = broker.channel().await;
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let result = channel
        .queue_declare(queue.into(), options, args)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = channel.close(200, "".into()).await;
    result
}

fn queue_type(kind: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(kind)),
    );
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_is_idempotent_and_the_queue_types_are_in_force() {
    let broker = TestBroker::new().await;
    let topology = &broker.topology;

    // Every process declares at every start and reconnect: a second
    // declaration with the same arguments must be accepted as is.
    let channel = broker.channel().await;
    topology
        .declare(&channel)
        .await
        .expect("declaring the topology a second time");
    let _ = channel.close(200, "".into()).await;

    // The store queue and both dead-letter queues really are quorum queues
    // (replicated): declaring any of them as a classic queue is refused.
    let mut classic = topology.store_queue_arguments();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("classic")),
    );
    let refused = declare_with(&broker, &topology.store_queue, classic).await;
    let err = refused.expect_err("the store queue accepted x-queue-type=classic");
    assert!(err.contains("x-queue-type"), "{err}");
    for queue in [&topology.dead_queue, &topology.dead_index_queue] {
        let refused = declare_with(&broker, queue, queue_type("classic")).await;
        let err = refused.expect_err(&format!("{queue} accepted x-queue-type=classic"));
        assert!(err.contains("x-queue-type"), "{err}");
    }
    // The dead-letter queue has no dead-letter exchange of its own (nothing
    // leaves it but by redrive or purge), and a delivery limit no browse
    // reaches (RabbitMQ 4.x would otherwise drop a dead letter after 20
    // returns).
    let dead_args = topology.dead_queue_arguments();
    assert!(!dead_args.inner().contains_key("x-dead-letter-exchange"));
    assert_eq!(
        dead_args.inner().get("x-delivery-limit"),
        Some(&AMQPValue::LongInt(i32::MAX))
    );

    // Every other argument is in force too: declaring the store queue with
    // any one of them changed is refused, naming that argument.
    let changes = [
        ("x-dead-letter-exchange", long("elsewhere")),
        ("x-delivery-limit", AMQPValue::LongInt(DELIVERY_LIMIT + 1)),
        ("x-dead-letter-strategy", long("at-most-once")),
        ("x-overflow", long("drop-head")),
    ];
    for (name, value) in changes {
        let mut args = topology.store_queue_arguments();
        assert!(
            args.inner().contains_key(name),
            "the store queue sets {name}"
        );
        args.insert(name.into(), value);
        let err = declare_with(&broker, &topology.store_queue, args)
            .await
            .expect_err(&format!("the store queue accepted another {name}"));
        assert!(err.contains(name), "{err}");
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_message_is_dead_lettered_with_its_reason() {
    let broker = TestBroker::new().await;
    let topology = &broker.topology;
    let id = Uuid::new_v4();
    broker.publish_raw(b"reject me", with_id(id)).await;

    let channel = broker.channel().await;
    let message = wait_for(
        "the message in the store queue",
        Duration::from_secs(10),
        || {
            let channel = channel.clone();
            let queue = topology.store_queue.clone();
            async move {
                channel
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                    .await
                    .unwrap()
            }
        },
    )
    .await;
    message
        .delivery
        .acker
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    // At-least-once dead-lettering moves it asynchronously, after the
    // dead-letter queue confirmed it.
    wait_for("the dead letter", Duration::from_secs(10), || async {
        (broker.depth(&topology.dead_queue).await == 1).then_some(())
    })
    .await;
    let dead = broker.take_all(&topology.dead_queue).await;
    assert_eq!(dead.len(), 1);
    let properties = &dead[0].delivery.properties;
    assert_eq!(dead[0].delivery.data, b"reject me");
    assert_eq!(
        properties.message_id().as_ref().map(|s| s.to_string()),
        Some(id.to_string())
    );
    assert_eq!(
        header(properties, "x-first-death-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(
        header(properties, "x-first-death-queue").as_deref(),
        Some(topology.store_queue.as_str())
    );
    assert_eq!(broker.depth(&topology.store_queue).await, 0);
    let _ = channel.close(200, "".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_limit_dead_letters_a_message_redelivered_too_often() {
    let broker = TestBroker::new().await;
    let topology = &broker.topology;
    let id = Uuid::new_v4();
    broker
        .publish_raw(b"crashes every consumer", with_id(id))
        .await;

    // Each nack with requeue stands for a consumer that took the message and
    // died with it: the broker hands it out again, counting deliveries.
    let channel = broker.channel().await;
    let mut deliveries = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not dead-lettered after {deliveries} deliveries"
        );
        let got = channel
            .basic_get(
                topology.store_queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap();
        match got {
            Some(message) => {
                deliveries += 1;
                message
                    .delivery
                    .acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
                    .unwrap();
            }
            None if broker.depth(&topology.dead_queue).await > 0 => break,
            // Requeued but not visible yet, or being dead-lettered.
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let limit = u32::try_from(DELIVERY_LIMIT).unwrap();
    // RabbitMQ 3.10 and 4.0 both count a requeue as a delivery and let
    // through `limit` redeliveries: the message is handed out limit + 1 times.
    assert_eq!(deliveries, limit + 1, "deliveries before the dead-letter");

    let dead = broker.take_all(&topology.dead_queue).await;
    assert_eq!(dead.len(), 1);
    let properties = &dead[0].delivery.properties;
    assert_eq!(
        properties.message_id().as_ref().map(|s| s.to_string()),
        Some(id.to_string())
    );
    assert_eq!(
        header(properties, "x-first-death-reason").as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(broker.depth(&topology.store_queue).await, 0);
    let _ = channel.close(200, "".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_retry_goes_back_to_the_store_queue() {
    let mut broker = TestBroker::new().await;
    let delay = Duration::from_millis(300);
    broker.add_retry_delays(&[delay]).await;
    let topology = broker.topology.clone();

    // What the consumer does with a row that failed unexpectedly: park it in
    // the delay queue, through the default exchange, and wait for a confirm.
    let channel = broker.channel().await;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let confirm = channel
        .basic_publish(
            "".into(),
            topology.retry_queue(delay).as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            b"try again later",
            with_id(id),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(confirm, Confirmation::Ack(None));

    // After the TTL the broker moves it to the store queue (and nowhere else).
    wait_for(
        "the retry back in the store queue",
        Duration::from_secs(15),
        || async { (broker.depth(&topology.store_queue).await == 1).then_some(()) },
    )
    .await;
    let back = broker.take_all(&topology.store_queue).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].delivery.data, b"try again later");
    assert_eq!(
        header(&back[0].delivery.properties, "x-first-death-reason").as_deref(),
        Some("expired")
    );
    assert_eq!(broker.depth(&topology.retry_queue(delay)).await, 0);
    assert_eq!(broker.depth(&topology.dead_queue).await, 0);
    let _ = channel.close(200, "".into()).await;
}
