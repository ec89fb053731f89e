//! The writer: appends blocks, rolls segments, applies retention, recovers on open.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::block::{
    BlockCorruption, BlockEncoder, BlockFormat, HeaderAt, RECORD_FRAME_LEN, Scanner,
};
use super::{MAX_BLOCK_BYTES, StoreError, StoreOptions};
use crate::encode::json::IndexedFields;
use crate::segments::{self, FileError, LockFailure, list_segments, segment_path};

/// What [`StoreWriter::append`] writes: the records of one batch, cut by one shard, in order.
///
/// The store is a storage format below the pipeline, so it names what it needs instead of
/// depending on the pipeline's batch type; that batch implements this trait (in
/// `sink::store`) by lending its records, so nothing is copied on the way into the block
/// encoder. `records` is called twice per append (once to check sizes before anything is
/// written), so it must yield the same records each time.
pub trait StoreBatch {
    /// The shard that cut the batch, recorded in each block's header.
    fn shard(&self) -> u16;
    /// Each record as `(received_at_us, value)`, in the order they were received.
    fn records(&self) -> impl Iterator<Item = (i64, &[u8])>;
    /// Where the encoder wrote the indexed members of record `i` (in the order of
    /// [`Self::records`]), if it said: the block index then takes them from there instead of
    /// reading the record's JSON. `None` (the default) for a record to be read.
    fn index_fields(&self, i: usize) -> Option<&IndexedFields> {
        let _ = i;
        None
    }
}

/// Counters of a [`StoreWriter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes of all segments on disk (the lock file not included).
    pub disk_bytes: u64,
    /// Number of segments on disk.
    pub segments: u64,
    /// Records appended since open.
    pub records_written: u64,
    /// Blocks appended since open.
    pub blocks_written: u64,
    /// Bytes appended since open (headers, compressed payloads and block indexes).
    pub bytes_written: u64,
    /// Bytes of block index among `bytes_written`.
    pub index_bytes_written: u64,
    /// Bytes cut from the end of the newest segment by recovery at open.
    pub truncated_at_open: u64,
}

/// What the writer knows about one segment on disk.
#[derive(Debug, Clone, Copy)]
struct SegmentInfo {
    seq: u64,
    len: u64,
    /// Newest record in the segment; `None` when it has none (or, for segments found at open,
    /// when `max_age` is not set and nobody needed to know).
    max_received_at_us: Option<i64>,
}

/// The single writer of a store directory. See the module doc for format and recovery.
#[derive(Debug)]
pub struct StoreWriter {
    opts: StoreOptions,
    /// Holds the directory's flock for as long as the writer lives.
    _lock: File,
    /// Every segment on disk, oldest first; the last one is `file`.
    segments: VecDeque<SegmentInfo>,
    /// The segment being appended to, opened with `O_APPEND`.
    file: File,
    /// Segments rolled away from since the last `sync`, still to be fsynced.
    unsynced: Vec<(PathBuf, File)>,
    /// Segments were created or deleted since the last `sync`.
    dir_dirty: bool,
    /// A failed write could not be undone: start a new segment before the next block.
    needs_roll: bool,
    encoder: BlockEncoder,
    stats: StoreStats,
}

impl StoreWriter {
    /// Creates `opts.dir` if needed, locks it (failing with [`StoreError::Locked`] when another
    /// writer has it), recovers the newest segment (cutting a torn or corrupt tail) and applies
    /// retention. Appends then continue at the end of the newest segment.
    pub fn open(opts: StoreOptions) -> Result<Self, StoreError> {
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| FileError::new(&dir, e))?;
        let lock =
            segments::lock_dir(&dir, "store").map_err(LockFailure::into_error::<StoreError>)?;

        let seqs = list_segments(&dir)?;
        let mut scanner = Scanner::default();
        let mut segments = VecDeque::with_capacity(seqs.len() + 1);
        let mut stats = StoreStats::default();
        let mut dir_dirty = false;

