//! RFC 5424 / RFC 3164 parsing and the JSON encoder, on arbitrary bytes.
//!
//! The message is parsed as each format (auto, rfc5424, rfc3164). Checked: no byte is lost (an
//! unparsed message is the whole input, a parsed one a suffix of it); facility and severity are
//! in range; the encoded JSON is valid JSON with the same message text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logtail::encode::{Envelope, json};
use logtail::parse::{Format, LegacyZone, ParseContext, parse};

fuzz_target!(|input: &[u8]| {
    let mut ctx = ParseContext::new(1_795_229_627_000_000, LegacyZone::Fixed(3600));
    let mut out = Vec::new();
    for format in [Format::Auto, Format::Rfc5424, Format::Rfc3164] {
        let record = parse(input, format, &mut ctx);
        if record.parse_error.is_some() {
            assert_eq!(record.message, input);
        } else {
            assert!(input.ends_with(record.message));
        }
        assert!(record.facility.is_none_or(|f| f <= 23));
        assert!(record.severity.is_none_or(|s| s <= 7));
        out.clear();
        json::encode(
            &record,
            &Envelope::new(b"2026-11-21T02:53:47.123456Z", "tcp:514"),
            &mut out,
        );
        let value: serde_json::Value = match serde_json::from_slice(&out) {
            Ok(v) => v,
            Err(e) => panic!("invalid JSON {e}: {}", String::from_utf8_lossy(&out)),
        };
        let message = value.get("message").and_then(|m| m.as_str()).unwrap_or("");
        if let Ok(text) = std::str::from_utf8(record.message) {
            assert_eq!(message, text);
        }
    }
});
