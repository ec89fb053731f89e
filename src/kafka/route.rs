//! Routes: the Kafka message key and topic of each record, rendered from templates over the
//! fields of the parsed record. The gateway's shards render them into each batch; the agent's
//! `kafka` shipper renders the same, so a consumer cannot tell which way a record came.
//!
//! ```
//! use logtail::parse::{parse, Format, LegacyZone, ParseContext};
//! use logtail::kafka::route::Route;
//!
//! let route = Route::new("{host}", Some("syslog.{facility}.{app}")).unwrap();
//! let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0));
//! let record = parse(b"<34>Nov 21 02:53:47 web-1 sshd[42]: hi", Format::Auto, &mut ctx);
//! let (mut key, mut topic) = (Vec::new(), Vec::new());
//! route.render_key(&record, "udp:5514", &mut key);
//! assert!(route.render_topic(&record, "udp:5514", &mut topic));
//! assert_eq!((&key[..], &topic[..]), (&b"web-1"[..], &b"syslog.auth.sshd"[..]));
//! ```
//!
//! # Templates
//! A [`Template`] is literal text with fields in braces: `logs.{app}`, `{host}`, `fixed-topic`.
//! The fields are
//!
//! * `{host}`: HOSTNAME; `{app}`: APP-NAME (the RFC 3164 tag, the Cisco mnemonic);
//!   `{procid}`: PROCID (the RFC 3164 `[pid]`); `{msgid}`: MSGID (the Cisco sequence number).
//! * `{facility}`: the facility's name: `kern` `user` `mail` `daemon` `auth` `syslog` `lpr`
//!   `news` `uucp` `cron` `authpriv` `ftp` `ntp` `security` `console` `solaris-cron`
//!   `local0`..`local7`.
//! * `{severity}`: the severity's name: `emerg` `alert` `crit` `err` `warning` `notice` `info`
//!   `debug`.
//! * `{source}`: the listener the record came in on, e.g. `tcp:5514` (the JSON `source`).
//! * `{topic}`: the `topic` of the `logtail agent` collect entry the line comes from (its
//!   structured data `[logtail@32473 topic="..."]`); so `topic_template = "{topic}"` with a
//!   fallback `topic` routes agents' lines per collect entry.
//!
//! A brace that is not part of a field (`{`, `}`, `{a{b}`) is an error, and there is no
//! escape for a literal brace: Kafka topics cannot contain one, and keys have not needed one.
//!
//! # Invariants
//! * Rendering never allocates beyond the caller's buffer growing, and never panics, whatever
//!   the record holds.
//! * A template that refers to a field the record lacks (or has empty) renders nothing: a
//!   key is then empty (a Kafka null key), a topic is the sink's fallback topic.
//! * A rendered topic is always a legal Kafka topic name: 1 to 249 bytes of `[A-Za-z0-9._-]`,
//!   neither `.` nor `..`. Each other byte of a field value becomes `_` (so a multi-byte UTF-8
//!   character becomes several); a result still not legal (too long, `.`, `..`) renders
//!   nothing, i.e. the fallback topic. Literal text of a topic template is checked once, by
//!   [`Route::new`]: an illegal character there is a configuration error, not a fallback.

use std::fmt;

use crate::agent_protocol::AGENT_SD_ID;
use crate::parse::Record;
use crate::setting::Refusal;

/// The longest legal Kafka topic name, in bytes (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_LEN: usize = 249;

/// Syslog facility names by number (RFC 5424 §6.2.1 numbering; names as rsyslog and
/// syslog-ng print them).
const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Syslog severity names by number (RFC 5424 §6.2.1).
const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// A record field a template can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateField {
    Host,
    App,
    ProcId,
    MsgId,
    Facility,
    Severity,
    Source,
    /// The `topic` the agent attaches to the lines of a collect entry, in its structured data
    /// `[logtail@32473 topic="..."]` (see [`crate::agent_protocol::AGENT_SD_ID`]).
    Topic,
}

