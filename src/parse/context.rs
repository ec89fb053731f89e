//! What a parser needs to know about the receive to complete zone-less RFC 3164 timestamps:
//! the receive time (for the year) and the zone the senders' clocks are in ([`LegacyZone`]).
//!
//! # Year inference
//! A BSD timestamp has no year. Like rsyslog and syslog-ng we take it from the receive time,
//! choosing the latest of the receive year + 1, the receive year and the receive year - 1 that
//! puts the timestamp no more than 31 days after the receive time (both read as wall-clock
//! times in the configured zone). So a `Dec 31` message received on January 1st is last year's,
//! a `Jan  1` message received a second before midnight on December 31st (a sender clock a
//! little ahead) is next year's, and a timestamp two months ahead is last year's. `Feb 29`
//! skips candidate years in which it does not exist; with none left the timestamp is invalid.
//!
//! # Local zone lookups
//! [`ParseContext::new`] is called once per receive, so it does no work: the receive time is
//! converted to wall-clock time the first time a message needs it. Offsets of the system's
//! local zone come from chrono, which reads the zone database; to keep that off the per-line
//! path each thread caches the offsets of the last few hours it looked up (keyed by the hour,
//! wall-clock for timestamps and UTC for receive times), so chrono is asked at most once per
//! hour of timestamps. Consequences: offsets are resolved per whole hour (right for every zone
//! whose transitions fall on the hour), a wall-clock time repeated by a DST fall-back resolves
//! to the earlier (summer) offset, a time skipped by a spring-forward gets the offset chrono
//! reports for the same digits read as UTC, and a change of the system zone while running is
//! seen within an hour at most.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Local, LocalResult, Offset as _, TimeZone};

use super::timestamp::{BsdTime, CivilTime, Offset, Timestamp, civil_from_days, days_in_month};

/// The zone of timestamps written without an offset (RFC 3164 senders, and ISO timestamps
/// without an offset in the RFC 3164 position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegacyZone {
    /// The gateway host's local zone, as rsyslog assumes.
    #[default]
    Local,
    /// A fixed offset, in seconds east of UTC (`utc` is `Fixed(0)`, written `Z`).
    Fixed(i32),
}

/// The error of [`LegacyZone::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid zone {0:?}: expected \"local\", \"utc\" or an offset like \"+02:00\" or \"-05:30\""
)]
pub struct InvalidZone(pub String);

impl FromStr for LegacyZone {
    type Err = InvalidZone;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidZone(s.to_owned());
        if s.eq_ignore_ascii_case("local") {
            return Ok(LegacyZone::Local);
        }
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(LegacyZone::Fixed(0));
        }
        let b = s.as_bytes();
        let sign = match b.first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(invalid()),
        };
        let two = |at: usize| -> Option<i32> {
            let (h, l) = (*b.get(at)?, *b.get(at + 1)?);
            (h.is_ascii_digit() && l.is_ascii_digit())
                .then(|| i32::from((h - b'0') * 10 + l - b'0'))
        };
        match (b.len(), two(1), b.get(3), two(4)) {
            (6, Some(h), Some(b':'), Some(m)) if h <= 23 && m <= 59 => {
                Ok(LegacyZone::Fixed(sign * (h * 3600 + m * 60)))
            }
            _ => Err(invalid()),
        }
    }
}

impl fmt::Display for LegacyZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LegacyZone::Local => f.write_str("local"),
            LegacyZone::Fixed(0) => f.write_str("utc"),
            LegacyZone::Fixed(s) => {
                let sign = if s < 0 { '-' } else { '+' };
                let m = s.unsigned_abs() / 60;
                write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)
            }
        }
    }
}

impl TryFrom<String> for LegacyZone {
    type Error = InvalidZone;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

crate::setting::serialize_as_text!(LegacyZone);

impl<'de> serde::Deserialize<'de> for LegacyZone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(|e: InvalidZone| {
            serde::de::Error::custom(crate::setting::Refusal(e.to_string()))
        })
    }
}

