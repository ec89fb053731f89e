//! [`FieldAccess`] for a stored record: the JSON object the encoder wrote (see
//! [`crate::encode::json`]), as `logtail read` prints it.
//!
//! One pass over the object finds where each top-level member's value lies (no allocation: the
//! positions go into a fixed array); a field is then unescaped only if a query term looks at it,
//! and only if it has escapes, into a per-thread buffer. Bytes that are not a JSON object (a store
//! written with `encoding = "raw"`, or damage) are a record whose message is all of them.

use std::cell::RefCell;

use memchr::{memchr, memchr2, memchr3};

use super::{Field, FieldAccess};

/// Top-level members remembered from the first pass; the encoder writes at most 13, processing
/// rules may add more: a record with more is still searched, by scanning it again per lookup.
const MAX_MEMBERS: usize = 24;

/// A stored JSON record, ready for [`Matcher::is_match`](super::Matcher::is_match).
#[derive(Debug, Clone)]
pub struct JsonRecord<'a> {
    raw: &'a [u8],
    members: [Member; MAX_MEMBERS],
    count: usize,
    /// All members fit in `members`.
    complete: bool,
    /// `raw` is a JSON object.
    is_object: bool,
}

/// Byte ranges in the record: the key without its quotes, the value as JSON text.
#[derive(Debug, Clone, Copy, Default)]
struct Member {
    key: (u32, u32),
    value: (u32, u32),
}

impl<'a> JsonRecord<'a> {
    /// Indexes the top-level members of `raw`.
    pub fn new(raw: &'a [u8]) -> JsonRecord<'a> {
        let mut record = JsonRecord {
            raw,
            members: [Member::default(); MAX_MEMBERS],
            count: 0,
            complete: true,
            is_object: false,
        };
        // Positions are u32: a stored record is at most a block (a few MiB).
        if raw.len() < u32::MAX as usize {
            let (members, count, complete) =
                (&mut record.members, &mut record.count, &mut record.complete);
            record.is_object = for_each_member(raw, 0, &mut |key, value| {
                match members.get_mut(*count) {
                    Some(slot) => {
                        *slot = Member {
                            key: (key.0 as u32, key.1 as u32),
                            value: (value.0 as u32, value.1 as u32),
                        };
                        *count += 1;
                    }
                    None => *complete = false,
                }
                false
            })
            .is_some();
        }
        record
    }

    /// The value (as JSON text range) of each top-level member named `name`, until `f` says stop.
    fn each_top(&self, name: &[u8], f: &mut dyn FnMut((usize, usize)) -> bool) -> bool {
        let raw = self.raw;
        for m in &self.members[..self.count] {
            if &raw[m.key.0 as usize..m.key.1 as usize] == name
                && f((m.value.0 as usize, m.value.1 as usize))
            {
                return true;
            }
        }
        if self.complete {
            return false;
        }
        let mut index = 0;
        let mut found = false;
        for_each_member(raw, 0, &mut |key, value| {
            index += 1;
            found = index > MAX_MEMBERS && &raw[key.0..key.1] == name && f(value);
            found
        });
        found
    }
}

impl FieldAccess for JsonRecord<'_> {
    fn any_value(&self, field: &Field, visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let raw = self.raw;
        if !self.is_object {
            return *field == Field::Message && visit(raw);
        }
        let name: &[u8] = match field {
            Field::Message => b"message",
            Field::Host => b"host",
            Field::App => b"app",
            Field::Procid => b"procid",
            Field::Msgid => b"msgid",
            Field::Source => b"source",
            Field::ParseError => b"parse_error",
            Field::Facility => b"facility",
            Field::Severity => b"severity",
            Field::Other(name) => name.as_bytes(),
            Field::Sd { id, param } => {
                return self.each_top(b"structured_data", &mut |sd| {
                    let mut hit = false;
                    for_each_member(raw, sd.0, &mut |key, element| {
                        hit = &raw[key.0..key.1] == id.as_bytes()
                            && for_each_member(raw, element.0, &mut |key, value| {
                                &raw[key.0..key.1] == param.as_bytes()
                                    && visit_value(raw, value, visit)
                            })
                            .unwrap_or(false);
                        hit
                    });
                    hit
                });
            }
        };
        self.each_top(name, &mut |value| visit_value(raw, value, visit))
    }
}

