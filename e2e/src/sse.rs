//! Reading a server-sent event stream (`GET /events`) the way a browser's
//! EventSource does: events end with a blank line, their `data:` lines are
//! JSON here.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// An open event stream.
pub struct EventStream {
    response: reqwest::Response,
    buf: String,
}

impl EventStream {
    /// Read the events of `response` (a 200 `text/event-stream`).
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buf: String::new(),
        }
    }

    /// The next `data:` payload, or `None` if none arrives by `deadline` or
    /// the stream ends.
    pub async fn next_until(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            let Ok(Ok(Some(chunk))) = chunk else {
                return None;
            };
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `data:` payload; the test fails if none comes within 15 s.
    pub async fn next(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        self.next_until(deadline)
            .await
            .expect("no event within 15 s")
    }

    /// Every payload whose `type` is `kind` that arrives within `window`.
    pub async fn collect(&mut self, kind: &str, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut found = Vec::new();
        while let Some(event) = self.next_until(deadline).await {
            if event["type"] == kind {
                found.push(event);
            }
        }
        found
    }
}