/// Per-receive context: the receive time (for RFC 3164 year inference) and the zone for
/// zone-less timestamps. Cheap to create: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ParseContext {
    received_at_us: i64,
    zone: LegacyZone,
    /// The receive time as wall-clock seconds in `zone`, and its year, computed when first
    /// needed rather than per BSD timestamp (with the naive seconds of `resolve_bsd` kept for
    /// the zone lookup, 4.4% fewer instructions in `parse` on `benches/parse`'s corpus under
    /// callgrind).
    received_wall: Option<(i64, i64)>,
}

impl ParseContext {
    /// A context for messages received at `received_at_us` (microseconds since the Unix epoch).
    pub fn new(received_at_us: i64, zone: LegacyZone) -> Self {
        ParseContext {
            received_at_us,
            zone,
            received_wall: None,
        }
    }

    /// Reuses the context for a later receive.
    pub fn set_received_at(&mut self, received_at_us: i64) {
        self.received_at_us = received_at_us;
        self.received_wall = None;
    }

    /// The receive time, in microseconds since the Unix epoch.
    pub fn received_at_us(&self) -> i64 {
        self.received_at_us
    }

    /// The zone applied to zone-less timestamps.
    pub fn zone(&self) -> LegacyZone {
        self.zone
    }

    /// The offset of a wall-clock time written without one.
    pub(crate) fn zone_offset(&self, wall: &CivilTime) -> Offset {
        self.wall_offset(|| wall.naive_seconds())
    }

    /// [`zone_offset`](Self::zone_offset) of the wall-clock time whose
    /// [`naive_seconds`](CivilTime::naive_seconds) `wall_seconds` gives, when the zone needs them.
    fn wall_offset(&self, wall_seconds: impl FnOnce() -> i64) -> Offset {
        match self.zone {
            LegacyZone::Fixed(0) => Offset::Z,
            LegacyZone::Fixed(s) => Offset::Seconds(s),
            LegacyZone::Local => Offset::Seconds(local_offset(wall_seconds(), Reading::Wall)),
        }
    }

    /// Completes a BSD timestamp with the inferred year (unless it had one) and the zone.
    /// `None` when the date does not exist in any candidate year (`Feb 29`, `Feb 30`).
    pub(crate) fn resolve_bsd(&mut self, bsd: BsdTime) -> Option<Timestamp> {
        let mut civil = bsd.civil;
        // The inferred year's naive seconds are those the local zone's offset is looked up by:
        // kept rather than computed twice.
        let mut wall_seconds = None;
        if !bsd.has_year {
            let (now, year_now) = self.received_wall();
            let latest_allowed = now + 31 * 86_400;
            let (year, seconds) = [year_now + 1, year_now, year_now - 1]
                .into_iter()
                .filter_map(|y| u16::try_from(y).ok().filter(|&y| y <= 9999))
                .find_map(|year| {
                    if civil.day > days_in_month(year, civil.month) {
                        return None;
                    }
                    let seconds = CivilTime { year, ..civil }.naive_seconds();
                    (seconds <= latest_allowed).then_some((year, seconds))
                })?;
            civil.year = year;
            wall_seconds = Some(seconds);
        }
        let offset = self.wall_offset(|| wall_seconds.unwrap_or_else(|| civil.naive_seconds()));
        Some(civil.with_offset(offset))
    }

    /// The receive time as wall-clock seconds in the zone, and the year of that wall time.
    fn received_wall(&mut self) -> (i64, i64) {
        if let Some(wall) = self.received_wall {
            return wall;
        }
        let utc = self.received_at_us.div_euclid(1_000_000);
        let offset = match self.zone {
            LegacyZone::Fixed(s) => s,
            LegacyZone::Local => local_offset(utc, Reading::Utc),
        };
        let wall = utc + i64::from(offset);
        let (year, _, _) = civil_from_days(wall.div_euclid(86_400));
        self.received_wall = Some((wall, year));
        (wall, year)
    }
}

