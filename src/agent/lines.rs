//! Cutting a file's bytes into lines, and lines into multiline events.
//!
//! The tailer reads a file at an offset into a buffer and hands the buffer to a
//! [`LineSplitter`], which emits every complete line and says how many bytes it consumed. The
//! bytes after the last LF are *not* consumed: the next read starts at them again, so a line
//! split across reads (a writer that wrote half a line, a read that stopped mid-line) is joined
//! simply by reading it again whole, and the splitter keeps no copy of partial lines.
//!
//! Invariants:
//! - Every emitted line is a whole line of the file without its LF (and without a CR before
//!   it), cut to `max_line_bytes`. Its `end` is the file offset just past its LF: the offset to
//!   resume from once the line is shipped.
//! - A line longer than `max_line_bytes` is emitted once, cut to that length and flagged
//!   `truncated`, when its LF is found; until then its first `max_line_bytes` bytes are held by
//!   the splitter (the only copy it makes) and the rest is consumed and discarded. So the caller
//!   needs a read buffer of at least `max_line_bytes + 2` bytes (room for a CRLF) to always
//!   make progress.
//! - A last line without LF is emitted only by [`LineSplitter::finish`], when the file is
//!   released (rotated away or deleted, and read to its end): a live file's last line may still
//!   be being written.
//!
//! [`Multiline`] joins lines into events: a line matching the start pattern starts a new event,
//! any other line is appended to the current one after an LF. An event is emitted when the next
//! one starts, when no line came for the flush timeout, or when its file is released. Its `end`
//! is its last line's, so a checkpoint never falls inside an event.

use std::time::{Duration, Instant};

use memchr::memchr;
use regex::bytes::Regex;

/// Counters of a splitter or joiner, drained into the agent's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineCounters {
    /// Lines (or events) cut to `max_line_bytes`.
    pub truncated: u64,
    /// Bytes discarded from them.
    pub discarded_bytes: u64,
    /// Multiline events emitted (joined from one line or more).
    pub events: u64,
}

/// Splits a file's bytes into lines. See the [module docs](self).
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    /// The first `max_line_bytes` of a line longer than that, while its LF is not yet found.
    long_head: Option<Vec<u8>>,
    counters: LineCounters,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            max_line_bytes: max_line_bytes.max(1),
            long_head: None,
            counters: LineCounters::default(),
        }
    }

    /// Takes and resets the counters.
    pub fn take_counters(&mut self) -> LineCounters {
        std::mem::take(&mut self.counters)
    }

    /// Emits every complete line of `buf`, which holds the file's bytes from offset `base`, as
    /// `emit(line, end, truncated)`; returns how many bytes of `buf` were consumed. The caller
    /// reads again from `base + consumed`.
    pub fn split(
        &mut self,
        buf: &[u8],
        base: u64,
        mut emit: impl FnMut(&[u8], u64, bool),
    ) -> usize {
        let mut pos = 0;
        if let Some(head) = &mut self.long_head {
            match memchr(b'\n', buf) {
                Some(lf) => {
                    self.counters.discarded_bytes += lf as u64;
                    emit(head, base + lf as u64 + 1, true);
                    self.long_head = None;
                    pos = lf + 1;
                }
                None => {
                    self.counters.discarded_bytes += buf.len() as u64;
                    return buf.len();
                }
            }
        }
        let max = self.max_line_bytes;
        while let Some(lf) = memchr(b'\n', &buf[pos..]) {
            let line = &buf[pos..pos + lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let end = base + (pos + lf + 1) as u64;
            if line.len() > max {
                self.counters.truncated += 1;
                self.counters.discarded_bytes += (line.len() - max) as u64;
                emit(&line[..max], end, true);
            } else {
                emit(line, end, false);
            }
            pos += lf + 1;
        }
        let rest = &buf[pos..];
        // A CR at the end may be the one of a CRLF, which is not part of the line.
        let content_len = rest.len() - usize::from(rest.ends_with(b"\r"));
        if content_len > max {
            // No LF within max_line_bytes: keep the head, discard the rest as it comes.
            self.counters.truncated += 1;
            self.counters.discarded_bytes += (rest.len() - max) as u64;
            self.long_head = Some(rest[..max].to_vec());
            return buf.len();
        }
        pos
    }

    /// The file is done: emits `rest` (the bytes from the last consumed offset to the end of the
    /// file, `end` being that end) as a last line if it is not empty, or the held head of an
    /// unfinished long line.
    pub fn finish(&mut self, rest: &[u8], end: u64, mut emit: impl FnMut(&[u8], u64, bool)) {
        if let Some(head) = self.long_head.take() {
            self.counters.discarded_bytes += rest.len() as u64;
            emit(&head, end, true);
        } else if !rest.is_empty() {
            let line = &rest[..rest.len().min(self.max_line_bytes)];
            let truncated = line.len() < rest.len();
            if truncated {
                self.counters.truncated += 1;
                self.counters.discarded_bytes += (rest.len() - line.len()) as u64;
            }
            emit(line, end, truncated);
        }
    }
}

