//! Production defects that only show after days (issue 8): each test here
//! reproduces one scenario and failed on the code before its fix.

use std::time::Duration;

use diesel::RunQueryDsl;
use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestBroker, TestDb};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use reqwest::Method;
use serde_json::{json, Value};
use shared::Envelope;
use uuid::Uuid;

/// #3: a full disk (SQLSTATE 53100) while PostgreSQL still answers pings is
/// an outage: messages are held and stored once it clears, none is
/// dead-lettered (the dead-letter record cannot be written either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_messages_instead_of_dead_lettering_them() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // Quick retries, so that treating the outage as poison shows at once.
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("MAX_ATTEMPTS", "2"),
            ("RETRY_BASE_MS", "100"),
            ("RETRY_MAX_MS", "200"),
        ],
    )
    .await;
    let mut conn = db.connect();
    diesel::sql_query(
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         RAISE EXCEPTION 'could not extend file \"base/1/2\": No space left on device' \
         USING ERRCODE = 'disk_full'; END $$",
    )
    .execute(&mut conn)
    .unwrap();
    for table in ["messages", "dead_letters"] {
        diesel::sql_query(format!(
            "CREATE TRIGGER disk_full BEFORE INSERT OR UPDATE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION disk_full()"
        ))
        .execute(&mut conn)
        .unwrap();
    }
    let sent: Vec<Envelope> = (0..20)
        .map(|i| Envelope::new(format!("disk {i}")))
        .collect();
    for envelope in &sent {
        broker.publish(envelope).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        broker.depth(&broker.topology.dead_queue).await,
        0,
        "a full disk dead-lettered messages"
    );
    for table in ["messages", "dead_letters"] {
        diesel::sql_query(format!("DROP TRIGGER disk_full ON {table}"))
            .execute(&mut conn)
            .unwrap();
    }
    wait_for("every message stored", Duration::from_secs(30), || async {
        (db.count() == 20).then_some(())
    })
    .await;
    assert_eq!(db.distinct_ids(), 20);
    assert_eq!(db.scalar("SELECT count(*) AS n FROM dead_letters"), 0);
    assert_eq!(consumer.stats.snapshot().dead_lettered, 0);
    consumer.stop().await;
}

/// #7: a session that fails after it started consuming does not reset the
/// reconnect backoff (only a settled batch does), so a failure on every
/// batch does not reconnect ten times a second and burn the delivery limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_every_batch_backs_off() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // A queue that refuses everything, bound to the dead-letter exchange:
    // every dead letter is nacked, so every session fails on its batch.
    let channel = broker.channel().await;
    let blocker = format!("{}blocker", broker.prefix);
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(
            blocker.as_str().into(),
            QueueDeclareOptions {
                auto_delete: false,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            blocker.as_str().into(),
            broker.topology.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    broker
        .publish_raw(
            b"not json",
            BasicProperties::default().with_message_id(Uuid::new_v4().to_string().into()),
        )
        .await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let sessions = consumer.stats.snapshot().sessions;
    consumer.stop().await;
    channel
        .queue_delete(blocker.as_str().into(), Default::default())
        .await
        .unwrap();
    assert!(
        sessions <= 10,
        "{sessions} sessions in 6 s: the backoff was reset by sessions that settled nothing"
    );
}

/// #7: a message RabbitMQ dead-letters by itself (delivery limit) is
/// reported `dead_lettered`, not `not_found`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_dead_letters_are_visible_in_the_status() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let envelope = Envelope::new("redelivered for ever".into());
    broker.publish(&envelope).await;
    // Another client that keeps handing the message back.
    let channel = broker.channel().await;
    let mut consumer = channel
        .basic_consume(
            broker.topology.store_queue.as_str().into(),
            "crashing-client".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
        let Ok(Some(Ok(delivery))) = next else { break };
        delivery
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue: true,
            })
            .await
            .unwrap();
    }
    let _ = channel.close(200, "".into()).await;
    assert_eq!(broker.depth(&broker.topology.dead_queue).await, 1);

    let producer = spawn_producer(&db, &broker, &[]).await;
    let pipeline = spawn_consumer(&db, &broker, &[]).await;
    let body = producer
        .wait_for_message(
            envelope.id,
            "the dead letter recorded",
            Duration::from_secs(15),
            |body| body["status"] == "dead_lettered",
        )
        .await;
    assert_eq!(body["reason"], "delivery_limit", "{body}");
    pipeline.stop().await;
    producer.stop().await;
}

