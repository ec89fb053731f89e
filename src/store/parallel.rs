//! Reading a store's segments in several threads: what a search over a large store runs
//! ([`read_filtered_parallel`]).
//!
//! The segments there are when the read starts are handed out one at a time to worker threads,
//! oldest first (newest first for [`OutputOrder::NewestSegmentFirst`]).
//! Each worker reads its segment as [`read_filtered`](super::read_filtered) would (blocks and
//! granules that the filter rules out are not read), passes the records read through the
//! caller's `stage` (a search's matcher: the records it keeps are what travels), and sends what
//! the stage keeps in pieces of about [`OUT_CHUNK`] bytes, over its segment's channel (one
//! channel for all with [`OutputOrder::Any`]). The
//! caller's thread writes the pieces to `out`: segment after segment (oldest or newest first),
//! or as they come when the caller does not need an order ([`OutputOrder`]).
//!
//! Invariants:
//! - **Order**: with [`OutputOrder::OldestFirst`], `out` receives what one thread reading the
//!   segments oldest first would write through `stage`, in the same order (the pieces may be
//!   cut elsewhere), and `out.flush()` after each segment's output. With
//!   [`OutputOrder::NewestSegmentFirst`], the same per segment, the newest segment first. With
//!   [`OutputOrder::Any`], the same pieces in the order they were made: each is what `stage`
//!   kept of consecutive records of one segment, in their order.
//! - **A snapshot**: the segments listed at the start are read, the newest up to its last
//!   complete block (as [`read`](super::read) without `follow`); a segment deleted by retention
//!   before its worker opens it is passed over with a warning. There is no follow mode here.
//! - **Bounded memory**: a worker takes its next segment only while the pieces waiting to be
//!   written out hold less than [`AHEAD_BYTES`], and a segment's channel holds at most
//!   [`PIECES`] pieces: whatever the store's size and the query, at most `AHEAD_BYTES` plus
//!   `threads` × `PIECES` pieces of about [`OUT_CHUNK`] bytes wait. A search whose matches
//!   are few (a rare word) is never held back, so a worker is not idle while another reads the
//!   segment where the matches cluster.
//! - **Stopping**: `stop` stops the workers within a block and the output at the next piece. An
//!   error reading a segment (corruption is not an error: it is skipped and counted, as by
//!   `read`) is returned once the segments before it have been written out (in any order: when
//!   it arrives).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::StoreError;
use super::block::Scanner;
use super::index::BlockIndex;
use super::reader::{Cursor, OUT_CHUNK, ReadStats, drain, flush};
use crate::segments::{FileError, list_segments, segment_path};

/// What a worker does with the records it reads: called with whole records (each stored value
/// followed by `'\n'`, as [`read`](super::read) writes them), it appends the records (or
/// whatever it makes of them) that should reach the output to its second argument.
pub type RecordStage<'s> = &'s (dyn Fn(&[u8], &mut Vec<u8>) + Sync);

/// A filter on block indexes that worker threads share (see [`BlockFilter`](super::BlockFilter)).
pub type SharedBlockFilter<'f> = &'f (dyn Fn(&BlockIndex<'_>) -> bool + Sync);

/// In which order the output of the segments reaches `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputOrder {
    /// The store's: oldest segment first.
    OldestFirst,
    /// The newest segment first, each segment's output in the store's order: a search for the
    /// newest matches stops (`stop`) once it has enough, reading only the newest segments.
    NewestSegmentFirst,
    /// As the workers make it (for counts and other folds that do not depend on the order): a
    /// segment whose output is large does not hold the other workers back.
    Any,
}

/// A worker takes no new segment while the output has this many bytes waiting.
pub const AHEAD_BYTES: usize = 4 << 20;

/// Pieces a segment's channel holds before its worker waits for the output to catch up.
pub const PIECES: usize = 4;

/// What a worker sends about its segment: pieces of output, then once how the read went.
enum Piece {
    Output(Vec<u8>),
    Done(Result<ReadStats, StoreError>),
}

/// Which segment the next free worker takes, and how much output waits.
struct Schedule {
    state: Mutex<ScheduleState>,
    /// Signalled when output waiting was written out, or the output gave up.
    moved: Condvar,
}

struct ScheduleState {
    /// Index (in the listing) of the next segment to hand out.
    next: usize,
    /// Bytes sent by workers and not yet written out.
    waiting: usize,
    /// The output gave up (an error, or `stop`): take no more segments.
    halted: bool,
}

impl Schedule {
    fn new() -> Self {
        Schedule {
            state: Mutex::new(ScheduleState {
                next: 0,
                waiting: 0,
                halted: false,
            }),
            moved: Condvar::new(),
        }
    }

    /// The next segment to read, once less than [`AHEAD_BYTES`] wait; `None` when there are no
    /// more or the output gave up.
    fn take(&self, segments: usize, stop: &AtomicBool) -> Option<usize> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.halted || state.next >= segments || stop.load(Ordering::Relaxed) {
                return None;
            }
            if state.waiting < AHEAD_BYTES {
                state.next += 1;
                return Some(state.next - 1);
            }
            // The timeout only bounds how late a `stop` set meanwhile is seen.
            state = self
                .moved
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn halted(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .halted
    }

    fn set(&self, change: impl FnOnce(&mut ScheduleState)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.moved.notify_all();
    }
}

/// Halts the schedule when its worker panics.
struct HaltOnPanic<'s>(&'s Schedule);

