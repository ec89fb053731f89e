//! Blocks: encoding, header validation, and reading blocks out of a segment file.
//!
//! The format itself is described in the module doc of `store`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use memchr::memmem;

use super::index::{
    BlockIndex, GranuleEntry, GranuleSummary, IndexBuilder, IndexCorruption, MAX_GRANULE_INDEX_LEN,
    MAX_GRANULES, MAX_INDEX_LEN, MIN_INDEX_LEN,
};
use super::{GRANULE_BYTES, MAX_BLOCK_BYTES, TARGET_BLOCK_BYTES};
use crate::encode::json::IndexedFields;

pub(crate) const MAGIC: [u8; 4] = [0xF7, b'L', b'T', b'B'];
/// Blocks as written before the block index: no index, `reserved` zero. Still read.
pub(crate) const VERSION_NO_INDEX: u8 = 1;
/// Blocks with an index after the payload, `index_len` bytes at header offset 20. Still read.
pub(crate) const VERSION_INDEXED: u8 = 2;
/// Blocks whose payload is granules compressed one by one, each with its token filter in the
/// index (index version 2).
pub(crate) const VERSION_GRANULES: u8 = 3;
pub(crate) const COMPRESSION_LZ4: u8 = 1;
pub(crate) const HEADER_LEN: usize = 48;
/// `len: u32` + `received_at_us: i64` in front of every value.
pub(crate) const RECORD_FRAME_LEN: usize = 12;
/// Bytes of header covered by `block_crc`.
const CRC_FIELDS_LEN: usize = 40;
/// How much a resynchronizing reader scans per read.
const SCAN_CHUNK: usize = 64 << 10;

/// Largest payload an lz4 block of `uncompressed` bytes may take.
pub(crate) fn max_compressed_len(uncompressed: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(uncompressed)
}

/// What is wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockCorruption {
    /// The block does not start with the magic bytes.
    #[error("bad block magic")]
    BadMagic,
    /// `header_crc` does not match the header.
    #[error("block header checksum mismatch")]
    HeaderChecksum,
    /// A format version this build does not know.
    #[error("unsupported block format version {0}")]
    Version(u8),
    /// A compression this build does not know.
    #[error("unsupported block compression {0}")]
    Compression(u8),
    /// A header field outside what the format allows (a lying length, for instance).
    #[error("block header field out of range: {0}")]
    HeaderField(&'static str),
    /// The block's length runs past the end of its segment.
    #[error("block of {len} bytes runs past the end of the file ({available} bytes left)")]
    Truncated {
        /// Length the header claims (header included).
        len: u64,
        /// Bytes left in the file from the block's start.
        available: u64,
    },
    /// `block_crc` does not match header and payload.
    #[error("block checksum mismatch")]
    BlockChecksum,
    /// The payload is not a valid lz4 block of the announced size.
    #[error("lz4 payload does not decompress to the announced size")]
    Decompress,
    /// The decompressed records do not add up.
    #[error("malformed records in block: {0}")]
    Records(&'static str),
    /// The block's index does not check out.
    #[error(transparent)]
    Index(#[from] IndexCorruption),
    /// A granule's bytes do not match the checksum its table entry gives.
    #[error("granule {0} checksum mismatch")]
    GranuleChecksum(usize),
    /// The granule table does not add up to the header, or says something the format forbids.
    #[error("granule table does not match the block: {0}")]
    Granules(&'static str),
}

/// Which block format a writer writes: the current one, or an older one (for tests that
/// stores written before still read and search right, and for benches comparing formats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockFormat {
    /// Version 1: no index (as written before the block index existed).
    Unindexed,
    /// Version 2: one lz4 payload and an index with one token filter for the block.
    BlockIndex,
    /// Version 3 (the default): the payload is granules of about [`GRANULE_BYTES`] of records,
    /// compressed one by one, and the index has a token filter per granule.
    #[default]
    Granules,
}

/// A parsed, self-consistent block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub version: u8,
    pub shard: u16,
    pub record_count: u32,
    pub uncompressed_len: u32,
    pub compressed_len: u32,
    /// Bytes of block index after the payload; 0 for a version-1 block.
    pub index_len: u32,
    pub min_received_at_us: i64,
    pub max_received_at_us: i64,
    pub block_crc: u32,
    /// CRC32C of header bytes `0..40`, the start of `block_crc`.
    fields_crc: u32,
}

fn u16_at(b: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8; HEADER_LEN], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(v)
}

