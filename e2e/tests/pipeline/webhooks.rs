//! Batches that complete and signed webhooks (issue 11), against a real
//! HTTP receiver on 127.0.0.1 (allowed through WEBHOOK_ALLOWED_HOSTS).
//! Refusals use addresses refused before any connection is attempted: no
//! test sends traffic anywhere but 127.0.0.0/8.

use std::collections::HashSet;
use std::time::Duration;

use diesel::RunQueryDsl;
use e2e::receiver::verify;
use e2e::{
    spawn_consumer, spawn_producer, wait_for, EventStream, Receiver, TestApp, TestBroker, TestDb,
};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "test-webhook-secret";

/// Consumer settings for webhook tests: the secret, the local receiver
/// allowed, quick retries.
fn consumer_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
        ("WEBHOOK_RETRY_BASE_MS", "100"),
        ("WEBHOOK_RETRY_MAX_MS", "500"),
        ("WEBHOOK_POLL_MS", "100"),
    ];
    env.extend_from_slice(extra);
    env
}

async fn post_with_callback(producer: &TestApp, content: &str, url: &str) -> Uuid {
    producer
        .post_message(&json!({"content": content, "callback_url": url}))
        .await
}

/// Whether a message's notification is in `status`.
fn notification_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |message| message["notification"]["status"] == status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_notifies_its_callback_signed() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    let consumer = spawn_consumer(&db, &broker, &consumer_env(&[])).await;

    let id = post_with_callback(&producer, "tell me", &receiver.url("/hook")).await;
    let got = wait_for("the notification", Duration::from_secs(20), || async {
        receiver.received().into_iter().next()
    })
    .await;
    assert!(verify(&receiver.key(SECRET), &got), "signature must verify");
    let mut forged = got.clone();
    forged.body = br#"{"type":"message.stored"}"#.to_vec();
    assert!(
        !verify(&receiver.key(SECRET), &forged),
        "a changed body must not"
    );
    let event = got.json();
    assert_eq!(event["type"], "message.stored");
    assert_eq!(event["id"], id.to_string());
    assert_eq!(event["status"], "stored");
    assert_eq!(event["data"]["content"], "tell me");
    assert!(event["timestamp"].is_string());
    assert!(got.timestamp.parse::<i64>().is_ok());

    let status = producer
        .wait_for_message(
            id,
            "delivered status",
            Duration::from_secs(10),
            notification_is("delivered"),
        )
        .await;
    assert_eq!(status["status"], "stored");
    assert_eq!(status["notification"]["id"], got.id);
    assert_eq!(status["notification"]["attempts"], 1);
    assert_eq!(status["notification"]["last_status"], 200);
    let metrics = consumer.metrics().await;
    assert_eq!(
        metrics.get("pipeline_webhooks_delivered_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.get("pipeline_webhook_delivery_seconds_count", &[]),
        Some(1.0)
    );

    // A message without a callback has no notification field.
    let plain = producer
        .post_json("/messages", &json!({"content": "quiet"}))
        .await;
    let plain: Value = plain.json().await.unwrap();
    let plain = producer
        .get_json(&format!(
            "/messages/{}?wait=10",
            plain["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(plain["status"], "stored");
    assert!(plain.get("notification").is_none());
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_the_event_four_times() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    receiver.script(&[500, 500, 500]);
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    let consumer = spawn_consumer(&db, &broker, &consumer_env(&[])).await;

    let id = post_with_callback(&producer, "retry me", &receiver.url("/flaky")).await;
    let status = producer
        .wait_for_message(
            id,
            "delivered after retries",
            Duration::from_secs(30),
            notification_is("delivered"),
        )
        .await;
    let got = receiver.received();
    assert_eq!(got.len(), 4, "three 500s, then the 200");
    let answers: Vec<u16> = got.iter().map(|r| r.answered).collect();
    assert_eq!(answers, vec![500, 500, 500, 200]);
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "one webhook-id on every attempt"
    );
    assert!(got.iter().all(|r| verify(&receiver.key(SECRET), r)));
    assert_eq!(status["notification"]["attempts"], 4);
    assert_eq!(status["notification"]["last_status"], 200);
    let metrics = consumer.metrics().await;
    assert_eq!(
        metrics.get("pipeline_webhook_retries_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        metrics.get("pipeline_webhooks_delivered_total", &[]),
        Some(1.0)
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_stops_and_failed_deliveries_can_be_listed_and_resent() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    receiver.script(&[410]);
    let producer = spawn_producer(
        &db,
        &broker,
        &[
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
            ("ADMIN_TOKEN", "adm1n"),
        ],
    )
    .await;
    let consumer = spawn_consumer(&db, &broker, &consumer_env(&[])).await;

    let id = post_with_callback(&producer, "gone", &receiver.url("/gone")).await;
    producer
        .wait_for_message(
            id,
            "failed after the 410",
            Duration::from_secs(20),
            notification_is("failed"),
        )
        .await;
    assert_eq!(receiver.received().len(), 1, "a 410 is not retried");

    let list: Value = producer
        .admin(Method::GET, "/webhooks/failed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["deliveries"][0]["subject_id"], id.to_string());
    assert_eq!(list["deliveries"][0]["last_status"], 410);
    // The API token alone does not open the admin tools.
    let anonymous = producer.get("/webhooks/failed").await;
    assert_eq!(anonymous.status(), 401);

    let resent: Value = producer
        .admin(Method::POST, "/webhooks/failed/resend")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resent["resent"], 1);
    producer
        .wait_for_message(
            id,
            "delivered after the resend",
            Duration::from_secs(20),
            notification_is("delivered"),
        )
        .await;
    assert_eq!(receiver.received().len(), 2);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_to_private_or_bad_urls_are_refused_at_the_door() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // No allow-list: 127.0.0.1 is refused like any loopback address.
    let producer = spawn_producer(&db, &broker, &[]).await;
    for (url, why) in [
        (json!("http://127.0.0.1:9/hook"), "loopback"),
        (json!("http://localhost:9/hook"), "loopback"),
        (json!("http://[::1]:9/"), "loopback"),
        (json!("http://10.0.0.1/hook"), "loopback, private"),
        (json!("http://192.168.0.10/"), "private"),
        (
            json!("http://169.254.169.254/latest/meta-data/"),
            "metadata",
        ),
        (json!("http://[fd00:ec2::254]/"), "metadata"),
        (json!("ftp://example.com/x"), "http or https"),
        (json!("not a url"), "not a valid URL"),
        (json!(42), "must be a string"),
    ] {
        let res = producer
            .post_json("/messages", &json!({"content": "x", "callback_url": url}))
            .await;
        assert_eq!(res.status(), 400, "{url}");
        let body: Value = res.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("callback_url"), "{url}: {error} ({why})");
        let batch = producer
            .post_json(
                "/messages/batch",
                &json!({"messages": [{"content": "x"}], "callback_url": url}),
            )
            .await;
        assert_eq!(batch.status(), 400, "batch {url}");
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_checks_the_address_again() {
    // A row that got past the door (or a name that resolves elsewhere
    // by now) is refused by the deliverer before any connection: an
    // address at once, a name after its attempts (DNS answers change).
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &consumer_env(&[("WEBHOOK_MAX_ATTEMPTS", "2")]),
    )
    .await;
    for url in [
        "http://10.0.0.1/x",
        "http://localhost/x",
        "http://169.254.169.254/",
    ] {
        db.execute(&format!(
            "INSERT INTO webhook_deliveries (id, subject_id, event_type, url, payload) \
             VALUES (gen_random_uuid(), gen_random_uuid(), 'message.stored', '{url}', '{{}}')"
        ));
    }
    wait_for("three refusals", Duration::from_secs(20), || async {
        let failed = db.scalar(
            "SELECT count(*) AS n FROM webhook_deliveries \
             WHERE status = 'failed' AND last_error = 'forbidden_address' \
               AND last_status IS NULL",
        );
        (failed == 3).then_some(())
    })
    .await;
    let metrics = consumer.metrics().await;
    assert_eq!(
        metrics.get("pipeline_webhooks_failed_total", &[]),
        Some(3.0)
    );
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_poison_completes_once_across_three_consumers() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    // Migrated by the producer: now make three items poison.
    db.execute("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (content NOT LIKE 'poison%')");
    let env = consumer_env(&[
        ("BATCH_SIZE", "50"),
        ("PREFETCH", "100"),
        ("BATCH_WAIT_MS", "5"),
    ]);
    let consumers = vec![
        spawn_consumer(&db, &broker, &env).await,
        spawn_consumer(&db, &broker, &env).await,
        spawn_consumer(&db, &broker, &env).await,
    ];
    let events = producer.get("/events").await;
    assert_eq!(events.status(), 200);
    let mut events = EventStream::new(events);

    let messages: Vec<Value> = (0..1000)
        .map(|i| {
            let content = if [10, 500, 999].contains(&i) {
                format!("poison {i}")
            } else {
                format!("item {i}")
            };
            json!({ "content": content })
        })
        .collect();
    let res = producer
        .post_json(
            "/messages/batch",
            &json!({"messages": messages, "callback_url": receiver.url("/batch")}),
        )
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let batch_id = body["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(body["ids"].as_array().unwrap().len(), 1000);

    let batch = wait_for("the batch to complete", Duration::from_secs(60), || async {
        let b = producer
            .get_json(&format!("/batches/{batch_id}?wait=5"))
            .await;
        (b["status"] != "pending" && b.get("status").is_some() && b["status"] != "not_found")
            .then_some(b)
    })
    .await;
    assert_eq!(batch["status"], "completed_with_failures", "{batch}");
    assert_eq!(batch["total"], 1000);
    assert_eq!(batch["stored"], 997);
    assert_eq!(batch["dead_lettered"], 3);
    assert_eq!(batch["pending"], 0);
    assert!(batch["completed_at"].is_string());

    // Exactly one batch.completed notification, and one SSE event.
    wait_for(
        "the batch notification",
        Duration::from_secs(20),
        || async {
            let got = receiver.received();
            got.iter()
                .any(|r| r.json()["type"] == "batch.completed")
                .then_some(())
        },
    )
    .await;
    let completions = events
        .collect("batch_completed", Duration::from_secs(2))
        .await;
    let hooks: Vec<Value> = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["type"] == "batch.completed")
        .collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["id"], batch_id);
    assert_eq!(hooks[0]["data"]["stored"], 997);
    assert_eq!(hooks[0]["data"]["dead_lettered"], 3);
    assert_eq!(
        db.scalar(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 'batch.completed'"
        ),
        1
    );
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(completions[0]["id"], batch_id);
    assert_eq!(completions[0]["status"], "completed_with_failures");
    for c in consumers {
        c.stop().await;
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_array_form_still_works_and_a_redrive_reopens_the_batch() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm1n")]).await;
    db.execute("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (content NOT LIKE 'poison%')");
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let items = json!([{"content": "fine"}, {"content": "poison"}]);
    let res = producer
        .post_with_key("/messages/batch", "batch-redrive", &items)
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let batch_id = body["batch_id"].as_str().unwrap().to_owned();
    let batch = producer
        .get_json(&format!("/batches/{batch_id}?wait=20"))
        .await;
    assert_eq!(batch["status"], "completed_with_failures", "{batch}");
    assert!(batch.get("notification").is_none());

    // Lift the rule and redrive: the batch is pending until the item is
    // stored, then completes again, this time fully.
    db.execute("ALTER TABLE messages DROP CONSTRAINT no_poison");
    let redriven: Value = producer
        .admin(Method::POST, "/dead-letters/redrive")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(redriven["redriven"], 1);
    let batch = wait_for("completed again", Duration::from_secs(20), || async {
        let b = producer
            .get_json(&format!("/batches/{batch_id}?wait=5"))
            .await;
        (b["status"] == "completed").then_some(b)
    })
    .await;
    assert_eq!(batch["stored"], 2);
    assert_eq!(batch["dead_lettered"], 0);
    // The same key gives the same batch id.
    let again = producer
        .post_with_key("/messages/batch", "batch-redrive", &items)
        .await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["batch_id"], batch_id);
    // Unknown batch: 404.
    let unknown = producer.get(&format!("/batches/{}", Uuid::new_v4())).await;
    assert_eq!(unknown.status(), 404);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_owed_during_a_crash_and_an_outage_all_arrive() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    receiver.stop(); // down: connections refused
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    let env = consumer_env(&[("WEBHOOK_TIMEOUT_MS", "1000")]);
    let first = spawn_consumer(&db, &broker, &env).await;

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(post_with_callback(&producer, &format!("owed {i}"), &receiver.url("/down")).await);
    }
    wait_for("stored, and attempts failing", Duration::from_secs(20), || async {
        let tried = db.scalar(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE attempts > 0 AND last_error IS NOT NULL",
        );
        (db.count() == 20 && tried >= 1).then_some(())
    })
    .await;
    // kill -9: no graceful stop; claims in flight are left to their leases.
    drop(first);
    receiver.restart().await;
    let second = spawn_consumer(&db, &broker, &env).await;
    let seen = wait_for("every notification", Duration::from_secs(60), || async {
        let seen: HashSet<String> = receiver
            .received()
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.json()["id"].as_str().unwrap().to_owned())
            .collect();
        (seen.len() == 20).then_some(seen)
    })
    .await;
    for id in &ids {
        assert!(seen.contains(&id.to_string()), "{id} never notified");
    }
    assert!(receiver
        .received()
        .iter()
        .all(|r| verify(&receiver.key(SECRET), r)));
    wait_for(
        "all recorded delivered",
        Duration::from_secs(20),
        || async {
            let delivered = db
                .scalar("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered'");
            (delivered == 20).then_some(())
        },
    )
    .await;
    second.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_does_not_slow_storing() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    receiver.slow(Duration::from_secs(10));
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    let consumer = spawn_consumer(
        &db,
        &broker,
        &consumer_env(&[
            ("WEBHOOK_CONCURRENCY", "2"),
            ("WEBHOOK_TIMEOUT_MS", "15000"),
        ]),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(post_with_callback(&producer, &format!("slow {i}"), &receiver.url("/slow")).await);
    }
    // All stored long before the deliveries could be: 100 answers of 10 s,
    // two at a time, take 500 s. Storing never waits for a delivery.
    wait_for("every message stored", Duration::from_secs(60), || async {
        (db.count() == 100).then_some(())
    })
    .await;
    let answered = receiver.received().len();
    assert!(
        answered < 20,
        "storing waited for deliveries ({answered} answered)"
    );
    let (_, most) = receiver.in_flight();
    assert!(
        most <= 2,
        "at most WEBHOOK_CONCURRENCY attempts at once, saw {most}"
    );
    let last = producer.get_json(&format!("/messages/{}", ids[99])).await;
    assert_eq!(last["status"], "stored");
    assert_eq!(last["notification"]["status"], "pending");
    drop(consumer);
    producer.stop().await;
}

#[test]
fn when_the_last_two_items_race_exactly_one_transaction_completes_the_batch() {
    // Two transactions store the last two items of a batch at once: the
    // first holds the batch's row lock while the second waits for it. Each
    // sees only its own uncommitted item unless the second counts after the
    // first commits; with the lock taken before counting, the second
    // completes the batch, and only it.
    use diesel::Connection;
    use shared::envelope::BatchRef;
    use shared::Envelope;
    use std::sync::mpsc;

    let db = TestDb::new();
    shared::db::run_migrations(&mut db.connect()).unwrap();
    let batch = BatchRef {
        id: Uuid::new_v4(),
        total: 3,
        callback_url: Some("http://127.0.0.1:9/never-called".into()),
        created_at: chrono::Utc::now(),
    };
    let item = |content: &str| {
        let mut e = Envelope::new(content.into());
        e.batch = Some(batch.clone());
        e
    };
    // The first item is stored before: the batch's row exists, committed,
    // so nothing but the completion's own lock orders the last two.
    let zero = shared::db::messages::store(&mut db.connect(), &[item("zero")]).unwrap();
    assert!(zero.completed.is_empty());
    let (first, second) = (item("one"), item("two"));
    let (stored_tx, stored_rx) = mpsc::channel::<()>();
    let (commit_tx, commit_rx) = mpsc::channel::<()>();
    let url = db.url.clone();
    let t1 = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        conn.transaction(|c| {
            let r = shared::db::messages::store(c, &[first])?;
            stored_tx.send(()).unwrap();
            commit_rx.recv().unwrap();
            Ok::<_, diesel::result::Error>(r.completed)
        })
        .unwrap()
    });
    stored_rx.recv().unwrap();
    let url = db.url.clone();
    let t2 = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        shared::db::messages::store(&mut conn, &[second])
            .unwrap()
            .completed
    });
    // Let the second reach its count (it waits for the first's lock, if
    // there is one to wait for), then commit the first.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline
        && db.scalar("SELECT count(*) AS n FROM pg_locks WHERE NOT granted") == 0
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    commit_tx.send(()).unwrap();
    let (c1, c2) = (t1.join().unwrap(), t2.join().unwrap());
    assert_eq!(c1.len() + c2.len(), 1, "first: {c1:?}, second: {c2:?}");
    assert_eq!(c2.len(), 1, "the later transaction sees both items");
    assert_eq!(c2[0].status, "completed");
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM batches WHERE completed_at IS NOT NULL"),
        1
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE event_type = 'batch.completed'"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_need_the_api_token_and_webhook_tools_the_admin_token() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[("API_TOKEN", "api"), ("ADMIN_TOKEN", "adm")],
    )
    .await;
    let batch = format!("/batches/{}", Uuid::new_v4());
    assert_eq!(producer.get(&batch).await.status(), 401);
    let api = producer.with_token(Method::GET, &batch, "api").await;
    assert_eq!(api.status(), 404);
    let tools = "/webhooks/failed";
    let api = producer.with_token(Method::GET, tools, "api").await;
    assert_eq!(api.status(), 401);
    let admin = producer.with_token(Method::GET, tools, "adm").await;
    assert_eq!(admin.status(), 200);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_attempt_leaves_the_notification_to_be_sent_again() {
    // Killed while the receiver handles the request (it answers 200 to a
    // dead client): the outcome was never recorded, so when the claim's
    // lease runs out another consumer sends it again, same webhook-id.
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let receiver = Receiver::start().await;
    receiver.slow(Duration::from_millis(1500));
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    // A 2 s attempt bound: the lease is 2 x 2 s + 10 s.
    let env = consumer_env(&[("WEBHOOK_TIMEOUT_MS", "2000")]);
    let first = spawn_consumer(&db, &broker, &env).await;
    let id = post_with_callback(&producer, "mid-flight", &receiver.url("/slow")).await;
    wait_for("the attempt in flight", Duration::from_secs(20), || async {
        (receiver.in_flight().0 == 1).then_some(())
    })
    .await;
    drop(first); // kill -9
    wait_for("the receiver answered", Duration::from_secs(5), || async {
        (receiver.received().len() == 1).then_some(())
    })
    .await;
    let second = spawn_consumer(&db, &broker, &env).await;
    let status = producer
        .wait_for_message(
            id,
            "sent again and recorded",
            Duration::from_secs(40),
            notification_is("delivered"),
        )
        .await;
    let got = receiver.received();
    assert_eq!(
        got.len(),
        2,
        "at least once: the unrecorded attempt is repeated"
    );
    assert_eq!(
        got[0].id, got[1].id,
        "with the same webhook-id, to deduplicate on"
    );
    assert_eq!(status["notification"]["attempts"], 2);
    second.stop().await;
    producer.stop().await;
}

#[test]
fn delivered_notifications_are_pruned_after_the_retention_and_others_kept() {
    let db = TestDb::new();
    let mut conn = db.connect();
    shared::db::run_migrations(&mut conn).unwrap();
    for (status, delivered) in [
        ("delivered", "now() - interval '8 days'"),
        ("delivered", "now() - interval '1 hour'"),
        ("failed", "NULL"),
        ("pending", "NULL"),
    ] {
        diesel::sql_query(format!(
            "INSERT INTO webhook_deliveries (id, subject_id, event_type, url, payload, status, delivered_at, created_at) \
             VALUES (gen_random_uuid(), gen_random_uuid(), 'message.stored', 'http://127.0.0.1:9/', '{{}}', \
                     '{status}', {delivered}, now() - interval '9 days')"
        ))
        .execute(&mut conn)
        .unwrap();
    }
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(
        shared::db::webhook_deliveries::prune_delivered(&mut conn, week, 100).unwrap(),
        1
    );
    assert_eq!(
        shared::db::webhook_deliveries::prune_delivered(&mut conn, week, 100).unwrap(),
        0
    );
    assert_eq!(db.scalar("SELECT count(*) AS n FROM webhook_deliveries"), 3);
}