/// How the seconds given to [`local_offset`] are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// A wall-clock time in the local zone (read as if it were UTC).
    Wall = 0,
    /// A UTC instant.
    Utc = 1,
}

/// 32 slots cover a day of hours of both readings: a relay replaying a backlog does not
/// thrash the cache, and a slot is 16 bytes.
const OFFSET_CACHE_SLOTS: usize = 32;

/// Direct-mapped cache of local offsets per hour; key = hour index * 2 + reading.
struct LocalOffsetCache {
    slots: [(i64, i32); OFFSET_CACHE_SLOTS],
}

thread_local! {
    static LOCAL_OFFSETS: RefCell<LocalOffsetCache> =
        const { RefCell::new(LocalOffsetCache { slots: [(i64::MIN, 0); OFFSET_CACHE_SLOTS] }) };
}

/// The local zone's offset (seconds east of UTC) at `seconds`, read as `reading`.
fn local_offset(seconds: i64, reading: Reading) -> i32 {
    let hour = seconds.div_euclid(3600);
    let key = hour.wrapping_mul(2).wrapping_add(reading as i64);
    let slot = key.rem_euclid(OFFSET_CACHE_SLOTS as i64) as usize;
    LOCAL_OFFSETS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (cached_key, offset) = cache.slots[slot];
        if cached_key == key {
            return offset;
        }
        let offset = chrono_local_offset(hour.saturating_mul(3600), reading);
        cache.slots[slot] = (key, offset);
        offset
    })
}

