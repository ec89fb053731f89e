//! Encoding parsed records into the bytes the sinks store: one JSON object per record
//! ([`json`]), or the message exactly as received ([`Encoding::Raw`]).
//!
//! ```
//! use logtail::encode::{encode, format_rfc3339_micros, Encoding, Envelope};
//! use logtail::parse::{parse, Format, LegacyZone, ParseContext};
//!
//! let received_us = 1_795_229_627_123_456;
//! let mut received_at = Vec::new();
//! format_rfc3339_micros(received_us, &mut received_at); // once per receive, not per line
//! let envelope = Envelope::new(&received_at, "udp:5514");
//!
//! let mut ctx = ParseContext::new(received_us, LegacyZone::Fixed(0));
//! let input = b"<13>Nov 21 02:53:47 root: hello";
//! let record = parse(input, Format::Auto, &mut ctx);
//! let mut out = Vec::new();
//! encode(Encoding::Json, input, &record, &envelope, &mut out);
//! assert_eq!(
//!     out,
//!     br#"{"facility":1,"severity":5,"timestamp":"2026-11-21T02:53:47Z","app":"root","message":"hello","received_at":"2026-11-21T02:53:47.123456Z","source":"udp:5514"}"#
//! );
//! ```
//!
//! Both encoders only append to the caller's buffer: no allocation per record once the buffer
//! has grown to its working size.

pub mod json;
#[cfg(test)]
mod proptests;

use std::fmt;
use std::str::FromStr;

use crate::parse::{Record, Timestamp};

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// One JSON object per record (see [`json`] for the schema).
    #[default]
    Json,
    /// The input bytes exactly as received.
    Raw,
}

/// The error of [`Encoding::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encoding {0:?}: expected \"json\" or \"raw\"")]
pub struct UnknownEncoding(pub String);

impl FromStr for Encoding {
    type Err = UnknownEncoding;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Encoding::Json),
            "raw" => Ok(Encoding::Raw),
            _ => Err(UnknownEncoding(s.to_owned())),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Json => "json",
            Encoding::Raw => "raw",
        })
    }
}

/// What the gateway knows about a record besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The receive time as RFC 3339 text ([`format_rfc3339_micros`], cached per receive).
    pub received_at: &'a [u8],
    /// Where the record came from, e.g. `udp:5514`.
    pub source: &'a str,
    /// The name in the sender's verified TLS client certificate, if any.
    pub tls_peer: Option<&'a str>,
    /// The host an authenticated agent sent as, if any.
    pub agent_host: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// The envelope of a record from `source`, with no authenticated identity.
    pub const fn new(received_at: &'a [u8], source: &'a str) -> Self {
        Envelope {
            received_at,
            source,
            tls_peer: None,
            agent_host: None,
        }
    }
}

/// Appends one encoded record (no trailing newline) to `out`. `input` is the message the
/// record was parsed from (only [`Encoding::Raw`] uses it). Returns where a JSON record's
/// indexed members are, for the store's block index ([`json::IndexedFields`]).
pub fn encode(
    encoding: Encoding,
    input: &[u8],
    record: &Record,
    envelope: &Envelope,
    out: &mut Vec<u8>,
) -> Option<json::IndexedFields> {
    match encoding {
        Encoding::Json => json::encode(record, envelope, out),
        Encoding::Raw => {
            out.extend_from_slice(input);
            None
        }
    }
}

/// Appends `unix_us` (microseconds since the Unix epoch) as RFC 3339 UTC text with six
/// fraction digits, e.g. `2026-11-21T02:53:47.123456Z`. Instants outside years 0000–9999 are
/// clamped to that range.
pub fn format_rfc3339_micros(unix_us: i64, out: &mut Vec<u8>) {
    Timestamp::from_unix_micros(unix_us).write_rfc3339(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Format, LegacyZone, ParseContext, parse};

    #[test]
    fn encoding_from_str_and_display_round_trip() {
        for encoding in [Encoding::Json, Encoding::Raw] {
            assert_eq!(encoding.to_string().parse(), Ok(encoding));
        }
        assert_eq!(
            "xml".parse::<Encoding>(),
            Err(UnknownEncoding("xml".to_owned()))
        );
    }

    #[test]
    fn raw_appends_input_unchanged() {
        let input = b"<13>1 - - - - - - \xEF\xBB\xBFm\xff";
        let mut ctx = ParseContext::new(0, LegacyZone::Fixed(0));
        let record = parse(input, Format::Auto, &mut ctx);
        let envelope = Envelope::new(b"x", "s");
        let mut out = b"prefix".to_vec();
        encode(Encoding::Raw, input, &record, &envelope, &mut out);
        assert_eq!(out, [&b"prefix"[..], input].concat());
    }

    #[test]
    fn rfc3339_micros_text() {
        let mut out = Vec::new();
        format_rfc3339_micros(0, &mut out);
        out.push(b' ');
        format_rfc3339_micros(1_795_229_627_000_001, &mut out);
        assert_eq!(
            out,
            b"1970-01-01T00:00:00.000000Z 2026-11-21T02:53:47.000001Z"
        );
    }
}
