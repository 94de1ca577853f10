//! Scheduled messages (issue 19): `deliver_at` / `delay_seconds` hold a
//! message in PostgreSQL until it is due; it is then stored exactly once,
//! never before its time, through restarts and outages; `DELETE` cancels it
//! unless it is stored, and a cancel racing the due time ends one way only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use e2e::{spawn_consumer, spawn_producer, wait_for, TcpProxy, TestApp, TestBroker, TestDb};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn post(producer: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let res = producer.post_json(path, &body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// `POST /messages` that must be scheduled: its id and `deliver_at`.
async fn schedule(producer: &TestApp, body: Value) -> (Uuid, DateTime<Utc>) {
    let (status, body) = post(producer, "/messages", body).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "scheduled", "{body}");
    (
        body["id"].as_str().unwrap().parse().unwrap(),
        body["deliver_at"].as_str().unwrap().parse().unwrap(),
    )
}

async fn cancel(producer: &TestApp, id: Uuid) -> (u16, Value) {
    let res = producer
        .request(Method::DELETE, &format!("/messages/{id}"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The state of `id`'s row of `scheduled_messages`.
fn state_of(db: &TestDb, id: Uuid) -> &'static str {
    for state in [
        "scheduled",
        "dispatching",
        "dispatched",
        "delivered",
        "cancelled",
    ] {
        let sql = format!(
            "SELECT count(*) AS n FROM scheduled_messages WHERE id = '{id}' AND state = '{state}'"
        );
        if db.scalar(&sql) == 1 {
            return state;
        }
    }
    "none"
}

/// Rows of `messages` stored before their `deliver_at`.
fn stored_early(db: &TestDb) -> i64 {
    db.scalar(
        "SELECT count(*) AS n FROM messages m JOIN scheduled_messages s USING (id)
          WHERE m.stored_at < s.deliver_at",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_waits_then_is_stored_once_not_before_its_time() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let before = Utc::now();
    let (id, due) = schedule(
        &producer,
        json!({"content": "later", "delay_seconds": 2, "kind": "email"}),
    )
    .await;
    assert!(due >= before + chrono::Duration::seconds(2), "{due}");
    let far_at = (Utc::now() + chrono::Duration::days(300))
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let (far, far_due) = schedule(&producer, json!({"content": "far", "deliver_at": far_at})).await;
    assert_eq!(far_due, far_at.parse::<DateTime<Utc>>().unwrap());

    // Waiting: scheduled, with its time and kind; nothing stored.
    let waiting = producer.get_json(&format!("/messages/{id}")).await;
    assert_eq!(waiting["status"], "scheduled", "{waiting}");
    assert_eq!(
        waiting["deliver_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        due
    );
    assert_eq!(waiting["kind"], "email");
    assert_eq!(db.count(), 0);

    // `?wait` waits through the schedule.
    let stored = producer.get_json(&format!("/messages/{id}?wait=20")).await;
    assert_eq!(stored["status"], "stored", "{stored}");
    assert_eq!(stored["kind"], "email");
    let stored_at: DateTime<Utc> = stored["stored_at"].as_str().unwrap().parse().unwrap();
    assert!(stored_at >= due, "stored at {stored_at}, due {due}");
    assert_eq!(db.count(), 1);
    assert_eq!(stored_early(&db), 0);
    assert_eq!(state_of(&db, id), "delivered");
    assert_eq!(
        producer.get_json(&format!("/messages/{far}")).await["status"],
        "scheduled"
    );

    // The tutorial's endpoint schedules too (RQ's enqueue_in).
    let (status, body) = post(
        &producer,
        "/add_message",
        json!({"content": "rq", "delay_seconds": 1}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["message"], "Message scheduled");
    let job = body["job_id"].as_str().unwrap();
    let done = producer.get_json(&format!("/messages/{job}?wait=20")).await;
    assert_eq!(done["status"], "stored", "{done}");
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_naming_the_field_and_the_past_is_now() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("MAX_SCHEDULE_AHEAD", "1h")]).await;

    let cases = [
        (
            json!({"content": "x", "deliver_at": "2099-01-01T00:00:00Z", "delay_seconds": 5}),
            "not both",
        ),
        (
            json!({"content": "x", "deliver_at": "tomorrow"}),
            "deliver_at",
        ),
        (
            json!({"content": "x", "deliver_at": "2099-01-01T00:00:00"}),
            "deliver_at",
        ),
        (json!({"content": "x", "deliver_at": 17}), "deliver_at"),
        (
            json!({"content": "x", "delay_seconds": -1}),
            "delay_seconds",
        ),
        (
            json!({"content": "x", "delay_seconds": 1.5}),
            "delay_seconds",
        ),
        (
            json!({"content": "x", "delay_seconds": "60"}),
            "delay_seconds",
        ),
        (
            json!({"content": "x", "delay_seconds": 7200}),
            "MAX_SCHEDULE_AHEAD",
        ),
    ];
    for path in ["/messages", "/add_message"] {
        for (body, named) in &cases {
            let (status, answer) = post(&producer, path, body.clone()).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains(named), "{path} {body}: {error}");
        }
    }
    let (status, answer) = post(
        &producer,
        "/messages/batch",
        json!([{"content": "a"}, {"content": "b", "delay_seconds": -3}]),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("item 1: delay_seconds"),
        "{answer}"
    );

    // A time in the past, or no delay, is now: queued, not scheduled.
    for body in [
        json!({"content": "past", "deliver_at": "2001-01-01T00:00:00Z"}),
        json!({"content": "zero", "delay_seconds": 0}),
        json!({"content": "null", "deliver_at": null}),
    ] {
        let (status, answer) = post(&producer, "/messages", body.clone()).await;
        assert_eq!(status, 202, "{body}: {answer}");
        assert_eq!(answer["status"], "queued", "{body}: {answer}");
        assert!(answer.get("deliver_at").is_none(), "{answer}");
    }
    assert_eq!(db.scalar("SELECT count(*) AS n FROM scheduled_messages"), 0);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 3);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_message_is_never_stored_and_a_stored_one_cannot_be_cancelled() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let (id, due) = schedule(&producer, json!({"content": "never", "delay_seconds": 1})).await;
    let (status, body) = cancel(&producer, id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(
        body["deliver_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        due
    );
    // Cancelling again says the same.
    assert_eq!(cancel(&producer, id).await.0, 200);
    let (now_stored, _) = schedule(&producer, json!({"content": "kept", "delay_seconds": 1})).await;
    let stored = producer
        .get_json(&format!("/messages/{now_stored}?wait=20"))
        .await;
    assert_eq!(stored["status"], "stored");
    // Past the cancelled one's time too: it stays cancelled, not stored.
    let cancelled = producer.get_json(&format!("/messages/{id}?wait=5")).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(db.count(), 1);

    let (status, body) = cancel(&producer, now_stored).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("already stored"),
        "{body}"
    );
    let plain = producer.post_message(&json!({"content": "plain"})).await;
    producer
        .wait_for_message(plain, "stored", Duration::from_secs(20), |b| {
            b["status"] == "stored"
        })
        .await;
    assert_eq!(cancel(&producer, plain).await.0, 409);
    assert_eq!(cancel(&producer, Uuid::new_v4()).await.0, 404);
    let res = producer
        .request(Method::DELETE, "/messages/not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cancelled_after_it_was_published_is_refused_by_the_consumer() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    // No consumer yet: the dispatcher publishes it when due, and it waits
    // in the queue.
    let (id, _) = schedule(
        &producer,
        json!({"content": "in the queue", "delay_seconds": 1}),
    )
    .await;
    wait_for("the dispatch", Duration::from_secs(20), || async {
        (broker.depth(&broker.topology.store_queue).await == 1).then_some(())
    })
    .await;
    assert_eq!(state_of(&db, id), "dispatched");
    let (status, body) = cancel(&producer, id).await;
    assert_eq!(status, 200, "{body}");

    let consumer = spawn_consumer(&db, &broker, &[]).await;
    wait_for("the queue to drain", Duration::from_secs(20), || async {
        (broker.depth(&broker.topology.store_queue).await == 0).then_some(())
    })
    .await;
    // Drained and acked, not stored, not dead-lettered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(), 0);
    assert_eq!(broker.depth(&broker.topology.dead_queue).await, 0);
    assert_eq!(state_of(&db, id), "cancelled");
    assert_eq!(
        producer.get_json(&format!("/messages/{id}")).await["status"],
        "cancelled"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_due_time_is_either_cancelled_or_stored() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("SCHEDULE_POLL_MS", "10")]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let n = 200;
    let at = (Utc::now() + chrono::Duration::seconds(6)).to_rfc3339();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            schedule(
                &producer,
                json!({"content": format!("race {i}"), "deliver_at": at}),
            )
            .await
            .0,
        );
    }
    // Cancel them one after the other across the due time: the first ones
    // before it, the last ones after they were stored, some in between.
    let due: DateTime<Utc> = at.parse().unwrap();
    let wait = (due - Utc::now() - chrono::Duration::milliseconds(300))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    let mut cancelled = Vec::new();
    let mut too_late = Vec::new();
    for id in &ids {
        let (status, body) = cancel(&producer, *id).await;
        match status {
            200 => cancelled.push(*id),
            409 => too_late.push(*id),
            other => panic!("cancel answered {other}: {body}"),
        }
    }
    // Every message settles: the too-late ones stored, the others never.
    for id in &too_late {
        let body = producer.get_json(&format!("/messages/{id}?wait=20")).await;
        assert_eq!(body["status"], "stored", "{body}");
    }
    wait_for("every scheduled row settled", Duration::from_secs(30), || async {
        (db.scalar(
            "SELECT count(*) AS n FROM scheduled_messages WHERE state NOT IN ('delivered', 'cancelled')",
        ) == 0)
            .then_some(())
    })
    .await;
    wait_for("the queue drained", Duration::from_secs(30), || async {
        (broker.depth(&broker.topology.store_queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        db.count(),
        too_late.len() as i64,
        "stored = the ones too late to cancel"
    );
    assert_eq!(db.distinct_ids(), too_late.len() as i64);
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM scheduled_messages WHERE state = 'cancelled'"),
        cancelled.len() as i64
    );
    assert_eq!(stored_early(&db), 0);
    eprintln!(
        "race: {} cancelled, {} stored",
        cancelled.len(),
        too_late.len()
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_message_survives_a_producer_restart() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let (id, due) = schedule(&producer, json!({"content": "durable", "delay_seconds": 2})).await;
    producer.stop().await;
    // Past its time, no producer: nothing publishes it, nothing is lost.
    let wait = (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    assert_eq!(db.count(), 0);
    assert_eq!(state_of(&db, id), "scheduled");
    let producer = spawn_producer(&db, &broker, &[]).await;
    let body = producer.get_json(&format!("/messages/{id}?wait=20")).await;
    assert_eq!(body["status"], "stored", "{body}");
    assert_eq!(db.count(), 1);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_of_the_broker_and_the_database_at_the_due_time_only_delay() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let amqp = TcpProxy::to_broker().await;
    let pg = TcpProxy::to_database().await;
    let amqp_url = amqp.amqp_url();
    let database_url = db.url_through(&pg);
    let producer = spawn_producer(
        &db,
        &broker,
        &[("AMQP_URL", &amqp_url), ("DATABASE_URL", &database_url)],
    )
    .await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    // Past the due time by two seconds.
    let until_past = |at: &str| {
        let due: DateTime<Utc> = at.parse().unwrap();
        (due - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(2)
    };
    // The broker is away when the first ten fall due.
    let at = (Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    for i in 0..10 {
        schedule(
            &producer,
            json!({"content": format!("b{i}"), "deliver_at": at}),
        )
        .await;
    }
    amqp.cut();
    tokio::time::sleep(until_past(&at)).await;
    assert_eq!(
        db.count(),
        0,
        "nothing can be published while the broker is away"
    );
    amqp.restore();
    wait_for("the first ten stored", Duration::from_secs(60), || async {
        (db.count() == 10).then_some(())
    })
    .await;

    // The database is away when the next ten fall due.
    let at = (Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    for i in 0..10 {
        schedule(
            &producer,
            json!({"content": format!("d{i}"), "deliver_at": at}),
        )
        .await;
    }
    pg.cut();
    tokio::time::sleep(until_past(&at)).await;
    assert_eq!(
        db.count(),
        10,
        "nothing can be claimed while the database is away"
    );
    pg.restore();
    wait_for("all twenty stored", Duration::from_secs(60), || async {
        (db.count() == 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(), 20);
    assert_eq!(db.distinct_ids(), 20);
    assert_eq!(stored_early(&db), 0);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_covers_the_schedule() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let body = json!({"content": "once", "delay_seconds": 60});
    let first = producer.post_with_key("/messages", "sched-1", &body).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The retry resolves its delay later, yet gets the first time back.
    let again: Value = producer
        .post_with_key("/messages", "sched-1", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["deliver_at"], first["deliver_at"]);
    assert_eq!(db.scalar("SELECT count(*) AS n FROM scheduled_messages"), 1);
    let other = producer
        .post_with_key(
            "/messages",
            "sched-1",
            &json!({"content": "once", "delay_seconds": 61}),
        )
        .await;
    assert_eq!(other.status(), 422, "another schedule is another request");
    let unscheduled = producer
        .post_with_key("/messages", "sched-1", &json!({"content": "once"}))
        .await;
    assert_eq!(unscheduled.status(), 422);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_scheduled_and_plain_items_completes_once_when_its_last_item_is_stored() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let (status, body) = post(
        &producer,
        "/messages/batch",
        json!([
            {"content": "now"},
            {"content": "soon", "delay_seconds": 1, "kind": "email"},
            {"content": "later", "delay_seconds": 3},
        ]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let times = body["deliver_at"].as_array().unwrap();
    assert!(
        times[0].is_null() && times[1].is_string() && times[2].is_string(),
        "{body}"
    );
    let batch = body["batch_id"].as_str().unwrap();
    let pending = producer.get_json(&format!("/batches/{batch}?wait=1")).await;
    assert_ne!(pending["status"], "completed", "{pending}");
    let done = producer
        .get_json(&format!("/batches/{batch}?wait=20"))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["stored"], 3);
    let last: DateTime<Utc> = times[2].as_str().unwrap().parse().unwrap();
    let completed: DateTime<Utc> = done["completed_at"].as_str().unwrap().parse().unwrap();
    assert!(
        completed >= last,
        "completed {completed} before its last item was due {last}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM messages WHERE kind = 'email'"),
        1
    );
    // A batch's items are not cancelled one by one.
    let (status, body) = post(
        &producer,
        "/messages/batch",
        json!([{"content": "x", "delay_seconds": 60}]),
    )
    .await;
    assert_eq!(status, 202);
    let item: Uuid = body["ids"][0].as_str().unwrap().parse().unwrap();
    let (status, body) = cancel(&producer, item).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("batch"), "{body}");
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_due_at_once_across_producers_and_consumers_are_stored_once() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producers = [
        spawn_producer(&db, &broker, &[]).await,
        spawn_producer(&db, &broker, &[]).await,
    ];
    let consumers = [
        spawn_consumer(&db, &broker, &[]).await,
        spawn_consumer(&db, &broker, &[]).await,
    ];
    let at = (Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let n = 4000;
    for (i, chunk) in (0..n).collect::<Vec<_>>().chunks(1000).enumerate() {
        let items: Vec<Value> = chunk
            .iter()
            .map(|j| json!({"content": format!("m{j}"), "deliver_at": at}))
            .collect();
        let (status, body) = post(&producers[i % 2], "/messages/batch", json!(items)).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "scheduled");
    }
    wait_for("all stored", Duration::from_secs(120), || async {
        (db.count() >= n as i64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.count(), n as i64);
    assert_eq!(db.distinct_ids(), n as i64);
    assert_eq!(stored_early(&db), 0);
    // Metrics: each producer accepted its half; what the dispatchers
    // published adds up to at least all of them (a lease that ran out
    // would publish some twice, stored once).
    let mut dispatched = 0.0;
    for p in &producers {
        let scrape = p.metrics().await;
        assert_eq!(
            scrape.value("pipeline_scheduled_accepted_total", &[]),
            2000.0
        );
        dispatched += scrape.value("pipeline_scheduled_dispatched_total", &[]);
    }
    assert!(dispatched >= n as f64, "dispatched {dispatched}");
    for c in consumers {
        c.stop().await;
    }
    for p in producers {
        p.stop().await;
    }
}
