//! The query language as an Elasticsearch/OpenSearch query (the `query` of a `_search` body),
//! for `[search] backend = "elasticsearch"` ([`crate::search::elasticsearch`]).
//!
//! The translation reads the fields as the Elasticsearch sink's index template maps them
//! ([`crate::sink::elasticsearch::index_template_body`]): `message` is `text` (standard
//! analyzer), `host`, `app`, `procid`, `msgid`, `source`, `parse_error`, `parse_warning`,
//! `tls_peer` and `agent_host` are `keyword`, `severity`, `facility` and `version` are numbers,
//! and everything else (structured data, fields rules extract) is mapped dynamically: a string
//! as `text` with a `keyword` sub-field `.keyword`, a number as a number.
//!
//! | term | Elasticsearch |
//! |---|---|
//! | `timeout` (one token) | `match` on `message` |
//! | `issue#42` (several tokens), `"connection reset"` | `match_phrase` on `message` |
//! | `time*` | `wildcard` on `message` (its terms), `case_insensitive` |
//! | `/err(or)?/` | `regexp` on `message` (its terms), `case_insensitive` |
//! | `host:web-01`, `host:"a b"` | `term` on the keyword, `case_insensitive` |
//! | `host:web-*` | `wildcard` on the keyword, `case_insensitive` |
//! | `host:/^web-\d+$/` | `regexp` on the keyword: `.*(` `)` `.*` around the pattern unless it starts with `^` / ends with `$`; `(?i)` becomes `case_insensitive` |
//! | `severity:err`, `severity:<=warning` | `term` / `range` on the number |
//! | `sd.origin.ip:10.0.0.1`, `entry:…`, `file:…`, `topic:…` | as a keyword, on `structured_data.ID.PARAM.keyword` |
//! | `tags:prod` | the item among the commas: `term` `prod`, `wildcard` `prod,*`, `*,prod`, `*,prod,*` |
//! | `status:500`, `user:alice` | `term` on `NAME.keyword`, or on `NAME` as well when the value is a number |
//! | `status:>=500` | `range` on `NAME` |
//! | `_exists_:procid`, `procid:*` | `exists` |
//! | `a b`, `a OR b`, `NOT a` | `bool` `filter`, `should` (`minimum_should_match` 1), `must_not` |
//!
//! README's *Search on Elasticsearch* says which of these match exactly what the local store
//! matches and which approximately.

use serde_json::{Value, json};

use super::compile::{FieldKind, code_number, resolve};
use super::syntax::{Comparison, Expr, Term, Value as Written, parse};
use super::text::{GlobPiece, is_token_byte};
use super::{Field, Matcher, QueryError, QueryErrorKind};

/// Fields of the sink's index template mapped as `keyword` (besides those [`Field`] names).
const TEMPLATE_KEYWORDS: [&str; 4] = ["tls_peer", "agent_host", "parse_warning", "source"];

/// Where a field lives in the index, and what it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IndexedField {
    /// `message`: analyzed text.
    Text(&'static str),
    /// A keyword (a whole value); `list` for the comma-separated `tags`.
    Keyword { path: String, list: bool },
    /// A number (`severity`, `facility`) with its names.
    Code {
        path: &'static str,
        names: &'static [(&'static str, u8)],
    },
    /// A field the template does not map: `NAME.keyword` for a string, `NAME` for a number.
    Dynamic(String),
}

/// The query `query` as Elasticsearch's query DSL.
///
/// # Errors
/// What [`Matcher::compile`] refuses, with the same message and column, and a regex on
/// `severity` or `facility` (numbers there).
pub fn elasticsearch_query(query: &str) -> Result<Value, QueryError> {
    Matcher::compile(query)?;
    translate(&parse(query)?)
}

/// The field to aggregate (count values of, `terms`) for the field a query names `name`: a
/// keyword or a number, never the analyzed `message`.
///
/// # Errors
/// A malformed `sd.` name, or `message`.
pub fn elasticsearch_aggregatable_field(name: &str) -> Result<String, QueryError> {
    let (field, list, kind) = resolve(name, 1)?;
    match indexed(&field, list, &kind) {
        IndexedField::Text(_) => Err(QueryError {
            column: 1,
            kind: QueryErrorKind::NotOnElasticsearch(
                "counting the values of the message (an analyzed text field)".into(),
            ),
        }),
        IndexedField::Keyword { path, .. } => Ok(path),
        IndexedField::Code { path, .. } => Ok(path.to_string()),
        IndexedField::Dynamic(name) => Ok(format!("{name}.keyword")),
    }
}

