//! Redrive and purge keep the status table honest: one redrive call moves at
//! most the dead letters it found, and `GET /messages/{id}` stops saying
//! `dead_lettered` for a message that was redriven or purged.

use std::time::Duration;

use e2e::{spawn_consumer, spawn_producer, wait_for, TestBroker, TestDb};
use reqwest::Method;
use serde_json::Value;
use shared::Envelope;

const ADMIN: &str = "adm1n";

/// Make every message whose content starts with "forbidden" poison.
fn forbid(db: &TestDb) {
    db.execute(
        "ALTER TABLE messages ADD CONSTRAINT no_forbidden CHECK (content NOT LIKE 'forbidden%')",
    );
}

async fn dead_letter(broker: &TestBroker, n: usize) -> Vec<Envelope> {
    let doomed: Vec<Envelope> = (0..n)
        .map(|i| Envelope::new(format!("forbidden {i}")))
        .collect();
    for envelope in &doomed {
        broker.publish(envelope).await;
    }
    let dead_queue = broker.topology.dead_queue.clone();
    wait_for("the dead letters", Duration::from_secs(20), || async {
        (broker.depth(&dead_queue).await as usize == n).then_some(())
    })
    .await;
    doomed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_without_limit_stops_at_the_depth_it_found() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", ADMIN)]).await;
    // One row per batch: a redriven message fails again and is back in the
    // dead-letter queue within milliseconds, while the redrive still runs.
    let consumer = spawn_consumer(&db, &broker, &[("BATCH_SIZE", "1"), ("PREFETCH", "1")]).await;
    forbid(&db);
    dead_letter(&broker, 10).await;

    let res = producer
        .request(Method::POST, "/dead-letters/redrive")
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("redrive must end");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["redriven"], 10,
        "a message that failed again is not redriven twice in one call"
    );
    consumer.stop().await;
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_stops_saying_dead_lettered_after_redrive_and_purge() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", ADMIN)]).await;
    let consumer = spawn_consumer(&db, &broker, &[]).await;
    forbid(&db);
    let doomed = dead_letter(&broker, 3).await;
    // Nobody consumes any more: a redriven message stays queued.
    consumer.stop().await;

    let status = |i: usize| {
        let path = format!("/messages/{}", doomed[i].id);
        let producer = &producer;
        async move {
            let (code, body) = producer.get_status_json(&path).await;
            (code, body["status"].as_str().unwrap().to_owned())
        }
    };
    for i in 0..3 {
        assert_eq!(status(i).await, (200, "dead_lettered".to_owned()));
    }

    let res = producer
        .admin(Method::POST, "/dead-letters/redrive?limit=1")
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["redriven"], 1);
    assert_eq!(broker.depth(&broker.topology.store_queue).await, 1);
    assert_eq!(
        status(0).await,
        (404, "not_found".to_owned()),
        "redriven: queued again, no longer dead-lettered"
    );
    assert_eq!(status(1).await, (200, "dead_lettered".to_owned()));

    let res = producer
        .admin(Method::DELETE, "/dead-letters?confirm=true")
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["purged"], 2);
    for i in 1..3 {
        assert_eq!(
            status(i).await,
            (404, "not_found".to_owned()),
            "purged: gone for good, not dead-lettered for ever"
        );
    }
    producer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_id_is_not_a_uuid_cannot_redrive_them_all() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("ADMIN_TOKEN", ADMIN)]).await;
    // Two ordinary dead letters, and one planted with the id "." by anyone
    // who may publish to the dead-letter exchange.
    let dlx = broker.topology.dead_letter_exchange.clone();
    for i in 0..2 {
        let envelope = Envelope::new(format!("dead {i}"));
        broker
            .publish_to(&dlx, &envelope.to_body(), envelope.properties())
            .await;
    }
    let planted = serde_json::json!({"id": ".", "content": "planted"}).to_string();
    let props = lapin::BasicProperties::default().with_message_id(".".into());
    broker.publish_to(&dlx, planted.as_bytes(), props).await;
    let dead_queue = broker.topology.dead_queue.clone();
    wait_for("the dead letters", Duration::from_secs(20), || async {
        (broker.depth(&dead_queue).await == 3).then_some(())
    })
    .await;

    // Why the dashboard must never build the row's action from such an id:
    // `dead-letters/./redrive`, resolved as browsers (and reqwest) resolve
    // it, is the route that redrives everything.
    let dashboard = reqwest::Url::parse(&producer.url("/dashboard")).unwrap();
    assert_eq!(
        dashboard.join("dead-letters/./redrive").unwrap().path(),
        "/dead-letters/redrive"
    );
    // The server, asked for such an id as it is, refuses it and moves nothing.
    let addr = producer.base.trim_start_matches("http://").to_owned();
    for id in [".", "..", "%2E", "not-a-uuid"] {
        let request = format!(
            "POST /dead-letters/{id}/redrive HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {ADMIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let answer = e2e::raw::exchange(&addr, request.as_bytes(), Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "id {id:?}: {answer}");
    }
    assert_eq!(broker.depth(&dead_queue).await, 3, "nothing was redriven");
    producer.stop().await;
}
