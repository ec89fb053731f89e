//! Syntax tree → [`Matcher`]: fields resolved, values turned into finders and regexes once, so
//! that evaluating a record allocates nothing.

use regex::bytes::{Regex, RegexBuilder};

use super::prefilter::{Candidates, LiteralSet, Prefilter};
use super::syntax::{Comparison, Expr, Term, Value};
use super::text::{GlobPiece, Needle, REGEX_SIZE_LIMIT, token_regex, whole_value_regex};
use super::{Field, FieldAccess, QueryError, QueryErrorKind};
use crate::agent_protocol::AGENT_SD_ID;
use crate::store::BlockIndex;
use crate::store::index::{is_token_byte, token_hash};

/// A compiled query: test records with [`Matcher::is_match`].
#[derive(Debug, Clone)]
pub struct Matcher {
    root: Node,
    /// Literals one of which every matching record's stored JSON contains (see
    /// [`super::prefilter`]): searched for over many records at once by
    /// [`Matcher::candidates`] and [`Matcher::may_match_stored`].
    prefilter: Option<Prefilter>,
    /// What a block's index must show for the block to hold a match.
    block: BlockTest,
}

/// A test on a store block's index ([`BlockIndex`]), derived from the query: false only when
/// no record of the block can match. Hashes are computed once, at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockTest {
    /// Any block may match (the test cannot tell, or the query term cannot rule a block out).
    Maybe,
    And(Box<[BlockTest]>),
    Or(Box<[BlockTest]>),
    /// Every one of these tokens is in some message of the block.
    Tokens(Box<[u64]>),
    Host(u64),
    App(u64),
    /// Some record has one of these severities (bit `c` for code `c`).
    Severity(u8),
    /// Some record has one of these facilities.
    Facility(u32),
}

#[derive(Debug, Clone)]
enum Node {
    All,
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Test(Test),
}

#[derive(Debug, Clone)]
struct Test {
    field: Field,
    /// The value is a comma-separated list (the agent's `tags`): the test applies to each item.
    list: bool,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    /// The field exists (with any value).
    Exists,
    /// A word of text: a case-insensitive occurrence that is not part of a longer token.
    Word(Needle),
    /// A word with wildcards.
    WordPattern(Regex),
    /// A case-insensitive substring.
    Phrase(Needle),
    /// A regex search (case-sensitive unless the pattern says `(?i)`).
    Regex(Regex),
    /// The whole value, ignoring case.
    Equals(Needle),
    /// The whole value against wildcards, ignoring case.
    Pattern(Regex),
    /// The value read as a number.
    Number(Comparison, f64),
}

impl Matcher {
    /// Compiles `query` (see the [module docs](super) for the grammar).
    ///
    /// # Errors
    /// A [`QueryError`] with the 1-based column (in characters) of what is wrong.
    pub fn compile(query: &str) -> Result<Matcher, QueryError> {
        let expr = super::syntax::parse(query)?;
        let root = compile(&expr)?;
        let prefilter = root.literal_set().as_ref().and_then(Prefilter::new);
        let block = root.block_test();
        Ok(Matcher {
            root,
            prefilter,
            block,
        })
    }

    /// Whether a store block whose index is `index` may hold a record this query matches: false
    /// when its index rules that out (a word no message of it has, a host or severity none of its
    /// records has). Used by the store's reader to skip blocks without decompressing them.
    /// `NOT`, regexes and wildcards never rule a block out.
    pub fn may_match_block(&self, index: &BlockIndex<'_>) -> bool {
        self.block.may_match(index)
    }

    /// A quick test on a whole stored record, or on many stored records at once (a block):
    /// false when no record in `raw` can match, because text the query requires is not in it.
    /// True says nothing: test each record with [`Matcher::is_match`].
    ///
    /// Sound for any JSON and for raw records: when `raw` has an escape that could spell the
    /// text, the answer is true.
    pub fn may_match_stored(&self, raw: &[u8]) -> bool {
        self.prefilter
            .as_ref()
            .is_none_or(|p| !p.is_sound_for(raw) || p.find(raw, 0).is_some())
    }

