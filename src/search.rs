//! Searching the local store with a [query](crate::query): what `logtail search` runs (and, later,
//! the HTTP API).
//!
//! A search runs through the store's reader ([`store::read_filtered`]): a block whose index
//! shows that none of its records can match the query and the time range ([`block_may_match`])
//! is skipped without being decompressed; every record of the other blocks (and of blocks
//! written before the index) is matched against the query and the time range. The time of a
//! record is its event `timestamp`, or `received_at` for a record without one (read by
//! [`store::index::rfc3339_micros`], as the index reads it); the range is `from <= time < to`.
//! [`SearchStats`] counts the blocks searched and skipped.
//!
//! Memory stays bounded whatever the store size: oldest-first output streams (and stops the
//! reader once `limit` records are out); newest-first keeps only the last `limit` matches in a
//! ring while the scan runs from the oldest block, then prints them in reverse. A follower
//! ([`SearchOptions::follow`]) starts with the last `limit` matches already stored, oldest
//! first, then prints each new match as it is stored: the store's reader hands its output over
//! and flushes it when it has read everything there is, which is when the ring is printed.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::query::{Field, FieldAccess, JsonRecord, Matcher};
use crate::store::{self, BlockIndex, ReadOptions, ReadStats, StoreError};

/// In which order matches are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// What to search for, besides the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchOptions {
    /// Keep records whose time is at or after this (unix µs).
    pub from_us: Option<i64>,
    /// Keep records whose time is before this (unix µs).
    pub to_us: Option<i64>,
    /// At most this many records (`None`: all; refused for newest-first, which holds them).
    pub limit: Option<usize>,
    pub order: Order,
    /// Keep printing new matches until `stop` is set (always oldest first).
    pub follow: bool,
}

/// How a matching record is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// The stored JSON object, exactly as `logtail read` prints it.
    Json,
    /// `TIME HOST APP[PROCID] SEVERITY: MESSAGE`, control characters escaped; with ANSI colours
    /// when `color`.
    Text { color: bool },
}

/// Counters of one search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Records read from the store.
    pub scanned: u64,
    /// Records that matched the query and the time range.
    pub matched: u64,
    /// Store blocks decompressed and searched record by record.
    pub scanned_blocks: u64,
    /// Store blocks skipped whole, without decompressing them, because their index shows that
    /// none of their records can match (see [`block_may_match`]).
    pub skipped_blocks: u64,
    /// What the store's reader reports (blocks, corruption skipped).
    pub read: ReadStats,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "--limit 0 (no limit) needs --oldest-first or --follow: newest first holds the matches in memory"
    )]
    UnboundedNewestFirst,
    #[error(
        "{buckets} buckets of the histogram is too many (at most {MAX_BUCKETS}): use wider buckets or a shorter range"
    )]
    TooManyBuckets { buckets: u64 },
}

/// A histogram prints at most this many buckets.
pub const MAX_BUCKETS: u64 = 100_000;

