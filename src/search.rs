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
//! A search that does not follow reads the store's segments in [`SearchOptions::threads`]
//! threads ([`store::read_filtered_parallel`]): each thread skips blocks, decompresses and
//! matches the records of its segment, and only the matches travel to the caller's thread. A
//! search takes them segment after segment, so its output is that of one thread; counts,
//! histograms and the API's pages, which fold the matches whatever their order, take them as
//! they come.
//!
//! Memory stays bounded whatever the store size: oldest-first output streams (and stops the
//! reader once `limit` records are out); newest first reads the newest segment first, keeps the
//! last `limit` matches of the segment being read in a ring, prints them in reverse once the
//! segment is read, and stops once `limit` are out. A follower ([`SearchOptions::follow`], one
//! thread) starts with the last `limit` matches already stored, oldest first, then prints each
//! new match as it is stored: the store's reader hands its output over and flushes it when it
//! has read everything there is, which is when the ring is printed.
//!
//! With `[search] backend = "elasticsearch"` ([`config`]), the same questions go to an
//! Elasticsearch/OpenSearch cluster instead ([`elasticsearch`]).

pub mod config;
pub mod elasticsearch;

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::query::{Field, FieldAccess, JsonRecord, Matcher};
use crate::store::{self, BlockIndex, OutputOrder, ReadOptions, ReadStats, StoreError};

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
    /// Threads that read the store when not following (at least 1; [`search_threads`] is the
    /// default of the CLI and the API).
    pub threads: usize,
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
    // Newest first: the last `limit` matches of the segment being read (segments come newest
    // first, and each is printed newest first once read, until `limit` are out). Before
    // following: the last `limit` matches.
    let mut ring: VecDeque<Vec<u8>> = VecDeque::new();
    let mut live = false;
    let mut printed = 0usize;
    let order = if newest_first {
        OutputOrder::NewestSegmentFirst
    } else {
        OutputOrder::OldestFirst
    };
    let stats = scan(dir, matcher, opts, order, stop, &mut |event| match event {
        Event::Match(record) => {
            if opts.follow && live {
                printer.print(record)?;
                return Ok(());
            }
            // Held back: newest first, or the last `limit` before following. A follower with no
            // limit streams the history instead of holding all of it.
            if newest_first || (opts.follow && opts.limit.is_some()) {
                let keep = limit - printed;
                if keep == 0 {
                    return Ok(());
                }
                if ring.len() == keep {
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
        Event::CaughtUp if newest_first => {
            // A segment was read whole: its matches go before the older segments'.
            for record in ring.drain(..).rev() {
                printer.print(&record)?;
                printed += 1;
            }
            if printed >= limit {
                stop.store(true, Ordering::Relaxed);
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
    Ok(scan(
        dir,
        matcher,
        &opts,
        OutputOrder::Any,
        stop,
        &mut |_| Ok(()),
    )?)
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
    let grid = BucketGrid::new(opts, width_us)
        .map_err(|buckets| SearchError::TooManyBuckets { buckets })?;
    let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
    let opts_once = SearchOptions {
        follow: false,
        ..opts.clone()
    };
    let stats = scan_timed(dir, matcher, &opts_once, stop, &mut |time_us| {
        *counts.entry(grid.bucket_of(time_us)).or_default() += 1;
    })?;
    Ok(Histogram {
        width_us: grid.width_us,
        buckets: grid
            .fill(opts, &counts)
            .map_err(|buckets| SearchError::TooManyBuckets { buckets })?,
        stats,
    })
}

/// Buckets of one width aligned to its multiples since the epoch, over a search's range: what
/// [`histogram`] and the Elasticsearch backend ([`elasticsearch`]) count into. Errors are the
/// number of buckets, when more than [`MAX_BUCKETS`].
pub(crate) struct BucketGrid {
    pub(crate) width_us: i64,
}

impl BucketGrid {
    /// A grid of `width_us` (at least 1); refused when both ends of `opts`' range are given
    /// and span too many buckets (before anything is read).
    pub(crate) fn new(opts: &SearchOptions, width_us: i64) -> Result<BucketGrid, u64> {
        let grid = BucketGrid {
            width_us: width_us.max(1),
        };
        if let (Some(from), Some(to)) = (opts.from_us, opts.to_us) {
            let last = grid.bucket_of(to.saturating_sub(1).max(from));
            grid.check(grid.bucket_of(from), last)?;
        }
        Ok(grid)
    }

    /// The start of the bucket of time `t`.
    pub(crate) fn bucket_of(&self, t: i64) -> i64 {
        t.div_euclid(self.width_us) * self.width_us
    }

    fn check(&self, first: i64, last: i64) -> Result<(), u64> {
        let buckets = (last.saturating_sub(first) / self.width_us) as u64 + 1;
        if buckets > MAX_BUCKETS {
            Err(buckets)
        } else {
            Ok(())
        }
    }

    /// `(start, count)` of every bucket, empty ones included, from the bucket of `from` (or of
    /// the first counted) to the bucket of `to` (or of the last counted); `counts` by bucket
    /// start.
    pub(crate) fn fill(
        &self,
        opts: &SearchOptions,
        counts: &BTreeMap<i64, u64>,
    ) -> Result<Vec<(i64, u64)>, u64> {
        let first = opts
            .from_us
            .map(|from| self.bucket_of(from))
            .or_else(|| counts.keys().next().copied());
        let last = opts
            .to_us
            .map(|to| self.bucket_of(to.saturating_sub(1)))
            .or_else(|| counts.keys().next_back().copied());
        let mut buckets = Vec::new();
        if let (Some(first), Some(last)) = (first, last)
            && first <= last
        {
            self.check(first, last)?;
            let mut at = Some(first);
            while let Some(start) = at.filter(|&start| start <= last) {
                buckets.push((start, counts.get(&start).copied().unwrap_or(0)));
                at = start.checked_add(self.width_us);
            }
        }
        Ok(buckets)
    }
}

/// What the scan reports to its caller.
enum Event<'r> {
    /// A record that matched the query and the time range.
    Match(&'r [u8]),
    /// Everything stored so far has been read (a follower waits for more now); without
    /// `follow`, in the store's order (either way), also the end of each segment's matches.
    CaughtUp,
}

/// Reads the store, calling `on_event` for each match and whenever the reader caught up.
///
/// A search that does not follow reads the segments in `opts.threads` threads
/// ([`store::read_filtered_parallel`]: each matches the records it reads); the matches come in
/// `order`: the store's, segments newest first (each in the store's order), or as the threads
/// find them (for the callers that only fold them).
fn scan(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    order: OutputOrder,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event<'_>) -> io::Result<()>,
) -> Result<SearchStats, StoreError> {
    let timed = opts.from_us.is_some() || opts.to_us.is_some();
    // The empty query over all time takes every record as it is, without reading its JSON.
    let everything = matcher.matches_everything() && !timed;
    let mut stats = SearchStats::default();
    let filter = |index: &BlockIndex<'_>| block_may_match(matcher, opts, index);
    let read = if !opts.follow {
        let stage = |records: &[u8], kept: &mut Vec<u8>| {
            if everything {
                kept.extend_from_slice(records);
                return;
            }
            for line in matcher.candidates(records) {
                if record_matches(matcher, opts, line) {
                    kept.extend_from_slice(line);
                    kept.push(b'\n');
                }
            }
        };
        let mut matches = LineSink {
            partial: Vec::new(),
            prefilter: None,
            on_line: &mut |line: Option<&[u8]>| match line {
                Some(line) => {
                    stats.matched += 1;
                    on_event(Event::Match(line))
                }
                None => on_event(Event::CaughtUp),
            },
        };
        store::read_filtered_parallel(
            dir,
            &filter,
            &stage,
            opts.threads,
            order,
            &mut matches,
            stop,
        )?
    } else {
        let mut sink = LineSink {
            partial: Vec::new(),
            prefilter: (!everything).then_some(matcher),
            on_line: &mut |line: Option<&[u8]>| {
                let Some(line) = line else {
                    return on_event(Event::CaughtUp);
                };
                if everything || record_matches(matcher, opts, line) {
                    stats.matched += 1;
                    return on_event(Event::Match(line));
                }
                Ok(())
            },
        };
        let read_opts = ReadOptions {
            since_us: None,
            grep: None,
            follow: opts.follow,
        };
        if everything {
            store::read(dir, &read_opts, &mut sink, stop)?
        } else {
            store::read_filtered(dir, &read_opts, &filter, &mut sink, stop)?
        }
    };
    // Every record the reader handed over was looked at (or passed over by the prefilter).
    stats.scanned = read.records;
    stats.scanned_blocks = read.blocks;
    stats.skipped_blocks = read.skipped_blocks;
    stats.read = read;
    Ok(stats)
}

/// Threads a search reads the store with: one per core, up to 4 (the gateway's own threads
/// need cores too).
pub fn search_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Whether a stored record matches the query and the time range of `opts`.
fn record_matches(matcher: &Matcher, opts: &SearchOptions, line: &[u8]) -> bool {
    let record = JsonRecord::new(line);
    if !matcher.is_match(&record) {
        return false;
    }
    if opts.from_us.is_none() && opts.to_us.is_none() {
        return true;
    }
    // A record without a time never matches a time range.
    record_time_us(&record).is_some_and(|time| {
        opts.from_us.is_none_or(|from| time >= from) && opts.to_us.is_none_or(|to| time < to)
    })
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
    scan(dir, matcher, opts, OutputOrder::Any, stop, &mut |event| {
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
    // Built once: a `Field::Other` per record would allocate its name per record.
    static TIME_FIELDS: LazyLock<[Field; 2]> = LazyLock::new(|| {
        [
            Field::Other("timestamp".into()),
            Field::Other("received_at".into()),
        ]
    });
    let mut time = None;
    for field in TIME_FIELDS.iter() {
        record.any_value(field, &mut |value| {
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
    /// Only the records of each piece of output (the reader hands over ~256 KiB at a time) that
    /// this matcher's [candidates](Matcher::candidates) search finds are handed to `on_line`:
    /// one search over the piece for the text every match contains (ripgrep's way) instead of
    /// reading every record's JSON. `None`: every record.
    prefilter: Option<&'f Matcher>,
    on_line: &'f mut dyn FnMut(Option<&[u8]>) -> io::Result<()>,
}

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        // A record that began in an earlier piece is handed over whole, without the prefilter.
        if !self.partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.partial.extend_from_slice(rest);
                return Ok(buf.len());
            };
            self.partial.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.partial);
            (self.on_line)(Some(&line))?;
            self.partial = line;
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        let whole = memchr::memrchr(b'\n', rest).map_or(0, |last| last + 1);
        let (lines, tail) = rest.split_at(whole);
        match self.prefilter {
            Some(matcher) => {
                for line in matcher.candidates(lines) {
                    (self.on_line)(Some(line))?;
                }
            }
            None => {
                for line in lines.split_inclusive(|&b| b == b'\n') {
                    (self.on_line)(Some(&line[..line.len() - 1]))?;
                }
            }
        }
        self.partial.extend_from_slice(tail);
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
    fn line_sink_hands_over_only_the_records_around_literal_hits() {
        let matcher = Matcher::compile("delta").unwrap();
        let mut lines = Vec::new();
        let mut on_line = |line: Option<&[u8]>| {
            lines.extend(line.map(<[u8]>::to_vec));
            Ok(())
        };
        let mut sink = LineSink {
            partial: Vec::new(),
            prefilter: Some(&matcher),
            on_line: &mut on_line,
        };
        sink.write_all(b"alpha\nbeta\ngam").unwrap();
        // A record continued from the previous piece is handed over whole, unfiltered.
        sink.write_all(b"ma\ndelta\n").unwrap();
        sink.write_all(b"epsilon\n").unwrap();
        sink.write_all(b"eta\nx DELTA y\ntheta\niota").unwrap();
        drop(sink);
        assert_eq!(
            lines,
            [b"gamma".to_vec(), b"delta".to_vec(), b"x DELTA y".to_vec()]
        );
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

/// A record's place in the order the HTTP API pages in: its time (as [`record_time_us`]), then
/// its `received_at`, then a checksum of its bytes, so that records of the same second (a
/// second-resolution RFC 3164 timestamp) still have a total order that does not change as
/// records are added or retention deletes old ones. A page's last key is the cursor of the
/// next page: no record is returned twice and none is skipped, whatever arrives meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageKey {
    /// Unix µs; `i64::MIN` for a record without a time.
    pub time_us: i64,
    /// Unix µs; `i64::MIN` for a record without `received_at`.
    pub received_us: i64,
    /// CRC32C of the record's bytes.
    pub checksum: u32,
}

impl PageKey {
    /// The key of the stored record `line`.
    pub fn of(line: &[u8]) -> PageKey {
        let record = JsonRecord::new(line);
        let mut received_us = None;
        record.any_value(&Field::Other("received_at".into()), &mut |value| {
            received_us = store::index::rfc3339_micros(value);
            true
        });
        PageKey {
            time_us: record_time_us(&record).unwrap_or(i64::MIN),
            received_us: received_us.unwrap_or(i64::MIN),
            checksum: crc32c::crc32c(line),
        }
    }

    /// The key as an opaque cursor: `TIME.RECEIVED.CHECKSUM` (decimal µs, hex).
    pub fn to_cursor(&self) -> String {
        format!(
            "{}.{}.{:08x}",
            self.time_us, self.received_us, self.checksum
        )
    }

    /// Reads [`PageKey::to_cursor`]'s text back; `None` for anything else.
    pub fn from_cursor(text: &str) -> Option<PageKey> {
        let mut parts = text.split('.');
        let key = PageKey {
            time_us: parts.next()?.parse().ok()?,
            received_us: parts.next()?.parse().ok()?,
            checksum: u32::from_str_radix(parts.next()?, 16).ok()?,
        };
        parts.next().is_none().then_some(key)
    }
}

/// One page of matches, in page order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The stored records (JSON lines without their newline), best first: newest first for
    /// [`Order::NewestFirst`].
    pub records: Vec<Vec<u8>>,
    /// The key of the last record, when more matches follow it: the next page's `after`.
    pub next: Option<PageKey>,
    pub stats: SearchStats,
}

/// A match held by [`page`]; the heap's greatest is the one that would go first.
struct Held {
    key: PageKey,
    newest_first: bool,
    record: Vec<u8>,
}

impl Held {
    /// Whether a record with key `key` goes on the page before this one.
    fn is_after(&self, key: &PageKey) -> bool {
        if self.newest_first {
            *key < self.key
        } else {
            *key > self.key
        }
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
/// Greater is later on the page, so the heap's top is the match to give up first.
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let order = self.key.cmp(&other.key);
        if self.newest_first {
            order.reverse()
        } else {
            order
        }
    }
}

/// The first `opts.limit` matches (default 100) in [`PageKey`] order (descending for
/// [`Order::NewestFirst`]) that come after `after`, holding at most that many records and
/// about `max_bytes` of them (a page cut short by bytes has a `next`).
///
/// The scan reads the whole range once and keeps the best matches in a bounded heap: memory is
/// the page, whatever the store size. A record whose key equals `after` is not returned again.
///
/// # Errors
/// The store's errors.
pub fn page(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    after: Option<PageKey>,
    max_bytes: usize,
    stop: &AtomicBool,
) -> Result<Page, SearchError> {
    let newest_first = opts.order == Order::NewestFirst;
    let limit = opts.limit.unwrap_or(100).max(1);
    let (mut from_us, mut to_us) = (opts.from_us, opts.to_us);
    // Only records at or before (after) the cursor's time can follow it.
    if let Some(after) = after.filter(|a| a.time_us != i64::MIN) {
        if newest_first {
            let end = after.time_us.saturating_add(1);
            to_us = Some(to_us.map_or(end, |to| to.min(end)));
        } else {
            from_us = Some(from_us.map_or(after.time_us, |from| from.max(after.time_us)));
        }
    }
    let range = SearchOptions {
        from_us,
        to_us,
        ..opts.clone()
    };
    let mut heap: std::collections::BinaryHeap<Held> = std::collections::BinaryHeap::new();
    let mut held_bytes = 0usize;
    // The first key of what was given up: every kept match goes before it, and nothing at or
    // after it is taken any more, so the page is exactly the first matches in order.
    let mut cut: Option<Held> = None;
    // The page is the first matches by key, whatever order they come in.
    let stats = for_each_match(dir, matcher, &range, OutputOrder::Any, stop, &mut |line| {
        let key = PageKey::of(line);
        let probe = Held {
            key,
            newest_first,
            record: Vec::new(),
        };
        if after.is_some_and(|after| {
            !Held {
                key: after,
                newest_first,
                record: Vec::new(),
            }
            .is_after(&key)
        }) || cut.as_ref().is_some_and(|cut| probe >= *cut)
        {
            return;
        }
        if heap.len() == limit && heap.peek().is_some_and(|worst| probe >= *worst) {
            cut = Some(probe);
            return;
        }
        held_bytes += line.len();
        heap.push(Held {
            key,
            newest_first,
            record: line.to_vec(),
        });
        while heap.len() > limit || (held_bytes > max_bytes && heap.len() > 1) {
            if let Some(given_up) = heap.pop() {
                held_bytes -= given_up.record.len();
                if cut.as_ref().is_none_or(|cut| given_up < *cut) {
                    cut = Some(Held {
                        record: Vec::new(),
                        ..given_up
                    });
                }
            }
        }
    })?;
    let held = heap.into_sorted_vec();
    let next = cut.and(held.last().map(|last| last.key));
    Ok(Page {
        records: held.into_iter().map(|h| h.record).collect(),
        next,
        stats,
    })
}

/// Calls `on_record` with every match in `opts`' time range (its limit and order aside), as
/// stored, in `order`: what [`page`] and [`fields`] fold, streaming.
fn for_each_match(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    order: OutputOrder,
    stop: &AtomicBool,
    on_record: &mut dyn FnMut(&[u8]),
) -> Result<SearchStats, SearchError> {
    let all = SearchOptions {
        limit: None,
        order: Order::OldestFirst,
        follow: false,
        ..opts.clone()
    };
    let stats = scan(dir, matcher, &all, order, stop, &mut |event| {
        if let Event::Match(line) = event {
            on_record(line);
        }
        Ok(())
    })?;
    Ok(stats)
}

/// A histogram of one field's values over the matches: facets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCounts {
    /// The most frequent values and their counts, most frequent first (ties by value).
    pub values: Vec<(Vec<u8>, u64)>,
    /// Matching records without the field.
    pub missing: u64,
    /// Values not counted one by one: those first seen once [`MAX_FIELD_VALUES`] distinct
    /// values were counted.
    pub uncounted: u64,
    /// Distinct values counted (at most [`MAX_FIELD_VALUES`]).
    pub distinct: usize,
    pub stats: SearchStats,
}

/// [`fields`] counts at most this many distinct values (memory stays bounded for a field such
/// as `message`).
pub const MAX_FIELD_VALUES: usize = 10_000;
/// Values longer than this are counted by their first this many bytes.
pub const MAX_FIELD_VALUE_BYTES: usize = 256;

/// Counts the values of `field` over the matching records and returns the `top` most frequent.
/// A `list` field (`tags`, see [`Field::named`]) counts each comma-separated item.
///
/// # Errors
/// The store's errors.
pub fn fields(
    dir: &Path,
    matcher: &Matcher,
    opts: &SearchOptions,
    (field, list): (&Field, bool),
    top: usize,
    stop: &AtomicBool,
) -> Result<FieldCounts, SearchError> {
    let mut counts: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    let (mut missing, mut uncounted) = (0u64, 0u64);
    // Which values are counted one by one depends on the order they are first seen in.
    let stats = for_each_match(
        dir,
        matcher,
        opts,
        OutputOrder::OldestFirst,
        stop,
        &mut |line| {
            let mut count = |value: &[u8]| {
                let value = &value[..value.len().min(MAX_FIELD_VALUE_BYTES)];
                if let Some(n) = counts.get_mut(value) {
                    *n += 1;
                } else if counts.len() < MAX_FIELD_VALUES {
                    counts.insert(value.to_vec(), 1);
                } else {
                    uncounted += 1;
                }
            };
            let mut present = false;
            JsonRecord::new(line).any_value(field, &mut |value| {
                present = true;
                if list {
                    for item in value.split(|&b| b == b',') {
                        count(item.trim_ascii());
                    }
                } else {
                    count(value);
                }
                false
            });
            if !present {
                missing += 1;
            }
        },
    )?;
    let distinct = counts.len();
    let mut values: Vec<(Vec<u8>, u64)> = counts.into_iter().collect();
    values.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    values.truncate(top);
    Ok(FieldCounts {
        values,
        missing,
        uncounted,
        distinct,
        stats,
    })
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use crate::pipeline::batch::Batch;
    use crate::store::{StoreOptions, StoreWriter};

    /// A store of `n` records stored out of time order, some sharing a time; returns its
    /// directory and every record's message in newest-first order.
    fn store(n: usize) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = StoreWriter::open(StoreOptions {
            dir: dir.path().to_path_buf(),
            ..StoreOptions::default()
        })
        .unwrap();
        let mut keyed = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(7) {
            let mut batch = Batch::with_capacity(0, 4096, 16);
            for &i in chunk {
                // Times go back and forth; every fifth shares its time with the one before.
                let second = (i * 37) % n - usize::from(i % 5 == 4 && (i * 37) % n > 0);
                let line = format!(
                    r#"{{"timestamp":"2026-11-30T10:{:02}:{:02}Z","message":"m{i}","received_at":"2026-11-30T11:00:00.{i:06}Z"}}"#,
                    second / 60,
                    second % 60
                );
                keyed.push((PageKey::of(line.as_bytes()), format!("m{i}")));
                batch.push(1, line.as_bytes());
            }
            writer.append(&batch).unwrap();
        }
        writer.sync().unwrap();
        keyed.sort();
        keyed.reverse();
        (dir, keyed.into_iter().map(|(_, m)| m).collect())
    }

    fn message(record: &[u8]) -> String {
        let mut text = String::new();
        JsonRecord::new(record).any_value(&Field::Message, &mut |v| {
            text = String::from_utf8_lossy(v).into_owned();
            true
        });
        text
    }

    /// Every page in turn from the first.
    fn all_pages(dir: &Path, order: Order, limit: usize, max_bytes: usize) -> Vec<String> {
        let matcher = Matcher::compile("").unwrap();
        let opts = SearchOptions {
            from_us: None,
            to_us: None,
            limit: Some(limit),
            order,
            follow: false,
            threads: 1,
        };
        let (mut out, mut after) = (Vec::new(), None);
        loop {
            let page = page(
                dir,
                &matcher,
                &opts,
                after,
                max_bytes,
                &AtomicBool::new(false),
            )
            .unwrap();
            assert!(page.records.len() <= limit);
            out.extend(page.records.iter().map(|r| message(r)));
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    }

    #[test]
    fn pages_cover_every_record_once_in_key_order_whatever_the_limit_and_byte_cap() {
        let (dir, newest_first) = store(60);
        let oldest_first: Vec<String> = newest_first.iter().rev().cloned().collect();
        for (limit, max_bytes) in [
            (1, 1 << 20),
            (7, 1 << 20),
            (60, 1 << 20),
            (100, 1 << 20),
            (10, 300),
            (10, 1),
        ] {
            assert_eq!(
                all_pages(dir.path(), Order::NewestFirst, limit, max_bytes),
                newest_first,
                "limit {limit}, max_bytes {max_bytes}"
            );
            assert_eq!(
                all_pages(dir.path(), Order::OldestFirst, limit, max_bytes),
                oldest_first,
                "limit {limit}, max_bytes {max_bytes}"
            );
        }
    }

    #[test]
    fn cursors_read_back_and_refuse_anything_else() {
        let key = PageKey {
            time_us: -5,
            received_us: 1_796_032_800_000_001,
            checksum: 0xab,
        };
        assert_eq!(key.to_cursor(), "-5.1796032800000001.000000ab");
        assert_eq!(PageKey::from_cursor(&key.to_cursor()), Some(key));
        for bad in ["", "1.2", "1.2.3.4", "a.2.3", "1.2.xyz"] {
            assert_eq!(PageKey::from_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn facets_count_values_list_items_and_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = StoreWriter::open(StoreOptions {
            dir: dir.path().to_path_buf(),
            ..StoreOptions::default()
        })
        .unwrap();
        let mut batch = Batch::with_capacity(0, 4096, 16);
        for line in [
            r#"{"host":"a","structured_data":{"logtail@32473":{"tags":"prod, eu"}},"message":"x"}"#,
            r#"{"host":"b","structured_data":{"logtail@32473":{"tags":"prod"}},"message":"x"}"#,
            r#"{"host":"a","message":"x"}"#,
            r#"{"message":"y"}"#,
        ] {
            batch.push(1, line.as_bytes());
        }
        writer.append(&batch).unwrap();
        writer.sync().unwrap();
        let opts = SearchOptions {
            from_us: None,
            to_us: None,
            limit: None,
            order: Order::NewestFirst,
            follow: false,
            threads: 2,
        };
        let count = |query: &str, name: &str, top: usize| {
            let (field, list) = Field::named(name).unwrap();
            let counts = fields(
                dir.path(),
                &Matcher::compile(query).unwrap(),
                &opts,
                (&field, list),
                top,
                &AtomicBool::new(false),
            )
            .unwrap();
            let values: Vec<(String, u64)> = counts
                .values
                .iter()
                .map(|(v, n)| (String::from_utf8_lossy(v).into_owned(), *n))
                .collect();
            (values, counts.missing, counts.distinct)
        };
        assert_eq!(
            count("", "host", 10),
            (vec![("a".into(), 2), ("b".into(), 1)], 1, 2)
        );
        assert_eq!(count("x", "host", 1), (vec![("a".into(), 2)], 0, 2));
        assert_eq!(
            count("", "tags", 10),
            (vec![("prod".into(), 2), ("eu".into(), 1)], 2, 2)
        );
    }
}
