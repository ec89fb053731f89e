//! The query language: one grammar for `logtail search`, the HTTP API, the web console and the
//! processing rules. Familiar to Lucene, Kibana and Graylog users.
//!
//! ```
//! use logtail::query::{JsonRecord, Matcher};
//!
//! let matcher = Matcher::compile(r#"host:web-* severity:<=warning "connection reset""#).unwrap();
//! let record = br#"{"severity":3,"host":"web-01","message":"read: Connection reset by peer"}"#;
//! assert!(matcher.is_match(&JsonRecord::new(record)));
//!
//! let error = Matcher::compile("timeout AND (disk OR )").unwrap_err();
//! assert_eq!(error.to_string(), "unexpected ')' at column 22");
//! ```
//!
//! # Grammar
//!
//! ```text
//! query      = [ or ]                           the empty query matches every record
//! or         = and { "OR" and }
//! and        = unary { [ "AND" ] unary }        AND is implicit between terms
//! unary      = ( "NOT" | "-" ) unary            "-" directly before the term: -app:cron
//!            | "(" or ")"
//!            | term
//! term       = field ":" value
//!            | field ":(" group ")"             each value in the group is the field's:
//!                                               host:(web-01 OR db-*) is (host:web-01 OR host:db-*)
//!            | "_exists_:" field                the record has the field, any value
//!            | value                            searches the message
//! group      = like `or`, with values (and comparisons) for terms
//! value      = word | phrase | regex | comparison
//! word       = { char | "\" any | "*" | "?" }   up to a space, "(" or ")"; `*` any run,
//!                                               `?` one character; `\` makes the next one plain
//! phrase     = '"' { any but '"' | "\" any } '"'  no wildcards inside
//! regex      = "/" { any but "/" | "\/" } "/"  Rust regex syntax (crate `regex`), when the
//!                                               closing "/" ends the term; else a word
//!                                               (so `file:/var/log/*` is a path)
//! comparison = ( "<" | "<=" | ">" | ">=" ) ( word | phrase )   a number, or a severity or facility name
//! field      = message | host | app | procid | msgid | source | severity | facility
//!            | parse_error | entry | file | topic | tags | "sd." SD-ID "." PARAM | any other name
//! ```
//!
//! Precedence: `NOT` binds tightest, then `AND`, then `OR`: `a b OR c` is `(a AND b) OR c`.
//! `AND`, `OR` and `NOT` are operators only in capitals (`and` is a word); quote or escape
//! them (`"OR"`, `\OR`) to search for them. Field names are case-insensitive.
//!
//! # What a value means
//!
//! | term | matches when |
//! |---|---|
//! | `timeout` | the message has the word: a case-insensitive occurrence that is not part of a longer token (`timeout` is not found in `timeouts`; `#42` is found in `issue#42`) |
//! | `time*`, `err?r` | a word of the message matches the pattern: `*` any run of non-space characters, `?` one |
//! | `"connection reset"` | the message contains the text, ignoring case (a substring: no word rule) |
//! | `/err(or)? \d+/` | the regex finds a match in the message (case-sensitive unless it starts with `(?i)`) |
//! | `message:…` | as the three forms above, on the message |
//! | `host:web-01`, `app:"postfix/smtpd"` | the whole value equals it, ignoring case |
//! | `host:web-*`, `host:db-?` | the whole value matches the wildcards (`*` any run, `?` one character) |
//! | `host:/^web-\d+$/` | the regex finds a match in the value |
//! | `host:*` | the record has the field (as `_exists_:host`) |
//! | `severity:err`, `severity:3` | the severity is err (3): names emerg, alert, crit, err, warning, notice, info, debug (aliases panic, critical, error, warn, informational) or 0–7 |
//! | `severity:<=warning` | severity warning or worse (0–4): comparisons are on the number |
//! | `facility:local0`, `facility:>=16` | the same with facility names: kern, user, mail, daemon, auth (security), syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, clock, local0–local7, or 0–23 |
//! | `sd.origin.ip:10.0.0.1` | structured data: the PARAM of the SD-ID equals it (any value, if the PARAM repeats); SD-ID is up to the first `.` |
//! | `entry:nginx`, `file:/var/log/*`, `topic:…` | the agent's entry, file path and topic (its `logtail@32473` SD element) |
//! | `tags:prod` | one of the agent's comma-separated tags equals it |
//! | `status:>=500`, `user:alice` | any other field: a top-level key of the record (where processing rules put what they extract); comparisons read its value as a number |
//! | `_exists_:procid` | the record has the field |
//! | `host:(web-01 OR db-*)`, `severity:(<=crit OR debug)` | the field matches the group: `(host:web-01 OR host:db-*)` |
//! | `-host:web-01`, `NOT …` | the term does not match (a record without the field matches `-host:…`) |
//!
//! Case-insensitivity folds ASCII letters; a value with other letters folds them by Unicode
//! simple case folding. A token byte is an ASCII letter, digit or `_`, or any byte of a non-ASCII
//! character. Values are matched as the record stores them: a byte that was not UTF-8 is the
//! text `\xNN` (see *Records* in README). A number field (severity, facility) matched as text
//! is its decimal digits.
//!
//! # Errors
//!
//! A bad query is a [`QueryError`]: what is wrong and its 1-based column, counted in characters
//! (`unexpected ')' at column 17`, `unknown severity 'warm' at column 10: use emerg, alert,
//! crit, err, warning, notice, info, debug or 0-7`). Compiling never panics.
//!
//! # Evaluation
//!
//! [`Matcher::is_match`] reads a record through [`FieldAccess`], implemented for a stored JSON
//! record ([`JsonRecord`], the object `logtail read` prints) and for a parsed record
//! ([`ParsedRecord`]). Needles are lowercased, regexes built and field names resolved once at
//! compile time; matching a record does not allocate (a JSON string with escapes is unescaped
//! into a reused per-thread buffer).
//!
//! Over many stored records at once (a piece of a store block), [`Matcher::candidates`] first
//! searches the whole piece for literals every match contains (a word, a phrase, a value, a
//! regex's prefixes or suffixes) and hands over only the records around the hits, to be
//! matched exactly: ripgrep's way, sound against JSON escapes (see `prefilter.rs`).
//!
//! # On Elasticsearch
//!
//! [`elasticsearch_query`] translates a query into Elasticsearch's query DSL for `[search]
//! backend = "elasticsearch"` (fields read as the Elasticsearch sink's index template maps
//! them); which forms map exactly and which approximately is in its module and in README.