    /// The records of `stored` (stored records, one per line, each ended by `\n`) that may
    /// match, in order: a search of the whole of `stored` for the text every match contains,
    /// so that only the records around its hits are read. Test each with
    /// [`Matcher::is_match`]; [`Candidates::passed_over`] counts the others, which cannot
    /// match. Without such text (or when an escape in `stored` could spell it), every record.
    pub fn candidates<'a>(&'a self, stored: &'a [u8]) -> Candidates<'a> {
        Candidates::new(stored, self.prefilter.as_ref())
    }

    /// Whether `record` matches the query.
    pub fn is_match<R: FieldAccess + ?Sized>(&self, record: &R) -> bool {
        self.root.eval(record)
    }

    /// Whether the query matches every record (the empty query, or `*`).
    pub fn matches_everything(&self) -> bool {
        matches!(self.root, Node::All)
    }
}

impl Node {
    /// Literals one of which every record matching this node has in its stored form.
    fn literal_set(&self) -> Option<LiteralSet> {
        match self {
            Node::Test(test) => test.check.literal_set(),
            Node::And(items) => items
                .iter()
                .map(Node::literal_set)
                .fold(None, LiteralSet::best),
            Node::Or(items) => {
                let mut sets = items.iter().map(Node::literal_set);
                let first = sets.next()??;
                sets.try_fold(first, |set, other| set.union(other?))
            }
            Node::All | Node::Not(_) => None,
        }
    }

    /// The block test of this node. `NOT` gives [`BlockTest::Maybe`]: an index only says what
    /// *some* record of a block has, never what all of them have, so it cannot rule out a
    /// block for the negation of a term.
    fn block_test(&self) -> BlockTest {
        match self {
            Node::All | Node::Not(_) => BlockTest::Maybe,
            Node::And(items) => {
                let tests: Vec<BlockTest> = items
                    .iter()
                    .map(Node::block_test)
                    .filter(|t| *t != BlockTest::Maybe)
                    .collect();
                match tests.len() {
                    0 => BlockTest::Maybe,
                    1 => tests.into_iter().next().unwrap_or(BlockTest::Maybe),
                    _ => BlockTest::And(tests.into()),
                }
            }
            Node::Or(items) => {
                let tests: Vec<BlockTest> = items.iter().map(Node::block_test).collect();
                if tests.contains(&BlockTest::Maybe) {
                    BlockTest::Maybe
                } else {
                    BlockTest::Or(tests.into())
                }
            }
            Node::Test(test) => test.block_test(),
        }
    }

    fn eval<R: FieldAccess + ?Sized>(&self, record: &R) -> bool {
        match self {
            Node::All => true,
            Node::And(items) => items.iter().all(|n| n.eval(record)),
            Node::Or(items) => items.iter().any(|n| n.eval(record)),
            Node::Not(inner) => !inner.eval(record),
            Node::Test(test) => test.eval(record),
        }
    }
}

impl Test {
    fn block_test(&self) -> BlockTest {
        if self.list {
            return BlockTest::Maybe;
        }
        match (&self.field, &self.check) {
            (Field::Message, Check::Word(needle)) => needle
                .text()
                .map_or(BlockTest::Maybe, |text| tokens_test(text, true)),
            (Field::Message, Check::Phrase(needle)) => needle
                .text()
                .map_or(BlockTest::Maybe, |text| tokens_test(text, false)),
            (Field::Host, Check::Equals(needle)) => {
                needle.text().map_or(BlockTest::Maybe, |text| {
                    BlockTest::Host(token_hash(text.as_bytes()))
                })
            }
            (Field::App, Check::Equals(needle)) => needle.text().map_or(BlockTest::Maybe, |text| {
                BlockTest::App(token_hash(text.as_bytes()))
            }),
            (Field::Severity, Check::Number(comparison, operand)) => {
                BlockTest::Severity(code_mask(*comparison, *operand, 7) as u8)
            }
            (Field::Facility, Check::Number(comparison, operand)) => {
                BlockTest::Facility(code_mask(*comparison, *operand, 23))
            }
            _ => BlockTest::Maybe,
        }
    }

