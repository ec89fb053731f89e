//! Syslog timestamps: the [`Timestamp`] value, and parsers for the two textual forms senders use.
//!
//! * RFC 3339 (`2003-10-11T22:14:15.003Z`), as RFC 5424 requires and as rsyslog and syslog-ng
//!   also send in the RFC 3164 position.
//! * The BSD form `Mmm dd hh:mm:ss` of RFC 3164, with the quirks of real senders: a
//!   space-padded or single-digit day, an optional year (`Nov 21 2026 02:53:47`, Cisco's
//!   `service timestamps log datetime year`) and optional fraction digits (Cisco's `.123`).
//!
//! Invariants of a [`Timestamp`] built by this module: the calendar date exists (`Feb 30` is
//! rejected, `Feb 29` only in leap years), `hour < 24`, `minute < 60`, `second < 60` (RFC 5424
//! §6.2.3.1 forbids leap seconds; we reject them rather than invent a normalisation),
//! `fraction_digits <= 9` and `nanos < 10^9` with `nanos` a multiple of `10^(9 - fraction_digits)`,
//! and an offset within ±23:59. The sender's precision and offset are kept so that
//! [`Timestamp::write_rfc3339`] reproduces what was sent (`.003Z` stays `.003Z`).
//!
//! Zone-less BSD timestamps are turned into a [`Timestamp`] by
//! [`ParseContext`](super::ParseContext), which supplies the year and the zone.

/// A calendar timestamp as the sender wrote it, with the offset it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// The local date and time, as written.
    pub civil: CivilTime,
    /// The offset from UTC the local time above is expressed in.
    pub offset: Offset,
}

/// The UTC offset of a [`Timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// UTC, written `Z`.
    Z,
    /// Seconds east of UTC, written `±hh:mm` (`+00:00` for an explicit zero offset).
    /// Sub-minute parts (historic local mean times) are truncated when written.
    Seconds(i32),
}

impl Offset {
    /// Seconds east of UTC.
    pub fn seconds(self) -> i32 {
        match self {
            Offset::Z => 0,
            Offset::Seconds(s) => s,
        }
    }
}

/// The date and time fields of a timestamp: a [`Timestamp`] without its offset, and what a
/// parser has before the offset is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Year, 0000–9999.
    pub year: u16,
    /// Month, 1–12.
    pub month: u8,
    /// Day of month, 1–31 (valid for the month and year).
    pub day: u8,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59.
    pub second: u8,
    /// Fraction of the second in nanoseconds (0 when the sender wrote none).
    pub nanos: u32,
    /// How many fraction digits the sender wrote (0–9); used to write the same precision back.
    pub fraction_digits: u8,
}

impl CivilTime {
    pub(crate) fn with_offset(self, offset: Offset) -> Timestamp {
        Timestamp {
            civil: self,
            offset,
        }
    }

    /// Seconds since 1970-01-01T00:00:00 of this wall-clock time read as if it were UTC.
    pub(crate) fn naive_seconds(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

/// A BSD timestamp: a [`CivilTime`] whose year may be missing (it usually is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BsdTime {
    /// `year` is meaningful only when `has_year`; the date is validated only then.
    pub civil: CivilTime,
    pub has_year: bool,
}

impl Timestamp {
    /// The instant in microseconds since the Unix epoch (sub-microsecond digits truncated).
    pub fn unix_micros(&self) -> i64 {
        (self.civil.naive_seconds() - i64::from(self.offset.seconds())) * 1_000_000
            + i64::from(self.civil.nanos / 1000)
    }

    /// The UTC instant `unix_us` as a timestamp with six fraction digits and offset `Z`.
    /// Instants outside years 0000–9999 are clamped to that range.
    pub fn from_unix_micros(unix_us: i64) -> Timestamp {
        // 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
        const MIN_US: i64 = -62_167_219_200_000_000;
        const MAX_US: i64 = 253_402_300_799_999_999;
        let us = unix_us.clamp(MIN_US, MAX_US);
        let secs = us.div_euclid(1_000_000);
        let micros = us.rem_euclid(1_000_000) as u32;
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400) as u32;
        CivilTime {
            year: year as u16,
            month,
            day,
            hour: (sod / 3600) as u8,
            minute: (sod / 60 % 60) as u8,
            second: (sod % 60) as u8,
            nanos: micros * 1000,
            fraction_digits: 6,
        }
        .with_offset(Offset::Z)
    }

