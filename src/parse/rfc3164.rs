//! RFC 3164 ("BSD syslog") as real senders write it. Nothing here is an error: whatever part
//! of the header is recognised is taken, and the rest is the message. The accepted shapes:
//!
//! ```text
//! [<PRI>][TIMESTAMP SP+ [HOSTNAME SP]][TAG[\[PID\]]: [SP]]MSG          BSD and its relatives
//! [<PRI>][SEQ: SP][HOST: SP][*|.]Mmm dd [yyyy ]hh:mm:ss[.fff][ ZONE]: %MNEMONIC: MSG   Cisco IOS
//! ```
//!
//! * TIMESTAMP is `Mmm dd hh:mm:ss` (day space-padded or not, optional year and fraction; the
//!   year and zone come from [`ParseContext`]) or an RFC 3339 timestamp as rsyslog and
//!   syslog-ng's loggen send it (its own offset wins; without one the zone applies). A date
//!   that does not exist is not a timestamp, and stays in the message.
//! * HOSTNAME is looked for only after a timestamp (a message without one, e.g. `<13>root: hi`,
//!   comes from a naive local sender). The word after the timestamp is the hostname unless it
//!   ends with `:` or contains `[` (then it is the tag: `logger -u` over `/dev/log` sends
//!   `<13>Nov 21 02:53:47 root: hello`) or has bytes outside printable ASCII (then it is text).
//! * TAG needs its colon: `app:` or `app[pid]:` (at most [`MAX_TAG_LEN`] / [`MAX_PID_LEN`]
//!   bytes); a first word without one is part of the message, not an app name. One space after
//!   the colon is dropped.
//! * Cisco IOS: SEQ becomes `msgid`, the mnemonic without `%` becomes `app`, HOST `host`; the
//!   `*`/`.` clock-not-synchronised markers are dropped; a ZONE word `UTC`/`GMT`/`UT`/`Z`
//!   means UTC, any other zone name falls back to the configured zone (there is no zone
//!   database to resolve abbreviations reliably).

use memchr::{memchr, memchr_iter};

use super::timestamp::{BsdTime, Offset, Timestamp, parse_bsd, parse_rfc3339};
use super::{ParseContext, Record};

/// Longest tag (app name) recognised before its `[` or `:`.
pub const MAX_TAG_LEN: usize = 128;
/// Longest PID recognised between the tag's brackets.
pub const MAX_PID_LEN: usize = 128;
/// Longest hostname recognised (RFC 1035 / RFC 5424 limit).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// How far into a message `: %` is looked for to recognise the Cisco form; covers a 20-digit
/// sequence number, a long hostname, the timestamp with year, fraction and zone.
const CISCO_WINDOW: usize = 160;

/// Parses the part of `input` after the PRI (which ends at `body_start`); `pri` is the PRI
/// value, or the RFC 3164 default when the message had none.
pub(crate) fn parse<'a>(
    input: &'a [u8],
    body_start: usize,
    pri: u8,
    ctx: &mut ParseContext,
) -> Record<'a> {
    let body = input.get(body_start..).unwrap_or_default();
    let mut record = Record::bare(Some(pri), body);
    if looks_like_cisco(body) && cisco(body, ctx, &mut record) {
        return record;
    }

    let mut rest = body;
    if let Some((timestamp, len)) = leading_timestamp(rest, ctx) {
        record.timestamp = Some(timestamp);
        rest = skip_spaces(&rest[len..]);
        let word = &rest[..memchr(b' ', rest).unwrap_or(rest.len())];
        if is_hostname(word) {
            record.host = Some(word);
            rest = rest.get(word.len() + 1..).unwrap_or_default();
        }
    }
    if let Some(tag) = tag(rest) {
        record.app = Some(tag.app);
        record.procid = tag.procid;
        rest = &rest[tag.len..];
        rest = rest.strip_prefix(b" ").unwrap_or(rest);
    }
    record.message = rest;
    record
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|&&b| b == b' ').count();
    &bytes[n..]
}

