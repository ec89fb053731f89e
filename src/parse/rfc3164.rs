//! RFC 3164 ("BSD syslog") as real senders write it. Nothing here is an error: whatever part
//! of the header is recognised is taken, and the rest is the message. The accepted shapes:
//!
//! ```text
//! [<PRI>][SP*][TIMESTAMP[:] SP+ [HOSTNAME SP]][TAG[\[PID\]]: [SP]]MSG        BSD and its relatives
//! [<PRI>][SP*]TIMESTAMP[:] SP+ HOSTNAME SP WORD SP MSG                   TAG without its colon
//! [<PRI>][COUNTER]: [HOST: ][SEQ: ][*|.]CLOCK[ ZONE]: [HOST: ]%MNEMONIC: MSG   Cisco (see `cisco`)
//! ```
//!
//! * Blanks between PRI and the header (`<13> Aug 16 ...`, Dell, NEC) are skipped when a
//!   header follows them.
//! * TIMESTAMP is a BSD timestamp (`Mmm dd hh:mm:ss`, day space-padded or not, optional
//!   fraction, the year optional before the time, after it (ArubaOS), or first as NX-OS writes it; a
//!   missing year and the zone come from [`ParseContext`]) or an ISO 8601 timestamp as
//!   rsyslog, syslog-ng and many appliances send it (`T` or a space between date and time,
//!   offsets `+01:00`, `-0700`, `-07`, `Z`; its own offset wins, without one the zone
//!   applies; see [`parse_iso8601`] for fraction digits beyond nine, which are cut). A colon
//!   right after it (`Mar  7 2026 19:06:53: tag: ...`) is part of it. A date that does not
//!   exist is not a timestamp.
//! * Text that starts like a timestamp (`2026-`, `12:`, `Mar  7`, `2026 Mar`) but does not
//!   read as one is never taken apart into host and app: the whole body is the message.
//! * HOSTNAME is looked for only after a timestamp (a message without one, e.g. `<13>root: hi`,
//!   comes from a naive local sender). The word after the timestamp is the hostname unless it
//!   ends with `:` (then it is the tag: `logger -u` over `/dev/log` sends
//!   `<13>Nov 21 02:53:47 root: hello`; an IPv6 address ending in `::` is still a hostname),
//!   contains `[`, or has bytes outside printable ASCII (then it is text).
//! * TAG is `app:` or `app[pid]:` (at most [`MAX_TAG_LEN`] / [`MAX_PID_LEN`] bytes); one space
//!   after the colon is dropped. After a hostname, a word without a colon is the tag too, as
//!   rsyslog and syslog-ng take it, when it looks like one: a letter, then letters, digits
//!   and `._-/`, at most [`MAX_BARE_TAG_LEN`] bytes (`master apache_error [Tue Jun 08 ...`).
//!   Without a hostname, a first word without a colon is part of the message.
//! * Cisco (IOS, IOS-XE, NX-OS, ASA/PIX): the mnemonic without `%` becomes `app`, on this path
//!   and as a plain TAG alike (`%ASA-6-302013` → `ASA-6-302013`: one name per device, so a
//!   topic template `logs.{app}` does not split it). With one number before the clock, it is
//!   `msgid`; with two (the syslog counter, then `service sequence-numbers`), the second. The
//!   counter may be empty (`<189>: Mar 12 ...`); HOST may come before the clock (`logging
//!   origin-id`) or after it (NX-OS, ASA `logging device-id`: `fw1 : %ASA-...`); the
//!   `*`/`.` clock-not-synchronised markers are dropped; a ZONE word `UTC`/`GMT`/`UT`/`Z`
//!   means UTC, any other zone name falls back to the configured zone (there is no zone
//!   database to resolve abbreviations reliably). A Cisco message behind a relay's BSD header
//!   (`<189>Mar 12 07:10:10 10.0.0.1 123: *Mar 12 ...: %SYS-5-...`) keeps the relay's
//!   timestamp and host, and takes app, msgid and message from the Cisco part.

use memchr::{memchr, memchr_iter};