impl BlockHeader {
    /// Length of the whole block, header included.
    pub fn block_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.compressed_len) + u64::from(self.index_len)
    }

    /// Where the index starts, from the block's start.
    pub fn index_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.compressed_len)
    }

    /// Parses and validates a header on its own (the payload is checked by [`decode_payload`]).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, BlockCorruption> {
        if b[0..4] != MAGIC {
            return Err(BlockCorruption::BadMagic);
        }
        if crc32c::crc32c(&b[..44]) != u32_at(b, 44) {
            return Err(BlockCorruption::HeaderChecksum);
        }
        let version = b[4];
        if !(VERSION_NO_INDEX..=VERSION_GRANULES).contains(&version) {
            return Err(BlockCorruption::Version(version));
        }
        if b[5] != COMPRESSION_LZ4 {
            return Err(BlockCorruption::Compression(b[5]));
        }
        let header = BlockHeader {
            version,
            shard: u16_at(b, 6),
            record_count: u32_at(b, 8),
            uncompressed_len: u32_at(b, 12),
            compressed_len: u32_at(b, 16),
            index_len: u32_at(b, 20),
            min_received_at_us: i64_at(b, 24),
            max_received_at_us: i64_at(b, 32),
            block_crc: u32_at(b, 40),
            fields_crc: crc32c::crc32c(&b[..CRC_FIELDS_LEN]),
        };
        let uncompressed = header.uncompressed_len as usize;
        if version == VERSION_NO_INDEX && header.index_len != 0 {
            return Err(BlockCorruption::HeaderField("reserved is not zero"));
        }
        let max_index_len = match version {
            VERSION_INDEXED => MAX_INDEX_LEN,
            VERSION_GRANULES => MAX_GRANULE_INDEX_LEN,
            _ => 0,
        };
        if version != VERSION_NO_INDEX
            && !(MIN_INDEX_LEN..=max_index_len).contains(&(header.index_len as usize))
        {
            return Err(BlockCorruption::HeaderField("index_len out of range"));
        }
        if header.record_count == 0 {
            return Err(BlockCorruption::HeaderField("record_count is zero"));
        }
        if uncompressed > MAX_BLOCK_BYTES {
            return Err(BlockCorruption::HeaderField(
                "uncompressed_len above the maximum",
            ));
        }
        if (header.record_count as usize).saturating_mul(RECORD_FRAME_LEN) > uncompressed {
            return Err(BlockCorruption::HeaderField(
                "record_count does not fit in uncompressed_len",
            ));
        }
        if header.compressed_len == 0
            || header.compressed_len as usize > max_compressed_len(uncompressed)
        {
            return Err(BlockCorruption::HeaderField(
                "compressed_len out of range for uncompressed_len",
            ));
        }
        if header.min_received_at_us > header.max_received_at_us {
            return Err(BlockCorruption::HeaderField(
                "min_received_at_us above max_received_at_us",
            ));
        }
        Ok(header)
    }
}

/// Builds blocks: records are framed into `raw`, then compressed behind a header in `frame`,
/// followed by their index. In format 3, `raw` holds one granule at a time, compressed into
/// `frame` when the next record would take it past the granule size. The buffers are kept and
/// reused from block to block.
#[derive(Debug)]
pub(crate) struct BlockEncoder {
    raw: Vec<u8>,
    frame: Vec<u8>,
    count: u32,
    /// Records in `raw`.
    raw_count: u32,
    /// Framed bytes of the granules of this block already compressed.
    ended_raw: usize,
    min_us: i64,
    max_us: i64,
    index: IndexBuilder,
    format: BlockFormat,
    granule_bytes: usize,
}

impl Default for BlockEncoder {
    fn default() -> Self {
        BlockEncoder {
            raw: Vec::new(),
            frame: Vec::new(),
            count: 0,
            raw_count: 0,
            ended_raw: 0,
            min_us: 0,
            max_us: 0,
            index: IndexBuilder::default(),
            format: BlockFormat::default(),
            granule_bytes: GRANULE_BYTES,
        }
    }
}