        let file = match seqs.split_last() {
            None => {
                let path = segment_path(&dir, 1);
                segments.push_back(SegmentInfo {
                    seq: 1,
                    len: 0,
                    max_received_at_us: None,
                });
                dir_dirty = true;
                create_segment(&path)?
            }
            Some((&newest, older)) => {
                for &seq in older {
                    let path = segment_path(&dir, seq);
                    let Some((len, max)) =
                        describe_segment(&mut scanner, &path, opts.max_age.is_some())?
                    else {
                        continue; // deleted under us: nothing to account for
                    };
                    segments.push_back(SegmentInfo {
                        seq,
                        len,
                        max_received_at_us: max,
                    });
                }
                let path = segment_path(&dir, newest);
                let (file, len, max, cut) = recover_segment(&mut scanner, &path)?;
                stats.truncated_at_open = cut;
                segments.push_back(SegmentInfo {
                    seq: newest,
                    len,
                    max_received_at_us: max,
                });
                file
            }
        };

        let mut writer = StoreWriter {
            opts,
            _lock: lock,
            segments,
            file,
            unsynced: Vec::new(),
            dir_dirty,
            needs_roll: false,
            encoder: BlockEncoder::default(),
            stats,
        };
        writer.apply_retention();
        Ok(writer)
    }

    /// Appends `batch` as one block, or several when its framed records exceed
    /// [`super::TARGET_BLOCK_BYTES`], each with a single `write(2)`. Rolls the segment (and applies
    /// retention) when a block would push it past `max_segment_bytes`. An empty batch writes
    /// nothing. If a write fails, the blocks of this batch written before it stay on disk.
    ///
    /// # Errors
    /// [`StoreError::RecordTooLarge`] (before anything of the batch is written) when a value does
    /// not fit in a block; an I/O error of the segment or the directory.
    pub fn append(&mut self, batch: &impl StoreBatch) -> Result<(), StoreError> {
        const MAX_VALUE: usize = MAX_BLOCK_BYTES - RECORD_FRAME_LEN;
        if let Some((_, value)) = batch.records().find(|(_, value)| value.len() > MAX_VALUE) {
            return Err(StoreError::RecordTooLarge {
                len: value.len(),
                max: MAX_VALUE,
            });
        }
        let shard = batch.shard();
        for (i, (received_at_us, value)) in batch.records().enumerate() {
            if self.encoder.is_full_for(value.len()) {
                self.write_block(shard)?;
            }
            self.encoder
                .push(received_at_us, value, batch.index_fields(i));
        }
        if !self.encoder.is_empty() {
            self.write_block(shard)?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable: fsyncs segments rolled since the last call, the
    /// current segment, and the directory if segments were created or deleted.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        for (path, file) in self.unsynced.drain(..) {
            file.sync_data().map_err(|e| FileError::new(&path, e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| FileError::new(&self.active_path(), e))?;
        if self.dir_dirty {
            let dir = &self.opts.dir;
            segments::sync_dir(dir).map_err(|e| FileError::new(dir, e))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Whether blocks carry an index (the default, format 3) or are written as before the
    /// index existed (version 1): for tests that such stores still read and search, and for
    /// benches measuring what the index costs. Applies from the next block.
    pub fn set_block_index(&mut self, on: bool) {
        self.set_block_format(if on {
            BlockFormat::Granules
        } else {
            BlockFormat::Unindexed
        });
    }

    /// The format of the blocks written from the next one on: the current one (the default), or
    /// an older one, for tests that stores written before still read and search right.
    pub fn set_block_format(&mut self, format: BlockFormat) {
        self.encoder.set_format(format);
    }

    /// Framed bytes per granule in format-3 blocks from the next one on (default
    /// [`super::GRANULE_BYTES`], at least [`super::MIN_GRANULE_BYTES`]): for the load test that
    /// compares sizes.
    pub fn set_granule_bytes(&mut self, bytes: usize) {
        self.encoder.set_granule_bytes(bytes);
    }

    /// Sizes on disk and counters since open.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            disk_bytes: self.segments.iter().map(|s| s.len).sum(),
            segments: self.segments.len() as u64,
            ..self.stats
        }
    }

    /// The sequence numbers of the oldest segment on disk and of the one being appended to
    /// (the same while there is one): what retention has kept so far.
    pub fn segment_range(&self) -> (u64, u64) {
        let oldest = self.segments.front().map_or(0, |s| s.seq);
        (oldest, self.active().seq)
    }

    fn active(&self) -> &SegmentInfo {
        // `segments` is never empty: open puts the active segment in, retention keeps it.
        match self.segments.back() {
            Some(s) => s,
            None => unreachable!("the active segment is always listed"),
        }
    }

    fn active_mut(&mut self) -> &mut SegmentInfo {
        match self.segments.back_mut() {
            Some(s) => s,
            None => unreachable!("the active segment is always listed"),
        }
    }

    fn active_path(&self) -> PathBuf {
        segment_path(&self.opts.dir, self.active().seq)
    }

    /// Compresses the encoder's records into a block and writes it.
    fn write_block(&mut self, shard: u16) -> Result<(), StoreError> {
        let (count, max_us) = self.encoder.finish(shard);
        let block_len = self.encoder.frame().len() as u64;
        let active_len = self.active().len;
        if self.needs_roll
            || (active_len > 0 && active_len + block_len > self.opts.max_segment_bytes)
        {
            self.roll()?;
        }

        let offset = self.active().len;
        if let Err(e) = self.file.write_all(self.encoder.frame()) {
            let path = self.active_path();
            // Take back whatever part of the block made it, so that the next block does not
            // land after a torn one. Failing that, the next block goes to a new segment.
            if let Err(cut) = self.file.set_len(offset) {
                tracing::warn!(
                    "{} at byte {offset}: could not cut a partly written block ({cut}); \
                     continuing in a new segment",
                    path.display()
                );
                self.needs_roll = true;
            }
            return Err(FileError::at(&path, offset, e).into());
        }

        let active = self.active_mut();
        active.len += block_len;
        active.max_received_at_us =
            Some(active.max_received_at_us.map_or(max_us, |m| m.max(max_us)));
        self.stats.blocks_written += 1;
        self.stats.records_written += u64::from(count);
        self.stats.bytes_written += block_len;
        self.stats.index_bytes_written += self.encoder.index_len() as u64;
        Ok(())
    }

    /// Starts the next segment, then applies retention.
    fn roll(&mut self) -> Result<(), StoreError> {
        let seq = self.active().seq + 1;
        let path = segment_path(&self.opts.dir, seq);
        let file = create_segment(&path)?;
        let old_path = self.active_path();
        let old = std::mem::replace(&mut self.file, file);
        self.unsynced.push((old_path, old));
        self.segments.push_back(SegmentInfo {
            seq,
            len: 0,
            max_received_at_us: None,
        });
        self.dir_dirty = true;
        self.needs_roll = false;
        tracing::debug!("store: rolled to {}", path.display());
        self.apply_retention();
        Ok(())
    }

    /// New retention limits, applied at once (a reload of the gateway's configuration).
    pub fn set_retention(&mut self, max_total_bytes: u64, max_age: Option<std::time::Duration>) {
        self.opts.max_total_bytes = max_total_bytes;
        self.opts.max_age = max_age;
        self.apply_retention();
    }

    /// Deletes the oldest segments (never the active one) while the store is over
    /// `max_total_bytes`, or while the oldest one's newest record is older than `max_age`.
    /// A segment that cannot be deleted stays, is logged, and is tried again at the next roll.
    fn apply_retention(&mut self) {
        let cutoff_us = self.opts.max_age.map(crate::time::unix_micros_ago);
        let mut total: u64 = self.segments.iter().map(|s| s.len).sum();
        while self.segments.len() > 1 {
            let Some(&oldest) = self.segments.front() else {
                break;
            };
            let too_big = total > self.opts.max_total_bytes;
            let too_old = cutoff_us.is_some_and(|cutoff| {
                // A segment without a readable record has nothing worth keeping for its age.
                oldest.max_received_at_us.is_none_or(|max| max < cutoff)
            });
            if !too_big && !too_old {
                break;
            }
            let path = segment_path(&self.opts.dir, oldest.seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("store retention: could not delete {}: {e}", path.display());
                    break;
                }
            }
            tracing::debug!(
                "store retention: deleted {} ({} bytes, {})",
                path.display(),
                oldest.len,
                if too_big {
                    "over max_total_bytes"
                } else {
                    "older than max_age"
                }
            );
            total -= oldest.len;
            self.segments.pop_front();
            self.unsynced.retain(|(p, _)| p != &path);
            self.dir_dirty = true;
        }
    }
}