use super::timestamp::{BsdTime, Offset, Timestamp, month_number, parse_bsd, parse_iso8601};
use super::{ParseContext, Record};

/// Longest tag (app name) recognised before its `[` or `:`.
pub const MAX_TAG_LEN: usize = 128;
/// Longest tag recognised without a colon (RFC 5424's APP-NAME limit).
pub const MAX_BARE_TAG_LEN: usize = 48;
/// Longest PID recognised between the tag's brackets.
pub const MAX_PID_LEN: usize = 128;
/// Longest hostname recognised (RFC 1035 / RFC 5424 limit).
pub const MAX_HOSTNAME_LEN: usize = 255;
/// How far into a message `%` is looked for to recognise the Cisco form; covers a syslog
/// counter, a long origin-id hostname, a sequence number, the clock with year, fraction and
/// zone, and a hostname after the clock.
const CISCO_WINDOW: usize = 192;

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
    // Dell, NEC and rsyslog's own tests send `<13> Aug 16 ...`. The blanks are skipped only
    // when a header follows them: otherwise `message` keeps the body as it came.
    header(skip_blanks(body), ctx, &mut record);
    record
}

/// Fills `record` from the header at the start of `rest`; `record.message` is the body.
/// (One `Record` filled in place rather than moved between helpers and copied for the relay
/// check: with the month `match` and the counter skip in `cisco`, that took 4.5% of the
/// instructions off `benches/parse`'s corpus under callgrind.)
fn header<'a>(mut rest: &'a [u8], ctx: &mut ParseContext, record: &mut Record<'a>) {
    if looks_like_cisco(rest) && cisco(rest, ctx, record) {
        return;
    }
    if let Some((timestamp, len)) = leading_timestamp(rest, ctx) {
        record.timestamp = Some(timestamp);
        rest = skip_spaces(&rest[len..]);
        let word = &rest[..memchr(b' ', rest).unwrap_or(rest.len())];
        if is_hostname(word) {
            record.host = Some(word);
            rest = rest.get(word.len() + 1..).unwrap_or_default();
            // A relay (rsyslog, syslog-ng) put its own header before a Cisco message: the
            // relay's timestamp and host stand, the Cisco part gives app, msgid and message.
            // Only a counter, an empty one or a clock marker can start it (a bare `%MNEMONIC:`
            // is a TAG below), so most lines skip the `%` scan.
            if rest
                .first()
                .is_some_and(|&b| b.is_ascii_digit() || b == b':' || b == b'*')
                && looks_like_cisco(rest)
                && cisco(rest, ctx, record)
            {
                record.timestamp = Some(timestamp);
                record.host = Some(word);
                return;
            }
            match tag(rest).or_else(|| bare_tag(rest)) {
                Some(tag) => with_tag(record, rest, tag),
                None => record.message = rest,
            }
            return;
        }
    } else if looks_like_timestamp(rest) {
        // Whatever a sender wrote there, it is not a host or an app name: keep it all.
        return;
    }
    if let Some(tag) = tag(rest) {
        with_tag(record, rest, tag);
    } else if record.timestamp.is_some() {
        record.message = rest;
    }
}

fn with_tag<'a>(record: &mut Record<'a>, rest: &'a [u8], tag: Tag<'a>) {
    record.app = Some(tag.app);
    record.procid = tag.procid;
    let rest = &rest[tag.len..];
    record.message = rest.strip_prefix(b" ").unwrap_or(rest);
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|&&b| b == b' ').count();
    &bytes[n..]
}

fn skip_blanks(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &bytes[n..]
}

/// A timestamp at the start of `rest` that is followed by a space, `: ` or the end; its
/// length, including the colon of `: `.
fn leading_timestamp(rest: &[u8], ctx: &mut ParseContext) -> Option<(Timestamp, usize)> {
    let (timestamp, len) = if rest.get(4) == Some(&b'-') {
        let (civil, offset, len) = parse_iso8601(rest, true)?;
        let offset = offset.unwrap_or_else(|| ctx.zone_offset(&civil));
        (civil.with_offset(offset), len)
    } else {
        let (bsd, len) = parse_bsd(rest)?;
        (ctx.resolve_bsd(bsd)?, len)
    };
    match (rest.get(len), rest.get(len + 1)) {
        (None | Some(b' '), _) => Some((timestamp, len)),
        (Some(b':'), None | Some(b' ')) => Some((timestamp, len + 1)),
        _ => None,
    }
}

