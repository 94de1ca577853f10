//! The one parser of human durations in settings: `10s`, `15m`, `24h`,
//! `30d`, `2w` (and `500ms`), a whole number and one unit.
//!
//! Written here rather than taken from a crate (humantime): the settings
//! need six units and no fractions, combinations or months (whose length
//! varies), and a one-line error naming what is accepted.

use std::time::Duration;

/// Why a duration setting cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: a whole number and a unit, ms, s, m, h, d or w (e.g. 30s, 24h, 90d)"
)]
pub struct DurationError(pub String);

/// Parse `text` (`10s`, `24h`, `30d`...). Zero is allowed; the caller
/// decides whether it means anything.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError(text.to_owned()))?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| DurationError(text.to_owned()))?;
    let seconds = |per: u64| n.checked_mul(per).map(Duration::from_secs);
    let d = match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" | "min" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        "w" => seconds(7 * 86_400),
        _ => None,
    };
    d.ok_or_else(|| DurationError(text.to_owned()))
}

/// `d` the way [`parse`] reads it back, in the largest unit that divides
/// it (for `/metrics`, the dashboard and logs).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    for (unit, per) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(per) {
            return format!("{}{unit}", s / per);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_unit() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse(" 2w "), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn refuses_what_is_not_one() {
        for bad in [
            "",
            "10",
            "h",
            "1.5h",
            "-1s",
            "10 years",
            "1h30m",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_back() {
        for text in ["10s", "25h", "30d", "2w", "90m", "500ms"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
