//! Scheduled messages (issue 19): the request fields that ask for later
//! delivery, read once for every endpoint, and the status a message has
//! while it waits.
//!
//! A request may carry `deliver_at` (RFC 3339 with an offset) or
//! `delay_seconds` (a whole number), not both. A time in the past means
//! now; one further ahead than `MAX_SCHEDULE_AHEAD` is refused. Where the
//! messages wait and how they leave is in `db::scheduled_messages` and the
//! producer's dispatcher.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The default `MAX_SCHEDULE_AHEAD`: a year, as far as a reminder or a
/// yearly renewal needs, and a bound on what can pile up.
pub const DEFAULT_MAX_AHEAD: Duration = Duration::from_secs(365 * 86_400);

/// Beyond any `MAX_SCHEDULE_AHEAD`: where a huge `delay_seconds` is cut
/// before it is compared with the limit.
const CENTURY_SECS: i64 = 100 * 365 * 86_400;

/// Why a request's schedule cannot be accepted (a 400 naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Both fields were given.
    #[error("give deliver_at or delay_seconds, not both")]
    Both,
    /// `deliver_at` is not an RFC 3339 string with an offset.
    #[error(
        "deliver_at must be an RFC 3339 date-time with an offset (e.g. 2026-12-24T09:00:00+01:00)"
    )]
    BadTime,
    /// `delay_seconds` is not a whole number of seconds, 0 or more.
    #[error("delay_seconds must be a whole number of seconds, 0 or more")]
    BadDelay,
    /// Further ahead than allowed.
    #[error("deliver_at is more than MAX_SCHEDULE_AHEAD ({0}) ahead")]
    TooFar(String),
}

/// When a request asks its message to be delivered: `None` for at once
/// (neither field, or a time not in the future). `deliver_at` and
/// `delay_seconds` are the raw JSON values of the fields (absent: `None`;
/// `null` counts as absent).
pub fn requested(
    deliver_at: Option<&serde_json::Value>,
    delay_seconds: Option<&serde_json::Value>,
    now: DateTime<Utc>,
    max_ahead: Duration,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let deliver_at = deliver_at.filter(|v| !v.is_null());
    let delay_seconds = delay_seconds.filter(|v| !v.is_null());
    let at = match (deliver_at, delay_seconds) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(ScheduleError::Both),
        (Some(at), None) => {
            let text = at.as_str().ok_or(ScheduleError::BadTime)?;
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| ScheduleError::BadTime)?
                .with_timezone(&Utc)
        }
        (None, Some(delay)) => {
            let secs = delay.as_u64().ok_or(ScheduleError::BadDelay)?;
            // Anything past the limit is refused below; capping at a
            // century keeps a huge number from overflowing on the way.
            let secs = i64::try_from(secs).map_or(CENTURY_SECS, |s| s.min(CENTURY_SECS));
            now + chrono::Duration::seconds(secs)
        }
    };
    let limit = chrono::Duration::from_std(max_ahead).unwrap_or(chrono::Duration::MAX);
    if at - now > limit {
        return Err(ScheduleError::TooFar(crate::duration::format(max_ahead)));
    }
    // Not in the future: delivered now, as an unscheduled message.
    Ok((at > now).then(|| at.trunc_subsecs(6)))
}

/// `GET /messages/{id}` of a message that waits or was cancelled (a stored
/// or dead-lettered one answers with `events::MessageStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ScheduleStatus {
    /// Waiting for `deliver_at` (or published and not stored yet).
    Scheduled {
        /// The message id.
        id: Uuid,
        /// When it is delivered.
        deliver_at: DateTime<Utc>,
        /// Its kind of work.
        kind: String,
    },
    /// Cancelled by `DELETE /messages/{id}`: never stored.
    Cancelled {
        /// The message id.
        id: Uuid,
        /// When it would have been delivered.
        deliver_at: DateTime<Utc>,
        /// When it was cancelled.
        cancelled_at: DateTime<Utc>,
        /// Its kind of work.
        kind: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const YEAR: Duration = DEFAULT_MAX_AHEAD;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn either_field_gives_a_time_and_neither_means_now() {
        assert_eq!(requested(None, None, now(), YEAR), Ok(None));
        assert_eq!(
            requested(None, Some(&json!(null)), now(), YEAR),
            Ok(None),
            "null counts as absent"
        );
        let in_a_minute = now() + chrono::Duration::seconds(60);
        assert_eq!(
            requested(None, Some(&json!(60)), now(), YEAR),
            Ok(Some(in_a_minute))
        );
        assert_eq!(
            requested(Some(&json!("2026-12-05T13:01:00+01:00")), None, now(), YEAR),
            Ok(Some(in_a_minute))
        );
    }

    #[test]
    fn the_past_and_zero_mean_now() {
        assert_eq!(requested(None, Some(&json!(0)), now(), YEAR), Ok(None));
        assert_eq!(
            requested(Some(&json!("2020-01-01T00:00:00Z")), None, now(), YEAR),
            Ok(None)
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let both = requested(
            Some(&json!("2027-01-01T00:00:00Z")),
            Some(&json!(5)),
            now(),
            YEAR,
        );
        assert_eq!(both, Err(ScheduleError::Both));
        for bad in [json!("tomorrow"), json!("2027-01-01T00:00:00"), json!(5)] {
            let e = requested(Some(&bad), None, now(), YEAR).unwrap_err();
            assert!(e.to_string().contains("deliver_at"), "{bad}: {e}");
        }
        for bad in [json!(-1), json!(1.5), json!("60")] {
            let e = requested(None, Some(&bad), now(), YEAR).unwrap_err();
            assert!(e.to_string().contains("delay_seconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn further_than_the_limit_is_refused() {
        let e = requested(None, Some(&json!(366 * 86_400)), now(), YEAR).unwrap_err();
        assert!(matches!(e, ScheduleError::TooFar(_)), "{e}");
        assert!(requested(None, Some(&json!(u64::MAX)), now(), YEAR).is_err());
        assert!(requested(None, Some(&json!(365 * 86_400)), now(), YEAR).is_ok());
    }
}