/// Does `rest` start like a timestamp (`2026-`, `12:`, `2026 Mar`, `Mar 7`)? Such text is
/// never taken apart into host and app when it did not parse as one.
fn looks_like_timestamp(rest: &[u8]) -> bool {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match (digits, rest.get(digits)) {
        (4, Some(b'-' | b' ')) | (1..=2, Some(b':')) => true,
        (0, _) => {
            let rest = rest.strip_prefix(b"*").unwrap_or(rest);
            rest.len() >= 5
                && rest[3] == b' '
                && (rest[4] == b' ' || rest[4].is_ascii_digit())
                && month_number(&rest[..3]).is_some()
        }
        _ => false,
    }
}

fn is_hostname(word: &[u8]) -> bool {
    !word.is_empty()
        && word.len() <= MAX_HOSTNAME_LEN
        && (!word.ends_with(b":") || is_ipv6_address(word))
        && word.iter().all(|&b| (33..=126).contains(&b) && b != b'[')
}

/// `fd00::` ends with a colon and is still a hostname, not a tag. (An address can end with a
/// colon only in `::`, which keeps the parse off the path of ordinary tags.)
fn is_ipv6_address(word: &[u8]) -> bool {
    word.len() <= 45
        && word.ends_with(b"::")
        && std::str::from_utf8(word)
            .ok()
            .is_some_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

/// An RFC 3164 TAG: `app:` or `app[pid]:`.
struct Tag<'a> {
    app: &'a [u8],
    procid: Option<&'a [u8]>,
    /// Length including the colon.
    len: usize,
}

/// The TAG at the start of `rest`, if there is one. A Cisco mnemonic (`%ASA-6-302013:`)
/// loses its `%`, as on the Cisco path, so that one device's lines have one app name.
fn tag(rest: &[u8]) -> Option<Tag<'_>> {
    let window = &rest[..rest.len().min(MAX_TAG_LEN + 1)];
    let end = window
        .iter()
        .position(|&b| matches!(b, b':' | b'[' | b' '))?;
    if end == 0 {
        return None;
    }
    let app = &rest[..end];
    let app = mnemonic(app).unwrap_or(app);
    match rest[end] {
        // `12:30:00` is a clock, not a tag `12`.
        b':' if rest.get(end + 1).is_some_and(u8::is_ascii_digit) && end <= 2 => None,
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

/// A TAG without its colon, as rsyslog and syslog-ng take the first word after the hostname
/// (`apache_error [Tue Jun 08 ...]`): only a word that looks like one, a letter then letters,
/// digits and `._-/`, at most [`MAX_BARE_TAG_LEN`] bytes, followed by a space or the end.
fn bare_tag(rest: &[u8]) -> Option<Tag<'_>> {
    let end = memchr(b' ', rest).unwrap_or(rest.len());
    let word = &rest[..end];
    let looks_like_tag = word.len() <= MAX_BARE_TAG_LEN
        && word.first().is_some_and(u8::is_ascii_alphabetic)
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    looks_like_tag.then_some(Tag {
        app: word,
        procid: None,
        len: end,
    })
}

