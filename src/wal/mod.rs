//! The write-ahead log: a durable, segmented, memory-mapped queue of opaque batch payloads that
//! holds batches while Kafka lags or is down, and replays them in order.
//!
//! # Design constraints
//!
//! - **One owner.** A [`Wal`] is used by one thread (`&mut self` everywhere) and owns its directory
//!   through an `flock` on `<dir>/LOCK`; a second [`Wal::open`] on the same directory, from this
//!   process or another, fails with [`WalError::Locked`]. [`dump`] and [`stats_of`] take no lock
//!   and change nothing.
//! - **Bounded.** At most `max_total_bytes` of segments; what happens at the limit is the
//!   [`FullPolicy`]. A full disk (`ENOSPC`, `EDQUOT`) is treated exactly like a full WAL. The
//!   in-memory index costs 32 bytes per unacknowledged batch.
//! - **At-least-once.** A batch leaves the WAL only once acknowledged (or dropped by policy, or
//!   lost to corruption, all counted). Acknowledgements above the persisted watermark are lost on
//!   a crash, so those batches are delivered again: consumers must tolerate duplicates, which
//!   they can recognize by sequence number.
//! - **Sequence numbers** start at 1, grow by one per stored batch, and are never reused, across
//!   restarts too (even when every segment was acknowledged and deleted). A failed or dropped
//!   append consumes none.
//! - **Never panic on what is read from disk.** Every length is checked against the bytes
//!   actually there, every record's checksum is verified before it is believed, and a header
//!   cannot make a reader allocate more than [`MAX_PAYLOAD_BYTES`].
//!
//! # On-disk format
//!
//! The directory is a [`crate::segments`] directory (lock file, segment names), shared in form
//! with the local store; the ledger is the WAL's own:
//!
//! ```text
//! <dir>/LOCK                          flock(LOCK_EX) held by the open Wal; holds its pid, as text
//! <dir>/LEDGER                        ack watermark and next seq, two alternating slots (below)
//! <dir>/00000000000000000001.seg      segments, named by the WAL's next seq when each was created
//! <dir>/00000000000000000734.seg      (20 digits, so lexical order is creation order); the name
//! ...                                 is a lower bound of the seqs inside, all above the older ones
//!
//! segment := record*                  no file header: records back to back
//!
//! struct RecordHeader {               // 40 bytes, every integer little-endian
//!     magic:            [u8; 4],      //  0  F7 'L' 'T' 'W'  (0xF7 never occurs in UTF-8 text)
//!     version:          u8,           //  4  1
//!     compression:      u8,           //  5  0 = none, 1 = lz4 block (lz4_flex::block, no size
//!                                     //     prefix); none when lz4 would not make it smaller
//!     shard:            u16,          //  6  as given to append
//!     seq:              u64,          //  8  >= 1, strictly increasing through the WAL
//!     record_count:     u32,          // 16  as given to append (log records in the batch)
//!     uncompressed_len: u32,          // 20  payload length as given, <= MAX_PAYLOAD_BYTES
//!     stored_len:       u32,          // 24  bytes that follow; == uncompressed_len when
//!                                     //     compression = 0, else 1..=lz4 bound of it
//!     reserved:         u32,          // 28  0
//!     crc:              u32,          // 32  CRC32C(header bytes 0..32 ++ stored payload)
//!     header_crc:       u32,          // 36  CRC32C(header bytes 0..36)
//! }
//! payload: [u8; stored_len]
//!
//! LEDGER := slot[0] slot[1]           // 2 x 64 bytes; write number g goes to slot g % 2
//! struct LedgerSlot {                 // 64 bytes, little-endian
//!     magic:          [u8; 4],        //  0  F7 'L' 'T' 'L'
//!     version:        u8,             //  4  1
//!     reserved:       [u8; 3],        //  5  0
//!     generation:     u64,            //  8  +1 per write; the valid slot with the highest wins
//!     acked_through:  u64,            // 16  every seq <= this is acknowledged (0: none)
//!     next_seq:       u64,            // 24  next seq to hand out, > acked_through
//!     reserved:       [u8; 28],       // 32  0
//!     crc:            u32,            // 60  CRC32C(slot bytes 0..60)
//! }
//! ```
//!
//! `header_crc` makes a header trustworthy on its own, so a lying length is caught before it is
//! used and resynchronization can tell a real record start from payload bytes that happen to
//! hold the magic. `crc` covers the header fields too, so a record is only believed whole.
//!
//! # The ledger
//!
//! The ledger is rewritten in place, alternating between its two slots, so a write torn by a
//! crash spoils only the slot being written and the other still holds the state before it: the
//! update is atomic without a rename, and costs one 64-byte `pwrite` (plus an `fdatasync` per the
//! fsync policy). It is written by [`Wal::flush`], at open, and on drop. An unreadable ledger
//! (both slots bad) is logged and treated as "nothing acknowledged": everything on disk is
//! delivered again, never lost.
//!
//! The watermark is the highest seq such that every seq at or below it is acknowledged, dropped,
//! or lost to corruption; acknowledgements may arrive in any order, those above the watermark are
//! kept in memory only. A segment is deleted as soon as every record in it is acknowledged (or
//! dropped), wherever it sits in the queue, except the segment being appended to: that one goes
//! when the WAL rolls away from it (which it does early when the WAL is full and it holds nothing
//! unacknowledged). The `next_seq` in the ledger, together with the name of the newest segment
//! (which is never deleted before a newer one exists), makes sequence numbers survive even a WAL
//! whose every batch was acknowledged and deleted.
//!
//! # Fsync policies and their loss windows
//!
//! Every append is one `pwrite` of the whole record, so after a *process* crash (the kernel
//! survives) every append that returned `Ok` is there, under every policy. A *machine* crash
//! (power loss, kernel panic) loses what the kernel had not yet written back:
//!
//! - [`FsyncPolicy::EveryAppend`]: the segment is `fdatasync`ed (and the directory `fsync`ed when
//!   a segment was created) before `append` returns. An append that returned `Ok` survives a
//!   machine crash. If the sync fails, the record is cut off again and the append fails as if it
//!   had not been written. Acknowledgements are durable at the end of each [`Wal::flush`].
//! - [`FsyncPolicy::Interval`], with `d` = [`WalOptions::fsync_interval`]: segments, directory
//!   and ledger are synced by an `append` or [`Wal::flush`] that comes at least `d` after the
//!   previous sync. A machine crash loses at most the appends of the last `d`, provided `flush`
//!   is called at least every `d` (the interval is driven by calls, there is no background
//!   thread). Nothing is lost on a process crash.
//! - [`FsyncPolicy::Never`]: the OS writes back when it likes (typically within 30 s on Linux).
//!   Safe against a process crash, not against a machine crash.
//!
//! What a machine crash does lose is never half-visible: a torn record is cut at the next open.
//! Acknowledgements lost with the ledger mean redelivery, never loss.
//!
//! # Reading and SIGBUS
//!
//! Records are read through read-only `mmap`s (memmap2): [`Wal::next_unsent`] checks the record's
//! checksum again, then decompresses it straight from the mapping. A process touching a mapped
//! page that lies past the end of the file gets `SIGBUS`, which would kill the gateway instead of
//! being an error. This cannot happen here because:
//!
//! - a record is only ever read below the segment's validated length: the end of the records
//!   checked at open or written by this `Wal` (a write counts once it fully succeeded);
//! - a segment is only ever shortened in two places, neither below that length: the torn tail at
//!   open (before the segment is mapped), and the partial record of a failed append (which lies
//!   past the validated length);
//! - sealed segments are immutable; other processes do not write the directory (the lock), and
//!   [`dump`]/[`stats_of`] read copies with `read(2)` instead of mapping, so that a live WAL
//!   cutting a torn record never hurts them.
//!
//! The segment being appended to is mapped `max_segment_bytes` long even while the file is
//! shorter; Linux (like every POSIX system) allows mapping past the end of a file, and pages the
//! file grows into become readable through the existing mapping, so appends do not force a new
//! mapping. Segments are mapped when first read and unmapped once the read cursor has moved past
//! them (and when sealed, to be mapped again at their exact length). One risk remains and is
//! inherent to mmap: an I/O error of the disk while a mapped page is read in is also a SIGBUS.
//!
//! # Recovery
//!
//! [`Wal::open`] creates the directory, takes the lock, reads the ledger, then maps every segment
//! oldest first and walks its records, verifying the header and the checksum of each:
//!
//! - After bad bytes, it resynchronizes: the next record is the first later occurrence of the
//!   magic where a whole valid record starts. A valid record whose seq is not above the previous
//!   one (or is below its segment's name) is treated as bad bytes too.
//! - Bad bytes after the last valid record of the newest segment are a torn tail: cut with
//!   `ftruncate` (and counted in [`RecoveryReport::truncated_bytes`]), and appends continue there.
//! - Bad bytes anywhere else are corruption: left in place, reported as a [`CorruptRange`] with
//!   segment, offset and length, logged once per open (a count and the first byte ranges), and the
//!   batches they held are treated as acknowledged, since they can never be delivered. How many
//!   batches that is comes from the gap in seqs around them. Corruption among records already
//!   acknowledged is harmless and only logged at debug level.
//! - Records at or below the ledger's watermark are acknowledged; segments holding nothing else
//!   (other than the newest) are deleted. `next_unsent` starts from the watermark.
//! - The next seq is the highest of: the ledger's, one past the highest seq found, the newest
//!   segment's name (plus one if it holds anything).
//!
//! A record that fails its checksum only later, when [`Wal::next_unsent`] reads it (the disk
//! changed under us), is counted, logged and skipped the same way.
//!
//! # Where things are
//!
//! `segment`: the record format, its validation and scanning; `recovery`: making sense of the
//! segments at open; `ledger`: the watermark file; `inspect`: the offline, read-only [`dump`] and
//! [`stats_of`] behind `logtail wal dump|stats`; `config`: the `[sink.kafka.wal]` section
//! ([`WalConfig`]). The directory itself (lock, segment names) is [`crate::segments`].

