//! The local store: the embedded default sink.
//!
//! Batches are appended to a directory of segment files. Each batch becomes one (or, when it is
//! larger than [`TARGET_BLOCK_BYTES`] of framed records, several) self-describing block: a fixed
//! header followed by an lz4-compressed payload. [`StoreWriter`] owns the directory (one writer per
//! directory, enforced with a lock file); [`read`] can run at the same time, from any number of
//! processes, and never writes anything.
//!
//! # On-disk format
//!
//! The directory is a [`crate::segments`] directory (lock file, segment names), shared in form
//! with the WAL:
//!
//! ```text
//! <dir>/LOCK                          flock(LOCK_EX) held by the writer; holds its pid, as text
//! <dir>/00000000000000000001.seg      segments: 20-digit zero-padded sequence number, so the
//! <dir>/00000000000000000002.seg      lexical order of names is the write order
//! ...
//!
//! segment := block*                   no file header: a segment is just blocks back to back
//!
//! struct BlockHeader {                // 48 bytes, every integer little-endian
//!     magic:              [u8; 4],    //  0  F7 'L' 'T' 'B' (0xF7 never occurs in UTF-8 text)
//!     version:            u8,         //  4  3 (granules, written now); 2 (one lz4 payload
//!                                     //     and an index, still read); 1 (written before the
//!                                     //     index, still read: no index, index_len 0)
//!     compression:        u8,         //  5  1 = lz4 block format (lz4_flex::block), no size prefix
//!     shard:              u16,        //  6  shard that cut the batch
//!     record_count:       u32,        //  8  >= 1
//!     uncompressed_len:   u32,        // 12  length of the decompressed payload, <= MAX_BLOCK_BYTES
//!                                     //     (version 3: of all granules together)
//!     compressed_len:     u32,        // 16  bytes of payload that follow the header,
//!                                     //     1 ..= lz4_flex::block::get_maximum_output_size(uncompressed_len)
//!     index_len:          u32,        // 20  versions 2 and 3: bytes of BlockIndex after the
//!                                     //     payload, 36 ..= index::MAX_INDEX_LEN (version 2) or
//!                                     //     index::MAX_GRANULE_INDEX_LEN (3); version 1: 0
//!     min_received_at_us: i64,        // 24  smallest received_at_us of the records
//!     max_received_at_us: i64,        // 32  largest received_at_us of the records
//!     block_crc:          u32,        // 40  CRC32C(header bytes 0..40 ++ compressed payload)
//!     header_crc:         u32,        // 44  CRC32C(header bytes 0..44)
//! }
//! payload: [u8; compressed_len]       // versions 1, 2: one lz4 block of the records below;
//!                                     // version 3: granules back to back, each an lz4 block
//!                                     // of whole records (see the granule table)
//! index:   [u8; index_len]            // BlockIndex, versions 2 and 3
//!
//! struct Record {                     // inside the decompressed payload, back to back
//!     len:            u32,            // length of value
//!     received_at_us: i64,
//!     value:          [u8; len],      // any bytes, '\n' included; may be empty
//! }
//!
//! struct BlockIndex {                 // index::INDEX_VERSION 1 (in version-2 blocks);
//!                                     // what it holds: see `index`
//!     version:        u8,             //  0  1
//!     flags:          u8,             //  1  1 HAS_TIME, 2 SEVERITY_OTHER, 4 FACILITY_OTHER,
//!                                     //     8 HOSTS_MANY, 16 APPS_MANY; other bits 0
//!     severities:     u8,             //  2  bit c: some record has severity c
//!     bloom_log2:     u8,             //  3  the bloom filter has 2^bloom_log2 bits, 6..=18
//!     facilities:     u32,            //  4  bit c: some record has facility c (bits 24.. zero)
//!     min_time_us:    i64,            //  8  smallest record time (timestamp, else received_at)
//!     max_time_us:    i64,            // 16  largest; both meaningless without HAS_TIME
//!     host_count:     u16,            // 24  <= 64 (0 with HOSTS_MANY)
//!     app_count:      u16,            // 26  <= 64 (0 with APPS_MANY)
//!     bloom_hashes:   u8,             // 28  bit positions per token, 1..=16 (4 written)
//!     reserved:       [u8; 3],        // 29  0
//!     hosts:          [u32; host_count], // low 32 bits of index::token_hash(value) of each host
//!     apps:           [u32; app_count],
//!     bloom:          [u8; 2^bloom_log2 / 8], // bit p is bit p % 8 of byte p / 8; a token sets
//!                                     //     bits (h1 + i·h2) mod 2^bloom_log2 for i < bloom_hashes,
//!                                     //     h = index::token_hash(token), h1 = low 32 bits,
//!                                     //     h2 = high 32 bits | 1
//!     crc:            u32,            //     CRC32C of everything above
//! }
//!
//! struct GranuleBlockIndex {          // index::GRANULE_INDEX_VERSION 2 (in version-3 blocks)
//!     version:        u8,             //  0  2
//!     flags, severities:              //  1  as in version 1
//!     reserved:       u8,             //  3  0
//!     facilities, min_time_us, max_time_us, host_count, app_count:
//!                                     //  4  as in version 1
//!     granule_count:  u16,            // 28  1 ..= index::MAX_GRANULES
//!     seed:           u16,            // 30  salt of the granule filters (any value)
//!     hosts, apps:                    //     as in version 1
//!     granules: [Granule; granule_count],
//!     filters:        [u8; ...],      //     granule i's filter, 8·filter_words bytes each, in
//!                                     //     order; bit p is bit p % 8 of byte p / 8; a token
//!                                     //     sets bits ((h1 + i·h2) mod 2^32)·m >> 32 for
//!                                     //     i < filter_hashes, m = 64·filter_words,
//!                                     //     h = splitmix64_finalizer(token_hash(token) ^
//!                                     //     (seed·2^16 + granule + 1)·0x9E3779B97F4A7C15),
//!                                     //     h1 = low 32 bits, h2 = high 32 bits | 1
//!     crc:            u32,            //     CRC32C of everything above
//! }
//!
//! struct Granule {                    // 20 bytes
//!     compressed_len: u32,            //  0  >= 1; the granules tile the payload, in order
//!     uncompressed_len: u32,          //  4  their sum is the header's uncompressed_len
//!     record_count:   u32,            //  8  >= 1; their sum is the header's record_count
//!     crc:            u32,            // 12  CRC32C of the compressed granule
//!     filter_words:   u16,            // 16  1 ..= index::MAX_GRANULE_WORDS
//!     filter_hashes:  u8,             // 18  1 ..= 16
//!     reserved:       u8,             // 19  0
//! }
//! ```
//!
//! A writer cuts a block's records into granules of at most [`GRANULE_BYTES`] framed bytes (a
//! record is never split: a bigger one is a granule of its own), so that a search decompresses
//! only the granules whose filter may hold its words. `block_crc` covers the whole payload in
//! every version; a granule's own `crc` lets a reader check the granules it reads without
//! reading the others.
//!
//! # Invariants
//!
//! - Blocks are only ever appended, each with a single `write(2)` of the whole block. A segment
//!   is only ever shortened by writer recovery, which cuts bytes after the last valid block.
//! - A block is valid when its magic, both checksums and every length check out, its payload
//!   decompresses to exactly `uncompressed_len` bytes, and the records inside use exactly those
//!   bytes, number `record_count` and have timestamps within `[min, max]`; and, in versions 2
//!   and 3, its index checks out (checksum, lengths, and in version 3 a granule table that adds
//!   up to the header, with each granule's checksum and records). The index has its own
//!   checksum so that a reader can trust it, and skip the block (or granules), without reading
//!   the payload.
//! - The index never rules out a record it holds: it is built by reading each record with the
//!   query's own JSON reader ([`json_scan`]), and errs towards "may match" (see [`index`]).
//! - `header_crc` makes the header trustworthy on its own: readers validate it (and check the
//!   lengths against the file size and [`MAX_BLOCK_BYTES`]) before allocating or reading the
//!   payload, so a lying length never turns into a huge allocation, and `--since` can skip a block
//!   by its `max_received_at_us` without reading its payload.
//! - Segment sequence numbers only grow; only the newest segment is ever appended to. Retention
//!   deletes whole segments, oldest first, and never the one being written.
//!
//! # Writing, recovery and retention
//!
//! The store sits below the pipeline: [`StoreWriter::append`] takes any [`StoreBatch`], the
//! records of one batch lent as `(received_at_us, value)` (the pipeline's batch implements it in
//! `sink::store`, without copying a record).
//!
//! [`StoreWriter::open`] creates the directory, takes the lock (a second writer gets
//! [`StoreError::Locked`]), then scans the newest segment block by block with full validation.
//! Everything after the last valid block (a torn write, a half-written block, garbage) is cut with
//! `ftruncate`, logged with `tracing::warn!`, and the writer keeps appending to that segment.
//! Corrupt blocks *followed by valid ones* are not a torn tail: they are left in place (and
//! logged); readers skip them. Older segments are not scanned beyond their headers (only to learn
//! their newest timestamp, and only when `max_age` is set).
//!
//! A new segment is started when the next block would push the current one past
//! `max_segment_bytes` (a block bigger than that gets a segment of its own). After every roll (and
//! once at open) retention deletes segments oldest first while the total size exceeds
//! `max_total_bytes` or the oldest one's newest record is older than `max_age`, stopping at the
//! first segment it keeps. The segment being written is never deleted, so a quiet store keeps its
//! last segment however old it is; an empty rolled-away segment counts as too old. Should a write fail
//! halfway, the writer cuts the segment back to its last complete block; if even that fails, it
//! moves on to a fresh segment so that no block is ever written after a torn one.
//!
//! [`StoreWriter::sync`] fsyncs the current segment, segments rolled since the last sync, and the
//! directory when segments were created or deleted.
//!
//! # Reading
//!
//! [`read`] walks segments in sequence order with positioned reads (`pread`) into reused buffers.
//! It does not mmap: the writer may truncate the newest segment on recovery while a follower is
//! reading it, and touching a mapped page past the new end of file raises `SIGBUS`, which would
//! kill the process instead of being an error. `pread` returns a short read instead, and blocks
//! are large (up to ~1 MiB of records). A search that skips blocks by their index makes one
//! `pread` per skipped block: the index is read with the next block's header, which follows it.
//!
//! - A block that fails validation is counted in [`ReadStats`], logged once with file and offset,
//!   and skipped: the reader scans forward for the magic and resumes at the first header whose
//!   `header_crc` checks out.
//! - An incomplete block at the end of the *newest* segment (header or payload not all there, and
//!   no valid block after it) is a block being written, not corruption: a plain read stops there,
//!   a follower waits for it. In an older segment the same bytes are corruption, and so is a
//!   header whose length runs past the end of the file when a valid block follows it.
//! - `--since` skips a block by its header's `max_received_at_us` without reading its payload
//!   (so a corrupt payload in a skipped block goes unnoticed), then filters record by record.
//!   Likewise [`read_filtered`] (what search uses) reads a block's index first and skips the
//!   block when its filter says no record can match; in a version-3 block it then asks about
//!   each granule, and reads and decompresses only the granules accepted (consecutive ones with
//!   one `pread`), checking each against its own checksum and record count (a damaged granule
//!   makes the block corrupt; granules not read go unchecked, as skipped blocks do). A block
//!   whose index is damaged is corrupt, and a version-1 block is always read. A search sees
//!   whole blocks only, as before: the index is written with its block in the same `write(2)`.
//!   `--grep` first searches the whole decompressed block and only looks at records when it hits.
//! - A follower lists the directory before looking at the size of its segment: once a newer
//!   segment exists, the writer has finished the current one, so the size seen afterwards is final
//!   and the reader can move on after reading up to it. An open file stays readable after
//!   retention unlinks it; a segment deleted before the reader opened it is skipped.
//! - [`read_filtered_parallel`] reads the segments listed when it starts in several threads, a
//!   segment per thread at a time, each exactly as above, and hands their output over in the
//!   store's order, newest segment first, or as it comes (see its module for the bounds).

