//! Stored messages partitioned by time (issue 18): partitions are made
//! ahead and dropped whole past `MESSAGE_RETENTION`, what is inside the
//! window stays and is found by id; a redelivery is stored once whatever
//! partition its time falls in; an existing table is migrated in place.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use diesel::pg::Pg;
use diesel_migrations::MigrationHarness;
use e2e::{spawn_consumer, spawn_producer, wait_for, TestBroker, TestDb};
use lapin::BasicProperties;
use shared::db::message_partitions;
use shared::retention::PartitionSize;
use shared::Envelope;
use uuid::Uuid;

fn hour_start(hours_ago: i64) -> DateTime<Utc> {
    PartitionSize::Hour.start(Utc::now()) - chrono::Duration::hours(hours_ago)
}

fn partition_names(db: &TestDb) -> Vec<String> {
    message_partitions::list(&mut db.connect())
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// An envelope accepted at `at`.
fn at(content: &str, at: DateTime<Utc>) -> Envelope {
    Envelope {
        created_at: at.trunc_subsecs(6),
        ..Envelope::new(content.into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_past_the_retention_are_dropped_whole_and_the_window_stays() {
    let db = TestDb::new();
    shared::db::run_migrations(&mut db.connect()).unwrap();
    // Hour partitions made ahead in their day, four to one hours ago.
    let mut conn = db.connect();
    for ago in [4, 3, 2, 1] {
        let lower = hour_start(ago);
        message_partitions::create(&mut conn, lower, lower + chrono::Duration::hours(1)).unwrap();
    }
    let minute = chrono::Duration::minutes(1);
    let rows = [
        at("four hours ago", hour_start(4) + minute),
        at("three hours ago", hour_start(3) + minute),
        at("an hour ago", hour_start(1) + minute),
    ];
    shared::db::messages::store(&mut conn, &rows).unwrap();
    let before = partition_names(&db);
    assert_eq!(before.len(), 5, "four hours and the default: {before:?}");

    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("MESSAGE_PARTITION", "hour"),
            ("MESSAGE_RETENTION", "2h"),
            ("RETENTION_INTERVAL", "1s"),
        ],
    )
    .await;
    // Every row of the hours four and three hours ago is past two hours:
    // those partitions go whole; the last hour's stays, and the current
    // hour and the two after it are made ahead.
    wait_for(
        "the old partitions dropped",
        Duration::from_secs(20),
        || async { (db.count() == 1).then_some(()) },
    )
    .await;
    let after = partition_names(&db);
    assert!(
        !after.contains(&before[0]) && !after.contains(&before[1]),
        "{after:?}"
    );
    assert!(
        after.contains(&before[2]) && after.contains(&before[3]),
        "{after:?}"
    );
    assert_eq!(after.len(), 1 + 2 + 3, "{after:?}");
    // The row inside the window is found by id; the dropped ones are not.
    let kept = producer
        .get_json(&format!("/messages/{}", rows[2].id))
        .await;
    assert_eq!(kept["status"], "stored");
    assert_eq!(kept["content"], "an hour ago");
    let (status, _) = producer
        .get_status_json(&format!("/messages/{}", rows[0].id))
        .await;
    assert_eq!(status, 404);
    // A new message goes to the current hour's partition, made ahead.
    let id = producer
        .post_message(&serde_json::json!({"content": "now"}))
        .await;
    producer
        .wait_for_message(id, "stored", Duration::from_secs(20), |b| {
            b["status"] == "stored"
        })
        .await;
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM pipeline_partitions.messages_default"),
        0,
        "nothing fell through to the default partition"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_is_stored_once_whatever_partition_its_time_falls_in() {
    let db = TestDb::new();
    shared::db::run_migrations(&mut db.connect()).unwrap();
    let lower = hour_start(3);
    message_partitions::create(&mut db.connect(), lower, lower + chrono::Duration::hours(1))
        .unwrap();
    let broker = TestBroker::new().await;
    // Our envelope twice: its own created_at, the same partition and key.
    let dated = at("dated", lower + chrono::Duration::minutes(5));
    broker.publish(&dated).await;
    broker.publish(&dated).await;
    // Another publisher's, without created_at: its time is the AMQP
    // timestamp, three hours ago the first time and now the second (a
    // republish by a tool), two partitions: found by id all the same.
    let undated = Uuid::new_v4();
    let body = format!(r#"{{"id":"{undated}","content":"undated"}}"#);
    for ts in [lower.timestamp() + 300, Utc::now().timestamp()] {
        let props = BasicProperties::default().with_timestamp(ts as u64);
        broker.publish_raw(body.as_bytes(), props).await;
    }
    let consumer = spawn_consumer(&db, &broker, &[("MESSAGE_PARTITION", "hour")]).await;
    wait_for("everything settled", Duration::from_secs(20), || async {
        (broker.depth(&broker.topology.store_queue).await == 0 && db.count() >= 2).then_some(())
    })
    .await;
    // Settle what may still be in flight, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(), 2);
    assert_eq!(db.distinct_ids(), 2);
    consumer.stop().await;
}

#[test]
fn an_existing_table_becomes_the_first_partition_in_place() {
    let db = TestDb::new();
    let mut conn = db.connect();
    // Migrate up to the version before the partitioning, with rows.
    let partitioning = "2026-12-05-200002";
    let pending =
        MigrationHarness::<Pg>::pending_migrations(&mut conn, shared::db::MIGRATIONS).unwrap();
    for migration in pending {
        if migration.name().to_string().starts_with(partitioning) {
            break;
        }
        conn.run_migration(&*migration).unwrap();
    }
    let rows: Vec<Envelope> = (0..1000)
        .map(|i| {
            at(
                &format!("old {i}"),
                Utc::now() - chrono::Duration::minutes(i),
            )
        })
        .collect();
    // As the previous version stored them.
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "('{}', '{}', '{}')",
                r.id,
                r.content,
                r.created_at.to_rfc3339()
            )
        })
        .collect();
    db.execute(&format!(
        "INSERT INTO messages (id, content, created_at) VALUES {}",
        values.join(", ")
    ));

    shared::db::run_migrations(&mut conn).unwrap();
    assert_eq!(db.count(), 1000);
    let parts = message_partitions::list(&mut conn).unwrap();
    assert_eq!(parts[0].name, "messages_legacy");
    assert_eq!(parts[0].lower, None);
    assert!(parts[0].upper.unwrap() > rows[0].created_at);
    // Found by id, listed in commit order, and a redelivery stored once.
    let found = shared::db::messages::find(&mut conn, rows[7].id)
        .unwrap()
        .unwrap();
    assert_eq!(found.content, "old 7");
    // The listing shows a row once no transaction older than it is still
    // open anywhere in the cluster, and the tests beside this one hold
    // such transactions for a moment: wait for the horizon to pass.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = shared::db::messages::list_committed(&mut conn, None, 2000, None).unwrap();
        if page.len() == 1000 || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(page.len(), 1000);
    let again = shared::db::messages::store(&mut conn, &rows[..10]).unwrap();
    assert!(again.new_ids.is_empty());
    assert_eq!(db.count(), 1000);
}