/// A timestamp at the start of `rest` that is followed by a space or the end; its length.
fn leading_timestamp(rest: &[u8], ctx: &mut ParseContext) -> Option<(Timestamp, usize)> {
    let (timestamp, len) = if rest.first().is_some_and(u8::is_ascii_digit) {
        let (civil, offset, len) = parse_rfc3339(rest)?;
        let offset = offset.unwrap_or_else(|| ctx.zone_offset(&civil));
        (civil.with_offset(offset), len)
    } else {
        let (bsd, len) = parse_bsd(rest)?;
        (ctx.resolve_bsd(bsd)?, len)
    };
    matches!(rest.get(len), None | Some(b' ')).then_some((timestamp, len))
}

fn is_hostname(word: &[u8]) -> bool {
    !word.is_empty()
        && word.len() <= MAX_HOSTNAME_LEN
        && !word.ends_with(b":")
        && word.iter().all(|&b| (33..=126).contains(&b) && b != b'[')
}

/// An RFC 3164 TAG: `app:` or `app[pid]:`.
struct Tag<'a> {
    app: &'a [u8],
    procid: Option<&'a [u8]>,
    /// Length including the colon.
    len: usize,
}

/// The TAG at the start of `rest`, if there is one.
fn tag(rest: &[u8]) -> Option<Tag<'_>> {
    let window = &rest[..rest.len().min(MAX_TAG_LEN + 1)];
    let end = window
        .iter()
        .position(|&b| matches!(b, b':' | b'[' | b' '))?;
    if end == 0 {
        return None;
    }
    let app = &rest[..end];
    match rest[end] {
        b':' => Some(Tag {
            app,
            procid: None,
            len: end + 1,
        }),
        b'[' => {
            let pid_start = end + 1;
            let pid_window = &rest[pid_start..rest.len().min(pid_start + MAX_PID_LEN + 1)];
            let pid_len = memchr(b']', pid_window)?;
            let pid = &pid_window[..pid_len];
            let colon = pid_start + pid_len + 1;
            let valid = !pid.is_empty() && !pid.contains(&b' ') && rest.get(colon) == Some(&b':');
            valid.then_some(Tag {
                app,
                procid: Some(pid),
                len: colon + 1,
            })
        }
        _ => None,
    }
}

/// Cheap pre-check: Cisco messages have `: %` (before the mnemonic) near the start.
fn looks_like_cisco(body: &[u8]) -> bool {
    let window = &body[..body.len().min(CISCO_WINDOW)];
    memchr_iter(b'%', window).any(|at| at >= 2 && &window[at - 2..at] == b": ")
}

/// Parses the Cisco IOS form into `record`; false (and `record` untouched) if it is not one.
fn cisco<'a>(body: &'a [u8], ctx: &mut ParseContext, record: &mut Record<'a>) -> bool {
    let mut rest = body;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = if digits > 0 && rest[digits..].starts_with(b": ") {
        let seq = &rest[..digits];
        rest = &rest[digits + 2..];
        Some(seq)
    } else {
        None
    };
    let mut host = None;
    let clock = match cisco_clock(rest) {
        Some(clock) => Some(clock),
        None => {
            let word_end = memchr(b' ', rest).unwrap_or(rest.len());
            match rest[..word_end].strip_suffix(b":") {
                Some(word) if is_hostname(word) => {
                    host = Some(word);
                    rest = rest.get(word_end + 1..).unwrap_or_default();
                    cisco_clock(rest)
                }
                _ => None,
            }
        }
    };
    let Some((bsd, utc, clock_len)) = clock else {
        return false;
    };
    // `cisco_clock` checked that `: %` follows the clock.
    let after = &rest[clock_len + 3..];
    let Some(mnemonic_len) = memchr(b':', &after[..after.len().min(MAX_TAG_LEN + 1)]) else {
        return false;
    };
    let mnemonic = &after[..mnemonic_len];
    if mnemonic.is_empty() || mnemonic.contains(&b' ') {
        return false;
    }
    let Some(mut timestamp) = ctx.resolve_bsd(bsd) else {
        return false;
    };
    if utc {
        timestamp.offset = Offset::Z;
    }
    let message = &after[mnemonic_len + 1..];
    record.timestamp = Some(timestamp);
    record.host = host;
    record.app = Some(mnemonic);
    record.msgid = seq;
    record.message = message.strip_prefix(b" ").unwrap_or(message);
    true
}

