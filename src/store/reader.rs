//! The reader behind `logtail read [--follow] [--since DURATION] [--grep TEXT]`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memchr::memmem;

use super::block::{BlockCorruption, GranuleSet, HeaderAt, Scanner};
use super::index::BlockIndex;
use super::{POLL_INTERVAL, StoreError};
use crate::segments::{FileError, list_segments, segment_path};

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Keep only records with `received_at_us >= since_us`.
    pub since_us: Option<i64>,
    /// Keep only records whose value contains these bytes.
    pub grep: Option<Vec<u8>>,
    /// Keep waiting for new blocks until `stop` is set.
    pub follow: bool,
}

/// Counters of one [`read`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records written to the output (those that matched).
    pub records: u64,
    /// Valid blocks decompressed (blocks skipped whole by `since_us` are not counted).
    pub blocks: u64,
    /// Blocks skipped whole because their index says no record in them can match the filter
    /// of [`read_filtered`], without reading their payload.
    pub skipped_blocks: u64,
    /// Granules of the blocks read (format 3) left compressed and unread because their filter
    /// says none of their records can match (blocks skipped whole not included).
    pub skipped_granules: u64,
    /// Corrupt regions skipped: each run of bytes from a bad block to the next valid one counts once.
    pub corrupt_blocks: u64,
    /// Bytes in those regions.
    pub corrupt_bytes: u64,
}