fn chrono_local_offset(seconds: i64, reading: Reading) -> i32 {
    let Some(naive) = DateTime::from_timestamp(seconds, 0).map(|dt| dt.naive_utc()) else {
        return 0;
    };
    let offset = match reading {
        Reading::Utc => Local.offset_from_utc_datetime(&naive),
        Reading::Wall => match Local.offset_from_local_datetime(&naive) {
            LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => o,
            LocalResult::None => Local.offset_from_utc_datetime(&naive),
        },
    };
    offset.fix().local_minus_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::timestamp::parse_bsd;

    /// 2026-11-21T02:53:47Z
    const NOV_21_2026: i64 = 1_795_229_627_000_000;

    fn us(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    fn resolve(text: &str, received: &str, zone: LegacyZone) -> Option<Timestamp> {
        let mut ctx = ParseContext::new(us(received), zone);
        let (bsd, _) = parse_bsd(text.as_bytes()).unwrap();
        ctx.resolve_bsd(bsd)
    }

    #[test]
    fn zone_from_str_accepts_documented_forms() {
        assert_eq!("local".parse(), Ok(LegacyZone::Local));
        assert_eq!("UTC".parse(), Ok(LegacyZone::Fixed(0)));
        assert_eq!("+02:00".parse(), Ok(LegacyZone::Fixed(7200)));
        assert_eq!("-05:30".parse(), Ok(LegacyZone::Fixed(-19800)));
        for bad in [
            "",
            "+2:00",
            "+24:00",
            "+02:60",
            "02:00",
            "+02:00x",
            "Europe/Paris",
        ] {
            assert_eq!(bad.parse::<LegacyZone>(), Err(InvalidZone(bad.to_owned())));
        }
        for zone in ["local", "utc", "+02:00", "-05:30"] {
            assert_eq!(zone.parse::<LegacyZone>().unwrap().to_string(), zone);
        }
    }

    #[test]
    fn year_is_the_receive_year_for_a_recent_timestamp() {
        let ts = resolve(
            "Nov 21 02:53:40",
            "2026-11-21T02:53:47Z",
            LegacyZone::Fixed(0),
        )
        .unwrap();
        assert_eq!((ts.civil.year, ts.offset), (2026, Offset::Z));
        assert_eq!(ts.unix_micros(), NOV_21_2026 - 7_000_000);
    }

    #[test]
    fn december_message_received_in_january_is_last_year() {
        let ts = resolve(
            "Dec 31 23:59:58",
            "2027-01-01T00:00:03Z",
            LegacyZone::Fixed(0),
        )
        .unwrap();
        assert_eq!(ts.civil.year, 2026);
    }

    #[test]
    fn january_message_received_in_december_is_next_year() {
        let ts = resolve(
            "Jan  1 00:00:02",
            "2026-12-31T23:59:58Z",
            LegacyZone::Fixed(0),
        )
        .unwrap();
        assert_eq!(ts.civil.year, 2027);
    }

    #[test]
    fn timestamp_more_than_a_month_ahead_is_last_year() {
        let ahead = resolve(
            "Jan 25 10:00:00",
            "2026-12-20T10:00:00Z",
            LegacyZone::Fixed(0),
        );
        assert_eq!(
            ahead.unwrap().civil.year,
            2026,
            "36 days ahead: previous candidate"
        );
        let near = resolve(
            "Dec 15 10:00:00",
            "2026-11-20T10:00:00Z",
            LegacyZone::Fixed(0),
        );
        assert_eq!(near.unwrap().civil.year, 2026, "25 days ahead: same year");
        let far = resolve(
            "Mar 15 10:00:00",
            "2026-01-20T10:00:00Z",
            LegacyZone::Fixed(0),
        );
        assert_eq!(far.unwrap().civil.year, 2025);
    }

    #[test]
    fn receive_time_is_read_in_the_configured_zone() {
        // 23:30Z on Dec 31 is already Jan 1 at +02:00, so "Jan  1" is this (new) year.
        let ts = resolve(
            "Jan  1 01:00:00",
            "2026-12-31T23:30:00Z",
            LegacyZone::Fixed(7200),
        );
        let ts = ts.unwrap();
        assert_eq!((ts.civil.year, ts.offset), (2027, Offset::Seconds(7200)));
        assert_eq!(ts.unix_micros(), us("2026-12-31T23:00:00Z"));
    }

    #[test]
    fn feb_29_picks_a_leap_year_or_fails() {
        let ts = resolve(
            "Feb 29 12:00:00",
            "2028-03-10T00:00:00Z",
            LegacyZone::Fixed(0),
        );
        assert_eq!(ts.unwrap().civil.year, 2028);
        assert_eq!(
            resolve(
                "Feb 29 12:00:00",
                "2026-03-10T00:00:00Z",
                LegacyZone::Fixed(0)
            ),
            None
        );
    }

    #[test]
    fn explicit_year_is_kept() {
        let ts = resolve(
            "Nov 21 2019 02:53:47",
            "2026-11-21T02:53:47Z",
            LegacyZone::Fixed(0),
        );
        assert_eq!(ts.unwrap().civil.year, 2019);
    }

    #[test]
    fn local_zone_uses_chrono_offset_of_that_hour() {
        let ts = resolve("Jul  4 12:34:56", "2026-07-05T00:00:00Z", LegacyZone::Local).unwrap();
        let naive = chrono::NaiveDate::from_ymd_opt(2026, 7, 4)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let expected = Local
            .offset_from_local_datetime(&naive)
            .earliest()
            .unwrap()
            .local_minus_utc();
        assert_eq!(ts.offset, Offset::Seconds(expected));
        assert_eq!((ts.civil.year, ts.civil.month, ts.civil.day), (2026, 7, 4));
    }

    #[test]
    fn set_received_at_forgets_the_cached_wall_clock() {
        let mut ctx = ParseContext::new(us("2026-06-01T00:00:00Z"), LegacyZone::Fixed(0));
        let (bsd, _) = parse_bsd(b"Dec 20 00:00:00").unwrap();
        assert_eq!(ctx.resolve_bsd(bsd).unwrap().civil.year, 2025);
        ctx.set_received_at(us("2026-12-25T00:00:00Z"));
        assert_eq!(ctx.resolve_bsd(bsd).unwrap().civil.year, 2026);
        assert_eq!(ctx.received_at_us(), us("2026-12-25T00:00:00Z"));
    }
}
