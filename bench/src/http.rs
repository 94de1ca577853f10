//! HTTP load: C keep-alive connections, each sending requests back to back
//! (or paced to a target rate), recording every latency and returned id.
//! The messages may carry a `deliver_at` (see [`DeliverAt`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use uuid::Uuid;

/// What one load run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Requests answered 202.
    pub accepted: usize,
    /// Requests answered otherwise (or failed).
    pub errors: usize,
    /// Ids returned by the 202s.
    pub ids: Vec<Uuid>,
    /// Latency of each request, sorted.
    pub latencies: Vec<Duration>,
    /// From the first request sent to the last answer.
    pub elapsed: Duration,
}

impl LoadResult {
    /// The runs of `parts`, side by side, as one: their counts and ids
    /// added, their latencies sorted together, over `elapsed`.
    pub fn merged(parts: impl IntoIterator<Item = LoadResult>, elapsed: Duration) -> Self {
        let mut total = LoadResult::default();
        for part in parts {
            total.accepted += part.accepted;
            total.errors += part.errors;
            total.ids.extend(part.ids);
            total.latencies.extend(part.latencies);
        }
        total.elapsed = elapsed;
        total.latencies.sort();
        total
    }

    /// Requests per second.
    pub fn rps(&self) -> f64 {
        (self.accepted + self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

/// The `q` quantile of sorted `values`.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    values[i.min(values.len() - 1)]
}

/// What to send.
pub struct Plan {
    /// Target.
    pub addr: SocketAddr,
    /// `/messages` or `/messages/batch`.
    pub path: &'static str,
    /// Requests to send.
    pub requests: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Messages per request (1 for the single endpoint).
    pub per_request: usize,
    /// Requests per second to pace to, or as fast as possible.
    pub rate: Option<f64>,
    /// A tag put into every message's content.
    pub tag: String,
    /// Send an `Idempotency-Key` (`<tag>-<i>`) with every request.
    pub keyed: bool,
    /// Every n-th single message asks for a callback (0: none), to a
    /// discard port on 127.0.0.1 (run without a deliverer, or with one and
    /// WEBHOOK_ALLOWED_HOSTS=127.0.0.1:9: nothing leaves the machine).
    pub callback_every: usize,
    /// When the messages are to be delivered (issue 19).
    pub deliver_at: DeliverAt,
}

/// The `deliver_at` each message of a plan carries. Message k is item j of
/// request i (k = i × per_request + j).
#[derive(Debug, Clone, Copy)]
pub enum DeliverAt {
    /// None: delivered at once.
    Now,
    /// Message k at `first + k / per_second`: `per_second` fall due each
    /// second.
    Spread {
        first: DateTime<Utc>,
        per_second: f64,
    },
    /// Every message at the same time.
    At(DateTime<Utc>),
}

impl DeliverAt {
    /// The `,"deliver_at":"…"` to put in message k's JSON object (empty for
    /// `Now`).
    fn field(&self, k: usize) -> String {
        let at = match *self {
            DeliverAt::Now => return String::new(),
            DeliverAt::Spread { first, per_second } => {
                first + chrono::Duration::microseconds((k as f64 / per_second * 1e6) as i64)
            }
            DeliverAt::At(at) => at,
        };
        format!(
            r#","deliver_at":"{}""#,
            at.to_rfc3339_opts(SecondsFormat::Micros, true)
        )
    }
}

/// Run the plan.
pub async fn run(plan: Plan) -> anyhow::Result<LoadResult> {
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..plan.connections {
        let (plan, next) = (plan.clone(), next.clone());
        tasks.push(tokio::spawn(
            async move { connection(plan, next, start).await },
        ));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        parts.push(task.await.context("load task panicked")??);
    }
    Ok(LoadResult::merged(parts, start.elapsed()))
}

fn body(plan: &Plan, i: usize) -> Bytes {
    if plan.per_request == 1 && plan.callback_every > 0 && i.is_multiple_of(plan.callback_every) {
        Bytes::from(format!(
            r#"{{"content":"{} message {i}","callback_url":"http://127.0.0.1:9/hook"{}}}"#,
            plan.tag,
            plan.deliver_at.field(i)
        ))
    } else if plan.per_request == 1 {
        Bytes::from(format!(
            r#"{{"content":"{} message {i}"{}}}"#,
            plan.tag,
            plan.deliver_at.field(i)
        ))
    } else {
        let items: Vec<String> = (0..plan.per_request)
            .map(|j| {
                format!(
                    r#"{{"content":"{} message {i}.{j}"{}}}"#,
                    plan.tag,
                    plan.deliver_at.field(i * plan.per_request + j)
                )
            })
            .collect();
        Bytes::from(format!("[{}]", items.join(",")))
    }
}

async fn connection(
    plan: Arc<Plan>,
    next: Arc<AtomicUsize>,
    start: Instant,
) -> anyhow::Result<LoadResult> {
    let stream = tokio::net::TcpStream::connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    // The address itself as the Host: without API_TOKEN the producer
    // answers only loopback hosts (a DNS-rebinding guard).
    let host = plan.addr.to_string();
    let mut out = LoadResult::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.requests {
            break;
        }
        if let Some(rate) = plan.rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut request = Request::post(plan.path)
            .header("host", host.as_str())
            .header("content-type", "application/json");
        if plan.keyed {
            request = request.header("idempotency-key", format!("{}-{i}", plan.tag));
        }
        let request = request.body(Full::new(body(&plan, i)))?;
        let sent = Instant::now();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        out.latencies.push(sent.elapsed());
        if status.as_u16() != 202 {
            out.errors += 1;
            continue;
        }
        out.accepted += 1;
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        if let Some(id) = value["id"].as_str() {
            out.ids.push(id.parse()?);
        } else if let Some(ids) = value["ids"].as_array() {
            for id in ids {
                out.ids.push(id.as_str().unwrap_or_default().parse()?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_runs_add_up_and_sort_their_latencies() {
        let ms = Duration::from_millis;
        let part = |accepted, errors, latencies: Vec<Duration>| LoadResult {
            accepted,
            errors,
            ids: vec![Uuid::new_v4(); accepted],
            latencies,
            elapsed: ms(1),
        };
        let total = LoadResult::merged(
            [
                part(2, 1, vec![ms(3), ms(5)]),
                part(1, 0, vec![ms(1), ms(4)]),
            ],
            Duration::from_secs(2),
        );
        assert_eq!((total.accepted, total.errors, total.ids.len()), (3, 1, 3));
        assert_eq!(total.latencies, vec![ms(1), ms(3), ms(4), ms(5)]);
        assert_eq!(total.elapsed, Duration::from_secs(2));
        assert_eq!(total.rps(), 2.0);
    }
}
