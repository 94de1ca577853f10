//! A webhook receiver for tests: a real HTTP server on 127.0.0.1 that
//! records every request, answers from a script of statuses (then 200),
//! can be slow, and can go down (its port closed: connections refused) and
//! come back on the same port.
//!
//! Deliberately minimal HTTP/1.1 (one request per connection, `Connection:
//! close`): what it tests is the deliverer, not an HTTP stack.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The body.
    pub body: Vec<u8>,
    /// The status answered.
    pub answered: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<u16>,
    delay: Duration,
    in_flight: usize,
    max_in_flight: usize,
}

/// The receiver; stops when dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    /// Listen on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let task = tokio::spawn(serve(listener, state.clone()));
        Self {
            addr,
            state,
            task: Mutex::new(Some(task)),
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Its origin, `http://127.0.0.1:<port>`: what its signing key is
    /// derived from.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its signing key under the master secret `master` (see [`origin_key`]).
    pub fn key(&self, master: &str) -> Vec<u8> {
        origin_key(master, &self.origin())
    }

    /// Answer these statuses first, in order, then 200.
    pub fn script(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script = statuses.iter().copied().collect();
    }

    /// Wait this long before each answer.
    pub fn slow(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests being answered now, and the most ever at once.
    pub fn in_flight(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.in_flight, s.max_in_flight)
    }

    /// Close the port: connections are refused until [`Self::restart`].
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Listen again on the same port.
    pub async fn restart(&self) {
        self.stop();
        // The aborted task drops its listener when it is next polled.
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let task = tokio::spawn(serve(listener, self.state.clone()));
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(answer(stream, state.clone()));
    }
}

async fn answer(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let length = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            break (pos + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let body = buf[head_end..head_end + length].to_vec();
    let delay = {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.delay
    };
    tokio::time::sleep(delay).await;
    let status = {
        let mut s = state.lock().unwrap();
        s.in_flight -= 1;
        let status = s.script.pop_front().unwrap_or(200);
        s.received.push(Received {
            id: header(&head, "webhook-id").unwrap_or_default(),
            timestamp: header(&head, "webhook-timestamp").unwrap_or_default(),
            signature: header(&head, "webhook-signature").unwrap_or_default(),
            body,
            answered: status,
        });
        status
    };
    let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The signing key of `origin` under the master secret `master`, computed
/// here as docs/security.md states it (HMAC-SHA256 keyed with the master
/// key, over `"origin:" + origin`), independently of the code that signs,
/// so that a test holds the two to each other.
pub fn origin_key(master: &str, origin: &str) -> Vec<u8> {
    let master = match master.strip_prefix("whsec_") {
        Some(b64) => BASE64.decode(b64).unwrap(),
        None => master.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&master).unwrap();
    mac.update(format!("origin:{origin}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Verify a request as `docs/api.md` ("Signed webhooks") tells receivers to: HMAC-SHA256 over
/// `"{id}.{timestamp}.{body}"` with the secret, base64, compared with each
/// `v1,` signature of the header (constant-time, by `verify_slice`).
pub fn verify(secret: &[u8], r: &Received) -> bool {
    let mut signed = format!("{}.{}.", r.id, r.timestamp).into_bytes();
    signed.extend_from_slice(&r.body);
    r.signature.split(' ').any(|sig| {
        let Some(b64) = sig.strip_prefix("v1,") else {
            return false;
        };
        let Ok(expected) = BASE64.decode(b64) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(&signed);
        mac.verify_slice(&expected).is_ok()
    })
}
