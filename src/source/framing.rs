//! Framing of syslog stream connections (TCP, Unix stream): turning a byte stream into messages.
//!
//! Two framings are in use (RFC 6587):
//! - **non-transparent (newline)**: each message ends with LF; a CR before the LF is dropped.
//! - **octet counting**: `MSG-LEN SP MSG`, where MSG-LEN is the decimal length of MSG.
//!
//! In [`Framing::Auto`] (the default, as rsyslog's imtcp does) the framing is decided per frame:
//! a frame that starts with a digit is octet-counted, anything else is newline-framed. Senders
//! start newline frames with `<` (the PRI), so the two never collide in practice.
//!
//! Invariants, whatever the input:
//! - Every received byte ends up in exactly one emitted frame or in a counted discard
//!   ([`FramingCounters`]); nothing is dropped silently.
//! - No frame is longer than `max_message_bytes`. A longer message is truncated to that length
//!   (the rest discarded and counted) or dropped whole, per [`OversizePolicy`].
//! - An octet count up to [`COUNT_TRUST_FACTOR`] times `max_message_bytes` is believed: the
//!   message is truncated or dropped by its count like any long message. A larger count is not
//!   trusted (a sender lying about a count must not make us swallow the rest of its stream): it
//!   is counted as a framing error and the frame is read as newline-framed instead, so the damage
//!   of a lie is bounded by one line, or by the trusted count.
//! - The decoder never needs more than `max_message_bytes + MAX_COUNT_DIGITS + 2` buffered bytes
//!   (and at least `MAX_DIGITS_READ + 1`, for a run of digits that may yet be a count) to make
//!   progress; [`Decoder::needed_buffer`] says how much the caller must be able to hold.
//! - Empty frames (blank lines, a stray LF after an octet-counted frame) are skipped, not emitted.

use memchr::memchr;
use serde::Deserialize;

/// How a stream connection delimits messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Decide per frame: octet counting when the frame starts with a digit, else newline.
    #[default]
    Auto,
    /// Every message ends with LF (CRLF accepted).
    Newline,
    /// Every message is `MSG-LEN SP MSG` (RFC 6587 §3.4.1).
    OctetCounting,
}

/// What to do with a message longer than the maximum message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OversizePolicy {
    /// Keep the first `max_message_bytes` bytes as the message, discard the rest.
    #[default]
    Truncate,
    /// Discard the whole message.
    Drop,
}

/// A MSG-LEN longer than this many digits is not believed (10 digits hold any u32)...
const MAX_COUNT_DIGITS: usize = 10;
/// ...and a run of more digits than this is not even read as an attempt at one.
const MAX_DIGITS_READ: usize = 20;

/// Octet counts up to this many times `max_message_bytes` are believed (and the message cut to
/// size); larger ones are treated as a lie. 16 × the default 64 KiB bounds the bytes a lying
/// count can make us discard to 1 MiB, while a real, somewhat long message still ends where
/// its sender says it ends.
pub const COUNT_TRUST_FACTOR: usize = 16;

/// Counters a decoder accumulates; the connection drains them into the listener's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FramingCounters {
    /// Messages cut to `max_message_bytes`.
    pub truncated: u64,
    /// Messages dropped whole for being too long.
    pub dropped_oversize: u64,
    /// Bytes discarded from truncated or dropped messages.
    pub discarded_bytes: u64,
    /// Octet counts that could not be trusted (too large, or malformed in octet-counting mode).
    pub bad_octet_counts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecoderState {
    /// At the start of a frame.
    FrameStart,
    /// Inside an octet-counted frame whose MSG (of this length) starts at the buffer's start.
    Counted(usize),
    /// Discarding the rest of an oversized newline frame, up to and including the next LF.
    SkipLine,
    /// Discarding this many more bytes of an oversized octet-counted frame.
    SkipCount(usize),
}

/// One frame: a complete message, borrowed from the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The message bytes, without framing (no MSG-LEN, no trailing LF/CRLF).
    pub message: &'a [u8],
    /// True when the message was cut to `max_message_bytes`.
    pub truncated: bool,
}

