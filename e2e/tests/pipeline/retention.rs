//! Retention (issue 18): each kind of data goes once past its age, what is
//! inside its window stays, one process prunes at a time, and an expired
//! `Idempotency-Key` is a new request even before it is pruned.
//!
//! Rows are put in by hand with their ages (an hour past a one-hour
//! retention, ten minutes inside it): the retention runs every second,
//! and nothing waits an hour.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::prelude::*;
use e2e::{spawn_consumer, spawn_producer, wait_for, TestBroker, TestDb, TestRoles};
use serde_json::{json, Value};
use shared::db::lock::{CONSUMER_RETENTION, PRODUCER_RETENTION};
use shared::retention::{Outcome, PartitionSize, Retention, RetentionSettings, Rule, Schedule};
use shared::Env;
use tokio::sync::watch;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);

/// The short settings of these tests: every second, one-hour ages.
const SHORT: [(&str, &str); 5] = [
    ("RETENTION_INTERVAL", "1s"),
    ("IDEMPOTENCY_KEY_TTL", "1h"),
    ("DEAD_LETTER_RETENTION", "1h"),
    ("BATCH_RETENTION", "1h"),
    ("WEBHOOK_RETENTION_HOURS", "1"),
];

/// A migrated database with, for each rule, rows past it (`old-…`) and
/// rows inside it (`new-…`, or kept for another reason).
fn seeded() -> TestDb {
    let db = TestDb::new();
    shared::db::run_migrations(&mut db.connect()).unwrap();
    let old = "now() - interval '2 hours'";
    let new = "now() - interval '10 minutes'";
    let fp = "'\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea";
    for (key, at) in [
        ("old-1", old),
        ("old-2", old),
        ("old-3", old),
        ("new-1", new),
    ] {
        db.execute(&format!(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) \
             VALUES ('message', '{key}', {fp}, {at})"
        ));
    }
    // Dead letters: the message stored since (redriven) or not (still queued).
    for (tag, at, stored) in [
        ("old-stored", old, true),
        ("old-queued", old, false),
        ("new-stored", new, true),
    ] {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, tag.as_bytes());
        db.execute(&format!(
            "INSERT INTO dead_letters (id, reason, attempts, dead_lettered_at) \
             VALUES ('{id}', '{tag}', 1, {at})"
        ));
        if stored {
            db.execute(&format!(
                "INSERT INTO messages (id, content, created_at) VALUES ('{id}', '{tag}', {at})"
            ));
        }
    }
    for (tag, completed) in [
        ("old-completed", old),
        ("new-completed", new),
        ("pending", "NULL"),
    ] {
        db.execute(&format!(
            "INSERT INTO batches (id, total, created_at, completed_at, status) \
             VALUES (gen_random_uuid(), 1, {old}, {completed}, \
                     CASE WHEN {completed} IS NULL THEN 'pending' ELSE 'completed' END)"
        ));
        let _ = tag;
    }
    for (tag, status, delivered, created, due) in [
        ("old-delivered", "delivered", old, old, old),
        ("new-delivered", "delivered", new, old, old),
        ("old-failed", "failed", "NULL", old, old),
        ("new-failed", "failed", "NULL", new, new),
        ("old-undelivered", "pending", "NULL", old, old),
        ("new-undelivered", "pending", "NULL", new, new),
        (
            "retrying",
            "pending",
            "NULL",
            old,
            "now() + interval '1 hour'",
        ),
    ] {
        db.execute(&format!(
            "INSERT INTO webhook_deliveries \
               (id, subject_id, event_type, url, payload, status, delivered_at, created_at, next_attempt_at) \
             VALUES (gen_random_uuid(), gen_random_uuid(), 'message.stored', 'http://127.0.0.1:9/', \
                     '{tag}', '{status}', {delivered}, {created}, {due})"
        ));
    }
    db
}

/// The rows of `sql` (one text column `t`), sorted.
fn texts(db: &TestDb, sql: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        t: String,
    }
    let mut rows: Vec<String> = diesel::sql_query(sql)
        .load::<Row>(&mut db.connect())
        .unwrap()
        .into_iter()
        .map(|r| r.t)
        .collect();
    rows.sort();
    rows
}

