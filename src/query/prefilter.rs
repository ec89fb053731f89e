//! The literal prefilter: text that every record a query matches contains in its stored form,
//! searched for over many stored records at once (ripgrep's way) so that only the records around
//! a hit are read as JSON and matched exactly.
//!
//! # What the literals are
//!
//! A word, phrase or whole value (`timeout`, `"connection reset"`, `host:web-01`) is its own
//! literal, ASCII case folded (the matcher folds only ASCII letters of an ASCII needle). A regex
//! gives the prefixes or the suffixes every one of its matches starts or ends with
//! (`regex-syntax`'s literal extraction: `/err(or)? \d+/` gives `err `, `error `; a `(?i)` regex
//! gives each case variant, Unicode folds such as the Kelvin sign included, and a set whose
//! literals differ only in ASCII case is searched ignoring case), matched exactly.
//! `AND` keeps the best of its terms' sets (the longest shortest literal), `OR` the union of all
//! its terms' sets (none if one term has none), `NOT` and wildcards give none.
//!
//! # Why it is sound on stored JSON
//!
//! Terms match *unescaped* values, the store holds JSON text. A literal is used only if it has
//! none of the bytes a JSON string escapes (`"`, `\`, control bytes), so the unescaped text
//! holds it only if the JSON text does, byte for byte, *unless* another escape spells one of its
//! bytes: `\/`, or `\uXXXX` for a character that is not a control character, `"` or `\`. The
//! store's encoder writes neither (it escapes `"`, `\` and control bytes only), but a record
//! from elsewhere may: a piece of stored records with such an escape is not prefiltered at all
//! ([`Prefilter::is_sound_for`]), each of its records is matched exactly.
//!
//! A hit says nothing about which field holds the text: the record around it is matched in
//! full. Records are one per line (no literal holds `\n`, so a hit never spans two).

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::text::{Needle, REGEX_SIZE_LIMIT};

/// Shorter literals are too common to be worth a search of their own.
const MIN_LITERAL_LEN: usize = 3;

/// More literals than this make the search little faster than matching every record.
const MAX_LITERALS: usize = 64;

/// Literals one of which every matching record contains (in its stored form), before they are
/// turned into a searcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiteralSet {
    literals: Vec<Vec<u8>>,
    /// Match ignoring ASCII case (words, phrases and values; a regex's literals are exact).
    fold_case: bool,
}

impl LiteralSet {
    /// The literal of a word, phrase or whole value (its ASCII text, lowercased).
    pub(crate) fn folded(text: &str) -> Option<LiteralSet> {
        LiteralSet {
            literals: vec![text.as_bytes().to_vec()],
            fold_case: true,
        }
        .usable()
    }

    /// What every match of `regex` starts with, or ends with (the better of the two).
    pub(crate) fn of_regex(regex: &Regex) -> Option<LiteralSet> {
        // As `regex::bytes::RegexBuilder::new` parses it: Unicode on, matches need not be UTF-8.
        let hir = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(regex.as_str())
            .ok()?;
        [ExtractKind::Prefix, ExtractKind::Suffix]
            .into_iter()
            .filter_map(|kind| {
                let seq = Extractor::new().kind(kind).extract(&hir);
                LiteralSet {
                    literals: seq
                        .literals()?
                        .iter()
                        .map(|l| l.as_bytes().to_vec())
                        .collect(),
                    fold_case: false,
                }
                .usable()
            })
            .max_by_key(LiteralSet::score)
    }

    /// The set for `AND`: the better one.
    pub(crate) fn best(a: Option<LiteralSet>, b: Option<LiteralSet>) -> Option<LiteralSet> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.score() > a.score() { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The set for `OR`: every literal of both. Exact literals searched ignoring case find a
    /// superset of their hits, so mixing the two folds case.
    pub(crate) fn union(mut self, other: LiteralSet) -> Option<LiteralSet> {
        self.fold_case |= other.fold_case;
        self.literals.extend(other.literals);
        self.usable()
    }

    /// `self` if it is worth searching for and sound to search for (see the module docs).
    fn usable(mut self) -> Option<LiteralSet> {
        // A `(?i)` regex gives every case variant (128 for `(?i)connect`): one search ignoring
        // ASCII case finds them all (and more, which only costs false candidates).
        if !self.fold_case && self.literals.len() > 1 {
            let mut folded: Vec<Vec<u8>> = self
                .literals
                .iter()
                .map(|l| l.to_ascii_lowercase())
                .collect();
            folded.sort_unstable();
            folded.dedup();
            self.fold_case = folded.len() < self.literals.len();
        }
        if self.fold_case {
            for literal in &mut self.literals {
                literal.make_ascii_lowercase();
            }
        }
        self.literals.sort_unstable();
        self.literals.dedup();
        let ok = !self.literals.is_empty()
            && self.literals.len() <= MAX_LITERALS
            && self.literals.iter().all(|literal| {
                literal.len() >= MIN_LITERAL_LEN
                    && literal
                        .iter()
                        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
            });
        ok.then_some(self)
    }

    /// Higher is fewer false candidates: the shortest literal's length, then fewer literals.
    fn score(&self) -> (usize, std::cmp::Reverse<usize>) {
        let shortest = self.literals.iter().map(Vec::len).min().unwrap_or(0);
        (shortest, std::cmp::Reverse(self.literals.len()))
    }
}

/// A [`LiteralSet`] ready to search stored records with.
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    search: Search,
    /// Some literal has a `/` (which JSON may write `\/`).
    has_slash: bool,
    /// Some literal has a non-ASCII byte (which JSON may write as a `\u` escape).
    has_non_ascii: bool,
}