impl TemplateField {
    const ALL: [TemplateField; 8] = [
        TemplateField::Host,
        TemplateField::App,
        TemplateField::ProcId,
        TemplateField::MsgId,
        TemplateField::Facility,
        TemplateField::Severity,
        TemplateField::Source,
        TemplateField::Topic,
    ];

    fn name(self) -> &'static str {
        match self {
            TemplateField::Host => "host",
            TemplateField::App => "app",
            TemplateField::ProcId => "procid",
            TemplateField::MsgId => "msgid",
            TemplateField::Facility => "facility",
            TemplateField::Severity => "severity",
            TemplateField::Source => "source",
            TemplateField::Topic => "topic",
        }
    }

    fn from_name(name: &str) -> Option<TemplateField> {
        TemplateField::ALL
            .into_iter()
            .find(|field| field.name() == name)
    }

    /// The field's text in `record`; `None` when the record lacks it or it is empty.
    fn value<'a>(self, record: &Record<'a>, source: &'a str) -> Option<&'a [u8]> {
        let value = match self {
            TemplateField::Host => record.host?,
            TemplateField::App => record.app?,
            TemplateField::ProcId => record.procid?,
            TemplateField::MsgId => record.msgid?,
            TemplateField::Facility => FACILITY_NAMES
                .get(usize::from(record.facility?))?
                .as_bytes(),
            TemplateField::Severity => SEVERITY_NAMES
                .get(usize::from(record.severity?))?
                .as_bytes(),
            TemplateField::Source => source.as_bytes(),
            // The raw, escaped value: topic names have no byte that needs escaping, and any
            // other byte becomes `_` when rendered as a topic.
            TemplateField::Topic => {
                record
                    .structured_data?
                    .elements()
                    .find(|element| element.id() == AGENT_SD_ID.as_bytes())?
                    .params()
                    .find(|&(name, _)| name == b"topic")?
                    .1
            }
        };
        (!value.is_empty()).then_some(value)
    }
}

/// `{host}, {app}, ...`: the fields a template may use, for error messages.
fn allowed_fields() -> String {
    let names: Vec<String> = TemplateField::ALL
        .iter()
        .map(|field| format!("{{{}}}", field.name()))
        .collect();
    names.join(", ")
}

/// Why a template (or a route's topic template) is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is the empty string.
    #[error("the template is empty")]
    Empty,
    /// A `{...}` names no known field.
    #[error(
        "template {template:?}: unknown field {{{field}}}; the fields are {}",
        allowed_fields()
    )]
    UnknownField { template: String, field: String },
    /// A `{` has no matching `}` (or another `{` comes first).
    #[error("template {template:?}: the '{{' at byte {at} is not closed by a '}}'")]
    UnclosedBrace { template: String, at: usize },
    /// A `}` closes no `{`.
    #[error("template {template:?}: the '}}' at byte {at} has no '{{' before it")]
    UnopenedBrace { template: String, at: usize },
    /// The literal text of a topic template holds a character Kafka does not allow.
    #[error(
        "topic template {template:?}: {character:?} cannot be part of a Kafka topic name \
         (allowed: A-Z a-z 0-9 . _ -)"
    )]
    IllegalTopicCharacter { template: String, character: char },
    /// A topic template whose every rendering would be illegal: longer than 249 bytes, or
    /// `.` or `..` when it has no field.
    #[error(
        "topic template {template:?} can never render a legal Kafka topic name \
         (at most {MAX_TOPIC_LEN} bytes, not \".\" or \"..\")"
    )]
    IllegalTopic { template: String },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<[u8]>),
    TemplateField(TemplateField),
}

