//! Kinds made visible (issue 17): `GET /messages?kind=` lists one kind,
//! page by page; completion events and webhook bodies say the kind; the
//! dashboard shows each kind's queue, consumers and rates, and filters its
//! message list by kind.

use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, EventStream, TestBroker, TestDb};
use serde_json::{json, Value};
use uuid::Uuid;

fn ids_of(body: &Value) -> Vec<Uuid> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// Every page of `GET /messages{first}`, following the Link headers.
async fn all_pages(producer: &e2e::TestApp, first: &str) -> (Vec<Uuid>, usize) {
    let mut path = first.to_owned();
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let res = producer.get(&path).await;
        assert_eq!(res.status(), 200, "{path}");
        let link = res
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        ids.extend(ids_of(&res.json::<Value>().await.unwrap()));
        pages += 1;
        match link {
            Some(link) => {
                assert!(
                    link.contains("kind="),
                    "the next page keeps the filter: {link}"
                );
                path = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
            }
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_by_kind_and_pages_within_it() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email,profile").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let items: Vec<Value> = (0..12)
        .map(|i| match i % 3 {
            0 => json!({"content": format!("m{i}")}),
            1 => json!({"content": format!("m{i}"), "kind": "email"}),
            _ => json!({"content": format!("m{i}"), "kind": "profile"}),
        })
        .collect();
    let res = producer.post_json("/messages/batch", &json!(items)).await;
    assert_eq!(res.status(), 202);
    let ids: Vec<Uuid> = res.json::<Value>().await.unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    wait_for("12 rows", Duration::from_secs(20), || async {
        (db.count() == 12).then_some(())
    })
    .await;
    // Listed once every transaction older than the rows has ended.
    wait_for("all 12 listed", Duration::from_secs(20), || async {
        let body = producer.get_json("/messages?limit=100").await;
        (body.as_array().unwrap().len() == 12).then_some(())
    })
    .await;

    let of = |k: usize| -> Vec<Uuid> {
        let mut v: Vec<Uuid> = ids.iter().skip(k).step_by(3).copied().collect();
        v.sort();
        v
    };
    for (kind, expected) in [("default", of(0)), ("email", of(1)), ("profile", of(2))] {
        let (mut listed, pages) =
            all_pages(&producer, &format!("/messages?kind={kind}&limit=3")).await;
        assert_eq!(pages, 2, "{kind}: 4 rows in pages of 3");
        listed.sort();
        assert_eq!(listed, expected, "{kind}: exactly its own rows, once each");
    }
    // Without the filter: every row, as before.
    let (listed, _) = all_pages(&producer, "/messages?limit=100").await;
    assert_eq!(listed.len(), 12);

    // A cursor of the filtered list continues it; an empty page keeps it.
    let res = producer.get("/messages?kind=email&limit=4").await;
    let cursor = res.headers()["cursor"].to_str().unwrap().to_owned();
    let body = producer
        .get_json(&format!("/messages?kind=email&cursor={cursor}"))
        .await;
    assert_eq!(body, json!([]), "nothing after the last email");

    for (bad, says) in [
        ("sms", "\"sms\" is not configured"),
        ("Email", "malformed"),
        ("", "malformed"),
    ] {
        let (status, body) = producer
            .get_status_json(&format!("/messages?kind={bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        assert!(error.contains("default, email, profile"), "{error}");
    }
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_say_the_kind() {
    let db = TestDb::new();
    let broker = TestBroker::with_kinds("email").await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let email = producer
        .post_message(&json!({"content": "e", "kind": "email"}))
        .await;
    let plain = producer.post_message(&json!({"content": "p"})).await;
    let res = producer.get(&format!("/events?ids={email},{plain}")).await;
    assert_eq!(res.status(), 200);
    let mut events = EventStream::new(res);
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    let mut seen = vec![events.next().await, events.next().await];
    seen.sort_by_key(|e| e["kind"].as_str().unwrap_or("").to_owned());
    assert_eq!(
        seen,
        vec![
            json!({"type": "stored", "ids": [plain], "kind": "default"}),
            json!({"type": "stored", "ids": [email], "kind": "email"}),
        ]
    );
    drop(events);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_each_kind_and_filters_its_list() {
    let db = TestDb::new();
    let broker = TestBroker::with_sharded_kinds("email,profile", "email:2").await;
    let producer = spawn_producer(&db, &broker, &[]).await;

    for i in 0..6 {
        producer
            .post_message(&json!({"content": format!("e{i}"), "kind": "email"}))
            .await;
    }
    producer.post_message(&json!({"content": "p"})).await;
    // Queued, no consumer yet: each kind's depth over its queues. (The
    // totals count complete seconds: wait for the second to end.)
    let o = wait_for("the accepted counted", Duration::from_secs(10), || async {
        let o = producer.get_json("/dashboard/api/overview").await;
        (o["kinds"][1]["totals"]["accepted"] == 6).then_some(o)
    })
    .await;
    let kinds = o["kinds"].as_array().expect("kinds in the overview");
    let names: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "email", "profile"], "{o}");
    assert_eq!(kinds[0]["queue"]["ready"], 1, "{o}");
    assert_eq!(kinds[1]["queue"]["ready"], 6, "both shards: {o}");
    assert_eq!(kinds[1]["queue"]["queues"], 2, "{o}");
    assert_eq!(kinds[2]["queue"]["ready"], 0, "{o}");
    assert_eq!(kinds[1]["totals"]["accepted"], 6, "{o}");
    assert_eq!(kinds[0]["totals"]["accepted"], 1, "{o}");
    assert_eq!(kinds[2]["totals"]["accepted"], 0, "{o}");

    let consumer = spawn_consumer(&db, &broker, &[("CONSUME_KINDS", "email")]).await;
    let o = wait_for(
        "the overview to count the emails stored",
        Duration::from_secs(20),
        || async {
            let o = producer.get_json("/dashboard/api/overview").await;
            (o["kinds"][1]["totals"]["stored"] == 6).then_some(o)
        },
    )
    .await;
    let kinds = o["kinds"].as_array().unwrap();
    assert_eq!(kinds[1]["queue"]["consumers"], 2, "one per shard: {o}");
    assert_eq!(kinds[1]["queue"]["ready"], 0, "{o}");
    assert_eq!(kinds[0]["queue"]["consumers"], 0, "{o}");
    assert_eq!(kinds[0]["queue"]["ready"], 1, "{o}");
    assert_eq!(kinds[0]["totals"]["stored"], 0, "{o}");
    assert!(kinds[1]["rates"]["stored"].as_f64().unwrap() >= 0.0, "{o}");
    for k in kinds {
        for rate in ["accepted", "stored", "dead_lettered"] {
            assert!(k["rates"][rate].is_number(), "{rate}: {o}");
        }
    }

    // The message list, filtered: the six emails only.
    let body = producer
        .get_json("/dashboard/api/messages?kind=email&limit=200")
        .await;
    let listed = body["messages"].as_array().unwrap();
    assert_eq!(listed.len(), 6, "{body}");
    assert!(listed.iter().all(|m| m["kind"] == "email"), "{body}");
    let body = producer
        .get_json("/dashboard/api/messages?kind=profile")
        .await;
    assert_eq!(body["messages"], json!([]));
    let (status, body) = producer
        .get_status_json("/dashboard/api/messages?kind=sms")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("default, email, profile"));
    consumer.stop().await;
    producer.stop().await;
}
