//! The happy paths: HTTP in, row out.

use std::collections::HashSet;
use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, TestBroker, TestDb};
use serde_json::{json, Value};
use shared::Envelope;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_messages_is_confirmed_then_stored() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let res = producer
        .post_json("/messages", &json!({"content": "hello"}))
        .await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(location, format!("/messages/{id}"));

    let stored: Value = wait_for(
        "the message to be stored",
        Duration::from_secs(10),
        || async {
            let res = producer.get(&location).await;
            (res.status() == 200).then_some(res.json().await.unwrap())
        },
    )
    .await;
    assert_eq!(stored["id"], id.to_string());
    assert_eq!(stored["content"], "hello");
    assert_eq!(stored["status"], "stored");

    let rows = db.messages();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].content, "hello");
    assert!(rows[0].stored_at >= rows[0].created_at);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);

    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_add_message_endpoint_is_compatible() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let res = producer
        .post_json("/add_message", &json!({"content": "from flask"}))
        .await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "Message enqueued");
    let job: Uuid = body["job_id"].as_str().unwrap().parse().unwrap();

    let res = producer.post_json("/add_message", &json!({})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "Content is required"})
    );

    wait_for("the row", Duration::from_secs(10), || async {
        (db.count() == 1).then_some(())
    })
    .await;
    let rows = db.messages();
    assert_eq!((rows[0].id, rows[0].content.as_str()), (job, "from flask"));

    // The tutorial's GET /messages shape (listed once every older
    // transaction on the server has ended: commit order).
    let list: Value = wait_for("the row listed", Duration::from_secs(10), || async {
        let list: Value = producer.get("/messages").await.json().await.unwrap();
        (list.as_array().is_some_and(|l| !l.is_empty())).then_some(list)
    })
    .await;
    assert_eq!(
        list,
        json!([{"id": job, "content": "from flask", "timestamp": rows[0].created_at}])
    );

    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_messages_through_two_consumers_make_exactly_hundred_rows() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    // Small batches and prefetch so both consumers really share the work.
    let small = [
        ("BATCH_SIZE", "5"),
        ("PREFETCH", "10"),
        ("BATCH_WAIT_MS", "5"),
    ];
    let c1 = spawn_consumer(&db, &broker, &small).await;
    let c2 = spawn_consumer(&db, &broker, &small).await;

    let posts = (0..100).map(|i| {
        let producer = &producer;
        async move {
            producer
                .post_message(&json!({"content": format!("message {i}")}))
                .await
        }
    });
    let accepted: HashSet<Uuid> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .collect();
    assert_eq!(accepted.len(), 100);

    wait_for("100 rows", Duration::from_secs(20), || async {
        (db.count() >= 100).then_some(())
    })
    .await;
    // Let any straggling duplicate show up before counting for real.
    wait_for("an empty store queue", Duration::from_secs(10), || async {
        (broker.depth(&broker.topology.store_queue).await == 0).then_some(())
    })
    .await;
    let (s1, s2) = (c1.stats.clone(), c2.stats.clone());
    c1.stop().await;
    c2.stop().await;

    assert_eq!(db.count(), 100);
    let stored: HashSet<Uuid> = db.messages().into_iter().map(|m| m.id).collect();
    assert_eq!(stored, accepted);
    let (s1, s2) = (s1.snapshot(), s2.snapshot());
    assert_eq!(s1.stored + s2.stored, 100);
    assert!(
        s1.stored > 0 && s2.stored > 0,
        "both consumers must work: {s1:?} {s2:?}"
    );
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_message_is_stored_once() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    // The same envelope twice, as after a consumer crash between commit
    // and ack: the second copy must be acked without a second row.
    let envelope = Envelope::new("once".into());
    broker.publish(&envelope).await;
    wait_for("the first copy", Duration::from_secs(10), || async {
        (db.count() == 1).then_some(())
    })
    .await;
    broker.publish(&envelope).await;
    wait_for(
        "the second copy to be settled",
        Duration::from_secs(10),
        || async { (consumer.stats.snapshot().duplicates == 1).then_some(()) },
    )
    .await;

    assert_eq!(db.count(), 1);
    assert_eq!(consumer.stats.snapshot().stored, 1);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 0);
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_yields_the_same_id_and_one_row() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let body = json!({"content": "pay once"});
    let post = |key: &'static str| producer.post_with_key("/messages", key, &body);
    let a: Value = post("order-42").await.json().await.unwrap();
    let b: Value = post("order-42").await.json().await.unwrap();
    let c: Value = post("order-43").await.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_ne!(a["id"], c["id"]);

    wait_for("both ids settled", Duration::from_secs(10), || async {
        let s = consumer.stats.snapshot();
        (s.stored + s.duplicates == 3).then_some(())
    })
    .await;
    assert_eq!(db.count(), 2);
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_paginates_oldest_first_with_a_link_header() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let mut sent = Vec::new();
    for i in 0..5 {
        let res = producer
            .post_json("/messages", &json!({"content": format!("m{i}")}))
            .await;
        assert_eq!(res.status(), 202);
        sent.push(format!("m{i}"));
    }
    // Rows are listed once every older transaction on the server has ended
    // (commit order), which may be a moment after they are stored.
    wait_for("5 rows listed", Duration::from_secs(10), || async {
        let page: Vec<Value> = producer.get("/messages").await.json().await.unwrap();
        (page.len() == 5).then_some(())
    })
    .await;

    let mut seen = Vec::new();
    let mut next = Some("/messages?limit=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next.take() {
        let res = producer.get(&path).await;
        assert_eq!(res.status(), 200);
        next = res.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with("; rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_owned()
        });
        let page: Vec<Value> = res.json().await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.iter()
                .map(|m| m["content"].as_str().unwrap().to_owned()),
        );
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, sent,
        "pages must list every message once, oldest first"
    );

    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_endpoint_confirms_every_message_and_stores_them() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;

    let items: Vec<Value> = (0..250)
        .map(|i| json!({"content": format!("b{i}")}))
        .collect();
    let items = json!(items);
    let post = || producer.post_with_key("/messages/batch", "import-7", &items);
    let res = post().await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    let ids: Vec<Uuid> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 250);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 250);

    // A retried batch with the same key gets the same ids and adds no rows.
    let again: Value = post().await.json().await.unwrap();
    assert_eq!(again["ids"], body["ids"]);

    wait_for(
        "500 deliveries settled",
        Duration::from_secs(20),
        || async {
            let s = consumer.stats.snapshot();
            (s.stored + s.duplicates == 500).then_some(())
        },
    )
    .await;
    assert_eq!(db.count(), 250);
    let rows = db.messages();
    for (i, id) in ids.iter().enumerate() {
        let row = rows.iter().find(|m| m.id == *id).expect("row for every id");
        assert_eq!(row.content, format!("b{i}"), "ids are in request order");
    }
    consumer.stop().await;
    producer.stop().await;
}