/// The smallest granule size a writer may be set to: with it, a block of
/// [`TARGET_BLOCK_BYTES`] has far fewer than [`MAX_GRANULES`] granules.
pub const MIN_GRANULE_BYTES: usize = 16 << 10;
const _: () = assert!(2 * TARGET_BLOCK_BYTES / MIN_GRANULE_BYTES + 1 < MAX_GRANULES);

impl BlockEncoder {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The format of the blocks finished from now on (the block being filled, if any, must be
    /// finished first).
    pub fn set_format(&mut self, format: BlockFormat) {
        debug_assert!(self.is_empty());
        self.format = format;
    }

    /// Framed bytes per granule (format 3) from the next block on, at least
    /// [`MIN_GRANULE_BYTES`].
    pub fn set_granule_bytes(&mut self, bytes: usize) {
        debug_assert!(self.is_empty());
        self.granule_bytes = bytes.max(MIN_GRANULE_BYTES);
    }

    /// True when a record with a value of `value_len` bytes should go to the next block.
    pub fn is_full_for(&self, value_len: usize) -> bool {
        !self.is_empty()
            && self.ended_raw + self.raw.len() + RECORD_FRAME_LEN + value_len > TARGET_BLOCK_BYTES
    }

    /// Adds a record, indexed from `fields` when its encoder said where they are. The caller
    /// keeps blocks under [`MAX_BLOCK_BYTES`] (see [`Self::is_full_for`] and the record size
    /// check of the writer).
    pub fn push(&mut self, received_at_us: i64, value: &[u8], fields: Option<&IndexedFields>) {
        if self.count == 0 {
            self.min_us = received_at_us;
            self.max_us = received_at_us;
            // Format 3 compresses granules into the frame as they fill.
            self.frame.clear();
            self.frame.resize(HEADER_LEN, 0);
        } else {
            self.min_us = self.min_us.min(received_at_us);
            self.max_us = self.max_us.max(received_at_us);
        }
        // A granule holds at least one record, and a record is never split: a record larger
        // than a granule makes a granule of its own. The count check keeps the table within the
        // format even for granule sizes the assertion above does not cover.
        if self.format == BlockFormat::Granules
            && self.raw_count > 0
            && self.raw.len() + RECORD_FRAME_LEN + value.len() > self.granule_bytes
            && self.index.granule_count() + 1 < MAX_GRANULES
        {
            self.end_granule();
        }
        // Values are at most MAX_BLOCK_BYTES, checked by the writer before the first push.
        self.raw
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.raw.extend_from_slice(&received_at_us.to_le_bytes());
        self.raw.extend_from_slice(value);
        self.count += 1;
        self.raw_count += 1;
        if self.format != BlockFormat::Unindexed {
            match fields {
                Some(fields) => self.index.add_indexed(value, fields),
                None => self.index.add(value),
            }
        }
    }

    /// Compresses `raw` onto the end of `frame`; returns the compressed length.
    fn compress_raw(&mut self) -> usize {
        let start = self.frame.len();
        self.frame
            .resize(start + max_compressed_len(self.raw.len()), 0);
        let compressed = match lz4_flex::block::compress_into(&self.raw, &mut self.frame[start..]) {
            Ok(n) => n,
            // The output buffer has the size lz4_flex itself guarantees to be enough.
            Err(e) => unreachable!("lz4 output buffer of the documented maximum size: {e}"),
        };
        self.frame.truncate(start + compressed);
        compressed
    }

    /// Compresses the granule in `raw` and hands its summary to the index.
    fn end_granule(&mut self) {
        let start = self.frame.len();
        let compressed = self.compress_raw();
        self.index.end_granule(GranuleSummary {
            compressed_len: compressed as u32,
            raw_len: self.raw.len() as u32,
            records: self.raw_count,
            crc: crc32c::crc32c(&self.frame[start..]),
        });
        self.ended_raw += self.raw.len();
        self.raw.clear();
        self.raw_count = 0;
    }

    /// Compresses the records pushed since the last call into a complete block, header included,
    /// available from [`Self::frame`]. Returns its record count and newest timestamp. The encoder
    /// holds no record afterwards.
    pub fn finish(&mut self, shard: u16) -> (u32, i64) {
        debug_assert!(!self.is_empty());
        let (version, uncompressed, compressed, index_len) = match self.format {
            BlockFormat::Granules => {
                if self.raw_count > 0 {
                    self.end_granule();
                }
                let compressed = self.frame.len() - HEADER_LEN;
                self.index.finish_granules_into(&mut self.frame);
                let index_len = self.frame.len() - HEADER_LEN - compressed;
                (VERSION_GRANULES, self.ended_raw, compressed, index_len)
            }
            BlockFormat::BlockIndex | BlockFormat::Unindexed => {
                self.frame.truncate(HEADER_LEN);
                let compressed = self.compress_raw();
                let index_len = if self.format == BlockFormat::BlockIndex {
                    self.index.finish_into(compressed, &mut self.frame);
                    self.frame.len() - HEADER_LEN - compressed
                } else {
                    0
                };
                let version = if index_len == 0 {
                    VERSION_NO_INDEX
                } else {
                    VERSION_INDEXED
                };
                (version, self.raw.len(), compressed, index_len)
            }
        };

        let h = &mut self.frame[..HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = version;
        h[5] = COMPRESSION_LZ4;
        h[6..8].copy_from_slice(&shard.to_le_bytes());
        h[8..12].copy_from_slice(&self.count.to_le_bytes());
        h[12..16].copy_from_slice(&(uncompressed as u32).to_le_bytes());
        h[16..20].copy_from_slice(&(compressed as u32).to_le_bytes());
        h[20..24].copy_from_slice(&(index_len as u32).to_le_bytes());
        h[24..32].copy_from_slice(&self.min_us.to_le_bytes());
        h[32..40].copy_from_slice(&self.max_us.to_le_bytes());
        let fields_crc = crc32c::crc32c(&h[..CRC_FIELDS_LEN]);
        let payload = &self.frame[HEADER_LEN..HEADER_LEN + compressed];
        let block_crc = crc32c::crc32c_append(fields_crc, payload);
        self.frame[40..44].copy_from_slice(&block_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&self.frame[..44]);
        self.frame[44..48].copy_from_slice(&header_crc.to_le_bytes());

        let (count, max_us) = (self.count, self.max_us);
        self.raw.clear();
        self.count = 0;
        self.raw_count = 0;
        self.ended_raw = 0;
        (count, max_us)
    }

    /// The block built by the last [`Self::finish`].
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Bytes of index in the block built by the last [`Self::finish`].
    pub fn index_len(&self) -> usize {
        self.frame
            .get(20..24)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// Checks `payload` against `header` and decompresses it into `raw` (resized to fit), then checks
/// that the records inside add up. On success, [`Records`] over `raw` yields every record.
/// `index` is the block's index, parsed: for format 3 it locates the granules.
pub(crate) fn decode_payload(
    header: &BlockHeader,
    payload: &[u8],
    index: Option<&BlockIndex<'_>>,
    raw: &mut Vec<u8>,
) -> Result<(), BlockCorruption> {
    if crc32c::crc32c_append(header.fields_crc, payload) != header.block_crc {
        return Err(BlockCorruption::BlockChecksum);
    }
    raw.clear();
    if let Some(index) = index {
        check_index(header, index)?;
    }
    if header.version == VERSION_GRANULES {
        let Some(index) = index else {
            return Err(BlockCorruption::Granules("no granule table"));
        };
        for (i, entry) in index.granule_entries().enumerate() {
            let at = entry.offset as usize;
            let Some(bytes) = payload.get(at..at + entry.summary.compressed_len as usize) else {
                return Err(BlockCorruption::Granules("a granule runs past the payload"));
            };
            decode_granule(header, i, &entry.summary, bytes, raw)?;
        }
        return Ok(());
    }
    let len = header.uncompressed_len as usize;
    raw.resize(len, 0);
    match lz4_flex::block::decompress_into(payload, raw) {
        Ok(n) if n == len => {}
        _ => return Err(BlockCorruption::Decompress),
    }
    check_records(header, raw, header.record_count)
}

/// Checks granule `i`'s compressed `bytes` against its table entry, and appends its records to
/// `raw`.
fn decode_granule(
    header: &BlockHeader,
    i: usize,
    granule: &GranuleSummary,
    bytes: &[u8],
    raw: &mut Vec<u8>,
) -> Result<(), BlockCorruption> {
    if crc32c::crc32c(bytes) != granule.crc {
        return Err(BlockCorruption::GranuleChecksum(i));
    }
    let start = raw.len();
    let len = granule.raw_len as usize;
    raw.resize(start + len, 0);
    match lz4_flex::block::decompress_into(bytes, &mut raw[start..]) {
        Ok(n) if n == len => {}
        _ => return Err(BlockCorruption::Decompress),
    }
    check_records(header, &raw[start..], granule.records)
}

/// Checks that `raw` is exactly `count` framed records with timestamps in the header's range.
fn check_records(header: &BlockHeader, raw: &[u8], count: u32) -> Result<(), BlockCorruption> {
    let mut seen = 0u32;
    let mut rest: &[u8] = raw;
    while !rest.is_empty() {
        let Some((ts, _value, tail)) = split_record(rest) else {
            return Err(BlockCorruption::Records(
                "a record runs past the end of the block",
            ));
        };
        if ts < header.min_received_at_us || ts > header.max_received_at_us {
            return Err(BlockCorruption::Records(
                "a timestamp is outside the block's range",
            ));
        }
        seen += 1;
        rest = tail;
    }
    if seen != count {
        return Err(BlockCorruption::Records(
            "record count differs from the header",
        ));
    }
    Ok(())
}

/// Checks that a block's parsed index is the kind its format version has, and that the granule
/// table of a format-3 block adds up to the header: granules that cover the payload exactly,
/// and hold all its bytes and records.
pub(crate) fn check_index(
    header: &BlockHeader,
    index: &BlockIndex<'_>,
) -> Result<(), BlockCorruption> {
    let granular = header.version == VERSION_GRANULES;
    if granular != (index.granule_count() > 0) {
        return Err(BlockCorruption::Granules(
            "index version does not match the block's",
        ));
    }
    let (mut compressed, mut raw, mut records) = (0u64, 0u64, 0u64);
    for entry in index.granule_entries() {
        let g = entry.summary;
        if g.compressed_len as usize > max_compressed_len(g.raw_len as usize) {
            return Err(BlockCorruption::Granules(
                "compressed length out of range for its size",
            ));
        }
        compressed += u64::from(g.compressed_len);
        raw += u64::from(g.raw_len);
        records += u64::from(g.records);
    }
    if granular
        && (compressed != u64::from(header.compressed_len)
            || raw != u64::from(header.uncompressed_len)
            || records != u64::from(header.record_count))
    {
        return Err(BlockCorruption::Granules(
            "granules do not add up to the header",
        ));
    }
    Ok(())
}

/// A set of granules of one block, by position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GranuleSet([u64; MAX_GRANULES / 64]);

impl GranuleSet {
    pub fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// One framed record off the front of `buf`: `(received_at_us, value, rest)`.
fn split_record(buf: &[u8]) -> Option<(i64, &[u8], &[u8])> {
    let frame = buf.get(..RECORD_FRAME_LEN)?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&frame[..4]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&frame[4..]);
    let len = u32::from_le_bytes(len) as usize;
    let rest = &buf[RECORD_FRAME_LEN..];
    if len > rest.len() {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((i64::from_le_bytes(ts), value, rest))
}

/// The records of a decoded payload (see [`decode_payload`]), in order.
pub(crate) struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Records { rest: raw }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (i64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // `decode_payload` validated the framing; should it not hold, stop instead of panicking.
        let (ts, value, rest) = split_record(self.rest)?;
        self.rest = rest;
        Some((ts, value))
    }
}

/// What [`Scanner::header_at`] found at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderAt {
    /// The position is the end of the file.
    End,
    /// A valid header whose whole block lies within the file.
    Block(BlockHeader),
    /// Fewer bytes than a header, or a valid header whose block runs past the end of the file:
    /// a block still being written (or torn, if nobody is writing).
    Incomplete(BlockCorruption),
    /// Not a valid header.
    Corrupt(BlockCorruption),
}

/// Reads blocks out of one segment with positioned reads, reusing its buffers.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    /// The compressed payload and the index after it.
    payload: Vec<u8>,
    raw: Vec<u8>,
    scan: Vec<u8>,
    /// The index alone, when a filter looks at it before the payload is read.
    index: Vec<u8>,
    /// The granule table of the block whose index [`Self::index_at`] read last (format 3).
    granules: Vec<GranuleEntry>,
    /// The header of the block after the one whose index [`Self::index_at`] read last, read
    /// with it (a block's index is followed by the next block's header): its position and
    /// bytes. A search that skips most blocks makes one `pread` per block instead of two.
    prefetched_header: Option<(u64, [u8; HEADER_LEN])>,
}

/// Positioned read of exactly `buf.len()` bytes; `Ok(false)` when the file ends first (it may have
/// been truncated since its length was taken).
fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, at) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

impl Scanner {
    /// Looks at the block starting at `pos` in `file`, whose length is taken to be `len`.
    pub fn header_at(&mut self, file: &File, pos: u64, len: u64) -> io::Result<HeaderAt> {
        if pos >= len {
            return Ok(HeaderAt::End);
        }
        let available = len - pos;
        let mut buf = [0u8; HEADER_LEN];
        let prefetched = match self.prefetched_header.take() {
            Some((at, bytes)) if at == pos && available >= HEADER_LEN as u64 => {
                buf = bytes;
                true
            }
            _ => false,
        };
        if !prefetched && (available < HEADER_LEN as u64 || !read_exact_at(file, &mut buf, pos)?) {
            return Ok(HeaderAt::Incomplete(BlockCorruption::Truncated {
                len: HEADER_LEN as u64,
                available,
            }));
        }
        let header = match BlockHeader::parse(&buf) {
            Ok(h) => h,
            Err(c) => return Ok(HeaderAt::Corrupt(c)),
        };
        if header.block_len() > available {
            return Ok(HeaderAt::Incomplete(BlockCorruption::Truncated {
                len: header.block_len(),
                available,
            }));
        }
        Ok(HeaderAt::Block(header))
    }

