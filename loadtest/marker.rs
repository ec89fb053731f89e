//! The marker every generated message carries, and how it is found again in whatever came out.
//!
//! ```text
//! ltm:RUN:SENDER:SEQ:SENT_US;
//! ltm:0c1f9a3e:12:48213:1795229627123456;
//! ```
//!
//! - `RUN`: 8 lowercase hex digits, random per run, so a topic or store shared with earlier
//!   runs (or other traffic) does not confuse the tally;
//! - `SENDER`: the sender (connection or socket) number, decimal, from 0;
//! - `SEQ`: the sender's sequence number, decimal, from 0, one per message;
//! - `SENT_US`: the wall-clock time the message was handed to the socket, in microseconds since
//!   the Unix epoch (the gateway, the broker and the harness share the machine's clock).
//!
//! The marker is found by its bytes, not by parsing the record, so the same verifier reads JSON
//! records (none of its characters is escaped in JSON), raw records, and rsyslog's output. The
//! closing `;` tells a whole marker from one cut short (a frame torn by a dying connection).

use memchr::memmem;

/// The bytes that open a marker.
pub const PREFIX: &[u8] = b"ltm:";

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub run: u32,
    pub sender: u32,
    pub seq: u64,
    pub sent_us: u64,
}

impl Marker {
    /// Appends the marker's text to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(PREFIX);
        for shift in (0..8).rev() {
            out.push(b"0123456789abcdef"[(self.run >> (shift * 4)) as usize & 0xf]);
        }
        out.push(b':');
        write_decimal(out, u64::from(self.sender));
        out.push(b':');
        write_decimal(out, self.seq);
        out.push(b':');
        write_decimal(out, self.sent_us);
        out.push(b';');
    }
}

/// Appends `n` in decimal: `write!` costs a formatter per call, this is the hot path of every
/// sender.
fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// What a record held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A whole marker of this run.
    Ours(Marker),
    /// A whole marker of another run.
    OtherRun,
    /// A marker prefix whose fields are cut short or malformed.
    Malformed,
    /// No marker at all.
    None,
}

/// Finds markers in records; holds the searcher so a verifier builds it once.
pub struct MarkerFinder {
    run: u32,
    finder: memmem::Finder<'static>,
}

impl MarkerFinder {
    /// A finder of markers of run `run`.
    pub fn new(run: u32) -> Self {
        MarkerFinder {
            run,
            finder: memmem::Finder::new(PREFIX),
        }
    }

    /// The first marker in `record`.
    pub fn find(&self, record: &[u8]) -> Found {
        let Some(at) = self.finder.find(record) else {
            return Found::None;
        };
        match parse(&record[at + PREFIX.len()..]) {
            Some(m) if m.run == self.run => Found::Ours(m),
            Some(_) => Found::OtherRun,
            None => Found::Malformed,
        }
    }
}

/// Parses the fields after the prefix, up to and including the closing `;`.
fn parse(text: &[u8]) -> Option<Marker> {
    let run_hex = text.get(..8)?;
    let run = u32::from_str_radix(std::str::from_utf8(run_hex).ok()?, 16).ok()?;
    let mut rest = text.get(8..)?.strip_prefix(b":")?;
    let mut field = |end: u8| -> Option<u64> {
        let len = rest.iter().position(|b| !b.is_ascii_digit())?;
        if len == 0 || len > 20 || rest[len] != end {
            return None;
        }
        let n = std::str::from_utf8(&rest[..len]).ok()?.parse().ok()?;
        rest = &rest[len + 1..];
        Some(n)
    };
    let sender = u32::try_from(field(b':')?).ok()?;
    let seq = field(b':')?;
    let sent_us = field(b';')?;
    Some(Marker {
        run,
        sender,
        seq,
        sent_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Marker = Marker {
        run: 0x0c1f_9a3e,
        sender: 12,
        seq: 48213,
        sent_us: 1_795_229_627_123_456,
    };

    #[test]
    fn marker_text_is_the_documented_format() {
        let mut out = Vec::new();
        M.write(&mut out);
        assert_eq!(out, b"ltm:0c1f9a3e:12:48213:1795229627123456;");
        out.clear();
        Marker {
            run: 0,
            sender: 0,
            seq: 0,
            sent_us: u64::MAX,
        }
        .write(&mut out);
        assert_eq!(out, b"ltm:00000000:0:0:18446744073709551615;");
        // The longest marker: prefix, run, three numbers of at most 20 digits, separators.
        assert!(out.len() <= 4 + 8 + 3 * 21 + 1);
    }

    #[test]
    fn marker_is_found_inside_a_json_record() {
        let mut record = br#"{"host":"web-01","message":"GET /x "#.to_vec();
        M.write(&mut record);
        record.extend_from_slice(br#" padding","received_at":"2026-11-21T10:00:00Z"}"#);
        assert_eq!(MarkerFinder::new(M.run).find(&record), Found::Ours(M));
    }

    #[test]
    fn marker_of_another_run_is_not_ours() {
        let mut record = Vec::new();
        M.write(&mut record);
        assert_eq!(MarkerFinder::new(7).find(&record), Found::OtherRun);
    }

    #[test]
    fn marker_cut_short_or_damaged_is_malformed() {
        let mut whole = Vec::new();
        M.write(&mut whole);
        let finder = MarkerFinder::new(M.run);
        // Every proper prefix that contains the "ltm:" prefix is malformed, never a wrong number.
        for cut in PREFIX.len()..whole.len() {
            assert_eq!(finder.find(&whole[..cut]), Found::Malformed, "cut at {cut}");
        }
        assert_eq!(
            finder.find(b"ltm:0c1f9a3e:12:x:1;"),
            Found::Malformed,
            "non-digit seq"
        );
        assert_eq!(
            finder.find(b"ltm:0c1f9a3e::1:1;"),
            Found::Malformed,
            "empty sender"
        );
        assert_eq!(
            finder.find(b"ltm:0c1f9a3e:99999999999:1:1;"),
            Found::Malformed,
            "sender over u32"
        );
    }

    #[test]
    fn record_without_marker_is_none() {
        assert_eq!(MarkerFinder::new(1).find(b"<13>hello"), Found::None);
    }
}
