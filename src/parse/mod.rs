//! Syslog parsing: one frame's bytes in, a zero-copy [`Record`] view out.
//!
//! ```
//! use logtail::parse::{parse, Format, LegacyZone, ParseContext};
//!
//! let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0));
//! let record = parse(b"<34>Nov 21 02:53:47 web-1 sshd[42]: hi", Format::Auto, &mut ctx);
//! assert_eq!(record.host, Some(&b"web-1"[..]));
//! assert_eq!((record.app, record.procid), (Some(&b"sshd"[..]), Some(&b"42"[..])));
//! assert_eq!(record.message, b"hi");
//! ```
//!
//! # Invariants
//! * [`parse`] never panics and never allocates, whatever the bytes (NUL, non-UTF-8, truncated).
//! * Every text field of a [`Record`] borrows from the input; nothing is unescaped or copied
//!   (STRUCTURED-DATA values are unescaped by the encoder, see [`structured_data::unescape`]).
//! * No byte is lost: when `parse_error` is set, `message` is the whole input; otherwise
//!   `message` is the suffix of the input after the recognised header (minus an RFC 5424 BOM
//!   and the one separating space). It can be empty only when the header ended the input.
//! * Facility and severity are set whenever the PRI was valid (or absent, see below), even if
//!   the rest of the header was not.
//!
//! # Choosing the parser
//! [`Format::Auto`] decides per message: a valid PRI followed by `1 ` (RFC 5424 VERSION) is
//! RFC 5424, and a malformed RFC 5424 header is then an error rather than a second guess;
//! everything else goes to the lenient RFC 3164 parser, which never fails. A message without
//! a PRI gets facility 1 (user) and severity 5 (notice), as RFC 3164 §4.3.3 and rsyslog do; a
//! message that starts with `<` but has no valid PRI (`<abc>`, `<192>`, `<1234>`, no `>`) is
//! an error. Forcing [`Format::Rfc5424`] also enforces the RFC's character set and length
//! limits and requires a PRI; forcing [`Format::Rfc3164`] parses `<13>1 ...` as BSD.
//! The PRI accepts leading zeros (`<013>`), as rsyslog does.
//!
//! Frame terminators (`\n`, `\r\n`, NUL) are the framing layer's job: nothing is trimmed here.

pub mod context;
pub mod rfc3164;
pub mod rfc5424;
pub mod structured_data;
pub mod timestamp;

use std::fmt;

pub use crate::source::{Format, UnknownFormat};
pub use context::{InvalidZone, LegacyZone, ParseContext};
pub use structured_data::StructuredData;
pub use timestamp::{CivilTime, Offset, Timestamp};

/// Why a message could not be parsed. The record then carries the whole input as `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The input was empty.
    Empty,
    /// It starts with `<` but not with `<0>`..`<191>`.
    InvalidPri,
    /// RFC 5424 was forced and there is no PRI.
    MissingPri,
    /// RFC 5424 VERSION is not 1–999 without leading zero.
    InvalidVersion,
    /// RFC 5424 TIMESTAMP is neither `-` nor a valid RFC 3339 timestamp with offset.
    InvalidTimestamp,
    /// The RFC 5424 header ends before STRUCTURED-DATA.
    TruncatedHeader,
    /// An RFC 5424 header field is empty (two spaces), or (forced) not PRINTUSASCII.
    InvalidHeaderField,
    /// HOSTNAME longer than 255 bytes (RFC 5424 forced).
    HostnameTooLong,
    /// APP-NAME longer than 48 bytes (RFC 5424 forced).
    AppNameTooLong,
    /// PROCID longer than 128 bytes (RFC 5424 forced).
    ProcIdTooLong,
    /// MSGID longer than 32 bytes (RFC 5424 forced).
    MsgIdTooLong,
    /// STRUCTURED-DATA is malformed, or not followed by a space or the end.
    InvalidStructuredData,
    /// An SD-ID or PARAM-NAME longer than 32 bytes (RFC 5424 forced).
    SdNameTooLong,
}

impl ParseError {
    /// A short reason, as written in the `parse_error` field of encoded records.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::Empty => "empty message",
            ParseError::InvalidPri => "invalid PRI",
            ParseError::MissingPri => "missing PRI",
            ParseError::InvalidVersion => "invalid VERSION",
            ParseError::InvalidTimestamp => "invalid TIMESTAMP",
            ParseError::TruncatedHeader => "truncated header",
            ParseError::InvalidHeaderField => "invalid header field",
            ParseError::HostnameTooLong => "HOSTNAME longer than 255 bytes",
            ParseError::AppNameTooLong => "APP-NAME longer than 48 bytes",
            ParseError::ProcIdTooLong => "PROCID longer than 128 bytes",
            ParseError::MsgIdTooLong => "MSGID longer than 32 bytes",
            ParseError::InvalidStructuredData => "invalid STRUCTURED-DATA",
            ParseError::SdNameTooLong => "SD-NAME longer than 32 bytes",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ParseError {}

/// What was odd about a message that still parsed: its header fields are set, and the part
/// that could not be read is kept in `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseWarning {
    /// RFC 5424 STRUCTURED-DATA that could not be read even leniently, or that a space does
    /// not follow: it starts `message`, and `structured_data` is absent.
    StructuredDataInMessage,
}

