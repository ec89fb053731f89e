//! The query language against JSON records: every form, every error, and two properties (any
//! text compiles or fails with a valid column; the matcher agrees with a naive evaluator).

use proptest::prelude::*;

use super::{JsonRecord, Matcher, QueryError, QueryErrorKind};

/// A record as the gateway stores it, with agent SD, structured data and an extracted field.
const WEB: &[u8] = br#"{"facility":16,"severity":3,"version":1,"timestamp":"2026-11-21T02:53:47.123Z","host":"web-01","app":"nginx","procid":"4242","msgid":"REQ","structured_data":{"origin":{"ip":["10.0.0.1","10.0.0.2"],"software":"rsyslogd 8"},"logtail@32473":{"entry":"web","file":"/var/log/nginx/error.log","topic":"edge","tags":"prod,eu-west"}},"message":"upstream timed out (110: Connection timed out) while reading, client: 10.9.8.7, status=504 #42","received_at":"2026-11-21T02:53:47.200Z","source":"10.0.0.1:514","status":504}"#;
/// An unparsed line: only message, received_at, source and parse_error.
const BROKEN: &[u8] = r#"{"message":"garbage \"quoted\" Grüße\ttab","received_at":"2026-11-21T02:53:48Z","source":"10.0.0.9:40000","parse_error":"missing PRI"}"#.as_bytes();

fn hits(query: &str, record: &[u8]) -> bool {
    let matcher = Matcher::compile(query).unwrap_or_else(|e| panic!("{query:?}: {e}"));
    matcher.is_match(&JsonRecord::new(record))
}

#[track_caller]
fn check(cases: &[(&str, bool, bool)]) {
    for &(query, web, broken) in cases {
        assert_eq!(hits(query, WEB), web, "{query:?} on WEB");
        assert_eq!(hits(query, BROKEN), broken, "{query:?} on BROKEN");
    }
}

#[test]
fn words_are_case_insensitive_whole_tokens() {
    check(&[
        ("timed", true, false),
        ("TIMED", true, false),
        ("time", false, false),
        ("upstream reading", true, false),
        ("10.9.8.7", true, false),
        ("9.8", true, false),
        ("0.9", false, false),
        ("#42", true, false),
        ("42", true, false),
        ("status=504", true, false),
        ("grüße", false, true),
        ("GRÜßE", false, true),
        ("quoted", false, true),
    ]);
}

#[test]
fn word_wildcards_match_one_token() {
    check(&[
        ("tim*", true, false),
        ("*stream", true, false),
        ("ti?ed", true, false),
        ("ti?e", false, false),
        ("10.9.*", true, false),
        ("gr*e", false, true),
        ("*", true, true),
    ]);
}