fn create_segment(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| FileError::new(path, e).into())
}

/// What a walk over a segment's blocks found.
#[derive(Debug, Default)]
struct Walk {
    /// End of the last valid block.
    valid_end: u64,
    max_received_at_us: Option<i64>,
    /// Blocks that failed validation, where they start and why.
    corrupt: Vec<(u64, BlockCorruption)>,
}

/// Walks the blocks of `file` (of length `len`), skipping corrupt ones by resynchronizing. With
/// `decode`, every payload is checked too; otherwise only headers are read.
fn walk_segment(
    scanner: &mut Scanner,
    path: &Path,
    file: &File,
    len: u64,
    decode: bool,
) -> Result<Walk, StoreError> {
    let mut walk = Walk::default();
    let mut pos = 0;
    loop {
        let at = scanner
            .header_at(file, pos, len)
            .map_err(|e| FileError::at(path, pos, e))?;
        let block = match at {
            HeaderAt::End => break,
            // Incomplete: a torn last block, unless a valid block follows (then it lied about
            // its length). Either way, look for a valid block after it.
            HeaderAt::Corrupt(reason) | HeaderAt::Incomplete(reason) => Err(reason),
            HeaderAt::Block(header) if decode => match scanner
                .decode_at(file, pos, &header)
                .map_err(|e| FileError::at(path, pos, e))?
            {
                Ok(true) => Ok(header),
                Ok(false) => break,
                Err(reason) => Err(reason),
            },
            HeaderAt::Block(header) => Ok(header),
        };
        let header = match block {
            Ok(header) => header,
            Err(reason) => {
                walk.corrupt.push((pos, reason));
                match scanner
                    .resync(file, pos + 1, len, false)
                    .map_err(|e| FileError::at(path, pos, e))?
                {
                    Some(next) => {
                        pos = next;
                        continue;
                    }
                    None => break,
                }
            }
        };
        pos += header.block_len();
        walk.valid_end = pos;
        walk.max_received_at_us = Some(
            walk.max_received_at_us
                .map_or(header.max_received_at_us, |m| {
                    m.max(header.max_received_at_us)
                }),
        );
    }
    Ok(walk)
}

