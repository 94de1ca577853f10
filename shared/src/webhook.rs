//! Webhooks: the Standard Webhooks signature, and which callback URLs may
//! be called at all. The producer checks a URL at the door (a bad one is a
//! 400) and the consumer checks it again when delivering, because a host
//! name can resolve somewhere else by then (DNS rebinding).
//!
//! Signature (<https://www.standardwebhooks.com/>): the headers
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`,
//! keyed with `WEBHOOK_SECRET` (a `whsec_<base64>` secret is base64-decoded
//! first, as the Standard Webhooks libraries do; any other value is used
//! as its bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

/// Header carrying the event id (receivers deduplicate on it).
pub const ID_HEADER: &str = "webhook-id";
/// Header carrying the Unix time of the attempt.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Header carrying `v1,<signature>`.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Longest callback URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Signs webhook bodies. The key never prints.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

/// Why a webhook secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `whsec_` followed by something that is not base64.
    #[error("whsec_ secret is not base64: {0}")]
    NotBase64(#[from] base64::DecodeError),
    /// No key bytes.
    #[error("the secret is empty")]
    Empty,
}

impl Signer {
    /// A signer for `secret` (`whsec_<base64>` or plain text).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => BASE64.decode(b64)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// The `webhook-signature` value for one attempt: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// Why a callback URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("callback_url is not a valid URL: {0}")]
    Malformed(String),
    /// Longer than [`MAX_URL_LEN`].
    #[error("callback_url is longer than {MAX_URL_LEN} characters")]
    TooLong,
    /// Neither http nor https.
    #[error("callback_url must be http or https, not {0:?}")]
    Scheme(String),
    /// No host.
    #[error("callback_url has no host")]
    NoHost,
    /// The host is, or resolves to, an address webhooks may not reach.
    #[error("callback_url host {host} is (or resolves to) a loopback, private, link-local or metadata address ({addr}); list it in WEBHOOK_ALLOWED_HOSTS to allow it")]
    Forbidden {
        /// The URL's host.
        host: String,
        /// The address refused.
        addr: IpAddr,
    },
    /// The host does not resolve.
    #[error("callback_url host {0} does not resolve")]
    Unresolvable(String),
}

/// `WEBHOOK_ALLOWED_HOSTS`: hosts (names or addresses, compared without
/// case) that webhooks may reach even when they are private or local.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// Parse a comma-separated list (spaces ignored; `[::1]` or `::1`).
    pub fn parse(list: &str) -> Self {
        Self(
            list.split(',')
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect(),
        )
    }

    /// Whether `host` (as in a URL, IPv6 with or without brackets) is listed.
    pub fn allows(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.0.contains(&host)
    }
}

/// Check a callback URL's form, and its host when it is an address:
/// http/https, a host, not too long, no forbidden address literal.
/// Host names are checked by [`resolve_checked`].
pub fn check_url(text: &str, allowed: &AllowedHosts) -> Result<Url, UrlError> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(text).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    let host = url.host_str().ok_or(UrlError::NoHost)?.to_owned();
    if allowed.allows(&host) {
        return Ok(url);
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(addr) = literal {
        if is_forbidden(addr) {
            return Err(UrlError::Forbidden { host, addr });
        }
    }
    Ok(url)
}

/// Resolve `host` (within `timeout`) and keep only the addresses webhooks
/// may reach: all of them if the host is allowed, else the public ones.
/// An error when none is left, naming the first refused.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allowed: &AllowedHosts,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, UrlError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let lookup = tokio::net::lookup_host((bare, port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(_)) | Err(_) => return Err(UrlError::Unresolvable(host.to_owned())),
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable(host.to_owned()));
    }
    if allowed.allows(host) {
        return Ok(addrs);
    }
    // Every address must be public: a name that resolves to both a public
    // and a private address is refused, not half-trusted.
    if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(UrlError::Forbidden {
            host: host.to_owned(),
            addr: bad.ip(),
        });
    }
    Ok(addrs)
}

/// Check a URL fully: its form, then what its host resolves to.
pub async fn check_url_resolving(
    text: &str,
    allowed: &AllowedHosts,
    timeout: Duration,
) -> Result<Url, UrlError> {
    let url = check_url(text, allowed)?;
    if let Some(url::Host::Domain(host)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(80);
        resolve_checked(host, port, allowed, timeout).await?;
    }
    Ok(url)
}

/// Addresses a webhook must never reach unless allowed: loopback, private,
/// link-local (which holds the cloud metadata service 169.254.169.254),
/// shared (CGNAT, where some clouds put theirs), unspecified, broadcast,
/// multicast, documentation and reserved ranges, and their IPv6
/// counterparts (unique local fc00::/7 holds AWS's fd00:ec2::254).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64 (embeds IPv4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's test vectors.
        let signer = Signer::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(Signer::new("").is_err());
        assert!(format!("{signer:?}").contains("***"));
    }

    #[test]
    fn urls_are_checked() {
        let none = AllowedHosts::default();
        assert!(check_url("https://example.com/hook", &none).is_ok());
        assert!(matches!(
            check_url("ftp://example.com/", &none),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("not a url", &none),
            Err(UrlError::Malformed(_))
        ));
        for bad in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.100.100.200/",
            "http://192.168.1.1:8080/",
        ] {
            assert!(
                matches!(check_url(bad, &none), Err(UrlError::Forbidden { .. })),
                "{bad}"
            );
        }
        let allowed = AllowedHosts::parse("127.0.0.1, [::1] ,Receiver.Local");
        assert!(check_url("http://127.0.0.1:9/x", &allowed).is_ok());
        assert!(check_url("http://[::1]:9/x", &allowed).is_ok());
        assert!(allowed.allows("receiver.local"));
        assert!(!allowed.allows("127.0.0.2"));
    }

    #[test]
    fn ipv6_embeddings_of_ipv4_and_the_6to4_relay_are_refused() {
        let refused = |text: &str| is_forbidden(text.parse().unwrap());
        // IPv4-compatible (::/96, deprecated): whatever the IPv4 inside.
        assert!(refused("::127.0.0.1"));
        assert!(refused("::8.8.8.8"));
        assert!(refused("::ffff:1"), "::/96 holds ::ffff:1, not a mapped address");
        // 6to4 (2002::/16), whatever the IPv4 inside.
        assert!(refused("2002:7f00:1::"));
        assert!(refused("2002:808:808::1"));
        assert!(refused("2002:ffff:ffff:ffff::"));
        // Teredo (2001:0::/32) only: the rest of 2001::/16 is public.
        assert!(refused("2001:0:4136:e378:8000:63bf:3fff:fdd2"));
        assert!(refused("2001::1"));
        assert!(!refused("2001:1::1"));
        assert!(!refused("2001:4860:4860::8888"));
        assert!(!refused("2001:db9::1"));
        // The 6to4 relay anycast 192.88.99.0/24, and only it.
        assert!(refused("192.88.99.1"));
        assert!(refused("192.88.99.255"));
        assert!(refused("::ffff:192.88.99.1"));
        assert!(!refused("192.88.98.1"));
        assert!(!refused("192.88.100.1"));
        // Public addresses stay reachable.
        assert!(!refused("8.8.8.8"));
        assert!(!refused("2606:4700:4700::1111"));
        assert!(!refused("::ffff:8.8.8.8"));
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        let none = AllowedHosts::default();
        // `localhost` resolves from /etc/hosts: no traffic leaves the host.
        let err = check_url_resolving("http://localhost:1/", &none, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, UrlError::Forbidden { .. }), "{err}");
        let allowed = AllowedHosts::parse("localhost");
        assert!(
            check_url_resolving("http://localhost:1/", &allowed, Duration::from_secs(2))
                .await
                .is_ok()
        );
    }
}