/// Text with record fields in braces, e.g. `logs.{app}`; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: Box<str>,
    parts: Box<[Part]>,
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// When `text` is empty, names an unknown field, or has a brace outside a field.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut literal_start = 0;
        let mut at = 0;
        while let Some(offset) = text[at..].find(['{', '}']) {
            let brace = at + offset;
            if text.as_bytes()[brace] == b'}' {
                return Err(TemplateError::UnopenedBrace {
                    template: text.to_owned(),
                    at: brace,
                });
            }
            let name_start = brace + 1;
            let name_end = match text[name_start..].find(['{', '}']) {
                Some(len) if text.as_bytes()[name_start + len] == b'}' => name_start + len,
                _ => {
                    return Err(TemplateError::UnclosedBrace {
                        template: text.to_owned(),
                        at: brace,
                    });
                }
            };
            let name = &text[name_start..name_end];
            let field =
                TemplateField::from_name(name).ok_or_else(|| TemplateError::UnknownField {
                    template: text.to_owned(),
                    field: name.to_owned(),
                })?;
            if literal_start < brace {
                parts.push(Part::Literal(text.as_bytes()[literal_start..brace].into()));
            }
            parts.push(Part::TemplateField(field));
            at = name_end + 1;
            literal_start = at;
        }
        if literal_start < text.len() {
            parts.push(Part::Literal(text.as_bytes()[literal_start..].into()));
        }
        Ok(Template {
            text: text.into(),
            parts: parts.into(),
        })
    }

    /// The template of one field alone, e.g. `{host}`.
    fn field(field: TemplateField) -> Template {
        Template {
            text: format!("{{{}}}", field.name()).into(),
            parts: Box::new([Part::TemplateField(field)]),
        }
    }

    /// True when the template has no field: it renders the same text for every record.
    pub fn is_static(&self) -> bool {
        self.parts
            .iter()
            .all(|part| matches!(part, Part::Literal(_)))
    }

    /// Appends the template rendered for `record` (which came in on `source`) to `out`.
    /// Returns false, leaving `out` as it was, when a field it refers to is missing or empty.
    fn render(&self, record: &Record<'_>, source: &str, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text),
                Part::TemplateField(field) => match field.value(record, source) {
                    Some(value) => out.extend_from_slice(value),
                    None => {
                        out.truncate(start);
                        return false;
                    }
                },
            }
        }
        true
    }

    /// Bytes of literal text and number of fields.
    fn literal_len_and_fields(&self) -> (usize, usize) {
        self.parts
            .iter()
            .fold((0, 0), |(len, fields), part| match part {
                Part::Literal(text) => (len + text.len(), fields),
                Part::TemplateField(_) => (len, fields + 1),
            })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// True for the bytes Kafka allows in a topic name.
fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// True when `name` (made of topic bytes only) is a legal topic name.
fn is_legal_topic_len_and_name(name: &[u8]) -> bool {
    (1..=MAX_TOPIC_LEN).contains(&name.len()) && name != b"." && name != b".."
}

/// How a record's Kafka key and topic are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None`: every record has a null key.
    key: Option<Template>,
    /// `None`: every record goes to the sink's fixed topic, and nothing is rendered.
    topic: Option<Template>,
}

impl Route {
    /// A route whose key is rendered from `key` (`""`: no key, a Kafka null key) and whose
    /// topic is rendered from `topic_template` (`None`: the sink's fixed topic).
    ///
    /// # Errors
    /// When a template does not parse ([`Template::parse`]), or the literal text of
    /// `topic_template` cannot be part of a legal Kafka topic name.
    pub fn new(key: &str, topic_template: Option<&str>) -> Result<Route, TemplateError> {
        let key = match key {
            "" => None,
            text => Some(Template::parse(text)?),
        };
        let topic = topic_template.map(parse_topic_template).transpose()?;
        Ok(Route { key, topic })
    }

    /// Appends the key of `record` (which came in on `source`) to `out`; appends nothing (a
    /// null key) when the route has no key or a field of the key template is missing.
    pub fn render_key(&self, record: &Record<'_>, source: &str, out: &mut Vec<u8>) {
        if let Some(key) = &self.key {
            key.render(record, source, out);
        }
    }

