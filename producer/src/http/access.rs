//! Who may call a route. Every route declares an [`Access`] when it is
//! registered (see `routes`), and [`guarded`] enforces it around that route
//! only: nothing here knows a path, so a route cannot be opened by where
//! it lives, only by what it declares.
//!
//! * `Public`: the probes, `/metrics` (orchestrators and Prometheus call
//!   without credentials) and the dashboard's page (it holds no data).
//! * `Api`: `Authorization: Bearer <API_TOKEN>` when `API_TOKEN` is set.
//! * `Admin`: the dead-letter and webhook tools. Only with `ADMIN_TOKEN`
//!   set (404 otherwise, as if the route did not exist), and then with
//!   `Authorization: Bearer <ADMIN_TOKEN>`; the API token does not open
//!   them.
//!
//! Tokens are compared in constant time and never logged: [`Secret`]
//! redacts itself in `Debug`.

use std::fmt;

use actix_web::body::BoxBody;
use actix_web::dev::ServiceRequest;
use actix_web::http::header;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, Route};
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
            Access::Api => match req
                .app_data::<web::Data<ApiToken>>()
                .and_then(|t| t.0.as_ref())
            {
                None => Ok(()),
                Some(secret) if matches(secret) => Ok(()),
                Some(_) => Err(ApiError::Unauthorized(
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

/// A credential: compared in constant time, printed as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// Whether `candidate` equals this secret, in time independent of where
    /// they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The configured API token (`API_TOKEN`), as app data.
#[derive(Debug, Clone, Default)]
pub struct ApiToken(pub Option<Secret>);

/// The configured admin token (`ADMIN_TOKEN`; unset: the tools are
/// disabled), as app data.
#[derive(Debug, Clone, Default)]
pub struct AdminToken(pub Option<Secret>);

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
        assert!(!format!("{:?}", ApiToken(Some(s))).contains("hunter2"));
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
