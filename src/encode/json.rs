//! The JSON encoding of a [`Record`]: one object, no trailing newline, keys in this order and
//! each absent when the message has none:
//!
//! ```text
//! facility severity version timestamp host app procid msgid structured_data message
//! received_at source tls_peer agent_host parse_error parse_warning
//! ```
//!
//! * `facility`, `severity`, `version` are numbers; `timestamp` is RFC 3339 text with the
//!   sender's fraction digits and offset; `parse_error` and `parse_warning` are short reasons
//!   ([`ParseError::as_str`](crate::parse::ParseError::as_str),
//!   [`ParseWarning::as_str`](crate::parse::ParseWarning::as_str)).
//! * `structured_data` is an object: SD-ID → object of PARAM-NAME → unescaped value. An SD-ID
//!   that occurs in several elements (RFC 5424 forbids it, senders do it) is emitted once, its
//!   parameters merged in order of appearance. A PARAM-NAME that occurs several times within
//!   one SD-ID (RFC 5424 allows it, e.g. `origin ip`) becomes an array of its values in order;
//!   a name that occurs once stays a string. Merging costs time quadratic in the number of
//!   elements and parameters, so a section with more than [`MAX_MERGED_SD_ITEMS`] elements
//!   or parameters is written element by element as received; its object may then repeat a
//!   name, which RFC 8259 allows but discourages.
//!
//! # Strings
//! Escaped per RFC 8259: `"` and `\` with a backslash, `\n` `\r` `\t` `\b` `\f` by name, other
//! control bytes as `\u00XX`. Valid UTF-8 passes through unchanged. Each byte that is not part
//! of a valid UTF-8 sequence is written as the four characters `\xNN` (lowercase hex; the
//! backslash itself escaped in JSON as `\\`), like syslog-ng's `format-json`: the output is
//! always valid UTF-8 JSON and no byte is silently dropped or replaced.
//!
//! Strings are scanned eight bytes at a time for anything needing attention and clean runs
//! are copied in bulk; log text is mostly printable ASCII, so most records take only that path.

use crate::encode::Envelope;
use crate::parse::structured_data::{self, StructuredData};
use crate::parse::{Offset, Record, Timestamp};

/// Above this many SD elements or parameters in one message, duplicates are not merged
/// (see the [module docs](self)); 64 keeps the worst case to a few thousand comparisons.
pub const MAX_MERGED_SD_ITEMS: usize = 64;

/// Where [`encode`] wrote the members the store's block index reads, so that the store can
/// index the record without looking for them in its JSON (`store::index`). Each span is a byte
/// range of the encoded value (from its first byte).
///
/// Only made when it tells the index exactly what reading the JSON would: the timestamp's time
/// is known exactly as `store::index::rfc3339_micros` reads its text back
/// ([`written_unix_micros`]); a string that holds escapes says so (its contents must be
/// unescaped to be read). Otherwise `None`, and the store reads the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedFields {
    /// The `timestamp` member's instant in µs since the Unix epoch; `None` when the record has
    /// no timestamp (its time is then `received_at`'s).
    pub timestamp_us: Option<i64>,
    /// The `received_at` text.
    pub received_at: StringSpan,
    /// The `severity` and `facility` numbers as written.
    pub severity: Option<u8>,
    pub facility: Option<u8>,
    pub host: Option<StringSpan>,
    pub app: Option<StringSpan>,
    pub message: StringSpan,
}

/// Where the contents of a JSON string (between its quotes) are in an encoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringSpan {
    pub start: u32,
    pub end: u32,
    /// The contents hold at least one escape: they are the value only once unescaped.
    pub escaped: bool,
}