/// Splits one connection's byte stream into frames. Keeps only a few words of state between
/// calls; the bytes themselves stay in the caller's buffer (frames borrow from it).
#[derive(Debug, Clone)]
pub struct Decoder {
    framing: Framing,
    max_message_bytes: usize,
    oversize: OversizePolicy,
    state: DecoderState,
    counters: FramingCounters,
}

impl Decoder {
    /// A decoder for a new connection.
    pub fn new(framing: Framing, max_message_bytes: usize, oversize: OversizePolicy) -> Self {
        Decoder {
            framing,
            max_message_bytes: max_message_bytes.max(1),
            oversize,
            state: DecoderState::FrameStart,
            counters: FramingCounters::default(),
        }
    }

    /// The buffer size the caller must be able to fill before [`decode`](Self::decode) is
    /// guaranteed to make progress.
    pub fn needed_buffer(&self) -> usize {
        // A run of up to MAX_DIGITS_READ digits is read whole before it is judged (fuzzing
        // found the stall when max_message_bytes < 9: ten digits did not fit).
        (self.max_message_bytes + MAX_COUNT_DIGITS + 2).max(MAX_DIGITS_READ + 1)
    }

    /// Takes and resets the counters accumulated so far.
    pub fn take_counters(&mut self) -> FramingCounters {
        std::mem::take(&mut self.counters)
    }

