//! Reading the JSON records the store holds (the objects [`crate::encode::json`] writes), shared
//! by the block index, which reads them when a block is written, and the query's
//! [`JsonRecord`](crate::query::JsonRecord), which reads them when a record is searched. Both
//! must see the same values, or the index could rule out a block holding a match: so there is
//! one reader, here.
//!
//! Lenient and allocation-free: positions are byte ranges into the record; a string is
//! unescaped only when it has escapes, into a reused per-thread buffer.

use std::cell::RefCell;

use memchr::{memchr, memchr2, memchr3};

/// Visits a value: a string unescaped, a number or boolean as written, each scalar of an array;
/// an object as its JSON text (so that it exists); `null` not at all.
pub(crate) fn visit_value(
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
fn unescape_json(mut s: &[u8], out: &mut Vec<u8>) {
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
pub(crate) fn for_each_member(
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
