//! Text tests a compiled query runs on field values: case-insensitive substring and whole-token
//! search, whole-value equality and wildcard patterns. Everything here is built once per query;
//! running a test allocates nothing.

use memchr::memchr2_iter;
use regex::bytes::{Regex, RegexBuilder};

// One definition of a token for the query and the store's block index: the index's token
// filter is sound only because both cut words the same way.
pub(crate) use crate::store::index::is_token_byte;

/// Whether the occurrence `hay[start..end]` is not part of a longer token: if it begins with a
/// token byte, the byte before it is not one, and likewise at its end (the rule of a regex `\b`
/// at the ends of a word, so `#42` is found in `issue#42` but `42` is not found in `x42`).
#[inline]
fn is_whole_token(hay: &[u8], start: usize, end: usize) -> bool {
    let open = |inner: usize, outer: Option<usize>| {
        !hay.get(inner).is_some_and(|&b| is_token_byte(b))
            || !outer
                .and_then(|o| hay.get(o))
                .is_some_and(|&b| is_token_byte(b))
    };
    start == end || (open(start, start.checked_sub(1)) && open(end - 1, Some(end)))
}

/// Case-insensitive search for one literal.
///
/// An ASCII needle is found without a regex: `memchr2` looks for the needle's rarest byte in both
/// cases, and each hit is checked with `eq_ignore_ascii_case`. A needle with non-ASCII letters
/// goes through the regex engine, which folds them by Unicode simple case folding.
#[derive(Debug, Clone)]
pub(crate) enum Needle {
    Ascii {
        lower: Box<[u8]>,
        /// Index in `lower` of the byte looked for first.
        rare_at: usize,
    },
    Unicode(Regex),
}

impl Needle {
    /// # Errors
    /// A needle with non-ASCII letters so long that its regex would exceed the size limit.
    pub(crate) fn new(text: &str) -> Result<Needle, regex::Error> {
        if text.is_ascii() {
            let lower: Box<[u8]> = text.to_ascii_lowercase().into_bytes().into();
            let rare_at = lower
                .iter()
                .enumerate()
                .max_by_key(|&(_, &b)| byte_rarity(b))
                .map_or(0, |(i, _)| i);
            Ok(Needle::Ascii { lower, rare_at })
        } else {
            Ok(Needle::Unicode(case_insensitive(&regex::escape(text))?))
        }
    }

    /// The needle's text (lowercased), when it is ASCII.
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Needle::Ascii { lower, .. } => std::str::from_utf8(lower).ok(),
            Needle::Unicode(_) => None,
        }
    }

    /// Whether `hay` contains the needle, ignoring case.
    pub(crate) fn is_in(&self, hay: &[u8]) -> bool {
        self.find_from(hay, 0, |_, _| true)
    }

    /// Where the first occurrence in `hay` starts, ignoring case.
    pub(crate) fn find(&self, hay: &[u8]) -> Option<usize> {
        let mut found = None;
        self.find_from(hay, 0, |start, _| {
            found = Some(start);
            true
        });
        found
    }

    /// Whether `hay` contains the needle as a whole token (see [`is_whole_token`]).
    pub(crate) fn is_token_in(&self, hay: &[u8]) -> bool {
        self.find_from(hay, 0, |start, end| is_whole_token(hay, start, end))
    }

    /// Whether the whole of `value` equals the needle, ignoring case.
    pub(crate) fn equals(&self, value: &[u8]) -> bool {
        match self {
            Needle::Ascii { lower, .. } => value.eq_ignore_ascii_case(lower),
            Needle::Unicode(re) => re
                .find(value)
                .is_some_and(|m| m.start() == 0 && m.end() == value.len()),
        }
    }

    /// Whether some occurrence at or after `from`, as `start..end`, satisfies `accept`.
    /// Occurrences may overlap: after a rejected one the search goes on from the next byte.
    fn find_from(
        &self,
        hay: &[u8],
        from: usize,
        mut accept: impl FnMut(usize, usize) -> bool,
    ) -> bool {
        match self {
            Needle::Ascii { lower, rare_at } => {
                let n = lower.len();
                if n == 0 {
                    return accept(from, from);
                }
                let rare = lower[*rare_at];
                let (lo, hi) = (rare, rare.to_ascii_uppercase());
                let Some(last_start) = hay.len().checked_sub(n) else {
                    return false;
                };
                let search_from = from + rare_at;
                if search_from > hay.len() {
                    return false;
                }
                for hit in memchr2_iter(lo, hi, &hay[search_from..]) {
                    let start = from + hit;
                    if start > last_start {
                        return false;
                    }
                    if hay[start..start + n].eq_ignore_ascii_case(lower) && accept(start, start + n)
                    {
                        return true;
                    }
                }
                false
            }
            Needle::Unicode(re) => {
                let mut at = from;
                while at <= hay.len() {
                    let Some(m) = re.find_at(hay, at) else {
                        return false;
                    };
                    if accept(m.start(), m.end()) {
                        return true;
                    }
                    at = m.start() + 1;
                }
                false
            }
        }
    }
}

