//! RFC 5424 messages:
//!
//! ```text
//! <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]
//! ```
//!
//! Every header field may be the NILVALUE `-` (→ `None`). The header up to MSGID is all or
//! nothing: a malformed header is an error and [`parse`](super::parse) then keeps the whole
//! input as the message. STRUCTURED-DATA that cannot be read (even with the leniency of
//! [`structured_data`]), or that a space does not follow, costs no header field: unless
//! RFC 5424 was forced, the record keeps the header, `structured_data` is absent, `message`
//! starts at the section's first byte, and `parse_warning` says so. VERSION is any number
//! 1–999 (the record keeps it); blanks between the PRI and VERSION are skipped. MSG is everything after the space that follows STRUCTURED-DATA, minus a leading
//! UTF-8 BOM; it is not trimmed (framing has already removed the frame terminator).
//!
//! Strict mode (the format forced to RFC 5424) applies the RFC's character set (PRINTUSASCII)
//! and length limits to the header fields ([`MAX_HOSTNAME_LEN`] and friends) and SD-NAMEs. In
//! auto-detect mode a header field is any non-empty run of bytes other than SP, of any length,
//! so that a sender with a long hostname still gets its fields, and TIMESTAMP may be any
//! ISO 8601 form that [`parse_iso8601`] reads leniently (`-0700`, more than nine fraction
//! digits, cut to nine); the structure (spaces, the timestamp) is checked in both modes.

use memchr::memchr;

use super::structured_data::{self, StructuredData};
use super::timestamp::{Timestamp, parse_iso8601};
use super::{ParseError, ParseWarning, Record};

/// Longest HOSTNAME RFC 5424 allows.
pub const MAX_HOSTNAME_LEN: usize = 255;
/// Longest APP-NAME RFC 5424 allows.
pub const MAX_APP_NAME_LEN: usize = 48;
/// Longest PROCID RFC 5424 allows.
pub const MAX_PROCID_LEN: usize = 128;
/// Longest MSGID RFC 5424 allows.
pub const MAX_MSGID_LEN: usize = 32;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses the part of `input` after the PRI (which ends at `body_start`).
pub(crate) fn parse(
    input: &[u8],
    body_start: usize,
    pri: u8,
    strict: bool,
) -> Result<Record<'_>, ParseError> {
    let mut rest = input.get(body_start..).unwrap_or_default();
    let blanks = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    rest = &rest[blanks..];
    let version = version(next_token(&mut rest)?)?;
    let timestamp = timestamp(next_token(&mut rest)?, strict)?;
    let mut field = |max_len, too_long| header_field(&mut rest, max_len, too_long, strict);
    let host = field(MAX_HOSTNAME_LEN, ParseError::HostnameTooLong)?;
    let app = field(MAX_APP_NAME_LEN, ParseError::AppNameTooLong)?;
    let procid = field(MAX_PROCID_LEN, ParseError::ProcIdTooLong)?;
    let msgid = field(MAX_MSGID_LEN, ParseError::MsgIdTooLong)?;
    let (structured_data, message, parse_warning) = match structured_data_and_message(rest, strict)
    {
        Ok((structured_data, message)) => (structured_data, message, None),
        Err(error) if strict => return Err(error),
        // The header was fine: keep it, and the section the sender garbled (or left out) as
        // the start of the message, flagged, rather than lose every field.
        Err(_) => (None, rest, Some(ParseWarning::StructuredDataInMessage)),
    };
    Ok(Record {
        version: Some(version),
        timestamp,
        host,
        app,
        procid,
        msgid,
        structured_data,
        parse_warning,
        ..Record::bare(Some(pri), message)
    })
}

/// STRUCTURED-DATA (`None` for the NILVALUE) and MSG, from `rest` after MSGID's space.
fn structured_data_and_message(
    rest: &[u8],
    strict: bool,
) -> Result<(Option<StructuredData<'_>>, &[u8]), ParseError> {
    let (sd, len) = match rest.first() {
        Some(b'-') => (None, 1),
        Some(b'[') => {
            let (sd, len) = structured_data::parse(rest, strict)?;
            (Some(sd), len)
        }
        _ => return Err(ParseError::InvalidStructuredData),
    };
    match &rest[len..] {
        [] => Ok((sd, &[][..])),
        [b' ', msg @ ..] => Ok((sd, msg.strip_prefix(BOM).unwrap_or(msg))),
        _ => Err(ParseError::InvalidStructuredData),
    }
}

/// Takes the bytes up to the next SP and consumes that SP.
fn next_token<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], ParseError> {
    let input = *rest;
    let end = memchr(b' ', input).ok_or(ParseError::TruncatedHeader)?;
    *rest = &input[end + 1..];
    Ok(&input[..end])
}