    /// Emits every complete frame at the start of `buf` through `emit` and returns how many bytes
    /// of `buf` were consumed; the caller keeps the rest and calls again with more bytes appended.
    /// With `eof`, the stream has ended: a partial last message is emitted as it is and the whole
    /// buffer is consumed.
    pub fn decode<'a>(
        &mut self,
        buf: &'a [u8],
        eof: bool,
        mut emit: impl FnMut(Frame<'a>),
    ) -> usize {
        let max = self.max_message_bytes;
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            let used = match self.state {
                DecoderState::FrameStart => {
                    let Some(&first) = rest.first() else {
                        return pos;
                    };
                    let counted = match self.framing {
                        Framing::Newline => false,
                        Framing::OctetCounting => true,
                        Framing::Auto => first.is_ascii_digit(),
                    };
                    if first == b'\n' {
                        Some(1)
                    } else if !counted {
                        self.newline_frame(rest, eof, &mut emit)
                    } else {
                        match self.read_count(rest, eof) {
                            Count::NeedMore => None,
                            Count::Valid { header, len } => {
                                self.state = DecoderState::Counted(len);
                                Some(header)
                            }
                            Count::Untrusted => {
                                let used = self.newline_frame(rest, eof, &mut emit);
                                // Counted once the line is consumed, not on every retry.
                                if used.is_some() {
                                    self.counters.bad_octet_counts += 1;
                                }
                                used
                            }
                            Count::Absent => {
                                let used = self.newline_frame(rest, eof, &mut emit);
                                if used.is_some() && self.framing == Framing::OctetCounting {
                                    self.counters.bad_octet_counts += 1;
                                }
                                used
                            }
                        }
                    }
                }
                DecoderState::Counted(len) if len > max && rest.len() >= max => {
                    self.cut(&rest[..max], &mut emit);
                    self.state = DecoderState::SkipCount(len - max);
                    Some(max)
                }
                DecoderState::Counted(len) if len <= max && rest.len() >= len => {
                    if len > 0 {
                        emit(Frame {
                            message: &rest[..len],
                            truncated: false,
                        });
                    }
                    self.state = DecoderState::FrameStart;
                    Some(len)
                }
                DecoderState::Counted(_) if eof => {
                    // The sender promised more than it sent: keep what did arrive.
                    if !rest.is_empty() {
                        emit(Frame {
                            message: rest,
                            truncated: false,
                        });
                    }
                    self.state = DecoderState::FrameStart;
                    Some(rest.len())
                }
                DecoderState::Counted(_) => None,
                DecoderState::SkipLine => {
                    let (skip, done) = match memchr(b'\n', rest) {
                        Some(lf) => (lf + 1, true),
                        None => (rest.len(), eof),
                    };
                    self.counters.discarded_bytes += skip as u64;
                    if done {
                        self.state = DecoderState::FrameStart;
                    }
                    Some(skip).filter(|&n| n > 0)
                }
                DecoderState::SkipCount(remaining) => {
                    let skip = remaining.min(rest.len());
                    self.counters.discarded_bytes += skip as u64;
                    self.state = if skip == remaining || eof {
                        DecoderState::FrameStart
                    } else {
                        DecoderState::SkipCount(remaining - skip)
                    };
                    Some(skip).filter(|&n| n > 0)
                }
            };
            match used {
                Some(n) => pos += n,
                None if eof => {
                    // Nothing more can come; whatever is left was accounted for above.
                    self.state = DecoderState::FrameStart;
                    return buf.len();
                }
                None => return pos,
            }
        }
    }

    /// Reads `MSG-LEN SP` at the start of `rest`, which starts with a digit or is octet-counted.
    fn read_count(&self, rest: &[u8], eof: bool) -> Count {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > MAX_DIGITS_READ {
            return Count::Absent;
        }
        match rest.get(digits) {
            None if eof => Count::Absent,
            None => Count::NeedMore,
            Some(b' ') => {
                let len = rest[..digits].iter().fold(0u64, |len, &d| {
                    len.saturating_mul(10).saturating_add(u64::from(d - b'0'))
                });
                if digits > MAX_COUNT_DIGITS
                    || len > (self.max_message_bytes * COUNT_TRUST_FACTOR) as u64
                {
                    Count::Untrusted
                } else {
                    Count::Valid {
                        header: digits + 1,
                        len: len as usize,
                    }
                }
            }
            Some(_) => Count::Absent,
        }
    }

    /// Emits the newline-framed message at the start of `rest` (which is not empty) and returns
    /// the bytes it used, or `None` when more input is needed.
    fn newline_frame<'a>(
        &mut self,
        rest: &'a [u8],
        eof: bool,
        emit: &mut impl FnMut(Frame<'a>),
    ) -> Option<usize> {
        let max = self.max_message_bytes;
        // Room for a message of exactly `max` bytes followed by CR LF.
        let window = &rest[..rest.len().min(max + 2)];
        let (mut message, used) = match memchr(b'\n', window) {
            Some(lf) => (&rest[..lf], lf + 1),
            None if rest.len() > max + 1 => {
                self.cut(&rest[..max], emit);
                self.state = DecoderState::SkipLine;
                return Some(max);
            }
            None if eof => (rest, rest.len()),
            None => return None,
        };
        if message.last() == Some(&b'\r') {
            message = &message[..message.len() - 1];
        }
        if message.len() > max {
            self.cut(&message[..max], emit);
            self.counters.discarded_bytes += (message.len() - max) as u64;
        } else if !message.is_empty() {
            emit(Frame {
                message,
                truncated: false,
            });
        }
        Some(used)
    }

    /// Applies the oversize policy to `head`, the first `max_message_bytes` of a longer message.
    /// The bytes after the head are discarded (and counted) by the caller.
    fn cut<'a>(&mut self, head: &'a [u8], emit: &mut impl FnMut(Frame<'a>)) {
        match self.oversize {
            OversizePolicy::Truncate => {
                self.counters.truncated += 1;
                emit(Frame {
                    message: head,
                    truncated: true,
                });
            }
            OversizePolicy::Drop => {
                self.counters.dropped_oversize += 1;
                self.counters.discarded_bytes += head.len() as u64;
            }
        }
    }
}

enum Count {
    /// The buffer ends inside MSG-LEN.
    NeedMore,
    Valid {
        header: usize,
        len: usize,
    },
    /// A well-formed count too large to believe.
    Untrusted,
    /// Not `DIGITS SP` at all: no count here.
    Absent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by `fuzz/fuzz_targets/framing.rs`: with a 2-byte maximum, 19 digits filled the
    /// buffer the decoder asked for and it waited for more, forever.
    #[test]
    fn a_digit_run_fills_no_buffer_the_decoder_asked_for_without_progress() {
        for max in [1, 2, 8, 9, 64] {
            let mut decoder = Decoder::new(Framing::OctetCounting, max, OversizePolicy::Truncate);
            let digits = vec![b'4'; decoder.needed_buffer()];
            let mut frames = 0;
            let used = decoder.decode(&digits, false, |_| frames += 1);
            assert!(
                used > 0,
                "max {max}: no progress on {} digits",
                digits.len()
            );
        }
    }

