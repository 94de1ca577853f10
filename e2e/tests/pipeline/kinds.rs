//! Kinds of work (issue 17): each kind has a queue of its own with every
//! guarantee of `messages.store`, a request names its kind (or is
//! `default`), an unknown kind is refused at the door or dead-lettered as
//! `unknown_kind`, never lost, and the `default` kind is the old
//! `messages.store`, so a deployment upgrades in place.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use e2e::broker::header;
use e2e::{spawn_consumer, spawn_producer, wait_for, TestBroker, TestDb};
use lapin::BasicProperties;
use reqwest::Method;
use serde_json::{json, Value};
use shared::kind::Kind;
use shared::Envelope;
use uuid::Uuid;

const ADMIN: &str = "adm1n";

fn kind(name: &str) -> Kind {
    Kind::parse(name).unwrap()
}

async fn post(producer: &e2e::TestApp, path: &str, body: Value) -> (u16, Value) {
    let res = producer.post_json(path, &body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_is_queued_on_its_own_and_stored_with_its_kind() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let t = &broker.topology;

    let plain = producer.post_message(&json!({"content": "no kind"})).await;
    let email = producer
        .post_message(&json!({"content": "hi", "kind": "email"}))
        .await;
    let (status, body) = post(
        &producer,
        "/add_message",
        json!({"content": "tutorial", "kind": "profile"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let profile: Uuid = body["job_id"].as_str().unwrap().parse().unwrap();
    let (status, body) = post(
        &producer,
        "/messages/batch",
        json!([
            {"content": "b0", "kind": "email"},
            {"content": "b1"},
            {"content": "b2", "kind": "profile", "other": 1},
            {"content": "b3", "kind": null},
        ]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let batch: Vec<Uuid> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();

    // No consumer yet: each waits in its kind's queue.
    assert_eq!(broker.depth(&t.store_queue).await, 3, "default: 1 + 2");
    assert_eq!(broker.depth(&t.store_queue_of(&kind("email"))).await, 2);
    assert_eq!(broker.depth(&t.store_queue_of(&kind("profile"))).await, 2);

    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let expected = [
        (plain, "default"),
        (email, "email"),
        (profile, "profile"),
        (batch[0], "email"),
        (batch[1], "default"),
        (batch[2], "profile"),
        (batch[3], "default"),
    ];
    for (id, kind) in expected {
        let body = producer
            .wait_for_message(id, "stored", Duration::from_secs(20), |b| {
                b["status"] == "stored"
            })
            .await;
        assert_eq!(body["kind"], kind, "{body}");
    }
    assert_eq!(db.count(), 7, "each once");
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_malformed_kind_is_a_400_naming_the_configured_kinds() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let cases = [
        (
            "/messages",
            json!({"content": "x", "kind": "sms"}),
            "\"sms\"",
        ),
        (
            "/messages",
            json!({"content": "x", "kind": "Email"}),
            "malformed",
        ),
        (
            "/messages",
            json!({"content": "x", "kind": "a.b"}),
            "malformed",
        ),
        (
            "/messages",
            json!({"content": "x", "kind": 7}),
            "must be a string",
        ),
        (
            "/add_message",
            json!({"content": "x", "kind": "sms"}),
            "\"sms\"",
        ),
        (
            "/messages/batch",
            json!([{"content": "ok", "kind": "email"}, {"content": "x", "kind": "sms"}]),
            "item 1",
        ),
        (
            "/messages/batch",
            json!({"messages": [{"content": "x", "kind": ["email"]}]}),
            "item 0: kind must be a string",
        ),
    ];
    for (path, body, says) in cases {
        let (status, answer) = post(&producer, path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        if !says.contains("string") {
            assert!(error.contains("default, email, profile"), "{error}");
        }
    }
    // Nothing of a refused request was published.
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);
    let email = broker.topology.store_queue_of(&kind("email"));
    assert_eq!(broker.depth(&email).await, 0);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_publish_for_an_unknown_kind_is_dead_lettered_never_lost() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let t = &broker.topology;
    let props = |id: Uuid| BasicProperties::default().with_message_id(id.to_string().into());

    // Routed by kind on the route exchange, the body naming none: the
    // queue decides the kind.
    let (sms, email, default) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let route = t.route_exchange.clone();
    broker
        .publish_keyed(&route, "sms", br#"{"content": "to sms"}"#, props(sms))
        .await;
    broker
        .publish_keyed(&route, "email", br#"{"content": "to email"}"#, props(email))
        .await;
    broker
        .publish_keyed(
            &route,
            "default",
            br#"{"content": "plain"}"#,
            props(default),
        )
        .await;
    assert_eq!(broker.depth(&t.unrouted_queue).await, 1, "held, not lost");

    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let dead = producer
        .wait_for_message(sms, "dead-lettered", Duration::from_secs(20), |b| {
            b["status"] == "dead_lettered"
        })
        .await;
    assert_eq!(dead["reason"], "unknown_kind", "{dead}");
    assert_eq!(dead["kind"], "sms", "the kind it was published for");
    for (id, kind) in [(email, "email"), (default, "default")] {
        let body = producer
            .wait_for_message(id, "stored", Duration::from_secs(20), |b| {
                b["status"] == "stored"
            })
            .await;
        assert_eq!(body["kind"], kind);
    }
    let letters = broker.take_all(&t.dead_queue).await;
    assert_eq!(letters.len(), 1);
    let error = header(&letters[0].delivery.properties, "x-error").unwrap();
    assert!(
        error.contains("\"sms\"") && error.contains("default, email"),
        "{error}"
    );
    assert_eq!(broker.depth(&t.unrouted_queue).await, 0);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_come_back_to_the_kinds_queue_and_dead_letters_record_the_kind() {
    let db = TestDb::new();
    let mut broker = TestBroker::with_kinds("email").await;
    broker.add_retry_delays(&[Duration::from_millis(200)]).await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", ADMIN)]).await;
    // "flaky" fails its first attempt (the batch insert and the row on its
    // own), so it is retried through the email delay queue, then stores;
    // "always" never stores (dead-lettered after two attempts).
    db.connect()
        .batch_execute(
            r#"
CREATE SEQUENCE flaky_seq;
CREATE FUNCTION flaky() RETURNS trigger AS $$
BEGIN
    IF NEW.content = 'always' THEN RAISE EXCEPTION 'simulated failure'; END IF;
    IF NEW.content = 'flaky' AND nextval('flaky_seq') <= 2 THEN
        RAISE EXCEPTION 'simulated flake';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER flaky BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION flaky();
"#,
        )
        .unwrap();
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("MAX_ATTEMPTS", "2"),
            ("RETRY_BASE_MS", "200"),
            ("CONSUME_KINDS", "email"),
        ],
    )
    .await;
    let flaky = producer
        .post_message(&json!({"content": "flaky", "kind": "email"}))
        .await;
    let always = producer
        .post_message(&json!({"content": "always", "kind": "email"}))
        .await;
    let stored = producer
        .wait_for_message(flaky, "stored", Duration::from_secs(20), |b| {
            b["status"] == "stored"
        })
        .await;
    assert_eq!(stored["kind"], "email", "retried through its kind's queue");
    let dead = producer
        .wait_for_message(always, "dead-lettered", Duration::from_secs(20), |b| {
            b["status"] == "dead_lettered"
        })
        .await;
    assert_eq!(dead["kind"], "email", "{dead}");
    assert_eq!(
        consumer.stats.snapshot().retries,
        2,
        "one retry each, through messages.retry.email.200ms"
    );

    // Redrive: back to the email queue (this consumer takes only email, so
    // anywhere else it would wait unseen), where it stores now.
    db.execute("DROP TRIGGER flaky ON messages");
    let res = producer.admin(Method::POST, "/dead-letters/redrive").await;
    assert_eq!(res.status(), 200);
    let body = producer
        .wait_for_message(
            always,
            "stored after the redrive",
            Duration::from_secs(20),
            |b| b["status"] == "stored",
        )
        .await;
    assert_eq!(body["kind"], "email");
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_from_before_the_upgrade_are_stored_after_it() {
    // Before kinds: an old producer published to the `messages` exchange,
    // without a kind anywhere, into `messages.store`.
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let old: Vec<Envelope> = (0..20)
        .map(|i| Envelope::new(format!("from before {i}")))
        .collect();
    for envelope in &old {
        let body = envelope.to_body();
        assert!(!String::from_utf8_lossy(&body).contains("kind"));
        broker.publish(envelope).await; // the old wire format, exactly
    }
    // The new producer's default message is that same format: an old
    // consumer still running during a rolling upgrade reads it as before.
    let producer = spawn_producer(&db, &broker, &[]).await;
    let fresh = producer.post_message(&json!({"content": "new"})).await;
    let queued = broker.take_all(&broker.topology.store_queue).await;
    assert_eq!(queued.len(), 21);
    let last = &queued[20].delivery;
    assert_eq!(
        last.exchange.as_str(),
        broker.topology.exchange,
        "old exchange"
    );
    // (RabbitMQ 3.10 adds x-delivery-count to what a quorum queue hands out.)
    assert_eq!(header(&last.properties, shared::kind::KIND_HEADER), None);
    let body: Value = serde_json::from_slice(&last.data).unwrap();
    assert!(body.get("kind").is_none(), "{body}");
    assert_eq!(body["id"], fresh.to_string());
    // Put them back, as they were, and start the new consumer.
    for m in &queued {
        broker
            .publish_raw(&m.delivery.data, m.delivery.properties.clone())
            .await;
    }
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    wait_for(
        "every old message stored",
        Duration::from_secs(20),
        || async { (db.count() == 21).then_some(()) },
    )
    .await;
    let kinds = db.scalar("SELECT count(*) AS n FROM messages WHERE kind = 'default'");
    assert_eq!(kinds, 21);
    consumer.stop().await;
    producer.stop().await;
}

/// Post `n` messages of `kind` through `POST /messages/batch` (1000 at a
/// time); their ids.
async fn post_many(producer: &e2e::TestApp, kind: &str, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(1000) {
        let items: Vec<Value> = (start..n.min(start + 1000))
            .map(|i| json!({"content": format!("{kind} {i}"), "kind": kind}))
            .collect();
        let (status, body) = post(producer, "/messages/batch", json!(items)).await;
        assert_eq!(status, 202, "{body}");
        ids.extend(
            body["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().parse::<Uuid>().unwrap()),
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kinds_backlog_does_not_starve_another_inside_one_consumer() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    // A backlog of email first, then a few profile messages behind it.
    let backlog = post_many(&producer, "email", 3000).await;
    let profiles = post_many(&producer, "profile", 5).await;
    // Small batches: the backlog takes 300 transactions to drain.
    let consumer = spawn_consumer(
        &db,
        &broker,
        &[
            ("BATCH_SIZE", "10"),
            ("PREFETCH", "10"),
            ("BATCH_WAIT_MS", "5"),
        ],
    )
    .await;
    let profile_list = profiles
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    wait_for(
        "the profile messages stored",
        Duration::from_secs(30),
        || async {
            let n = db.scalar(&format!(
                "SELECT count(*) AS n FROM messages WHERE id IN ({profile_list})"
            ));
            (n == 5).then_some(())
        },
    )
    .await;
    let email_stored = db.scalar("SELECT count(*) AS n FROM messages WHERE kind = 'email'");
    assert!(
        email_stored < backlog.len() as i64 / 2,
        "the profile messages waited for {email_stored} email messages"
    );
    wait_for("the backlog drained", Duration::from_secs(60), || async {
        (db.count() == 3005).then_some(())
    })
    .await;
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_across_kinds_completes_once_after_its_last_pool() {
    // YouTube: a video queued once, resized by a pool per resolution; once
    // every pool is done, the video is live (one notification).
    const SECRET: &str = "test-webhook-secret";
    let kinds = ["transcode-4k", "transcode-1080p", "transcode-720p"];
    let db = TestDb::new();
    let broker = TestBroker::with_kinds(&kinds.join(",")).await;
    let receiver = e2e::Receiver::start().await;
    let producer = spawn_producer(&db, &broker, &[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*")]).await;
    let items: Vec<Value> = (0..30)
        .map(|i| json!({"content": format!("video part {i}"), "kind": kinds[i % 3]}))
        .collect();
    let (status, body) = post(
        &producer,
        "/messages/batch",
        json!({"messages": items, "callback_url": receiver.url("/live")}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let batch_id = body["batch_id"].as_str().unwrap().to_owned();

    let pool = |kind: &'static str| {
        let (db, broker) = (&db, &broker);
        async move {
            spawn_consumer(
                db,
                broker,
                &[
                    ("CONSUME_KINDS", kind),
                    ("WEBHOOK_SECRET", SECRET),
                    ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1:*"),
                    ("WEBHOOK_POLL_MS", "100"),
                    ("BATCH_SIZE", "3"),
                    ("PREFETCH", "3"),
                ],
            )
            .await
        }
    };
    // Two pools first: their items are stored, the batch waits for 720p.
    let first = vec![pool(kinds[0]).await, pool(kinds[1]).await];
    wait_for("4k and 1080p stored", Duration::from_secs(20), || async {
        (db.count() == 20).then_some(())
    })
    .await;
    let pending = producer.get_json(&format!("/batches/{batch_id}")).await;
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(pending["pending"], 10);
    assert_eq!(
        broker
            .depth(&broker.topology.store_queue_of(&kind(kinds[2])))
            .await,
        10,
        "720p waits for its own pool"
    );
    let last = pool(kinds[2]).await;
    let done = wait_for("the batch completed", Duration::from_secs(20), || async {
        let b = producer
            .get_json(&format!("/batches/{batch_id}?wait=5"))
            .await;
        (b["status"] == "completed").then_some(b)
    })
    .await;
    assert_eq!(done["stored"], 30);
    wait_for("the notification", Duration::from_secs(20), || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    // Give a second notification time to show up, if there were one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hooks: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["type"], "batch.completed");
    assert_eq!(hooks[0]["data"]["stored"], 30);
    let stored_after = db.scalar(
        "SELECT count(*) AS n FROM messages WHERE stored_at > (SELECT completed_at FROM batches)",
    );
    assert_eq!(stored_after, 0, "completed after its last item was stored");
    let kinds_stored = db.scalar("SELECT count(DISTINCT kind) AS n FROM messages");
    assert_eq!(kinds_stored, 3);
    for consumer in first.into_iter().chain([last]) {
        consumer.stop().await;
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_kind_spreads_by_id_and_every_shard_is_consumed() {
    let db = TestDb::new();
    let broker = TestBroker::with_sharded_kinds("email", "email:4").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let email = kind("email");
    let shards = broker.topology.shard_queues_of(&email);
    assert_eq!(shards.len(), 4);
    let ids = post_many(&producer, "email", 400).await;
    // A third party naming just the kind reaches shard 0.
    let foreign = Uuid::new_v4();
    broker
        .publish_keyed(
            &broker.topology.route_exchange,
            "email",
            br#"{"content": "from elsewhere"}"#,
            BasicProperties::default().with_message_id(foreign.to_string().into()),
        )
        .await;

    // Each message sits in the shard its id picks, whichever producer
    // published it; every shard has some.
    let mut total = 0;
    for (i, queue) in shards.iter().enumerate() {
        let held = broker.take_all(queue).await;
        assert!(held.len() > 40, "shard {i} holds {}", held.len());
        for m in &held {
            let id = shared::dead_letter::message_uuid(&m.delivery.data, &m.delivery.properties)
                .unwrap();
            let shard = if id == foreign {
                0
            } else {
                shared::topology::shard_of(id, 4)
            };
            assert_eq!(usize::from(shard), i, "{id} in {queue}");
            // Back where it was (the default exchange routes by queue name).
            broker
                .publish_keyed("", queue, &m.delivery.data, m.delivery.properties.clone())
                .await;
        }
        total += held.len();
    }
    assert_eq!(total, 401);

    let consumer = spawn_consumer(&db, &broker, &[("CONSUME_KINDS", "email")]).await;
    wait_for("every shard drained", Duration::from_secs(30), || async {
        (db.count() == 401).then_some(())
    })
    .await;
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM messages WHERE kind = 'email'"),
        401
    );
    assert!(ids
        .iter()
        .all(|id| db.messages().iter().any(|m| m.id == *id)));
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_bound_to_its_kind() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let send = |key: &'static str, body: Value| {
        let producer = &producer;
        async move {
            let res = producer.post_with_key("/messages", key, &body).await;
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = send("k-1", json!({"content": "x", "kind": "email"})).await;
    assert_eq!(status, 202);
    let (status, again) = send("k-1", json!({"content": "x", "kind": "email"})).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]), "a retry");
    let (status, other) = send("k-1", json!({"content": "x", "kind": "profile"})).await;
    assert_eq!(status, 422, "another kind is another request: {other}");
    // `default` named or not is the same request (keys from before kinds).
    let (_, plain) = send("k-2", json!({"content": "y"})).await;
    let (status, named) = send("k-2", json!({"content": "y", "kind": "default"})).await;
    assert_eq!((status, &named["id"]), (202, &plain["id"]));
    // A batch's items too.
    let batch = |kind: &str| json!([{"content": "a"}, {"content": "b", "kind": kind}]);
    let res = producer
        .post_with_key("/messages/batch", "k-3", &batch("email"))
        .await;
    assert_eq!(res.status(), 202);
    let res = producer
        .post_with_key("/messages/batch", "k-3", &batch("profile"))
        .await;
    assert_eq!(res.status(), 422);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_stored_one_by_one_around_poison_keep_their_kind() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    db.execute("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (content NOT LIKE 'poison%')");
    // One batch of deliveries: the multi-row insert fails on the poison, and
    // the good rows are stored one by one (the slow path).
    let items: Vec<Value> = (0..10)
        .map(|i| {
            let content = if i == 5 {
                "poison".to_owned()
            } else {
                format!("good {i}")
            };
            json!({"content": content, "kind": "email"})
        })
        .collect();
    let (status, body) = post(&producer, "/messages/batch", json!(items)).await;
    assert_eq!(status, 202, "{body}");
    let consumer = spawn_consumer(&db, &broker, &[("BATCH_WAIT_MS", "200")]).await;
    wait_for("9 rows and the poison", Duration::from_secs(20), || async {
        let s = consumer.stats.snapshot();
        (s.stored == 9 && s.dead_lettered == 1).then_some(())
    })
    .await;
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM messages WHERE kind = 'email'"),
        9
    );
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM dead_letters WHERE kind = 'email'"),
        1
    );
    consumer.stop().await;
    producer.stop().await;
}