    fn eval<R: FieldAccess + ?Sized>(&self, record: &R) -> bool {
        let check = &self.check;
        if let Check::Exists = check {
            return record.any_value(&self.field, &mut |_| true);
        }
        if self.list {
            record.any_value(&self.field, &mut |value| {
                value.split(|&b| b == b',').any(|item| check.accepts(item))
            })
        } else {
            record.any_value(&self.field, &mut |value| check.accepts(value))
        }
    }
}

impl Check {
    /// Literals one of which every value accepted by this check contains. Wildcard patterns
    /// give none: their regexes fold case by Unicode rules, which ASCII literals would not.
    fn literal_set(&self) -> Option<LiteralSet> {
        match self {
            Check::Word(needle) | Check::Phrase(needle) | Check::Equals(needle) => {
                LiteralSet::folded(needle.text()?)
            }
            Check::Regex(re) => LiteralSet::of_regex(re),
            _ => None,
        }
    }

    #[inline]
    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            Check::Exists => true,
            Check::Word(needle) => needle.is_token_in(value),
            Check::Phrase(needle) => needle.is_in(value),
            Check::Equals(needle) => needle.equals(value),
            Check::WordPattern(re) | Check::Regex(re) | Check::Pattern(re) => re.is_match(value),
            Check::Number(comparison, operand) => std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.trim().parse::<f64>().ok())
                .is_some_and(|number| comparison.holds(number, *operand)),
        }
    }
}

impl BlockTest {
    fn may_match(&self, index: &BlockIndex<'_>) -> bool {
        match self {
            BlockTest::Maybe => true,
            BlockTest::And(tests) => tests.iter().all(|t| t.may_match(index)),
            BlockTest::Or(tests) => tests.iter().any(|t| t.may_match(index)),
            BlockTest::Tokens(hashes) => hashes.iter().all(|&h| index.may_have_token(h)),
            BlockTest::Host(hash) => index.may_have_host(*hash),
            BlockTest::App(hash) => index.may_have_app(*hash),
            BlockTest::Severity(codes) => index.may_have_severity(*codes),
            BlockTest::Facility(codes) => index.may_have_facility(*codes),
        }
    }
}

/// The tokens of an ASCII needle that every match has as whole tokens of the message. For a
/// word (`whole`), all of them: the match is not part of a longer token at either end. For a
/// phrase (a substring), only those with a non-token byte of the needle on both sides: the
/// first and last may be the end of a longer token (`"nection res"` in `connection reset`).
fn tokens_test(text: &str, whole: bool) -> BlockTest {
    let bytes = text.as_bytes();
    let mut hashes = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        if !is_token_byte(bytes[start]) {
            start += 1;
            continue;
        }
        let end = bytes[start..]
            .iter()
            .position(|&b| !is_token_byte(b))
            .map_or(bytes.len(), |len| start + len);
        if whole || (start > 0 && end < bytes.len()) {
            hashes.push(token_hash(&bytes[start..end]));
        }
        start = end;
    }
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.is_empty() {
        BlockTest::Maybe
    } else {
        BlockTest::Tokens(hashes.into())
    }
}

/// The codes from 0 to `max` for which `code <comparison> operand` holds, as a bitmap.
fn code_mask(comparison: Comparison, operand: f64, max: u8) -> u32 {
    (0..=max)
        .filter(|&code| comparison.holds(f64::from(code), operand))
        .fold(0, |mask, code| mask | 1 << code)
}