    /// Feeds `input` in chunks of `chunk` bytes, as a connection would, and collects the frames.
    fn decode_chunked(decoder: &mut Decoder, input: &[u8], chunk: usize) -> Vec<(Vec<u8>, bool)> {
        let mut frames = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        while fed < input.len() {
            let take = chunk.min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + take]);
            fed += take;
            let used = decoder.decode(&buf, false, |f| {
                frames.push((f.message.to_vec(), f.truncated))
            });
            buf.drain(..used);
        }
        let used = decoder.decode(&buf, true, |f| {
            frames.push((f.message.to_vec(), f.truncated))
        });
        assert_eq!(used, buf.len(), "eof consumes everything");
        frames
    }

    fn messages(decoder: &mut Decoder, input: &[u8]) -> Vec<String> {
        decode_chunked(decoder, input, input.len().max(1))
            .into_iter()
            .map(|(m, _)| String::from_utf8_lossy(&m).into_owned())
            .collect()
    }

    fn auto(max: usize) -> Decoder {
        Decoder::new(Framing::Auto, max, OversizePolicy::Truncate)
    }

    #[test]
    fn newline_frames_accept_lf_and_crlf_and_skip_blank_lines() {
        let mut d = auto(100);
        assert_eq!(
            messages(&mut d, b"<13>one\r\n\n<13>two\n\r\n<13>three"),
            ["<13>one", "<13>two", "<13>three"]
        );
        assert_eq!(d.take_counters(), FramingCounters::default());
    }

    #[test]
    fn octet_counted_frames_may_contain_newlines() {
        let mut d = auto(100);
        assert_eq!(
            messages(&mut d, b"9 <13>a\nb c11 <13>hello\n!"),
            ["<13>a\nb c", "<13>hello\n!"]
        );
    }

    #[test]
    fn auto_mode_decides_per_frame() {
        let mut d = auto(100);
        assert_eq!(
            messages(&mut d, b"<13>lf one\n7 <13>oct<13>lf two\n"),
            ["<13>lf one", "<13>oct", "<13>lf two"]
        );
    }

    #[test]
    fn newline_mode_never_reads_counts() {
        let mut d = Decoder::new(Framing::Newline, 100, OversizePolicy::Truncate);
        assert_eq!(
            messages(&mut d, b"12 starts with digits\n"),
            ["12 starts with digits"]
        );
    }

    #[test]
    fn octet_counting_mode_counts_garbage_as_bad_count_and_keeps_it() {
        let mut d = Decoder::new(Framing::OctetCounting, 100, OversizePolicy::Truncate);
        assert_eq!(
            messages(&mut d, b"<13>no count\n3 abc"),
            ["<13>no count", "abc"]
        );
        assert_eq!(d.take_counters().bad_octet_counts, 1);
    }

    #[test]
    fn long_newline_message_is_truncated_and_connection_continues() {
        let mut d = auto(10);
        let input = b"<13>0123456789ABCDEF\n<13>next\n";
        let frames = decode_chunked(&mut d, input, input.len());
        assert_eq!(
            frames,
            vec![
                (b"<13>012345".to_vec(), true),
                (b"<13>next".to_vec(), false)
            ]
        );
        let c = d.take_counters();
        assert_eq!(
            (c.truncated, c.dropped_oversize, c.discarded_bytes),
            (1, 0, 11)
        );
    }

    #[test]
    fn long_newline_message_is_dropped_whole_with_drop_policy() {
        let mut d = Decoder::new(Framing::Auto, 10, OversizePolicy::Drop);
        assert_eq!(
            messages(&mut d, b"<13>0123456789ABCDEF\n<13>next\n"),
            ["<13>next"]
        );
        let c = d.take_counters();
        assert_eq!(
            (c.truncated, c.dropped_oversize, c.discarded_bytes),
            (0, 1, 21)
        );
    }

    #[test]
    fn message_of_exactly_max_bytes_with_crlf_is_whole() {
        let mut d = auto(5);
        let frames = decode_chunked(&mut d, b"<1>ab\r\n<1>cd\n", 1);
        assert_eq!(
            frames,
            vec![(b"<1>ab".to_vec(), false), (b"<1>cd".to_vec(), false)]
        );
    }

    #[test]
    fn long_counted_message_is_cut_by_its_count() {
        let mut d = auto(4);
        let frames = decode_chunked(&mut d, b"8 <1>abcde3 <2>", 3);
        assert_eq!(
            frames,
            vec![(b"<1>a".to_vec(), true), (b"<2>".to_vec(), false)]
        );
        let c = d.take_counters();
        assert_eq!((c.truncated, c.discarded_bytes), (1, 4));
    }

    #[test]
    fn lying_huge_octet_count_costs_one_line_not_the_stream() {
        let mut d = auto(100);
        assert_eq!(
            messages(&mut d, b"999999999 <13>liar\n<13>good one\n5 <13>x"),
            ["999999999 <13>liar", "<13>good one", "<13>x"]
        );
        assert_eq!(d.take_counters().bad_octet_counts, 1);
    }

    #[test]
    fn short_octet_count_keeps_every_byte() {
        let mut d = auto(100);
        assert_eq!(messages(&mut d, b"3 <13>hello\n"), ["<13", ">hello"]);
    }

    #[test]
    fn partial_last_frame_is_kept_at_eof() {
        let mut d = auto(100);
        assert_eq!(
            messages(&mut d, b"<13>complete\n<13>partial"),
            ["<13>complete", "<13>partial"]
        );
        let mut d = auto(100);
        assert_eq!(
            messages(&mut d, b"20 <13>promised more"),
            ["<13>promised more"]
        );
        let mut d = auto(100);
        assert_eq!(messages(&mut d, b"123"), ["123"]);
    }

    #[test]
    fn nul_bytes_are_message_bytes() {
        let mut d = auto(100);
        let frames = decode_chunked(&mut d, b"<13>a\0b\n\0\n", 2);
        assert_eq!(
            frames,
            vec![(b"<13>a\0b".to_vec(), false), (b"\0".to_vec(), false)]
        );
    }

    #[test]
    fn incomplete_input_is_left_in_the_buffer() {
        let mut d = auto(100);
        let mut seen = Vec::new();
        let used = d.decode(b"<13>one\n<13>tw", false, |f| seen.push(f.message.to_vec()));
        assert_eq!(used, 8);
        assert_eq!(seen, vec![b"<13>one".to_vec()]);
        let used = d.decode(b"12", false, |_| panic!("no frame yet"));
        assert_eq!(used, 0);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), Just(b'<'), b'0'..=b'9', any::<u8>()],
                0..400),
            chunk in 1usize..64,
            max in 1usize..40,
            drop in any::<bool>(),
        ) {
            let policy = if drop { OversizePolicy::Drop } else { OversizePolicy::Truncate };
            let mut whole = Decoder::new(Framing::Auto, max, policy);
            let mut pieces = Decoder::new(Framing::Auto, max, policy);
            let a = decode_chunked(&mut whole, &input, input.len().max(1));
            let b = decode_chunked(&mut pieces, &input, chunk);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(whole.take_counters(), pieces.take_counters());
            for (message, _) in &a {
                prop_assert!(!message.is_empty() && message.len() <= max);
            }
        }

        #[test]
        fn newline_framed_lines_come_back_exactly(
            lines in proptest::collection::vec("<[0-9]{1,3}>[^\r\n]{0,50}", 0..20),
        ) {
            let input: Vec<u8> = lines.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect();
            let mut d = auto(1000);
            prop_assert_eq!(messages(&mut d, &input), lines);
        }

        #[test]
        fn octet_counted_messages_come_back_exactly(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..60), 0..20),
        ) {
            let mut input = Vec::new();
            for m in &msgs {
                input.extend_from_slice(format!("{} ", m.len()).as_bytes());
                input.extend_from_slice(m);
            }
            let mut d = Decoder::new(Framing::OctetCounting, 1000, OversizePolicy::Truncate);
            let frames: Vec<Vec<u8>> = decode_chunked(&mut d, &input, 7).into_iter().map(|(m, _)| m).collect();
            prop_assert_eq!(frames, msgs);
        }
    }
}