/// Visits a value: a string unescaped, a number or boolean as written, each scalar of an array;
/// an object as its JSON text (so that it exists); `null` not at all.
fn visit_value(
    raw: &[u8],
    (start, end): (usize, usize),
    visit: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    match raw.get(start) {
        Some(b'"') => visit_string(&raw[start + 1..end.saturating_sub(1).max(start + 1)], visit),
        Some(b'[') => {
            let mut hit = false;
            for_each_element(raw, start, &mut |element| {
                hit = matches!(
                    raw.get(element.0),
                    Some(b'"' | b'-' | b'0'..=b'9' | b't' | b'f')
                ) && visit_value(raw, element, visit);
                hit
            });
            hit
        }
        Some(b'n') => false,
        Some(_) => visit(&raw[start..end]),
        None => false,
    }
}

thread_local! {
    /// Where escaped strings are unescaped: reused, so matching does not allocate.
    static UNESCAPED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Visits the contents of a JSON string (between its quotes), unescaped.
fn visit_string(contents: &[u8], visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    if memchr(b'\\', contents).is_none() {
        return visit(contents);
    }
    UNESCAPED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            unescape_json(contents, &mut buf);
            visit(&buf)
        }
        // Only if `visit` itself searches another record's escaped string.
        Err(_) => {
            let mut buf = Vec::with_capacity(contents.len());
            unescape_json(contents, &mut buf);
            visit(&buf)
        }
    })
}

/// Appends the unescaped form of JSON string contents to `out`. An invalid escape is kept as
/// written (the store only holds valid JSON; this is for damage, not a parse error).
pub(crate) fn unescape_json(mut s: &[u8], out: &mut Vec<u8>) {
    while let Some(at) = memchr(b'\\', s) {
        out.extend_from_slice(&s[..at]);
        let rest = &s[at..];
        let (bytes, used): (&[u8], usize) = match rest.get(1) {
            Some(b'"') => (b"\"", 2),
            Some(b'\\') => (b"\\", 2),
            Some(b'/') => (b"/", 2),
            Some(b'b') => (b"\x08", 2),
            Some(b'f') => (b"\x0c", 2),
            Some(b'n') => (b"\n", 2),
            Some(b'r') => (b"\r", 2),
            Some(b't') => (b"\t", 2),
            Some(b'u') => {
                let mut utf8 = [0u8; 4];
                match decode_u_escape(rest) {
                    Some((c, used)) => {
                        let text = c.encode_utf8(&mut utf8);
                        out.extend_from_slice(text.as_bytes());
                        s = &rest[used..];
                        continue;
                    }
                    None => (&rest[..2], 2),
                }
            }
            _ => (&rest[..1], 1),
        };
        out.extend_from_slice(bytes);
        s = &rest[used..];
    }
    out.extend_from_slice(s);
}

