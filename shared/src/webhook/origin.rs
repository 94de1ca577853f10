//! A destination's origin, `scheme://host:port`, written one way: scheme
//! and host in lower case (names in their ASCII form, IPv6 compressed in
//! brackets), the port always present. It keys a destination's signing key
//! and its delivery limits, so that `HTTPS://Example.com/a` and
//! `https://example.com:443/b` are one destination.

use url::Url;

/// A normalised origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

/// Why a text is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Not a URL.
    #[error("origin is not a URL: {0}; expected scheme://host:port")]
    Malformed(String),
    /// Neither http nor https.
    #[error("origin must be http or https, not {0:?}")]
    Scheme(String),
    /// No host.
    #[error("origin has no host")]
    NoHost,
    /// A path, query, fragment or userinfo: more than an origin.
    #[error(
        "origin must be scheme://host:port only, without a path, query, fragment or credentials"
    )]
    NotAnOrigin,
}

impl Origin {
    /// The origin of a callback URL (http or https with a host).
    pub fn of(url: &Url) -> Result<Self, OriginError> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err(OriginError::Scheme(scheme.to_owned()));
        }
        let host = url.host_str().ok_or(OriginError::NoHost)?;
        let port = url.port_or_known_default().ok_or(OriginError::NoHost)?;
        Ok(Self(format!("{scheme}://{host}:{port}")))
    }

    /// Read an origin as a client writes it (`https://example.com`,
    /// `HTTP://127.0.0.1:8080/`): anything but a bare origin is refused.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let url = Url::parse(text.trim()).map_err(|e| OriginError::Malformed(e.to_string()))?;
        let origin = Self::of(&url)?;
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(OriginError::NotAnOrigin);
        }
        Ok(origin)
    }

    /// The text, `scheme://host:port`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_one_way() {
        let of = |u: &str| Origin::of(&Url::parse(u).unwrap()).unwrap().to_string();
        assert_eq!(of("HTTPS://Example.COM/a?b#c"), "https://example.com:443");
        assert_eq!(of("https://example.com:443/b"), "https://example.com:443");
        assert_eq!(of("http://u:p@127.0.0.1:8080/x"), "http://127.0.0.1:8080");
        assert_eq!(of("http://[0:0::1]/"), "http://[::1]:80");
        assert_eq!(
            of("http://bücher.example/"),
            "http://xn--bcher-kva.example:80"
        );
        assert_eq!(
            Origin::parse("HTTP://127.0.0.1:9/").unwrap().as_str(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            Origin::parse("https://example.com").unwrap().as_str(),
            "https://example.com:443"
        );
    }

    #[test]
    fn more_than_an_origin_is_refused() {
        for bad in [
            "",
            "nope",
            "ftp://x.example",
            "http://x.example/path",
            "http://x.example/?q",
            "http://u:p@x.example",
            "http://u@x.example",
        ] {
            let err = Origin::parse(bad).unwrap_err();
            assert!(err.to_string().contains("origin"), "{bad}: {err}");
        }
    }
}