/// `[*|.]Mmm dd [yyyy ]hh:mm:ss[.fff][ ZONE]` followed by `: %`: the clock, whether ZONE says
/// UTC, and the length up to (not including) the `: %`.
fn cisco_clock(rest: &[u8]) -> Option<(BsdTime, bool, usize)> {
    let marker = usize::from(matches!(rest.first(), Some(b'*' | b'.')));
    let (bsd, len) = parse_bsd(&rest[marker..])?;
    let mut at = marker + len;
    let mut utc = false;
    if rest.get(at) == Some(&b' ') {
        let zone_len = rest[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if (1..=6).contains(&zone_len) {
            let zone = &rest[at + 1..at + 1 + zone_len];
            utc = [&b"UTC"[..], b"GMT", b"UT", b"Z"]
                .iter()
                .any(|z| z.eq_ignore_ascii_case(zone));
            at += 1 + zone_len;
        }
    }
    (rest.get(at..at + 3) == Some(b": %")).then_some((bsd, utc, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::timestamp::CivilTime;
    use crate::parse::{Format, LegacyZone, ParseError, parse as parse_any};

    /// 2026-11-21T02:53:47Z
    const NOV_21_2026_US: i64 = 1_795_229_627_000_000;

    fn parse_at(input: &[u8], received_us: i64, zone: LegacyZone) -> Record<'_> {
        let mut ctx = ParseContext::new(received_us, zone);
        let auto = parse_any(input, Format::Auto, &mut ctx);
        let forced = parse_any(input, Format::Rfc3164, &mut ctx);
        assert_eq!(auto, forced, "auto-detect must pick RFC 3164");
        auto
    }

    fn parse_utc(input: &[u8]) -> Record<'_> {
        parse_at(input, NOV_21_2026_US, LegacyZone::Fixed(0))
    }

    #[allow(clippy::too_many_arguments)]
    fn civil(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, nanos: u32, digits: u8) -> CivilTime {
        CivilTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
            nanos,
            fraction_digits: digits,
        }
    }

    fn nov21(offset: Offset) -> Option<Timestamp> {
        Some(civil(2026, 11, 21, 2, 53, 47, 0, 0).with_offset(offset))
    }

    #[test]
    fn bsd_with_hostname_and_pid() {
        let r = parse_utc(b"<34>Nov 21 02:53:47 web-1 sshd[4242]: Accepted publickey for alice");
        assert_eq!(
            r,
            Record {
                facility: Some(4),
                severity: Some(2),
                version: None,
                timestamp: nov21(Offset::Z),
                host: Some(b"web-1"),
                app: Some(b"sshd"),
                procid: Some(b"4242"),
                msgid: None,
                structured_data: None,
                message: b"Accepted publickey for alice",
                parse_error: None,
            }
        );
    }

    #[test]
    fn local_sender_without_hostname() {
        let r = parse_utc(b"<13>Nov 21 02:53:47 root: hello");
        assert_eq!((r.host, r.app, r.procid), (None, Some(&b"root"[..]), None));
        assert_eq!(r.timestamp, nov21(Offset::Z));
        assert_eq!(r.message, b"hello");
        let r = parse_utc(b"<13>Nov 21 02:53:47 cron[77]: job done");
        assert_eq!(
            (r.host, r.app, r.procid),
            (None, Some(&b"cron"[..]), Some(&b"77"[..]))
        );
        assert_eq!(r.message, b"job done");
    }

    #[test]
    fn space_padded_day() {
        let r = parse_utc(b"<13>Nov  1 00:00:09 host app: x");
        let expected = civil(2026, 11, 1, 0, 0, 9, 0, 0).with_offset(Offset::Z);
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"host"[..]), Some(&b"app"[..]), &b"x"[..])
        );
    }

    #[test]
    fn december_message_received_in_january_is_dated_last_year() {
        // Received 2027-01-01T00:00:05Z.
        let r = parse_at(
            b"<13>Dec 31 23:59:59 h a: m",
            1_798_761_605_000_000,
            LegacyZone::Fixed(0),
        );
        let t = r.timestamp.unwrap();
        assert_eq!((t.year, t.month, t.day), (2026, 12, 31));
    }

    #[test]
    fn january_message_received_in_december_is_dated_next_year() {
        // Received 2026-12-31T23:59:55Z, sender clock a few seconds ahead.
        let r = parse_at(
            b"<13>Jan  1 00:00:01 h a: m",
            1_798_761_595_000_000,
            LegacyZone::Fixed(0),
        );
        let t = r.timestamp.unwrap();
        assert_eq!((t.year, t.month, t.day), (2027, 1, 1));
    }

    #[test]
    fn fixed_zone_is_attached_to_bsd_timestamps() {
        let r = parse_at(
            b"<13>Nov 21 02:53:47 h a: m",
            NOV_21_2026_US,
            LegacyZone::Fixed(3600),
        );
        assert_eq!(r.timestamp, nov21(Offset::Seconds(3600)));
    }

    #[test]
    fn iso_timestamp_in_bsd_position() {
        let r = parse_utc(b"<38>2026-11-21T02:53:47.123456+01:00 host prog[123]: msg");
        let expected =
            civil(2026, 11, 21, 2, 53, 47, 123_456_000, 6).with_offset(Offset::Seconds(3600));
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!((r.facility, r.severity), (Some(4), Some(6)));
        assert_eq!(r.host, Some(&b"host"[..]));
        assert_eq!((r.app, r.procid), (Some(&b"prog"[..]), Some(&b"123"[..])));
        assert_eq!(r.message, b"msg");
    }

    #[test]
    fn iso_timestamp_without_offset_gets_the_zone() {
        let r = parse_at(
            b"<38>2026-11-21T02:53:47 host prog: msg",
            0,
            LegacyZone::Fixed(-19_800),
        );
        assert_eq!(r.timestamp, nov21(Offset::Seconds(-19_800)));
    }

    #[test]
    fn missing_pri_defaults_to_user_notice() {
        let r = parse_utc(b"Nov 21 02:53:47 host app: hi");
        assert_eq!((r.facility, r.severity), (Some(1), Some(5)));
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"host"[..]), Some(&b"app"[..]), &b"hi"[..])
        );
        assert_eq!(r.parse_error, None);
        let r = parse_utc(b"just text");
        assert_eq!((r.facility, r.severity, r.app), (Some(1), Some(5), None));
        assert_eq!(r.message, b"just text");
    }

    #[test]
    fn without_timestamp_no_hostname_is_taken() {
        let r = parse_utc(b"<13>root: hello");
        assert_eq!(
            (r.timestamp, r.host, r.app),
            (None, None, Some(&b"root"[..]))
        );
        assert_eq!(r.message, b"hello");
        let r = parse_utc(b"<13>hello world: x");
        assert_eq!(
            (r.host, r.app, r.message),
            (None, None, &b"hello world: x"[..])
        );
    }

    #[test]
    fn word_without_colon_after_host_is_message() {
        let r = parse_utc(b"<13>Nov 21 02:53:47 host some text [1]: x");
        assert_eq!((r.host, r.app), (Some(&b"host"[..]), None));
        assert_eq!(r.message, b"some text [1]: x");
        let r = parse_utc(b"<13>Nov 21 02:53:47 host");
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"host"[..]), None, &b""[..])
        );
    }

    #[test]
    fn malformed_tag_pid_is_message() {
        for input in [
            &b"<13>Nov 21 02:53:47 h app[12 3]: m"[..],
            b"<13>Nov 21 02:53:47 h app[]: m",
            b"<13>Nov 21 02:53:47 h app[12] m",
            b"<13>Nov 21 02:53:47 h app[12",
        ] {
            let r = parse_utc(input);
            assert_eq!(
                (r.app, r.procid),
                (None, None),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(r.message, &input[22..]);
        }
    }

    #[test]
    fn impossible_date_stays_in_message() {
        let r = parse_utc(b"<13>Feb 30 02:53:47 host app: m");
        assert_eq!((r.timestamp, r.host, r.app), (None, None, None));
        assert_eq!(r.message, b"Feb 30 02:53:47 host app: m");
    }

    #[test]
    fn cisco_with_sequence_number() {
        let r = parse_utc(
            b"<189>123: *Nov 21 02:53:47.123: %LINK-3-UPDOWN: Interface Gi0/1, changed state to up",
        );
        assert_eq!(
            r,
            Record {
                facility: Some(23),
                severity: Some(5),
                version: None,
                timestamp: Some(
                    civil(2026, 11, 21, 2, 53, 47, 123_000_000, 3).with_offset(Offset::Z)
                ),
                host: None,
                app: Some(b"LINK-3-UPDOWN"),
                procid: None,
                msgid: Some(b"123"),
                structured_data: None,
                message: b"Interface Gi0/1, changed state to up",
                parse_error: None,
            }
        );
    }

    #[test]
    fn cisco_with_hostname_dot_marker_and_zone_word() {
        let r = parse_at(
            b"<189>45: core-sw1: .Nov 21 02:53:47.001 UTC: %SYS-5-CONFIG_I: Configured from console",
            NOV_21_2026_US,
            LegacyZone::Fixed(7200),
        );
        let expected = civil(2026, 11, 21, 2, 53, 47, 1_000_000, 3).with_offset(Offset::Z);
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!(r.host, Some(&b"core-sw1"[..]));
        assert_eq!(r.msgid, Some(&b"45"[..]));
        assert_eq!(r.app, Some(&b"SYS-5-CONFIG_I"[..]));
        assert_eq!(r.message, b"Configured from console");
    }

    #[test]
    fn cisco_non_utc_zone_word_uses_configured_zone() {
        let r = parse_at(
            b"<189>7: Nov 21 02:53:47 CET: %SYS-5-RESTART: up",
            NOV_21_2026_US,
            LegacyZone::Fixed(3600),
        );
        assert_eq!(r.timestamp, nov21(Offset::Seconds(3600)));
        assert_eq!(
            (r.msgid, r.app, r.message),
            (Some(&b"7"[..]), Some(&b"SYS-5-RESTART"[..]), &b"up"[..])
        );
    }

    #[test]
    fn cisco_without_sequence_number() {
        let r = parse_utc(b"<187>*Nov 21 02:53:47: %LINEPROTO-5-UPDOWN: Line protocol down");
        assert_eq!((r.msgid, r.host), (None, None));
        assert_eq!(r.timestamp, nov21(Offset::Z));
        assert_eq!(r.app, Some(&b"LINEPROTO-5-UPDOWN"[..]));
        assert_eq!(r.message, b"Line protocol down");
        let r = parse_utc(b"<187>rtr-2: *Nov 21 02:53:47: %LINK-3-UPDOWN: x");
        assert_eq!(
            (r.msgid, r.host, r.app),
            (None, Some(&b"rtr-2"[..]), Some(&b"LINK-3-UPDOWN"[..]))
        );
        assert_eq!(r.message, b"x");
    }

    #[test]
    fn cisco_with_ipv6_hostname_and_year() {
        let r = parse_utc(b"<189>9: 2001:db8::1: Nov 21 2025 02:53:47.5: %A-1-B: m");
        assert_eq!(r.host, Some(&b"2001:db8::1"[..]));
        assert_eq!(
            r.timestamp.map(|t| (t.year, t.nanos, t.fraction_digits)),
            Some((2025, 500_000_000, 1))
        );
    }

    #[test]
    fn bsd_message_mentioning_percent_is_not_cisco() {
        let r = parse_utc(b"<13>Nov 21 02:53:47 host app: disk: %90 full");
        assert_eq!(
            (r.host, r.app, r.msgid),
            (Some(&b"host"[..]), Some(&b"app"[..]), None)
        );
        assert_eq!(r.message, b"disk: %90 full");
    }

    #[test]
    fn invalid_pri_keeps_whole_input() {
        for input in [
            &b"<abc>Nov 21 02:53:47 h a: m"[..],
            b"<192>x",
            b"<13",
            b"<0013>x",
            b"<>x",
            b"<",
        ] {
            let r = parse_utc(input);
            assert_eq!(
                r.parse_error,
                Some(ParseError::InvalidPri),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(r.message, input);
            assert_eq!((r.facility, r.severity, r.timestamp), (None, None, None));
        }
    }

    #[test]
    fn pri_only_is_an_empty_message() {
        let r = parse_utc(b"<191>");
        assert_eq!(
            (r.facility, r.severity, r.parse_error),
            (Some(23), Some(7), None)
        );
        assert_eq!(r.message, b"");
    }

    #[test]
    fn non_utf8_and_nul_bytes_are_preserved() {
        let r = parse_utc(b"<13>Nov 21 02:53:47 h a: \xff\x00\xfe");
        assert_eq!(r.message, b"\xff\x00\xfe");
        let r = parse_utc(b"<13>Nov 21 02:53:47 h\xff a: m");
        assert_eq!((r.host, r.app), (None, None));
        assert_eq!(r.message, b"h\xff a: m");
    }
}