#[derive(Debug, Clone)]
enum Search {
    /// One exact literal.
    Exact(Box<memmem::Finder<'static>>),
    /// One literal, ignoring ASCII case.
    Folded(Needle),
    /// Several: the regex crate searches a literal alternation with its own literal searchers
    /// (Teddy, Aho-Corasick).
    Any(Regex),
}

impl Prefilter {
    pub(crate) fn new(set: &LiteralSet) -> Option<Prefilter> {
        let search = match set.literals.as_slice() {
            [one] if !set.fold_case => {
                Search::Exact(Box::new(memmem::Finder::new(one).into_owned()))
            }
            [one] => Search::Folded(Needle::new(std::str::from_utf8(one).ok()?).ok()?),
            many => {
                let mut pattern = String::from(if set.fold_case { "(?i-u)" } else { "(?-u)" });
                for (i, literal) in many.iter().enumerate() {
                    if i > 0 {
                        pattern.push('|');
                    }
                    for &b in literal {
                        pattern.push_str(&format!("\\x{b:02X}"));
                    }
                }
                Search::Any(
                    RegexBuilder::new(&pattern)
                        .unicode(false)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .ok()?,
                )
            }
        };
        Some(Prefilter {
            search,
            has_slash: set.literals.iter().any(|l| l.contains(&b'/')),
            has_non_ascii: set.literals.iter().any(|l| !l.is_ascii()),
        })
    }

    /// Where the first literal occurrence at or after `from` starts.
    #[inline]
    pub(crate) fn find(&self, hay: &[u8], from: usize) -> Option<usize> {
        let rest = hay.get(from..)?;
        match &self.search {
            Search::Exact(finder) => finder.find(rest).map(|at| from + at),
            Search::Folded(needle) => needle.find(rest).map(|at| from + at),
            Search::Any(regex) => regex.find_at(hay, from).map(|m| m.start()),
        }
    }

    /// Whether a search of `stored` (JSON records) for the literals finds every record that
    /// holds one once unescaped: false when `stored` has an escape that could spell a byte of a
    /// literal (see the module docs).
    pub(crate) fn is_sound_for(&self, stored: &[u8]) -> bool {
        // Two-byte searches rather than a stop at every `\`: a record quoting a request line
        // (the corpus's access logs) has several `\"`, which a vector search for `\u` passes
        // over without stopping.
        let spells_a_byte = |at: usize| {
            let code = stored
                .get(at + 2..at + 6)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u32::from_str_radix(hex, 16).ok());
            match code {
                Some(c) if c < 0x20 || c == u32::from(b'"') || c == u32::from(b'\\') => false,
                Some(c) if c >= 0x80 => self.has_non_ascii,
                Some(_) => true,
                // Not an escape the unescaper decodes: kept as written.
                None => false,
            }
        };
        if self.has_slash && memmem::find(stored, b"\\/").is_some() {
            return false;
        }
        !memmem::find_iter(stored, b"\\u").any(spells_a_byte)
    }
}

/// The records of a piece of stored records (one per line) that may match a query, in order:
/// see [`Matcher::candidates`](super::Matcher::candidates).
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    stored: &'a [u8],
    /// Where the records not yet looked at start.
    at: usize,
    /// `None`: every record is a candidate.
    prefilter: Option<&'a Prefilter>,
    passed_over: u64,
}

impl<'a> Candidates<'a> {
    pub(crate) fn new(stored: &'a [u8], prefilter: Option<&'a Prefilter>) -> Candidates<'a> {
        Candidates {
            stored,
            at: 0,
            prefilter: prefilter.filter(|p| p.is_sound_for(stored)),
            passed_over: 0,
        }
    }

    /// How many records were passed over so far: none of them can match.
    pub fn passed_over(&self) -> u64 {
        self.passed_over
    }
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let stored = self.stored;
        let rest = stored.get(self.at..).filter(|rest| !rest.is_empty())?;
        let start = match self.prefilter {
            None => self.at,
            Some(prefilter) => match prefilter.find(stored, self.at) {
                Some(hit) => {
                    // The record holding the hit starts after the last `\n` before it.
                    let before = &stored[self.at..hit];
                    let skipped = memchr::memrchr(b'\n', before).map_or(0, |nl| nl + 1);
                    self.passed_over += line_count(&before[..skipped]);
                    self.at + skipped
                }
                None => {
                    self.passed_over += line_count(rest);
                    self.at = stored.len();
                    return None;
                }
            },
        };
        let end = memchr::memchr(b'\n', &stored[start..]).map_or(stored.len(), |len| start + len);
        self.at = end + 1;
        Some(&stored[start..end])
    }
}

/// The number of lines in `text`: its `\n`s, and an unterminated last line.
fn line_count(text: &[u8]) -> u64 {
    let ends = memchr::memchr_iter(b'\n', text).count() as u64;
    ends + u64::from(text.last().is_some_and(|&b| b != b'\n'))
}