impl Drop for HaltOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.set(|state| state.halted = true);
        }
    }
}

/// [`read_filtered`](super::read_filtered) over the segments there are now, in up to `threads`
/// threads, each record read passed through `stage`: writes to `out` what `stage` keeps, in
/// `order`. The returned stats are the sums over the segments (`records` counts
/// the records read, before `stage`).
///
/// # Errors
/// As [`read`](super::read): listing or reading a segment, or writing to `out`.
pub fn read_filtered_parallel(
    dir: &Path,
    filter: SharedBlockFilter<'_>,
    stage: RecordStage<'_>,
    threads: usize,
    order: OutputOrder,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<ReadStats, StoreError> {
    let mut seqs = list_segments(dir)?;
    let newest = seqs.last().copied();
    if order == OutputOrder::NewestSegmentFirst {
        seqs.reverse();
    }
    let threads = threads.clamp(1, seqs.len().max(1));
    // Each receiver with the number of segments it hears of.
    let (senders, receivers): (Vec<_>, Vec<_>) = match order {
        OutputOrder::OldestFirst | OutputOrder::NewestSegmentFirst => seqs
            .iter()
            .map(|_| {
                let (sender, receiver) = sync_channel(PIECES);
                (sender, (receiver, 1))
            })
            .unzip(),
        OutputOrder::Any => {
            let (sender, receiver) = sync_channel(PIECES * threads);
            (vec![sender; seqs.len()], vec![(receiver, seqs.len())])
        }
    };
    let schedule = Schedule::new();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // A worker that panicked (a bug) took its segment with it: the output must not
                // wait for it (the scope passes the panic on).
                let _on_panic = HaltOnPanic(&schedule);
                let mut scanner = Scanner::default();
                while let Some(i) = schedule.take(seqs.len(), stop) {
                    let seq = seqs[i];
                    let sender: &SyncSender<Piece> = &senders[i];
                    let mut output = StageOutput {
                        stage,
                        kept: Vec::new(),
                        sender,
                        schedule: &schedule,
                    };
                    let sealed = newest.is_some_and(|newest| newest > seq);
                    let read =
                        read_segment(dir, seq, sealed, filter, &mut scanner, &mut output, stop);
                    // A send fails only when the output gave up: nothing to tell then.
                    let _ = sender.send(Piece::Done(read));
                }
            });
        }
        let written = write_out(receivers, &schedule, out, stop);
        schedule.set(|state| state.halted = true);
        written
    })
}