/// Joins lines into events by a start pattern. See the [module docs](self).
#[derive(Debug)]
pub struct Multiline {
    start: Regex,
    flush_timeout: Duration,
    max_bytes: usize,
    event: Vec<u8>,
    /// Offset past the event's last line; meaningful while `lines > 0`.
    end: u64,
    lines: usize,
    truncated: bool,
    last_line_at: Instant,
    counters: LineCounters,
}

impl Multiline {
    pub fn new(start: Regex, flush_timeout: Duration, max_bytes: usize) -> Self {
        Multiline {
            start,
            flush_timeout,
            max_bytes: max_bytes.max(1),
            event: Vec::new(),
            end: 0,
            lines: 0,
            truncated: false,
            last_line_at: Instant::now(),
            counters: LineCounters::default(),
        }
    }

    /// Takes and resets the counters (events emitted, and cut to `max_line_bytes`).
    pub fn take_counters(&mut self) -> LineCounters {
        std::mem::take(&mut self.counters)
    }

    /// Adds one line (ending at file offset `end`); emits the previous event when this line
    /// starts a new one.
    pub fn push(
        &mut self,
        line: &[u8],
        end: u64,
        truncated: bool,
        now: Instant,
        emit: impl FnMut(&[u8], u64, bool),
    ) {
        if self.lines > 0 && self.start.is_match(line) {
            self.flush(emit);
        }
        if self.lines > 0 {
            self.append(b"\n");
        }
        self.append(line);
        self.truncated |= truncated;
        self.lines += 1;
        self.end = end;
        self.last_line_at = now;
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max_bytes - self.event.len();
        if bytes.len() > room {
            if !self.truncated {
                self.counters.truncated += 1;
            }
            self.truncated = true;
            self.counters.discarded_bytes += (bytes.len() - room) as u64;
        }
        self.event
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Emits the pending event, if any.
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8], u64, bool)) {
        if self.lines > 0 {
            self.counters.events += 1;
            emit(&self.event, self.end, self.truncated);
            self.event.clear();
            self.lines = 0;
            self.truncated = false;
        }
    }

    /// Emits the pending event if no line came for the flush timeout.
    pub fn flush_if_stale(&mut self, now: Instant, emit: impl FnMut(&[u8], u64, bool)) {
        if self.lines > 0 && now.duration_since(self.last_line_at) >= self.flush_timeout {
            self.flush(emit);
        }
    }

    /// When the pending event is due for a timed flush, if there is one.
    pub fn flush_deadline(&self) -> Option<Instant> {
        (self.lines > 0).then(|| self.last_line_at + self.flush_timeout)
    }

    /// True while an event is pending.
    pub fn is_pending(&self) -> bool {
        self.lines > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Emitted = Vec<(Vec<u8>, u64, bool)>;

    /// Feeds `input` to a splitter in reads of `chunk` bytes, re-reading what was not consumed
    /// as the tailer does (and reading more when a read held no whole line), then finishes it.
    fn split_in_reads(input: &[u8], max: usize, chunk: usize) -> (Emitted, LineCounters) {
        let mut splitter = LineSplitter::new(max);
        let mut out = Vec::new();
        let (mut offset, mut want) = (0, chunk);
        loop {
            let end = input.len().min(offset + want);
            let used = splitter.split(&input[offset..end], offset as u64, |l, e, t| {
                out.push((l.to_vec(), e, t))
            });
            offset += used;
            match (used, end == input.len()) {
                (0, true) => break,
                (0, false) => want += chunk,
                _ => want = chunk,
            }
        }
        splitter.finish(&input[offset..], input.len() as u64, |l, e, t| {
            out.push((l.to_vec(), e, t))
        });
        (out, splitter.take_counters())
    }

    #[test]
    fn lines_split_across_reads_are_joined_with_their_end_offsets() {
        let input = b"alpha\nbravo\r\ncharlie\n";
        for chunk in 1..=input.len() {
            let (lines, _) = split_in_reads(input, 64, chunk);
            assert_eq!(
                lines,
                vec![
                    (b"alpha".to_vec(), 6, false),
                    (b"bravo".to_vec(), 13, false),
                    (b"charlie".to_vec(), 21, false),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_partial_last_line_waits_until_finish() {
        let mut splitter = LineSplitter::new(64);
        let mut out = Vec::new();
        let used = splitter.split(b"one\ntw", 100, |l, e, _| out.push((l.to_vec(), e)));
        assert_eq!(used, 4);
        assert_eq!(out, vec![(b"one".to_vec(), 104)]);
        splitter.finish(b"tw", 106, |l, e, _| out.push((l.to_vec(), e)));
        assert_eq!(out[1], (b"tw".to_vec(), 106));
    }

    #[test]
    fn long_lines_are_cut_once_and_counted() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\nok\n");
        input.extend(vec![b'y'; 30]);
        input.push(b'\n');
        // A buffer of 18 bytes (max + 2) forces the long-head path for the first line.
        let (lines, counters) = split_in_reads(&input, 16, 18);
        assert_eq!(
            lines,
            vec![
                (vec![b'x'; 16], 101, true),
                (b"ok".to_vec(), 104, false),
                (vec![b'y'; 16], 135, true),
            ]
        );
        assert_eq!(counters.truncated, 2);
        assert_eq!(counters.discarded_bytes, 84 + 14);
        // The same through one big read.
        let (whole, counters) = split_in_reads(&input, 16, 4096);
        assert_eq!(whole, lines);
        assert_eq!(counters.truncated, 2);
    }

    proptest! {
        /// However the bytes are cut into reads, the same lines come out, each with the offset
        /// just past its LF.
        #[test]
        fn any_read_sizes_give_the_same_lines(
            lines in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'\r'), Just(b'z'), Just(0xffu8)], 0..40), 0..30),
            partial in proptest::collection::vec(Just(b'p'), 0..5),
            chunk in 1usize..200,
        ) {
            let max = 32;
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for line in &lines {
                input.extend_from_slice(line);
                input.push(b'\n');
                let content = line.strip_suffix(b"\r").unwrap_or(line);
                let cut = content.len().min(max);
                expected.push((content[..cut].to_vec(), input.len() as u64, content.len() > max));
            }
            input.extend_from_slice(&partial);
            if !partial.is_empty() {
                expected.push((partial.clone(), input.len() as u64, false));
            }
            let (got, _) = split_in_reads(&input, max, chunk);
            prop_assert_eq!(got, expected);
        }
    }

    fn joiner() -> Multiline {
        Multiline::new(
            Regex::new(r"^\d{4}-").unwrap(),
            Duration::from_millis(100),
            64,
        )
    }

    #[test]
    fn stack_traces_stay_with_their_message() {
        let mut m = joiner();
        let now = Instant::now();
        let mut out = Vec::new();
        let mut push = |m: &mut Multiline, line: &[u8], end| {
            m.push(line, end, false, now, |e, end, t| {
                out.push((e.to_vec(), end, t))
            })
        };
        push(&mut m, b"2026-01-01 boom", 16);
        push(&mut m, b"  at a()", 25);
        push(&mut m, b"  at b()", 34);
        push(&mut m, b"2026-01-01 next", 50);
        assert_eq!(
            out,
            vec![(b"2026-01-01 boom\n  at a()\n  at b()".to_vec(), 34, false)]
        );
        assert!(m.is_pending());
        m.flush_if_stale(now + Duration::from_millis(50), |_, _, _| {
            panic!("too early")
        });
        m.flush_if_stale(now + Duration::from_millis(100), |e, end, _| {
            out.push((e.to_vec(), end, false))
        });
        assert_eq!(out[1], (b"2026-01-01 next".to_vec(), 50, false));
        assert!(!m.is_pending());
    }

    #[test]
    fn an_event_over_the_maximum_is_cut_and_counted_once() {
        let mut m = joiner();
        let now = Instant::now();
        m.push(b"2026-01-01 start", 17, false, now, |_, _, _| {});
        for i in 0..10 {
            m.push(b"  continuation line", 40 + i, false, now, |_, _, _| {});
        }
        let mut out = Vec::new();
        m.flush(|e, end, t| out.push((e.len(), end, t)));
        assert_eq!(out, vec![(64, 49, true)]);
        assert_eq!(m.take_counters().truncated, 1);
    }

    #[test]
    fn lines_before_the_first_start_form_an_event() {
        let mut m = joiner();
        let now = Instant::now();
        let mut out = Vec::new();
        m.push(b"orphan", 7, false, now, |e, _, _| out.push(e.to_vec()));
        m.push(b"2026-01-01 x", 20, false, now, |e, _, _| {
            out.push(e.to_vec())
        });
        assert_eq!(out, vec![b"orphan".to_vec()]);
    }
}
