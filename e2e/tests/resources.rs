//! The producer as a process of its own (the `test-producer` binary, see
//! `e2e::process`), for what a producer inside the test process cannot
//! show (issue 16):
//! * #7: under `ulimit -n 1024`, 1,100 idle `/events` streams must leave
//!   room for the probes and for posting: past the cap a stream gets a
//!   503 with `Retry-After` at once;
//! * #8: a 4 KB gzip body that would inflate to 4 MiB of `[0,0,…]`, and
//!   the 4 MiB itself, are refused without the process's peak memory
//!   growing by 10 MB;
//! * #9: a request sent in time is not answered 408 because the producer
//!   was not scheduled for a while (a starved machine, here a `SIGSTOP`),
//!   nor because its head came slowly but steadily; a connection that
//!   sends nothing, or stops halfway through its head, is still closed.
//!
//! A test binary of its own: it holds over a thousand sockets at once and
//! raises its own file limit for them. Each test has its own database and
//! topology prefix, so they run beside every other test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::raw::{exchange, post_json, read_head, read_to_close};
use e2e::{ProducerProcess, TestBroker, TestDb};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const BINARY: &str = env!("CARGO_BIN_EXE_test-producer");

/// The test process's own file limit, raised to its hard limit: the
/// streams of the first test are over a thousand sockets here too.
fn raise_own_file_limit() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let _ = rlimit::increase_nofile_limit(hard);
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(
        soft >= 2_000,
        "this test needs ulimit -n 2000 or more (have {soft})"
    );
}

/// What became of one `GET /events`.
enum Stream {
    /// Open and idle: the connection is held.
    Open(TcpStream),
    /// Refused with a 503 and a `Retry-After`.
    Refused,
    /// Anything else: no answer in time, another status.
    Other(String),
}