/// Appends the JSON object of `record` and `envelope` to `out`. Returns where the members the
/// store indexes were written, when the store may take them from there (see [`IndexedFields`]).
pub fn encode(record: &Record, envelope: &Envelope, out: &mut Vec<u8>) -> Option<IndexedFields> {
    let value_start = out.len();
    let mut object = Object::open(out);
    if let Some(facility) = record.facility {
        object.key(b"\"facility\":");
        write_u16(object.out, facility.into());
    }
    if let Some(severity) = record.severity {
        object.key(b"\"severity\":");
        write_u16(object.out, severity.into());
    }
    if let Some(version) = record.version {
        object.key(b"\"version\":");
        write_u16(object.out, version);
    }
    let mut timestamp_us = None;
    // Whether the timestamp's time is known and every span fits.
    let mut known = true;
    if let Some(timestamp) = &record.timestamp {
        object.key(b"\"timestamp\":");
        object.out.push(b'"');
        timestamp.write_rfc3339(object.out);
        object.out.push(b'"');
        timestamp_us = written_unix_micros(timestamp);
        known &= timestamp_us.is_some();
    }
    let mut host_span = None;
    if let Some(host) = record.host {
        host_span = object.indexed_string(b"\"host\":", host, value_start, &mut known);
    }
    let mut app_span = None;
    if let Some(app) = record.app {
        app_span = object.indexed_string(b"\"app\":", app, value_start, &mut known);
    }
    if let Some(procid) = record.procid {
        object.string(b"\"procid\":", procid);
    }
    if let Some(msgid) = record.msgid {
        object.string(b"\"msgid\":", msgid);
    }
    if let Some(sd) = record.structured_data {
        object.key(b"\"structured_data\":");
        write_structured_data(object.out, sd);
    }
    let message = object.indexed_string(b"\"message\":", record.message, value_start, &mut known);
    let received_at = object.indexed_string(
        b"\"received_at\":",
        envelope.received_at,
        value_start,
        &mut known,
    );
    object.string(b"\"source\":", envelope.source.as_bytes());
    if let Some(peer) = envelope.tls_peer {
        object.string(b"\"tls_peer\":", peer.as_bytes());
    }
    if let Some(host) = envelope.agent_host {
        object.string(b"\"agent_host\":", host.as_bytes());
    }
    if let Some(error) = record.parse_error {
        object.string(b"\"parse_error\":", error.as_str().as_bytes());
    }
    if let Some(warning) = record.parse_warning {
        object.string(b"\"parse_warning\":", warning.as_str().as_bytes());
    }
    object.close();
    Some(IndexedFields {
        timestamp_us,
        received_at: received_at?,
        severity: record.severity,
        facility: record.facility,
        host: host_span,
        app: app_span,
        message: message?,
    })
    .filter(|_| known)
}

/// The instant `timestamp.write_rfc3339` writes, in µs, exactly as an RFC 3339 reader
/// (`store::index::rfc3339_micros`) reads that text back: the fraction cut to the digits
/// written, the offset cut to whole minutes. `None` when a field is outside what the text form
/// can hold (the fields' documented ranges; a leap second): the caller then reads the text.
pub fn written_unix_micros(timestamp: &Timestamp) -> Option<i64> {
    let c = &timestamp.civil;
    let leap =
        c.year.is_multiple_of(4) && (!c.year.is_multiple_of(100) || c.year.is_multiple_of(400));
    let month_days = match c.month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if c.year > 9999
        || c.day == 0
        || c.day > month_days
        || c.hour > 23
        || c.minute > 59
        || c.second > 59
        || c.fraction_digits > 9
        || c.nanos > 999_999_999
    {
        return None;
    }
    // What write_rfc3339 writes: `fraction_digits` digits of the nanoseconds, of which a
    // reader keeps six (from six digits on, that is the nanoseconds' microseconds).
    let micros = if c.fraction_digits >= 6 {
        i64::from(c.nanos / 1000)
    } else {
        const CUTS: [u32; 6] = [
            1_000_000_000,
            100_000_000,
            10_000_000,
            1_000_000,
            100_000,
            10_000,
        ];
        let cut = CUTS[usize::from(c.fraction_digits)];
        i64::from(c.nanos / cut * (cut / 1000))
    };
    let offset_secs = match timestamp.offset {
        Offset::Z => 0,
        Offset::Seconds(s) => {
            let minutes = i64::from((s.unsigned_abs() / 60).min(23 * 60 + 59));
            if s < 0 { -minutes * 60 } else { minutes * 60 }
        }
    };
    Some((c.naive_seconds() - offset_secs) * 1_000_000 + micros)
}