mod compile;
mod elasticsearch;
mod json;
mod parsed;
mod prefilter;
mod syntax;
mod text;

#[cfg(test)]
mod tests;

pub use compile::Matcher;
pub use elasticsearch::{elasticsearch_aggregatable_field, elasticsearch_query};
pub use json::JsonRecord;
pub use parsed::ParsedRecord;
pub use prefilter::Candidates;
pub use syntax::Comparison;

/// A field a query term names, resolved at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Message,
    Host,
    App,
    Procid,
    Msgid,
    Source,
    ParseError,
    Facility,
    Severity,
    /// A PARAM of an SD-ID in the structured data.
    Sd {
        id: Box<str>,
        param: Box<str>,
    },
    /// Any other field: a top-level key of the record.
    Other(Box<str>),
}

/// Read access to a record's fields, for [`Matcher::is_match`].
pub trait FieldAccess {
    /// Calls `visit` with each value of `field` (none when the record lacks it; several for a
    /// repeated SD-PARAM or a JSON array), as the text a user searches, until `visit` returns
    /// true. Returns whether it did. Numbers are their decimal text.
    fn any_value(&self, field: &Field, visit: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

/// A query that does not compile: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at column {column}{hint}", hint = kind.hint())]
pub struct QueryError {
    /// 1-based, in characters (not bytes); one past the last character for "unexpected end".
    pub column: usize,
    pub kind: QueryErrorKind,
}

/// What is wrong with a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryErrorKind {
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("unexpected end of query")]
    UnexpectedEnd,
    #[error("unclosed '('")]
    Unclosed,
    #[error("'-' must come right before a term")]
    LoneMinus,
    #[error("unterminated quoted text")]
    UnterminatedQuote,
    #[error("nothing after '\\'")]
    TrailingBackslash,
    #[error("missing value after '{0}:'")]
    MissingValue(String),
    #[error("wildcard in a field name")]
    WildcardInField,
    #[error("wildcard in a comparison")]
    WildcardInComparison,
    #[error("'_exists_:' needs a field name")]
    ExistsNeedsField,
    #[error("'{0}' is not a structured data field")]
    BadSdField(String),
    #[error("'{0}' is not a number")]
    NotANumber(String),
    #[error("unknown {what} '{value}'")]
    UnknownCode { what: &'static str, value: String },
    #[error("invalid regex ({0})")]
    BadRegex(String),
    #[error("parentheses and NOTs nested too deep")]
    TooDeep,
    #[error("value too large to search for")]
    ValueTooLarge,
    /// With `[search] backend = "elasticsearch"`: a term the index cannot answer.
    #[error("{0} cannot be searched on Elasticsearch")]
    NotOnElasticsearch(String),
}

impl QueryErrorKind {
    /// Advice appended after the column.
    fn hint(&self) -> &'static str {
        match self {
            QueryErrorKind::UnknownCode {
                what: "severity", ..
            } => ": use emerg, alert, crit, err, warning, notice, info, debug or 0-7",
            QueryErrorKind::UnknownCode { .. } => {
                ": use kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, \
                 ftp, ntp, audit, alert, clock, local0-local7 or 0-23"
            }
            QueryErrorKind::BadSdField(_) => ": write sd.ID.PARAM, e.g. sd.origin.ip",
            QueryErrorKind::LoneMinus => ": quote it to search for it, e.g. \"-\"",
            _ => "",
        }
    }
}
