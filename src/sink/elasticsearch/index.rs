//! Which index a document goes to ([`IndexTemplate`], `index = "logs-%Y.%m.%d"`) and its
//! stable `_id` ([`document_id`]).
//!
//! # The template
//! Text with `strftime` fields (chrono's: `%Y`, `%m`, `%d`, `%H`, ...) and `{field}` for a
//! top-level field of the record. The date is the record's `timestamp` (RFC 3339, taken in UTC,
//! like Logstash and Beats name daily indices) and, for a record without one or with one that
//! does not parse, its receipt time. A field's value is lowercased and every character an index
//! name cannot hold becomes `_` (at most [`MAX_FIELD_BYTES`] bytes of it); a record without the
//! field gets `none`. The whole name is checked at load with a sample date and field values.
//!
//! # The `_id`
//! The first 128 bits of SHA-256 over the encoded record, in hex. The record holds its source
//! address, its receipt time in microseconds and its message, so two different records collide
//! only if a sender sends the same message from the same address in the same microsecond; the
//! same record sent again (a WAL replay after a crash, a retry, the same Kafka record read twice
//! after a rebalance) gets the same `_id`, which turns at-least-once delivery into one document.
//! A syslog line read from Kafka by [`crate::source::kafka`] has the Kafka record's timestamp as
//! its receipt time and `kafka:TOPIC/PARTITION@OFFSET` as its source, so it too hashes the same
//! when read again, and two equal lines at different offsets stay two documents.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::setting::Refusal;

/// The most bytes of one field's value in an index name.
pub const MAX_FIELD_BYTES: usize = 64;

/// `index`: compiled once at load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IndexTemplate {
    parts: Vec<Part>,
    /// Some part has a `%` field: the record's date is needed.
    dated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text, possibly with strftime fields when `dated`.
    Text(String),
    /// `{field}`.
    Field(String),
}

impl Default for IndexTemplate {
    fn default() -> Self {
        IndexTemplate::compile("logs-%Y.%m.%d").expect("the default index template compiles")
    }
}

impl std::fmt::Display for IndexTemplate {
    /// The template as written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Field(field) => write!(f, "{{{field}}}")?,
            }
        }
        Ok(())
    }
}

crate::setting::serialize_as_text!(IndexTemplate);

impl TryFrom<String> for IndexTemplate {
    type Error = Refusal;

    fn try_from(text: String) -> Result<Self, Refusal> {
        IndexTemplate::compile(&text).map_err(|e| Refusal(format!("template {text:?}: {e}")))
    }
}

/// A record that is not a JSON object cannot be a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record is not a JSON object: {0}")]
pub struct NotADocument(pub String);

impl IndexTemplate {
    fn compile(text: &str) -> Result<IndexTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|i| open + i)
                .ok_or("a '{' without its '}'")?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let field = &rest[open + 1..close];
            if field.is_empty()
                || !field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(format!(
                    "{{{field}}}: a field is a name of letters, digits and '_'"
                ));
            }
            parts.push(Part::Field(field.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("a '}' without its '{'".into());
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let mut dated = false;
        for part in &parts {
            // Rendered dates are lowercased (`%b` is `Nov`); literal text must be lowercase as
            // given, rather than changed behind the user's back.
            if let Part::Text(text) = part
                && literal_has_uppercase(text)
            {
                return Err(format!("{text:?}: an index name is lowercase only"));
            }
            if let Part::Text(text) = part
                && text.contains('%')
            {
                dated = true;
                let items = chrono::format::StrftimeItems::new(text);
                if items
                    .into_iter()
                    .any(|item| matches!(item, chrono::format::Item::Error))
                {
                    return Err(format!(
                        "{text:?} has a strftime field chrono does not know"
                    ));
                }
            }
        }
        let template = IndexTemplate { parts, dated };
        let mut sample = String::new();
        template.render_with(
            Some(&DateTime::<Utc>::UNIX_EPOCH),
            |_| Some("x"),
            &mut sample,
        );
        check_index_name(&sample)?;
        Ok(template)
    }

    /// The pattern of every index this template names (`logs-%Y.%m.%d` → `logs-*`), for the
    /// index template's `index_patterns`.
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) if self.dated => match text.find('%') {
                    Some(at) => {
                        out.push_str(&text[..at]);
                        out.push('*');
                        return out;
                    }
                    None => out.push_str(text),
                },
                Part::Text(text) => out.push_str(text),
                Part::Field(_) => {
                    out.push('*');
                    return out;
                }
            }
        }
        out
    }

    /// Whether rendering needs the record's fields (a date or a `{field}`).
    fn reads_record(&self) -> bool {
        self.dated || self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// Appends the index of the record `doc` (its JSON) received at `received_at_us` to `out`.
    ///
    /// # Errors
    /// When the template needs the record's fields and `doc` is not a JSON object.
    pub fn render(
        &self,
        doc: &[u8],
        received_at_us: i64,
        out: &mut String,
    ) -> Result<(), NotADocument> {
        if !self.reads_record() {
            self.render_with(None, |_| None, out);
            return Ok(());
        }
        let fields: std::collections::HashMap<Cow<'_, str>, FieldValue<'_>> =
            serde_json::from_slice(doc).map_err(|e| NotADocument(e.to_string()))?;
        let date = fields
            .get("timestamp")
            .and_then(|t| match t {
                FieldValue::Text(t) => DateTime::parse_from_rfc3339(t).ok(),
                FieldValue::Other(_) => None,
            })
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| DateTime::<Utc>::from_timestamp_micros(received_at_us));
        self.render_with(
            date.as_ref(),
            |name| match fields.get(name) {
                Some(FieldValue::Text(text)) => Some(text),
                _ => None,
            },
            out,
        );
        Ok(())
    }

    fn render_with<'a>(
        &self,
        date: Option<&DateTime<Utc>>,
        field: impl Fn(&str) -> Option<&'a str>,
        out: &mut String,
    ) {
        use std::fmt::Write as _;
        for part in &self.parts {
            match part {
                Part::Text(text) if self.dated => match date {
                    Some(date) => {
                        let start = out.len();
                        let _ = write!(out, "{}", date.format(text));
                        out[start..].make_ascii_lowercase();
                    }
                    None => out.push_str("none"),
                },
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => match field(name) {
                    Some(value) if !value.is_empty() => push_sanitized(value, out),
                    _ => out.push_str("none"),
                },
            }
        }
    }
}