/// Writes the members of one JSON object, commas included.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `quoted_key` (after a comma unless first): a fixed key name with its quotes and
    /// colon, e.g. `"host":`. The length is a constant so the copy is inlined (as a `&str`
    /// plus separate quote pushes it was a `memcpy` call and ~5% of the encode profile).
    #[inline]
    fn key<const N: usize>(&mut self, quoted_key: &[u8; N]) {
        self.comma();
        self.out.extend_from_slice(quoted_key);
    }

    #[inline]
    fn string<const N: usize>(&mut self, quoted_key: &[u8; N], value: &[u8]) {
        self.key(quoted_key);
        write_string(self.out, value);
    }

    /// [`Self::string`], returning the span of its contents in the value that started at
    /// `value_start` (`None`, and `known` cleared, should it not fit in a `u32`). An escape
    /// always writes more bytes than it replaces: contents as long as `value` have none.
    #[inline]
    fn indexed_string<const N: usize>(
        &mut self,
        quoted_key: &[u8; N],
        value: &[u8],
        value_start: usize,
        known: &mut bool,
    ) -> Option<StringSpan> {
        self.key(quoted_key);
        let start = self.out.len() + 1 - value_start;
        write_string(self.out, value);
        let end = self.out.len() - 1 - value_start;
        let span = u32::try_from(start)
            .ok()
            .zip(u32::try_from(end).ok())
            .map(|(start, end)| StringSpan {
                start,
                end,
                escaped: end as usize - start as usize != value.len(),
            });
        *known &= span.is_some();
        span
    }

    /// Writes an escaped key from input data, e.g. an SD-ID.
    fn input_key(&mut self, key: &[u8]) {
        self.comma();
        write_string(self.out, key);
        self.out.push(b':');
    }

    fn comma(&mut self) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// One SD element as indexes into the parameter table of [`write_structured_data`].
#[derive(Clone, Copy)]
struct ElementSpan<'a> {
    id: &'a [u8],
    params: (usize, usize),
}

fn write_structured_data(out: &mut Vec<u8>, sd: StructuredData) {
    // One walk of the section into tables on the stack (no allocation); merging then compares
    // slices instead of re-parsing the section for every parameter; that change alone took the
    // parse+encode bench from 1.1M to 2.0M lines/s (17% of its lines have SD).
    let mut elements = [ElementSpan {
        id: &[],
        params: (0, 0),
    }; MAX_MERGED_SD_ITEMS];
    let mut params: [(&[u8], &[u8]); MAX_MERGED_SD_ITEMS] = [(&[], &[]); MAX_MERGED_SD_ITEMS];
    let (mut element_count, mut param_count) = (0, 0);
    for element in sd.elements() {
        let Some(slot) = elements.get_mut(element_count) else {
            return write_structured_data_as_received(out, sd);
        };
        let first = param_count;
        for param in element.params() {
            let Some(param_slot) = params.get_mut(param_count) else {
                return write_structured_data_as_received(out, sd);
            };
            *param_slot = param;
            param_count += 1;
        }
        *slot = ElementSpan {
            id: element.id(),
            params: (first, param_count),
        };
        element_count += 1;
    }
    let elements = &elements[..element_count];

    let mut object = Object::open(out);
    for (index, element) in elements.iter().enumerate() {
        let id = element.id;
        if elements[..index].iter().any(|earlier| earlier.id == id) {
            continue; // merged into the first element with this SD-ID
        }
        object.input_key(id);
        let merged = || {
            elements[index..]
                .iter()
                .filter(move |e| e.id == id)
                .flat_map(|e| &params[e.params.0..e.params.1])
        };
        write_merged_params(object.out, merged);
    }
    object.close();
}

