//! Headers every answer carries, whatever produced it: a handler, an
//! extractor's refusal, the access guard, the 404 of an unknown path or
//! the 405 of a known one. One middleware around the whole app, so that no
//! route (and no error) can be left without them.
//!
//! `X-Content-Type-Options: nosniff`: a browser takes each answer as the
//! type it declares (an error's JSON is never sniffed into HTML or a
//! script). Pages set their own Content-Security-Policy (`dashboard`,
//! `openapi`'s `/docs`); JSON needs none.
//!
//! Answers actix gives before the app sees a request (a malformed head, a
//! head too large) are outside it, and carry no body a browser could
//! misread. Inside, every refusal is an answer by the time it gets here
//! (actix turns a handler's or an extractor's error into one, and our own
//! middlewares answer rather than fail), so each gets the headers.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;

/// Add the headers to whatever `next` answers.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut res = next.call(req).await?;
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}
