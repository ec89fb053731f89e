//! Wall-clock time as the records carry it: microseconds since the Unix epoch, in an `i64`
//! (`received_at`, the store's and the WAL's record times, `--since` cut-offs); and durations
//! as people write them on a command line (`--since 15m`, `--duration 10s`).
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

/// Parses a duration written as a number (decimals allowed) and a unit, `ms`, `s`, `m`, `h` or
/// `d`; a bare number is seconds: `500ms`, `10s`, `1.5m`, `2h`, `7d`, `30`. The one grammar of
/// every command line (`logtail read --since`, the load-test harness's options).
///
/// # Errors
/// A message quoting `text` and naming the units, for clap to show.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 15m, 2h or 7d"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// A point in time as people write one (`--from`, `--to`, the API's `from` and `to`): RFC 3339,
/// `YYYY-MM-DD[THH:MM[:SS[.f]]]` in UTC, or a duration ago (`15m`), as unix µs.
///
/// # Errors
/// A message quoting `text` and the forms allowed.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc().timestamp_micros());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros());
    }
    if text.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(ago) = parse_duration(text)
    {
        return Ok(unix_micros_ago(ago));
    }
    Err(format!(
        "{text:?} is not a time like 2026-11-21T02:53:47Z, 2026-11-21 02:53, 2026-11-21 or 15m (ago)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration(" 15m "), Ok(Duration::from_secs(900)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert_eq!(
            parse_duration("3w"),
            Err("unknown unit \"w\" in \"3w\": use ms, s, m, h or d".to_string())
        );
    }

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
