//! `Idempotency-Key`: the same key always yields the same message id, so a
//! client retrying after a timeout or a 503 cannot create a second message.

use actix_web::HttpRequest;
use uuid::Uuid;

use crate::error::ApiError;

/// The header clients set.
pub const HEADER: &str = "Idempotency-Key";

/// Namespace for name-based (v5) ids derived from idempotency keys. Fixed
/// forever: changing it would break deduplication across a deploy.
const NAMESPACE: Uuid = Uuid::from_u128(0x0b6f_5c1e_9a4d_4e0f_8f3b_6d2a_1c7e_5a90);

/// Longest accepted key.
const MAX_LEN: usize = 255;

/// The id of the message: derived from `Idempotency-Key` when present (a
/// v5 UUID), random otherwise.
pub fn message_id(req: &HttpRequest) -> Result<Uuid, ApiError> {
    match req.headers().get(HEADER) {
        None => Ok(Uuid::new_v4()),
        Some(_) => Ok(id_for_key(&key(req)?)),
    }
}

/// The validated `Idempotency-Key` of `req` (an error if absent or bad).
pub fn key(req: &HttpRequest) -> Result<String, ApiError> {
    let key = req
        .headers()
        .get(HEADER)
        .ok_or_else(|| ApiError::BadRequest(format!("{HEADER} is missing")))?
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("{HEADER} must be visible ASCII")))?;
    if key.is_empty() || key.len() > MAX_LEN {
        return Err(ApiError::BadRequest(format!(
            "{HEADER} must be 1 to {MAX_LEN} characters"
        )));
    }
    Ok(key.to_owned())
}

/// The message id for an idempotency key.
pub fn id_for_key(key: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_id_different_key_different_id() {
        assert_eq!(id_for_key("order-17"), id_for_key("order-17"));
        assert_ne!(id_for_key("order-17"), id_for_key("order-18"));
    }
}