/// Prints the matching records to `out`, one per line, in `format`.
///
/// # Errors
/// The store's errors (an output error included, e.g. a closed pipe), and
/// [`SearchError::UnboundedNewestFirst`].
pub fn search(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    format: RecordFormat,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<SearchStats, SearchError> {
    let newest_first = opts.order == Order::NewestFirst && !opts.follow;
    if newest_first && opts.limit.is_none() {
        return Err(SearchError::UnboundedNewestFirst);
    }
    let limit = opts.limit.unwrap_or(usize::MAX);
    let mut printer = Printer {
        format,
        out,
        line: Vec::with_capacity(1024),
    };
    // Newest first, or the history before following: the last `limit` matches.
    let mut ring: VecDeque<Vec<u8>> = VecDeque::new();
    let mut live = false;
    let mut printed = 0usize;
    let stats = scan(dir, matcher, opts, stop, &mut |event| match event {
        Event::Match(record) => {
            if opts.follow && live {
                printer.print(record)?;
                return Ok(());
            }
            // Held back: newest first, or the last `limit` before following. A follower with no
            // limit streams the history instead of holding all of it.
            if newest_first || (opts.follow && opts.limit.is_some()) {
                if limit == 0 {
                    return Ok(());
                }
                if ring.len() == limit {
                    // Reuse the oldest match's buffer for the newest.
                    let mut buf = ring.pop_front().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(record);
                    ring.push_back(buf);
                } else {
                    ring.push_back(record.to_vec());
                }
                return Ok(());
            }
            if printed < limit {
                printer.print(record)?;
                printed += 1;
                if printed == limit {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            Ok(())
        }
        Event::CaughtUp => {
            if opts.follow && !live {
                live = true;
                for record in ring.drain(..) {
                    printer.print(&record)?;
                }
            }
            printer.out.flush()
        }
    })?;
    if newest_first {
        for record in ring.iter().rev() {
            printer.print(record).map_err(StoreError::Output)?;
        }
    }
    printer.out.flush().map_err(StoreError::Output)?;
    Ok(stats)
}

/// Counts the matching records.
///
/// # Errors
/// The store's errors.
pub fn count(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    stop: &AtomicBool,
) -> Result<SearchStats, SearchError> {
    let opts = SearchOptions {
        follow: false,
        ..opts.clone()
    };
    Ok(scan(dir, matcher, &opts, stop, &mut |_| Ok(()))?)
}

/// Counts of matching records per bucket of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Bucket width in µs.
    pub width_us: i64,
    /// `(bucket start in unix µs, count)`, in time order, with empty buckets, from the bucket of
    /// `from` (or of the first match) to the bucket of `to` (or of the last match).
    pub buckets: Vec<(i64, u64)>,
    pub stats: SearchStats,
}

/// Counts the matching records per `width_us` of time (buckets aligned to multiples of the width
/// since the Unix epoch, so a 1m histogram has buckets on whole minutes).
///
/// # Errors
/// The store's errors, and [`SearchError::TooManyBuckets`].
pub fn histogram(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    width_us: i64,
    stop: &AtomicBool,
) -> Result<Histogram, SearchError> {
    let width_us = width_us.max(1);
    let bucket_of = |t: i64| t.div_euclid(width_us) * width_us;
    let too_many = |first: i64, last: i64| {
        let buckets = (last.saturating_sub(first) / width_us) as u64 + 1;
        (buckets > MAX_BUCKETS).then_some(SearchError::TooManyBuckets { buckets })
    };
    // With both ends given, refuse before scanning.
    if let (Some(from), Some(to)) = (opts.from_us, opts.to_us)
        && let Some(error) = too_many(bucket_of(from), bucket_of(to.saturating_sub(1).max(from)))
    {
        return Err(error);
    }
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    let opts_once = SearchOptions {
        follow: false,
        ..opts.clone()
    };
    let stats = scan_timed(dir, matcher, &opts_once, stop, &mut |time_us| {
        *counts.entry(bucket_of(time_us)).or_default() += 1;
    })?;
    let first = opts
        .from_us
        .map(bucket_of)
        .or_else(|| counts.keys().next().copied());
    let last = opts
        .to_us
        .map(|to| bucket_of(to.saturating_sub(1)))
        .or_else(|| counts.keys().next_back().copied());
    let mut buckets = Vec::new();
    if let (Some(first), Some(last)) = (first, last)
        && first <= last
    {
        if let Some(error) = too_many(first, last) {
            return Err(error);
        }
        let mut at = Some(first);
        while let Some(start) = at.filter(|&start| start <= last) {
            buckets.push((start, counts.get(&start).copied().unwrap_or(0)));
            at = start.checked_add(width_us);
        }
    }
    Ok(Histogram {
        width_us,
        buckets,
        stats,
    })
}

/// What the scan reports to its caller.
enum Event<'r> {
    /// A record that matched the query and the time range.
    Match(&'r [u8]),
    /// Everything stored so far has been read (a follower waits for more now).
    CaughtUp,
}

/// Reads the store, calling `on_event` for each match and whenever the reader caught up.
fn scan(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
) -> Result<SearchStats, StoreError> {
    let timed = opts.from_us.is_some() || opts.to_us.is_some();
    // The empty query over all time takes every record as it is, without reading its JSON.
    let everything = matcher.matches_everything() && !timed;
    let mut stats = SearchStats::default();
    let mut sink = LineSink {
        partial: Vec::new(),
        prefilter: Some(matcher),
        skipped: 0,
        on_line: &mut |line: Option<&[u8]>| {
            let Some(line) = line else {
                return on_event(Event::CaughtUp);
            };
            stats.scanned += 1;
            if everything {
                stats.matched += 1;
                return on_event(Event::Match(line));
            }
            if !matcher.may_match_stored(line) {
                return Ok(());
            }
            let record = JsonRecord::new(line);
            if !matcher.is_match(&record) {
                return Ok(());
            }
            if timed {
                let Some(time) = record_time_us(&record) else {
                    return Ok(());
                };
                if opts.from_us.is_some_and(|from| time < from)
                    || opts.to_us.is_some_and(|to| time >= to)
                {
                    return Ok(());
                }
            }
            stats.matched += 1;
            on_event(Event::Match(line))
        },
    };
    let read_opts = ReadOptions {
        since_us: None,
        grep: None,
        follow: opts.follow,
    };
    let read = if everything {
        store::read(dir, &read_opts, &mut sink, stop)?
    } else {
        let filter = |index: &BlockIndex<'_>| block_may_match(matcher, opts, index);
        store::read_filtered(dir, &read_opts, &filter, &mut sink, stop)?
    };
    let skipped = sink.skipped;
    stats.scanned += skipped;
    stats.scanned_blocks = read.blocks;
    stats.skipped_blocks = read.skipped_blocks;
    stats.read = read;
    Ok(stats)
}

/// Whether a store block with this index may hold a record matching `matcher` within the time
/// range of `opts` ([`Matcher::may_match_block`], and the index's record times against the
/// range). Blocks written before the index existed are always searched.
pub fn block_may_match(matcher: &Matcher, opts: &SearchOptions, index: &BlockIndex<'_>) -> bool {
    if opts.from_us.is_some() || opts.to_us.is_some() {
        // A record without a time never matches a time range.
        let Some((min, max)) = index.time_range() else {
            return false;
        };
        if opts.from_us.is_some_and(|from| max < from) || opts.to_us.is_some_and(|to| min >= to) {
            return false;
        }
    }
    matcher.may_match_block(index)
}

/// [`scan`] for callers that want each match's time (the histogram).
fn scan_timed(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    stop: &AtomicBool,
    on_time: &mut dyn FnMut(i64),
) -> Result<SearchStats, StoreError> {
    scan(dir, matcher, opts, stop, &mut |event| {
        if let Event::Match(line) = event
            && let Some(time) = record_time_us(&JsonRecord::new(line))
        {
            on_time(time);
        }
        Ok(())
    })
}

/// The record's time: its event `timestamp`, else `received_at` (unix µs).
pub fn record_time_us(record: &JsonRecord<'_>) -> Option<i64> {
    let mut time = None;
    for name in ["timestamp", "received_at"] {
        record.any_value(&Field::Other(name.into()), &mut |value| {
            time = store::index::rfc3339_micros(value);
            time.is_some()
        });
        if time.is_some() {
            break;
        }
    }
    time
}

/// A `Write` that cuts what the store's reader writes into records (one per `'\n'`), and tells
/// `on_line(None)` when the reader flushes (it has handed over everything it read).
struct LineSink<'f> {
    partial: Vec<u8>,
    /// Whole pieces of output (the reader hands over ~256 KiB at a time) in which this matcher
    /// can match nothing are skipped without looking at their records: one search for a rare
    /// word instead of indexing every record.
    prefilter: Option<&'f Matcher>,
    /// Records skipped that way.
    skipped: u64,
    on_line: &'f mut dyn FnMut(Option<&[u8]>) -> io::Result<()>,
}

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        if self.partial.is_empty()
            && let Some(matcher) = self.prefilter
            && let Some(last) = memchr::memrchr(b'\n', rest)
            && !matcher.may_match_stored(&rest[..last])
        {
            self.skipped += memchr::memchr_iter(b'\n', &rest[..=last]).count() as u64;
            rest = &rest[last + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            if self.partial.is_empty() {
                (self.on_line)(Some(&rest[..end]))?;
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                let line = std::mem::take(&mut self.partial);
                (self.on_line)(Some(&line))?;
                self.partial = line;
                self.partial.clear();
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        (self.on_line)(None)
    }
}

struct Printer<'o> {
    format: RecordFormat,
    out: &'o mut dyn Write,
    line: Vec<u8>,
}

impl Printer<'_> {
    fn print(&mut self, record: &[u8]) -> io::Result<()> {
        match self.format {
            RecordFormat::Json => {
                self.out.write_all(record)?;
                self.out.write_all(b"\n")
            }
            RecordFormat::Text { color } => {
                self.line.clear();
                write_text_line(&JsonRecord::new(record), color, &mut self.line);
                self.out.write_all(&self.line)
            }
        }
    }
}

