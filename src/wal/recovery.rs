//! Making sense of the segments on disk: which records are valid and in order, which bytes are
//! corrupt and how many batches that cost. Used by [`super::Wal::open`] (on mapped segments, then
//! cutting a torn tail) and by the read-only [`super::dump`] and [`super::stats_of`] (on copies).

use std::path::{Path, PathBuf};

use super::segment::{Bad, Found, IndexedRecord, WalCorruption, scan};
use super::{CorruptRange, WalError, ledger};
use crate::segments::{FileError, list_segments, segment_path};

/// One segment, analyzed.
#[derive(Debug)]
pub(crate) struct SegmentView {
    pub id: u64,
    pub path: PathBuf,
    /// Length of the file when it was read.
    pub file_len: u64,
    /// End of the last valid record (0 when there is none).
    pub valid_end: u64,
    /// Every valid, in-order record; `acked` when at or below the watermark.
    pub entries: Vec<IndexedRecord>,
    /// Bytes after `valid_end` holding no valid record (a torn tail in the newest segment).
    pub tail: u64,
}

/// Totals over the segments analyzed so far.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    /// Corrupt stretches that may have held unacknowledged batches, in file order.
    pub corrupt: Vec<CorruptRange>,
    /// Batches above the watermark lost to corruption (from sequence gaps; at least one per
    /// stretch whose extent is unknown).
    pub corrupt_batches: u64,
    /// Records of those batches, where a sound header told (a lower bound).
    pub corrupt_records: u64,
    /// Corrupt stretches among acknowledged records only (harmless, not reported).
    pub ignored_corrupt: u64,
    /// Highest sequence number of a valid record seen.
    pub max_seq: u64,
}

impl Analysis {
    /// Analyzes the bytes of segment `id` (segments must come oldest first). In the newest
    /// segment (`newest`), bad bytes after the last valid record are a torn tail, not corruption.
    pub fn segment(
        &mut self,
        id: u64,
        path: &Path,
        bytes: &[u8],
        watermark: u64,
        newest: bool,
    ) -> SegmentView {
        let found = scan(bytes);
        let mut bad: Vec<Bad> = found.bad;
        let mut entries = Vec::with_capacity(found.records.len());
        // Seqs only grow, and every seq in a segment is at least its id.
        let mut floor = self.max_seq.max(id.saturating_sub(1));
        for Found { offset, header } in found.records {
            if header.seq <= floor {
                bad.push(Bad {
                    offset,
                    len: header.record_len(),
                    reason: WalCorruption::SeqOrder {
                        seq: header.seq,
                        after: floor,
                    },
                    header: Some(header),
                });
                continue;
            }
            floor = header.seq;
            entries.push(IndexedRecord {
                seq: header.seq,
                offset,
                len: header.record_len() as u32,
                shard: header.shard,
                records: header.records,
                acked: header.seq <= watermark,
            });
        }
        self.max_seq = floor;
        bad.sort_by_key(|b| b.offset);

        let valid_end = entries
            .last()
            .map_or(0, |e| e.offset + u64::from(e.len))
            .max(bad.iter().map(|b| b.offset + b.len).max().unwrap_or(0));
        let mut tail = 0;
        match found.tail {
            Some(t) if newest => tail = t.len,
            Some(t) => bad.push(t),
            None => {}
        }

        for b in bad {
            // The valid records around the stretch bound the sequence numbers it held.
            let before = entries
                .iter()
                .rev()
                .find(|e| e.offset < b.offset)
                .map_or(id.saturating_sub(1), |e| e.seq);
            let after = entries.iter().find(|e| e.offset > b.offset).map(|e| e.seq);
            let acked_before = match after {
                Some(n) => n <= watermark + 1,
                // Nothing valid follows: only a sound header can tell it was acknowledged.
                None => b.header.is_some_and(|h| h.seq <= watermark),
            };
            if acked_before {
                self.ignored_corrupt += 1;
                tracing::debug!(
                    "wal: {} at byte {}: {} bytes corrupt among acknowledged records ({})",
                    path.display(),
                    b.offset,
                    b.len,
                    b.reason
                );
                continue;
            }
            let known = b.header.filter(|h| h.seq > watermark);
            let gap = after.map_or(0, |n| n - 1 - before.max(watermark).min(n - 1));
            let lost = gap.max(u64::from(known.is_some() || after.is_none()));
            self.corrupt_batches += lost;
            self.corrupt_records += known.map_or(0, |h| u64::from(h.records));
            self.corrupt.push(CorruptRange {
                segment: path.to_path_buf(),
                offset: b.offset,
                len: b.len,
                reason: b.reason.to_string(),
                seq: b.header.map(|h| h.seq),
            });
        }
        SegmentView {
            id,
            path: path.to_path_buf(),
            file_len: bytes.len() as u64,
            valid_end,
            entries,
            tail,
        }
    }

    /// Logs the corruption found, once, with a count and the byte ranges (the first few).
    pub fn log(&self, dir: &Path) {
        if self.corrupt.is_empty() {
            return;
        }
        const SHOWN: usize = 8;
        let ranges: Vec<String> = self
            .corrupt
            .iter()
            .take(SHOWN)
            .map(|c| {
                format!(
                    "{} bytes {}..{} ({})",
                    c.segment.file_name().map_or_else(
                        || c.segment.display().to_string(),
                        |n| n.to_string_lossy().into_owned()
                    ),
                    c.offset,
                    c.offset + c.len,
                    c.reason
                )
            })
            .collect();
        let more = self.corrupt.len().saturating_sub(SHOWN);
        tracing::warn!(
            "wal {}: {} corrupt stretch(es) skipped, {} batch(es) ({}+ records) lost and treated \
             as acknowledged: {}{}",
            dir.display(),
            self.corrupt.len(),
            self.corrupt_batches,
            self.corrupt_records,
            ranges.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        );
    }
}

/// The ledger of `dir`, read-only; an unreadable one counts as empty (and is logged).
pub(crate) fn read_ledger(dir: &Path) -> Result<ledger::Loaded, WalError> {
    let path = dir.join(super::LEDGER_FILE);
    let loaded = ledger::read(&path).map_err(|e| FileError::new(&path, e))?;
    if loaded == ledger::Loaded::Unreadable {
        tracing::warn!(
            "wal: ledger {} has no valid slot; every batch on disk counts as unacknowledged",
            path.display()
        );
    }
    Ok(loaded)
}

/// Reads and analyzes every segment of `dir`, oldest first, without changing anything (for
/// `dump`/`stats_of`), handing each with its bytes to `each`. Segments are read into memory one
/// at a time, not mapped: a live WAL may cut the newest one under us, and a mapped page past the
/// new end of the file would raise SIGBUS.
pub(crate) fn read_only(
    dir: &Path,
    watermark: u64,
    mut each: impl FnMut(&SegmentView, &[u8]) -> Result<(), WalError>,
) -> Result<Analysis, WalError> {
    let ids = list_segments(dir)?;
    let mut analysis = Analysis::default();
    for (i, &id) in ids.iter().enumerate() {
        let path = segment_path(dir, id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            // Deleted by a live WAL since the listing: it was fully acknowledged (or dropped).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FileError::new(&path, e).into()),
        };
        let view = analysis.segment(id, &path, &bytes, watermark, i + 1 == ids.len());
        each(&view, &bytes)?;
    }
    Ok(analysis)
}