/// Length and (with `want_max`) newest timestamp of an older segment, from its headers alone.
/// `None` when the segment has disappeared.
fn describe_segment(
    scanner: &mut Scanner,
    path: &Path,
    want_max: bool,
) -> Result<Option<(u64, Option<i64>)>, StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::new(path, e).into()),
    };
    let len = file.metadata().map_err(|e| FileError::new(path, e))?.len();
    let max = if want_max {
        walk_segment(scanner, path, &file, len, false)?.max_received_at_us
    } else {
        None
    };
    Ok(Some((len, max)))
}

/// Validates every block of the newest segment and cuts whatever follows the last valid one.
/// Returns the segment opened for appending, its length, its newest timestamp and the bytes cut.
fn recover_segment(
    scanner: &mut Scanner,
    path: &Path,
) -> Result<(File, u64, Option<i64>, u64), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| FileError::new(path, e))?;
    let len = file.metadata().map_err(|e| FileError::new(path, e))?.len();
    let walk = walk_segment(scanner, path, &file, len, true)?;
    for (offset, reason) in &walk.corrupt {
        if *offset < walk.valid_end {
            let err = StoreError::Corrupt {
                path: path.to_path_buf(),
                offset: *offset,
                reason: reason.clone(),
            };
            tracing::warn!("{err}; valid blocks follow, so it is left in place (readers skip it)");
        }
    }
    let cut = len - walk.valid_end;
    if cut > 0 {
        let why = match walk.corrupt.iter().find(|(o, _)| *o >= walk.valid_end) {
            Some((_, reason)) => reason.to_string(),
            None => "incomplete block (torn write)".to_string(),
        };
        tracing::warn!(
            "{} at byte {}: cutting {cut} bytes after the last valid block: {why}",
            path.display(),
            walk.valid_end
        );
        file.set_len(walk.valid_end)
            .and_then(|()| file.sync_all())
            .map_err(|e| FileError::at(path, walk.valid_end, e))?;
    }
    Ok((file, walk.valid_end, walk.max_received_at_us, cut))
}