const SEVERITY_NAMES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Appends `TIME HOST APP[PROCID] SEVERITY: MESSAGE\n`. Every field is text from the network,
/// so control characters (a terminal's escape sequences among them) are written escaped.
pub fn write_text_line(record: &JsonRecord<'_>, color: bool, out: &mut Vec<u8>) {
    let paint = |out: &mut Vec<u8>, code: &str, text: &mut dyn FnMut(&mut Vec<u8>)| {
        if color && !code.is_empty() {
            out.extend_from_slice(format!("\x1b[{code}m").as_bytes());
            text(out);
            out.extend_from_slice(b"\x1b[0m");
        } else {
            text(out);
        }
    };
    let field = |field: Field, out: &mut Vec<u8>| {
        record.any_value(&field, &mut |value| {
            push_escaped(out, value);
            true
        })
    };
    paint(out, "2", &mut |out| {
        if !field(Field::Other("timestamp".into()), out)
            && !field(Field::Other("received_at".into()), out)
        {
            out.push(b'-');
        }
    });
    out.push(b' ');
    paint(out, "36", &mut |out| {
        if !field(Field::Host, out) {
            out.push(b'-');
        }
    });
    out.push(b' ');
    paint(out, "32", &mut |out| {
        if !field(Field::App, out) {
            out.push(b'-');
        }
        let at = out.len();
        out.push(b'[');
        if field(Field::Procid, out) {
            out.push(b']');
        } else {
            out.truncate(at);
        }
    });
    let mut severity = None;
    record.any_value(&Field::Severity, &mut |value| {
        severity = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        true
    });
    if let Some(name) = severity.and_then(|s| SEVERITY_NAMES.get(s)) {
        out.push(b' ');
        let code = match severity.unwrap_or(6) {
            0..=3 => "1;31",
            4 => "33",
            7 => "2",
            _ => "",
        };
        paint(out, code, &mut |out| out.extend_from_slice(name.as_bytes()));
    }
    out.extend_from_slice(b": ");
    field(Field::Message, out);
    out.push(b'\n');
}

