//! Unexpected per-message failures are retried through delay queues, then
//! dead-lettered with the reason and the attempt count.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use e2e::broker::header;
use e2e::{spawn_consumer, wait_for, TestBroker, TestDb};
use shared::Envelope;

const TRIGGER: &str = r#"
CREATE SEQUENCE flaky_seq;
CREATE FUNCTION flaky() RETURNS trigger AS $$
BEGIN
    IF NEW.content = 'always fails' THEN
        RAISE EXCEPTION 'simulated failure';
    END IF;
    -- nextval is not rolled back with the failed transaction.
    IF NEW.content = 'flaky' AND nextval('flaky_seq') <= 2 THEN
        RAISE EXCEPTION 'simulated flake';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER flaky BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION flaky();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_errors_are_retried_with_delays_then_dead_lettered() {
    let db = TestDb::new();
    let mut broker = TestBroker::new().await;
    // MAX_ATTEMPTS=3, base 200 ms: waits of 200 ms and 800 ms.
    broker
        .add_retry_delays(&[Duration::from_millis(200), Duration::from_millis(800)])
        .await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[("MAX_ATTEMPTS", "3"), ("RETRY_BASE_MS", "200")],
    )
    .await;
    db.connect().batch_execute(TRIGGER).unwrap();

    let doomed = Envelope::new("always fails".into());
    let flaky = Envelope::new("flaky".into());
    let fine = Envelope::new("fine".into());
    for envelope in [&doomed, &flaky, &fine] {
        broker.publish(envelope).await;
    }

    wait_for(
        "2 rows and 1 dead letter",
        Duration::from_secs(20),
        || async {
            let s = consumer.stats.snapshot();
            (s.stored == 2 && s.dead_lettered == 1).then_some(())
        },
    )
    .await;
    let stored: Vec<_> = db.messages().into_iter().map(|m| m.id).collect();
    assert!(stored.contains(&flaky.id) && stored.contains(&fine.id));
    assert!(!stored.contains(&doomed.id));

    let dead = broker.take_all(&broker.topology.dead_queue).await;
    assert_eq!(dead.len(), 1);
    let props = &dead[0].delivery.properties;
    assert_eq!(
        props.message_id().as_ref().unwrap().as_str(),
        doomed.id.to_string()
    );
    assert_eq!(header(props, "x-attempts").as_deref(), Some("3"));
    let reason = header(props, "x-error").unwrap();
    assert!(reason.contains("simulated failure"), "{reason}");

    let s = consumer.stats.snapshot();
    // Two waits for the doomed one, at least one for the flaky one.
    assert!(s.retries >= 3, "{s:?}");
    let m = consumer.metrics().await;
    assert_eq!(
        m.value("pipeline_consumer_retries_total", &[]),
        s.retries as f64
    );
    assert_eq!(
        m.value(
            "pipeline_consumer_dead_lettered_total",
            &[("reason", "max_attempts")]
        ),
        1.0
    );
    for delay in broker.topology.retry_delays.clone() {
        assert_eq!(broker.depth(&broker.topology.retry_queue(delay)).await, 0);
    }
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);
    consumer.stop().await;
}