impl ParseWarning {
    /// A short reason, as written in the `parse_warning` field of encoded records.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseWarning::StructuredDataInMessage => "unreadable STRUCTURED-DATA kept in message",
        }
    }
}

impl fmt::Display for ParseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Zero-copy view of one syslog message: every text field borrows from the input slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Facility 0–23, from the PRI (1 when the message had no PRI).
    pub facility: Option<u8>,
    /// Severity 0–7, from the PRI (5 when the message had no PRI).
    pub severity: Option<u8>,
    /// RFC 5424 VERSION; `None` for RFC 3164.
    pub version: Option<u16>,
    /// The sender's timestamp, with its precision and offset.
    pub timestamp: Option<Timestamp>,
    /// HOSTNAME.
    pub host: Option<&'a [u8]>,
    /// APP-NAME, the RFC 3164 tag, or the Cisco mnemonic without `%`.
    pub app: Option<&'a [u8]>,
    /// PROCID, or the RFC 3164 `[pid]`.
    pub procid: Option<&'a [u8]>,
    /// MSGID, or the Cisco sequence number.
    pub msgid: Option<&'a [u8]>,
    /// The validated STRUCTURED-DATA section (RFC 5424, not the NILVALUE).
    pub structured_data: Option<StructuredData<'a>>,
    /// MSG (UTF-8 BOM stripped); for an unparseable message, the whole input.
    pub message: &'a [u8],
    /// Set when the message could not be parsed.
    pub parse_error: Option<ParseError>,
    /// Set when the message parsed but part of what should have been header stayed in
    /// `message` (see [`ParseWarning`]).
    pub parse_warning: Option<ParseWarning>,
}

impl<'a> Record<'a> {
    /// A record with only the PRI (if any) and the message set; the parsers fill in the rest.
    pub(crate) fn bare(pri: Option<u8>, message: &'a [u8]) -> Self {
        Record {
            facility: pri.map(|p| p >> 3),
            severity: pri.map(|p| p & 7),
            version: None,
            timestamp: None,
            host: None,
            app: None,
            procid: None,
            msgid: None,
            structured_data: None,
            message,
            parse_error: None,
            parse_warning: None,
        }
    }

    /// The record of a message that could not be parsed: the whole input is the message.
    fn unparsed(input: &'a [u8], pri: Option<u8>, error: ParseError) -> Self {
        Record {
            parse_error: Some(error),
            ..Record::bare(pri, input)
        }
    }
}

/// PRI of a message without one: facility user (1), severity notice (5).
const DEFAULT_PRI: u8 = (1 << 3) | 5;

/// Parses one syslog message. Never fails: see [`Record::parse_error`] and the module docs.
pub fn parse<'a>(input: &'a [u8], format: Format, ctx: &mut ParseContext) -> Record<'a> {
    if input.is_empty() {
        return Record::unparsed(input, None, ParseError::Empty);
    }
    let (pri, body_start) = match pri(input) {
        Ok(Some((pri, len))) => (Some(pri), len),
        Ok(None) => (None, 0),
        Err(error) => return Record::unparsed(input, None, error),
    };
    let is_rfc5424 = match format {
        Format::Rfc5424 => true,
        Format::Rfc3164 => false,
        Format::Auto => pri.is_some() && looks_like_rfc5424(&input[body_start..]),
    };
    if !is_rfc5424 {
        return rfc3164::parse(input, body_start, pri.unwrap_or(DEFAULT_PRI), ctx);
    }
    let Some(pri) = pri else {
        return Record::unparsed(input, None, ParseError::MissingPri);
    };
    let strict = format == Format::Rfc5424;
    rfc5424::parse(input, body_start, pri, strict)
        .unwrap_or_else(|error| Record::unparsed(input, Some(pri), error))
}

/// Auto-detection of RFC 5424 in the body after the PRI: `1 ` as the RFC writes it (then a
/// malformed header is an error, not a second guess), or, after blanks or with another
/// VERSION of 1–3 digits, a VERSION followed by a NILVALUE or a date (`2 - `, ` 1 2026-`),
/// so that BSD text such as `<13>5 apples` stays BSD.
fn looks_like_rfc5424(body: &[u8]) -> bool {
    match body {
        [b'1', b' ', ..] => return true,
        // Most messages (BSD with a month name, `2026-...`) are decided by their first byte.
        [b'1'..=b'9' | b' ' | b'\t', ..] => {}
        _ => return false,
    }
    let blanks = body
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let body = &body[blanks..];
    let digits = body
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || body[0] == b'0' || body.get(digits) != Some(&b' ') {
        return false;
    }
    let next = &body[digits + 1..];
    next.starts_with(b"- ")
        || (next.len() > 4 && next[..4].iter().all(u8::is_ascii_digit) && next[4] == b'-')
}

