//! [`FieldAccess`] for a record just parsed ([`crate::parse::Record`]), for processing rules that
//! filter before encoding. It gives the same values as [`super::JsonRecord`] gives for the
//! record once encoded (SD values unescaped, numbers as decimal text), except that bytes that are
//! not UTF-8 are the bytes themselves rather than the encoder's `\xNN` text.

use std::cell::RefCell;

use super::{Field, FieldAccess};
use crate::parse::Record;
use crate::parse::structured_data;

/// A parsed record and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ParsedRecord<'r, 'a> {
    pub record: &'r Record<'a>,
    /// The sender's `IP:PORT` or socket path: the `source` field.
    pub source: &'r str,
}

thread_local! {
    /// Where SD values with escapes are unescaped: reused, so matching does not allocate.
    static UNESCAPED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl FieldAccess for ParsedRecord<'_, '_> {
    fn any_value(&self, field: &Field, visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let r = self.record;
        let bytes = |value: Option<&[u8]>, visit: &mut dyn FnMut(&[u8]) -> bool| {
            value.is_some_and(&mut *visit)
        };
        let number = |value: Option<u8>, visit: &mut dyn FnMut(&[u8]) -> bool| {
            value.is_some_and(|n| {
                let mut digits = [0u8; 3];
                let text = format_u8(n, &mut digits);
                visit(text)
            })
        };
        match field {
            Field::Message => visit(r.message),
            Field::Host => bytes(r.host, visit),
            Field::App => bytes(r.app, visit),
            Field::Procid => bytes(r.procid, visit),
            Field::Msgid => bytes(r.msgid, visit),
            Field::Source => visit(self.source.as_bytes()),
            Field::ParseError => bytes(r.parse_error.map(|e| e.as_str().as_bytes()), visit),
            Field::Facility => number(r.facility, visit),
            Field::Severity => number(r.severity, visit),
            Field::Sd { id, param } => r.structured_data.is_some_and(|sd| {
                sd.elements()
                    .filter(|element| element.id() == id.as_bytes())
                    .flat_map(|element| element.params())
                    .filter(|&(name, _)| name == param.as_bytes())
                    .any(|(_, escaped)| visit_sd_value(escaped, visit))
            }),
            // Fields that rules extract do not exist before the rules ran.
            Field::Other(_) => false,
        }
    }
}

fn format_u8(n: u8, digits: &mut [u8; 3]) -> &[u8] {
    let mut at = digits.len();
    let mut v = n;
    loop {
        at -= 1;
        digits[at] = b'0' + v % 10;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &digits[at..]
}

fn visit_sd_value(escaped: &[u8], visit: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    if memchr::memchr(b'\\', escaped).is_none() {
        return visit(escaped);
    }
    let unescape_into = |buf: &mut Vec<u8>| {
        buf.clear();
        structured_data::unescape(escaped).for_each(|chunk| buf.extend_from_slice(chunk));
    };
    UNESCAPED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            unescape_into(&mut buf);
            visit(&buf)
        }
        Err(_) => {
            let mut buf = Vec::new();
            unescape_into(&mut buf);
            visit(&buf)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, LegacyZone, ParseContext, parse};
    use crate::query::Matcher;

    #[test]
    fn parsed_record_answers_like_the_stored_one() {
        let line = br#"<134>1 2026-11-21T02:53:47Z web-01 nginx 42 REQ [origin ip="10.0.0.1" ip="10.0.0.2"][logtail@32473 entry="web" file="/var/log/a \"b\".log" tags="prod,eu"] GET /healthz timeout"#;
        let mut context = ParseContext::new(0, LegacyZone::Fixed(0));
        let record = parse(line, Format::Auto, &mut context);
        let parsed = ParsedRecord {
            record: &record,
            source: "10.1.2.3:514",
        };
        for (query, expected) in [
            ("timeout host:web-01 app:nginx procid:42 msgid:req", true),
            ("severity:info facility:local0", true),
            ("severity:<=warning", false),
            ("sd.origin.ip:10.0.0.2 tags:eu entry:web", true),
            (r#"file:"/var/log/a \"b\".log""#, true),
            ("source:10.1.2.3*", true),
            ("_exists_:parse_error", false),
            ("status:200", false),
        ] {
            let matcher = Matcher::compile(query).unwrap();
            assert_eq!(matcher.is_match(&parsed), expected, "{query}");
        }
    }
}
