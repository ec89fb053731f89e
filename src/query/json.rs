//! [`FieldAccess`] for a stored record: the JSON object the encoder wrote (see
//! [`crate::encode::json`]), as `logtail read` prints it.
//!
//! One pass over the object finds where each top-level member's value lies (no allocation: the
//! positions go into a fixed array); a field is then unescaped only if a query term looks at it,
//! and only if it has escapes, into a per-thread buffer. Bytes that are not a JSON object (a store
//! written with `encoding = "raw"`, or damage) are a record whose message is all of them.

use super::{Field, FieldAccess};
use crate::store::json_scan::{for_each_member, visit_value};

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