/// The Cisco mnemonic `FACILITY-SEVERITY-MNEMONIC` of a `%`-prefixed word, without the `%`.
fn mnemonic(word: &[u8]) -> Option<&[u8]> {
    let name = word.strip_prefix(b"%")?;
    (name.first().is_some_and(u8::is_ascii_alphabetic)
        && name.contains(&b'-')
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(name)
}

/// Cheap pre-check: Cisco messages have a `%` starting a word, followed by a capital letter,
/// near the start.
fn looks_like_cisco(body: &[u8]) -> bool {
    let window = &body[..body.len().min(CISCO_WINDOW)];
    memchr_iter(b'%', window).any(|at| {
        (at == 0 || window[at - 1] == b' ')
            && window.get(at + 1).is_some_and(u8::is_ascii_uppercase)
    })
}

/// Parses the Cisco form into `record`; false (and `record` untouched) if it is not one:
///
/// ```text
/// [COUNTER]: [HOST: ][SEQ: ][*|.]CLOCK[ ZONE]: %MNEMONIC: MSG     IOS, IOS-XE (origin-id, sequence-numbers)
/// [*|.]CLOCK[ ZONE] HOST[ :|:] %MNEMONIC: MSG                     NX-OS, ASA (device-id), hostname after the clock
/// %MNEMONIC: MSG                                                  ASA and IOS without timestamps
/// ```
fn cisco<'a>(body: &'a [u8], ctx: &mut ParseContext, record: &mut Record<'a>) -> bool {
    let mut rest = body;
    let mut numbers: [Option<&[u8]>; 2] = [None, None];
    let mut host = None;
    let mut clock = None;
    // At most a counter (maybe empty), a hostname and a sequence number before the clock.
    for round in 0..4 {
        if rest.first() == Some(&b'%') {
            break;
        }
        // A clock starts with a letter, a marker or a year (`2026 Mar`, `2026-03-`); the
        // counter and sequence number (`123: `) skip the attempt.
        let starts_number_word = rest.first().is_some_and(u8::is_ascii_digit)
            && !matches!(rest.get(4), Some(b' ' | b'-'));
        if !starts_number_word && let Some(found) = cisco_clock(rest) {
            clock = Some(found);
            rest = &rest[found.2..];
            break;
        }
        let Some(end) = memchr(b' ', rest) else {
            return false;
        };
        let Some(word) = rest[..end].strip_suffix(b":") else {
            return false;
        };
        if word.is_empty() {
            if round > 0 {
                return false;
            }
        } else if word.iter().all(u8::is_ascii_digit) {
            match numbers.iter_mut().find(|n| n.is_none()) {
                Some(slot) => *slot = Some(word),
                None => return false,
            }
        } else if host.is_none() && is_hostname(word) {
            host = Some(word);
        } else {
            return false;
        }
        rest = &rest[end + 1..];
    }
    if clock.is_some() && rest.first() != Some(&b'%') {
        // The hostname after the clock: `sw1 %X`, `sw1: %X`, `fw1 : %X` (ASA device-id).
        let Some(end) = memchr(b' ', rest) else {
            return false;
        };
        let word = &rest[..end];
        let word = word.strip_suffix(b":").unwrap_or(word);
        if host.is_some() || !is_hostname(word) {
            return false;
        }
        host = Some(word);
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(b": ").unwrap_or(rest);
    }
    let Some(after) = rest.strip_prefix(b"%") else {
        return false;
    };
    let Some(mnemonic_len) = memchr(b':', &after[..after.len().min(MAX_TAG_LEN + 1)]) else {
        return false;
    };
    let Some(mnemonic) = mnemonic(&rest[..=mnemonic_len]) else {
        return false;
    };
    let timestamp = match clock {
        None => None,
        Some((CiscoClock::Bsd(bsd), utc, _)) => {
            let Some(mut timestamp) = ctx.resolve_bsd(bsd) else {
                return false;
            };
            if utc {
                timestamp.offset = Offset::Z;
            }
            Some(timestamp)
        }
        Some((CiscoClock::Iso(timestamp), _, _)) => Some(timestamp),
    };
    // Two numbers: the syslog counter, then the device's own sequence number (`service
    // sequence-numbers`), which is the one worth keeping.
    let msgid = numbers[1].or(numbers[0]);
    let message = &after[mnemonic_len + 1..];
    record.timestamp = timestamp;
    record.host = host;
    record.app = Some(mnemonic);
    record.msgid = msgid;
    record.message = message.strip_prefix(b" ").unwrap_or(message);
    true
}

#[derive(Clone, Copy)]
enum CiscoClock {
    Bsd(BsdTime),
    Iso(Timestamp),
}