    /// Reads and decodes the payload of the block at `pos` whose header is `header`.
    /// `Ok(Ok(true))`: the records are in [`Self::records`]. `Ok(Ok(false))`: the file ended first.
    pub fn decode_at(
        &mut self,
        file: &File,
        pos: u64,
        header: &BlockHeader,
    ) -> io::Result<Result<bool, BlockCorruption>> {
        // The header was validated: compressed_len is below the lz4 bound of MAX_BLOCK_BYTES,
        // index_len below MAX_INDEX_LEN, and the block within the file: this allocation is bounded.
        // Payload and index are read together; the index is checked along with the payload, so a
        // block with a damaged index is corrupt like any other.
        let n = header.compressed_len as usize;
        self.payload.clear();
        self.payload.resize(n + header.index_len as usize, 0);
        if !read_exact_at(file, &mut self.payload, pos + HEADER_LEN as u64)? {
            return Ok(Ok(false));
        }
        let (payload, index) = self.payload.split_at(n);
        let index = if index.is_empty() {
            None
        } else {
            match BlockIndex::parse(index) {
                Ok(index) => Some(index),
                Err(e) => return Ok(Err(e.into())),
            }
        };
        Ok(decode_payload(header, payload, index.as_ref(), &mut self.raw).map(|()| true))
    }

