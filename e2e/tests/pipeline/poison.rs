//! Messages that can never be stored end in the dead-letter queue with a
//! reason, and the good ones around them keep flowing.

use std::time::Duration;

use e2e::broker::header;
use e2e::{spawn_consumer, wait_for, TestBroker, TestDb};
use lapin::BasicProperties;
use shared::Envelope;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_a_reason_and_good_messages_flow() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;

    // Queue everything before the consumer starts, so the poison shares a
    // batch with good messages.
    let good: Vec<Envelope> = (0..10)
        .map(|i| Envelope::new(format!("good {i}")))
        .collect();
    let with_id = |id: Uuid| BasicProperties::default().with_message_id(id.to_string().into());
    broker.publish(&good[0]).await;
    broker
        .publish_raw(b"\x00\x01 not json", with_id(Uuid::new_v4()))
        .await;
    broker.publish(&good[1]).await;
    broker
        .publish_raw(
            br#"{"content": "no id anywhere"}"#,
            BasicProperties::default(),
        )
        .await;
    broker.publish(&good[2]).await;
    broker
        .publish_raw(
            br#"{"content": "nul \u0000 inside"}"#,
            with_id(Uuid::new_v4()),
        )
        .await;
    for envelope in &good[3..] {
        broker.publish(envelope).await;
    }
    // A message from another client using only AMQP properties is fine.
    let foreign = Uuid::new_v4();
    broker
        .publish_raw(br#"{"content": "from another client"}"#, with_id(foreign))
        .await;

    let consumer = spawn_consumer(&db, &broker, &[("BATCH_WAIT_MS", "200")]).await;
    wait_for(
        "11 rows and 3 dead letters",
        Duration::from_secs(15),
        || async {
            let s = consumer.stats.snapshot();
            (s.stored == 11 && s.dead_lettered == 3).then_some(())
        },
    )
    .await;

    assert_eq!(db.count(), 11);
    let stored: Vec<Uuid> = db.messages().iter().map(|m| m.id).collect();
    for envelope in &good {
        assert!(stored.contains(&envelope.id));
    }
    assert!(stored.contains(&foreign));

    let dead = broker.take_all(&broker.topology.dead_queue).await;
    assert_eq!(dead.len(), 3);
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| header(&m.delivery.properties, "x-error").expect("x-error header"))
        .collect();
    assert!(reasons[0].contains("not a JSON object"), "{reasons:?}");
    assert!(reasons[1].contains("message id is missing"), "{reasons:?}");
    assert!(reasons[2].contains("NUL"), "{reasons:?}");
    assert_eq!(
        dead[0].delivery.data, b"\x00\x01 not json",
        "payload kept as sent"
    );
    // The two with a UUID id are recorded for status look-ups; the one
    // without an id cannot be.
    assert_eq!(db.scalar("SELECT count(*) AS n FROM dead_letters"), 2);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);

    // And the consumer is still running: a later message is stored.
    broker.publish(&Envelope::new("after".into())).await;
    wait_for("the later message", Duration::from_secs(10), || async {
        (db.count() == 12).then_some(())
    })
    .await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_database_rejects_is_isolated_from_its_batch() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(&db, &broker, &[("BATCH_WAIT_MS", "300")]).await;
    // A rule only the database knows about.
    db.execute("ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (content <> 'forbidden')");

    let batch = [
        Envelope::new("a".into()),
        Envelope::new("forbidden".into()),
        Envelope::new("b".into()),
    ];
    for envelope in &batch {
        broker.publish(envelope).await;
    }
    wait_for(
        "2 rows and 1 dead letter",
        Duration::from_secs(15),
        || async {
            let s = consumer.stats.snapshot();
            (s.stored == 2 && s.dead_lettered == 1).then_some(())
        },
    )
    .await;
    assert_eq!(db.count(), 2);
    let dead = broker.take_all(&broker.topology.dead_queue).await;
    assert_eq!(dead.len(), 1);
    let reason = header(&dead[0].delivery.properties, "x-error").unwrap();
    assert!(reason.contains("database rejected"), "{reason}");
    assert_eq!(
        dead[0]
            .delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        batch[1].id.to_string()
    );

    // The job status tells the truth about each id.
    let producer = e2e::spawn_producer(&db, &broker, &[]).await;
    let status = |id: uuid::Uuid| {
        let producer = &producer;
        async move { producer.get_status_json(&format!("/messages/{id}")).await }
    };
    let (code, body) = status(batch[1].id).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "dead_lettered");
    assert_eq!(body["attempts"], 1);
    // Clients get the category; the detail is in the admin-only x-error.
    assert_eq!(body["reason"], "rejected_by_database", "{body}");
    let (code, body) = status(batch[0].id).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("stored")));
    let (code, body) = status(uuid::Uuid::new_v4()).await;
    assert_eq!((code, body["status"].as_str()), (404, Some("not_found")));
    assert_eq!(db.scalar("SELECT count(*) AS n FROM dead_letters"), 1);
    producer.stop().await;

    let m = consumer.metrics().await;
    let dead_lettered = |reason| {
        m.value(
            "pipeline_consumer_dead_lettered_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(
        (
            dead_lettered("rejected"),
            dead_lettered("invalid"),
            dead_lettered("max_attempts")
        ),
        (1.0, 0.0, 0.0)
    );
    consumer.stop().await;
}