mod config;
mod inspect;
mod ledger;
mod recovery;
mod segment;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memmap2::Mmap;
use serde::Deserialize;

pub use config::WalConfig;
pub use inspect::{PayloadPrinter, dump, print_payload_escaped, stats_of};
pub use segment::{MAX_PAYLOAD_BYTES, WalCorruption};

use crate::segments::{
    self, DirLocked, FileError, LockFailure, is_no_space, list_segments, segment_path,
};
use ledger::{Ledger, Loaded};
use recovery::Analysis;
use segment::{IndexedRecord, Segment};

const LEDGER_FILE: &str = "LEDGER";

/// When appended data is forced to disk. See the module doc for the loss window of each. In the
/// config file: `fsync = "never" | "interval" | "every_batch"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Never fsync; the OS writes back when it likes: safe against a crash of the gateway, not
    /// of the machine.
    Never,
    /// Fsync when an `append` or `flush` comes at least [`WalOptions::fsync_interval`] after the
    /// last fsync: a crash of the machine loses at most that window.
    #[default]
    Interval,
    /// Fsync before every `append` returns: nothing appended is lost. `every_batch` in the
    /// config file, since the Kafka sink appends one batch at a time.
    #[serde(rename = "every_batch")]
    EveryAppend,
}

/// What `append` does when the WAL holds `max_total_bytes` (or the disk is full). In the config
/// file: `full_policy = "block" | "drop_oldest" | "drop_newest"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Refuse with [`WalError::Full`], writing nothing: the caller applies backpressure (stream
    /// senders are slowed by TCP flow control, datagrams are dropped and counted).
    #[default]
    Block,
    /// Delete the oldest segment(s), unacknowledged batches included (counted), then append.
    DropOldest,
    /// Do not write the new batch; return [`Appended::Dropped`] (counted).
    DropNewest,
}

