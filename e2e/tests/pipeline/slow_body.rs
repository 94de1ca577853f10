//! A request body trickled in slowly is cut off: the whole body must arrive
//! within `BODY_TIMEOUT_MS`, or the answer is a 408 JSON error.

use std::time::Duration;

use e2e::{spawn_producer, TestBroker, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_body_gets_408() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = spawn_producer(&db, &broker, &[("BODY_TIMEOUT_MS", "1000")]).await;
    let addr = producer.base.trim_start_matches("http://").to_owned();

    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let head =
            "POST /messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                    Content-Length: 60000\r\n\r\n{\"content\": \"";
        writer.write_all(head.as_bytes()).await.unwrap();
        // One byte every 100 ms: far below the size limit, and never done.
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"x").await.is_err() {
                break; // the server hung up: what we want
            }
        }
    });

    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "no answer while the body trickled: {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    producer.stop().await;
}