/// How rare `byte` is in log text, higher is rarer: a byte of the list below ranks by its place
/// in it (roughly English letter frequency, with digits and common punctuation among them), any
/// other byte is rarer still. Looking for the rarest byte of the needle first means fewer false
/// candidates to check; only the order matters.
fn byte_rarity(byte: u8) -> u8 {
    const COMMON_FIRST: &[u8] = b" etaoinsrhldcu0123456789mfpgwybvk.-:/_=,xjqz";
    match COMMON_FIRST.iter().position(|&c| c == byte) {
        Some(i) => i as u8,
        None => u8::MAX,
    }
}

/// A compiled regex may use this much memory (the regex crate's default is 10 MiB; a query
/// from an HTTP client should not make the gateway build a huge automaton).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A case-insensitive bytes regex from an already escaped pattern.
///
/// # Errors
/// Only when the pattern is too big ([`REGEX_SIZE_LIMIT`]): a very long value.
pub(crate) fn case_insensitive(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A value with `*` / `?` wildcards, as pieces: literal text and the wildcards between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GlobPiece {
    Literal(String),
    AnyRun,
    AnyOne,
}

/// The regex for a whole field value matching `pieces` (case-insensitive): `*` is any run of
/// characters, `?` any one character.
pub(crate) fn whole_value_regex(pieces: &[GlobPiece]) -> Result<Regex, regex::Error> {
    let mut pattern = String::from("(?s)^");
    for piece in pieces {
        match piece {
            GlobPiece::Literal(text) => pattern.push_str(&regex::escape(text)),
            GlobPiece::AnyRun => pattern.push_str(".*"),
            GlobPiece::AnyOne => pattern.push('.'),
        }
    }
    pattern.push('$');
    case_insensitive(&pattern)
}

/// The regex for a word of the message with wildcards (case-insensitive): `*` is any run of
/// non-space characters, `?` one non-space character, and the match is not part of a longer
/// token (the rule of [`is_whole_token`], a wildcard end counting as a token byte).
pub(crate) fn token_regex(pieces: &[GlobPiece]) -> Result<Regex, regex::Error> {
    const NOT_TOKEN: &str = r"(?-u:[^0-9A-Za-z_\x80-\xFF])";
    let bounded = |piece: Option<&GlobPiece>, first: bool| match piece {
        Some(GlobPiece::Literal(text)) => {
            let byte = if first {
                text.bytes().next()
            } else {
                text.bytes().last()
            };
            byte.is_some_and(is_token_byte)
        }
        Some(_) => true,
        None => false,
    };
    let mut pattern = String::new();
    if bounded(pieces.first(), true) {
        pattern.push_str(&format!("(?:^|{NOT_TOKEN})"));
    }
    for piece in pieces {
        match piece {
            GlobPiece::Literal(text) => pattern.push_str(&regex::escape(text)),
            GlobPiece::AnyRun => pattern.push_str(r"\S*"),
            GlobPiece::AnyOne => pattern.push_str(r"\S"),
        }
    }
    if bounded(pieces.last(), false) {
        pattern.push_str(&format!("(?:$|{NOT_TOKEN})"));
    }
    case_insensitive(&pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_needle_finds_any_case_and_overlapping_occurrences() {
        let n = Needle::new("Time").unwrap();
        assert!(n.is_in(b"a TIMEOUT"));
        assert!(n.is_in(b"time"));
        assert!(!n.is_in(b"tim"));
        assert!(!n.is_in(b""));
        let dots = Needle::new("a.a").unwrap();
        assert!(
            dots.is_token_in(b"xa.a.a"),
            "occurrence at 3 overlaps the one at 1"
        );
        assert!(!dots.is_token_in(b"xa.ax"));
    }

    #[test]
    fn token_needs_non_token_bytes_around_it() {
        let n = Needle::new("timeout").unwrap();
        assert!(n.is_token_in(b"read timeout."));
        assert!(n.is_token_in(b"TIMEOUT"));
        assert!(n.is_token_in(b"(timeout)"));
        assert!(!n.is_token_in(b"timeouts"));
        assert!(!n.is_token_in(b"_timeout"));
        assert!(!n.is_token_in("ütimeout".as_bytes()));
    }

    #[test]
    fn unicode_needle_folds_case() {
        let n = Needle::new("Grüße").unwrap();
        assert!(n.is_in("viele grüßeX".as_bytes()));
        assert!(n.is_token_in("viele GRÜßE!".as_bytes()));
        assert!(n.equals("grüße".as_bytes()));
        assert!(!n.equals("grüße!".as_bytes()));
    }

    #[test]
    fn equals_is_whole_value() {
        let n = Needle::new("web-01").unwrap();
        assert!(n.equals(b"WEB-01"));
        assert!(!n.equals(b"web-011"));
        assert!(Needle::new("").unwrap().equals(b""));
    }

    #[test]
    fn wildcard_regexes() {
        use GlobPiece::*;
        let host = whole_value_regex(&[Literal("web-".into()), AnyRun]).unwrap();
        assert!(host.is_match(b"WEB-01"));
        assert!(!host.is_match(b"xweb-01"));
        let word = token_regex(&[Literal("time".into()), AnyRun]).unwrap();
        assert!(word.is_match(b"a timeouts b"));
        assert!(!word.is_match(b"atimeout"));
        let one = token_regex(&[Literal("er".into()), AnyOne]).unwrap();
        assert!(one.is_match(b"an err"));
        assert!(!one.is_match(b"an er"));
    }
}