/// Where and how much to keep, and how durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// Directory of the WAL; created when missing.
    pub dir: PathBuf,
    /// Start a new segment when the next record would grow the current one past this (a record
    /// larger than this gets a segment of its own). Also the unit DropOldest drops.
    pub max_segment_bytes: u64,
    /// Segments on disk never take more than this in total.
    pub max_total_bytes: u64,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// The interval of [`FsyncPolicy::Interval`]; unused by the other policies.
    pub fsync_interval: Duration,
    /// What to do when full.
    pub full: FullPolicy,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            dir: PathBuf::from("data/wal"),
            max_segment_bytes: 64 << 20,
            max_total_bytes: 4 << 30,
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_secs(1),
            full: FullPolicy::Block,
        }
    }
}

/// What [`Wal::append`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored under this sequence number.
    Stored(u64),
    /// Not stored: the WAL was full and the policy is [`FullPolicy::DropNewest`].
    Dropped,
}

/// A batch read back for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalBatch {
    pub seq: u64,
    pub shard: u16,
    pub records: u32,
    /// The payload as appended (decompressed).
    pub payload: Vec<u8>,
}

/// Sizes and counters of a WAL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Bytes of all segments (ledger and lock file not included).
    pub disk_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Batches stored and not acknowledged (nor dropped nor corrupt).
    pub pending_batches: u64,
    /// Log records in those batches.
    pub pending_records: u64,
    /// Every seq at or below this is acknowledged, dropped or corrupt (0: none).
    pub acked_through: u64,
    /// Highest seq handed out so far (0: none ever).
    pub last_seq: u64,
    /// Batches stored since open.
    pub appended_batches: u64,
    /// Bytes written since open (headers and stored payloads).
    pub appended_bytes: u64,
    /// Appends refused with [`WalError::Full`] since open.
    pub full_rejections: u64,
    /// Batches dropped by the full policy since open (DropOldest: unacknowledged batches of the
    /// deleted segments; DropNewest: the refused ones).
    pub dropped_batches: u64,
    /// Log records in those batches.
    pub dropped_records: u64,
    /// Batches lost to corruption (found at open, or on read since).
    pub corrupt_batches: u64,
    /// Log records in those batches, where a sound header told (a lower bound).
    pub corrupt_records: u64,
}

/// A stretch of a segment that holds no valid record and was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRange {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the stretch starts.
    pub offset: u64,
    /// How long it is.
    pub len: u64,
    /// What was wrong at its start.
    pub reason: String,
    /// The seq of the record at its start, when its header was sound.
    pub seq: Option<u64>,
}

/// What the ledger file looked like at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStatus {
    /// No ledger: a new WAL (or one whose ledger was removed).
    Missing,
    /// A ledger without a valid slot: everything on disk counts as unacknowledged.
    Unreadable,
    /// A valid ledger.
    Found,
}

