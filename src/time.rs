//! Wall-clock time as the records carry it: microseconds since the Unix epoch, in an `i64`
//! (`received_at`, the store's and the WAL's record times, `--since` cut-offs).
//!
//! A clock set before 1970 reads as 0 rather than failing: a record time is never negative,
//! and a wrong clock must not stop ingest. A leaf: it uses nothing of the crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `time` as microseconds since the Unix epoch; 0 before the epoch.
pub fn unix_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Now, as microseconds since the Unix epoch.
pub fn now_unix_micros() -> i64 {
    unix_micros(SystemTime::now())
}

/// The time `age` ago, as microseconds since the Unix epoch (negative when `age` reaches back
/// before 1970; saturating rather than overflowing for an absurd `age`).
pub fn unix_micros_ago(age: Duration) -> i64 {
    now_unix_micros().saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_zero_and_before_it_reads_as_zero() {
        assert_eq!(unix_micros(UNIX_EPOCH), 0);
        assert_eq!(
            unix_micros(UNIX_EPOCH + Duration::from_micros(1_500)),
            1_500
        );
        assert_eq!(unix_micros(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn ago_counts_back_from_now_and_saturates() {
        let before = now_unix_micros();
        let hour_ago = unix_micros_ago(Duration::from_secs(3600));
        assert!(
            before - hour_ago >= 3_600_000_000 - 1_000_000,
            "{before} {hour_ago}"
        );
        assert!(
            before - hour_ago <= 3_600_000_000 + 1_000_000,
            "{before} {hour_ago}"
        );
        assert!(unix_micros_ago(Duration::MAX) < 0);
    }
}
