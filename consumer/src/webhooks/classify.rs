//! What a failed request was, as the category clients see
//! ([`shared::webhook::Failure`]), and its detail for the operator's log
//! (without the URL, whose userinfo and query may hold secrets).

use std::error::Error;
use std::io::ErrorKind;

use shared::webhook::{Failure, UrlError};

/// The category of a request that got no answer.
pub fn category(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let mut source: Option<&(dyn Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(found) = of_link(s) {
            return found;
        }
        // An io::Error's source skips the error it wraps: look at it too.
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = of_link(inner) {
                return found;
            }
        }
        source = s.source();
    }
    if e.is_connect() {
        Failure::Connect
    } else {
        Failure::Other
    }
}

fn of_link(s: &(dyn Error + 'static)) -> Option<Failure> {
    // Our resolver's refusal (a name resolving to a forbidden address).
    if let Some(refused) = s.downcast_ref::<UrlError>() {
        return Some(refused.category());
    }
    if let Some(io) = s.downcast_ref::<std::io::Error>() {
        match io.kind() {
            ErrorKind::ConnectionRefused => return Some(Failure::Refused),
            ErrorKind::TimedOut => return Some(Failure::Timeout),
            _ => {}
        }
    }
    // rustls's errors come wrapped, as text only by the time they get here.
    let text = s.to_string().to_ascii_lowercase();
    (text.contains("certificate") || text.contains("tls") || text.contains("handshake"))
        .then_some(Failure::Tls)
}

/// The error and its sources, without the URL, for the log (reqwest's own
/// message is often just "error sending request").
pub fn detail(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(500).collect()
}