/// Writes each matching record's value followed by `'\n'` to `out`, oldest first.
///
/// With `opts.follow`, keeps waiting for new blocks (polling every ~100 ms), follows segment
/// rolls and segments deleted by retention, and returns when `stop` becomes true. Without it,
/// returns at the end of the newest segment (or earlier, if `stop` is set). Corrupt blocks are
/// skipped, counted in the returned [`ReadStats`] and logged once each with `tracing::warn!`.
pub fn read(
    dir: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<ReadStats, StoreError> {
    Reader::new(dir, opts, None).run(out, stop)
}

/// Decides from a block's index whether the block may hold a record a reader wants: false skips
/// the block without reading its payload. It must never be false for a block holding a record
/// the reader wants (blocks without an index, written before it existed, are always read).
/// For a block of granules (format 3) it is asked once about the block (whose view rules out
/// no word), then about each granule ([`BlockIndex::granules`]): only the granules it accepts
/// are read.
pub type BlockFilter<'f> = &'f dyn Fn(&BlockIndex<'_>) -> bool;

/// [`read`], reading only the blocks whose index `filter` accepts (and those without an index).
/// The records of a block read are all written (subject to `opts`): the filter rules blocks out,
/// it does not filter records.
pub fn read_filtered(
    dir: &Path,
    opts: &ReadOptions,
    filter: BlockFilter<'_>,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<ReadStats, StoreError> {
    Reader::new(dir, opts, Some(filter)).run(out, stop)
}

/// Output is handed to `out` in pieces of about this size (and whenever the reader waits).
pub(super) const OUT_CHUNK: usize = 256 << 10;

/// The segment being read.
pub(super) struct Cursor {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Start of the next block to read.
    pub(super) pos: u64,
}

/// Why [`Reader::drain`] returned.
pub(super) enum Drained {
    /// Reached the end of what is there (end of file, or a block not completely written yet).
    AtEnd,
    /// `stop` was set.
    Stopped,
}

pub(super) struct Reader<'a> {
    dir: &'a Path,
    since_us: Option<i64>,
    follow: bool,
    finder: Option<memmem::Finder<'a>>,
    filter: Option<BlockFilter<'a>>,
    scanner: Scanner,
    outbuf: Vec<u8>,
    stats: ReadStats,
}

impl<'a> Reader<'a> {
    pub(super) fn new(
        dir: &'a Path,
        opts: &'a ReadOptions,
        filter: Option<BlockFilter<'a>>,
    ) -> Self {
        Reader {
            dir,
            since_us: opts.since_us,
            follow: opts.follow,
            finder: opts.grep.as_deref().map(memmem::Finder::new),
            filter,
            scanner: Scanner::default(),
            outbuf: Vec::new(),
            stats: ReadStats::default(),
        }
    }

    /// Bytes the reader's buffers hold on to (for tests on bounded allocation).
    #[cfg(test)]
    pub(super) fn buffer_capacity(&self) -> usize {
        self.scanner.buffer_capacity() + self.outbuf.capacity()
    }

    pub(super) fn run(
        &mut self,
        out: &mut dyn Write,
        stop: &AtomicBool,
    ) -> Result<ReadStats, StoreError> {
        let mut cursor: Option<Cursor> = None;
        // Segments up to this one are done with.
        let mut done_seq: Option<u64> = None;
        while !stop.load(Ordering::Relaxed) {
            // List before looking at the current segment's size: once a newer segment exists the
            // writer is done with the current one, so the size taken afterwards is final.
            let seqs = list_segments(self.dir)?;
            if cursor.is_none() {
                cursor = self.open_next(&seqs, done_seq)?;
            }
            let Some(cur) = cursor.as_mut() else {
                if !self.follow {
                    break;
                }
                self.wait(out, stop)?;
                continue;
            };
            let sealed = seqs.last().is_some_and(|&newest| newest > cur.seq);
            let len = cur
                .file
                .metadata()
                .map_err(|e| FileError::new(&cur.path, e))?
                .len();
            if len < cur.pos {
                // Only writer recovery shortens a segment, and only after its last valid block.
                tracing::warn!(
                    "{} shrank to {len} bytes while being read at byte {}; continuing at its end",
                    cur.path.display(),
                    cur.pos
                );
                cur.pos = len;
            }
            let drained = drain(
                &mut self.scanner,
                &mut self.stats,
                &mut self.outbuf,
                self.since_us,
                self.finder.as_ref(),
                self.filter,
                cur,
                len,
                sealed,
                out,
                stop,
            )?;
            match drained {
                Drained::Stopped => break,
                Drained::AtEnd if sealed => {
                    done_seq = Some(cur.seq);
                    cursor = None;
                }
                Drained::AtEnd if self.follow => self.wait(out, stop)?,
                Drained::AtEnd => break,
            }
        }
        flush(&mut self.outbuf, out)?;
        out.flush().map_err(StoreError::Output)?;
        Ok(self.stats)
    }

    /// Opens the oldest segment after `done_seq` that still exists.
    fn open_next(
        &mut self,
        seqs: &[u64],
        done_seq: Option<u64>,
    ) -> Result<Option<Cursor>, StoreError> {
        for &seq in seqs.iter().filter(|&&s| done_seq.is_none_or(|d| s > d)) {
            let path = segment_path(self.dir, seq);
            match File::open(&path) {
                Ok(file) => {
                    if let Some(done) = done_seq
                        && seq > done + 1
                    {
                        tracing::warn!(
                            "segments {} to {} were deleted by retention before they were read",
                            done + 1,
                            seq - 1
                        );
                    }
                    return Ok(Some(Cursor {
                        seq,
                        path,
                        file,
                        pos: 0,
                    }));
                }
                // Deleted by retention since the listing: try the next one.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FileError::new(&path, e).into()),
            }
        }
        Ok(None)
    }

    /// Hands pending output over, then sleeps one poll interval (or less, if `stop` is set).
    fn wait(&mut self, out: &mut dyn Write, stop: &AtomicBool) -> Result<(), StoreError> {
        flush(&mut self.outbuf, out)?;
        out.flush().map_err(StoreError::Output)?;
        let until = Instant::now() + POLL_INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(10)));
        }
        Ok(())
    }
}

pub(super) fn flush(outbuf: &mut Vec<u8>, out: &mut dyn Write) -> Result<(), StoreError> {
    if !outbuf.is_empty() {
        out.write_all(outbuf).map_err(StoreError::Output)?;
        outbuf.clear();
    }
    Ok(())
}