    /// Reads and decodes the granules in `chosen` of the format-3 block at `pos`, whose index
    /// [`Self::index_at`] has just read: afterwards [`Self::records`] yields their records, in
    /// order. Consecutive granules are read with one `pread`. Granules not chosen are not read
    /// (nor checked). Same results as [`Self::decode_at`].
    pub fn decode_granules_at(
        &mut self,
        file: &File,
        pos: u64,
        header: &BlockHeader,
        chosen: &GranuleSet,
    ) -> io::Result<Result<bool, BlockCorruption>> {
        self.raw.clear();
        let payload_at = pos + HEADER_LEN as u64;
        let mut i = 0;
        while i < self.granules.len() {
            if !chosen.contains(i) {
                i += 1;
                continue;
            }
            let first = i;
            while i < self.granules.len() && chosen.contains(i) {
                i += 1;
            }
            let from = self.granules[first].offset as usize;
            let last = self.granules[i - 1];
            let to = last.offset as usize + last.summary.compressed_len as usize;
            // `check_index` (in `index_at`) made the granules tile the payload, whose length
            // the header bounds: this allocation is bounded.
            self.payload.clear();
            self.payload.resize(to - from, 0);
            if !read_exact_at(file, &mut self.payload, payload_at + from as u64)? {
                return Ok(Ok(false));
            }
            for (g, entry) in self.granules[first..i].iter().enumerate() {
                let at = entry.offset as usize - from;
                let bytes = &self.payload[at..at + entry.summary.compressed_len as usize];
                if let Err(e) =
                    decode_granule(header, first + g, &entry.summary, bytes, &mut self.raw)
                {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(true))
    }

    /// Reads and checks the index of the block at `pos` of `file`, whose length is taken to be
    /// `len`, and the header of the block after it when there is room for one (which the next
    /// [`Self::header_at`] of that position uses). `Ok(Ok(None))`: a version-1 block, without
    /// one, or the file ended first (the payload read that follows notices).
    ///
    /// Segments are only appended to, so bytes read ahead are the bytes a later read would
    /// get; a reader moving to another file calls [`Self::forget_prefetched`].
    pub fn index_at(
        &mut self,
        file: &File,
        pos: u64,
        header: &BlockHeader,
        len: u64,
    ) -> io::Result<Result<Option<BlockIndex<'_>>, BlockCorruption>> {
        if header.index_len == 0 {
            return Ok(Ok(None));
        }
        let index_len = header.index_len as usize;
        let next = pos + header.block_len();
        let with_next = next + HEADER_LEN as u64 <= len;
        self.index.clear();
        self.index
            .resize(index_len + if with_next { HEADER_LEN } else { 0 }, 0);
        if !read_exact_at(file, &mut self.index, pos + header.index_offset())? {
            return Ok(Ok(None));
        }
        if with_next {
            let mut bytes = [0u8; HEADER_LEN];
            bytes.copy_from_slice(&self.index[index_len..]);
            self.prefetched_header = Some((next, bytes));
            self.index.truncate(index_len);
        }
        let index = match BlockIndex::parse(&self.index) {
            Ok(index) => index,
            Err(e) => return Ok(Err(e.into())),
        };
        if let Err(e) = check_index(header, &index) {
            return Ok(Err(e));
        }
        self.granules.clear();
        self.granules.extend(index.granule_entries());
        Ok(Ok(Some(index)))
    }

    /// Drops a header read ahead by [`Self::index_at`] (before reading another file).
    pub fn forget_prefetched(&mut self) {
        self.prefetched_header = None;
    }

    /// Bytes the scanner's buffers hold on to.
    #[cfg(test)]
    pub fn buffer_capacity(&self) -> usize {
        self.payload.capacity()
            + self.raw.capacity()
            + self.scan.capacity()
            + self.index.capacity()
            + self.granules.capacity() * std::mem::size_of::<GranuleEntry>()
    }

    /// The records of the last block [`Self::decode_at`] decoded.
    pub fn records(&self) -> Records<'_> {
        Records::new(&self.raw)
    }