fn compile(expr: &Expr) -> Result<Node, QueryError> {
    Ok(match expr {
        Expr::All => Node::All,
        Expr::And(items) => Node::And(items.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Or(items) => Node::Or(items.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Not(inner) => Node::Not(Box::new(compile(inner)?)),
        Expr::Term(term) => compile_term(term)?,
    })
}

/// What kind of values a field holds, which decides what a value means for it.
pub(super) enum FieldKind {
    /// Free text (the message): words, phrases, regexes.
    Text,
    /// A value compared as a whole (host, app, ...).
    Keyword,
    /// A syslog code with names (severity, facility).
    Code(&'static [(&'static str, u8)], &'static str),
}

fn compile_term(term: &Term) -> Result<Node, QueryError> {
    let Some((name, name_column)) = &term.field else {
        // A bare term searches the message; a lone `*` is every record.
        if let Value::Bare(pieces) = &term.value
            && pieces.iter().all(|p| *p == GlobPiece::AnyRun)
        {
            return Ok(Node::All);
        }
        return test(Field::Message, false, FieldKind::Text, term);
    };
    if name == "_exists_" {
        let field_name = match &term.value {
            Value::Bare(pieces) => match pieces.as_slice() {
                [GlobPiece::Literal(name)] => Some(name.as_str()),
                _ => None,
            },
            Value::Quoted(name) => Some(name.as_str()),
            _ => None,
        };
        let Some(field_name) = field_name.filter(|n| !n.is_empty()) else {
            return Err(QueryError {
                column: term.value_column,
                kind: QueryErrorKind::ExistsNeedsField,
            });
        };
        let (field, list, _) = resolve(field_name, term.value_column)?;
        return Ok(Node::Test(Test {
            field,
            list,
            check: Check::Exists,
        }));
    }
    let (field, list, kind) = resolve(name, *name_column)?;
    test(field, list, kind, term)
}

/// The field `name` stands for, whether its value is a list, and its kind.
pub(super) fn resolve(name: &str, column: usize) -> Result<(Field, bool, FieldKind), QueryError> {
    let keyword = |field| Ok((field, false, FieldKind::Keyword));
    let agent = |param: &str| Field::Sd {
        id: AGENT_SD_ID.into(),
        param: param.into(),
    };
    match name.to_ascii_lowercase().as_str() {
        "message" => Ok((Field::Message, false, FieldKind::Text)),
        "host" => keyword(Field::Host),
        "app" => keyword(Field::App),
        "procid" => keyword(Field::Procid),
        "msgid" => keyword(Field::Msgid),
        "source" => keyword(Field::Source),
        "parse_error" => keyword(Field::ParseError),
        "severity" => Ok((
            Field::Severity,
            false,
            FieldKind::Code(SEVERITIES, "severity"),
        )),
        "facility" => Ok((
            Field::Facility,
            false,
            FieldKind::Code(FACILITIES, "facility"),
        )),
        "entry" | "file" | "topic" => keyword(agent(&name.to_ascii_lowercase())),
        "tags" => Ok((agent("tags"), true, FieldKind::Keyword)),
        _ => {
            if let Some(path) = name.strip_prefix("sd.") {
                return match path.split_once('.') {
                    Some((id, param)) if !id.is_empty() && !param.is_empty() => {
                        keyword(Field::Sd {
                            id: id.into(),
                            param: param.into(),
                        })
                    }
                    _ => Err(QueryError {
                        column,
                        kind: QueryErrorKind::BadSdField(name.to_owned()),
                    }),
                };
            }
            keyword(Field::Other(name.into()))
        }
    }
}

fn test(field: Field, list: bool, kind: FieldKind, term: &Term) -> Result<Node, QueryError> {
    let column = term.value_column;
    let too_big = |_| QueryError {
        column,
        kind: QueryErrorKind::ValueTooLarge,
    };
    let check = match (&kind, &term.value) {
        (_, Value::Regex(pattern)) => Check::Regex(
            RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| QueryError {
                    column,
                    kind: QueryErrorKind::BadRegex(regex_error_text(&e)),
                })?,
        ),
        (FieldKind::Code(names, what), value) => code_check(names, what, value, column)?,
        (_, Value::Compare(comparison, operand)) => match operand.trim().parse::<f64>() {
            Ok(number) if number.is_finite() => Check::Number(*comparison, number),
            _ => {
                return Err(QueryError {
                    column,
                    kind: QueryErrorKind::NotANumber(operand.clone()),
                });
            }
        },
        (FieldKind::Text, Value::Quoted(text)) => {
            Check::Phrase(Needle::new(text).map_err(too_big)?)
        }
        (FieldKind::Text, Value::Bare(pieces)) => match pieces.as_slice() {
            [GlobPiece::Literal(word)] => Check::Word(Needle::new(word).map_err(too_big)?),
            [] => Check::Exists,
            _ => Check::WordPattern(token_regex(pieces).map_err(too_big)?),
        },
        (FieldKind::Keyword, Value::Quoted(text)) => {
            Check::Equals(Needle::new(text).map_err(too_big)?)
        }
        (FieldKind::Keyword, Value::Bare(pieces)) => match pieces.as_slice() {
            [GlobPiece::Literal(word)] => Check::Equals(Needle::new(word).map_err(too_big)?),
            [GlobPiece::AnyRun] => Check::Exists,
            _ => Check::Pattern(whole_value_regex(pieces).map_err(too_big)?),
        },
    };
    Ok(Node::Test(Test { field, list, check }))
}