/// `[*|.]CLOCK[ ZONE]` followed by `: ` or a space: the clock, whether ZONE says UTC, and the
/// length including that separator. CLOCK is any [`parse_bsd`] form (the year first on
/// NX-OS) or ISO 8601 with its offset. ZONE is a capitalised word of up to six letters that
/// a colon follows (`UTC:`, `CET:`); `UTC`/`GMT`/`UT`/`Z` mean UTC, any other name falls back
/// to the configured zone (there is no zone database to resolve abbreviations reliably).
fn cisco_clock(rest: &[u8]) -> Option<(CiscoClock, bool, usize)> {
    let marker = usize::from(matches!(rest.first(), Some(b'*' | b'.')));
    let clock_text = &rest[marker..];
    let (clock, len) = if clock_text.get(4) == Some(&b'-') {
        let (civil, offset, len) = parse_iso8601(clock_text, false)?;
        (CiscoClock::Iso(civil.with_offset(offset?)), len)
    } else {
        let (bsd, len) = parse_bsd(clock_text)?;
        (CiscoClock::Bsd(bsd), len)
    };
    let at = marker + len;
    if rest.get(at..at + 2) == Some(b": ") {
        return Some((clock, false, at + 2));
    }
    if rest.get(at) != Some(&b' ') {
        return None;
    }
    let zone_len = rest[at + 1..]
        .iter()
        .take(7)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    if (1..=6).contains(&zone_len) && rest.get(at + 1 + zone_len..at + 3 + zone_len) == Some(b": ")
    {
        let zone = &rest[at + 1..at + 1 + zone_len];
        let utc = [&b"UTC"[..], b"GMT", b"UT", b"Z"].contains(&zone);
        return Some((clock, utc, at + 3 + zone_len));
    }
    Some((clock, false, at + 1))
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
                parse_warning: None,
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
        assert_eq!((t.civil.year, t.civil.month, t.civil.day), (2026, 12, 31));
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
        assert_eq!((t.civil.year, t.civil.month, t.civil.day), (2027, 1, 1));
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
    fn word_without_colon_after_host_is_the_tag_when_it_looks_like_one() {
        // Issue 14: rsyslog and syslog-ng take the first word after the hostname as the TAG.
        let r = parse_utc(b"<13>Nov 21 02:53:47 host some text [1]: x");
        assert_eq!((r.host, r.app), (Some(&b"host"[..]), Some(&b"some"[..])));
        assert_eq!(r.message, b"text [1]: x");
        let r = parse_utc(b"<13>Nov 21 02:53:47 host");
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"host"[..]), None, &b""[..])
        );
        let r = parse_utc(
            b"<131>Jun  8 11:54:08 master apache_error [Tue Jun 08 11:54:08 2026] [error] [client 10.0.0.5] File does not exist",
        );
        assert_eq!(
            (r.host, r.app, r.procid),
            (Some(&b"master"[..]), Some(&b"apache_error"[..]), None)
        );
        assert_eq!(
            r.message,
            b"[Tue Jun 08 11:54:08 2026] [error] [client 10.0.0.5] File does not exist"
        );
        // Not a tag: starts with a digit, has a comma, is longer than 48 bytes.
        for word in [
            &b"1,2026/03/12"[..],
            b"system,info,account",
            b"9lives",
            &[b'a'; 49],
        ] {
            let input = [&b"<13>Nov 21 02:53:47 host "[..], word, b" rest"].concat();
            let r = parse_utc(&input);
            assert_eq!((r.host, r.app), (Some(&b"host"[..]), None));
            assert_eq!(r.message, &input[25..]);
        }
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
                (r.host, r.app, r.procid),
                (Some(&b"h"[..]), None, None),
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
                parse_warning: None,
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
            r.timestamp
                .map(|t| (t.civil.year, t.civil.nanos, t.civil.fraction_digits)),
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

    // Issue 14, bugs: each garbled the whole record.

    #[test]
    fn blanks_between_pri_and_header_are_skipped() {
        let r = parse_utc(b"<13> Aug 16 12:25:24 sw-3 TRAPMGR[42]: link down");
        assert_eq!(
            r,
            Record {
                facility: Some(1),
                severity: Some(5),
                version: None,
                timestamp: Some(civil(2026, 8, 16, 12, 25, 24, 0, 0).with_offset(Offset::Z)),
                host: Some(b"sw-3"),
                app: Some(b"TRAPMGR"),
                procid: Some(b"42"),
                msgid: None,
                structured_data: None,
                message: b"link down",
                parse_error: None,
                parse_warning: None,
            }
        );
        let r = parse_utc(b"<13>\t Aug 16 12:25:24 sw-3 app: x");
        assert_eq!((r.host, r.app), (Some(&b"sw-3"[..]), Some(&b"app"[..])));
        // Without a header after them, the blanks stay in the message.
        let r = parse_utc(b"<13>  just text");
        assert_eq!(
            (r.timestamp, r.app, r.message),
            (None, None, &b"  just text"[..])
        );
    }

    #[test]
    fn iso_offsets_without_colon_hour_only_and_after_z_are_read() {
        for (text, offset) in [
            ("2026-03-04T05:06:07.123456-0700", -7 * 3600),
            ("2026-03-04T05:06:07.123456-07", -7 * 3600),
            ("2026-03-04T05:06:07.123456+0530", 5 * 3600 + 1800),
            ("2026-03-04T05:06:07.123456Z+01:00", 3600),
            ("2026-03-04T05:06:07.123456Z-0200", -7200),
        ] {
            let input = format!("<190>{text} core1 app: x");
            let r = parse_utc(input.as_bytes());
            let expected =
                civil(2026, 3, 4, 5, 6, 7, 123_456_000, 6).with_offset(Offset::Seconds(offset));
            assert_eq!(r.timestamp, Some(expected), "{text}");
            assert_eq!(
                (r.host, r.app, r.message),
                (Some(&b"core1"[..]), Some(&b"app"[..]), &b"x"[..]),
                "{text}"
            );
        }
    }

    #[test]
    fn more_than_nine_fraction_digits_are_cut_to_nine() {
        let r = parse_utc(b"<190>2026-03-04T05:06:07.1234567899Z core1 app: x");
        let expected = civil(2026, 3, 4, 5, 6, 7, 123_456_789, 9).with_offset(Offset::Z);
        assert_eq!(r.timestamp, Some(expected));
        // Cut, not rounded: .9999999999 stays in the same second.
        let r = parse_utc(b"<190>2026-03-04T23:59:59.9999999999Z core1 app: x");
        let expected = civil(2026, 3, 4, 23, 59, 59, 999_999_999, 9).with_offset(Offset::Z);
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!((r.host, r.app), (Some(&b"core1"[..]), Some(&b"app"[..])));
    }

    #[test]
    fn unreadable_timestamp_is_never_split_into_host_and_app() {
        for input in [
            &b"<190>2026-03-04T05:06:07.123456-07:0 core1 app: x"[..],
            b"<190>2026-03-04T05:06:07.123456-0700x core1 app: x",
            b"<190>2026-03-04T25:06:07Z core1 app: x",
            b"<190>2026-02-30T05:06:07Z core1 app: x",
            b"<190>2026-03-04T05:06 core1 app: x",
            b"<190>05:06:07 core1 app: x",
            b"<190>Mar  4 05:06 core1 app: x",
            b"<190>Mar 4 25:06:07 core1 app: x",
            b"<190>2026 Mar  4 05:06:7 core1 app: x",
        ] {
            let r = parse_utc(input);
            assert_eq!(
                (r.timestamp, r.host, r.app, r.procid),
                (None, None, None, None),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(r.message, &input[5..]);
        }
    }

    #[test]
    fn ipv6_hostname_ending_in_double_colon_is_a_host() {
        let r = parse_utc(b"<13>Feb 25 17:32:18 fd00:: sshd: x");
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"fd00::"[..]), Some(&b"sshd"[..]), &b"x"[..])
        );
        let r = parse_utc(b"<13>Feb 25 17:32:18 2001:db8:: sshd[7]: x");
        assert_eq!(
            (r.host, r.app, r.procid),
            (
                Some(&b"2001:db8::"[..]),
                Some(&b"sshd"[..]),
                Some(&b"7"[..])
            )
        );
        // A tag stays a tag.
        let r = parse_utc(b"<13>Feb 25 17:32:18 dead: x");
        assert_eq!((r.host, r.app), (None, Some(&b"dead"[..])));
    }

    #[test]
    fn cisco_counter_then_sequence_number_keeps_the_sequence() {
        let r = parse_utc(
            b"<189>52: 000048: *Nov 21 02:53:47.855: %SYS-5-CONFIG_I: Configured from console by vty0",
        );
        assert_eq!(
            r,
            Record {
                facility: Some(23),
                severity: Some(5),
                version: None,
                timestamp: Some(
                    civil(2026, 11, 21, 2, 53, 47, 855_000_000, 3).with_offset(Offset::Z)
                ),
                host: None,
                app: Some(b"SYS-5-CONFIG_I"),
                procid: None,
                msgid: Some(b"000048"),
                structured_data: None,
                message: b"Configured from console by vty0",
                parse_error: None,
                parse_warning: None,
            }
        );
        let r = parse_utc(b"<189>52: core-sw1: 000048: Nov 21 02:53:47 UTC: %SYS-5-X: m");
        assert_eq!(
            (r.host, r.msgid, r.app, r.message),
            (
                Some(&b"core-sw1"[..]),
                Some(&b"000048"[..]),
                Some(&b"SYS-5-X"[..]),
                &b"m"[..]
            )
        );
    }

    #[test]
    fn cisco_mnemonic_is_named_alike_on_both_paths() {
        let inputs: [&[u8]; 5] = [
            b"<166>Nov 21 2026 02:53:47: %PIX-6-302014: Teardown TCP connection",
            b"<166>%PIX-6-302014: Teardown TCP connection",
            b"<166>Nov 21 2026 02:53:47 fw1 : %PIX-6-302014: Teardown TCP connection",
            b"<166>Nov 21 2026 02:53:47 fw1 %PIX-6-302014: Teardown TCP connection",
            b"<166>Nov 21 02:53:47 fw1 %PIX-6-302014: Teardown TCP connection",
        ];
        for input in inputs {
            let r = parse_utc(input);
            assert_eq!(
                (r.app, r.message),
                (Some(&b"PIX-6-302014"[..]), &b"Teardown TCP connection"[..]),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        // The plain-TAG path strips it too (here a PID makes it a plain TAG).
        let r = parse_utc(b"<167>Nov 21 02:53:47 fw1 %PIX-7-710005[1]: UDP request discarded");
        assert_eq!(
            (r.app, r.procid),
            (Some(&b"PIX-7-710005"[..]), Some(&b"1"[..]))
        );
        let r = parse_utc(b"<13>Nov 21 02:53:47 h %90: x");
        assert_eq!(r.app, Some(&b"%90"[..]));
    }

    // Issue 14, gaps.

    #[test]
    fn cisco_empty_counter() {
        let r = parse_utc(b"<189>: Nov 21 02:53:47: %SYS-5-CONFIG_I: Configured from console");
        assert_eq!(r.timestamp, nov21(Offset::Z));
        assert_eq!(
            (r.host, r.msgid, r.app, r.message),
            (
                None,
                None,
                Some(&b"SYS-5-CONFIG_I"[..]),
                &b"Configured from console"[..]
            )
        );
    }

    #[test]
    fn nx_os_year_first_clock_with_zone() {
        let r = parse_at(
            b"<189>: 2026 Mar  6 12:53:10 UTC: %POLICY-6-POLICY_APPLIED: policy applied",
            NOV_21_2026_US,
            LegacyZone::Fixed(3600),
        );
        let expected = civil(2026, 3, 6, 12, 53, 10, 0, 0).with_offset(Offset::Z);
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!(
            (r.host, r.app, r.message),
            (
                None,
                Some(&b"POLICY-6-POLICY_APPLIED"[..]),
                &b"policy applied"[..]
            )
        );
        let r = parse_utc(
            b"<187>2026 Mar  6 12:53:10 nx-sw1 %ETHPORT-5-IF_DOWN_LINK_FAILURE: Interface Ethernet1/1 is down",
        );
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!(
            (r.host, r.app),
            (
                Some(&b"nx-sw1"[..]),
                Some(&b"ETHPORT-5-IF_DOWN_LINK_FAILURE"[..])
            )
        );
        assert_eq!(r.message, b"Interface Ethernet1/1 is down");
    }

    #[test]
    fn cisco_hostname_after_the_clock() {
        let r = parse_utc(b"<189>12: *Nov 21 02:53:47.001: rtr-1: %LINK-3-UPDOWN: up");
        assert_eq!(
            (r.host, r.msgid, r.app, r.message),
            (
                Some(&b"rtr-1"[..]),
                Some(&b"12"[..]),
                Some(&b"LINK-3-UPDOWN"[..]),
                &b"up"[..]
            )
        );
        let t = r.timestamp.unwrap();
        assert_eq!(
            (t.civil.day, t.civil.nanos, t.civil.fraction_digits),
            (21, 1_000_000, 3)
        );
    }

    #[test]
    fn cisco_behind_a_relay_header() {
        let r = parse_utc(
            b"<189>Nov 21 02:53:47 10.0.0.1 123: 000456: *Nov 21 02:53:40.123: %SYS-5-CONFIG_I: Configured",
        );
        assert_eq!(r.timestamp, nov21(Offset::Z));
        assert_eq!(
            (r.host, r.msgid, r.app, r.message),
            (
                Some(&b"10.0.0.1"[..]),
                Some(&b"000456"[..]),
                Some(&b"SYS-5-CONFIG_I"[..]),
                &b"Configured"[..]
            )
        );
    }

    #[test]
    fn iso_date_with_a_space_instead_of_t() {
        let r = parse_utc(b"<14>2026-06-19 02:13:38 fw-2 filterlog[5210]: 5,,,1000000103,igb0");
        let expected = civil(2026, 6, 19, 2, 13, 38, 0, 0).with_offset(Offset::Z);
        assert_eq!(r.timestamp, Some(expected));
        assert_eq!(
            (r.host, r.app, r.procid, r.message),
            (
                Some(&b"fw-2"[..]),
                Some(&b"filterlog"[..]),
                Some(&b"5210"[..]),
                &b"5,,,1000000103,igb0"[..]
            )
        );
    }

    #[test]
    fn colon_after_the_time_and_year_before_or_after_it() {
        let expected = Some(civil(2026, 3, 7, 19, 6, 53, 0, 0).with_offset(Offset::Z));
        for input in [
            &b"<13>Mar  7 2026 19:06:53: tag: hello"[..],
            b"<13>Mar  7 19:06:53 2026: tag: hello",
        ] {
            let r = parse_utc(input);
            assert_eq!(r.timestamp, expected, "{}", String::from_utf8_lossy(input));
            assert_eq!(
                (r.host, r.app, r.message),
                (None, Some(&b"tag"[..]), &b"hello"[..])
            );
        }
        // Without the colon, only a plausible year is one (ArubaOS); other numbers are hosts.
        let r = parse_utc(b"<143>Mar  7 19:06:53 2026 aruba-mc1 authmgr[3429]: <522008> x");
        assert_eq!(r.timestamp, expected);
        assert_eq!(
            (r.host, r.app, r.procid, r.message),
            (
                Some(&b"aruba-mc1"[..]),
                Some(&b"authmgr"[..]),
                Some(&b"3429"[..]),
                &b"<522008> x"[..]
            )
        );
        let r = parse_utc(b"<13>Mar  7 19:06:53 2100 tag: hello");
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"2100"[..]), Some(&b"tag"[..]), &b"hello"[..])
        );
        let r = parse_utc(b"<13>Mar  7 19:06:53: host app: x");
        assert_eq!(
            (r.host, r.app, r.message),
            (Some(&b"host"[..]), Some(&b"app"[..]), &b"x"[..])
        );
    }
}
