//! Records (encoding, validation, scanning a segment's bytes) and the in-memory view of a segment.
//!
//! The format is described in the module doc of `wal`.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use memchr::memmem;
use memmap2::{Mmap, MmapOptions};

pub(crate) const MAGIC: [u8; 4] = [0xF7, b'L', b'T', b'W'];
pub(crate) const VERSION: u8 = 1;
/// The payload is stored as given.
pub(crate) const COMPRESSION_NONE: u8 = 0;
/// The payload is an lz4 block (`lz4_flex::block`, no size prefix).
pub(crate) const COMPRESSION_LZ4: u8 = 1;
pub(crate) const HEADER_LEN: usize = 40;
/// Header bytes covered by `crc` (together with the stored payload).
const CRC_FIELDS_LEN: usize = 32;
/// Header bytes covered by `header_crc`.
const HEADER_CRC_FIELDS_LEN: usize = 36;

/// Largest payload [`super::Wal::append`] accepts, and the largest `uncompressed_len` a reader
/// believes: a header cannot make a reader allocate more than this.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

/// What is wrong with the bytes where a record should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalCorruption {
    /// The record does not start with the magic bytes.
    #[error("bad record magic")]
    BadMagic,
    /// `header_crc` does not match the header.
    #[error("record header checksum mismatch")]
    HeaderChecksum,
    /// A format version this build does not know.
    #[error("unsupported record format version {0}")]
    Version(u8),
    /// A header field outside what the format allows.
    #[error("record header field out of range: {0}")]
    HeaderField(&'static str),
    /// The record runs past the end of the file.
    #[error("record of {len} bytes runs past the end of the file ({available} bytes left)")]
    Truncated {
        /// Length the header claims (header included), or the header length if it is cut.
        len: u64,
        /// Bytes left in the file from the record's start.
        available: u64,
    },
    /// `crc` does not match header and payload.
    #[error("record checksum mismatch")]
    Checksum,
    /// The payload is not a valid lz4 block of the announced size.
    #[error("lz4 payload does not decompress to the announced size")]
    Decompress,
    /// A valid record whose sequence number is not above the one before it (or is below the
    /// number in its segment's name): never written by this WAL in that place.
    #[error("sequence number {seq} out of order (expected above {after})")]
    SeqOrder {
        /// The record's sequence number.
        seq: u64,
        /// The number it should have been above.
        after: u64,
    },
}

/// A parsed, self-consistent record header (its `header_crc` checked out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub seq: u64,
    pub shard: u16,
    pub records: u32,
    pub compression: u8,
    pub uncompressed_len: u32,
    pub stored_len: u32,
    pub crc: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut v = [0u8; 2];
    v.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(v)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Largest payload an lz4 block of `uncompressed` bytes may take.
fn max_compressed_len(uncompressed: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(uncompressed)
}

impl RecordHeader {
    /// Length of the whole record, header included.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.stored_len)
    }

    /// Parses and validates a header on its own (the payload is checked by [`check_payload`]).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, WalCorruption> {
        if b[0..4] != MAGIC {
            return Err(WalCorruption::BadMagic);
        }
        if crc32c::crc32c(&b[..HEADER_CRC_FIELDS_LEN]) != u32_at(b, HEADER_CRC_FIELDS_LEN) {
            return Err(WalCorruption::HeaderChecksum);
        }
        if b[4] != VERSION {
            return Err(WalCorruption::Version(b[4]));
        }
        let h = RecordHeader {
            compression: b[5],
            shard: u16_at(b, 6),
            seq: u64_at(b, 8),
            records: u32_at(b, 16),
            uncompressed_len: u32_at(b, 20),
            stored_len: u32_at(b, 24),
            crc: u32_at(b, 32),
        };
        if u32_at(b, 28) != 0 {
            return Err(WalCorruption::HeaderField("reserved is not zero"));
        }
        if h.seq == 0 {
            return Err(WalCorruption::HeaderField("seq is zero"));
        }
        let uncompressed = h.uncompressed_len as usize;
        if uncompressed > MAX_PAYLOAD_BYTES {
            return Err(WalCorruption::HeaderField(
                "uncompressed_len above the maximum",
            ));
        }
        let stored = h.stored_len as usize;
        match h.compression {
            COMPRESSION_NONE if stored != uncompressed => Err(WalCorruption::HeaderField(
                "stored_len differs from uncompressed_len without compression",
            )),
            COMPRESSION_LZ4 if stored == 0 || stored > max_compressed_len(uncompressed) => Err(
                WalCorruption::HeaderField("stored_len out of range for uncompressed_len"),
            ),
            COMPRESSION_NONE | COMPRESSION_LZ4 => Ok(h),
            _ => Err(WalCorruption::HeaderField("unknown compression")),
        }
    }
}