/// `severity:err`, `severity:<=warning`, `facility:16`, `severity:*`.
fn code_check(
    names: &[(&str, u8)],
    what: &'static str,
    value: &Value,
    column: usize,
) -> Result<Check, QueryError> {
    let (comparison, text) = match value {
        Value::Compare(comparison, text) => (*comparison, text.as_str()),
        Value::Quoted(text) => (Comparison::Equal, text.as_str()),
        Value::Bare(pieces) => match pieces.as_slice() {
            [GlobPiece::AnyRun] => return Ok(Check::Exists),
            [GlobPiece::Literal(text)] => (Comparison::Equal, text.as_str()),
            _ => {
                return Err(QueryError {
                    column,
                    kind: QueryErrorKind::UnknownCode {
                        what,
                        value: render_pieces(pieces),
                    },
                });
            }
        },
        Value::Regex(_) => unreachable!("regexes are compiled before codes"),
    };
    let Some(code) = code_number(names, text) else {
        return Err(QueryError {
            column,
            kind: QueryErrorKind::UnknownCode {
                what,
                value: text.to_owned(),
            },
        });
    };
    Ok(Check::Number(comparison, f64::from(code)))
}

/// The code `text` names: a name of `names` (any case) or a number up to the largest code.
pub(super) fn code_number(names: &[(&str, u8)], text: &str) -> Option<u8> {
    let lower = text.to_ascii_lowercase();
    let max = names.iter().map(|&(_, code)| code).max().unwrap_or(0);
    match lower.parse::<u8>() {
        Ok(code) if code <= max => Some(code),
        Ok(_) => None,
        Err(_) => names
            .iter()
            .find(|&&(name, _)| name == lower)
            .map(|&(_, code)| code),
    }
}

fn render_pieces(pieces: &[GlobPiece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            GlobPiece::Literal(text) => text.as_str(),
            GlobPiece::AnyRun => "*",
            GlobPiece::AnyOne => "?",
        })
        .collect()
}

/// The regex crate's error on one line (its syntax errors span several, with a caret drawing).
fn regex_error_text(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .map_or_else(
                || text.replace('\n', " "),
                |l| l.trim_start_matches("error: ").to_owned(),
            ),
        regex::Error::CompiledTooBig(_) => "the regex is too big".to_owned(),
        other => other.to_string(),
    }
}

/// Severity names (RFC 5424 §6.2.1, with the usual long forms and aliases) → code.
pub(crate) const SEVERITIES: &[(&str, u8)] = &[
    ("emerg", 0),
    ("emergency", 0),
    ("panic", 0),
    ("alert", 1),
    ("crit", 2),
    ("critical", 2),
    ("err", 3),
    ("error", 3),
    ("warning", 4),
    ("warn", 4),
    ("notice", 5),
    ("info", 6),
    ("informational", 6),
    ("debug", 7),
];

/// Facility names (RFC 5424 §6.2.1, as rsyslog and syslog(3) spell them) → code.
pub(crate) const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("security", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("alert", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl Field {
    /// The field a query names `name` (as in `name:value`, case-insensitive), and whether its
    /// value is a comma-separated list (`tags`): for callers that read one field of every
    /// match, such as facets.
    ///
    /// # Errors
    /// A malformed `sd.` name, at column 1.
    pub fn named(name: &str) -> Result<(Field, bool), QueryError> {
        resolve(name, 1).map(|(field, list, _)| (field, list))
    }
}