    /// Appends the topic of `record` (which came in on `source`) to `out`, a legal Kafka
    /// topic name. Returns false, leaving `out` as it was, when the route has no topic
    /// template (the sink's fixed topic), a field is missing, or the result is not legal
    /// (the sink's fallback topic).
    pub fn render_topic(&self, record: &Record<'_>, source: &str, out: &mut Vec<u8>) -> bool {
        let Some(topic) = &self.topic else {
            return false;
        };
        let start = out.len();
        if !topic.render(record, source, out) {
            return false;
        }
        // The literal text is all topic bytes (checked by `Route::new`): only the field
        // values change here.
        let rendered = &mut out[start..];
        for b in rendered.iter_mut().filter(|b| !is_topic_byte(**b)) {
            *b = b'_';
        }
        if !is_legal_topic_len_and_name(rendered) {
            out.truncate(start);
            return false;
        }
        true
    }
}

/// The `topic` setting: the fixed topic of a producer, and the fallback of its topic
/// template. A legal Kafka topic name, checked when the configuration is read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct TopicName(Box<str>);

impl TopicName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TopicName {
    /// `logs`, the default topic.
    pub fn logs() -> TopicName {
        TopicName("logs".into())
    }
}

impl std::str::FromStr for TopicName {
    type Err = Refusal;

    /// # Errors
    /// When `text` is not a legal Kafka topic name (a template included: those go in
    /// `topic_template`).
    fn from_str(text: &str) -> Result<TopicName, Refusal> {
        if text.contains(['{', '}']) || parse_topic_template(text).is_err() {
            return Err(Refusal(format!(
                "{text:?} is not a Kafka topic name: 1 to 249 of A-Z a-z 0-9 . _ - (templates \
                 go in topic_template)"
            )));
        }
        Ok(TopicName(text.into()))
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `key` setting: the template of the message key, compiled when the configuration is
/// read; empty for no key (a Kafka null key).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct KeyTemplate(Option<Template>);

impl KeyTemplate {
    /// `{host}`: the default key, so that a host's records keep their order.
    pub fn host() -> KeyTemplate {
        KeyTemplate(Some(Template::field(TemplateField::Host)))
    }
}

impl std::str::FromStr for KeyTemplate {
    type Err = Refusal;

    /// # Errors
    /// When `text` does not parse ([`Template::parse`]).
    fn from_str(text: &str) -> Result<KeyTemplate, Refusal> {
        unless_empty(text, Template::parse).map(KeyTemplate)
    }
}

/// The `topic_template` setting: a topic per record, compiled when the configuration is read;
/// empty for none (every record goes to the fixed topic).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct TopicTemplate(Option<Template>);

impl TopicTemplate {
    /// `{topic}`: the agent collect entry's `topic`.
    pub fn agent_topic() -> TopicTemplate {
        TopicTemplate(Some(Template::field(TemplateField::Topic)))
    }
}

impl std::str::FromStr for TopicTemplate {
    type Err = Refusal;

    /// # Errors
    /// When `text` does not parse, or its literal text cannot be part of a legal topic name.
    fn from_str(text: &str) -> Result<TopicTemplate, Refusal> {
        unless_empty(text, parse_topic_template).map(TopicTemplate)
    }
}

/// `None` for the empty string (the setting is off), else `parse(text)`.
fn unless_empty(
    text: &str,
    parse: fn(&str) -> Result<Template, TemplateError>,
) -> Result<Option<Template>, Refusal> {
    match text {
        "" => Ok(None),
        text => parse(text).map(Some).map_err(|e| Refusal(e.to_string())),
    }
}

/// `TryFrom<String>` through `FromStr`, for `#[serde(try_from = "String")]`.
macro_rules! try_from_string {
    ($($setting:ty),*) => {$(
        impl TryFrom<String> for $setting {
            type Error = Refusal;

            fn try_from(text: String) -> Result<$setting, Refusal> {
                text.parse()
            }
        }
    )*};
}

try_from_string!(TopicName, KeyTemplate, TopicTemplate);
crate::setting::serialize_as_text!(TopicName, KeyTemplate, TopicTemplate);

/// The template as written; empty when off.
macro_rules! display_optional_template {
    ($($setting:ty),*) => {$(
        impl fmt::Display for $setting {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match &self.0 {
                    Some(template) => template.fmt(f),
                    None => Ok(()),
                }
            }
        }
    )*};
}

display_optional_template!(KeyTemplate, TopicTemplate);

impl Route {
    /// The route of compiled `key` and `topic_template` settings.
    pub fn of(key: &KeyTemplate, topic_template: &TopicTemplate) -> Route {
        Route {
            key: key.0.clone(),
            topic: topic_template.0.clone(),
        }
    }