/// `\uXXXX` (or a surrogate pair `\uXXXX\uXXXX`) at the start of `s`: the character and the
/// bytes used.
fn decode_u_escape(s: &[u8]) -> Option<(char, usize)> {
    let hex = |at: usize| -> Option<u32> {
        let digits = std::str::from_utf8(s.get(at..at + 4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let first = hex(2)?;
    if (0xD800..0xDC00).contains(&first) {
        if s.get(6..8)? != b"\\u" {
            return None;
        }
        let second = hex(8)?;
        if !(0xDC00..0xE000).contains(&second) {
            return None;
        }
        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
        return Some((char::from_u32(code)?, 12));
    }
    Some((char::from_u32(first)?, 6))
}

fn skip_ws(raw: &[u8], mut at: usize) -> usize {
    while raw
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The index after the string that starts (with its quote) at `at`.
#[inline]
fn string_end(raw: &[u8], at: usize) -> Option<usize> {
    // Keys and most header values are a few bytes long: a plain loop finds their end sooner
    // than setting up a vector search.
    let short_end = raw.len().min(at + 1 + 16);
    let mut i = at + 1;
    while i < short_end {
        match raw[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    loop {
        let hit = i + memchr2(b'"', b'\\', raw.get(i..)?)?;
        if raw[hit] == b'"' {
            return Some(hit + 1);
        }
        i = hit + 2;
    }
}

/// The index after the value that starts at `at`.
fn value_end(raw: &[u8], at: usize) -> Option<usize> {
    match raw.get(at)? {
        b'"' => string_end(raw, at),
        // To find the end of an object only its braces outside strings count (brackets nest
        // inside them properly in valid JSON), and likewise brackets for an array: one vector
        // search for the next of three bytes instead of a look at every byte.
        &open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut i = at;
            loop {
                i += memchr3(b'"', open, close, raw.get(i..)?)?;
                match raw[i] {
                    b'"' => {
                        i = string_end(raw, i)?;
                        continue;
                    }
                    b if b == open => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
            }
        }
        _ => {
            let len = raw[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(raw.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

/// Calls `f(key range, value range)` for each member of the object starting at `at`, until it
/// returns true. `None` if the bytes there are not a well-formed object; else whether `f` did.
fn for_each_member(
    raw: &[u8],
    at: usize,
    f: &mut dyn FnMut((usize, usize), (usize, usize)) -> bool,
) -> Option<bool> {
    let mut i = skip_ws(raw, at);
    if raw.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(raw, i + 1);
    if raw.get(i) == Some(&b'}') {
        return Some(false);
    }
    loop {
        if raw.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(raw, i)?;
        let key = (i + 1, key_end - 1);
        i = skip_ws(raw, key_end);
        if raw.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(raw, i + 1);
        let end = value_end(raw, value_start)?;
        if f(key, (value_start, end)) {
            return Some(true);
        }
        i = skip_ws(raw, end);
        match raw.get(i)? {
            b',' => i = skip_ws(raw, i + 1),
            b'}' => return Some(false),
            _ => return None,
        }
    }
}

/// Calls `f(value range)` for each element of the array starting at `at`, until it returns true.
fn for_each_element(
    raw: &[u8],
    at: usize,
    f: &mut dyn FnMut((usize, usize)) -> bool,
) -> Option<bool> {
    let mut i = skip_ws(raw, at + 1);
    if raw.get(i) == Some(&b']') {
        return Some(false);
    }
    loop {
        let end = value_end(raw, i)?;
        if f((i, end)) {
            return Some(true);
        }
        i = skip_ws(raw, end);
        match raw.get(i)? {
            b',' => i = skip_ws(raw, i + 1),
            b']' => return Some(false),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(raw: &[u8], field: &Field) -> Vec<String> {
        let mut seen = Vec::new();
        JsonRecord::new(raw).any_value(field, &mut |v| {
            seen.push(String::from_utf8_lossy(v).into_owned());
            false
        });
        seen
    }

    #[test]
    fn reads_top_level_strings_numbers_and_sd_params() {
        let raw = br#"{"facility":1,"severity":5,"host":"h\"1","structured_data":{"origin":{"ip":["10.0.0.1","10.0.0.2"],"x":"y"},"logtail@32473":{"tags":"a,b"}},"message":"tab\there \u00e9\ud83d\ude00","source":"s"}"#;
        assert_eq!(values(raw, &Field::Severity), ["5"]);
        assert_eq!(values(raw, &Field::Host), ["h\"1"]);
        assert_eq!(values(raw, &Field::Message), ["tab\there é😀"]);
        let ip = Field::Sd {
            id: "origin".into(),
            param: "ip".into(),
        };
        assert_eq!(values(raw, &ip), ["10.0.0.1", "10.0.0.2"]);
        let tags = Field::Sd {
            id: "logtail@32473".into(),
            param: "tags".into(),
        };
        assert_eq!(values(raw, &tags), ["a,b"]);
        assert!(values(raw, &Field::Procid).is_empty());
        let missing = Field::Sd {
            id: "origin".into(),
            param: "nope".into(),
        };
        assert!(values(raw, &missing).is_empty());
    }

    #[test]
    fn not_an_object_is_all_message() {
        assert_eq!(values(b"<13>raw line", &Field::Message), ["<13>raw line"]);
        assert!(values(b"<13>raw line", &Field::Host).is_empty());
        assert_eq!(
            values(br#"{"message":"cut"#, &Field::Message),
            [r#"{"message":"cut"#]
        );
    }

    #[test]
    fn many_members_are_still_found() {
        let mut raw = String::from("{");
        for i in 0..40 {
            raw.push_str(&format!("\"k{i}\":{i},"));
        }
        raw.push_str("\"message\":\"m\"}");
        let raw = raw.as_bytes();
        assert_eq!(values(raw, &Field::Other("k39".into())), ["39"]);
        assert_eq!(values(raw, &Field::Other("k3".into())), ["3"]);
        assert_eq!(values(raw, &Field::Message), ["m"]);
    }

    #[test]
    fn null_is_absent_and_objects_exist() {
        let raw = br#"{"a":null,"b":{"c":1},"message":"m"}"#;
        assert!(values(raw, &Field::Other("a".into())).is_empty());
        assert_eq!(values(raw, &Field::Other("b".into())), [r#"{"c":1}"#]);
    }
}