/// Writes the pieces of each receiver in turn to `out` until it has heard of the end of its
/// number of segments, then flushes `out`, and sums the segments' stats. Returns (and drops
/// the receivers, which ends the workers' sends) at the first error or once `stop` is set.
fn write_out(
    receivers: Vec<(Receiver<Piece>, usize)>,
    schedule: &Schedule,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> Result<ReadStats, StoreError> {
    let mut total = ReadStats::default();
    for (receiver, mut segments) in receivers {
        while segments > 0 {
            if stop.load(Ordering::Relaxed) {
                return Ok(total);
            }
            // The timeout only bounds how late a `stop` set meanwhile is seen (a worker that sees
            // it first may leave this segment untaken).
            match receiver.recv_timeout(Duration::from_millis(50)) {
                Ok(Piece::Output(piece)) => {
                    out.write_all(&piece).map_err(StoreError::Output)?;
                    schedule.set(|state| state.waiting -= piece.len());
                }
                Ok(Piece::Done(read)) => {
                    add(&mut total, &read?);
                    segments -= 1;
                }
                Err(RecvTimeoutError::Timeout) if schedule.halted() => return Ok(total),
                Err(RecvTimeoutError::Timeout) => {}
                // Not while `read_filtered_parallel` holds the senders.
                Err(RecvTimeoutError::Disconnected) => return Ok(total),
            }
        }
        out.flush().map_err(StoreError::Output)?;
    }
    Ok(total)
}

fn add(total: &mut ReadStats, segment: &ReadStats) {
    total.records += segment.records;
    total.blocks += segment.blocks;
    total.skipped_blocks += segment.skipped_blocks;
    total.skipped_granules += segment.skipped_granules;
    total.corrupt_blocks += segment.corrupt_blocks;
    total.corrupt_bytes += segment.corrupt_bytes;
}

/// Reads one segment whole (up to its last complete block, when it is the newest).
fn read_segment(
    dir: &Path,
    seq: u64,
    sealed: bool,
    filter: SharedBlockFilter<'_>,
    scanner: &mut Scanner,
    output: &mut StageOutput<'_>,
    stop: &AtomicBool,
) -> Result<ReadStats, StoreError> {
    let path = segment_path(dir, seq);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!("segment {seq} was deleted by retention before it was read");
            return Ok(ReadStats::default());
        }
        Err(e) => return Err(FileError::new(&path, e).into()),
    };
    let len = file.metadata().map_err(|e| FileError::new(&path, e))?.len();
    let mut cursor = Cursor {
        seq,
        path,
        file,
        pos: 0,
    };
    let mut stats = ReadStats::default();
    let mut outbuf = Vec::new();
    let filter: super::BlockFilter<'_> = filter;
    drain(
        scanner,
        &mut stats,
        &mut outbuf,
        None,
        None,
        Some(filter),
        &mut cursor,
        len,
        sealed,
        output,
        stop,
    )?;
    flush(&mut outbuf, output)?;
    output.flush().map_err(StoreError::Output)?;
    Ok(stats)
}

/// The `out` of a worker's reader: passes what it is written (whole records: the reader hands
/// its output over record by record) through the stage, and sends what the stage keeps.
struct StageOutput<'w> {
    stage: RecordStage<'w>,
    kept: Vec<u8>,
    sender: &'w SyncSender<Piece>,
    schedule: &'w Schedule,
}

impl StageOutput<'_> {
    fn send(&mut self) -> io::Result<()> {
        if self.kept.is_empty() {
            return Ok(());
        }
        let len = self.kept.len();
        // The next piece is likely as big: no growing it from nothing again.
        let piece = std::mem::replace(&mut self.kept, Vec::with_capacity(len));
        self.schedule.set(|state| state.waiting += len);
        self.sender
            .send(Piece::Output(piece))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the search's output gave up"))
    }
}

impl Write for StageOutput<'_> {
    fn write(&mut self, records: &[u8]) -> io::Result<usize> {
        (self.stage)(records, &mut self.kept);
        if self.kept.len() >= OUT_CHUNK {
            self.send()?;
        }
        Ok(records.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_segment_is_taken_while_too_much_output_waits() {
        let schedule = Schedule::new();
        let stop = AtomicBool::new(false);
        assert_eq!(schedule.take(3, &stop), Some(0));
        schedule.set(|state| state.waiting = AHEAD_BYTES);
        std::thread::scope(|scope| {
            let taker = scope.spawn(|| schedule.take(3, &stop));
            std::thread::sleep(Duration::from_millis(300));
            assert!(!taker.is_finished());
            schedule.set(|state| state.waiting = AHEAD_BYTES - 1);
            assert_eq!(taker.join().unwrap(), Some(1));
        });
        assert_eq!(schedule.take(3, &stop), Some(2));
        assert_eq!(schedule.take(3, &stop), None);
    }

    #[test]
    fn a_halted_or_stopped_schedule_hands_out_nothing() {
        let stop = AtomicBool::new(false);
        let schedule = Schedule::new();
        schedule.set(|state| state.halted = true);
        assert_eq!(schedule.take(3, &stop), None);
        let schedule = Schedule::new();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(schedule.take(3, &stop), None);
    }
}