/// Writes the parameters `params()` yields as one object; a repeated name becomes an array.
fn write_merged_params<'p, 'a: 'p, I>(out: &mut Vec<u8>, params: impl Fn() -> I)
where
    I: Iterator<Item = &'p (&'a [u8], &'a [u8])>,
{
    let mut object = Object::open(out);
    for (index, &(name, value)) in params().enumerate() {
        let mut same_name = params().enumerate().filter(|(_, (n, _))| *n == name);
        if same_name
            .next()
            .is_some_and(|(first_index, _)| first_index < index)
        {
            continue; // written with the first occurrence
        }
        object.input_key(name);
        if same_name.next().is_none() {
            write_sd_value(object.out, value);
            continue;
        }
        object.out.push(b'[');
        for (i, (_, value)) in params().filter(|(n, _)| *n == name).enumerate() {
            if i > 0 {
                object.out.push(b',');
            }
            write_sd_value(object.out, value);
        }
        object.out.push(b']');
    }
    object.close();
}

/// Writes every element as received, for sections too big to merge (see the module docs).
fn write_structured_data_as_received(out: &mut Vec<u8>, sd: StructuredData) {
    let mut object = Object::open(out);
    for element in sd.elements() {
        object.input_key(element.id());
        let mut members = Object::open(object.out);
        for (name, value) in element.params() {
            members.input_key(name);
            write_sd_value(members.out, value);
        }
        members.close();
    }
    object.close();
}

fn write_sd_value(out: &mut Vec<u8>, escaped: &[u8]) {
    out.push(b'"');
    // Chunks split only at backslashes (ASCII), never inside a UTF-8 sequence.
    for chunk in structured_data::unescape(escaped) {
        write_string_contents(out, chunk);
    }
    out.push(b'"');
}

fn write_u16(out: &mut Vec<u8>, value: u16) {
    let mut buf = [0u8; 5];
    let mut at = buf.len();
    let mut v = value;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// Appends `bytes` as a quoted JSON string (see the [module docs](self) for the escaping).
pub fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    write_string_contents(out, bytes);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bit 7 of byte `i` of the result is set if byte `i` of `word` (little-endian) is a control
/// byte, `"`, `\\` or non-ASCII. The lowest set bit is exact: the `hasless`/`haszero` bit
/// tricks can only report false positives above a true one (a borrow travels upwards).
#[inline]
fn attention_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash | (word & HIGH)
}

/// Index of the first byte at or after `at` that needs attention, eight bytes at a time.
/// This replaced a byte-wise table scan that took a third of this function's samples.
#[inline]
fn next_attention(bytes: &[u8], mut at: usize) -> Option<usize> {
    let first_in = |mask: u64| (mask.trailing_zeros() / 8) as usize;
    while let Some(word) = bytes
        .get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let mask = attention_mask(u64::from_le_bytes(word));
        if mask != 0 {
            return Some(at + first_in(mask));
        }
        at += 8;
    }
    let remaining = bytes.len().checked_sub(at).filter(|&n| n > 0)?;
    let Some(last_word) = bytes.len().checked_sub(8) else {
        // A string shorter than eight bytes.
        return bytes[at..]
            .iter()
            .position(|&b| needs_attention(b))
            .map(|i| at + i);
    };
    // Fewer than eight bytes left: re-read the last eight, with the bytes already scanned
    // replaced by spaces so that a special byte among them (already handled) cannot make the
    // bit tricks report a false positive above it. A load, not a copy into a padded buffer:
    // that copy's store-forwarding stall cost a quarter of the encoder's time.
    let word = u64::from_le_bytes(<[u8; 8]>::try_from(&bytes[last_word..]).ok()?);
    let fresh = u64::MAX << ((8 - remaining) * 8);
    let word = (word & fresh) | (0x2020_2020_2020_2020 & !fresh);
    let mask = attention_mask(word);
    (mask != 0).then(|| last_word + first_in(mask))
}

/// The byte-wise form of [`attention_mask`].
#[inline]
fn needs_attention(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte >= 0x80
}

