//! Why an attempt failed, as a category: what clients are told (the 400 at
//! the door, `last_error`). The detail (addresses, the resolver's or the
//! TLS library's words) goes to the operator's log only: shown to clients,
//! it would make the webhooks a port scanner and a DNS oracle.

/// The category of a failed attempt or a refused callback URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No answer within `WEBHOOK_TIMEOUT_MS`.
    Timeout,
    /// The connection was refused.
    Refused,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The host does not resolve (or not in time).
    Dns,
    /// Another failure to connect (reset, unreachable).
    Connect,
    /// The host is, or resolves to, an address webhooks may not reach.
    ForbiddenAddress,
    /// A port webhooks may not reach.
    ForbiddenPort,
    /// The URL itself is not acceptable.
    InvalidUrl,
    /// A 3xx answer (redirects are not followed).
    Http3xx,
    /// A 4xx answer.
    Http4xx,
    /// A 5xx answer.
    Http5xx,
    /// A status outside 100-599.
    HttpOther,
    /// The destination's circuit breaker stayed open past the
    /// notification's `WEBHOOK_MAX_AGE_SECS`: it was not attempted again.
    CircuitOpen,
    /// The request failed otherwise (a bad answer, a closed connection).
    Other,
}

impl Failure {
    /// The category of an answer's status; `None` for a 2xx (not a failure).
    pub fn of_status(status: u16) -> Option<Self> {
        match status {
            200..=299 => None,
            300..=399 => Some(Self::Http3xx),
            400..=499 => Some(Self::Http4xx),
            500..=599 => Some(Self::Http5xx),
            _ => Some(Self::HttpOther),
        }
    }

    /// Its name, as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::ForbiddenAddress => "forbidden_address",
            Self::ForbiddenPort => "forbidden_port",
            Self::InvalidUrl => "invalid_url",
            Self::Http3xx => "http_3xx",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::HttpOther => "http_other",
            Self::CircuitOpen => "circuit_open",
            Self::Other => "other",
        }
    }

    /// Whether it says the destination itself is failing (what a circuit
    /// breaker counts): no answer, or a 5xx. A 4xx or a refused URL says
    /// something about the request, not about the destination's health.
    pub fn is_destination_down(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Refused | Self::Tls | Self::Dns | Self::Connect | Self::Http5xx
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_categories() {
        assert_eq!(Failure::of_status(204), None);
        assert_eq!(Failure::of_status(301), Some(Failure::Http3xx));
        assert_eq!(Failure::of_status(404), Some(Failure::Http4xx));
        assert_eq!(Failure::of_status(503), Some(Failure::Http5xx));
        assert_eq!(Failure::of_status(99), Some(Failure::HttpOther));
        assert_eq!(Failure::Http5xx.to_string(), "http_5xx");
        assert!(Failure::Refused.is_destination_down());
        assert!(!Failure::Http4xx.is_destination_down());
    }
}