    /// True when the route renders nothing: no key and no topic template.
    pub fn is_empty(&self) -> bool {
        self.key.is_none() && self.topic.is_none()
    }
}

/// Parses a topic template and checks that its literal text can be part of a legal topic.
fn parse_topic_template(text: &str) -> Result<Template, TemplateError> {
    let template = Template::parse(text)?;
    for part in &template.parts {
        if let Part::Literal(literal) = part
            && let Some(bad) = literal.iter().position(|&b| !is_topic_byte(b))
        {
            // Literal parts are whole characters of `text`, so the bad byte starts one.
            let rest = std::str::from_utf8(&literal[bad..]).unwrap_or_default();
            return Err(TemplateError::IllegalTopicCharacter {
                template: text.to_owned(),
                character: rest.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER),
            });
        }
    }
    // Every field renders at least one byte, so this is the shortest possible rendering.
    let (literal_len, fields) = template.literal_len_and_fields();
    let shortest_is_legal = if template.is_static() {
        is_legal_topic_len_and_name(text.as_bytes())
    } else {
        literal_len + fields <= MAX_TOPIC_LEN
    };
    if !shortest_is_legal {
        return Err(TemplateError::IllegalTopic {
            template: text.to_owned(),
        });
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::parse::{Format, LegacyZone, ParseContext, parse};

    const SOURCE: &str = "tcp:5514";

    fn record(input: &[u8]) -> Record<'_> {
        let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0));
        parse(input, Format::Auto, &mut ctx)
    }

    /// A record with every field set.
    fn full_record() -> Record<'static> {
        record(b"<165>1 2026-11-21T02:53:47Z web-1.example.com nginx 4242 REQ - hello")
    }

    fn render(text: &str, record: &Record<'_>) -> Option<String> {
        let mut out = b"prefix|".to_vec();
        let rendered = Template::parse(text)
            .unwrap()
            .render(record, SOURCE, &mut out);
        let text = String::from_utf8(out).unwrap();
        let rest = text.strip_prefix("prefix|").expect("prefix kept");
        assert_eq!(
            rendered,
            !rest.is_empty(),
            "false exactly when nothing appended"
        );
        rendered.then(|| rest.to_owned())
    }

    fn topic(route: &Route, record: &Record<'_>) -> Option<String> {
        let mut out = b"prefix|".to_vec();
        let rendered = route.render_topic(record, SOURCE, &mut out);
        let rest = String::from_utf8(out[7..].to_vec()).unwrap();
        assert_eq!(&out[..7], b"prefix|");
        assert_eq!(
            rendered,
            !rest.is_empty(),
            "false exactly when nothing appended"
        );
        rendered.then_some(rest)
    }

    fn key(route: &Route, record: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        route.render_key(record, SOURCE, &mut out);
        out
    }

    #[test]
    fn every_field_renders_its_text() {
        let r = full_record();
        let rendered = render(
            "{host} {app} {procid} {msgid} {facility} {severity} {source}",
            &r,
        );
        assert_eq!(
            rendered.as_deref(),
            Some("web-1.example.com nginx 4242 REQ local4 notice tcp:5514")
        );
    }

    #[test]
    fn topic_is_the_agent_entry_topic_from_its_structured_data() {
        let agent_line = record(
            b"<14>1 2026-11-21T02:53:47Z web1 app - - [other@1 topic=\"no\"][logtail@32473 \
              entry=\"e\" file=\"/x\" topic=\"logs.web\"] hello",
        );
        assert_eq!(render("{topic}", &agent_line).as_deref(), Some("logs.web"));
        let route = Route::new("", Some("{topic}")).unwrap();
        assert_eq!(topic(&route, &agent_line).as_deref(), Some("logs.web"));
        // No agent structured data, or no topic in it: the fallback topic.
        assert_eq!(topic(&route, &full_record()), None);
        let no_topic = record(b"<14>1 - web1 app - - [logtail@32473 entry=\"e\"] hello");
        assert_eq!(topic(&route, &no_topic), None);
    }

    #[test]
    fn literals_around_and_between_fields_are_kept() {
        let r = full_record();
        assert_eq!(render("logs.{app}", &r).as_deref(), Some("logs.nginx"));
        assert_eq!(
            render("{app}-{severity}.x", &r).as_deref(),
            Some("nginx-notice.x")
        );
        assert_eq!(render("{app}{app}", &r).as_deref(), Some("nginxnginx"));
        assert_eq!(render("fixed-topic", &r).as_deref(), Some("fixed-topic"));
    }

    #[test]
    fn every_facility_and_severity_has_its_syslog_name() {
        let mut r = full_record();
        let mut facilities = Vec::new();
        for facility in 0..24 {
            r.facility = Some(facility);
            facilities.push(render("{facility}", &r).unwrap());
        }
        assert_eq!(
            facilities.join(" "),
            "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp security \
             console solaris-cron local0 local1 local2 local3 local4 local5 local6 local7"
        );
        let mut severities = Vec::new();
        for severity in 0..8 {
            r.severity = Some(severity);
            severities.push(render("{severity}", &r).unwrap());
        }
        assert_eq!(
            severities.join(" "),
            "emerg alert crit err warning notice info debug"
        );
    }

    #[test]
    fn missing_empty_or_out_of_range_field_renders_nothing() {
        // RFC 5424 NILVALUEs: no host, app, procid, msgid.
        let r = record(b"<13>1 - - - - - - m");
        for text in ["{host}", "a.{app}", "{procid}", "{msgid}.b"] {
            assert_eq!(render(text, &r), None, "{text}");
        }
        assert_eq!(
            render("{facility}.{severity}", &r).as_deref(),
            Some("user.notice")
        );
        let mut r = full_record();
        r.host = Some(b"");
        assert_eq!(render("x{host}", &r), None);
        r.facility = Some(24);
        r.severity = Some(8);
        assert_eq!(render("{facility}", &r), None);
        assert_eq!(render("{severity}", &r), None);
        r.facility = None;
        assert_eq!(render("{facility}", &r), None);
        let mut out = Vec::new();
        assert!(
            !Template::parse("{source}")
                .unwrap()
                .render(&r, "", &mut out)
        );
        assert_eq!(out, b"");
    }

    #[test]
    fn static_templates_have_no_field() {
        assert!(Template::parse("fixed-topic").unwrap().is_static());
        assert!(!Template::parse("logs.{app}").unwrap().is_static());
        assert!(!Template::parse("{host}").unwrap().is_static());
    }

    #[test]
    fn template_errors_name_the_problem() {
        assert_eq!(Template::parse(""), Err(TemplateError::Empty));
        let unknown = Template::parse("logs.{hostname}").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "template \"logs.{hostname}\": unknown field {hostname}; the fields are {host}, \
             {app}, {procid}, {msgid}, {facility}, {severity}, {source}, {topic}"
        );
        assert_eq!(
            Template::parse("{}"),
            Err(TemplateError::UnknownField {
                template: "{}".into(),
                field: "".into()
            })
        );
        let unclosed = Template::parse("logs.{app").unwrap_err();
        assert_eq!(
            unclosed.to_string(),
            "template \"logs.{app\": the '{' at byte 5 is not closed by a '}'"
        );
        assert_eq!(
            Template::parse("{a{app}}"),
            Err(TemplateError::UnclosedBrace {
                template: "{a{app}}".into(),
                at: 0
            })
        );
        let unopened = Template::parse("{app}}").unwrap_err();
        assert_eq!(
            unopened.to_string(),
            "template \"{app}}\": the '}' at byte 5 has no '{' before it"
        );
        assert_eq!(
            Template::parse("{{app}}"),
            Err(TemplateError::UnclosedBrace {
                template: "{{app}}".into(),
                at: 0
            })
        );
    }

    #[test]
    fn display_is_the_template_text() {
        assert_eq!(
            Template::parse("logs.{app}").unwrap().to_string(),
            "logs.{app}"
        );
    }

    #[test]
    fn empty_key_template_means_null_key_and_no_topic_template_means_fixed_topic() {
        let route = Route::new("", None).unwrap();
        let r = full_record();
        assert_eq!(key(&route, &r), b"");
        assert_eq!(topic(&route, &r), None);
    }

    #[test]
    fn key_is_raw_bytes_and_null_when_a_field_is_missing() {
        let route = Route::new("{host}/{procid}", None).unwrap();
        assert_eq!(key(&route, &full_record()), b"web-1.example.com/4242");
        let mut r = full_record();
        (r.host, r.procid) = (Some("hé\x00/".as_bytes()), None);
        assert_eq!(
            key(&Route::new("{host}", None).unwrap(), &r),
            "hé\x00/".as_bytes()
        );
        assert_eq!(key(&route, &r), b"");
    }

    #[test]
    fn topic_field_bytes_outside_kafka_charset_become_underscores() {
        let route = Route::new("", Some("logs.{app}.{host}")).unwrap();
        let mut r = full_record();
        (r.app, r.host) = (Some(&b"postfix/smtpd"[..]), Some("hé x".as_bytes()));
        assert_eq!(
            topic(&route, &r).as_deref(),
            Some("logs.postfix_smtpd.h___x")
        );
    }

    #[test]
    fn illegal_rendered_topic_falls_back() {
        let route = Route::new("", Some("{app}")).unwrap();
        let mut r = full_record();
        for (app, expected) in [
            (&b"."[..], None),
            (b"..", None),
            (b"...", Some("...")),
            (b"/", Some("_")),
        ] {
            r.app = Some(app);
            assert_eq!(topic(&route, &r).as_deref(), expected);
        }
        let longest = [b'a'; MAX_TOPIC_LEN];
        r.app = Some(&longest);
        assert_eq!(topic(&route, &r).map(|t| t.len()), Some(MAX_TOPIC_LEN));
        let too_long = [b'a'; MAX_TOPIC_LEN + 1];
        r.app = Some(&too_long);
        assert_eq!(topic(&route, &r), None);
        r.app = None;
        assert_eq!(topic(&route, &r), None);
    }

    #[test]
    fn topic_template_literals_must_be_legal() {
        assert_eq!(
            Route::new("", Some("logs/{app}")),
            Err(TemplateError::IllegalTopicCharacter {
                template: "logs/{app}".into(),
                character: '/'
            })
        );
        assert_eq!(
            Route::new("", Some("{app}é")).unwrap_err().to_string(),
            "topic template \"{app}é\": 'é' cannot be part of a Kafka topic name \
             (allowed: A-Z a-z 0-9 . _ -)"
        );
        for never_legal in [".", "..", &"a".repeat(MAX_TOPIC_LEN + 1)] {
            assert_eq!(
                Route::new("", Some(never_legal)),
                Err(TemplateError::IllegalTopic {
                    template: never_legal.to_owned()
                })
            );
        }
        let long_literal = format!("{}{{app}}", "a".repeat(MAX_TOPIC_LEN));
        assert_eq!(
            Route::new("", Some(&long_literal)),
            Err(TemplateError::IllegalTopic {
                template: long_literal.clone()
            })
        );
        // The key may hold anything.
        assert!(Route::new("a/b é {host}", Some(".{app}")).is_ok());
        assert!(Route::new("", Some(&"a".repeat(MAX_TOPIC_LEN))).is_ok());
    }

    #[test]
    fn static_topic_template_renders_itself() {
        let route = Route::new("", Some("fixed-topic")).unwrap();
        assert_eq!(topic(&route, &record(b"")).as_deref(), Some("fixed-topic"));
    }

    /// A template over every field, with legal literal text around them.
    fn template_text() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            "[A-Za-z0-9._-]{1,4}",
            prop::sample::select(TemplateField::ALL.to_vec())
                .prop_map(|f| format!("{{{}}}", f.name())),
        ];
        prop::collection::vec(part, 1..6).prop_map(|parts| parts.concat())
    }

    fn field_value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..8),
            prop::collection::vec(prop::sample::select(b"a.-_/".to_vec()), 0..300),
        ])
    }

    proptest! {
        #[test]
        fn rendering_never_panics_and_topics_are_always_legal(
            key_text in template_text(),
            topic_text in template_text(),
            host in field_value(),
            app in field_value(),
            procid in field_value(),
            msgid in field_value(),
            facility in any::<Option<u8>>(),
            severity in any::<Option<u8>>(),
            source in "[ -~é]{0,12}",
        ) {
            let Ok(route) = Route::new(&key_text, Some(&topic_text)) else {
                // Only literal text too long for any topic is refused here.
                prop_assert!(topic_text.len() > MAX_TOPIC_LEN || topic_text == "." || topic_text == "..");
                return Ok(());
            };
            let mut r = full_record();
            (r.host, r.app, r.procid, r.msgid) =
                (host.as_deref(), app.as_deref(), procid.as_deref(), msgid.as_deref());
            (r.facility, r.severity) = (facility, severity);
            let mut out = b"kept".to_vec();
            route.render_key(&r, &source, &mut out);
            prop_assert!(out.starts_with(b"kept"));
            let mut out = b"kept".to_vec();
            if route.render_topic(&r, &source, &mut out) {
                let topic = &out[4..];
                prop_assert!(topic.iter().all(|&b| is_topic_byte(b)), "{:?}", topic);
                prop_assert!(is_legal_topic_len_and_name(topic), "{:?}", topic);
            } else {
                prop_assert_eq!(&out[..], b"kept");
            }
        }
    }

    #[test]
    fn settings_compile_once_and_refuse_with_what_is_allowed() {
        assert_eq!(KeyTemplate::host(), "{host}".parse().unwrap());
        assert_eq!(TopicTemplate::agent_topic(), "{topic}".parse().unwrap());
        assert_eq!(TopicName::logs(), "logs".parse().unwrap());
        assert_eq!("".parse::<KeyTemplate>().unwrap(), KeyTemplate::default());
        assert!(Route::of(&KeyTemplate::default(), &TopicTemplate::default()).is_empty());
        assert!(!Route::of(&KeyTemplate::host(), &TopicTemplate::default()).is_empty());
        assert_eq!(
            "logs.{app}".parse::<TopicName>().unwrap_err().0,
            "\"logs.{app}\" is not a Kafka topic name: 1 to 249 of A-Z a-z 0-9 . _ - \
             (templates go in topic_template)"
        );
        assert!("a/b".parse::<TopicName>().is_err());
        assert!("".parse::<TopicName>().is_err());
        assert!(
            "logs.{hostname}"
                .parse::<TopicTemplate>()
                .unwrap_err()
                .0
                .contains("unknown field {hostname}; the fields are {host}")
        );
        assert!("a/{app}".parse::<TopicTemplate>().is_err());
        assert!("{a".parse::<KeyTemplate>().is_err());
    }
}