/// Reads blocks from `cur` up to `len` (the segment's size, taken after listing the directory),
/// writing matching records. `sealed`: a newer segment exists, so nothing more will be written
/// to this one and an incomplete block at its end is corruption rather than work in progress.
#[allow(clippy::too_many_arguments)]
pub(super) fn drain(
    scanner: &mut Scanner,
    stats: &mut ReadStats,
    outbuf: &mut Vec<u8>,
    since_us: Option<i64>,
    finder: Option<&memmem::Finder<'_>>,
    filter: Option<BlockFilter<'_>>,
    cur: &mut Cursor,
    len: u64,
    sealed: bool,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<Drained, StoreError> {
    // A header read ahead belongs to the file of the last call.
    scanner.forget_prefetched();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Drained::Stopped);
        }
        let pos = cur.pos;
        let at = scanner
            .header_at(&cur.file, pos, len)
            .map_err(|e| FileError::at(&cur.path, pos, e))?;
        let header = match at {
            HeaderAt::End => return Ok(Drained::AtEnd),
            HeaderAt::Incomplete(reason) => {
                // A block being written is the last thing in the newest segment. If a complete
                // valid block follows, this one lied about its length: it is corruption.
                let next = scanner
                    .resync(&cur.file, pos + 1, len, false)
                    .map_err(|e| FileError::at(&cur.path, pos, e))?;
                match next {
                    Some(next) => {
                        report_corrupt(stats, &cur.path, pos, next, &reason);
                        cur.pos = next;
                        continue;
                    }
                    None if sealed => {
                        report_corrupt(stats, &cur.path, pos, len, &reason);
                        cur.pos = len;
                        return Ok(Drained::AtEnd);
                    }
                    None => return Ok(Drained::AtEnd),
                }
            }
            HeaderAt::Corrupt(reason) => {
                skip_corrupt(scanner, stats, cur, len, sealed, &reason)?;
                continue;
            }
            HeaderAt::Block(h) => h,
        };
        if since_us.is_some_and(|since| header.max_received_at_us < since) {
            // Nothing in this block is recent enough: skip it without reading the payload.
            cur.pos += header.block_len();
            continue;
        }
        // With a filter and granules: the granules to read.
        let mut chosen = None;
        if let Some(filter) = filter {
            let index = scanner
                .index_at(&cur.file, pos, &header, len)
                .map_err(|e| FileError::at(&cur.path, pos, e))?;
            let wanted = match index {
                Ok(Some(index)) if !filter(&index) => 0,
                Ok(Some(index)) if index.granule_count() > 0 => {
                    let mut set = GranuleSet::default();
                    for (i, granule) in index.granules().enumerate() {
                        if filter(&granule) {
                            set.insert(i);
                        }
                    }
                    let wanted = set.len();
                    stats.skipped_granules += (index.granule_count() - wanted) as u64;
                    chosen = Some(set);
                    wanted
                }
                Ok(_) => 1,
                Err(reason) => {
                    skip_corrupt(scanner, stats, cur, len, sealed, &reason)?;
                    continue;
                }
            };
            if wanted == 0 {
                stats.skipped_blocks += 1;
                cur.pos += header.block_len();
                continue;
            }
        }
        let decoded = match &chosen {
            Some(set) => scanner.decode_granules_at(&cur.file, pos, &header, set),
            None => scanner.decode_at(&cur.file, pos, &header),
        };
        match decoded.map_err(|e| FileError::at(&cur.path, pos, e))? {
            Ok(true) => {}
            // The file shrank since its size was taken; the caller notices and carries on.
            Ok(false) => return Ok(Drained::AtEnd),
            Err(reason) => {
                skip_corrupt(scanner, stats, cur, len, sealed, &reason)?;
                continue;
            }
        }
        stats.blocks += 1;
        cur.pos += header.block_len();
        // One search over the whole block rules out most blocks when grepping for rare text.
        if finder.is_some_and(|f| f.find(scanner.raw()).is_none()) {
            continue;
        }
        for (ts, value) in scanner.records() {
            if since_us.is_some_and(|since| ts < since)
                || finder.is_some_and(|f| f.find(value).is_none())
            {
                continue;
            }
            outbuf.extend_from_slice(value);
            outbuf.push(b'\n');
            stats.records += 1;
        }
        if outbuf.len() >= OUT_CHUNK {
            flush(outbuf, out)?;
        }
    }
}

/// Counts and logs the corrupt block at `cur.pos`, then moves `cur.pos` to the next plausible
/// block start (or the end of what is there).
fn skip_corrupt(
    scanner: &mut Scanner,
    stats: &mut ReadStats,
    cur: &mut Cursor,
    len: u64,
    sealed: bool,
    reason: &BlockCorruption,
) -> Result<(), StoreError> {
    let pos = cur.pos;
    let next = scanner
        .resync(&cur.file, pos + 1, len, !sealed)
        .map_err(|e| FileError::at(&cur.path, pos, e))?
        .unwrap_or(len);
    report_corrupt(stats, &cur.path, pos, next, reason);
    cur.pos = next;
    Ok(())
}

fn report_corrupt(
    stats: &mut ReadStats,
    path: &Path,
    from: u64,
    to: u64,
    reason: &BlockCorruption,
) {
    stats.corrupt_blocks += 1;
    stats.corrupt_bytes += to - from;
    let err = StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: from,
        reason: reason.clone(),
    };
    tracing::warn!("{err}; skipped {} bytes", to - from);
}