async fn open_stream(addr: String) -> Stream {
    let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await;
    let Ok(Ok(mut stream)) = connect else {
        return Stream::Other("no connection".into());
    };
    let request = "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Stream::Other("cannot send".into());
    }
    let head = read_head(&mut stream, Duration::from_secs(2))
        .await
        .to_ascii_lowercase();
    if head.starts_with("http/1.1 200") {
        Stream::Open(stream)
    } else if head.starts_with("http/1.1 503") && head.contains("\r\nretry-after: ") {
        Stream::Refused
    } else {
        Stream::Other(head.lines().next().unwrap_or("no answer").to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_event_streams_leave_room_for_probes_and_posts() {
    raise_own_file_limit();
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = ProducerProcess::spawn(BINARY, &db, &broker, &[], Some(1024)).await;

    let mut held = Vec::new();
    let (mut refused, mut other) = (0, Vec::new());
    for _ in 0..22 {
        let opening: Vec<_> = (0..50)
            .map(|_| tokio::spawn(open_stream(producer.addr.clone())))
            .collect();
        for result in futures_util::future::join_all(opening).await {
            match result.unwrap() {
                Stream::Open(stream) => held.push(stream),
                Stream::Refused => refused += 1,
                Stream::Other(what) => other.push(what),
            }
        }
    }
    eprintln!(
        "1100 streams: {} open, {refused} refused with 503, {} otherwise ({:?}); the producer holds {} files",
        held.len(),
        other.len(),
        other.first(),
        producer.open_files()
    );

    // A probe on a new connection answers within a second...
    let started = Instant::now();
    let probe = tokio::time::timeout(
        Duration::from_secs(1),
        reqwest::Client::new().get(producer.url("/healthz")).send(),
    )
    .await;
    let probe = probe.expect("/healthz within 1 s").unwrap();
    assert_eq!(probe.status(), 200);
    eprintln!("/healthz answered in {:?}", started.elapsed());
    // ...and a message is still accepted.
    let post = tokio::time::timeout(
        Duration::from_secs(5),
        reqwest::Client::new()
            .post(producer.url("/messages"))
            .json(&json!({"content": "beside 1100 streams"}))
            .send(),
    )
    .await;
    assert_eq!(
        post.expect("POST /messages within 5 s").unwrap().status(),
        202
    );
    // The cap was reached, and what it refused was told to come back.
    assert!(refused > 0, "no stream was refused: {} open", held.len());
    assert!(
        other.is_empty(),
        "every stream was served or refused: {other:?}"
    );
    assert!(held.len() >= 100, "room for streams: {}", held.len());
    drop(held);
    // Startup said how it can be reached (issue 16 #1).
    assert!(
        producer.log().contains("access: no API_TOKEN"),
        "{}",
        producer.log()
    );
}

/// `json` compressed with the system's `gzip`.
fn gzip(json: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip is needed");
    let mut stdin = child.stdin.take().unwrap();
    let input = json.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflated_batch_bodies_are_refused_without_growing_memory() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = ProducerProcess::spawn(BINARY, &db, &broker, &[], None).await;
    let client = reqwest::Client::new();
    // 4 MiB (the default MAX_BATCH_BODY_BYTES) of `[0,0,…]`.
    let limit = 4 * 1024 * 1024;
    let zeros = format!("[{}0]", "0,".repeat((limit - 3) / 2));
    assert!(zeros.len() <= limit);
    let compressed = gzip(zeros.as_bytes());
    assert!(compressed.len() < 8 * 1024, "{} bytes", compressed.len());

    // A normal batch first, so the baseline includes what serving one takes.
    let batch: Vec<_> = (0..1000)
        .map(|i| json!({"content": format!("m{i}")}))
        .collect();
    let res = client
        .post(producer.url("/messages/batch"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);

    let before = producer.peak_memory_kb();
    for path in ["/messages/batch", "/messages", "/add_message"] {
        let res = client
            .post(producer.url(path))
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(compressed.clone())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        eprintln!("gzip body to {path}: {status} {body}");
        assert_eq!(status, 415, "{path}: {body}");
        assert!(body.contains("Content-Encoding"), "{path}: {body}");
    }
    let after_gzip = producer.peak_memory_kb();
    // The 4 MiB itself, uncompressed: refused at item 1001.
    let res = client
        .post(producer.url("/messages/batch"))
        .header("content-type", "application/json")
        .body(zeros.clone())
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("1000"), "{body}");
    let after_plain = producer.peak_memory_kb();
    eprintln!(
        "peak memory: {before} kB, after the gzip bodies {after_gzip} kB, after 4 MiB of zeros {after_plain} kB"
    );
    assert!(
        after_gzip - before < 10 * 1024,
        "gzip bodies: peak memory grew by {} kB",
        after_gzip - before
    );
    assert!(
        after_plain - before < 10 * 1024,
        "4 MiB of zeros: peak memory grew by {} kB",
        after_plain - before
    );

    // The count is checked before the callback (whose check may need DNS).
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"content": format!("m{i}")}))
        .collect();
    let res = client
        .post(producer.url("/messages/batch"))
        .json(&json!({"messages": too_many, "callback_url": "http://127.0.0.1/hook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(body.contains("at most 1000"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_in_time_is_not_timed_out_when_the_producer_stalls() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = ProducerProcess::spawn(BINARY, &db, &broker, &[], None).await;
    let mut stream = TcpStream::connect(&producer.addr).await.unwrap();
    // Accepted, and its head awaited.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The producer is not scheduled for 6 s (a starved machine): the
    // request arrives meanwhile, sent at once and whole.
    producer.signal("STOP");
    let sent = stream
        .write_all(&post_json("/messages", r#"{"content": "sent in time"}"#))
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    producer.signal("CONT");
    sent.unwrap();
    let resumed = Instant::now();
    let answer = read_to_close(&mut stream, Duration::from_secs(15)).await;
    assert!(
        answer.starts_with("HTTP/1.1 202"),
        "{answer:?} after {:?}; the producer logged:\n{}",
        resumed.elapsed(),
        producer.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_slowly_but_steadily_is_served_and_a_silent_one_is_not() {
    let db = TestDb::new();
    let broker = TestBroker::new().await;
    let producer = ProducerProcess::spawn(BINARY, &db, &broker, &[], None).await;

    // A head of 8 lines, one every 900 ms: 7 s in all, never silent for long.
    let body = r#"{"content": "slow but steady"}"#;
    let lines = [
        "POST /messages HTTP/1.1\r\n".to_owned(),
        "Host: localhost\r\n".to_owned(),
        "Content-Type: application/json\r\n".to_owned(),
        format!("Content-Length: {}\r\n", body.len()),
        "X-One: 1\r\n".to_owned(),
        "X-Two: 2\r\n".to_owned(),
        "Connection: close\r\n".to_owned(),
        format!("\r\n{body}"),
    ];
    let mut stream = TcpStream::connect(&producer.addr).await.unwrap();
    for line in &lines {
        tokio::time::sleep(Duration::from_millis(900)).await;
        if stream.write_all(line.as_bytes()).await.is_err() {
            break; // the producer hung up: its answer says why
        }
    }
    let answer = read_to_close(&mut stream, Duration::from_secs(15)).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    // A connection that sends nothing, and one that stops halfway through
    // its head, are still closed (HEAD_TIMEOUT_MS, default 5 s).
    let started = Instant::now();
    let silent = exchange(&producer.addr, b"", Duration::from_secs(20)).await;
    let silent_after = started.elapsed();
    let started = Instant::now();
    let halfway = exchange(
        &producer.addr,
        b"POST /messages HTTP/1.1\r\nHost: local",
        Duration::from_secs(20),
    )
    .await;
    let halfway_after = started.elapsed();
    eprintln!("silent connection closed after {silent_after:?}: {silent:?}; halfway after {halfway_after:?}: {halfway:?}");
    assert!(silent_after < Duration::from_secs(15), "{silent_after:?}");
    assert!(halfway_after < Duration::from_secs(15), "{halfway_after:?}");
    assert!(!silent.contains(" 202 ") && !halfway.contains(" 202 "));
}