fn survivors(db: &TestDb) -> BTreeMap<&'static str, Vec<String>> {
    BTreeMap::from([
        (
            "idempotency_keys",
            texts(db, "SELECT key AS t FROM idempotency_keys"),
        ),
        (
            "dead_letters",
            texts(db, "SELECT reason AS t FROM dead_letters"),
        ),
        (
            "batches",
            texts(
                db,
                "SELECT coalesce(to_char(completed_at, 'HH24:MI'), 'pending') AS t FROM batches",
            ),
        ),
        (
            "webhook_deliveries",
            texts(db, "SELECT payload AS t FROM webhook_deliveries"),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_data_goes_past_its_age_and_stays_inside_it() {
    let db = seeded();
    let broker = TestBroker::new().await;
    // No WEBHOOK_SECRET: no deliverer, and the owed rows still expire.
    let consumer = spawn_consumer(&db, &broker, &SHORT).await;
    // The producer prunes the idempotency keys (the consumer's role never
    // sees them).
    let producer = spawn_producer(&db, &broker, &SHORT).await;
    wait_for(
        "the retentions' first runs",
        Duration::from_secs(20),
        || async {
            (db.scalar("SELECT count(*) AS n FROM webhook_deliveries") == 4
                && db.scalar("SELECT count(*) AS n FROM idempotency_keys") == 1)
                .then_some(())
        },
    )
    .await;
    let kept = survivors(&db);
    assert_eq!(kept["idempotency_keys"], ["new-1"]);
    // A record of a dead letter still queued stays, whatever its age.
    assert_eq!(kept["dead_letters"], ["new-stored", "old-queued"]);
    assert_eq!(kept["batches"].len(), 2, "{:?}", kept["batches"]);
    assert!(kept["batches"].contains(&"pending".to_owned()));
    assert_eq!(
        kept["webhook_deliveries"],
        ["new-delivered", "new-failed", "new-undelivered", "retrying"]
    );
    // The messages themselves are the user's data: all kept.
    assert_eq!(db.count(), 2);
    consumer.stop().await;
    producer.stop().await;
}

/// The consumer's and the producer's retention, one row per statement.
fn retentions(url: &str) -> (Retention, Retention) {
    let env = Env::from_pairs([
        ("RETENTION_BATCH", "1"),
        ("DEAD_LETTER_RETENTION", "1h"),
        ("BATCH_RETENTION", "1h"),
        ("WEBHOOK_RETENTION_HOURS", "1"),
    ]);
    let settings = RetentionSettings::from_env(&env, HOUR).unwrap();
    let consumer = Retention::new(url, settings.schedule, settings.rules(), CONSUMER_RETENTION);
    let producer = Retention::new(
        url,
        Schedule::from_env(&env).unwrap(),
        vec![Rule::idempotency_keys(HOUR)],
        PRODUCER_RETENTION,
    );
    (consumer, producer)
}

fn pruned(outcome: Outcome) -> BTreeMap<&'static str, usize> {
    match outcome {
        Outcome::Pruned(report) => report.deleted,
        other => panic!("not pruned: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_prunes_at_a_time_in_bounded_batches() {
    let db = seeded();
    let (_stop, running) = watch::channel(false);
    // Another consumer holds the lock: this one skips the round...
    let mut holder = db.connect();
    assert!(shared::db::lock::try_lock(&mut holder, CONSUMER_RETENTION).unwrap());
    let (consumer, producer) = retentions(&db.url);
    assert_eq!(consumer.run_once(&running).await.unwrap(), Outcome::Skipped);
    assert_eq!(db.scalar("SELECT count(*) AS n FROM batches"), 3);
    // ...while the producers' lock is another: they prune their own table.
    let deleted = pruned(producer.run_once(&running).await.unwrap());
    assert_eq!(deleted["idempotency_keys_expired"], 3);
    // Released: this one prunes, one row per statement, to the end.
    shared::db::lock::unlock_all(&mut holder).unwrap();
    let deleted = pruned(consumer.run_once(&running).await.unwrap());
    assert_eq!(deleted["dead_letters_settled"], 1);
    assert_eq!(deleted["batches_completed"], 1);
    assert_eq!(deleted["webhooks_delivered"], 1);
    assert_eq!(deleted["webhooks_failed"], 1);
    assert_eq!(deleted["webhooks_undelivered"], 1);
    // The lock was let go: another process can take it.
    assert!(shared::db::lock::try_lock(&mut holder, CONSUMER_RETENTION).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_roles_may_prune_what_their_retention_deletes() {
    let db = seeded();
    let roles = TestRoles::create(&db);
    roles.migrate(&db);
    let (_stop, running) = watch::channel(false);
    let (consumer, _) = retentions(&roles.url(&db, &roles.consumer));
    let (_, producer) = retentions(&roles.url(&db, &roles.producer));
    let deleted = pruned(consumer.run_once(&running).await.unwrap());
    assert_eq!(deleted.values().sum::<usize>(), 5, "{deleted:?}");
    let deleted = pruned(producer.run_once(&running).await.unwrap());
    assert_eq!(deleted["idempotency_keys_expired"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_is_a_new_request_before_it_is_pruned() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("IDEMPOTENCY_KEY_TTL", "1h")]).await;
    // The retention would prune only in a day: the producer alone decides.
    let consumer = spawn_consumer(&db, &broker, &[("RETENTION_INTERVAL", "1d")]).await;
    let app = &producer;
    let post = |content: &'static str| async move {
        let body = json!({ "content": content });
        app.post_with_key("/messages", "order-7", &body).await
    };
    let first: Value = post("pay 10").await.json().await.unwrap();
    // Inside the TTL: the same request is the same message, another a 422.
    let again: Value = post("pay 10").await.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(post("pay 99").await.status(), 422);
    // The binding is two hours old now: past the TTL.
    db.execute("UPDATE idempotency_keys SET created_at = created_at - interval '2 hours'");
    let renewed = post("pay 99").await;
    assert_eq!(renewed.status(), 202, "an expired key is a new request");
    let renewed: Value = renewed.json().await.unwrap();
    assert_ne!(renewed["id"], first["id"], "with an id of its own");
    // ...and is stored, not dropped as a duplicate of the first.
    wait_for("both messages", Duration::from_secs(20), || async {
        (db.count() == 2).then_some(())
    })
    .await;
    let mut contents: Vec<String> = db.messages().into_iter().map(|m| m.content).collect();
    contents.sort();
    assert_eq!(contents, ["pay 10", "pay 99"]);
    // The new binding is live: the same request again is the same message.
    let again: Value = post("pay 99").await.json().await.unwrap();
    assert_eq!(again, renewed);
    let looked_up = producer
        .get_json("/dashboard/api/idempotency-key?key=order-7")
        .await;
    assert_eq!(looked_up["id"], renewed["id"]);
    let unbound = producer
        .get_json("/dashboard/api/idempotency-key?key=never-used")
        .await;
    assert_eq!(unbound["id"], Value::Null);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_keyed_request_carries_the_time_of_the_first() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    // No consumer: both publishes wait in the queue, to be read there.
    let body = json!({ "content": "once" });
    for _ in 0..2 {
        let res = producer.post_with_key("/messages", "same", &body).await;
        assert_eq!(res.status(), 202);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies = broker.take_all(&broker.topology.store_queue).await;
    assert_eq!(bodies.len(), 2);
    let created: Vec<Value> = bodies
        .iter()
        .map(|b| serde_json::from_slice::<Value>(&b.delivery.data).unwrap()["created_at"].clone())
        .collect();
    assert_eq!(created[0], created[1], "the same partition and row");
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_and_the_last_prune_are_visible() {
    let db = seeded();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(&db, &broker, &SHORT).await;
    let producer = spawn_producer(&db, &broker, &SHORT).await;
    let metrics = wait_for("a run recorded", Duration::from_secs(20), || async {
        let m = consumer.metrics().await;
        (m.get("pipeline_retention_last_run_success", &[]) == Some(1.0)
            && m.get("pipeline_table_bytes", &[("table", "messages")])
                .is_some())
        .then_some(m)
    })
    .await;
    assert!(metrics.value("pipeline_retention_last_run_timestamp_seconds", &[]) > 0.0);
    assert_eq!(
        metrics.value(
            "pipeline_retention_deleted_total",
            &[("rule", "webhooks_failed")]
        ),
        1.0
    );
    for table in [
        "messages",
        "dead_letters",
        "batches",
        "webhook_deliveries",
        "idempotency_keys",
    ] {
        assert!(
            metrics.value("pipeline_table_bytes", &[("table", table)]) > 0.0,
            "{table}"
        );
    }
    // The oldest dead-letter record left is the queued one, two hours old.
    let age = metrics.value(
        "pipeline_table_oldest_age_seconds",
        &[("table", "dead_letters")],
    );
    assert!((7000.0..8000.0).contains(&age), "{age}");
    // The dashboard shows the sizes and the settings.
    let overview = producer.get_json("/dashboard/api/overview").await;
    let tables = overview["tables"].as_array().unwrap();
    assert_eq!(
        tables.len(),
        shared::db::table_stats::TABLES.len(),
        "{tables:?}"
    );
    assert_eq!(tables[0]["table"], "messages");
    assert_eq!(overview["retention"]["dead_letters"], "1h");
    assert_eq!(overview["retention"]["messages"], "forever");
    assert_eq!(overview["retention"]["message_partition"], "month");
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_dead_letter_queue_is_reported_not_failed_nor_cut() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(&db, &broker, &[("DEAD_LETTER_ALERT_DEPTH", "2")]).await;
    for _ in 0..3 {
        broker
            .publish_raw(b"not json", lapin::BasicProperties::default())
            .await;
    }
    let body = wait_for("the alert", Duration::from_secs(30), || async {
        let res = consumer.get("/readyz").await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        (body["dead_letters"]["queued"] == 3).then_some((status, body))
    })
    .await;
    assert_eq!(body.0, 200, "an alert, not a failure: {}", body.1);
    assert_eq!(body.1["dead_letters"]["alert"], true);
    let metrics = consumer.metrics().await;
    assert_eq!(metrics.value("pipeline_dead_letters_queued", &[]), 3.0);
    assert_eq!(metrics.value("pipeline_dead_letter_alert_depth", &[]), 2.0);
    // Nothing is cut: all three wait in the queue.
    assert_eq!(broker.depth(&broker.topology.dead_queue).await, 3);
    consumer.stop().await;
}

#[test]
fn the_consumers_role_may_read_the_tables_figures() {
    let db = seeded();
    let roles = TestRoles::create(&db);
    roles.migrate(&db);
    let mut conn = diesel::PgConnection::establish(&roles.url(&db, &roles.consumer)).unwrap();
    let lower = PartitionSize::Hour.start(chrono::Utc::now()) + chrono::Duration::hours(5);
    shared::db::message_partitions::create(&mut conn, lower, lower + chrono::Duration::hours(1))
        .unwrap();
    let sizes = shared::db::table_stats::sizes(&mut conn).unwrap();
    assert_eq!(sizes.len(), shared::db::table_stats::TABLES.len());
    let oldest = shared::db::table_stats::oldest(&mut conn).unwrap();
    assert_eq!(oldest.len(), shared::db::table_stats::TABLES.len());
}

/// During a rolling upgrade, a producer of before keys expired binds a key
/// without naming `timed_ids` and answers with the id of the key alone; a
/// retry that reaches a new producer must get that same id, or the message
/// would be stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bound_by_an_older_producer_keeps_the_id_of_the_key_alone() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let body = json!({ "content": "pay 5" });
    // The request's fingerprint, as a binding of this version records it.
    let res = producer.post_with_key("/messages", "probe", &body).await;
    assert_eq!(res.status(), 202);
    // What the older producer wrote for the same request under its key
    // (its insert names these three columns).
    db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint) \
         SELECT scope, 'from-before', fingerprint FROM idempotency_keys WHERE key = 'probe'",
    );
    let retried = producer
        .post_with_key("/messages", "from-before", &body)
        .await;
    assert_eq!(retried.status(), 202);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(
        retried["id"],
        json!(producer::idempotency::id_for_key("from-before")),
        "the id the older producer answered"
    );
    // A key this version binds gets ids of the key and its time.
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM idempotency_keys WHERE key = 'probe' AND timed_ids"),
        1
    );
    producer.stop().await;
}