/// #8: publishing does not touch the database, so a database outage leaves
/// the producer ready (it says the database is down in the body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_stays_ready_while_only_the_database_is_down() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let proxy = TcpProxy::to_database().await;
    let url = db.url_through(&proxy);
    let producer = spawn_producer(&db, &broker, &[("DATABASE_URL", &url)]).await;
    proxy.cut();
    let res = producer.get("/readyz").await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["database"], "down", "{body}");
    let metrics = producer.metrics().await;
    assert_eq!(metrics.get("pipeline_database_up", &[]), Some(0.0));
    let res = producer
        .post_json("/messages", &json!({"content": "still accepted"}))
        .await;
    assert_eq!(res.status(), 202);
    producer.stop().await;
}

/// #9: when the channel dies while a batch waits out a database outage,
/// the session ends (and readiness says so) instead of retrying for ever
/// on a channel that can no longer ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_channel_ends_the_database_outage_loop() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let pg = TcpProxy::to_database().await;
    let amqp = TcpProxy::to_broker().await;
    let db_url = db.url_through(&pg);
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[("DATABASE_URL", &db_url), ("AMQP_URL", &amqp.amqp_url())],
    )
    .await;
    wait_for("consuming", Duration::from_secs(10), || async {
        (consumer.stats.snapshot().sessions == 1).then_some(())
    })
    .await;
    pg.cut();
    broker.publish(&Envelope::new("held".into())).await;
    wait_for("the batch held", Duration::from_secs(10), || async {
        (consumer.stats.snapshot().received == 1).then_some(())
    })
    .await;
    amqp.cut();
    let body: Value = wait_for("the session to end", Duration::from_secs(15), || async {
        let body: Value = consumer.get("/readyz").await.json().await.unwrap();
        (body["broker"] == "down").then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not ready");
    pg.restore();
    amqp.restore();
    wait_for(
        "stored after both came back",
        Duration::from_secs(30),
        || async { (db.count() == 1).then_some(()) },
    )
    .await;
    consumer.stop().await;
}

/// #10: a dead letter does not keep the per-message TTL of the original,
/// which would make it expire silently inside the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_do_not_expire() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    broker
        .publish_raw(
            b"not json",
            BasicProperties::default()
                .with_message_id(Uuid::new_v4().to_string().into())
                .with_expiration("600000".into()),
        )
        .await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    wait_for("dead-lettered", Duration::from_secs(10), || async {
        (consumer.stats.snapshot().dead_lettered == 1).then_some(())
    })
    .await;
    let dead = broker.take_all(&broker.topology.dead_queue).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery.properties.expiration(), &None);
    consumer.stop().await;
}

/// #11: clients see a category, never PostgreSQL's text (constraint and
/// trigger names); the admin listing keeps the detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_a_category_not_database_internals() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "admin-secret")]).await;
    db.execute(
        "ALTER TABLE messages ADD CONSTRAINT secret_rule_xyz CHECK (content <> 'forbidden')",
    );
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let id = producer
        .post_message(&json!({"content": "forbidden"}))
        .await;
    let body = producer
        .wait_for_message(id, "dead-lettered", Duration::from_secs(15), |body| {
            body["status"] == "dead_lettered"
        })
        .await;
    assert_eq!(body["reason"], "rejected_by_database", "{body}");
    assert!(!body.to_string().contains("secret_rule_xyz"), "{body}");
    let admin: Value = producer
        .admin(Method::GET, "/dead-letters")
        .await
        .json()
        .await
        .unwrap();
    assert!(admin.to_string().contains("secret_rule_xyz"), "{admin}");
    consumer.stop().await;
    producer.stop().await;
}