/// Appends `value` with control characters and DEL as `\n`, `\t`, `\r` or `\xNN`.
fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..0x20 | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_line_escapes_control_characters_and_colours_on_request() {
        let raw = br#"{"severity":3,"timestamp":"2026-11-21T02:53:47Z","host":"web-01","app":"nginx","procid":"42","message":"bad\u001b[31m\nline","received_at":"2026-11-21T02:53:48Z"}"#;
        let mut out = Vec::new();
        write_text_line(&JsonRecord::new(raw), false, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "2026-11-21T02:53:47Z web-01 nginx[42] err: bad\\x1b[31m\\nline\n"
        );
        out.clear();
        write_text_line(&JsonRecord::new(raw), true, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\x1b[2m2026-11-21T02:53:47Z\x1b[0m \x1b[36mweb-01\x1b[0m \x1b[32mnginx[42]\x1b[0m \x1b[1;31merr\x1b[0m: bad\\x1b[31m\\nline\n"
        );
        out.clear();
        write_text_line(
            &JsonRecord::new(br#"{"message":"m","received_at":"2026-11-21T02:53:48Z"}"#),
            false,
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "2026-11-21T02:53:48Z - -: m\n"
        );
    }

    #[test]
    fn record_time_prefers_the_event_timestamp() {
        let both = br#"{"timestamp":"2026-11-21T03:53:47.5+01:00","message":"m","received_at":"2026-11-21T02:53:48Z"}"#;
        assert_eq!(
            record_time_us(&JsonRecord::new(both)),
            Some(1_795_229_627_500_000)
        );
        let received = br#"{"message":"m","received_at":"2026-11-21T02:53:48Z"}"#;
        assert_eq!(
            record_time_us(&JsonRecord::new(received)),
            Some(1_795_229_628_000_000)
        );
        assert_eq!(record_time_us(&JsonRecord::new(b"raw")), None);
    }

    #[test]
    fn line_sink_skips_whole_pieces_without_the_required_text() {
        let matcher = Matcher::compile("delta").unwrap();
        let mut lines = Vec::new();
        let mut on_line = |line: Option<&[u8]>| {
            lines.extend(line.map(<[u8]>::to_vec));
            Ok(())
        };
        let mut sink = LineSink {
            partial: Vec::new(),
            prefilter: Some(&matcher),
            skipped: 0,
            on_line: &mut on_line,
        };
        sink.write_all(b"alpha\nbeta\ngam").unwrap();
        // A piece that continues a record is looked at record by record.
        sink.write_all(b"ma\ndelta\n").unwrap();
        sink.write_all(b"epsilon\n").unwrap();
        let skipped = sink.skipped;
        drop(sink);
        assert_eq!(skipped, 3);
        assert_eq!(lines, [b"gamma".to_vec(), b"delta".to_vec()]);
    }

    #[test]
    fn line_sink_joins_records_split_across_writes() {
        let mut lines = Vec::new();
        let mut flushes = 0;
        let mut on_line = |line: Option<&[u8]>| {
            match line {
                Some(line) => lines.push(line.to_vec()),
                None => flushes += 1,
            }
            Ok(())
        };
        let mut sink = LineSink {
            partial: Vec::new(),
            prefilter: None,
            skipped: 0,
            on_line: &mut on_line,
        };
        sink.write_all(b"a\nb").unwrap();
        sink.write_all(b"c\n\nd\n").unwrap();
        sink.flush().unwrap();
        drop(sink);
        assert_eq!(
            lines,
            [b"a".to_vec(), b"bc".to_vec(), b"".to_vec(), b"d".to_vec()]
        );
        assert_eq!(flushes, 1);
    }
}