mod block;
pub mod index;
pub(crate) mod json_scan;
mod parallel;
mod reader;
mod writer;

#[cfg(test)]
mod indexed_fields_tests;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::segments::{DirLocked, FileError};

pub use block::{BlockCorruption, BlockFormat, MIN_GRANULE_BYTES};
pub use index::BlockIndex;
pub use parallel::{OutputOrder, RecordStage, SharedBlockFilter, read_filtered_parallel};
pub use reader::{BlockFilter, ReadOptions, ReadStats, read, read_filtered};
pub use writer::{StoreBatch, StoreStats, StoreWriter};

/// A batch is split into blocks of at most this many bytes of framed records (unless a single
/// record is bigger), so that a reader never holds more than about this much decompressed data.
pub const TARGET_BLOCK_BYTES: usize = 1 << 20;

/// In format 3, a block's records are cut into granules of at most this many framed bytes
/// (unless a single record is bigger), each compressed on its own with its own token filter:
/// a search decompresses only the granules whose filter may hold its words. See
/// `loadtest/RESULTS.md` ("per-granule filters") for the measurements behind the size.
pub const GRANULE_BYTES: usize = 32 << 10;

/// Hard limit on the decompressed size of a block, checked by readers before they allocate.
/// A single record whose value is larger than this (minus its 12-byte frame) is refused.
pub const MAX_BLOCK_BYTES: usize = 16 << 20;

