//! Time partitions of `messages`: how long each is (`MESSAGE_PARTITION`),
//! which to create ahead, and which are past `MESSAGE_RETENTION`.
//!
//! The default is `month`. Stored messages are kept for ever unless
//! `MESSAGE_RETENTION` says otherwise, and a lookup by id (the status of a
//! message) reads one index per partition: a month keeps that to twelve a
//! year. With a retention, a shorter partition drops sooner after its age
//! (a whole partition goes once its newest possible row is past it): `day`
//! suits a retention of weeks. `hour` is for tests; `minute` and a few
//! seconds (`10s`) for soaks, whose windows last minutes.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, Months, TimeZone, Timelike, Utc};
use diesel::prelude::*;

use crate::config::{ConfigError, Env};
use crate::db::message_partitions::{self, Partition};

/// Periods created ahead of the current one, so that the partition of
/// the next period exists well before its first row.
pub const AHEAD: usize = 2;

/// The length of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionSize {
    /// A few seconds, a divisor of 60 (`10s`): soaks only. The size on
    /// disk under a retention saws by one partition's rows (they go in one
    /// `DROP`), so a soak of minutes that wants it flat within 10 % needs
    /// ten partitions or more in its window. Never for production: every
    /// lookup by id reads one index per partition.
    Seconds(u32),
    /// A minute: soaks only (a run of minutes rolls several partitions);
    /// thousands of partitions a day would slow every lookup by id.
    Minute,
    /// An hour (tests).
    Hour,
    /// A day (UTC).
    Day,
    /// An ISO week, from Monday 00:00 UTC.
    Week,
    /// A calendar month (UTC): the default.
    Month,
}

impl PartitionSize {
    /// `day`, `week` or `month` (`hour`, `minute` or `<n>s` with `n`
    /// dividing 60: tests and soaks).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some(seconds) = text.strip_suffix('s') {
            // A divisor of 60, so that the periods tile each minute.
            return match seconds.parse::<u32>() {
                Ok(n) if n > 0 && n < 60 && 60 % n == 0 => Some(Self::Seconds(n)),
                _ => None,
            };
        }
        match text {
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    /// The start of the period holding `t`.
    pub fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = Utc
            .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
            .single()
            .unwrap_or(t);
        let minute = day
            + chrono::Duration::hours(i64::from(t.hour()))
            + chrono::Duration::minutes(i64::from(t.minute()));
        match self {
            Self::Seconds(n) => minute + chrono::Duration::seconds(i64::from(t.second() / n * n)),
            Self::Minute => minute,
            Self::Hour => day + chrono::Duration::hours(i64::from(t.hour())),
            Self::Day => day,
            Self::Week => day - Days::new(u64::from(t.weekday().num_days_from_monday())),
            Self::Month => Utc
                .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(day),
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Seconds(n) => start + chrono::Duration::seconds(i64::from(n)),
            Self::Minute => start + chrono::Duration::minutes(1),
            Self::Hour => start + chrono::Duration::hours(1),
            Self::Day => start + Days::new(1),
            Self::Week => start + Days::new(7),
            Self::Month => start + Months::new(1),
        }
    }
}

/// The name [`PartitionSize::parse`] reads.
impl fmt::Display for PartitionSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seconds(n) => write!(f, "{n}s"),
            Self::Minute => f.write_str("minute"),
            Self::Hour => f.write_str("hour"),
            Self::Day => f.write_str("day"),
            Self::Week => f.write_str("week"),
            Self::Month => f.write_str("month"),
        }
    }
}

/// `MESSAGE_PARTITION` and `MESSAGE_RETENTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagePartitions {
    /// `MESSAGE_PARTITION` (default `month`).
    pub size: PartitionSize,
    /// `MESSAGE_RETENTION` (default none: kept for ever): partitions whose
    /// every row is older are dropped.
    pub retention: Option<Duration>,
}