/// Checks the record checksum over `header_bytes[..32] ++ stored`.
fn check_crc(header_bytes: &[u8], stored: &[u8], crc: u32) -> Result<(), WalCorruption> {
    let fields = crc32c::crc32c(&header_bytes[..CRC_FIELDS_LEN]);
    if crc32c::crc32c_append(fields, stored) == crc {
        Ok(())
    } else {
        Err(WalCorruption::Checksum)
    }
}

/// Encodes record `seq` into `frame` (cleared first): header, then the payload lz4-compressed,
/// or as given when compression does not make it smaller. `payload` is at most
/// [`MAX_PAYLOAD_BYTES`] (checked by the caller).
pub(crate) fn encode(frame: &mut Vec<u8>, seq: u64, shard: u16, records: u32, payload: &[u8]) {
    frame.clear();
    frame.resize(HEADER_LEN + max_compressed_len(payload.len()), 0);
    let compressed = match lz4_flex::block::compress_into(payload, &mut frame[HEADER_LEN..]) {
        Ok(n) => n,
        // The output buffer has the size lz4_flex itself guarantees to be enough.
        Err(e) => unreachable!("lz4 output buffer of the documented maximum size: {e}"),
    };
    let compression = if compressed < payload.len() {
        frame.truncate(HEADER_LEN + compressed);
        COMPRESSION_LZ4
    } else {
        frame.truncate(HEADER_LEN);
        frame.extend_from_slice(payload);
        COMPRESSION_NONE
    };
    let stored_len = (frame.len() - HEADER_LEN) as u32;
    let h = &mut frame[..HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = compression;
    h[6..8].copy_from_slice(&shard.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&records.to_le_bytes());
    h[20..24].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[24..28].copy_from_slice(&stored_len.to_le_bytes());
    h[28..32].copy_from_slice(&0u32.to_le_bytes());
    let fields = crc32c::crc32c(&frame[..CRC_FIELDS_LEN]);
    let crc = crc32c::crc32c_append(fields, &frame[HEADER_LEN..]);
    frame[32..36].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&frame[..HEADER_CRC_FIELDS_LEN]);
    frame[36..40].copy_from_slice(&header_crc.to_le_bytes());
}

/// Checks the record at `pos` of `bytes`: header, length within `bytes`, checksum.
/// On failure, also returns the header when it alone was sound (the payload is what is bad).
pub(crate) fn check_at(
    bytes: &[u8],
    pos: usize,
) -> Result<RecordHeader, (WalCorruption, Option<RecordHeader>)> {
    let available = bytes.len().saturating_sub(pos);
    let Some(head) = bytes.get(pos..pos + HEADER_LEN) else {
        return Err((
            WalCorruption::Truncated {
                len: HEADER_LEN as u64,
                available: available as u64,
            },
            None,
        ));
    };
    let mut hb = [0u8; HEADER_LEN];
    hb.copy_from_slice(head);
    let header = RecordHeader::parse(&hb).map_err(|c| (c, None))?;
    let end = pos + HEADER_LEN + header.stored_len as usize;
    let Some(stored) = bytes.get(pos + HEADER_LEN..end) else {
        return Err((
            WalCorruption::Truncated {
                len: header.record_len(),
                available: available as u64,
            },
            Some(header),
        ));
    };
    check_crc(&hb, stored, header.crc).map_err(|c| (c, Some(header)))?;
    Ok(header)
}

/// The payload of a record whose bytes (header included) are `record`, checksum verified and
/// decompressed into `out` (which is replaced).
pub(crate) fn decode(record: &[u8], out: &mut Vec<u8>) -> Result<RecordHeader, WalCorruption> {
    let header = check_at(record, 0).map_err(|(c, _)| c)?;
    let stored = &record[HEADER_LEN..HEADER_LEN + header.stored_len as usize];
    out.clear();
    match header.compression {
        COMPRESSION_LZ4 => {
            // Bounded by MAX_PAYLOAD_BYTES, checked when the header was parsed.
            out.resize(header.uncompressed_len as usize, 0);
            match lz4_flex::block::decompress_into(stored, out) {
                Ok(n) if n == out.len() => {}
                _ => return Err(WalCorruption::Decompress),
            }
        }
        _ => out.extend_from_slice(stored),
    }
    Ok(header)
}

/// A valid record found by [`scan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub offset: u64,
    pub header: RecordHeader,
}

/// A stretch of bytes that holds no valid record.
#[derive(Debug, Clone)]
pub(crate) struct Bad {
    pub offset: u64,
    pub len: u64,
    pub reason: WalCorruption,
    /// The header at `offset` when it alone was sound (so its seq and record count are known).
    pub header: Option<RecordHeader>,
}