fn indexed(field: &Field, list: bool, kind: &FieldKind) -> IndexedField {
    let keyword = |path: &str| IndexedField::Keyword {
        path: path.to_string(),
        list,
    };
    match (field, kind) {
        (Field::Message, _) => IndexedField::Text("message"),
        (Field::Host, _) => keyword("host"),
        (Field::App, _) => keyword("app"),
        (Field::Procid, _) => keyword("procid"),
        (Field::Msgid, _) => keyword("msgid"),
        (Field::Source, _) => keyword("source"),
        (Field::ParseError, _) => keyword("parse_error"),
        (Field::Severity, FieldKind::Code(names, _)) => IndexedField::Code {
            path: "severity",
            names,
        },
        (Field::Facility, FieldKind::Code(names, _)) => IndexedField::Code {
            path: "facility",
            names,
        },
        (Field::Sd { id, param }, _) => keyword(&format!("structured_data.{id}.{param}.keyword")),
        (Field::Other(name), _) if TEMPLATE_KEYWORDS.contains(&name.as_ref()) => keyword(name),
        (Field::Other(name), _) => IndexedField::Dynamic(name.to_string()),
        // `resolve` gives these their names; a number field without them reads as a number.
        (Field::Severity, _) => IndexedField::Dynamic("severity".into()),
        (Field::Facility, _) => IndexedField::Dynamic("facility".into()),
    }
}

fn translate(expr: &Expr) -> Result<Value, QueryError> {
    let all = |items: &[Expr]| items.iter().map(translate).collect::<Result<Vec<_>, _>>();
    Ok(match expr {
        Expr::All => json!({ "match_all": {} }),
        Expr::And(items) => json!({ "bool": { "filter": all(items)? } }),
        Expr::Or(items) => json!({ "bool": { "should": all(items)?, "minimum_should_match": 1 } }),
        Expr::Not(inner) => json!({ "bool": { "must_not": [translate(inner)?] } }),
        Expr::Term(term) => translate_term(term)?,
    })
}

fn translate_term(term: &Term) -> Result<Value, QueryError> {
    let Some((name, name_column)) = &term.field else {
        if let Written::Bare(pieces) = &term.value
            && pieces.iter().all(|p| *p == GlobPiece::AnyRun)
        {
            return Ok(json!({ "match_all": {} }));
        }
        return value_query(&IndexedField::Text("message"), term);
    };
    if name == "_exists_" {
        let field_name = match &term.value {
            Written::Bare(pieces) => match pieces.as_slice() {
                [GlobPiece::Literal(name)] => name.as_str(),
                _ => "",
            },
            Written::Quoted(name) => name.as_str(),
            _ => "",
        };
        let (field, list, kind) = resolve(field_name, term.value_column)?;
        return Ok(exists(&indexed(&field, list, &kind)));
    }
    let (field, list, kind) = resolve(name, *name_column)?;
    value_query(&indexed(&field, list, &kind), term)
}

fn exists(field: &IndexedField) -> Value {
    let path = match field {
        IndexedField::Text(path) | IndexedField::Code { path, .. } => (*path).to_string(),
        IndexedField::Keyword { path, .. } => path.clone(),
        // `exists` on the object path covers the string's text field and a number alike.
        IndexedField::Dynamic(name) => name.clone(),
    };
    json!({ "exists": { "field": path } })
}

