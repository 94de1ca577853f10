//! The dashboard's server side: the page is public and self-contained, its
//! data needs the same tokens as the API, the overview counts what happened,
//! the latest messages come newest first, a message's page knows its whole
//! story, and one dead letter can be redriven without disturbing the rest.
//! (The page itself is driven in a real browser by scripts/browser-test.sh.)

use std::time::Duration;

use chrono::{TimeZone, Utc};
use e2e::app::send;
use e2e::broker::header;
use e2e::{spawn_consumer, spawn_producer, wait_for, TestApp, TestBroker, TestDb};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use reqwest::Method;
use serde_json::{json, Value};
use shared::db::dead_letters::DeadLetter;
use shared::envelope::Extras;
use shared::Envelope;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_public_and_its_data_needs_the_tokens() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(
        &db,
        &broker,
        &[("API_TOKEN", "t0ken"), ("ADMIN_TOKEN", "adm1n")],
    )
    .await;

    // The page and its assets hold no data: served without a token, with a
    // policy that forbids anything from elsewhere.
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let res = producer.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let headers = res.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    }
    let page = producer.get("/dashboard").await.text().await.unwrap();
    assert!(page.contains("dashboard/app.js"));
    // The API's page links to it, and a trailing slash finds it too.
    let docs = producer
        .with_token(Method::GET, "/docs", "t0ken")
        .await
        .text()
        .await
        .unwrap();
    assert!(docs.contains("href=\"dashboard\""));
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(producer.url("/dashboard/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "../dashboard");
    let access = producer.get_json("/dashboard/api/access").await;
    assert_eq!(access, json!({ "api_token": true, "admin": true }));

    // Data: 401 without the API token, 200 with it.
    for path in [
        "/dashboard/api/overview",
        "/dashboard/api/messages",
        "/dashboard/api/idempotency-key?key=k",
    ] {
        assert_eq!(producer.get(path).await.status(), 401, "{path}");
        let res = producer.with_token(Method::GET, path, "t0ken").await;
        assert_eq!(res.status(), 200, "{path}");
    }
    // Redriving one needs the admin token; the API token does not open it.
    let redrive = format!("/dead-letters/{}/redrive", Uuid::new_v4());
    for token in ["t0ken", "wrong"] {
        let res = producer.with_token(Method::POST, &redrive, token).await;
        assert_eq!(res.status(), 401);
    }
    producer.stop().await;

    // Without ADMIN_TOKEN the page is told the tools are off, and they are.
    let producer = spawn_producer(&db, &broker, &[]).await;
    let access = producer.get_json("/dashboard/api/access").await;
    assert_eq!(access, json!({ "api_token": false, "admin": false }));
    let redrive = format!("/dead-letters/{}/redrive", Uuid::new_v4());
    let res = send(producer.request(Method::POST, &redrive)).await;
    assert_eq!(res.status(), 404);
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_accepted_stored_and_dead_lettered() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    for i in 0..30 {
        let res = producer
            .post_json("/messages", &json!({ "content": format!("m{i}") }))
            .await;
        assert_eq!(res.status(), 202);
    }
    // Poison with an id: dead-lettered and recorded.
    let poison = Uuid::new_v4();
    broker
        .publish_raw(
            json!({ "id": poison }).to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await;
    wait_for(
        "30 rows and 1 dead letter",
        Duration::from_secs(15),
        || async {
            (db.count() == 30 && consumer.stats.snapshot().dead_lettered == 1).then_some(())
        },
    )
    .await;

    let overview = || producer.get_json("/dashboard/api/overview");
    let o = wait_for(
        "the overview to count them",
        Duration::from_secs(10),
        || async {
            let o = overview().await;
            (o["totals"]["stored"] == 30 && o["totals"]["dead_lettered"] == 1).then_some(o)
        },
    )
    .await;
    assert_eq!(o["totals"]["accepted"], 30, "{o}");
    assert_eq!(o["broker"], "up");
    assert_eq!(o["database"], "up");
    assert_eq!(o["queue"]["consumers"], 1, "{o}");
    assert_eq!(o["queue"]["ready"], 0, "{o}");
    assert_eq!(o["queue"]["dead"], 1, "{o}");
    assert_eq!(o["step_secs"], 5);
    for series in ["accepted", "stored", "dead_lettered"] {
        assert_eq!(
            o["series"][series].as_array().unwrap().len(),
            60,
            "{series}"
        );
    }
    assert!(o["rates"]["stored"].as_f64().unwrap() > 0.0, "{o}");

    // Asked again (now partly from the cache), the same totals.
    let again = overview().await;
    assert_eq!(again["totals"]["stored"], 30);
    assert_eq!(again["totals"]["accepted"], 30);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_messages_come_newest_first_and_a_message_tells_its_story() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;

    // Five rows accepted one second apart (the producer migrated the database).
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let long = "x".repeat(500);
    let rows: Vec<Envelope> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Envelope {
            id: *id,
            content: if i == 4 { long.clone() } else { "short".into() },
            created_at: Utc.timestamp_opt(1_760_000_000 + i as i64, 0).unwrap(),
            callback_url: None,
            batch: None,
            kind: Default::default(),
            deliver_at: None,
        })
        .collect();
    shared::db::messages::store(&mut db.connect(), &rows).unwrap();

    let page = |q: String| {
        let producer = &producer;
        async move {
            let res = producer.get(&format!("/dashboard/api/messages{q}")).await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let ids_of = |v: &Value| -> Vec<Uuid> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let first = page("?limit=2".into()).await;
    assert_eq!(ids_of(&first), vec![ids[4], ids[3]]);
    assert_eq!(first["messages"][0]["truncated"], true);
    assert_eq!(first["messages"][0]["preview"].as_str().unwrap().len(), 120);
    let next = first["next"].as_str().unwrap();
    let second = page(format!("?limit=2&before={next}")).await;
    assert_eq!(ids_of(&second), vec![ids[2], ids[1]]);
    let next = second["next"].as_str().unwrap();
    let last = page(format!("?limit=2&before={next}")).await;
    assert_eq!(ids_of(&last), vec![ids[0]]);
    assert!(last["next"].is_null());
    for bad in ["?limit=0", "?limit=201", "?before=nonsense", "?sort=asc"] {
        let res = producer.get(&format!("/dashboard/api/messages{bad}")).await;
        assert_eq!(res.status(), 400, "{bad}");
    }

    // A stored message; one dead-lettered; one dead-lettered, redriven and
    // then stored (both records show); one nobody knows.
    let dead = Uuid::new_v4();
    for (id, reason) in [
        (dead, "invalid message: content is required"),
        (ids[0], "rejected: check"),
    ] {
        shared::db::dead_letters::record(
            &mut db.connect(),
            &DeadLetter {
                id,
                reason: reason.into(),
                attempts: 3,
                dead_lettered_at: Utc::now(),
                batch_id: None,
                kind: "default".into(),
            },
            &Extras::default(),
            true,
        )
        .unwrap();
    }
    let detail = |id: Uuid| message_page(&producer, id);
    let (status, m) = detail(ids[1]).await;
    assert_eq!(status, 200);
    assert_eq!(m["status"], "stored");
    assert_eq!(m["content"], "short");
    assert!(m["dead_letter"].is_null());
    let (_, m) = detail(dead).await;
    assert_eq!(m["status"], "dead_lettered");
    assert_eq!(m["dead_letter"]["attempts"], 3);
    assert_eq!(
        m["dead_letter"]["reason"],
        "invalid message: content is required"
    );
    let (_, m) = detail(ids[0]).await;
    assert_eq!(m["status"], "stored");
    assert_eq!(m["dead_letter"]["reason"], "rejected: check");
    let (status, m) = detail(Uuid::new_v4()).await;
    assert_eq!(status, 404);
    assert_eq!(m["status"], "not_found");
    assert_eq!(
        producer.get("/dashboard/api/messages/nope").await.status(),
        400
    );

    // An Idempotency-Key names the id POST /messages gives it.
    let res = producer
        .post_with_key("/messages", "order-1234", &json!({ "content": "hello" }))
        .await;
    assert_eq!(res.status(), 202);
    let posted: Value = res.json().await.unwrap();
    let looked_up = producer
        .get_json("/dashboard/api/idempotency-key?key=order-1234")
        .await;
    assert_eq!(looked_up["id"], posted["id"]);
    let too_long = "k".repeat(256);
    for bad in ["", "?key=", "?key=%C3%A9", &format!("?key={too_long}")] {
        let res = producer
            .get(&format!("/dashboard/api/idempotency-key{bad}"))
            .await;
        assert_eq!(res.status(), 400, "{bad}");
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_letter_is_redriven_and_the_others_keep_their_place() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm1n")]).await;
    // No consumer: what is redriven stays in the store queue to be looked at.
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let channel = broker.channel().await;
    for id in &ids {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-error".into(),
            AMQPValue::LongString(LongString::from("invalid message: content is required")),
        );
        channel
            .basic_publish(
                broker.topology.dead_letter_exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                json!({ "id": id }).to_string().as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers),
            )
            .await
            .unwrap();
    }
    // Their records, as the consumer would have written them.
    for id in &ids {
        shared::db::dead_letters::record(
            &mut db.connect(),
            &DeadLetter {
                id: *id,
                reason: "invalid_message".into(),
                attempts: 1,
                dead_lettered_at: Utc::now(),
                batch_id: None,
                kind: "default".into(),
            },
            &Extras::default(),
            true,
        )
        .unwrap();
    }
    let dead_queue = broker.topology.dead_queue.clone();
    let store_queue = broker.topology.store_queue.clone();
    wait_for("3 dead letters", Duration::from_secs(10), || async {
        (broker.depth(&dead_queue).await == 3).then_some(())
    })
    .await;

    let redrive = |id: String| {
        let producer = &producer;
        async move {
            producer
                .admin(Method::POST, &format!("/dead-letters/{id}/redrive"))
                .await
        }
    };
    // Unknown id: 404 saying so (not "no route"), and nothing moves.
    let res = redrive(Uuid::new_v4().to_string()).await;
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not in the dead-letter queue"));
    assert_eq!(redrive("nope".into()).await.status(), 400);
    // The browse handed every message back (the broker requeues them as it
    // processes the channel's close, so wait for that rather than race it).
    wait_for(
        "the 3 dead letters back",
        Duration::from_secs(10),
        || async { (broker.depth(&dead_queue).await == 3).then_some(()) },
    )
    .await;

    let res = redrive(ids[1].to_string()).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redriven"], 1);

    // The other two are still there, in their order (once the broker has
    // requeued what the redrive's browse handed back).
    let expected = vec![ids[0].to_string(), ids[2].to_string()];
    wait_for(
        "the other two listed in order",
        Duration::from_secs(10),
        || async {
            let listed: Value = producer
                .admin(Method::GET, "/dead-letters")
                .await
                .json()
                .await
                .unwrap();
            let listed: Vec<String> = listed["dead_letters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect();
            (listed == expected).then_some(())
        },
    )
    .await;
    // The redriven one waits in the store queue, without its x-error.
    let moved = broker.take_all(&store_queue).await;
    assert_eq!(moved.len(), 1);
    let body: Value = serde_json::from_slice(&moved[0].delivery.data).unwrap();
    assert_eq!(body["id"], ids[1].to_string());
    assert_eq!(header(&moved[0].delivery.properties, "x-error"), None);
    // Its record went with it (queued again, no longer dead-lettered); the
    // others keep theirs.
    let mut conn = db.connect();
    assert!(shared::db::dead_letters::find(&mut conn, ids[1])
        .unwrap()
        .is_none());
    for id in [ids[0], ids[2]] {
        assert!(shared::db::dead_letters::find(&mut conn, id)
            .unwrap()
            .is_some());
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_comes_from_the_management_api_when_one_is_configured() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // A stand-in for RabbitMQ's management API (the machine's broker runs
    // without the plugin, and tests do not reconfigure it): it answers the
    // store queue's figures, to the right credentials only.
    let wanted = format!("/api/queues/%2F/{}", broker.topology.store_queue);
    let server = HttpServer::new(move || {
        let wanted = wanted.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let ok_path = req.uri().path() == wanted;
            let ok_auth = req
                .headers()
                .get("authorization")
                .is_some_and(|v| v == "Basic b3BzOnMzY3JldA=="); // ops:s3cret
            async move {
                match (ok_path, ok_auth) {
                    (true, true) => HttpResponse::Ok()
                        .json(json!({ "messages_ready": 0, "messages_unacknowledged": 7 })),
                    (true, false) => HttpResponse::Unauthorized().finish(),
                    _ => HttpResponse::NotFound().finish(),
                }
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);

    let in_flight = |extra: Vec<(&'static str, String)>| {
        let (db, broker) = (&db, &broker);
        async move {
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let producer = spawn_producer(db, broker, &extra).await;
            let o = producer.get_json("/dashboard/api/overview").await;
            producer.stop().await;
            o["queue"]["in_flight"].clone()
        }
    };
    let url = |creds: &str| format!("http://{creds}@127.0.0.1:{port}");
    assert_eq!(
        in_flight(vec![("RABBITMQ_MANAGEMENT_URL", url("ops:s3cret"))]).await,
        json!(7)
    );
    // Refused, or not configured: unknown, and the overview still answers.
    assert_eq!(
        in_flight(vec![("RABBITMQ_MANAGEMENT_URL", url("ops:wrong"))]).await,
        Value::Null
    );
    assert_eq!(in_flight(vec![]).await, Value::Null);
    handle.stop(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_are_counted_listed_shown_and_cancelled() {
    use chrono::DateTime;
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let producer = spawn_producer(&db, &broker, &[("KINDS", "default,email")]).await;
    let time = |v: &Value| -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
            .unwrap()
            .with_timezone(&Utc)
    };

    // Nothing scheduled yet: zero, no next due, an empty list.
    let o = producer.get_json("/dashboard/api/overview").await;
    assert_eq!(o["scheduled"]["waiting"], 0, "{o}");
    assert!(o["scheduled"]["next_due"].is_null(), "{o}");
    assert_eq!(o["scheduled"]["next"], json!([]), "{o}");

    // Three scheduled, due in an hour, in two hours and in ten minutes, and
    // one sent at once (no consumer runs: it stays queued, not scheduled).
    let mut scheduled = Vec::new();
    for (content, kind, delay) in [
        ("in an hour", "default", 3600),
        ("in two hours", "email", 7200),
        ("in ten minutes", "default", 600),
    ] {
        let res = producer
            .post_json(
                "/messages",
                &json!({ "content": content, "kind": kind, "delay_seconds": delay }),
            )
            .await;
        assert_eq!(res.status(), 202);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "scheduled", "{body}");
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        scheduled.push((id, time(&body["deliver_at"]), kind, content));
    }
    let now_id = producer.post_message(&json!({ "content": "now" })).await;

    // The overview counts them, names the next due, and lists them soonest
    // first with their kinds (the overview may answer from its cache for a
    // second: wait for the new figures).
    let o = wait_for("3 scheduled", Duration::from_secs(10), || async {
        let o = producer.get_json("/dashboard/api/overview").await;
        (o["scheduled"]["waiting"] == 3).then_some(o)
    })
    .await;
    assert_eq!(time(&o["scheduled"]["next_due"]), scheduled[2].1, "{o}");
    let next = o["scheduled"]["next"].as_array().unwrap();
    let listed: Vec<(Uuid, DateTime<Utc>, &str)> = next
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().parse().unwrap(),
                time(&s["deliver_at"]),
                s["kind"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(Uuid, DateTime<Utc>, &str)> = [2, 0, 1]
        .iter()
        .map(|&i| (scheduled[i].0, scheduled[i].1, scheduled[i].2))
        .collect();
    assert_eq!(listed, expected);

    // A scheduled message's page: its status, time, kind and content.
    let detail = |id: Uuid| message_page(&producer, id);
    let (id, deliver_at, kind, content) = scheduled[1];
    let (status, m) = detail(id).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["status"], "scheduled", "{m}");
    assert_eq!(time(&m["deliver_at"]), deliver_at);
    assert_eq!(m["kind"], kind);
    assert_eq!(m["content"], content);
    assert!(m["created_at"].is_string(), "{m}");
    assert!(
        m["stored_at"].is_null() && m["cancelled_at"].is_null(),
        "{m}"
    );
    // Queued but not stored, and unknown: not found, as before.
    assert_eq!(detail(now_id).await.0, 404);
    assert_eq!(detail(Uuid::new_v4()).await.0, 404);

    // Cancelled (the page's button sends this DELETE with the API token):
    // its page says so, and the overview no longer counts or lists it.
    let res = send(producer.request(Method::DELETE, &format!("/messages/{id}"))).await;
    assert_eq!(res.status(), 200);
    let (status, m) = detail(id).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["status"], "cancelled", "{m}");
    assert_eq!(time(&m["deliver_at"]), deliver_at);
    assert_eq!(m["kind"], kind);
    assert!(time(&m["cancelled_at"]) <= Utc::now(), "{m}");
    let o = wait_for("2 scheduled", Duration::from_secs(10), || async {
        let o = producer.get_json("/dashboard/api/overview").await;
        (o["scheduled"]["waiting"] == 2).then_some(o)
    })
    .await;
    let still: Vec<&str> = o["scheduled"]["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        still,
        vec![scheduled[2].0.to_string(), scheduled[0].0.to_string()]
    );
    producer.stop().await;
}

/// `GET /dashboard/api/messages/{id}`: the status and the body.
async fn message_page(producer: &TestApp, id: Uuid) -> (u16, Value) {
    producer
        .get_status_json(&format!("/dashboard/api/messages/{id}"))
        .await
}