/// What [`Wal::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The ledger at open.
    pub ledger: LedgerStatus,
    /// Segments after recovery.
    pub segments: u64,
    /// The watermark after recovery.
    pub acked_through: u64,
    /// The next seq `append` will use.
    pub next_seq: u64,
    /// Batches to deliver (from the watermark on).
    pub pending_batches: u64,
    /// Log records in them.
    pub pending_records: u64,
    /// Corrupt stretches skipped (those that may have held unacknowledged batches).
    pub corrupt: Vec<CorruptRange>,
    /// Batches lost to those stretches.
    pub corrupt_batches: u64,
    /// Log records in them, where a sound header told (a lower bound).
    pub corrupt_records: u64,
    /// Bytes of a torn record cut from the end of the newest segment.
    pub truncated_bytes: u64,
    /// Fully acknowledged segments deleted at open.
    pub deleted_segments: u64,
}

/// Errors of the WAL. Messages name the file, and the byte offset where there is one.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O error on a file or directory of the WAL, naming it (and the byte offset in a
    /// segment, where there is one).
    #[error(transparent)]
    Io(#[from] FileError),
    /// Another process (or another writer in this one) holds the directory's lock.
    #[error(transparent)]
    Locked(#[from] DirLocked),
    /// The WAL holds `max_total_bytes`, or the disk is full, and the policy is
    /// [`FullPolicy::Block`] (or DropOldest found nothing left to drop). Nothing was written.
    #[error(
        "WAL is full (max_total_bytes reached or no space left on the device); nothing was written"
    )]
    Full,
    /// A batch that can never fit: its payload is above [`MAX_PAYLOAD_BYTES`], or its record
    /// above `max_total_bytes`. Nothing was written.
    #[error("batch of {len} bytes is too large for the WAL (at most {max}); nothing was written")]
    TooLarge {
        /// Payload length, or record length when the record is what does not fit.
        len: u64,
        /// The limit it exceeds.
        max: u64,
    },
    /// Writing to the output of [`dump`] failed (for example a closed pipe).
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
}

/// Why a write did not happen.
enum WriteFail {
    /// The disk is full: handled like a full WAL.
    NoSpace,
    /// Anything else: returned to the caller.
    Other(WalError),
}

/// The write-ahead log. See the module doc.
#[derive(Debug)]
pub struct Wal {
    opts: WalOptions,
    /// Holds the directory's flock for as long as the WAL lives.
    _lock: File,
    /// Every segment on disk, oldest first; never empty, the last one is `active`. Every segment
    /// but the last holds at least one unacknowledged record.
    segments: VecDeque<Segment>,
    /// The newest segment, open for reading and writing.
    active: File,
    ledger: Ledger,
    next_seq: u64,
    watermark: u64,
    /// Next seq `next_unsent` may hand out (it skips acknowledged ones).
    cursor: u64,
    total_bytes: u64,
    /// The record being appended, reused.
    frame: Vec<u8>,
    /// Segments rolled away from with writes not yet fsynced.
    unsynced: Vec<(PathBuf, File)>,
    /// The active segment has writes not yet fsynced.
    data_dirty: bool,
    /// Segments were created or deleted since the directory was last fsynced.
    dir_dirty: bool,
    last_sync: Instant,
    /// Segments whose deletion failed, tried again at each flush.
    undeleted: Vec<PathBuf>,
    stats: WalStats,
    /// Test hook: this many upcoming writes fail with ENOSPC after writing half the record.
    #[cfg(test)]
    fail_writes: u32,
}

impl Wal {
    /// Opens or creates the WAL in `opts.dir`: takes the lock (failing with
    /// [`WalError::Locked`]), reads the ledger, validates every segment, cuts a torn tail and
    /// deletes fully acknowledged segments (see "Recovery" in the module doc).
    pub fn open(opts: WalOptions) -> Result<(Wal, RecoveryReport), WalError> {
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| FileError::new(&dir, e))?;
        let lock = segments::lock_dir(&dir, "WAL").map_err(LockFailure::into_error::<WalError>)?;

        let loaded = recovery::read_ledger(&dir)?;
        let (ledger_status, stored) = match loaded {
            Loaded::Missing => (LedgerStatus::Missing, None),
            Loaded::Unreadable => (LedgerStatus::Unreadable, None),
            Loaded::Found(s) => (LedgerStatus::Found, Some(s)),
        };
        let watermark = stored.map_or(0, |s| s.acked_through);
        let mut next_seq = stored.map_or(1, |s| s.next_seq).max(watermark + 1);