fn version(token: &[u8]) -> Result<u16, ParseError> {
    match token {
        [b'1'..=b'9', tail @ ..] if tail.len() <= 2 && tail.iter().all(u8::is_ascii_digit) => {
            Ok(token.iter().fold(0, |v, b| v * 10 + u16::from(b - b'0')))
        }
        _ => Err(ParseError::InvalidVersion),
    }
}

/// RFC 3339 with an offset; unless `strict`, also the ISO 8601 variants that
/// [`parse_iso8601`] reads leniently (`-0700`, `-07`, `Z+01:00`, over nine fraction digits).
fn timestamp(token: &[u8], strict: bool) -> Result<Option<Timestamp>, ParseError> {
    if token == b"-" {
        return Ok(None);
    }
    match parse_iso8601(token, !strict) {
        Some((civil, Some(offset), len)) if len == token.len() => {
            Ok(Some(civil.with_offset(offset)))
        }
        _ => Err(ParseError::InvalidTimestamp),
    }
}

fn header_field<'a>(
    rest: &mut &'a [u8],
    max_len: usize,
    too_long: ParseError,
    strict: bool,
) -> Result<Option<&'a [u8]>, ParseError> {
    let token = next_token(rest)?;
    if token.is_empty() {
        return Err(ParseError::InvalidHeaderField);
    }
    if token == b"-" {
        return Ok(None);
    }
    if strict {
        if token.len() > max_len {
            return Err(too_long);
        }
        if !token.iter().all(|b| (33..=126).contains(b)) {
            return Err(ParseError::InvalidHeaderField);
        }
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::timestamp::{Offset, parse_rfc3339};
    use crate::parse::{Format, LegacyZone, ParseContext, parse as parse_any};

    fn parse_with(input: &[u8], format: Format) -> Record<'_> {
        let mut ctx = ParseContext::new(0, LegacyZone::Fixed(0));
        parse_any(input, format, &mut ctx)
    }

    fn ts(text: &str) -> Timestamp {
        let (civil, offset, _) = parse_rfc3339(text.as_bytes()).unwrap();
        civil.with_offset(offset.unwrap())
    }

    type Elements<'a> = Vec<(&'a [u8], Vec<(&'a [u8], &'a [u8])>)>;

    fn elements<'a>(record: &Record<'a>) -> Elements<'a> {
        let sd = record.structured_data.expect("has structured data");
        sd.elements()
            .map(|e| (e.id(), e.params().collect()))
            .collect()
    }

    /// RFC 5424 §6.5, example 1 (BOM written out as bytes).
    #[test]
    fn rfc_example_1_no_structured_data() {
        let input = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
        let r = parse_with(input, Format::Rfc5424);
        assert_eq!(
            r,
            Record {
                facility: Some(4),
                severity: Some(2),
                version: Some(1),
                timestamp: Some(ts("2003-10-11T22:14:15.003Z")),
                host: Some(b"mymachine.example.com"),
                app: Some(b"su"),
                procid: None,
                msgid: Some(b"ID47"),
                structured_data: None,
                message: b"'su root' failed for lonvick on /dev/pts/8",
                parse_error: None,
                parse_warning: None,
            }
        );
        assert_eq!(parse_with(input, Format::Auto), r);
    }

    /// RFC 5424 §6.5, example 2.
    #[test]
    fn rfc_example_2_offset_and_microseconds() {
        let input = b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.";
        let r = parse_with(input, Format::Rfc5424);
        assert_eq!(
            (r.facility, r.severity, r.version),
            (Some(20), Some(5), Some(1))
        );
        let t = r.timestamp.unwrap();
        assert_eq!((t.civil.nanos, t.civil.fraction_digits), (3_000, 6));
        assert_eq!(t.offset, Offset::Seconds(-25_200));
        assert_eq!(r.host, Some(&b"192.0.2.1"[..]));
        assert_eq!(r.app, Some(&b"myproc"[..]));
        assert_eq!(r.procid, Some(&b"8710"[..]));
        assert_eq!((r.msgid, r.structured_data), (None, None));
        assert_eq!(r.message, b"%% It's time to make the do-nuts.");
        assert_eq!(r.parse_error, None);
    }

    /// RFC 5424 §6.5, example 3.
    #[test]
    fn rfc_example_3_structured_data_and_message() {
        let input = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...";
        let r = parse_with(input, Format::Rfc5424);
        assert_eq!(r.parse_error, None);
        assert_eq!(r.app, Some(&b"evntslog"[..]));
        assert_eq!(r.msgid, Some(&b"ID47"[..]));
        let expected: Elements = vec![(
            b"exampleSDID@32473",
            vec![
                (b"iut", b"3"),
                (b"eventSource", b"Application"),
                (b"eventID", b"1011"),
            ],
        )];
        assert_eq!(elements(&r), expected);
        assert_eq!(r.message, b"An application event log entry...");
    }

    /// RFC 5424 §6.5, example 4: two elements, no MSG.
    #[test]
    fn rfc_example_4_two_elements_without_message() {
        let input = br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#;
        let r = parse_with(input, Format::Rfc5424);
        assert_eq!(r.parse_error, None);
        let expected: Elements = vec![
            (
                b"exampleSDID@32473",
                vec![
                    (b"iut", b"3"),
                    (b"eventSource", b"Application"),
                    (b"eventID", b"1011"),
                ],
            ),
            (b"examplePriority@32473", vec![(b"class", b"high")]),
        ];
        assert_eq!(elements(&r), expected);
        assert_eq!(r.message, b"");
    }

    #[test]
    fn all_nilvalues() {
        let r = parse_with(b"<0>1 - - - - - -", Format::Rfc5424);
        assert_eq!(
            r,
            Record {
                version: Some(1),
                ..Record::bare(Some(0), b"")
            }
        );
    }

    #[test]
    fn escaped_sd_values_are_kept_escaped_in_the_view() {
        let input = br#"<13>1 - h a p m [x@1 path="C:\\dir\]" q="say \"hi\""] msg"#;
        let r = parse_with(input, Format::Auto);
        let expected: Elements = vec![(
            b"x@1",
            vec![(b"path", br"C:\\dir\]"), (b"q", br#"say \"hi\""#)],
        )];
        assert_eq!(elements(&r), expected);
        assert_eq!(r.message, b"msg");
    }

    #[test]
    fn nine_fraction_digits_are_kept() {
        let r = parse_with(
            b"<13>1 2026-11-21T02:53:47.123456789+01:00 h - - - - m",
            Format::Rfc5424,
        );
        let t = r.timestamp.unwrap();
        assert_eq!((t.civil.nanos, t.civil.fraction_digits), (123_456_789, 9));
    }

    #[test]
    fn only_the_leading_bom_is_stripped_and_space_preserved() {
        let r = parse_with(b"<13>1 - - - - - -  \xEF\xBB\xBFx", Format::Auto);
        assert_eq!(r.message, b" \xEF\xBB\xBFx");
        let r = parse_with(b"<13>1 - - - - - - \xEF\xBB\xBF\xEF\xBB\xBFx", Format::Auto);
        assert_eq!(r.message, b"\xEF\xBB\xBFx");
    }

    #[test]
    fn length_limits_apply_only_when_forced() {
        let cases = [
            (
                format!("<13>1 - {} - - - -", "h".repeat(256)),
                ParseError::HostnameTooLong,
            ),
            (
                format!("<13>1 - - {} - - -", "a".repeat(49)),
                ParseError::AppNameTooLong,
            ),
            (
                format!("<13>1 - - - {} - -", "p".repeat(129)),
                ParseError::ProcIdTooLong,
            ),
            (
                format!("<13>1 - - - - {} -", "m".repeat(33)),
                ParseError::MsgIdTooLong,
            ),
            (
                format!("<13>1 - - - - - [{}]", "s".repeat(33)),
                ParseError::SdNameTooLong,
            ),
        ];
        for (input, error) in cases {
            let forced = parse_with(input.as_bytes(), Format::Rfc5424);
            assert_eq!(forced.parse_error, Some(error), "{input}");
            assert_eq!(forced.message, input.as_bytes());
            assert_eq!((forced.facility, forced.severity), (Some(1), Some(5)));
            let auto = parse_with(input.as_bytes(), Format::Auto);
            assert_eq!(auto.parse_error, None, "{input}");
        }
        let at_limit = format!("<13>1 - {} - - - -", "h".repeat(255));
        assert_eq!(
            parse_with(at_limit.as_bytes(), Format::Rfc5424).parse_error,
            None
        );
    }

    #[test]
    fn malformed_headers_keep_whole_input_and_pri() {
        let cases: [(&[u8], ParseError); 5] = [
            (b"<13>1 ", ParseError::TruncatedHeader),
            (b"<13>1 - host app", ParseError::TruncatedHeader),
            (
                b"<13>1 2026-11-21 h a p m - x",
                ParseError::InvalidTimestamp,
            ),
            (
                b"<13>1 2026-11-21T02:53:47 h a p m - x",
                ParseError::InvalidTimestamp,
            ),
            (b"<13>1 - h  a p m - x", ParseError::InvalidHeaderField),
        ];
        for (input, error) in cases {
            let r = parse_with(input, Format::Auto);
            assert_eq!(
                r.parse_error,
                Some(error),
                "{}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(r.message, input);
            assert_eq!((r.facility, r.severity), (Some(1), Some(5)));
            assert_eq!((r.version, r.host, r.timestamp), (None, None, None));
        }
    }

    #[test]
    fn forced_format_checks_version_and_printable_fields() {
        let r = parse_with(b"<13>01 - - - - - -", Format::Rfc5424);
        assert_eq!(r.parse_error, Some(ParseError::InvalidVersion));
        let r = parse_with(b"<13>2 - - - - - - m", Format::Rfc5424);
        assert_eq!((r.version, r.parse_error), (Some(2), None));
        let r = parse_with(b"<13>1 - h\x01st - - - -", Format::Rfc5424);
        assert_eq!(r.parse_error, Some(ParseError::InvalidHeaderField));
        let r = parse_with(b"<13>1 - h\x01st - - - -", Format::Auto);
        assert_eq!((r.parse_error, r.host), (None, Some(&b"h\x01st"[..])));
        let r = parse_with(b"Nov 21 02:53:47 h t: m", Format::Rfc5424);
        assert_eq!(r.parse_error, Some(ParseError::MissingPri));
    }

    /// Issue 14: a garbled STRUCTURED-DATA section costs no header field (these were whole-
    /// message errors before); forced RFC 5424 still refuses them.
    #[test]
    fn unreadable_structured_data_keeps_header_and_sd_text_in_message() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"<13>1 - h a p m x", b"x"),
            (b"<13>1 - h a p m -x", b"-x"),
            (b"<13>1 - h a p m [a x=\"1\"]x", b"[a x=\"1\"]x"),
            (b"<13>1 - h a p m [a x=\"1]", b"[a x=\"1]"),
            (b"<13>1 - h a p m [a x=1\"2\"] m", b"[a x=1\"2\"] m"),
        ];
        for (input, message) in cases {
            let r = parse_with(input, Format::Auto);
            let text = String::from_utf8_lossy(input);
            assert_eq!(
                (r.parse_error, r.parse_warning),
                (None, Some(ParseWarning::StructuredDataInMessage)),
                "{text}"
            );
            assert_eq!(r.message, message, "{text}");
            assert_eq!(
                (r.version, r.host, r.app, r.procid, r.msgid),
                (
                    Some(1),
                    Some(&b"h"[..]),
                    Some(&b"a"[..]),
                    Some(&b"p"[..]),
                    Some(&b"m"[..])
                ),
                "{text}"
            );
            assert_eq!(r.structured_data, None);
            let forced = parse_with(input, Format::Rfc5424);
            assert_eq!(
                forced.parse_error,
                Some(ParseError::InvalidStructuredData),
                "{text}"
            );
            assert_eq!(forced.message, input);
        }
    }

    #[test]
    fn vmware_esxi_unquoted_sd_values_are_read() {
        let input = b"<166>1 2026-03-12T07:10:10.123Z esx01.example.com Hostd 2099700 - [Originator@6876 sub=Vimsvc.ha-eventmgr opID=abc-1 user=root] Event 123 : User root logged in";
        let r = parse_with(input, Format::Auto);
        assert_eq!(
            (r.host, r.app, r.procid, r.msgid),
            (
                Some(&b"esx01.example.com"[..]),
                Some(&b"Hostd"[..]),
                Some(&b"2099700"[..]),
                None
            )
        );
        assert_eq!(r.parse_warning, None);
        assert_eq!(r.message, b"Event 123 : User root logged in");
        let expected: Elements = vec![(
            b"Originator@6876",
            vec![
                (b"sub", b"Vimsvc.ha-eventmgr"),
                (b"opID", b"abc-1"),
                (b"user", b"root"),
            ],
        )];
        assert_eq!(elements(&r), expected);
        // A space after `=` before a quoted value.
        let r = parse_with(b"<13>1 - h a - - [x@1 k= \"v w\"] m", Format::Auto);
        let expected: Elements = vec![(b"x@1", vec![(b"k", b"v w")])];
        assert_eq!((elements(&r), r.message), (expected, &b"m"[..]));
        assert_eq!(
            parse_with(input, Format::Rfc5424).parse_error,
            Some(ParseError::InvalidStructuredData)
        );
    }

    #[test]
    fn lenient_iso_offsets_in_auto_mode_only() {
        let input = b"<13>1 2026-03-04T05:06:07.123-0700 h a - - - m";
        let r = parse_with(input, Format::Auto);
        assert_eq!(
            r.timestamp.map(|t| (t.offset, t.civil.nanos)),
            Some((Offset::Seconds(-25_200), 123_000_000))
        );
        assert_eq!(
            parse_with(input, Format::Rfc5424).parse_error,
            Some(ParseError::InvalidTimestamp)
        );
    }
}
