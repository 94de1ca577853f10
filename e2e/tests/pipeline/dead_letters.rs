//! The dead-letter tools: browse without losing or reordering, redrive with
//! confirms, purge only when confirmed; all behind ADMIN_TOKEN.

use std::time::Duration;

use e2e::app::send;
use e2e::{spawn_consumer, spawn_producer, wait_for, TestBroker, TestDb};
use reqwest::Method;
use serde_json::Value;
use shared::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_browsed_redriven_and_purged() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", "adm1n")]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    db.execute(
        "ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (content NOT LIKE 'forbidden%')",
    );
    let doomed: Vec<Envelope> = (0..3)
        .map(|i| Envelope::new(format!("forbidden {i}")))
        .collect();
    for envelope in &doomed {
        broker.publish(envelope).await;
    }
    wait_for("3 dead letters", Duration::from_secs(15), || async {
        (consumer.stats.snapshot().dead_lettered == 3).then_some(())
    })
    .await;
    let dead_queue = broker.topology.dead_queue.clone();
    wait_for(
        "3 in the dead-letter queue",
        Duration::from_secs(10),
        || async { (broker.depth(&dead_queue).await == 3).then_some(()) },
    )
    .await;

    // Refused without the admin token (or with a wrong one), on every tool.
    for req in [
        producer.request(Method::GET, "/dead-letters"),
        producer.request(Method::POST, "/dead-letters/redrive"),
        producer
            .request(Method::DELETE, "/dead-letters?confirm=true")
            .bearer_auth("wrong"),
    ] {
        let res = send(req).await;
        assert_eq!(res.status(), 401);
        assert!(res.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("admin"));
    }
    // A bad limit is a 400 on both tools that take one.
    for (method, path) in [
        (Method::GET, "/dead-letters?limit=0"),
        (Method::POST, "/dead-letters/redrive?limit=many"),
    ] {
        let res = producer.admin(method, path).await;
        assert_eq!(res.status(), 400);
        assert!(res.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("limit"));
    }
    assert_eq!(
        broker.depth(&dead_queue).await,
        3,
        "nothing moved or purged"
    );

    // Browsing twice gives the same list in the same order, and keeps them all.
    let browse = || async {
        let res = producer.admin(Method::GET, "/dead-letters").await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let first = browse().await;
    let second = browse().await;
    assert_eq!(first, second);
    assert_eq!(first["total"], 3);
    let items = first["dead_letters"].as_array().unwrap();
    let ids: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = doomed.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, expected, "oldest first");
    assert_eq!(items[0]["content"], "forbidden 0");
    assert!(items[0]["reason"]
        .as_str()
        .unwrap()
        .contains("database rejected"));
    assert_eq!(items[0]["attempts"], 1);
    assert!(items[0]["dead_lettered_at"].is_string());
    assert_eq!(broker.depth(&dead_queue).await, 3);
    let limited = producer.admin(Method::GET, "/dead-letters?limit=1").await;
    assert_eq!(
        limited.json::<Value>().await.unwrap()["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Purging needs an explicit confirmation.
    let res = producer.admin(Method::DELETE, "/dead-letters").await;
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("confirm=true"));
    assert_eq!(broker.depth(&dead_queue).await, 3);

    // Fix the cause, redrive one, and it is stored.
    db.execute("ALTER TABLE messages DROP CONSTRAINT no_forbidden");
    let res = producer
        .admin(Method::POST, "/dead-letters/redrive?limit=1")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["redriven"], 1);
    producer
        .wait_for_message(
            doomed[0].id,
            "the redriven message to be stored",
            Duration::from_secs(10),
            |body| body["status"] == "stored",
        )
        .await;
    assert_eq!(broker.depth(&dead_queue).await, 2);

    // Purge the rest.
    let res = producer
        .admin(Method::DELETE, "/dead-letters?confirm=true")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["purged"], 2);
    assert_eq!(broker.depth(&dead_queue).await, 0);
    assert_eq!(db.count(), 1);

    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_tools_are_disabled_without_admin_token() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    // Even with an API token, the API token does not open the admin tools.
    let producer = spawn_producer(&db, &broker, &[("API_TOKEN", "api")]).await;
    for res in [
        producer
            .with_token(Method::GET, "/dead-letters", "api")
            .await,
        producer
            .with_token(Method::POST, "/dead-letters/redrive", "api")
            .await,
        send(producer.request(Method::DELETE, "/dead-letters?confirm=true")).await,
    ] {
        assert_eq!(res.status(), 404);
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    }
    producer.stop().await;
}
