//! Looking at a WAL from outside, for `logtail wal stats` and `logtail wal dump`: read-only, with
//! no lock, so that it works on the directory of a running gateway and never changes it.
//!
//! Segments are read into memory with `read(2)` instead of being mapped (see "Reading and
//! SIGBUS" in the module doc of `wal`): a live WAL may cut a torn record off its newest segment
//! while we look, and a mapped page past the new end of the file would raise SIGBUS. What is
//! "acknowledged" here is what the ledger says; acknowledgements above its watermark live only
//! in the running WAL's memory.

use std::io::{self, Write};
use std::path::Path;

use super::ledger::Loaded;
use super::{WalError, WalStats, recovery, segment};

/// How [`dump`] prints a payload (the WAL does not know what its payloads are): it writes
/// after the record's header fields, on the same line or on lines of its own.
pub type PayloadPrinter<'a> = dyn FnMut(&[u8], &mut dyn Write) -> io::Result<()> + 'a;

/// Prints a payload as escaped text: `payload="..."`.
pub fn print_payload_escaped(payload: &[u8], out: &mut dyn Write) -> io::Result<()> {
    write!(out, "payload=\"{}\"", payload.escape_ascii())
}

/// Writes every batch of the WAL in `dir` (from `from_seq` on) to `out`, one line each:
/// `seq=N shard=N records=N bytes=N acked=true|false payload="…"` with the payload escaped
/// (`\n`, `\"`, `\\`, `\xNN` for bytes outside printable ASCII). Corrupt stretches and an
/// incomplete last record follow as `#` lines. Read-only, takes no lock; "acked" is as of the
/// ledger (acknowledgements above the watermark live only in the running WAL's memory).
pub fn dump(
    dir: &Path,
    from_seq: Option<u64>,
    out: &mut dyn Write,
    show_payload: &mut PayloadPrinter<'_>,
) -> Result<(), WalError> {
    let watermark = match recovery::read_ledger(dir)? {
        Loaded::Found(s) => s.acked_through,
        Loaded::Missing | Loaded::Unreadable => 0,
    };
    let from = from_seq.unwrap_or(0);
    let mut payload = Vec::new();
    let mut tails = Vec::new();
    let analysis = recovery::read_only(dir, watermark, |view, bytes| {
        for e in view.entries.iter().filter(|e| e.seq >= from) {
            let record = bytes
                .get(e.offset as usize..(e.offset + u64::from(e.len)) as usize)
                .unwrap_or(&[]);
            match segment::decode(record, &mut payload) {
                Ok(_) => write!(
                    out,
                    "seq={} shard={} records={} bytes={} acked={} ",
                    e.seq,
                    e.shard,
                    e.records,
                    payload.len(),
                    e.acked,
                )
                .and_then(|()| show_payload(&payload, &mut *out))
                .and_then(|()| writeln!(out)),
                Err(c) => writeln!(
                    out,
                    "# seq={} in {} at byte {}: {c}",
                    e.seq,
                    view.path.display(),
                    e.offset
                ),
            }
            .map_err(WalError::Output)?;
        }
        if view.tail > 0 {
            tails.push((view.path.clone(), view.valid_end, view.tail));
        }
        Ok(())
    })?;
    for c in &analysis.corrupt {
        writeln!(
            out,
            "# corrupt: {} bytes {}..{}: {}",
            c.segment.display(),
            c.offset,
            c.offset + c.len,
            c.reason
        )
        .map_err(WalError::Output)?;
    }
    for (path, at, len) in tails {
        writeln!(
            out,
            "# incomplete: {} bytes {at}..{}: a record being written, or torn",
            path.display(),
            at + len
        )
        .map_err(WalError::Output)?;
    }
    Ok(())
}

/// The stats of the WAL in `dir`, read-only and without the lock (for `logtail wal stats`).
/// Counters since open (appended, dropped, full) are zero; corruption is what a scan finds now.
pub fn stats_of(dir: &Path) -> Result<WalStats, WalError> {
    let ledger = match recovery::read_ledger(dir)? {
        Loaded::Found(s) => Some(s),
        Loaded::Missing | Loaded::Unreadable => None,
    };
    let watermark = ledger.map_or(0, |s| s.acked_through);
    let mut stats = WalStats::default();
    let mut first_unacked = None;
    let mut newest_id = None;
    let analysis = recovery::read_only(dir, watermark, |view, _| {
        stats.disk_bytes += view.file_len;
        stats.segments += 1;
        for e in view.entries.iter().filter(|e| !e.acked) {
            first_unacked.get_or_insert(e.seq);
            stats.pending_batches += 1;
            stats.pending_records += u64::from(e.records);
        }
        newest_id = Some((view.id, view.valid_end > 0));
        Ok(())
    })?;
    let next_seq = ledger
        .map_or(1, |s| s.next_seq)
        .max(watermark + 1)
        .max(analysis.max_seq + 1)
        .max(newest_id.map_or(0, |(id, used)| id + u64::from(used)));
    stats.last_seq = next_seq - 1;
    stats.acked_through = first_unacked.map_or(next_seq - 1, |s| s - 1).max(watermark);
    stats.corrupt_batches = analysis.corrupt_batches;
    stats.corrupt_records = analysis.corrupt_records;
    Ok(stats)
}