/// The PRI at the start of `input`: `Ok(None)` when there is none (no `<`), else the value
/// and the PRI's length.
fn pri(input: &[u8]) -> Result<Option<(u8, usize)>, ParseError> {
    if input.first() != Some(&b'<') {
        return Ok(None);
    }
    let digits = input[1..]
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || input.get(1 + digits) != Some(&b'>') {
        return Err(ParseError::InvalidPri);
    }
    let value = input[1..1 + digits]
        .iter()
        .fold(0u16, |v, b| v * 10 + u16::from(b - b'0'));
    match u8::try_from(value) {
        Ok(value) if value <= 191 => Ok(Some((value, digits + 2))),
        _ => Err(ParseError::InvalidPri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0))
    }

    #[test]
    fn format_from_str_and_display_round_trip() {
        for format in [Format::Auto, Format::Rfc5424, Format::Rfc3164] {
            assert_eq!(format.to_string().parse(), Ok(format));
        }
        assert_eq!(
            "RFC5424".parse::<Format>(),
            Err(UnknownFormat("RFC5424".to_owned()))
        );
    }

    #[test]
    fn pri_bounds() {
        assert_eq!(pri(b"<0>"), Ok(Some((0, 3))));
        assert_eq!(pri(b"<191>x"), Ok(Some((191, 5))));
        assert_eq!(pri(b"<013>x"), Ok(Some((13, 5))));
        assert_eq!(pri(b"x"), Ok(None));
        for bad in [
            &b"<192>"[..],
            b"<999>",
            b"<1000>",
            b"<>",
            b"<",
            b"<1",
            b"<a>",
            b"<-1>",
        ] {
            assert_eq!(pri(bad), Err(ParseError::InvalidPri));
        }
    }

    #[test]
    fn empty_input_is_an_error() {
        let r = parse(b"", Format::Auto, &mut ctx());
        assert_eq!(r.parse_error, Some(ParseError::Empty));
        assert_eq!((r.message, r.facility), (&b""[..], None));
        assert_eq!(r.parse_error.unwrap().to_string(), "empty message");
    }

    #[test]
    fn auto_sends_any_version_to_rfc5424_and_bsd_text_to_rfc3164() {
        let r = parse(b"<13>1 - - - - - - m", Format::Auto, &mut ctx());
        assert_eq!((r.version, r.message), (Some(1), &b"m"[..]));
        // Issue 14: any 1-3 digit VERSION is RFC 5424, and recorded.
        let r = parse(b"<13>2 - - - - - - m", Format::Auto, &mut ctx());
        assert_eq!(
            (r.version, r.message, r.parse_error),
            (Some(2), &b"m"[..], None)
        );
        let r = parse(
            b"<13>999 2026-11-21T02:53:47Z h a - - - m",
            Format::Auto,
            &mut ctx(),
        );
        assert_eq!(
            (r.version, r.host, r.app, r.message),
            (Some(999), Some(&b"h"[..]), Some(&b"a"[..]), &b"m"[..])
        );
        // Numbers that are not followed by a NILVALUE or a date are BSD text.
        for input in [
            &b"<13>2 apples"[..],
            b"<13>1000 - - - - - - m",
            b"<13>02 - - - - - - m",
        ] {
            let r = parse(input, Format::Auto, &mut ctx());
            assert_eq!((r.version, r.message), (None, &input[4..]));
        }
        let r = parse(b"1 - - - - - - m", Format::Auto, &mut ctx());
        assert_eq!((r.version, r.facility), (None, Some(1)));
        let r = parse(b"<13>1 - - - - - - m", Format::Rfc3164, &mut ctx());
        assert_eq!((r.version, r.message), (None, &b"1 - - - - - - m"[..]));
    }

    #[test]
    fn blanks_after_pri_before_rfc5424_version_are_skipped() {
        let r = parse(
            b"<13> 1 2026-11-21T02:53:47Z h a p id - m",
            Format::Auto,
            &mut ctx(),
        );
        assert_eq!(
            (r.version, r.host, r.app, r.procid, r.msgid, r.message),
            (
                Some(1),
                Some(&b"h"[..]),
                Some(&b"a"[..]),
                Some(&b"p"[..]),
                Some(&b"id"[..]),
                &b"m"[..]
            )
        );
        assert_eq!(
            r.timestamp.map(|t| t.unix_micros()),
            Some(1_795_229_627_000_000)
        );
    }
}
