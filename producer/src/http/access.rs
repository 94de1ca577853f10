//! Who may call a route. Every route declares an [`Access`] when it is
//! registered (see `routes`), and [`guarded`] enforces it around that route
//! only: nothing here knows a path, so a route cannot be opened by where
//! it lives, only by what it declares.
//!
//! * `Public`: the probes, `/metrics` (orchestrators and Prometheus call
//!   without credentials) and the dashboard's page (it holds no data).
//! * `Api`: per [`ApiAccess`]: `Authorization: Bearer <API_TOKEN>` when
//!   `API_TOKEN` is set; without it, only requests addressed to a loopback
//!   name (`Host: localhost`, `127.0.0.1` or `[::1]`, any port), unless
//!   `ALLOW_ANONYMOUS=true`. A browser sends the name of the site it is
//!   on: a web page whose own name was pointed at 127.0.0.1 (DNS
//!   rebinding) would otherwise read and post through the producer of
//!   anyone who visits it, even on a port published on 127.0.0.1 only.
//! * `Admin`: the dead-letter and webhook tools. Only with `ADMIN_TOKEN`
//!   set (404 otherwise, as if the route did not exist), and then with
//!   `Authorization: Bearer <ADMIN_TOKEN>`; the API token does not open
//!   them.
//!
//! Tokens are kept and compared as SHA-256 digests, in constant time, so
//! neither where a guess differs nor the token's length shows in the time
//! a refusal takes; they are never logged: [`Secret`] redacts itself in
//! `Debug`.

use std::fmt;

use actix_web::body::BoxBody;
use actix_web::dev::ServiceRequest;
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, Route};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// The API token, when one is configured.
    Api,
    /// The admin token; the route is disabled without one.
    Admin,
}

impl Access {
    /// What a method the route does not have requires before its 405. An
    /// API route is closed whole without the API token (its 405 too, like
    /// an unknown path), so nothing about the API shows without it. The
    /// admin tools' 405 needs no token: their methods are in the public
    /// OpenAPI document anyway, and without `ADMIN_TOKEN` they are 404
    /// only where they would act.
    pub fn for_other_methods(self) -> Access {
        match self {
            Access::Api => Access::Api,
            Access::Public | Access::Admin => Access::Public,
        }
    }

    /// Whether `req` may go on: `Ok`, or the error to answer with.
    pub fn check(self, req: &HttpRequest) -> Result<(), ApiError> {
        let presented = bearer_of(req.headers());
        let matches = |secret: &Secret| presented.is_some_and(|token| secret.matches(token));
        match self {
            Access::Public => Ok(()),
            Access::Api => match req.app_data::<web::Data<ApiAccess>>().map(|a| a.get_ref()) {
                // Not configured (a test's bare app): as without a token.
                None | Some(ApiAccess::LocalOnly) => {
                    if addressed_to_loopback(req) {
                        Ok(())
                    } else {
                        Err(ApiError::LocalOnly)
                    }
                }
                Some(ApiAccess::Anonymous) => Ok(()),
                Some(ApiAccess::Token(secret)) if matches(secret) => Ok(()),
                Some(ApiAccess::Token(_)) => Err(ApiError::Unauthorized(
                    "missing or invalid bearer token (Authorization: Bearer <API_TOKEN>)".into(),
                )),
            },
            Access::Admin => {
                match req.app_data::<web::Data<AdminToken>>().and_then(|t| t.0.as_ref()) {
                    None => Err(ApiError::no_route(req)),
                    Some(secret) if matches(secret) => Ok(()),
                    Some(_) => Err(ApiError::Unauthorized(
                        "missing or invalid admin bearer token (Authorization: Bearer <ADMIN_TOKEN>)"
                            .into(),
                    )),
                }
            }
        }
    }
}

/// `route`, refusing what `access` does not allow. The check runs before
/// the route's extractors, so a refused request's body is never read.
pub fn guarded(route: Route, access: Access) -> Route {
    route.wrap(from_fn(
        move |req: ServiceRequest, next: Next<BoxBody>| async move {
            match access.check(req.request()) {
                Ok(()) => next.call(req).await,
                Err(refused) => Ok(req.error_response(refused)),
            }
        },
    ))
}

/// A credential: kept as its SHA-256 digest, compared in constant time,
/// printed as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(digest(&token))
    }

    /// Whether `candidate` is this secret. Both sides are digests of the
    /// same length, so the time taken depends neither on where they differ
    /// nor on the token's length (comparing the tokens themselves answers
    /// at once when their lengths differ).
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.ct_eq(&digest(candidate)).into()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Who may call the API routes (`API_TOKEN`, `ALLOW_ANONYMOUS`), as app
/// data.
#[derive(Debug, Clone)]
pub enum ApiAccess {
    /// `API_TOKEN` is set: its bearer token, whatever the host.
    Token(Secret),
    /// Neither: only requests addressed to a loopback name.
    LocalOnly,
    /// `ALLOW_ANONYMOUS=true` and no token: anyone who reaches the port.
    Anonymous,
}