/// Everything [`scan`] found in a segment's bytes.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Valid records, in file order.
    pub records: Vec<Found>,
    /// Bad stretches followed by a valid record.
    pub bad: Vec<Bad>,
    /// Bytes after the last valid record that hold none (a torn tail, or garbage).
    pub tail: Option<Bad>,
}

/// Walks the records of a segment, resynchronizing after bad bytes: from a bad position, the
/// next record start is the first later occurrence of the magic where [`check_at`] succeeds.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let finder = memmem::Finder::new(&MAGIC);
    let mut out = Scan::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        match check_at(bytes, pos) {
            Ok(header) => {
                out.records.push(Found {
                    offset: pos as u64,
                    header,
                });
                pos += header.record_len() as usize;
            }
            Err((reason, header)) => {
                let mut next = None;
                let mut from = pos + 1;
                while let Some(i) = bytes.get(from..).and_then(|rest| finder.find(rest)) {
                    if check_at(bytes, from + i).is_ok() {
                        next = Some(from + i);
                        break;
                    }
                    from += i + 1;
                }
                let end = next.unwrap_or(bytes.len());
                let bad = Bad {
                    offset: pos as u64,
                    len: (end - pos) as u64,
                    reason,
                    header,
                };
                match next {
                    Some(n) => {
                        out.bad.push(bad);
                        pos = n;
                    }
                    None => {
                        out.tail = Some(bad);
                        break;
                    }
                }
            }
        }
    }
    out
}

/// One record of a segment above the acknowledgement watermark, as the WAL indexes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexedRecord {
    pub seq: u64,
    pub offset: u64,
    /// Whole record length, header included.
    pub len: u32,
    pub shard: u16,
    pub records: u32,
    pub acked: bool,
}

/// A segment file as the WAL sees it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The number in the file name: the WAL's next sequence number when it was created, so a lower
    /// bound for the sequence numbers inside and above those of every older segment.
    pub id: u64,
    pub path: PathBuf,
    /// Validated length: the end of the last complete record (bad stretches in the middle
    /// included). Nothing is ever read at or beyond it.
    pub len: u64,
    /// Records not acknowledged when the segment was indexed (at open or append), seq order.
    pub entries: Vec<IndexedRecord>,
    /// Entries not acknowledged yet.
    pub unacked: usize,
    /// Entries before this index are all acknowledged.
    pub first_unacked: usize,
    /// Read-only mapping, made on first read; covers at least `len` bytes.
    map: Option<Mmap>,
}

impl Segment {
    pub fn new(id: u64, path: PathBuf, len: u64, entries: Vec<IndexedRecord>) -> Self {
        let unacked = entries.iter().filter(|e| !e.acked).count();
        Segment {
            id,
            path,
            len,
            entries,
            unacked,
            first_unacked: 0,
            map: None,
        }
    }

    /// Index of the entry for `seq`, if any.
    pub fn find(&self, seq: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// Sequence number of the first entry not acknowledged, advancing the internal cursor.
    pub fn first_unacked_seq(&mut self) -> Option<u64> {
        while let Some(e) = self.entries.get(self.first_unacked) {
            if !e.acked {
                return Some(e.seq);
            }
            self.first_unacked += 1;
        }
        None
    }

    /// Drops the mapping (it is made again on the next read).
    pub fn unmap(&mut self) {
        self.map = None;
    }

    /// The bytes of record `entry`, mapping the segment first if needed. `open` gives the segment
    /// opened for reading and how much to map: at least `len` is mapped, more for the segment
    /// being appended to, so that appends do not force a new mapping (see the module doc on
    /// SIGBUS).
    pub fn record_bytes(
        &mut self,
        entry: &IndexedRecord,
        open: impl FnOnce() -> io::Result<(File, u64)>,
    ) -> io::Result<&[u8]> {
        let end = entry.offset + u64::from(entry.len);
        if self.map.as_ref().is_none_or(|m| (m.len() as u64) < end) {
            self.map = None;
            let (file, capacity) = open()?;
            let len = usize::try_from(capacity.max(self.len))
                .map_err(|_| io::Error::other("segment larger than the address space"))?;
            // SAFETY: the mapping is read-only and only ever read below `self.len`, the end of
            // records this process validated or wrote; the file is never shortened below that
            // while the WAL holds it (the directory lock keeps other writers out). Pages past the
            // end of the file are mapped but never touched.
            self.map = Some(unsafe { MmapOptions::new().len(len).map(&file)? });
        }
        let map = self
            .map
            .as_ref()
            .ok_or_else(|| io::Error::other("segment not mapped"))?;
        map.get(entry.offset as usize..end as usize)
            .ok_or_else(|| io::Error::other("record outside the mapping"))
    }
}
