//! `GET /messages` pages in commit order: a client tailing with the cursor
//! never skips a row whose transaction commits after a later one.

use std::time::Duration;

use diesel::RunQueryDsl;
use e2e::{spawn_producer, TestApp, TestBroker, TestDb};
use serde_json::Value;

fn exec(conn: &mut diesel::PgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).unwrap();
}

fn insert(content: &str, created_at: &str) -> String {
    format!(
        "INSERT INTO messages (id, content, created_at) \
         VALUES (gen_random_uuid(), '{content}', '{created_at}')"
    )
}

/// Read every page after `cursor`, as a tailing client does, and return
/// the contents seen and the cursor to continue from.
async fn tail(producer: &TestApp, mut cursor: Option<String>) -> (Vec<String>, Option<String>) {
    let mut seen = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/messages?limit=1&cursor={c}"),
            None => "/messages?limit=1".to_owned(),
        };
        let res = producer.get(&path).await;
        assert_eq!(res.status(), 200);
        let next = res.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            let url = &link[1..link.find('>').unwrap()];
            url.split("cursor=").nth(1).unwrap().to_owned()
        });
        // The cursor after this page's last row, whether or not more follow.
        let here = res
            .headers()
            .get("cursor")
            .map(|c| c.to_str().unwrap().to_owned());
        let page: Vec<Value> = res.json().await.unwrap();
        seen.extend(
            page.iter()
                .map(|m| m["content"].as_str().unwrap().to_owned()),
        );
        match (next, here) {
            (Some(next), _) => cursor = Some(next),
            (None, Some(here)) => return (seen, Some(here)),
            (None, None) => return (seen, cursor),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_by_cursor_sees_a_row_that_commits_late() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[]).await;

    exec(&mut db.connect(), &insert("c", "2026-01-01T00:00:00Z"));
    // T1 starts first and inserts first, but commits last.
    let mut t1 = db.connect();
    exec(&mut t1, "BEGIN");
    exec(&mut t1, &insert("a", "2026-01-01T00:00:01Z"));
    let mut t2 = db.connect();
    exec(&mut t2, "BEGIN");
    exec(&mut t2, &insert("b", "2026-01-01T00:00:02Z"));
    exec(&mut t2, &insert("d", "2026-01-01T00:00:03Z"));
    exec(&mut t2, "COMMIT");

    let (mut seen, cursor) = tail(&producer, None).await;
    exec(&mut t1, "COMMIT");

    // Poll from where the tail stopped until the late row shows up (or the
    // deadline proves it never will).
    let mut cursor = cursor;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 && tokio::time::Instant::now() < deadline {
        let (more, next) = tail(&producer, cursor.clone()).await;
        seen.extend(more);
        cursor = next;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["a", "b", "c", "d"],
        "each row exactly once: {seen:?}"
    );
    producer.stop().await;
}
