//! Counting refused message submissions by their answer's status.
//!
//! A middleware rather than code in each handler, because many refusals
//! never reach a handler: a 413, a 415 or malformed JSON is answered by the
//! body extractor.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};

use crate::metrics::Rejection;
use crate::state::AppState;

/// Wrap the route that submits messages (a `POST`; registered with
/// `Resource::submit`): an answer with a 4xx or a 503 counts in
/// `pipeline_producer_messages_rejected_total`. Other methods on the same
/// path (such as `GET /messages`) are not submissions and are not wrapped.
/// Inside the access guard: a request refused for its token is not a
/// submission either.
pub async fn count_rejections(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(res) => res.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        if let Some(reason) = Rejection::from_status(status) {
            metrics.record_rejected(reason);
        }
    }
    result
}