#[test]
fn phrases_are_case_insensitive_substrings() {
    check(&[
        (r#""connection timed""#, true, false),
        (r#""CONNECTION TIMED OUT)""#, true, false),
        (r#""imed ou""#, true, false),
        (r#""timed  out""#, false, false),
        (r#""\"quoted\"""#, false, true),
        ("\"e\ttab\"", false, true),
        (r#""tim*""#, false, false),
    ]);
}

#[test]
fn regexes_search_the_message() {
    check(&[
        (r"/timed out \(\d+/", true, false),
        (r"/TIMED/", false, false),
        (r"/(?i)TIMED/", true, false),
        (r"/^garbage/", false, true),
        (r"/a\/b/", false, false),
        ("/var/log", false, false),
        ("/abc", false, false),
        ("(/timed/)", true, false),
        (r"message:/status=5\d\d/", true, false),
    ]);
}

#[test]
fn keyword_fields_match_the_whole_value() {
    check(&[
        ("host:web-01", true, false),
        ("host:WEB-01", true, false),
        ("host:web", false, false),
        ("host:web-*", true, false),
        ("host:web-0?", true, false),
        ("host:*", true, false),
        ("app:nginx procid:4242 msgid:req", true, false),
        ("source:10.0.0.1:514", true, false),
        ("source:10.0.0.*", true, true),
        (r#"parse_error:"missing PRI""#, false, true),
        ("parse_error:missing*", false, true),
        ("host:/^web-\\d+$/", true, false),
        ("Host:web-01", true, false),
    ]);
}

#[test]
fn message_field_uses_word_rules() {
    check(&[
        ("message:timed", true, false),
        ("message:time", false, false),
        (r#"message:"d out""#, true, false),
        ("message:tim*", true, false),
    ]);
}

#[test]
fn severity_and_facility_by_name_number_and_comparison() {
    check(&[
        ("severity:err", true, false),
        ("severity:error", true, false),
        ("severity:3", true, false),
        ("severity:ERR", true, false),
        (r#"severity:"err""#, true, false),
        ("severity:warning", false, false),
        ("severity:<=warning", true, false),
        ("severity:<err", false, false),
        ("severity:>=3", true, false),
        ("severity:>crit", true, false),
        ("severity:*", true, false),
        ("facility:local0", true, false),
        ("facility:16", true, false),
        ("facility:>=local0", true, false),
        ("facility:kern", false, false),
    ]);
}

#[test]
fn structured_data_and_agent_fields() {
    check(&[
        ("sd.origin.ip:10.0.0.2", true, false),
        ("sd.origin.ip:10.0.0.3", false, false),
        (r#"sd.origin.software:"rsyslogd 8""#, true, false),
        ("sd.origin.software:rsyslogd*", true, false),
        ("entry:web", true, false),
        ("file:/var/log/nginx/*", true, false),
        ("file:/var/log/nginx/error.log", true, false),
        (r"file:/\/var\/.*error/", true, false),
        ("topic:edge", true, false),
        ("tags:prod", true, false),
        ("tags:eu-west", true, false),
        ("tags:eu", false, false),
        ("tags:eu*", true, false),
        ("sd.logtail@32473.entry:web", true, false),
    ]);
}

#[test]
fn other_fields_are_top_level_keys() {
    check(&[
        ("status:504", true, false),
        ("status:>=500", true, false),
        ("status:<500", false, false),
        ("version:1", true, false),
        ("timestamp:2026-11-21T02*", true, false),
        ("nope:x", false, false),
    ]);
}

#[test]
fn exists() {
    check(&[
        ("_exists_:procid", true, false),
        ("_exists_:parse_error", false, true),
        ("_exists_:sd.origin.ip", true, false),
        ("_exists_:tags", true, false),
        ("_exists_:status", true, false),
        ("-_exists_:procid", false, true),
    ]);
}

#[test]
fn boolean_operators_and_precedence() {
    check(&[
        ("", true, true),
        ("timed AND garbage", false, false),
        ("timed garbage", false, false),
        ("timed OR garbage", true, true),
        ("NOT timed", false, true),
        ("-timed", false, true),
        ("-host:web-01", false, true),
        ("NOT NOT timed", true, false),
        // NOT > AND > OR: `nope AND timed OR garbage` is `(nope AND timed) OR garbage`.
        ("nope timed OR garbage", false, true),
        ("nope (timed OR garbage)", false, false),
        ("timed OR garbage nope", true, false),
        ("NOT timed OR garbage", false, true),
        ("NOT (timed OR garbage)", false, false),
        ("-(timed OR garbage)", false, false),
        ("(((timed)))", true, false),
        ("and", false, false),
        (r#""AND" OR timed"#, true, false),
        (r"\NOT OR timed", true, false),
    ]);
}

#[test]
fn field_groups_apply_the_field_to_each_value() {
    check(&[
        ("host:(web-01 OR db-1)", true, false),
        ("host:(db-1 OR x)", false, false),
        ("host:(web-* nginx)", false, false),
        ("app:(nginx OR sshd) timed", true, false),
        ("severity:(<=crit OR debug)", false, false),
        ("severity:(err OR debug)", true, false),
        ("tags:(prod eu-west)", true, false),
        ("tags:(prod NOT eu-west)", false, false),
        ("tags:(prod -eu-west)", false, false),
        ("-host:(web-01 OR web-02)", false, true),
        (r#"sd.origin.software:("rsyslogd 8" OR /^x/)"#, true, false),
        ("host:((web-01 OR a) (b OR *)) timed", true, false),
        ("_exists_:(procid OR nope)", true, false),
        // Outside the group, terms are the message's again.
        ("host:(x OR web-01) timed", true, false),
        ("host:(web-01) host", false, false),
    ]);
}

#[test]
fn escapes_in_bare_words() {
    // `\(` and `\:` are plain characters; `\*` is not a wildcard.
    check(&[(r"\(110\:", true, false), (r"timed\*", false, false)]);
}

#[test]
fn raw_records_are_all_message() {
    let raw = b"<13>Nov 21 02:53:47 web-01 app: disk full";
    assert!(hits("disk full", raw));
    assert!(!hits("host:web-01", raw));
    assert!(hits("-_exists_:host", raw));
}

fn error(query: &str) -> QueryError {
    match Matcher::compile(query) {
        Ok(_) => panic!("{query:?} compiled"),
        Err(e) => e,
    }
}

#[test]
fn errors_name_what_and_where() {
    for (query, text) in [
        ("timeout AND (disk OR ) x", "unexpected ')' at column 22"),
        (")", "unexpected ')' at column 1"),
        ("a )", "unexpected ')' at column 3"),
        ("()", "unexpected ')' at column 2"),
        ("AND a", "unexpected 'AND' at column 1"),
        ("a OR OR b", "unexpected 'OR' at column 6"),
        ("a AND", "unexpected end of query at column 6"),
        ("a OR ", "unexpected end of query at column 6"),
        ("NOT", "unexpected end of query at column 4"),
        ("(a OR b", "unclosed '(' at column 1"),
        ("x ((a)", "unclosed '(' at column 3"),
        (
            "a - b",
            "'-' must come right before a term at column 3: quote it to search for it, e.g. \"-\"",
        ),
        (
            "a -",
            "'-' must come right before a term at column 3: quote it to search for it, e.g. \"-\"",
        ),
        ("é \"abc", "unterminated quoted text at column 3"),
        ("abc\\", "nothing after '\\' at column 4"),
        ("host:", "missing value after 'host:' at column 6"),
        ("host: web", "missing value after 'host:' at column 6"),
        ("(host:)", "missing value after 'host:' at column 7"),
        (
            "severity:<=",
            "missing value after 'severity:' at column 12",
        ),
        ("ho*st:x", "wildcard in a field name at column 1"),
        ("status:>5*", "wildcard in a comparison at column 9"),
        ("host:(a OR b", "unclosed '(' at column 1"),
        ("host:(a OR)", "unexpected ')' at column 11"),
        ("host:()", "unexpected ')' at column 7"),
        ("_exists_:", "missing value after '_exists_:' at column 10"),
        ("_exists_:a*", "'_exists_:' needs a field name at column 10"),
        (
            "sd.origin:x",
            "'sd.origin' is not a structured data field at column 1: write sd.ID.PARAM, e.g. sd.origin.ip",
        ),
        ("status:>abc", "'abc' is not a number at column 8"),
        (
            "severity:warm",
            "unknown severity 'warm' at column 10: use emerg, alert, crit, err, warning, notice, info, debug or 0-7",
        ),
        (
            "severity:8",
            "unknown severity '8' at column 10: use emerg, alert, crit, err, warning, notice, info, debug or 0-7",
        ),
        ("severity:<=w*", "wildcard in a comparison at column 12"),
        (
            "severity:e*",
            "unknown severity 'e*' at column 10: use emerg, alert, crit, err, warning, notice, info, debug or 0-7",
        ),
        (
            "facility:local8",
            "unknown facility 'local8' at column 10: use kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, audit, alert, clock, local0-local7 or 0-23",
        ),
        (":x", "unexpected ':' at column 1"),
    ] {
        assert_eq!(error(query).to_string(), text, "{query:?}");
    }
}

#[test]
fn bad_regex_is_reported_at_the_regex() {
    let e = error("a /(unclosed/");
    assert_eq!(e.column, 3);
    assert!(matches!(e.kind, QueryErrorKind::BadRegex(_)), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    let e = error(r"host:/\d{9999999}/");
    assert_eq!(e.column, 6, "{e}");
}

#[test]
fn nesting_is_bounded() {
    let deep = "(".repeat(100) + "a" + &")".repeat(100);
    let e = error(&deep);
    assert_eq!(e.kind, QueryErrorKind::TooDeep);
    assert_eq!(e.column, 65);
    let nots = "NOT ".repeat(100) + "a";
    assert_eq!(error(&nots).kind, QueryErrorKind::TooDeep);
    let fine = "(".repeat(60) + "timed" + &")".repeat(60);
    assert!(hits(&fine, WEB));
}

#[test]
fn stored_prefilter_looks_for_text_every_match_has() {
    // AND: the best of its terms; OR: any of them; a regex: its prefixes or suffixes.
    for query in [
        "timed host:web-01 (x OR y)",
        "timed OR garbage",
        "/timed/",
        "/(?i)CONNECTION \\w+/",
        "/\\d+: Connection/",
        "/xyz|timed/",
    ] {
        let m = Matcher::compile(query).unwrap();
        assert!(m.may_match_stored(WEB), "{query}");
        assert!(!m.may_match_stored(b"{}"), "{query}");
    }
    assert!(!Matcher::compile("timed").unwrap().may_match_stored(BROKEN));
    // Nothing required: under NOT, short text, numbers, wildcards, a regex without literals.
    for query in [
        "-timed",
        "severity:3",
        "ab",
        "tim*",
        "/\\d+/",
        "timed OR /\\d/",
    ] {
        assert!(
            Matcher::compile(query).unwrap().may_match_stored(b"{}"),
            "{query}"
        );
    }
    // Text the encoder escapes is not looked for as such.
    assert!(
        Matcher::compile(r#""\"quoted\"""#)
            .unwrap()
            .may_match_stored(b"{}")
    );
    // JSON from elsewhere may escape what the encoder writes as is: then nothing is ruled out.
    let escaped = br#"{"message":"\u0054imed \u00e9t\u00E9 a\/b"}"#;
    for query in [
        "timed",
        "/T[i]med/",
        "\"été\"",
        "/été/",
        "\"a/b\"",
        "/a\\/b/",
    ] {
        let m = Matcher::compile(query).unwrap();
        assert!(m.is_match(&JsonRecord::new(escaped)), "{query}");
        assert!(m.may_match_stored(escaped), "{query}");
        assert_eq!(m.candidates(escaped).count(), 1, "{query}");
    }
}

#[test]
fn huge_values_are_an_error_not_a_panic() {
    let word = "é".repeat(200_000);
    for query in [
        word.clone(),
        format!("\"{word}\""),
        format!("host:{word}"),
        format!("x {word}*"),
        format!("host:*{word}"),
    ] {
        let e = error(&query);
        assert_eq!(e.kind, QueryErrorKind::ValueTooLarge, "{}", &query[..10]);
    }
    // ASCII needles have no regex and no limit.
    assert!(Matcher::compile(&"a".repeat(200_000)).is_ok());
}

#[test]
fn matches_everything_only_for_empty_and_star() {
    assert!(Matcher::compile("").unwrap().matches_everything());
    assert!(Matcher::compile("  * ").unwrap().matches_everything());
    assert!(!Matcher::compile("a").unwrap().matches_everything());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_compiles_or_fails_at_a_column(
        parts in prop::collection::vec(prop::sample::select(vec![
            "a", "Web", "é", " ", " ", "(", ")", ":", "\"", "/", "\\", "*", "?", "-", "<", "<=",
            ">", "=", "AND", "OR", "NOT", "host", "severity", "_exists_", "sd.", ".", "err",
            "[", "{", "+", "3", "\t",
        ]), 0..16)
    ) {
        let query: String = parts.concat();
        if let Err(e) = Matcher::compile(&query) {
            let chars = query.chars().count();
            prop_assert!(e.column >= 1 && e.column <= chars + 1, "{query:?}: {e}");
        }
    }
}

/// The reference: a query as a tree, rendered to text for the real matcher, and evaluated here
/// the slow, obvious way.
mod reference {
    use super::*;

    #[derive(Debug, Clone)]
    pub enum Q {
        Word(String),
        /// A word with wildcards: `None` is `*`, `Some('?')` is `?`... kept as raw pattern text.
        Glob(String),
        Phrase(String),
        Host(String),
        HostGlob(String),
        /// `host:(a OR b …)`, or `host:(a b …)` when the flag says AND.
        HostGroup(Vec<String>, bool),
        Severity(&'static str, u8),
        Tag(String),
        Ip(String),
        StatusAtLeast(u16),
        Exists(&'static str),
        And(Vec<Q>, bool),
        Or(Vec<Q>),
        Not(Box<Q>, bool),
    }

    #[derive(Debug, Clone)]
    pub struct Rec {
        pub host: Option<String>,
        pub severity: Option<u8>,
        pub message: String,
        pub ips: Vec<String>,
        pub tags: Option<String>,
        pub status: Option<u16>,
    }

    impl Rec {
        pub fn json(&self) -> Vec<u8> {
            let mut object = serde_json::Map::new();
            if let Some(severity) = self.severity {
                object.insert("severity".into(), severity.into());
            }
            if let Some(host) = &self.host {
                object.insert("host".into(), host.clone().into());
            }
            let mut sd = serde_json::Map::new();
            match self.ips.as_slice() {
                [] => {}
                [one] => {
                    sd.insert("origin".into(), serde_json::json!({ "ip": one }));
                }
                many => {
                    sd.insert("origin".into(), serde_json::json!({ "ip": many }));
                }
            }
            if let Some(tags) = &self.tags {
                sd.insert("logtail@32473".into(), serde_json::json!({ "tags": tags }));
            }
            if !sd.is_empty() {
                object.insert("structured_data".into(), sd.into());
            }
            object.insert("message".into(), self.message.clone().into());
            if let Some(status) = self.status {
                object.insert("status".into(), status.into());
            }
            serde_json::to_vec(&object).expect("a map serializes")
        }
    }

    pub fn render(q: &Q) -> String {
        let group = |q: &Q| match q {
            Q::And(..) | Q::Or(..) | Q::Not(..) => format!("({})", render(q)),
            _ => render(q),
        };
        match q {
            Q::Word(w) | Q::Glob(w) => w.clone(),
            Q::Phrase(p) => format!("\"{p}\""),
            Q::Host(h) => format!("host:{h}"),
            Q::HostGlob(h) => format!("host:{h}"),
            Q::HostGroup(values, and) => {
                format!("host:({})", values.join(if *and { " " } else { " OR " }))
            }
            Q::Severity(op, n) => format!("severity:{op}{n}"),
            Q::Tag(t) => format!("tags:{t}"),
            Q::Ip(ip) => format!("sd.origin.ip:{ip}"),
            Q::StatusAtLeast(n) => format!("status:>={n}"),
            Q::Exists(f) => format!("_exists_:{f}"),
            Q::And(items, explicit) => items
                .iter()
                .map(group)
                .collect::<Vec<_>>()
                .join(if *explicit { " AND " } else { " " }),
            Q::Or(items) => items.iter().map(group).collect::<Vec<_>>().join(" OR "),
            Q::Not(inner, minus) => {
                if *minus {
                    format!("-{}", group(inner))
                } else {
                    format!("NOT {}", group(inner))
                }
            }
        }
    }

    fn token(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()
    }

    /// `*` any run of characters allowed by `any`, `?` one such character, else the same
    /// character (the pattern and text already lowercased).
    fn glob(pattern: &[char], text: &[char], any: &dyn Fn(char) -> bool) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len())
                .take_while(|&n| n == 0 || any(text[n - 1]))
                .any(|n| glob(rest, &text[n..], any)),
            Some(('?', rest)) => {
                text.first().is_some_and(|&c| any(c)) && glob(rest, &text[1..], any)
            }
            Some((&c, rest)) => text.first() == Some(&c) && glob(rest, &text[1..], any),
        }
    }

    /// Some stretch `text[i..j]` matches the word pattern, and it is not part of a longer token
    /// where the pattern's end is a token character or a wildcard.
    fn word_matches(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.to_lowercase().chars().collect();
        let t: Vec<char> = text.to_lowercase().chars().collect();
        let bounded = |c: Option<&char>| c.is_some_and(|&c| c == '*' || c == '?' || token(c));
        let (open_start, open_end) = (bounded(p.first()), bounded(p.last()));
        (0..=t.len()).any(|i| {
            (i..=t.len()).any(|j| {
                (!open_start || i == 0 || !token(t[i - 1]))
                    && (!open_end || j == t.len() || !token(t[j]))
                    && glob(&p, &t[i..j], &|c| !c.is_whitespace())
            })
        })
    }

    fn value_matches(pattern: &str, value: &str) -> bool {
        let p: Vec<char> = pattern.to_lowercase().chars().collect();
        let v: Vec<char> = value.to_lowercase().chars().collect();
        glob(&p, &v, &|_| true)
    }

    pub fn eval(q: &Q, r: &Rec) -> bool {
        match q {
            Q::Word(w) | Q::Glob(w) => word_matches(w, &r.message),
            Q::Phrase(p) => r.message.to_lowercase().contains(&p.to_lowercase()),
            Q::Host(h) | Q::HostGlob(h) => r.host.as_ref().is_some_and(|v| value_matches(h, v)),
            Q::HostGroup(values, and) => {
                let one = |h: &String| r.host.as_ref().is_some_and(|v| value_matches(h, v));
                if *and {
                    values.iter().all(one)
                } else {
                    values.iter().any(one)
                }
            }
            Q::Severity(op, n) => r.severity.is_some_and(|s| match *op {
                "" => s == *n,
                "<" => s < *n,
                "<=" => s <= *n,
                ">" => s > *n,
                _ => s >= *n,
            }),
            Q::Tag(t) => r
                .tags
                .as_ref()
                .is_some_and(|tags| tags.split(',').any(|tag| value_matches(t, tag))),
            Q::Ip(ip) => r.ips.iter().any(|v| value_matches(ip, v)),
            Q::StatusAtLeast(n) => r.status.is_some_and(|s| s >= *n),
            Q::Exists(field) => match *field {
                "host" => r.host.is_some(),
                "severity" => r.severity.is_some(),
                "tags" => r.tags.is_some(),
                _ => !r.ips.is_empty(),
            },
            Q::And(items, _) => items.iter().all(|q| eval(q, r)),
            Q::Or(items) => items.iter().any(|q| eval(q, r)),
            Q::Not(inner, _) => !eval(inner, r),
        }
    }

    const WORD: &str = "[a-dA-D0-9é_#.]{1,4}";

    fn leaf() -> impl Strategy<Value = Q> {
        prop_oneof![
            WORD.prop_filter("a word", |w| !w.starts_with('.') || w.len() > 1)
                .prop_map(Q::Word),
            "[a-dA-D]{0,2}[*?][a-d#.]{0,2}".prop_map(Q::Glob),
            "[a-dA-D é#.]{1,5}".prop_map(Q::Phrase),
            "(web|db)-[0-3]".prop_map(Q::Host),
            "(web|db|W)[-*?][0-3*]?".prop_map(Q::HostGlob),
            (
                prop::collection::vec("(web|db)[-*?][0-3*]?", 1..4),
                any::<bool>()
            )
                .prop_map(|(values, and)| Q::HostGroup(values, and)),
            (prop::sample::select(vec!["", "<", "<=", ">", ">="]), 0u8..8)
                .prop_map(|(op, n)| Q::Severity(op, n)),
            "(prod|eu|dev)\\*?".prop_map(Q::Tag),
            "10\\.0\\.[0-2]\\.[*1-3]".prop_map(Q::Ip),
            (100u16..600).prop_map(Q::StatusAtLeast),
            prop::sample::select(vec!["host", "severity", "tags", "sd.origin.ip"])
                .prop_map(Q::Exists),
        ]
    }

    pub fn query() -> impl Strategy<Value = Q> {
        leaf().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 2..4), any::<bool>())
                    .prop_map(|(items, explicit)| Q::And(items, explicit)),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Q::Or),
                (inner, any::<bool>()).prop_map(|(q, minus)| Q::Not(Box::new(q), minus)),
            ]
        })
    }

    pub fn record() -> impl Strategy<Value = Rec> {
        (
            prop::option::of("(web|db|WEB)-[0-3]{1,2}"),
            prop::option::of(0u8..8),
            "[a-dA-D0-9éÉ_#. ,\"\\\\\t-]{0,40}",
            prop::collection::vec("10\\.0\\.[0-2]\\.[1-3]", 0..3),
            prop::option::of("(prod|eu|dev|prodx)(,(prod|eu|dev))?"),
            prop::option::of(100u16..600),
        )
            .prop_map(|(host, severity, message, ips, tags, status)| Rec {
                host,
                severity,
                message,
                ips,
                tags,
                status,
            })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn matcher_agrees_with_the_reference(
        q in reference::query(),
        records in prop::collection::vec(reference::record(), 1..8),
    ) {
        let text = reference::render(&q);
        let matcher = Matcher::compile(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        for record in &records {
            let json = record.json();
            let matched = matcher.is_match(&JsonRecord::new(&json));
            prop_assert_eq!(
                matched,
                reference::eval(&q, record),
                "query {:?} on {}", text, String::from_utf8_lossy(&json)
            );
            prop_assert!(
                !matched || matcher.may_match_stored(&json),
                "prefilter rejects a match: query {:?} on {}", text, String::from_utf8_lossy(&json)
            );
        }
    }
}

// ---------------------------------------------------------------- block tests (the store's index)

/// Whether `query` may match a block holding `records`, by the block's index; the same answer
/// whether the block has one word filter (format 2) or is one granule among others (format 3:
/// the block's view, then the granule's).
fn block_may_match(query: &str, records: &[&str]) -> bool {
    use crate::store::index::{GranuleSummary, IndexBuilder};
    let matcher = Matcher::compile(query).unwrap();
    let mut builder = IndexBuilder::default();
    for r in records {
        builder.add(r.as_bytes());
    }
    let mut encoded = Vec::new();
    builder.finish_into(1 << 20, &mut encoded);
    let index = crate::store::BlockIndex::parse(&encoded).unwrap();
    let whole = matcher.may_match_block(&index);

    // Format 3: an unrelated granule first, then these records as granule 1.
    let summary = GranuleSummary {
        compressed_len: 1 << 16,
        raw_len: 1 << 17,
        records: 1,
        crc: 0,
    };
    builder.add(br#"{"message":"another granule entirely"}"#);
    builder.end_granule(summary);
    for r in records {
        builder.add(r.as_bytes());
    }
    builder.end_granule(summary);
    let mut encoded = Vec::new();
    builder.finish_granules_into(&mut encoded);
    let index = crate::store::BlockIndex::parse(&encoded).unwrap();
    let granules: Vec<_> = index.granules().collect();
    assert_eq!(granules.len(), 2);
    let granular = matcher.may_match_block(&index) && matcher.may_match_block(&granules[1]);
    assert_eq!(granular, whole, "{query}: format 3 and format 2 disagree");
    whole
}

#[test]
fn block_test_rules_out_blocks_only_when_no_record_can_match() {
    let block = [
        r#"{"facility":4,"severity":3,"host":"web-01","app":"sshd","message":"Failed password for root from 10.0.0.1 port 22"}"#,
        r#"{"facility":16,"severity":6,"host":"db-1","app":"postgres","message":"connection reset by peer"}"#,
    ];
    for (query, may) in [
        ("", true),
        ("failed", true),
        ("FAILED password", true),
        ("timeout", false),
        ("failed timeout", false),
        ("failed OR timeout", true),
        ("timeout OR disk", false),
        ("(timeout OR reset) peer", true),
        // A phrase needs its inner tokens only: "ection res" is in "connection reset".
        ("\"ection res\"", true),
        ("\"connection reset by\"", true),
        ("\"reset nobody here\"", false),
        ("\"by nobo\"", true),
        // A word with punctuation: each of its tokens is a whole token of the message.
        ("10.0.0.1", true),
        ("10.0.0.2", false),
        ("host:WEB-01", true),
        ("host:web-02", false),
        ("app:postgres", true),
        ("app:nginx", false),
        ("host:web-01 OR host:web-02", true),
        ("severity:err", true),
        ("severity:<=crit", false),
        ("severity:>=info", true),
        ("severity:debug", false),
        ("facility:auth", true),
        ("facility:local1", false),
        ("facility:>=local0", true),
        // Never ruled out: NOT, wildcards, regexes, other fields, non-ASCII words.
        ("-failed", true),
        ("NOT host:web-01", true),
        ("NOT (timeout)", true),
        ("timeo*", true),
        ("/timeout/", true),
        ("host:web-0?", true),
        ("procid:42", true),
        ("grüße", true),
        ("message:timeout", false),
        ("_exists_:severity", true),
    ] {
        assert_eq!(block_may_match(query, &block), may, "{query}");
    }
}

// ------------------------------------------- the literal prefilter against plain evaluation

#[test]
fn candidates_are_the_records_around_the_literal_hits() {
    let piece = concat!(
        r#"{"host":"zebracorn","message":"a"}"#,
        "\n",
        r#"{"message":"x zebracorn y"}"#,
        "\n",
        r#"{"message":"b"}"#,
        "\n",
        r#"{"message":"zebracorn"}"#,
        "\n",
        r#"{"message":"zebracorn \"z"}"#,
    )
    .as_bytes();
    let matcher = Matcher::compile(r"/zebr[a]corn \w+/").unwrap();
    let mut candidates = matcher.candidates(piece);
    let seen: Vec<&[u8]> = (&mut candidates).collect();
    assert_eq!(
        seen,
        [
            br#"{"message":"x zebracorn y"}"#.as_slice(),
            br#"{"message":"zebracorn \"z"}"#.as_slice(),
        ]
    );
    assert_eq!(candidates.passed_over(), 3);
    let matched: Vec<&[u8]> = seen
        .into_iter()
        .filter(|r| matcher.is_match(&JsonRecord::new(r)))
        .collect();
    assert_eq!(matched, [br#"{"message":"x zebracorn y"}"#.as_slice()]);
    // No literal: every record, empty ones included.
    let every = Matcher::compile("/\\w/").unwrap();
    assert_eq!(every.candidates(b"a\n\nb\n").count(), 3);
    assert_eq!(every.candidates(b"a\n\nb").count(), 3);
}

mod prefiltered {
    use proptest::prelude::*;

    /// Pieces of the generated values: the queries' literals in several cases, the Kelvin sign
    /// (which `(?i)k` matches), `é`/`É`, and what JSON escapes or may escape.
    const FRAGMENTS: &[&str] = &[
        "zebracorn",
        "ZEBRAcorn",
        "zebra",
        "corn",
        "GET",
        "get",
        "bra co",
        "a/b",
        "é z",
        "\"z",
        "kor",
        "KOR",
        "\u{212a}or",
        "ézé",
        "ÉZÉ",
        "12 corn",
        " ",
        " ",
        "\\",
        "\n",
        "\t",
        ".",
        "_",
        "x",
        "1",
        ",",
        "/",
    ];

    /// A value: each character with whether to escape it as a writer other than the store's
    /// encoder may (`\/`, `\uXXXX`), one in eight.
    pub fn value() -> impl Strategy<Value = Vec<(char, bool)>> {
        prop::collection::vec((prop::sample::select(FRAGMENTS), any::<u64>()), 0..8).prop_map(
            |pieces| {
                pieces
                    .into_iter()
                    .flat_map(|(text, bits)| {
                        text.chars()
                            .enumerate()
                            .map(move |(i, c)| (c, (bits >> (3 * (i % 21))) & 7 == 0))
                    })
                    .collect()
            },
        )
    }

    /// `value` as the contents of a JSON string.
    pub fn json_string(value: &[(char, bool)]) -> String {
        let mut out = String::new();
        for &(c, escape) in value {
            match (c, escape) {
                ('/', true) => out.push_str("\\/"),
                (c, true) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                ('"', _) => out.push_str("\\\""),
                ('\\', _) => out.push_str("\\\\"),
                ('\n', _) => out.push_str("\\n"),
                ('\t', _) => out.push_str("\\t"),
                (c, _) => out.push(c),
            }
        }
        out
    }

    /// A stored record: a JSON object with a message, maybe a host and an extracted field, in
    /// either order around the message; or (one in ten) a raw line, all message.
    pub fn record() -> impl Strategy<Value = String> {
        (
            value(),
            prop::option::of(value()),
            prop::option::of(value()),
            any::<bool>(),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(message, host, user, host_last, raw)| {
                if raw {
                    return message
                        .iter()
                        .map(|&(c, _)| if c == '\n' { ' ' } else { c })
                        .collect();
                }
                let mut members = vec![format!("\"message\":\"{}\"", json_string(&message))];
                if let Some(host) = host {
                    let host = format!("\"host\":\"{}\"", json_string(&host));
                    if host_last {
                        members.push(host);
                    } else {
                        members.insert(0, host);
                    }
                }
                if let Some(user) = user {
                    members.push(format!("\"user\":\"{}\"", json_string(&user)));
                }
                format!("{{{}}}", members.join(","))
            })
    }

    /// Queries whose literals the prefilter searches for: words, phrases, values, regexes with
    /// prefixes, suffixes, `(?i)` and Unicode, under AND, OR and NOT; and random literals.
    pub fn query() -> impl Strategy<Value = String> {
        let fixed = prop::sample::select(vec![
            "zebracorn",
            "GET",
            "get",
            "corn",
            "\"bra co\"",
            "\"a/b\"",
            "\"é z\"",
            "\"\\\"z\"",
            r"/zebr[a]corn \w+/",
            r"/(?i)zebra/",
            r"/(?i)kor/",
            r"/a\/b/",
            r"/[Zz]ebra|GET/",
            r"/corn$/",
            r"/^zebra/",
            r"/é+z/",
            r"/(?i)ézé/",
            r"/\d+ corn/",
            r"/\u{212a}or/",
            "host:zebra",
            "host:\"get\"",
            "user:/corn/",
            "user:zebra",
            "zebra OR /GET/",
            "zebra OR corn",
            "zebra -corn",
            "corn host:zebra",
            "(zebra OR /orn\\b/) host:/^[a-z]/",
        ])
        .prop_map(str::to_owned);
        let random = (
            0..4usize,
            "[zebracoGTK\u{212a}é/ ]{3,6}",
            prop::sample::select(vec!["", "host:", "user:", "message:"]),
        )
            .prop_map(|(kind, text, field)| match kind {
                0 => format!("{field}{}", text.replace([' ', '/'], "")),
                1 => format!("{field}\"{text}\""),
                2 => format!("{field}/{}/", regex::escape(&text).replace('/', "\\/")),
                _ => format!("{field}/(?i){}/", regex::escape(&text).replace('/', "\\/")),
            });
        prop_oneof![fixed, random]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The prefiltered scan (what `logtail search` runs over each piece the store's reader
    /// hands over) finds exactly the records that matching every record finds.
    #[test]
    fn prefiltered_scan_finds_what_matching_every_record_finds(
        query in prefiltered::query(),
        records in prop::collection::vec(prefiltered::record(), 1..12),
        terminated in any::<bool>(),
    ) {
        let Ok(matcher) = Matcher::compile(&query) else {
            return Err(TestCaseError::reject("does not compile"));
        };
        let mut piece = records.join("\n");
        // Unterminated, an empty last record would be no record at all.
        if terminated || records.last().is_some_and(String::is_empty) {
            piece.push('\n');
        }
        let piece = piece.as_bytes();
        let expected: Vec<&str> = records
            .iter()
            .map(String::as_str)
            .filter(|r| matcher.is_match(&JsonRecord::new(r.as_bytes())))
            .collect();
        let mut candidates = matcher.candidates(piece);
        let handed: Vec<&[u8]> = (&mut candidates).collect();
        let found: Vec<&str> = handed
            .iter()
            .filter(|r| matcher.is_match(&JsonRecord::new(r)))
            .map(|r| std::str::from_utf8(r).unwrap())
            .collect();
        prop_assert_eq!(&found, &expected, "query {:?}", query);
        prop_assert_eq!(
            handed.len() as u64 + candidates.passed_over(),
            records.len() as u64,
            "every record is handed or passed over once"
        );
        for record in &expected {
            prop_assert!(matcher.may_match_stored(record.as_bytes()), "query {:?} on {}", query, record);
        }
    }
}