fn value_query(field: &IndexedField, term: &Term) -> Result<Value, QueryError> {
    let column = term.value_column;
    if let Written::Bare(pieces) = &term.value
        && (pieces.is_empty()
            || (pieces.as_slice() == [GlobPiece::AnyRun]
                && !matches!(field, IndexedField::Text(_))))
    {
        return Ok(exists(field));
    }
    match field {
        IndexedField::Text(path) => Ok(match &term.value {
            Written::Bare(pieces) => match pieces.as_slice() {
                [GlobPiece::Literal(word)] if token_count(word) <= 1 => {
                    json!({ "match": { *path: { "query": word } } })
                }
                [GlobPiece::Literal(word)] => json!({ "match_phrase": { *path: word } }),
                _ => wildcard(path, &wildcard_pattern(pieces)),
            },
            Written::Quoted(text) => json!({ "match_phrase": { *path: text } }),
            // A text field's terms are lowercased: only a case-insensitive regex can match them.
            Written::Regex(pattern) => regexp(path, pattern, true),
            Written::Compare(comparison, operand) => range(path, *comparison, number(operand)),
        }),
        IndexedField::Keyword { path, list } => Ok(match &term.value {
            Written::Bare(pieces) => match pieces.as_slice() {
                [GlobPiece::Literal(value)] => keyword_equals(path, value, *list),
                _ => keyword_pattern(path, &wildcard_pattern(pieces), *list),
            },
            Written::Quoted(value) => keyword_equals(path, value, *list),
            Written::Regex(pattern) => regexp(path, pattern, false),
            Written::Compare(comparison, operand) => range(path, *comparison, number(operand)),
        }),
        IndexedField::Code { path, names } => {
            let (comparison, text) = match &term.value {
                Written::Compare(comparison, text) => (*comparison, text.as_str()),
                Written::Quoted(text) => (Comparison::Equal, text.as_str()),
                Written::Bare(pieces) => match pieces.as_slice() {
                    [GlobPiece::Literal(text)] => (Comparison::Equal, text.as_str()),
                    // Wildcards: refused by `Matcher::compile` before this runs.
                    _ => (Comparison::Equal, ""),
                },
                Written::Regex(_) => {
                    return Err(QueryError {
                        column,
                        kind: QueryErrorKind::NotOnElasticsearch(format!(
                            "a regex on {path} (a number there)"
                        )),
                    });
                }
            };
            let code = code_number(names, text).map_or(Value::Null, Value::from);
            Ok(range(path, comparison, code))
        }
        IndexedField::Dynamic(name) => Ok(match &term.value {
            Written::Bare(pieces) => match pieces.as_slice() {
                [GlobPiece::Literal(value)] => dynamic_equals(name, value),
                _ => wildcard(&format!("{name}.keyword"), &wildcard_pattern(pieces)),
            },
            Written::Quoted(value) => dynamic_equals(name, value),
            Written::Regex(pattern) => regexp(&format!("{name}.keyword"), pattern, false),
            Written::Compare(comparison, operand) => range(name, *comparison, number(operand)),
        }),
    }
}

/// Tokens of `word` as the local store cuts them (runs of token bytes).
fn token_count(word: &str) -> usize {
    word.as_bytes()
        .split(|&b| !is_token_byte(b))
        .filter(|token| !token.is_empty())
        .count()
}