impl MessagePartitions {
    /// Read them from `env`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let size = match env.raw("MESSAGE_PARTITION")? {
            None => PartitionSize::Month,
            Some(text) => PartitionSize::parse(&text).ok_or_else(|| {
                ConfigError::new(
                    "MESSAGE_PARTITION",
                    format!("{text:?} is not day, week or month (or hour, minute or <n>s with n dividing 60, for tests and soaks)"),
                )
            })?,
        };
        Ok(Self {
            size,
            retention: env.duration_or_forever("MESSAGE_RETENTION", Duration::from_secs(1))?,
        })
    }

    /// The ranges to create so that the period of `now` and the [`AHEAD`]
    /// after it are covered, given the partitions there are: a period
    /// partly covered (by the partition the migration made of an existing
    /// table, or after a change of `MESSAGE_PARTITION`) starts where the
    /// existing ones end.
    pub fn missing(
        &self,
        now: DateTime<Utc>,
        existing: &[Partition],
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut wanted = Vec::new();
        let mut start = self.size.start(now);
        for _ in 0..=AHEAD {
            let end = self.size.next(start);
            let covered = existing
                .iter()
                .filter(|p| !p.is_default)
                .filter(|p| p.lower.is_none_or(|l| l < end))
                .filter_map(|p| p.upper)
                .filter(|u| *u > start)
                .max();
            let lower = covered.map_or(start, |c| c.max(start));
            if lower < end {
                wanted.push((lower, end));
            }
            start = end;
        }
        wanted
    }

    /// Create what [`Self::missing`] says, then drop what is past the
    /// retention, at `now`. Returns the names created and dropped.
    pub fn maintain(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> QueryResult<(Vec<String>, Vec<String>)> {
        let existing = message_partitions::list(conn)?;
        let mut created = Vec::new();
        for (lower, upper) in self.missing(now, &existing) {
            created.push(message_partitions::create(conn, lower, upper)?);
        }
        let dropped = match self.retention {
            Some(age) => {
                let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
                match now.checked_sub_signed(age) {
                    Some(before) => message_partitions::drop_before(conn, before)?,
                    None => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        Ok((created, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn periods_start_and_end_on_their_boundaries() {
        let t = at("2026-12-05T21:47:13Z"); // a Saturday
        assert_eq!(PartitionSize::Minute.start(t), at("2026-12-05T21:47:00Z"));
        assert_eq!(PartitionSize::Hour.start(t), at("2026-12-05T21:00:00Z"));
        assert_eq!(PartitionSize::Day.start(t), at("2026-12-05T00:00:00Z"));
        assert_eq!(PartitionSize::Week.start(t), at("2026-11-30T00:00:00Z"));
        assert_eq!(PartitionSize::Month.start(t), at("2026-12-01T00:00:00Z"));
        assert_eq!(
            PartitionSize::Month.next(at("2026-12-01T00:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(PartitionSize::parse("week"), Some(PartitionSize::Week));
        assert_eq!(PartitionSize::parse("year"), None);
    }

    #[test]
    fn second_periods_tile_the_minute() {
        let ten = PartitionSize::parse("10s").unwrap();
        assert_eq!(ten, PartitionSize::Seconds(10));
        assert_eq!(ten.to_string(), "10s");
        let t = at("2026-12-05T21:47:13.5Z");
        assert_eq!(ten.start(t), at("2026-12-05T21:47:10Z"));
        assert_eq!(ten.next(ten.start(t)), at("2026-12-05T21:47:20Z"));
        assert_eq!(
            ten.next(at("2026-12-05T21:59:50Z")),
            at("2026-12-05T22:00:00Z")
        );
        for bad in ["7s", "0s", "60s", "s", "-5s"] {
            assert_eq!(PartitionSize::parse(bad), None, "{bad}");
        }
        for (size, name) in [
            (PartitionSize::Minute, "minute"),
            (PartitionSize::Month, "month"),
        ] {
            assert_eq!(PartitionSize::parse(name), Some(size));
            assert_eq!(size.to_string(), name);
        }
    }

    #[test]
    fn missing_periods_start_where_existing_partitions_end() {
        let hours = MessagePartitions {
            size: PartitionSize::Hour,
            retention: None,
        };
        let now = at("2026-12-05T21:47:13Z");
        let legacy = Partition {
            name: "messages_legacy".into(),
            lower: None,
            upper: Some(at("2026-12-05T21:30:00Z")),
            is_default: false,
            bytes: 0,
        };
        let default = Partition {
            name: "messages_default".into(),
            lower: None,
            upper: None,
            is_default: true,
            bytes: 0,
        };
        assert_eq!(
            hours.missing(now, &[legacy.clone(), default]),
            vec![
                (at("2026-12-05T21:30:00Z"), at("2026-12-05T22:00:00Z")),
                (at("2026-12-05T22:00:00Z"), at("2026-12-05T23:00:00Z")),
                (at("2026-12-05T23:00:00Z"), at("2026-12-06T00:00:00Z")),
            ]
        );
        let made: Vec<Partition> = hours
            .missing(now, std::slice::from_ref(&legacy))
            .into_iter()
            .map(|(l, u)| Partition {
                name: String::new(),
                lower: Some(l),
                upper: Some(u),
                is_default: false,
                bytes: 0,
            })
            .chain([legacy])
            .collect();
        assert!(hours.missing(now, &made).is_empty(), "nothing twice");
    }
}
