//! Checking a callback URL: its form (http or https, a host, not too long),
//! its port (80 and 443 unless listed) and its host's addresses (none that
//! [`is_forbidden`] refuses, unless listed). Address literals are checked
//! by [`check_url`]; names by [`resolve_checked`], which the consumer's
//! resolver also uses, so that at delivery the address checked is the
//! address connected to.
//!
//! The errors say what is wrong in words a client may see: never an
//! address a name resolved to, nor the resolver's message.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

use crate::webhook::address::is_forbidden;
use crate::webhook::allowed::AllowedHosts;
use crate::webhook::failure::Failure;

/// Longest callback URL accepted.
pub const MAX_URL_LEN: usize = 2048;

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
    /// A port other than 80 and 443, not listed.
    #[error("callback_url port {0} is refused (forbidden_port): webhooks go to ports 80 and 443 only, unless WEBHOOK_ALLOWED_HOSTS lists host:port")]
    Port(u16),
    /// The host is, or resolves to, an address webhooks may not reach. The
    /// address is kept for the operator's log (`Debug`), never displayed.
    #[error("callback_url host is, or resolves to, an address webhooks may not reach (forbidden_address: loopback, private, link-local or reserved); list it in WEBHOOK_ALLOWED_HOSTS to allow it")]
    Forbidden {
        /// The URL's host.
        host: String,
        /// The address refused.
        addr: IpAddr,
    },
    /// The host does not resolve.
    #[error("callback_url host does not resolve (dns)")]
    Unresolvable(String),
}

impl UrlError {
    /// The category clients are told.
    pub fn category(&self) -> Failure {
        match self {
            Self::Malformed(_) | Self::TooLong | Self::Scheme(_) | Self::NoHost => {
                Failure::InvalidUrl
            }
            Self::Port(_) => Failure::ForbiddenPort,
            Self::Forbidden { .. } => Failure::ForbiddenAddress,
            Self::Unresolvable(_) => Failure::Dns,
        }
    }
}

/// Check a callback URL's form, its port, and its host when it is an
/// address. Host names are checked by [`resolve_checked`].
pub fn check_url(text: &str, allowed: &AllowedHosts) -> Result<Url, UrlError> {
    if text.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(text).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    let host = url.host_str().ok_or(UrlError::NoHost)?.to_owned();
    let port = url.port_or_known_default().ok_or(UrlError::NoHost)?;
    if !allowed.allows_port(&host, port) {
        return Err(UrlError::Port(port));
    }
    if allowed.allows_address(&host) {
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
/// may reach: all of them if the host is listed, else the public ones.
/// An error when none is left.
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
    if allowed.allows_address(host) {
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

/// Check a URL fully: its form and port, then what its host resolves to.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> AllowedHosts {
        AllowedHosts::default()
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://example.com/hook", &none()).is_ok());
        assert!(matches!(
            check_url("ftp://example.com/", &none()),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("not a url", &none()),
            Err(UrlError::Malformed(_))
        ));
        for bad in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://[2001:0:4136:e378::1]/",
            "http://192.88.99.1/",
            "http://0.0.0.0/",
            "http://100.100.100.200/",
            "http://192.168.1.1/",
        ] {
            let err = check_url(bad, &none()).unwrap_err();
            assert!(matches!(err, UrlError::Forbidden { .. }), "{bad}");
            assert_eq!(err.category(), Failure::ForbiddenAddress);
            // The message names the category, not the address.
            let text = err.to_string();
            assert!(text.contains("forbidden_address"), "{text}");
        }
        assert_eq!(
            check_url("http://10.1.2.3:8080/", &none()).unwrap_err(),
            UrlError::Port(8080),
            "the port is refused first"
        );
        let allowed = AllowedHosts::parse("127.0.0.1, [::1]:9 ,Receiver.Local").unwrap();
        assert!(check_url("http://127.0.0.1/x", &allowed).is_ok());
        assert!(check_url("http://[::1]:9/x", &allowed).is_ok());
        assert_eq!(
            check_url("http://127.0.0.1:9/x", &allowed).unwrap_err(),
            UrlError::Port(9)
        );
        assert!(
            check_url("http://[::1]/x", &allowed).is_ok(),
            "listed: any of its addresses"
        );
    }

    #[test]
    fn only_ports_80_and_443_unless_listed() {
        assert!(check_url("http://example.com:80/", &none()).is_ok());
        assert!(check_url("http://example.com:443/", &none()).is_ok());
        assert!(check_url("https://example.com/", &none()).is_ok());
        for bad in [
            "http://example.com:8080/",
            "https://example.com:8443/",
            "http://93.184.215.14:22/",
            "http://example.com:6379/",
        ] {
            let err = check_url(bad, &none()).unwrap_err();
            assert_eq!(err.category(), Failure::ForbiddenPort, "{bad}");
            assert!(err.to_string().contains("WEBHOOK_ALLOWED_HOSTS"));
        }
        let allowed = AllowedHosts::parse("hooks.example:8443, any.example:*").unwrap();
        assert!(check_url("https://hooks.example:8443/", &allowed).is_ok());
        assert!(check_url("https://hooks.example:8444/", &allowed).is_err());
        assert!(check_url("http://any.example:1/", &allowed).is_ok());
    }

    #[tokio::test]
    async fn names_are_checked_by_what_they_resolve_to() {
        // `localhost` resolves from /etc/hosts: no traffic leaves the host.
        let err = check_url_resolving("http://localhost/", &none(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, UrlError::Forbidden { .. }), "{err}");
        // The resolver's answer is not told.
        let text = err.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains("::1"),
            "{text}"
        );
        let allowed = AllowedHosts::parse("localhost").unwrap();
        assert!(
            check_url_resolving("http://localhost/", &allowed, Duration::from_secs(2))
                .await
                .is_ok()
        );
    }
}