/// A top-level value of a record: its text when a string, else skipped.
#[derive(Deserialize)]
#[serde(untagged)]
enum FieldValue<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

/// Appends `value` as it can stand in an index name: ASCII letters lowercased, digits, `-`,
/// `_` and `.` kept, anything else `_`; at most [`MAX_FIELD_BYTES`].
fn push_sanitized(value: &str, out: &mut String) {
    for b in value.bytes().take(MAX_FIELD_BYTES) {
        out.push(match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => b as char,
            b'A'..=b'Z' => b.to_ascii_lowercase() as char,
            _ => '_',
        });
    }
}

/// Whether `text` has an uppercase letter outside its strftime fields (`%Y`).
fn literal_has_uppercase(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            chars.next();
        } else if c.is_uppercase() {
            return true;
        }
    }
    false
}

/// Elasticsearch's rules for an index name.
fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name == "." || name == ".." {
        return Err(format!("{name:?} is not an index name"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(format!(
            "{name:?}: an index name cannot start with '-', '_' or '+'"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_ascii_uppercase() || " \\/*?\"<>|,#:".contains(*c) || c.is_control())
    {
        return Err(format!(
            "{name:?}: an index name cannot hold {c:?} (lowercase only)"
        ));
    }
    Ok(())
}

/// The `_id` of `doc`: 32 lowercase hex digits (see the module doc).
pub fn document_id(doc: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, doc);
    let mut hex = [0u8; 32];
    for (i, byte) in digest.as_ref()[..16].iter().enumerate() {
        hex[2 * i] = HEX[usize::from(byte >> 4)];
        hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, doc: &str, received_at_us: i64) -> String {
        let template = IndexTemplate::compile(template).unwrap();
        let mut out = String::new();
        template
            .render(doc.as_bytes(), received_at_us, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn the_date_is_the_events_in_utc_else_the_receipt() {
        let doc = r#"{"timestamp":"2026-11-30T23:30:00.5-02:00","message":"m"}"#;
        assert_eq!(render("logs-%Y.%m.%d", doc, 0), "logs-2026.12.01");
        // No timestamp, or one that does not parse: the receipt time (2021-01-01T00:00:00Z).
        let received = 1_609_459_200_000_000;
        assert_eq!(
            render("logs-%Y.%m.%d", r#"{"message":"m"}"#, received),
            "logs-2021.01.01"
        );
        assert_eq!(
            render(
                "logs-%Y.%m.%d",
                r#"{"timestamp":"Nov 30 10:00:00"}"#,
                received
            ),
            "logs-2021.01.01"
        );
    }

    #[test]
    fn fields_are_sanitized_and_missing_ones_are_none() {
        let doc = r#"{"app":"Web Server/2","host":"h1","severity":3}"#;
        assert_eq!(render("logs-{app}-%Y", doc, 0), "logs-web_server_2-1970");
        assert_eq!(render("logs-{procid}", doc, 0), "logs-none");
        assert_eq!(render("logs-{severity}", doc, 0), "logs-none");
        assert_eq!(render("fixed", "not json", 0), "fixed");
        let template = IndexTemplate::compile("logs-{app}").unwrap();
        assert!(template.render(b"not json", 0, &mut String::new()).is_err());
    }

    #[test]
    fn bad_templates_are_refused_at_load() {
        for (bad, why) in [
            ("Logs-%Y", "lowercase only"),
            ("logs-{app", "without its '}'"),
            ("logs-{a b}", "a field is a name"),
            ("_logs", "cannot start"),
            ("logs %Y", "cannot hold ' '"),
            ("logs-%Q", "strftime field chrono does not know"),
        ] {
            let e = IndexTemplate::compile(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn patterns_cover_every_index_the_template_names() {
        let pattern = |t: &str| IndexTemplate::compile(t).unwrap().pattern();
        assert_eq!(pattern("logs-%Y.%m.%d"), "logs-*");
        assert_eq!(pattern("logs-{app}-%Y"), "logs-*");
        assert_eq!(pattern("fixed"), "fixed");
    }

    #[test]
    fn ids_are_stable_and_tell_records_apart() {
        let a = document_id(b"{\"message\":\"a\"}");
        assert_eq!(a, document_id(b"{\"message\":\"a\"}"));
        assert_ne!(a, document_id(b"{\"message\":\"b\"}"));
        assert!(
            a.iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