    /// The decompressed payload of the last block decoded (framing included).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Finds the next plausible block start at or after `from`: the first position holding the
    /// magic followed by a valid header whose block fits in the file. With `allow_incomplete`
    /// (the newest segment, which may be growing), also a magic too close to the end of the file
    /// to tell, or a valid header whose block runs past it. `None` when there is none before `len`.
    pub fn resync(
        &mut self,
        file: &File,
        from: u64,
        len: u64,
        allow_incomplete: bool,
    ) -> io::Result<Option<u64>> {
        let finder = memmem::Finder::new(&MAGIC);
        let mut start = from;
        while start < len {
            let want = ((len - start) as usize).min(SCAN_CHUNK);
            self.scan.clear();
            self.scan.resize(want, 0);
            if !read_exact_at(file, &mut self.scan, start)? {
                // Truncated under us: nothing more to find.
                return Ok(None);
            }
            let mut search_from = 0;
            while let Some(i) = finder.find(&self.scan[search_from..]) {
                let candidate = start + (search_from + i) as u64;
                match self.header_at(file, candidate, len)? {
                    HeaderAt::Block(_) => return Ok(Some(candidate)),
                    HeaderAt::Incomplete(_) if allow_incomplete => return Ok(Some(candidate)),
                    HeaderAt::End | HeaderAt::Corrupt(_) | HeaderAt::Incomplete(_) => {}
                }
                search_from += i + 1;
            }
            if start + want as u64 >= len {
                break;
            }
            // Overlap so that a magic straddling two chunks is still found.
            start += (want - (MAGIC.len() - 1)) as u64;
        }
        Ok(None)
    }
}
