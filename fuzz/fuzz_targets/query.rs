//! The query language (`src/query`) on arbitrary text, matched against an arbitrary message.
//!
//! Input: the query, a LF, then a syslog message. The message is parsed and encoded as the
//! store keeps it. Checked: compiling never panics; the block pre-filter
//! (`may_match_stored`, `candidates`) never rules out a record the matcher accepts; for a UTF-8 message and a
//! query of message terms only, the parsed record and the stored JSON give the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logtail::encode::{Envelope, json};
use logtail::parse::{Format, LegacyZone, ParseContext, parse};
use logtail::query::{JsonRecord, Matcher, ParsedRecord};

fuzz_target!(|data: &[u8]| {
    let (query, message) = match data.iter().position(|&b| b == b'\n') {
        Some(lf) => (&data[..lf], &data[lf + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(matcher) = Matcher::compile(query) else {
        return;
    };
    let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(0));
    let record = parse(message, Format::Auto, &mut ctx);
    let mut stored = Vec::new();
    let source = "127.0.0.1:5140";
    json::encode(
        &record,
        &Envelope::new(b"2026-11-21T02:53:47.123456Z", source),
        &mut stored,
    );
    let json_match = matcher.is_match(&JsonRecord::new(&stored));
    if json_match {
        assert!(
            matcher.may_match_stored(&stored),
            "pre-filter ruled out a match"
        );
        assert_eq!(
            matcher.candidates(&stored).next(),
            Some(stored.as_slice()),
            "the literal prefilter passed over a match"
        );
    }
    let parsed_match = matcher.is_match(&ParsedRecord {
        record: &record,
        source,
    });
    if std::str::from_utf8(message).is_ok() && !query.contains(':') && !query.contains('_') {
        assert_eq!(
            json_match, parsed_match,
            "stored and parsed records disagree"
        );
    }
});
