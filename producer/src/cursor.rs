//! Keyset cursors: a row's position as whole numbers and then its id,
//! joined by `_`, such as `812345_1763783786123456_6f1c…`. Opaque to clients
//! (only ever handed back), readable in logs.
//!
//! Only the canonical form `encode` writes is accepted back: no sign but
//! a minus, no leading zeros, at most so many digits, a lowercase hyphenated
//! UUID. That is exactly what the OpenAPI `pattern`s of `GET /messages`
//! `cursor` and the dashboard's `before` allow, so the document and the
//! parser agree on every string.

use chrono::{DateTime, Utc};
use shared::db::messages::Cursor;
use uuid::Uuid;

/// Digits of a transaction id (PostgreSQL's `xid8` fits in 18 here).
const TXID_DIGITS: usize = 18;
/// Digits of a timestamp in microseconds since the epoch.
const MICROS_DIGITS: usize = 16;

/// `GET /messages`: commit order, `<txid>_<created_at µs>_<id>`.
pub fn commit_order((txid, created_at, id): &Cursor) -> String {
    encode(&[*txid, created_at.timestamp_micros()], id)
}

/// The position [`commit_order`] wrote, or `None`.
pub fn parse_commit_order(text: &str) -> Option<Cursor> {
    let ([txid, micros], id) = decode(text, [TXID_DIGITS, MICROS_DIGITS])?;
    let created_at = DateTime::from_timestamp_micros(micros)?;
    (txid >= 0).then_some((txid, created_at, id))
}

/// The dashboard's latest messages: newest first, `<created_at µs>_<id>`.
pub fn newest_first(created_at: DateTime<Utc>, id: Uuid) -> String {
    encode(&[created_at.timestamp_micros()], &id)
}

/// The position [`newest_first`] wrote, or `None`.
pub fn parse_newest_first(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let ([micros], id) = decode(text, [MICROS_DIGITS])?;
    Some((DateTime::from_timestamp_micros(micros)?, id))
}

fn encode(numbers: &[i64], id: &Uuid) -> String {
    let mut text = String::new();
    for n in numbers {
        text.push_str(&n.to_string());
        text.push('_');
    }
    text.push_str(&id.to_string());
    text
}

/// `N` numbers of at most `max_digits` digits each, then a UUID; only in
/// the canonical form.
fn decode<const N: usize>(text: &str, max_digits: [usize; N]) -> Option<([i64; N], Uuid)> {
    let mut parts = text.splitn(N + 1, '_');
    let mut numbers = [0i64; N];
    for (number, max) in numbers.iter_mut().zip(max_digits) {
        let part = parts.next()?;
        if part.trim_start_matches('-').len() > max {
            return None;
        }
        *number = part.parse().ok()?;
    }
    let id = Uuid::try_parse(parts.next()?).ok()?;
    (encode(&numbers, &id) == text).then_some((numbers, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_order_round_trips() {
        let cursor: Cursor = (
            812_345,
            DateTime::from_timestamp_micros(1_763_783_786_123_456).unwrap(),
            Uuid::new_v4(),
        );
        assert_eq!(parse_commit_order(&commit_order(&cursor)).unwrap(), cursor);
        assert!(parse_commit_order("nope").is_none());
        // Only the canonical form: no sign, no leading zero, lowercase UUID.
        let id = Uuid::new_v4();
        assert!(parse_commit_order(&format!("+5_1_{id}")).is_none());
        assert!(parse_commit_order(&format!("05_1_{id}")).is_none());
        assert!(parse_commit_order(&format!("-5_1_{id}")).is_none());
        assert!(parse_commit_order(&format!("5_-0_{id}")).is_none());
        assert!(parse_commit_order(&format!("5_1_{}", id.to_string().to_uppercase())).is_none());
        assert!(parse_commit_order(&format!("5_1_{}", id.simple())).is_none());
        assert!(parse_commit_order(&format!("5_-1_{id}")).is_some());
        assert!(parse_commit_order("1_12_notauuid").is_none());
        assert!(parse_commit_order(&format!("{}_1_{id}", "9".repeat(19))).is_none());
        // The format before commit order (no transaction id) is refused.
        assert!(parse_commit_order(&format!("12_{}", Uuid::new_v4())).is_none());
    }

    #[test]
    fn newest_first_round_trips() {
        let at = DateTime::from_timestamp_micros(1_763_783_786_123_456).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(parse_newest_first(&newest_first(at, id)), Some((at, id)));
        assert!(parse_newest_first("x_y").is_none());
        assert!(parse_newest_first(&format!("+1_{id}")).is_none());
        assert!(parse_newest_first(&format!("01_{id}")).is_none());
        assert!(parse_newest_first(&format!("1_{}", id.simple())).is_none());
        assert!(parse_newest_first(&format!("{}_{id}", "1".repeat(17))).is_none());
    }
}