/// How often a follower looks for new blocks.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where and how much to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Directory holding the segments and the lock file; created when missing.
    pub dir: PathBuf,
    /// Roll to a new segment when the next block would grow the current one past this.
    pub max_segment_bytes: u64,
    /// Retention: delete the oldest whole segments while all of them take more than this.
    pub max_total_bytes: u64,
    /// Retention: delete segments whose newest record is older than this.
    pub max_age: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            dir: PathBuf::from("data/store"),
            max_segment_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
            max_age: None,
        }
    }
}

/// Errors of the store. Messages name the file, and the byte offset where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a file or directory of the store, naming it (and the byte offset in a
    /// segment, where there is one).
    #[error(transparent)]
    Io(#[from] FileError),
    /// Another process (or another writer in this one) holds the directory's lock.
    #[error(transparent)]
    Locked(#[from] DirLocked),
    /// A block that does not check out.
    #[error("{} at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the block starts.
        offset: u64,
        /// What is wrong with it.
        reason: BlockCorruption,
    },
    /// A record too large to fit in a block; nothing of its batch was written.
    #[error(
        "record of {len} bytes does not fit in a block (at most {max} bytes); batch not written"
    )]
    RecordTooLarge {
        /// Length of the value.
        len: usize,
        /// Largest value that fits.
        max: usize,
    },
    /// Writing to the reader's output failed (for example a closed pipe).
    #[error("writing output: {0}")]
    Output(#[source] io::Error),
}