    /// Appends the RFC 3339 text, with the sender's fraction digits and offset.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 35];
        buf[..4].copy_from_slice(&four_digits(self.civil.year));
        buf[4] = b'-';
        buf[5..7].copy_from_slice(&two_digits(self.civil.month));
        buf[7] = b'-';
        buf[8..10].copy_from_slice(&two_digits(self.civil.day));
        buf[10] = b'T';
        buf[11..13].copy_from_slice(&two_digits(self.civil.hour));
        buf[13] = b':';
        buf[14..16].copy_from_slice(&two_digits(self.civil.minute));
        buf[16] = b':';
        buf[17..19].copy_from_slice(&two_digits(self.civil.second));
        let mut len = 19;
        let digits = usize::from(self.civil.fraction_digits.min(9));
        if digits > 0 {
            buf[len] = b'.';
            let mut frac = self.civil.nanos.min(999_999_999) / POW10[9 - digits];
            for i in (0..digits).rev() {
                buf[len + 1 + i] = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            len += 1 + digits;
        }
        match self.offset {
            Offset::Z => {
                buf[len] = b'Z';
                len += 1;
            }
            Offset::Seconds(s) => {
                buf[len] = if s < 0 { b'-' } else { b'+' };
                let minutes = (s.unsigned_abs() / 60).min(23 * 60 + 59);
                buf[len + 1..len + 3].copy_from_slice(&two_digits((minutes / 60) as u8));
                buf[len + 3] = b':';
                buf[len + 4..len + 6].copy_from_slice(&two_digits((minutes % 60) as u8));
                len += 6;
            }
        }
        out.extend_from_slice(&buf[..len]);
    }
}

