//! Optional: RabbitMQ's management HTTP API, asked for the one figure AMQP
//! does not give: deliveries handed to consumers and not yet acknowledged
//! ("in flight"). A passive `queue.declare` answers only the ready count.
//! Set `RABBITMQ_MANAGEMENT_URL` (e.g. `http://guest:guest@rabbitmq:15672`)
//! to enable it; without it the dashboard says "n/a".

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// Longest wait for the management API's answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why `RABBITMQ_MANAGEMENT_URL` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// It does not parse.
    #[error("is not a URL: {0}")]
    NotAUrl(String),
    /// Not plain HTTP.
    #[error("must be an http:// URL")]
    NotHttp,
    /// No host to ask.
    #[error("has no host")]
    NoHost,
    /// It cannot take path segments (such as `mailto:`-like URLs).
    #[error("RABBITMQ_MANAGEMENT_URL cannot be a base URL")]
    NotABase,
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A parsed `RABBITMQ_MANAGEMENT_URL`; prints without its password.
#[derive(Clone)]
pub struct ManagementUrl {
    base: Url,
    user: String,
    password: String,
}

impl ManagementUrl {
    /// Parse `http://user:password@host:port`: plain HTTP (the producer's
    /// HTTP client carries no TLS stack; the API is an internal one).
    pub fn parse(text: &str) -> Result<Self, ManagementError> {
        let mut base = Url::parse(text).map_err(|e| ManagementError::NotAUrl(e.to_string()))?;
        if base.scheme() != "http" {
            return Err(ManagementError::NotHttp);
        }
        if base.host_str().is_none() {
            return Err(ManagementError::NoHost);
        }
        let user = percent_decode(base.username());
        let password = percent_decode(base.password().unwrap_or_default());
        // Credentials go in the Authorization header, not in the URL (and
        // so never into a log line).
        let _ = base.set_username("");
        let _ = base.set_password(None);
        Ok(Self {
            base,
            user,
            password,
        })
    }
}

impl fmt::Debug for ManagementUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ManagementUrl({} as {:?}, password ***)",
            self.base, self.user
        )
    }
}

/// Userinfo may carry %-escapes (a password with '@' or ':').
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// What the management API says about one queue.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct QueueFigures {
    /// Delivered to a consumer, not yet acknowledged.
    pub messages_unacknowledged: u64,
}

/// A client for one queue's figures.
pub struct ManagementApi {
    client: reqwest::Client,
    queue_url: Url,
    user: String,
    password: String,
}

impl ManagementApi {
    /// A client asking about `queue` in `vhost`.
    pub fn new(url: &ManagementUrl, vhost: &str, queue: &str) -> Result<Self, ManagementError> {
        let mut queue_url = url.base.clone();
        queue_url
            .path_segments_mut()
            .map_err(|()| ManagementError::NotABase)?
            .pop_if_empty()
            // Each pushed segment is percent-encoded: the default vhost "/"
            // becomes %2F, as the API wants.
            .extend(["api", "queues", vhost, queue]);
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ManagementError::Client)?;
        Ok(Self {
            client,
            queue_url,
            user: url.user.clone(),
            password: url.password.clone(),
        })
    }

    /// The queue's figures, or `None` (logged) when the API does not answer
    /// well within `TIMEOUT`. Its numbers are sampled by RabbitMQ every
    /// few seconds, so they lag a little.
    pub async fn queue(&self) -> Option<QueueFigures> {
        let sent = self
            .client
            .get(self.queue_url.clone())
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await;
        let response = match sent.and_then(|r| r.error_for_status()) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("RabbitMQ management API: {}", e.without_url());
                return None;
            }
        };
        match response.json::<QueueFigures>().await {
            Ok(figures) => Some(figures),
            Err(e) => {
                log::warn!(
                    "RabbitMQ management API: unexpected answer: {}",
                    e.without_url()
                );
                None
            }
        }
    }
}

/// The dashboard's source of the in-flight count (none when
/// `RABBITMQ_MANAGEMENT_URL` is unset); shared app data.
pub struct InFlight(pub Option<ManagementApi>);

impl InFlight {
    /// Ask `url` (none: unknown) about `queue` in `vhost`.
    pub fn new(
        url: Option<&ManagementUrl>,
        vhost: &str,
        queue: &str,
    ) -> Result<Self, ManagementError> {
        url.map(|url| ManagementApi::new(url, vhost, queue))
            .transpose()
            .map(Self)
    }

    /// Deliveries in flight on the store queue, if known.
    pub async fn count(&self) -> Option<u64> {
        let api = self.0.as_ref()?;
        api.queue().await.map(|q| q.messages_unacknowledged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_without_leaking_the_password() {
        let url = ManagementUrl::parse("http://ops:p%40ss@rabbit:15672").unwrap();
        assert_eq!((url.user.as_str(), url.password.as_str()), ("ops", "p@ss"));
        assert!(!format!("{url:?}").contains("p@ss"));
        assert!(!format!("{url:?}").contains("p%40ss"));
        let api = ManagementApi::new(&url, "/", "x.messages.store").unwrap();
        assert_eq!(
            api.queue_url.as_str(),
            "http://rabbit:15672/api/queues/%2F/x.messages.store"
        );
        assert!(ManagementUrl::parse("https://rabbit").is_err());
        assert!(ManagementUrl::parse("rabbit:15672").is_err());
    }
}