/// A number operand as JSON: an integer when it is one (`severity:<=4`, `status:>=500`).
fn number(operand: &str) -> Value {
    match operand.trim().parse::<f64>() {
        Ok(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
        Ok(n) => Value::from(n),
        Err(_) => Value::Null,
    }
}

fn range(path: &str, comparison: Comparison, operand: Value) -> Value {
    let op = match comparison {
        Comparison::Equal => return json!({ "term": { path: { "value": operand } } }),
        Comparison::Less => "lt",
        Comparison::LessOrEqual => "lte",
        Comparison::Greater => "gt",
        Comparison::GreaterOrEqual => "gte",
    };
    json!({ "range": { path: { op: operand } } })
}

fn term_ci(path: &str, value: &str) -> Value {
    json!({ "term": { path: { "value": value, "case_insensitive": true } } })
}

fn wildcard(path: &str, pattern: &str) -> Value {
    json!({ "wildcard": { path: { "value": pattern, "case_insensitive": true } } })
}

fn keyword_equals(path: &str, value: &str, list: bool) -> Value {
    if list {
        keyword_pattern(path, &escape_wildcard(value), true)
    } else {
        term_ci(path, value)
    }
}

/// A wildcard on a keyword; for a list, on any item among its commas.
fn keyword_pattern(path: &str, pattern: &str, list: bool) -> Value {
    if !list {
        return wildcard(path, pattern);
    }
    let items = [
        wildcard(path, pattern),
        wildcard(path, &format!("{pattern},*")),
        wildcard(path, &format!("*,{pattern}")),
        wildcard(path, &format!("*,{pattern},*")),
    ];
    json!({ "bool": { "should": items, "minimum_should_match": 1 } })
}

/// A field the template does not map: its `.keyword` sub-field holds a string; a number is
/// indexed as one, under the name itself.
fn dynamic_equals(name: &str, value: &str) -> Value {
    let keyword = term_ci(&format!("{name}.keyword"), value);
    match number(value) {
        Value::Null => keyword,
        n => json!({ "bool": {
            "should": [keyword, { "term": { name: { "value": n } } }],
            "minimum_should_match": 1
        } }),
    }
}

/// `pieces` as an Elasticsearch wildcard pattern: `*` and `?` as they are, literal `*`, `?`
/// and `\` escaped with `\`.
fn wildcard_pattern(pieces: &[GlobPiece]) -> String {
    pieces
        .iter()
        .map(|piece| match piece {
            GlobPiece::Literal(text) => escape_wildcard(text),
            GlobPiece::AnyRun => "*".to_string(),
            GlobPiece::AnyOne => "?".to_string(),
        })
        .collect()
}

fn escape_wildcard(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A `regexp` query for a Rust regex searched in the value: Lucene's regexps match the whole
/// term, so the pattern is put between `.*` unless anchored by `^` / `$`; a leading `(?i)`
/// becomes `case_insensitive`. `flags: NONE` keeps `@`, `&`, `~`, `<`, `>` and `#` literal,
/// as in a Rust regex. Syntax Lucene lacks (`\b`, lazy quantifiers, look-around) makes
/// Elasticsearch answer 400, which the API passes on.
fn regexp(path: &str, pattern: &str, case_insensitive: bool) -> Value {
    let (pattern, insensitive) = match pattern.strip_prefix("(?i)") {
        Some(rest) => (rest, true),
        None => (pattern, case_insensitive),
    };
    let (pattern, open_start) = match pattern.strip_prefix('^') {
        Some(rest) => (rest, false),
        None => (pattern, true),
    };
    let escaped_dollar = pattern
        .strip_suffix('$')
        .is_some_and(|rest| rest.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1);
    let (pattern, open_end) = match pattern.strip_suffix('$') {
        Some(rest) if !escaped_dollar => (rest, false),
        _ => (pattern, true),
    };
    let lucene = format!(
        "{}({pattern}){}",
        if open_start { ".*" } else { "" },
        if open_end { ".*" } else { "" }
    );
    let mut query = json!({ "value": lucene, "flags": "NONE" });
    if insensitive {
        query["case_insensitive"] = Value::Bool(true);
    }
    json!({ "regexp": { path: query } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dsl(query: &str) -> String {
        elasticsearch_query(query).unwrap().to_string()
    }

    #[test]
    fn message_terms() {
        assert_eq!(dsl(""), r#"{"match_all":{}}"#);
        assert_eq!(dsl("*"), r#"{"match_all":{}}"#);
        assert_eq!(
            dsl("timeout"),
            r#"{"match":{"message":{"query":"timeout"}}}"#
        );
        assert_eq!(
            dsl("issue#42"),
            r#"{"match_phrase":{"message":"issue#42"}}"#
        );
        assert_eq!(
            dsl(r#""connection reset""#),
            r#"{"match_phrase":{"message":"connection reset"}}"#
        );
        assert_eq!(
            dsl(r#"message:"connection reset""#),
            r#"{"match_phrase":{"message":"connection reset"}}"#
        );
        assert_eq!(
            dsl("time*"),
            r#"{"wildcard":{"message":{"case_insensitive":true,"value":"time*"}}}"#
        );
        assert_eq!(
            dsl(r"err?r\*"),
            r#"{"wildcard":{"message":{"case_insensitive":true,"value":"err?r\\*"}}}"#
        );
        assert_eq!(
            dsl(r"/err(or)? \d+/"),
            r#"{"regexp":{"message":{"case_insensitive":true,"flags":"NONE","value":".*(err(or)? \\d+).*"}}}"#
        );
    }

    #[test]
    fn keyword_terms() {
        assert_eq!(
            dsl("host:web-01"),
            r#"{"term":{"host":{"case_insensitive":true,"value":"web-01"}}}"#
        );
        assert_eq!(
            dsl(r#"app:"postfix/smtpd""#),
            r#"{"term":{"app":{"case_insensitive":true,"value":"postfix/smtpd"}}}"#
        );
        assert_eq!(
            dsl("host:web-*"),
            r#"{"wildcard":{"host":{"case_insensitive":true,"value":"web-*"}}}"#
        );
        assert_eq!(
            dsl("host:db-?"),
            r#"{"wildcard":{"host":{"case_insensitive":true,"value":"db-?"}}}"#
        );
        assert_eq!(
            dsl(r"host:/^web-\d+$/"),
            r#"{"regexp":{"host":{"flags":"NONE","value":"(web-\\d+)"}}}"#
        );
        assert_eq!(
            dsl(r"host:/(?i)WEB/"),
            r#"{"regexp":{"host":{"case_insensitive":true,"flags":"NONE","value":".*(WEB).*"}}}"#
        );
        assert_eq!(
            dsl(r"procid:/4\$/"),
            r#"{"regexp":{"procid":{"flags":"NONE","value":".*(4\\$).*"}}}"#
        );
        assert_eq!(dsl("host:*"), r#"{"exists":{"field":"host"}}"#);
        assert_eq!(dsl("_exists_:procid"), r#"{"exists":{"field":"procid"}}"#);
        assert_eq!(
            dsl("parse_error:*"),
            r#"{"exists":{"field":"parse_error"}}"#
        );
        assert_eq!(
            dsl("source:10.0.0.*"),
            r#"{"wildcard":{"source":{"case_insensitive":true,"value":"10.0.0.*"}}}"#
        );
    }

    #[test]
    fn codes_and_comparisons() {
        assert_eq!(dsl("severity:err"), r#"{"term":{"severity":{"value":3}}}"#);
        assert_eq!(dsl("severity:3"), r#"{"term":{"severity":{"value":3}}}"#);
        assert_eq!(
            dsl("severity:<=warning"),
            r#"{"range":{"severity":{"lte":4}}}"#
        );
        assert_eq!(
            dsl("facility:>=local0"),
            r#"{"range":{"facility":{"gte":16}}}"#
        );
        assert_eq!(dsl("facility:<2"), r#"{"range":{"facility":{"lt":2}}}"#);
        assert_eq!(dsl("severity:*"), r#"{"exists":{"field":"severity"}}"#);
        assert_eq!(dsl("status:>500"), r#"{"range":{"status":{"gt":500}}}"#);
        assert_eq!(dsl("latency:<=0.5"), r#"{"range":{"latency":{"lte":0.5}}}"#);
        let error = elasticsearch_query("severity:/3/").unwrap_err();
        assert_eq!(
            error.to_string(),
            "a regex on severity (a number there) cannot be searched on Elasticsearch at column 10"
        );
    }

    #[test]
    fn structured_data_agent_fields_and_other_fields() {
        assert_eq!(
            dsl("sd.origin.ip:10.0.0.1"),
            r#"{"term":{"structured_data.origin.ip.keyword":{"case_insensitive":true,"value":"10.0.0.1"}}}"#
        );
        assert_eq!(
            dsl("file:/var/log/*"),
            r#"{"wildcard":{"structured_data.logtail@32473.file.keyword":{"case_insensitive":true,"value":"/var/log/*"}}}"#
        );
        assert_eq!(
            dsl("_exists_:entry"),
            r#"{"exists":{"field":"structured_data.logtail@32473.entry.keyword"}}"#
        );
        let tag = |pattern: &str| {
            format!(
                r#"{{"wildcard":{{"structured_data.logtail@32473.tags.keyword":{{"case_insensitive":true,"value":"{pattern}"}}}}}}"#
            )
        };
        assert_eq!(
            dsl("tags:prod"),
            format!(
                r#"{{"bool":{{"minimum_should_match":1,"should":[{},{},{},{}]}}}}"#,
                tag("prod"),
                tag("prod,*"),
                tag("*,prod"),
                tag("*,prod,*")
            )
        );
        assert_eq!(
            dsl("user:alice"),
            r#"{"term":{"user.keyword":{"case_insensitive":true,"value":"alice"}}}"#
        );
        assert_eq!(
            dsl("status:500"),
            r#"{"bool":{"minimum_should_match":1,"should":[{"term":{"status.keyword":{"case_insensitive":true,"value":"500"}}},{"term":{"status":{"value":500}}}]}}"#
        );
        assert_eq!(
            dsl("user:al*"),
            r#"{"wildcard":{"user.keyword":{"case_insensitive":true,"value":"al*"}}}"#
        );
        assert_eq!(dsl("_exists_:user"), r#"{"exists":{"field":"user"}}"#);
        assert_eq!(
            dsl("tls_peer:agent-1"),
            r#"{"term":{"tls_peer":{"case_insensitive":true,"value":"agent-1"}}}"#
        );
    }

    #[test]
    fn boolean_structure() {
        assert_eq!(
            dsl("a b OR -app:cron"),
            r#"{"bool":{"minimum_should_match":1,"should":[{"bool":{"filter":[{"match":{"message":{"query":"a"}}},{"match":{"message":{"query":"b"}}}]}},{"bool":{"must_not":[{"term":{"app":{"case_insensitive":true,"value":"cron"}}}]}}]}}"#
        );
        assert_eq!(
            dsl("host:(web-01 OR db-*)"),
            r#"{"bool":{"minimum_should_match":1,"should":[{"term":{"host":{"case_insensitive":true,"value":"web-01"}}},{"wildcard":{"host":{"case_insensitive":true,"value":"db-*"}}}]}}"#
        );
        assert_eq!(
            dsl("NOT (x AND y)"),
            r#"{"bool":{"must_not":[{"bool":{"filter":[{"match":{"message":{"query":"x"}}},{"match":{"message":{"query":"y"}}}]}}]}}"#
        );
    }

    #[test]
    fn bad_queries_fail_as_the_matcher_fails() {
        for query in ["timeout AND (disk OR )", "severity:warm", "/(/", "sd.x:1"] {
            assert_eq!(
                elasticsearch_query(query).unwrap_err(),
                Matcher::compile(query).unwrap_err(),
                "{query}"
            );
        }
    }

    #[test]
    fn facets_count_keywords_and_numbers_not_the_message() {
        assert_eq!(elasticsearch_aggregatable_field("host").unwrap(), "host");
        assert_eq!(
            elasticsearch_aggregatable_field("severity").unwrap(),
            "severity"
        );
        assert_eq!(
            elasticsearch_aggregatable_field("sd.origin.ip").unwrap(),
            "structured_data.origin.ip.keyword"
        );
        assert_eq!(
            elasticsearch_aggregatable_field("status").unwrap(),
            "status.keyword"
        );
        assert!(elasticsearch_aggregatable_field("message").is_err());
    }

    /// The fields read as keywords and numbers here are mapped so by the sink's template.
    #[test]
    fn the_translation_reads_the_fields_as_the_sink_maps_them() {
        let template: Value = serde_json::from_slice(
            &crate::sink::elasticsearch::index_template_body(&Default::default()),
        )
        .unwrap();
        let properties = &template["template"]["mappings"]["properties"];
        for name in ["host", "app", "procid", "msgid", "source", "parse_error"]
            .into_iter()
            .chain(TEMPLATE_KEYWORDS)
        {
            assert_eq!(properties[name]["type"], "keyword", "{name}");
            let (field, list, kind) = resolve(name, 1).unwrap();
            assert!(
                matches!(indexed(&field, list, &kind), IndexedField::Keyword { .. }),
                "{name}"
            );
        }
        for name in ["severity", "facility", "version"] {
            assert_eq!(properties[name]["type"], "short", "{name}");
        }
        assert_eq!(properties["message"]["type"], "text");
        assert_eq!(properties["structured_data"]["type"], "object");
    }
}