/// Appends the escaped contents of a JSON string (without quotes).
pub fn write_string_contents(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut clean_start = 0;
    let mut at = 0;
    while let Some(special) = next_attention(bytes, at) {
        let byte = bytes[special];
        let utf8_len = if byte >= 0x80 {
            utf8_sequence_len(&bytes[special..])
        } else {
            0
        };
        if utf8_len > 0 {
            at = special + utf8_len;
            continue;
        }
        out.extend_from_slice(&bytes[clean_start..special]);
        write_escape(out, byte);
        at = special + 1;
        clean_start = at;
    }
    out.extend_from_slice(&bytes[clean_start..]);
}

/// Length of the valid UTF-8 sequence at the start of `bytes`, or 0 if there is none
/// (RFC 3629 table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
fn utf8_sequence_len(bytes: &[u8]) -> usize {
    const CONT: std::ops::RangeInclusive<u8> = 0x80..=0xBF;
    match *bytes {
        [0xC2..=0xDF, b1, ..] if CONT.contains(&b1) => 2,
        [0xE0, 0xA0..=0xBF, b2, ..]
        | [0xE1..=0xEC | 0xEE..=0xEF, 0x80..=0xBF, b2, ..]
        | [0xED, 0x80..=0x9F, b2, ..]
            if CONT.contains(&b2) =>
        {
            3
        }
        [0xF0, 0x90..=0xBF, b2, b3, ..]
        | [0xF1..=0xF3, 0x80..=0xBF, b2, b3, ..]
        | [0xF4, 0x80..=0x8F, b2, b3, ..]
            if CONT.contains(&b2) && CONT.contains(&b3) =>
        {
            4
        }
        _ => 0,
    }
}