        let ids = list_segments(&dir)?;
        let mut analysis = Analysis::default();
        let mut segments = VecDeque::with_capacity(ids.len() + 1);
        let mut truncated_bytes = 0;
        let mut active = None;
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let path = segment_path(&dir, id);
            let file = OpenOptions::new()
                .read(true)
                .write(newest)
                .open(&path)
                .map_err(|e| FileError::new(&path, e))?;
            let file_len = file.metadata().map_err(|e| FileError::new(&path, e))?.len();
            let view = {
                let map = map_whole(&file, file_len).map_err(|e| FileError::new(&path, e))?;
                let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
                analysis.segment(id, &path, bytes, watermark, newest)
                // The mapping ends here, before the file may be cut below.
            };
            let mut len = view.file_len;
            if newest {
                if view.tail > 0 {
                    tracing::warn!(
                        "wal: {} at byte {}: cutting {} bytes of an incomplete record (torn write)",
                        path.display(),
                        view.valid_end,
                        view.tail
                    );
                    file.set_len(view.valid_end)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| FileError::at(&path, view.valid_end, e))?;
                    truncated_bytes = view.tail;
                }
                len = view.valid_end;
                next_seq = next_seq.max(if len > 0 { id + 1 } else { id });
                active = Some(file);
            }
            let entries: Vec<IndexedRecord> =
                view.entries.into_iter().filter(|e| !e.acked).collect();
            segments.push_back(Segment::new(id, path, len, entries));
        }
        next_seq = next_seq.max(analysis.max_seq + 1);
        analysis.log(&dir);

        // Segments other than the newest with nothing left to deliver.
        let mut deleted_segments = 0;
        let mut kept = VecDeque::with_capacity(segments.len() + 1);
        let count = segments.len();
        for (i, seg) in segments.into_iter().enumerate() {
            if seg.unacked == 0 && i + 1 < count {
                remove_segment_file(&seg.path);
                deleted_segments += 1;
            } else {
                kept.push_back(seg);
            }
        }
        let mut segments = kept;
        let active = match active {
            Some(f) => f,
            None => {
                let path = segment_path(&dir, next_seq);
                let file = create_segment(&path).map_err(|e| FileError::new(&path, e))?;
                segments.push_back(Segment::new(next_seq, path, 0, Vec::new()));
                file
            }
        };

        let ledger_path = dir.join(LEDGER_FILE);
        let ledger = Ledger::open(ledger_path.clone(), loaded)
            .map_err(|e| FileError::new(&ledger_path, e))?;
        let total_bytes = segments.iter().map(|s| s.len).sum();
        let (pending_batches, pending_records) = segments
            .iter()
            .flat_map(|s| s.entries.iter())
            .fold((0, 0), |(b, r), e| (b + 1, r + u64::from(e.records)));

        let mut wal = Wal {
            opts,
            _lock: lock,
            segments,
            active,
            ledger,
            next_seq,
            watermark,
            cursor: watermark + 1,
            total_bytes,
            frame: Vec::new(),
            unsynced: Vec::new(),
            data_dirty: false,
            dir_dirty: true,
            last_sync: Instant::now(),
            undeleted: Vec::new(),
            stats: WalStats {
                pending_batches,
                pending_records,
                corrupt_batches: analysis.corrupt_batches,
                corrupt_records: analysis.corrupt_records,
                ..WalStats::default()
            },
            #[cfg(test)]
            fail_writes: 0,
        };
        wal.update_watermark();
        wal.cursor = wal.watermark + 1;
        // Record the recovered state (a new next_seq, a watermark moved past corruption) and
        // make the directory's creations and deletions durable.
        wal.ledger
            .store(wal.watermark, wal.next_seq)
            .and_then(|()| wal.ledger.sync())
            .map_err(|e| FileError::new(&wal.ledger.path, e))?;
        wal.sync_data()?;

        let report = RecoveryReport {
            ledger: ledger_status,
            segments: wal.segments.len() as u64,
            acked_through: wal.watermark,
            next_seq: wal.next_seq,
            pending_batches,
            pending_records,
            corrupt: analysis.corrupt,
            corrupt_batches: analysis.corrupt_batches,
            corrupt_records: analysis.corrupt_records,
            truncated_bytes,
            deleted_segments,
        };
        tracing::info!(
            "wal {}: opened; {} segment(s), {} batch(es) pending, acked through {}, next seq {}",
            wal.opts.dir.display(),
            report.segments,
            report.pending_batches,
            report.acked_through,
            report.next_seq
        );
        Ok((wal, report))
    }

    /// Appends one batch payload (compressed with lz4 when that makes it smaller) with its shard
    /// and record count, and returns its sequence number. When the WAL is full (or the disk is):
    /// `Block` refuses with [`WalError::Full`], `DropOldest` deletes the oldest segment(s) then
    /// appends, `DropNewest` returns [`Appended::Dropped`]. A failed append leaves nothing visible.
    pub fn append(
        &mut self,
        shard: u16,
        records: u32,
        payload: &[u8],
    ) -> Result<Appended, WalError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(WalError::TooLarge {
                len: payload.len() as u64,
                max: MAX_PAYLOAD_BYTES as u64,
            });
        }
        segment::encode(&mut self.frame, self.next_seq, shard, records, payload);
        let need = self.frame.len() as u64;
        if need > self.opts.max_total_bytes {
            return Err(WalError::TooLarge {
                len: need,
                max: self.opts.max_total_bytes,
            });
        }
        let offset = loop {
            if !self.make_room(need)? {
                return self.refuse(records);
            }
            match self.write_frame() {
                Ok(offset) => break offset,
                Err(WriteFail::NoSpace) => {
                    tracing::warn!(
                        "wal {}: no space left on the device ({} bytes in segments)",
                        self.opts.dir.display(),
                        self.total_bytes
                    );
                    if self.opts.full == FullPolicy::DropOldest && self.drop_oldest()? {
                        continue;
                    }
                    return self.refuse(records);
                }
                Err(WriteFail::Other(e)) => return Err(e),
            }
        };

        let seq = self.next_seq;
        self.next_seq += 1;
        let active = self.active_mut();
        active.entries.push(IndexedRecord {
            seq,
            offset,
            len: need as u32,
            shard,
            records,
            acked: false,
        });
        active.unacked += 1;
        self.stats.pending_batches += 1;
        self.stats.pending_records += u64::from(records);
        self.stats.appended_batches += 1;
        self.stats.appended_bytes += need;
        if self.opts.fsync == FsyncPolicy::Interval
            && self.last_sync.elapsed() >= self.opts.fsync_interval
        {
            self.sync_data()?;
        }
        Ok(Appended::Stored(seq))
    }

    /// Marks `seq` delivered. Acknowledgements may come in any order; unknown, repeated and
    /// already dropped seqs are ignored. Deletes the segment of `seq` if that was its last
    /// unacknowledged record (unless it is the one being appended to).
    pub fn acknowledge(&mut self, seq: u64) {
        // Not found: lost to corruption, or dropped.
        if let Some((si, ei)) = self.locate_stored(seq) {
            self.mark_acked(si, ei);
        }
    }

    /// True while `seq` is stored and neither acknowledged, dropped, nor lost to corruption.
    pub fn is_pending(&self, seq: u64) -> bool {
        self.locate_stored(seq)
            .is_some_and(|(si, ei)| !self.segments[si].entries[ei].acked)
    }

    /// Segment and entry index of `seq`, if it is above the watermark and still on disk.
    fn locate_stored(&self, seq: u64) -> Option<(usize, usize)> {
        if seq <= self.watermark || seq >= self.next_seq {
            return None;
        }
        let si = self
            .segments
            .partition_point(|s| s.entries.last().is_some_and(|e| e.seq < seq));
        Some((si, self.segments.get(si)?.find(seq)?))
    }

    /// The next batch, in seq order, that is neither acknowledged nor handed out since the last
    /// [`Wal::rewind`] (or open); `None` when caught up. A record that no longer checks out is
    /// counted, logged, treated as acknowledged and skipped.
    pub fn next_unsent(&mut self) -> Result<Option<WalBatch>, WalError> {
        loop {
            let Some((si, ei)) = self.locate(self.cursor) else {
                return Ok(None);
            };
            for older in self.segments.range_mut(..si) {
                older.unmap();
            }
            let is_active = si + 1 == self.segments.len();
            let capacity = if is_active {
                self.opts.max_segment_bytes
            } else {
                0
            };
            let seg = &mut self.segments[si];
            let entry = seg.entries[ei];
            let path = seg.path.clone();
            let bytes = seg
                .record_bytes(&entry, || Ok((File::open(&path)?, capacity)))
                .map_err(|e| FileError::at(&path, entry.offset, e))?;
            let mut payload = Vec::new();
            self.cursor = entry.seq + 1;
            let reason = match segment::decode(bytes, &mut payload) {
                Ok(h) if h.seq == entry.seq => {
                    return Ok(Some(WalBatch {
                        seq: entry.seq,
                        shard: h.shard,
                        records: h.records,
                        payload,
                    }));
                }
                Ok(h) => WalCorruption::SeqOrder {
                    seq: h.seq,
                    after: entry.seq,
                },
                Err(c) => c,
            };
            tracing::warn!(
                "wal: {} at byte {}: batch seq {} no longer checks out ({reason}); skipped and \
                 treated as acknowledged",
                path.display(),
                entry.offset,
                entry.seq
            );
            self.stats.corrupt_batches += 1;
            self.stats.corrupt_records += u64::from(entry.records);
            self.mark_acked(si, ei);
        }
    }

    /// Makes [`Wal::next_unsent`] start again from the watermark: everything not acknowledged is
    /// handed out again.
    pub fn rewind(&mut self) {
        self.cursor = self.watermark + 1;
    }

    /// Writes the ledger (watermark and next seq) and fsyncs per the policy: `EveryAppend` syncs
    /// the ledger; `Interval` syncs segments, directory and ledger when `fsync_interval` has passed
    /// since the last sync; `Never` syncs nothing. Also retries deleting segments that failed before.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.undeleted.retain(|p| !remove_segment_file(p));
        self.ledger
            .store(self.watermark, self.next_seq)
            .map_err(|e| FileError::new(&self.ledger.path, e))?;
        let sync = match self.opts.fsync {
            FsyncPolicy::Never => false,
            FsyncPolicy::EveryAppend => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= self.opts.fsync_interval,
        };
        if sync {
            self.sync_data()?;
            self.ledger
                .sync()
                .map_err(|e| FileError::new(&self.ledger.path, e))?;
        }
        Ok(())
    }

    /// Sizes on disk, pending batches and counters since open.
    pub fn stats(&self) -> WalStats {
        WalStats {
            disk_bytes: self.total_bytes,
            segments: self.segments.len() as u64,
            acked_through: self.watermark,
            last_seq: self.next_seq - 1,
            ..self.stats
        }
    }

    fn active_ref(&self) -> &Segment {
        match self.segments.back() {
            Some(s) => s,
            None => unreachable!("the active segment is always listed"),
        }
    }

    fn active_mut(&mut self) -> &mut Segment {
        match self.segments.back_mut() {
            Some(s) => s,
            None => unreachable!("the active segment is always listed"),
        }
    }

    /// Segment and entry index of the first unacknowledged record with seq >= `from`.
    fn locate(&self, from: u64) -> Option<(usize, usize)> {
        let first = self
            .segments
            .partition_point(|s| s.entries.last().is_some_and(|e| e.seq < from));
        for (si, seg) in self.segments.iter().enumerate().skip(first) {
            let start = seg
                .entries
                .partition_point(|e| e.seq < from)
                .max(seg.first_unacked);
            if let Some(ei) = seg.entries[start..].iter().position(|e| !e.acked) {
                return Some((si, start + ei));
            }
        }
        None
    }

    /// Acknowledges entry `ei` of segment `si`, deleting the segment if that emptied it.
    fn mark_acked(&mut self, si: usize, ei: usize) {
        let last = self.segments.len() - 1;
        let seg = &mut self.segments[si];
        let entry = &mut seg.entries[ei];
        if entry.acked {
            return;
        }
        entry.acked = true;
        seg.unacked -= 1;
        self.stats.pending_batches -= 1;
        self.stats.pending_records -= u64::from(entry.records);
        if seg.unacked == 0 && si != last {
            self.delete_segment(si);
        }
        self.update_watermark();
    }

    /// Moves the watermark up to just below the first unacknowledged record.
    fn update_watermark(&mut self) {
        let mut first = None;
        for seg in self.segments.iter_mut() {
            if let Some(seq) = seg.first_unacked_seq() {
                first = Some(seq);
                break;
            }
        }
        let watermark = first.map_or(self.next_seq - 1, |seq| seq - 1);
        self.watermark = self.watermark.max(watermark);
        self.cursor = self.cursor.max(self.watermark + 1);
    }

    /// Removes segment `si` from the WAL and deletes its file.
    fn delete_segment(&mut self, si: usize) {
        let Some(seg) = self.segments.remove(si) else {
            return;
        };
        self.total_bytes -= seg.len;
        self.unsynced.retain(|(p, _)| p != &seg.path);
        self.dir_dirty = true;
        let path = seg.path.clone();
        tracing::debug!("wal: deleting segment {} ({} bytes)", seg.id, seg.len);
        drop(seg); // unmaps
        if !remove_segment_file(&path) {
            self.undeleted.push(path);
        }
    }

    /// Ensures `need` more bytes fit under `max_total_bytes`, per the full policy.
    /// `Ok(false)`: they do not, and the policy says not to make room.
    fn make_room(&mut self, need: u64) -> Result<bool, WalError> {
        while self.total_bytes + need > self.opts.max_total_bytes {
            let active = self.active_ref();
            if active.unacked == 0 && active.len > 0 {
                // Everything in the active segment is acknowledged: roll away from it, which
                // deletes it.
                match self.roll() {
                    Ok(()) => continue,
                    Err(WriteFail::NoSpace) => return Ok(false),
                    Err(WriteFail::Other(e)) => return Err(e),
                }
            }
            if self.opts.full != FullPolicy::DropOldest || !self.drop_oldest()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts a refused append per the policy.
    fn refuse(&mut self, records: u32) -> Result<Appended, WalError> {
        if self.opts.full == FullPolicy::DropNewest {
            self.stats.dropped_batches += 1;
            self.stats.dropped_records += u64::from(records);
            tracing::debug!("wal: full, dropped the newest batch");
            Ok(Appended::Dropped)
        } else {
            self.stats.full_rejections += 1;
            Err(WalError::Full)
        }
    }

    /// Deletes the oldest segment with its unacknowledged batches (counted and logged), rolling
    /// first when it is the one being appended to. `Ok(false)` when there is nothing to drop.
    fn drop_oldest(&mut self) -> Result<bool, WalError> {
        if self.segments.len() == 1 {
            if self.active_ref().len == 0 {
                return Ok(false);
            }
            let unacked = self.active_ref().unacked;
            match self.roll() {
                Ok(()) if unacked == 0 => return Ok(true), // the roll deleted it
                Ok(()) => {}
                Err(WriteFail::NoSpace) => return Ok(false),
                Err(WriteFail::Other(e)) => return Err(e),
            }
        }
        let Some(seg) = self.segments.front() else {
            return Ok(false);
        };
        let (batches, records) = seg
            .entries
            .iter()
            .filter(|e| !e.acked)
            .fold((0u64, 0u64), |(b, r), e| (b + 1, r + u64::from(e.records)));
        tracing::warn!(
            "wal {}: full, dropping segment {} with {batches} unacknowledged batch(es), \
             {records} record(s), seqs {}..={}",
            self.opts.dir.display(),
            seg.path.display(),
            seg.entries.first().map_or(0, |e| e.seq),
            seg.entries.last().map_or(0, |e| e.seq),
        );
        self.stats.dropped_batches += batches;
        self.stats.dropped_records += records;
        self.stats.pending_batches -= batches;
        self.stats.pending_records -= records;
        self.delete_segment(0);
        self.update_watermark();
        Ok(true)
    }

    /// Writes `self.frame` at the end of the active segment (rolling first when it would grow
    /// past `max_segment_bytes`); with `EveryAppend`, syncs it. Returns where it starts. On
    /// failure, what was written is cut off again.
    fn write_frame(&mut self) -> Result<u64, WriteFail> {
        let need = self.frame.len() as u64;
        let len = self.active_ref().len;
        if len > 0 && len + need > self.opts.max_segment_bytes {
            self.roll()?;
        }
        let offset = self.active_ref().len;
        let mut result = self.write_at(offset);
        if result.is_ok() && self.opts.fsync == FsyncPolicy::EveryAppend {
            result = self.sync_data_io();
        }
        if let Err(e) = result {
            let path = self.active_ref().path.clone();
            // Take back whatever part of the record made it. Should that fail too, the next
            // append overwrites it (writes go to the validated end), and recovery cuts any rest.
            if let Err(cut) = self.active.set_len(offset) {
                tracing::warn!(
                    "wal: {} at byte {offset}: could not cut a partly written record: {cut}",
                    path.display()
                );
            }
            return Err(if is_no_space(&e) {
                WriteFail::NoSpace
            } else {
                WriteFail::Other(FileError::at(&path, offset, e).into())
            });
        }
        let active = self.active_mut();
        active.len += need;
        self.total_bytes += need;
        // Only the interval policy syncs later; EveryAppend just did, Never never does.
        self.data_dirty = self.opts.fsync == FsyncPolicy::Interval;
        Ok(offset)
    }

    fn write_at(&mut self, offset: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            let half = &self.frame[..self.frame.len() / 2];
            self.active.write_all_at(half, offset)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.active.write_all_at(&self.frame, offset)
    }

    /// Starts a new segment named after the next seq; deletes the previous one if nothing in it
    /// is unacknowledged.
    fn roll(&mut self) -> Result<(), WriteFail> {
        let id = self.next_seq;
        let path = segment_path(&self.opts.dir, id);
        let file = create_segment(&path).map_err(|e| {
            if is_no_space(&e) {
                WriteFail::NoSpace
            } else {
                WriteFail::Other(FileError::new(&path, e).into())
            }
        })?;
        let old = std::mem::replace(&mut self.active, file);
        if self.data_dirty {
            self.unsynced.push((self.active_ref().path.clone(), old));
            self.data_dirty = false;
        }
        self.segments
            .push_back(Segment::new(id, path, 0, Vec::new()));
        self.dir_dirty = true;
        let prev = self.segments.len() - 2;
        if self.segments[prev].unacked == 0 {
            self.delete_segment(prev);
        } else {
            // Sealed: it is read from a mapping of exactly its length from now on.
            self.segments[prev].unmap();
        }
        tracing::debug!("wal: rolled to segment {id}");
        Ok(())
    }

    fn sync_data_io(&mut self) -> io::Result<()> {
        for (_, file) in self.unsynced.drain(..) {
            file.sync_data()?;
        }
        self.active.sync_data()?;
        self.data_dirty = false;
        if self.dir_dirty {
            segments::sync_dir(&self.opts.dir)?;
            self.dir_dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Fsyncs segments written since the last sync, and the directory if it changed.
    fn sync_data(&mut self) -> Result<(), WalError> {
        self.sync_data_io()
            .map_err(|e| FileError::new(&self.opts.dir, e).into())
    }
}

impl Drop for Wal {
    /// Best effort: records the watermark, and syncs unless the policy is `Never`.
    fn drop(&mut self) {
        let mut result = self.ledger.store(self.watermark, self.next_seq);
        if result.is_ok() && self.opts.fsync != FsyncPolicy::Never {
            result = self.sync_data_io().and_then(|()| self.ledger.sync());
        }
        if let Err(e) = result {
            tracing::warn!("wal {}: closing: {e}", self.opts.dir.display());
        }
    }
}

/// Maps the first `len` bytes of `file`; `None` for an empty file.
fn map_whole(file: &File, len: u64) -> io::Result<Option<Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large to map"))?;
    // SAFETY: read-only, `len` is the file's length and the directory lock keeps every other
    // writer out; the mapping is dropped before the file is shortened.
    unsafe { memmap2::MmapOptions::new().len(len).map(file) }.map(Some)
}

fn create_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
}

/// Deletes a segment file; false (logged) when that failed for another reason than it being gone.
fn remove_segment_file(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!("wal: could not delete {}: {e}", path.display());
            false
        }
    }
}
