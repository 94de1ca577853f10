//! HTTP/1.1 spoken by hand over a TCP connection, for what an HTTP client
//! will not do: a path it would normalise (`/a/./b`), no `Host` header, a
//! head sent a line at a time, a stream left open and idle.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send `request` (head and body, as bytes) on a new connection to `addr`
/// and read the answer until the server closes or `timeout` passes; what
/// arrived, as text (empty if nothing did).
pub async fn exchange(addr: &str, request: &[u8], timeout: Duration) -> String {
    let Ok(Ok(mut stream)) = tokio::time::timeout(timeout, TcpStream::connect(addr)).await else {
        return String::new();
    };
    if stream.write_all(request).await.is_err() {
        return String::new();
    }
    read_to_close(&mut stream, timeout).await
}

/// Read from `stream` until the server closes it or `timeout` passes.
pub async fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Read from `stream` until the end of a response head (or `timeout`);
/// the head, as text (empty if none arrived in time).
pub async fn read_head(stream: &mut TcpStream, timeout: Duration) -> String {
    let mut head = Vec::new();
    let done = tokio::time::timeout(timeout, async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    })
    .await;
    match done {
        Ok(true) => String::from_utf8_lossy(&head).into_owned(),
        _ => String::new(),
    }
}

/// A `POST path` of the JSON `body` with `Host: localhost`, closing the
/// connection after the answer.
pub fn post_json(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
