//! An age as a bind parameter: whole milliseconds, for the one way the
//! retention statements write a cutoff, `now() - $n * interval '1 millisecond'`.

use std::time::Duration;

/// A century: longer ages are capped here, where PostgreSQL's interval
/// arithmetic still works (an `i64::MAX` of milliseconds overflows it).
const MAX_MILLIS: i64 = 100 * 366 * 86_400 * 1000;

/// `age` in milliseconds, capped at a century.
pub fn millis(age: Duration) -> i64 {
    i64::try_from(age.as_millis()).map_or(MAX_MILLIS, |ms| ms.min(MAX_MILLIS))
}