fn write_escape(out: &mut Vec<u8>, byte: u8) {
    let hex = |b: u8| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]];
    match byte {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        0x00..=0x1F => {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex(byte));
        }
        _ => {
            out.extend_from_slice(b"\\\\x");
            out.extend_from_slice(&hex(byte));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, LegacyZone, ParseContext, parse};

    const ENVELOPE: Envelope<'static> = Envelope::new(b"2026-11-21T02:53:48.000001Z", "udp:5514");

    fn json_string(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_string(&mut out, bytes);
        String::from_utf8(out).expect("always UTF-8")
    }

    fn encoded(input: &[u8], format: Format) -> String {
        let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0));
        let record = parse(input, format, &mut ctx);
        let mut out = Vec::new();
        encode(&record, &ENVELOPE, &mut out);
        let text = String::from_utf8(out).expect("always UTF-8");
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        text
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_bytes() {
        assert_eq!(json_string(br#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            json_string(b"\n\r\t\x08\x0c\x00\x01\x1f\x7f"),
            "\"\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\x7f\""
        );
        assert_eq!(json_string(b""), r#""""#);
        assert_eq!(
            json_string(b"0123456789abcdef\"0123456789abcdef"),
            r#""0123456789abcdef\"0123456789abcdef""#
        );
    }

    #[test]
    fn valid_multibyte_utf8_passes_through() {
        let text = "caf\u{e9} \u{20ac} \u{1f600} \u{4e2d}\u{6587} \u{10ffff}";
        assert_eq!(json_string(text.as_bytes()), format!("\"{text}\""));
    }

    #[test]
    fn invalid_utf8_bytes_become_backslash_x_escapes() {
        // Lone continuation, truncated sequence, overlong NUL, surrogate, above U+10FFFF, 0xFF.
        assert_eq!(json_string(b"a\x80b"), r#""a\\x80b""#);
        assert_eq!(json_string(b"\xe2\x82"), r#""\\xe2\\x82""#);
        assert_eq!(json_string(b"\xe2\x82x"), r#""\\xe2\\x82x""#);
        assert_eq!(json_string(b"\xc0\x80"), r#""\\xc0\\x80""#);
        assert_eq!(json_string(b"\xed\xa0\x80"), r#""\\xed\\xa0\\x80""#);
        assert_eq!(
            json_string(b"\xf4\x90\x80\x80"),
            r#""\\xf4\\x90\\x80\\x80""#
        );
        assert_eq!(json_string(b"\xff\xe2\x82\xac"), "\"\\\\xff\u{20ac}\"");
        let decoded: String = serde_json::from_str(&json_string(b"\xffz")).unwrap();
        assert_eq!(decoded, r"\xffz");
    }

    #[test]
    fn word_scan_finds_the_next_special_byte_exactly_from_any_offset() {
        let seconds = [None, Some(0u8), Some(b'"'), Some(0xff), Some(b'a')];
        for len in [1, 7, 8, 9, 16, 20] {
            for byte in 0..=255u8 {
                for position in 0..len {
                    for second in seconds {
                        let mut bytes = vec![b'a'; len];
                        bytes[position] = byte;
                        if let (Some(s), true) = (second, position + 1 < len) {
                            bytes[len - 1] = s;
                        }
                        for at in 0..=len {
                            let naive = bytes[at..]
                                .iter()
                                .position(|&b| needs_attention(b))
                                .map(|i| at + i);
                            assert_eq!(next_attention(&bytes, at), naive, "{bytes:?} from {at}");
                        }
                    }
                }
            }
        }
        assert_eq!(next_attention(b"", 0), None);
        assert_eq!(next_attention(b"abc", 3), None);
        assert_eq!(next_attention(b"abc", 4), None);
    }

    #[test]
    fn utf8_sequence_len_agrees_with_std() {
        let tails = [0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
        for lead in 0x80..=0xffu8 {
            for b1 in 0..=0xffu8 {
                for b2 in tails {
                    for b3 in tails {
                        let bytes = [lead, b1, b2, b3];
                        let expected = match std::str::from_utf8(&bytes) {
                            Ok(s) => s.chars().next().map_or(0, char::len_utf8),
                            Err(e) if e.valid_up_to() > 0 => {
                                std::str::from_utf8(&bytes[..e.valid_up_to()])
                                    .ok()
                                    .and_then(|s| s.chars().next())
                                    .map_or(0, char::len_utf8)
                            }
                            Err(_) => 0,
                        };
                        assert_eq!(utf8_sequence_len(&bytes), expected, "{bytes:x?}");
                    }
                }
            }
        }
        assert_eq!(utf8_sequence_len(b"\xe2\x82"), 0);
        assert_eq!(utf8_sequence_len(b"\xf0\x9f\x98"), 0);
    }

    #[test]
    fn rfc5424_record_with_all_fields() {
        let input = b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"App \\\"x\\\" \\\\ \\]\"][examplePriority@32473 class=\"high\"] \xEF\xBB\xBFAn event";
        assert_eq!(
            encoded(input, Format::Auto),
            r#"{"facility":20,"severity":5,"version":1,"timestamp":"2003-08-24T05:14:15.000003-07:00","host":"192.0.2.1","app":"myproc","procid":"8710","msgid":"ID47","structured_data":{"exampleSDID@32473":{"iut":"3","eventSource":"App \"x\" \\ ]"},"examplePriority@32473":{"class":"high"}},"message":"An event","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514"}"#
        );
    }

    #[test]
    fn rfc5424_nilvalues_and_element_without_params() {
        assert_eq!(
            encoded(b"<14>1 - - - - - [empty@1]", Format::Auto),
            r#"{"facility":1,"severity":6,"version":1,"structured_data":{"empty@1":{}},"message":"","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514"}"#
        );
    }

    #[test]
    fn duplicate_sd_ids_are_merged_and_repeated_params_become_arrays() {
        let input = br#"<14>1 - - - - - [origin ip="192.0.2.1" ip="192.0.2.2"][meta x="1"][origin software="s" ip="192.0.2.3"] m"#;
        assert_eq!(
            encoded(input, Format::Auto),
            r#"{"facility":1,"severity":6,"version":1,"structured_data":{"origin":{"ip":["192.0.2.1","192.0.2.2","192.0.2.3"],"software":"s"},"meta":{"x":"1"}},"message":"m","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514"}"#
        );
    }

    #[test]
    fn oversized_sd_is_written_as_received_and_stays_valid_json() {
        let mut input = b"<14>1 - - - - - ".to_vec();
        for i in 0..=MAX_MERGED_SD_ITEMS {
            input.extend_from_slice(format!("[e{} a=\"{i}\"]", i % 2).as_bytes());
        }
        let text = encoded(&input, Format::Auto);
        let sd_start = text.find("\"structured_data\":{").unwrap();
        assert!(
            text[sd_start..]
                .starts_with(r#""structured_data":{"e0":{"a":"0"},"e1":{"a":"1"},"e0":{"a":"2"},"#)
        );
        assert_eq!(text.matches("\"e0\":").count(), MAX_MERGED_SD_ITEMS / 2 + 1);
    }

    #[test]
    fn sd_with_too_many_params_is_written_as_received() {
        let mut input = b"<14>1 - - - - - [a".to_vec();
        for i in 0..=MAX_MERGED_SD_ITEMS {
            input.extend_from_slice(format!(" p{}=\"{i}\"", i % 2).as_bytes());
        }
        input.extend_from_slice(b"][b q=\"x\"][a r=\"y\"]");
        let text = encoded(&input, Format::Auto);
        assert!(text.contains(r#""structured_data":{"a":{"p0":"0","p1":"1","p0":"2","#));
        assert!(text.contains(r#""p0":"64"},"b":{"q":"x"},"a":{"r":"y"}},"message":"""#));
    }

    #[test]
    fn rfc3164_record() {
        assert_eq!(
            encoded(
                b"<13>Nov  1 02:53:47 host app[7]: tab\there \"q\"",
                Format::Auto
            ),
            r#"{"facility":1,"severity":5,"timestamp":"2026-11-01T02:53:47Z","host":"host","app":"app","procid":"7","message":"tab\there \"q\"","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514"}"#
        );
    }

    #[test]
    fn cisco_record() {
        assert_eq!(
            encoded(b"<189>123: *Nov 21 02:53:47.123: %LINK-3-UPDOWN: Interface Gi0/1, changed state to up", Format::Auto),
            r#"{"facility":23,"severity":5,"timestamp":"2026-11-21T02:53:47.123Z","app":"LINK-3-UPDOWN","msgid":"123","message":"Interface Gi0/1, changed state to up","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514"}"#
        );
    }

    #[test]
    fn unparseable_record_keeps_input_and_reason() {
        assert_eq!(
            encoded(b"<abc>\x00\xff", Format::Auto),
            r#"{"message":"<abc>\u0000\\xff","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514","parse_error":"invalid PRI"}"#
        );
        assert_eq!(
            encoded(b"<13>1 2026 h a p m -", Format::Auto),
            r#"{"facility":1,"severity":5,"message":"<13>1 2026 h a p m -","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514","parse_error":"invalid TIMESTAMP"}"#
        );
        assert_eq!(
            encoded(b"", Format::Auto),
            r#"{"message":"","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514","parse_error":"empty message"}"#
        );
    }

    #[test]
    fn structured_data_kept_in_message_is_flagged_with_parse_warning() {
        assert_eq!(
            encoded(b"<13>2 - h a - - [x y=\"1] m", Format::Auto),
            r#"{"facility":1,"severity":5,"version":2,"host":"h","app":"a","message":"[x y=\"1] m","received_at":"2026-11-21T02:53:48.000001Z","source":"udp:5514","parse_warning":"unreadable STRUCTURED-DATA kept in message"}"#
        );
    }

    #[test]
    fn envelope_strings_are_escaped() {
        let envelope = Envelope::new(b"t", "tcp:\"a\"");
        let record = parse(
            b"x",
            Format::Auto,
            &mut ParseContext::new(0, LegacyZone::Local),
        );
        let mut out = Vec::new();
        encode(&record, &envelope, &mut out);
        assert_eq!(
            out,
            br#"{"facility":1,"severity":5,"message":"x","received_at":"t","source":"tcp:\"a\""}"#
        );
    }

    #[test]
    fn appends_without_touching_existing_bytes() {
        let mut out = b"[".to_vec();
        let record = parse(
            b"x",
            Format::Auto,
            &mut ParseContext::new(0, LegacyZone::Local),
        );
        encode(&record, &ENVELOPE, &mut out);
        assert!(out.starts_with(b"[{\"facility\":1,"));
        assert!(out.ends_with(b"}"));
    }
}