const POW10: [u32; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

fn two_digits(v: u8) -> [u8; 2] {
    let v = v % 100;
    [b'0' + v / 10, b'0' + v % 10]
}

fn four_digits(v: u16) -> [u8; 4] {
    let v = v % 10_000;
    [
        b'0' + (v / 1000) as u8,
        b'0' + (v / 100 % 10) as u8,
        b'0' + (v / 10 % 10) as u8,
        b'0' + (v % 10) as u8,
    ]
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (inverse of `days_from_civil`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub(crate) fn is_leap_year(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn digit(input: &[u8], at: usize) -> Option<u32> {
    match input.get(at) {
        Some(b) if b.is_ascii_digit() => Some(u32::from(b - b'0')),
        _ => None,
    }
}

/// The `len`-digit decimal number at `at`. One bounds check for the whole run rather than one
/// per digit: every timestamp reads five to eight of these (with the fixed-width prefix in
/// [`parse_iso8601`], 2.6% fewer instructions in `parse` on `benches/parse`'s corpus under
/// callgrind).
#[inline]
fn number(input: &[u8], at: usize, len: usize) -> Option<u32> {
    let mut value = 0u32;
    for &b in input.get(at..at.checked_add(len)?)? {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value * 10 + u32::from(digit);
    }
    Some(value)
}

fn expect(input: &[u8], at: usize, byte: u8) -> Option<()> {
    (input.get(at) == Some(&byte)).then_some(())
}

/// Parses `.d{1,9}` at `at` (with `lenient`, also `,` and any number of digits, of which the
/// first nine are kept: the rest is cut, not rounded, so that a fraction never carries into
/// the seconds and the instant agrees with [`Timestamp::unix_micros`], which also cuts).
/// Returns (nanos, digits kept, bytes consumed). No fraction: (0, 0, 0).
#[inline]
fn fraction(input: &[u8], at: usize, lenient: bool) -> Option<(u32, u8, usize)> {
    match input.get(at) {
        Some(b'.') => {}
        Some(b',') if lenient => {}
        _ => return Some((0, 0, 0)),
    }
    let digits = input[at + 1..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || (digits > 9 && !lenient) {
        return None;
    }
    let kept = digits.min(9);
    let value = number(input, at + 1, kept)?;
    Some((value * POW10[9 - kept], kept as u8, 1 + digits))
}

/// Parses `hh:mm:ss` at `at` (ranges checked).
#[inline]
fn time_of_day(input: &[u8], at: usize) -> Option<(u8, u8, u8)> {
    let hour = number(input, at, 2)?;
    expect(input, at + 2, b':')?;
    let minute = number(input, at + 3, 2)?;
    expect(input, at + 5, b':')?;
    let second = number(input, at + 6, 2)?;
    (hour < 24 && minute < 60 && second < 60).then_some((hour as u8, minute as u8, second as u8))
}

/// Parses an RFC 3339 timestamp at the start of `input`.
///
/// Returns the civil time, the offset if one was written, and the bytes consumed. A missing
/// offset is accepted here so that the RFC 3164 parser can apply the configured zone; the
/// RFC 5424 parser rejects it. Up to nine fraction digits are accepted (RFC 5424 allows six).
#[cfg(test)]
pub(crate) fn parse_rfc3339(input: &[u8]) -> Option<(CivilTime, Option<Offset>, usize)> {
    parse_iso8601(input, false)
}

/// Parses an ISO 8601 timestamp at the start of `input`: RFC 3339 when not `lenient`; with
/// `lenient`, also the forms real senders write in its place:
///
/// * a space instead of `T` between date and time (`2026-06-19 02:13:38`);
/// * more than nine fraction digits (the first nine kept, the rest cut), or a `,` before them;
/// * offsets without a colon (`-0700`) or without minutes (`-07`);
/// * `Z` followed by an offset (`...07Z+01:00`, Java's `'Z'Z` pattern): the offset wins, as
///   the `Z` is then a literal the sender's format string forgot to drop.
pub(crate) fn parse_iso8601(
    input: &[u8],
    lenient: bool,
) -> Option<(CivilTime, Option<Offset>, usize)> {
    // Every form has at least `yyyy-mm-ddThh:mm:ss`: with those 19 bytes as an array, the
    // fields below are read without a bounds check each.
    let head: &[u8; 19] = input.get(..19)?.try_into().ok()?;
    let year = number(head, 0, 4)? as u16;
    expect(head, 4, b'-')?;
    let month = number(head, 5, 2)? as u8;
    expect(head, 7, b'-')?;
    let day = number(head, 8, 2)? as u8;
    match head[10] {
        b'T' => {}
        b' ' if lenient => {}
        _ => return None,
    }
    let (hour, minute, second) = time_of_day(head, 11)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let (nanos, fraction_digits, frac_len) = fraction(input, 19, lenient)?;
    let mut at = 19 + frac_len;
    let mut offset = None;
    if input.get(at) == Some(&b'Z') {
        at += 1;
        offset = Some(Offset::Z);
    }
    if (offset.is_none() || lenient)
        && let Some(&sign @ (b'+' | b'-')) = input.get(at)
    {
        let (seconds, len) = numeric_offset(input, at + 1, lenient)?;
        at += 1 + len;
        offset = Some(Offset::Seconds(if sign == b'-' {
            -seconds
        } else {
            seconds
        }));
    }
    let civil = CivilTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        fraction_digits,
    };
    Some((civil, offset, at))
}

/// The `hh:mm` after an offset's sign (with `lenient`, also `hhmm` and `hh`): seconds and
/// bytes consumed.
fn numeric_offset(input: &[u8], at: usize, lenient: bool) -> Option<(i32, usize)> {
    let hours = number(input, at, 2)?;
    let (minutes, len) = match (input.get(at + 2), number(input, at + 3, 2)) {
        (Some(b':'), Some(minutes)) => (minutes, 5),
        _ if !lenient => return None,
        _ => match number(input, at + 2, 2) {
            Some(minutes) => (minutes, 4),
            None if digit(input, at + 2).is_none() => (0, 2),
            None => return None,
        },
    };
    (hours <= 23 && minutes <= 59).then_some(((hours * 3600 + minutes * 60) as i32, len))
}

/// The month 1–12 of a three-letter English name, ASCII case-insensitively. (A `match` on
/// the folded bytes rather than a search of a name table: every BSD timestamp and every
/// Cisco clock attempt goes through here.)
pub(crate) fn month_number(name: &[u8]) -> Option<u8> {
    let [a, b, c] = name else {
        return None;
    };
    // `| 0x20` folds exactly the ASCII capitals onto the lowercase letters compared below.
    Some(match [a | 0x20, b | 0x20, c | 0x20] {
        [b'j', b'a', b'n'] => 1,
        [b'f', b'e', b'b'] => 2,
        [b'm', b'a', b'r'] => 3,
        [b'a', b'p', b'r'] => 4,
        [b'm', b'a', b'y'] => 5,
        [b'j', b'u', b'n'] => 6,
        [b'j', b'u', b'l'] => 7,
        [b'a', b'u', b'g'] => 8,
        [b's', b'e', b'p'] => 9,
        [b'o', b'c', b't'] => 10,
        [b'n', b'o', b'v'] => 11,
        [b'd', b'e', b'c'] => 12,
        _ => return None,
    })
}

/// Parses a BSD timestamp at the start of `input`, in one of the shapes devices write:
///
/// ```text
/// Mmm dd [yyyy ]hh:mm:ss[.fff]        RFC 3164; the year as Cisco IOS `datetime year` writes it
/// Mmm dd hh:mm:ss[.fff] yyyy          the year after the time (ArubaOS, and with a colon)
/// yyyy Mmm dd hh:mm:ss[.fff]          the year first (Cisco NX-OS)
/// ```
///
/// The day may be `dd`, ` d` (space-padded, as RFC 3164 specifies) or `d`; month names match
/// ASCII case-insensitively. Fraction digits beyond nine are cut, as in [`parse_iso8601`].
/// A year after the time counts when `: ` follows it, or when it is 1970–2099 and a space
/// or the end follows it (a 4-digit hostname in that range is read as the year). Without a
/// year, the day is checked against 1–31 only: whether `Feb 29` exists depends on the year
/// that [`ParseContext`](super::ParseContext) infers.
pub(crate) fn parse_bsd(input: &[u8]) -> Option<(BsdTime, usize)> {
    let mut year = None;
    let mut at = 0;
    if let (Some(y), Some(b' ')) = (number(input, 0, 4), input.get(4)) {
        year = Some(y as u16);
        at = 5;
    }
    let month = month_number(input.get(at..at + 3)?)?;
    expect(input, at + 3, b' ')?;
    let (day, len) = match (input.get(at + 4), input.get(at + 5)) {
        (Some(b' '), Some(_)) => (digit(input, at + 5)?, 6),
        (Some(_), Some(b' ')) => (digit(input, at + 4)?, 5),
        _ => (number(input, at + 4, 2)?, 6),
    };
    at += len;
    expect(input, at, b' ')?;
    at += 1;
    if year.is_none()
        && let (Some(y), Some(b' ')) = (number(input, at, 4), input.get(at + 4))
    {
        year = Some(y as u16);
        at += 5;
    }
    let (hour, minute, second) = time_of_day(input, at)?;
    at += 8;
    let (nanos, fraction_digits, frac_len) = fraction(input, at, true)?;
    at += frac_len;
    if year.is_none() && input.get(at) == Some(&b' ') {
        // ArubaOS writes `Nov 20 10:00:16 2026 host ...`. A year 1970–2099 followed by a space
        // (or any year followed by `: `) is taken; `17:32:18 2001:db8:: sshd` is an IPv6
        // hostname, and a 4-digit hostname outside that range stays a hostname.
        let after = (input.get(at + 5), input.get(at + 6));
        let year_after = number(input, at + 1, 4).filter(|&y| match after {
            (None | Some(b' '), _) => (1970..=2099).contains(&y),
            (Some(b':'), None | Some(b' ')) => true,
            _ => false,
        });
        if let Some(y) = year_after {
            year = Some(y as u16);
            at += 5;
        }
    }
    let day = day as u8;
    let max_day = year.map_or(31, |y| days_in_month(y, month));
    if day == 0 || day > max_day {
        return None;
    }
    let civil = CivilTime {
        year: year.unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos,
        fraction_digits,
    };
    let bsd = BsdTime {
        civil,
        has_year: year.is_some(),
    };
    Some((bsd, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339_text(ts: &Timestamp) -> String {
        let mut out = Vec::new();
        ts.write_rfc3339(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn parse_full(text: &str) -> Timestamp {
        let (civil, offset, len) = parse_rfc3339(text.as_bytes()).expect("parses");
        assert_eq!(len, text.len());
        civil.with_offset(offset.expect("has offset"))
    }

    #[test]
    fn rfc3339_keeps_sender_fraction_digits_and_offset() {
        for text in [
            "2003-10-11T22:14:15.003Z",
            "2003-08-24T05:14:15.000003-07:00",
            "1985-04-12T23:20:50.52Z",
            "2026-11-21T02:53:47.123456789+05:30",
            "2026-11-21T02:53:47Z",
            "2026-02-28T23:59:59+00:00",
        ] {
            assert_eq!(rfc3339_text(&parse_full(text)), text);
        }
    }

    #[test]
    fn rfc3339_fields_are_exact() {
        let ts = parse_full("2003-08-24T05:14:15.000003-07:00");
        assert_eq!(
            ts,
            Timestamp {
                civil: CivilTime {
                    year: 2003,
                    month: 8,
                    day: 24,
                    hour: 5,
                    minute: 14,
                    second: 15,
                    nanos: 3_000,
                    fraction_digits: 6,
                },
                offset: Offset::Seconds(-7 * 3600),
            }
        );
        // 2003-08-24T12:14:15.000003Z
        assert_eq!(ts.unix_micros(), 1_061_727_255_000_003);
    }

    #[test]
    fn rfc3339_rejects_impossible_values() {
        for text in [
            "2003-02-29T00:00:00Z",
            "2003-13-01T00:00:00Z",
            "2003-00-01T00:00:00Z",
            "2003-01-00T00:00:00Z",
            "2003-01-01T24:00:00Z",
            "2003-01-01T23:60:00Z",
            "2003-01-01T23:59:60Z",
            "2003-01-01T23:59:59.Z",
            "2003-01-01T23:59:59.1234567890Z",
            "2003-01-01T23:59:59+24:00",
            "2003-01-01 23:59:59Z",
            "2003-1-01T23:59:59Z",
            "2003-01-01T23:59",
        ] {
            let parsed = parse_rfc3339(text.as_bytes());
            assert!(
                parsed.is_none() || parsed.is_some_and(|(_, off, _)| off.is_none()),
                "{text} should be rejected, got {parsed:?}"
            );
        }
        assert!(parse_rfc3339(b"2003-01-01T23:59:59+24:00").is_none());
    }

    #[test]
    fn rfc3339_without_offset_reports_none() {
        let (civil, offset, len) = parse_rfc3339(b"2026-11-21T02:53:47.5 host").unwrap();
        assert_eq!(offset, None);
        assert_eq!(len, 21);
        assert_eq!((civil.nanos, civil.fraction_digits), (500_000_000, 1));
    }

    #[test]
    fn leap_day_exists_only_in_leap_years() {
        assert!(parse_rfc3339(b"2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339(b"2000-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339(b"1900-02-29T00:00:00Z").is_none());
    }

    #[test]
    fn bsd_accepts_padded_single_and_two_digit_days() {
        for (text, day, len) in [
            ("Nov  1 02:53:47 host", 1, 15),
            ("Nov 1 02:53:47 host", 1, 14),
            ("Nov 21 02:53:47 host", 21, 15),
            ("nov 21 02:53:47", 21, 15),
        ] {
            let (bsd, consumed) = parse_bsd(text.as_bytes()).expect(text);
            assert_eq!((bsd.civil.month, bsd.civil.day, consumed), (11, day, len));
            assert!(!bsd.has_year);
            assert_eq!(
                (bsd.civil.hour, bsd.civil.minute, bsd.civil.second),
                (2, 53, 47)
            );
        }
    }

    #[test]
    fn bsd_accepts_year_and_milliseconds() {
        let (bsd, len) = parse_bsd(b"Nov 21 2025 02:53:47.123: %X").unwrap();
        assert_eq!(len, 24);
        assert!(bsd.has_year);
        assert_eq!(bsd.civil.year, 2025);
        assert_eq!(
            (bsd.civil.nanos, bsd.civil.fraction_digits),
            (123_000_000, 3)
        );
    }

    #[test]
    fn bsd_rejects_malformed() {
        for text in [
            "Nov 32 02:53:47",
            "Nov 00 02:53:47",
            "Foo 21 02:53:47",
            "Nov 21 2:53:47",
            "Nov 21 02:53",
            "Nov21 02:53:47",
            "Feb 29 2025 02:53:47",
            "",
            "N",
        ] {
            assert_eq!(parse_bsd(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn civil_conversions_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn from_unix_micros_formats_and_clamps() {
        assert_eq!(
            rfc3339_text(&Timestamp::from_unix_micros(1_795_229_627_123_456)),
            "2026-11-21T02:53:47.123456Z"
        );
        assert_eq!(
            rfc3339_text(&Timestamp::from_unix_micros(-1)),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339_text(&Timestamp::from_unix_micros(i64::MAX)),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339_text(&Timestamp::from_unix_micros(i64::MIN)),
            "0000-01-01T00:00:00.000000Z"
        );
    }
}