impl ApiAccess {
    /// Whether the API needs a token (the dashboard asks for one).
    pub fn needs_token(&self) -> bool {
        matches!(self, ApiAccess::Token(_))
    }

    /// The line the producer logs at startup.
    pub fn describe(&self) -> &'static str {
        match self {
            ApiAccess::Token(_) => {
                "access: API_TOKEN is set: the API needs its bearer token, from any host"
            }
            ApiAccess::LocalOnly => {
                "access: no API_TOKEN: the API answers only requests addressed to localhost, \
                 127.0.0.1 or [::1] (others get 403); set API_TOKEN to serve other hosts"
            }
            ApiAccess::Anonymous => {
                "access: ALLOW_ANONYMOUS=true and no API_TOKEN: the API answers anyone who \
                 reaches BIND_ADDR, from any host"
            }
        }
    }
}

/// The configured admin token (`ADMIN_TOKEN`; unset: the tools are
/// disabled), as app data.
#[derive(Debug, Clone, Default)]
pub struct AdminToken(pub Option<Secret>);

/// Whether `req` was addressed to a loopback name: the authority of an
/// absolute-form target (which wins over `Host`, RFC 9112 §3.2.2), else
/// the one `Host` header. No host, or several, is not.
fn addressed_to_loopback(req: &HttpRequest) -> bool {
    if let Some(authority) = req.uri().authority() {
        return is_loopback_name(authority.as_str());
    }
    let mut hosts = req.headers().get_all(header::HOST);
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().is_ok_and(is_loopback_name),
        _ => false,
    }
}

/// `localhost` (any case, with or without its final dot), `127.0.0.1` or
/// `[::1]`, with or without a port. Nothing else: not other names that
/// end or begin like them, not other spellings of the addresses.
pub fn is_loopback_name(host: &str) -> bool {
    // A port is digits, or nothing after the colon (RFC 3986 allows it).
    let port_ok = |port: &str| port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some((address, rest)) = bracketed.split_once(']') else {
            return false;
        };
        let port = if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix(':')
        };
        return address == "::1" && port.is_some_and(port_ok);
    }
    let (name, port) = host.rsplit_once(':').unwrap_or((host, ""));
    let name_ok = name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
        || name == "127.0.0.1";
    name_ok && port_ok(port)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_of(headers: &header::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_and_never_print() {
        let s = Secret::new("hunter2".into());
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter"));
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(!format!("{:?}", ApiAccess::Token(s)).contains("hunter2"));
    }

    #[test]
    fn loopback_names_and_nothing_else() {
        for host in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "localhost.:8080",
            "127.0.0.1",
            "127.0.0.1:65535",
            "[::1]",
            "[::1]:8080",
            "localhost:",
        ] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "",
            "attacker.example",
            "localhost.attacker.example",
            "attacker.localhost",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "0.0.0.0",
            "[::ffff:127.0.0.1]",
            "[::1",
            "[::1]x",
            "localhost:8o80",
            "localhost:123456",
            "127.0.0.1:80@attacker.example",
            "::1",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }

    /// The median time of `runs` calls of `f`, in nanoseconds.
    fn median_nanos(runs: usize, mut f: impl FnMut() -> bool) -> u128 {
        let mut times: Vec<u128> = (0..runs)
            .map(|_| {
                let start = std::time::Instant::now();
                std::hint::black_box(f());
                start.elapsed().as_nanos()
            })
            .collect();
        times.sort_unstable();
        times[runs / 2]
    }

    #[test]
    fn checking_a_guess_takes_as_long_whatever_the_tokens_length() {
        // Issue 16 #3: comparing the bytes themselves answers at once when
        // the lengths differ, so timing a guess told an attacker the
        // token's length. The same guess against a 1-byte and a 4 KiB
        // token must take the same time (a generous factor for noise:
        // comparing the bytes differed by over 100 times here).
        let guess = "g".repeat(4096);
        let short = Secret::new("s".into());
        let long = Secret::new("s".repeat(4096));
        let mut ratios = Vec::new();
        for _ in 0..5 {
            let a = median_nanos(2001, || short.matches(&guess)).max(1);
            let b = median_nanos(2001, || long.matches(&guess)).max(1);
            ratios.push(a.max(b) as f64 / a.min(b) as f64);
        }
        ratios.sort_by(f64::total_cmp);
        assert!(ratios[2] < 3.0, "time ratios {ratios:?}");
    }
}
