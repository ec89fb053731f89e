//! Tests of the WAL: format, append and replay, acknowledgements, recovery, full policies.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::ledger::{self, Ledger, Loaded};
use super::segment::{self, HEADER_LEN};
use super::*;
use crate::segments::{list_segments, segment_path};

// ---------------------------------------------------------------- helpers

/// Payload bytes that lz4 cannot shrink, so they are stored as given and every record of a
/// payload of `len` bytes takes exactly `HEADER_LEN + len` bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A payload lz4 shrinks a lot.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let line = format!("{{\"seq\":{seed},\"msg\":\"user login ok\",\"host\":\"web-1\"}}\n");
    line.bytes().cycle().take(len).collect()
}

const PAYLOAD: usize = 1000;
const RECORD: u64 = (HEADER_LEN + PAYLOAD) as u64;

/// Options with segments of `per_segment` records of [`PAYLOAD`] noise, room for `total` such
/// records, no fsync.
fn options(dir: &Path, per_segment: u64, total: u64, full: FullPolicy) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        max_segment_bytes: per_segment * RECORD,
        max_total_bytes: total * RECORD,
        fsync: FsyncPolicy::Never,
        fsync_interval: Duration::ZERO,
        full,
    }
}

fn open(opts: &WalOptions) -> (Wal, RecoveryReport) {
    Wal::open(opts.clone()).expect("open")
}

/// A WAL in a new temporary directory, with [`options`] `(per_segment, total, full)`, holding
/// noise batches `1..=batches` (see [`append_noise`]).
fn noise_wal(
    per_segment: u64,
    total: u64,
    full: FullPolicy,
    batches: u64,
) -> (tempfile::TempDir, WalOptions, Wal) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(dir.path(), per_segment, total, full);
    let (mut wal, _) = open(&opts);
    for i in 1..=batches {
        append_noise(&mut wal, i);
    }
    (dir, opts, wal)
}

/// Appends noise batch `i` (shard `i % 7`, `i` records) and returns its seq.
fn append_noise(wal: &mut Wal, i: u64) -> u64 {
    match wal
        .append((i % 7) as u16, i as u32, &noise(i, PAYLOAD))
        .expect("append")
    {
        Appended::Stored(seq) => seq,
        Appended::Dropped => panic!("batch {i} dropped"),
    }
}

fn drain(wal: &mut Wal) -> Vec<WalBatch> {
    let mut out = Vec::new();
    while let Some(b) = wal.next_unsent().expect("next_unsent") {
        out.push(b);
    }
    out
}

fn seqs(batches: &[WalBatch]) -> Vec<u64> {
    batches.iter().map(|b| b.seq).collect()
}

fn segment_files(dir: &Path) -> Vec<u64> {
    list_segments(dir).expect("list")
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    segment_path(dir, id)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

fn flip_byte(path: &Path, at: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x55;
    file.write_all_at(&b, at).expect("write");
}

// ---------------------------------------------------------------- format

#[test]
fn record_encoding_round_trips_and_chooses_compression() {
    let mut frame = Vec::new();
    let mut out = Vec::new();

    let compressible = text(1, 10_000);
    segment::encode(&mut frame, 42, 3, 17, &compressible);
    assert!(
        frame.len() < HEADER_LEN + 1000,
        "text compresses: {}",
        frame.len()
    );
    assert_eq!(frame[5], segment::COMPRESSION_LZ4);
    let h = segment::decode(&frame, &mut out).expect("decode");
    assert_eq!((h.seq, h.shard, h.records), (42, 3, 17));
    assert_eq!(out, compressible);

    let random = noise(2, 5000);
    segment::encode(&mut frame, 43, 4, 1, &random);
    assert_eq!(frame.len(), HEADER_LEN + 5000);
    assert_eq!(frame[5], segment::COMPRESSION_NONE);
    segment::decode(&frame, &mut out).expect("decode");
    assert_eq!(out, random);

    segment::encode(&mut frame, 44, 0, 0, b"");
    assert_eq!(frame.len(), HEADER_LEN);
    segment::decode(&frame, &mut out).expect("decode empty");
    assert!(out.is_empty());

    // Any single flipped bit is caught.
    segment::encode(&mut frame, 45, 1, 2, &text(3, 3000));
    for bit in (0..frame.len() * 8).step_by(7) {
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            segment::decode(&bad, &mut out).is_err(),
            "bit {bit} flipped went unnoticed"
        );
    }
}

#[test]
fn ledger_survives_a_torn_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(LEDGER_FILE);
    let mut ledger = Ledger::open(path.clone(), Loaded::Missing).expect("ledger");
    ledger.store(5, 9).expect("store"); // generation 1, slot 1
    ledger.store(7, 12).expect("store"); // generation 2, slot 0
    let Loaded::Found(s) = ledger::read(&path).expect("read") else {
        panic!("no ledger");
    };
    assert_eq!((s.generation, s.acked_through, s.next_seq), (2, 7, 12));

    // Tear the newest slot: the one before is what counts.
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&[0xAB; 10], 20).expect("tear");
    let Loaded::Found(s) = ledger::read(&path).expect("read") else {
        panic!("no ledger");
    };
    assert_eq!((s.acked_through, s.next_seq), (5, 9));

    // Both slots bad.
    file.write_all_at(&[0xAB; 10], ledger::SLOT_LEN as u64 + 20)
        .expect("tear");
    assert_eq!(ledger::read(&path).expect("read"), Loaded::Unreadable);
}

// ---------------------------------------------------------------- append and replay

#[test]
fn round_trip_in_order_across_segment_rolls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(dir.path(), 4, 1000, FullPolicy::Block);
    let (mut wal, report) = open(&opts);
    assert_eq!(report.next_seq, 1);
    assert_eq!(report.pending_batches, 0);

    let mut expected = Vec::new();
    for i in 1..=30u64 {
        // Mixed: noise, text, a big text payload, empty.
        let payload = match i % 4 {
            0 => noise(i, PAYLOAD),
            1 => text(i, 20_000),
            2 => Vec::new(),
            _ => noise(i, 10 * PAYLOAD), // bigger than a segment: a segment of its own
        };
        let seq = match wal.append(i as u16, i as u32, &payload).expect("append") {
            Appended::Stored(seq) => seq,
            Appended::Dropped => panic!("dropped"),
        };
        assert_eq!(seq, i);
        expected.push(WalBatch {
            seq,
            shard: i as u16,
            records: i as u32,
            payload,
        });
    }
    let segments = segment_files(dir.path());
    assert!(segments.len() > 5, "segments rolled: {segments:?}");
    assert_eq!(wal.stats().segments, segments.len() as u64);
    let on_disk: u64 = segments
        .iter()
        .map(|&id| file_len(&seg_path(dir.path(), id)))
        .sum();
    assert_eq!(wal.stats().disk_bytes, on_disk);
    assert_eq!(wal.stats().pending_batches, 30);
    assert_eq!(wal.stats().pending_records, (1..=30).sum::<u64>());

    assert_eq!(drain(&mut wal), expected);
    assert_eq!(wal.next_unsent().expect("next"), None);

    // Interleaved appends and reads on the active segment (mapped ahead of its end).
    for i in 31..=40u64 {
        append_noise(&mut wal, i);
        let b = wal.next_unsent().expect("next").expect("a batch");
        assert_eq!((b.seq, b.payload), (i, noise(i, PAYLOAD)));
    }

    // The same after a restart: nothing was acknowledged.
    drop(wal);
    let (mut wal, report) = open(&opts);
    assert_eq!(report.pending_batches, 40);
    assert_eq!(report.truncated_bytes, 0);
    assert!(report.corrupt.is_empty());
    let again = drain(&mut wal);
    assert_eq!(&again[..30], &expected[..]);
    assert_eq!(seqs(&again[30..]), (31..=40).collect::<Vec<_>>());
}

#[test]
fn out_of_order_acks_move_watermark_and_delete_exactly() {
    let (dir, _, mut wal) = noise_wal(3, 100, FullPolicy::Block, 9);
    // Three records per segment: [1,2,3] [4,5,6] [7,8,9].
    assert_eq!(segment_files(dir.path()), vec![1, 4, 7]);

    wal.acknowledge(2);
    assert_eq!(wal.stats().acked_through, 0);
    assert!(!wal.is_pending(2));
    assert!(wal.is_pending(1) && wal.is_pending(3) && wal.is_pending(9));
    assert!(!wal.is_pending(0) && !wal.is_pending(10));
    wal.acknowledge(5);
    wal.acknowledge(4);
    assert_eq!(segment_files(dir.path()), vec![1, 4, 7]);
    wal.acknowledge(6);
    // The middle segment is fully acknowledged: gone, though 1 and 3 are not.
    assert_eq!(segment_files(dir.path()), vec![1, 7]);
    assert_eq!(wal.stats().acked_through, 0);
    assert_eq!(wal.stats().pending_batches, 5);

    wal.acknowledge(1);
    assert_eq!(wal.stats().acked_through, 2);
    wal.acknowledge(3);
    assert_eq!(wal.stats().acked_through, 6);
    assert_eq!(segment_files(dir.path()), vec![7]);
    wal.acknowledge(8);
    assert_eq!(wal.stats().acked_through, 6);
    wal.acknowledge(7);
    assert_eq!(wal.stats().acked_through, 8);
    // Repeated, unknown and future seqs are ignored.
    wal.acknowledge(8);
    wal.acknowledge(2);
    wal.acknowledge(0);
    wal.acknowledge(100);
    assert_eq!(wal.stats().acked_through, 8);
    assert_eq!(wal.stats().pending_batches, 1);
    wal.acknowledge(9);
    let stats = wal.stats();
    assert_eq!(stats.acked_through, 9);
    assert_eq!((stats.pending_batches, stats.pending_records), (0, 0));
    // The segment being appended to stays, even fully acknowledged.
    assert_eq!(segment_files(dir.path()), vec![7]);
    assert_eq!(stats.disk_bytes, 3 * RECORD);
    assert_eq!(wal.next_unsent().expect("next"), None);

    // The next roll deletes it.
    for i in 10..=12 {
        append_noise(&mut wal, i);
    }
    assert_eq!(segment_files(dir.path()), vec![10]);
}

#[test]
fn restart_resumes_exactly_the_unacked_batches() {
    let (dir, opts, mut wal) = noise_wal(4, 100, FullPolicy::Block, 10);
    assert_eq!(seqs(&drain(&mut wal)), (1..=10).collect::<Vec<_>>());
    for seq in [1, 2, 3, 5, 6, 7, 8] {
        wal.acknowledge(seq);
    }
    // Segments [1..4] [5..8] [9,10]: the second one is gone, the watermark is 3.
    assert_eq!(segment_files(dir.path()), vec![1, 9]);
    assert_eq!(wal.stats().acked_through, 3);
    wal.flush().expect("flush");
    drop(wal);

    let (mut wal, report) = open(&opts);
    assert_eq!(report.ledger, LedgerStatus::Found);
    assert_eq!(report.acked_through, 3);
    assert_eq!(report.next_seq, 11);
    // 4, then 9 and 10 (5..8 went with their segment).
    assert_eq!(report.pending_batches, 3);
    assert_eq!(report.pending_records, 4 + 9 + 10);
    let batches = drain(&mut wal);
    assert_eq!(seqs(&batches), vec![4, 9, 10]);
    assert_eq!(batches[0].payload, noise(4, PAYLOAD));
    assert_eq!(batches[0].shard, 4);
    assert_eq!(batches[0].records, 4);

    // Acks above the watermark that were not persisted come back after a restart.
    wal.acknowledge(9);
    assert_eq!(append_noise(&mut wal, 11), 11);
    drop(wal);
    let (mut wal, report) = open(&opts);
    assert_eq!(report.acked_through, 3);
    assert_eq!(seqs(&drain(&mut wal)), vec![4, 9, 10, 11]);

    // Acknowledge everything, restart: nothing pending.
    for seq in [4, 9, 10, 11] {
        wal.acknowledge(seq);
    }
    drop(wal);
    let (mut wal, report) = open(&opts);
    assert_eq!(report.acked_through, 11);
    assert_eq!(report.pending_batches, 0);
    assert_eq!(wal.next_unsent().expect("next"), None);
}

#[test]
fn rewind_resends_from_the_watermark() {
    let (_dir, _, mut wal) = noise_wal(2, 100, FullPolicy::Block, 6);
    for expected in 1..=4 {
        assert_eq!(
            wal.next_unsent().expect("next").map(|b| b.seq),
            Some(expected)
        );
    }
    wal.acknowledge(1);
    wal.acknowledge(3);
    wal.rewind();
    // 2 and 4 again (3 is acknowledged), then the rest.
    assert_eq!(seqs(&drain(&mut wal)), vec![2, 4, 5, 6]);
    wal.rewind();
    assert_eq!(seqs(&drain(&mut wal)), vec![2, 4, 5, 6]);
    wal.acknowledge(2);
    wal.rewind();
    assert_eq!(seqs(&drain(&mut wal)), vec![4, 5, 6]);
}

// ---------------------------------------------------------------- recovery

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let (dir, opts, wal) = noise_wal(100, 1000, FullPolicy::Block, 5);
    drop(wal);
    let path = seg_path(dir.path(), 1);
    assert_eq!(file_len(&path), 5 * RECORD);
    // A crash in the middle of writing record 5.
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(4 * RECORD + 123).expect("truncate");

    let (mut wal, report) = open(&opts);
    assert_eq!(report.truncated_bytes, 123);
    assert!(report.corrupt.is_empty());
    assert_eq!(report.corrupt_batches, 0);
    assert_eq!(report.pending_batches, 4);
    assert_eq!(file_len(&path), 4 * RECORD);
    // Seq 5 was handed out before the crash (the ledger says so): it is not reused.
    assert_eq!(report.next_seq, 6);
    assert_eq!(append_noise(&mut wal, 6), 6);
    assert_eq!(append_noise(&mut wal, 7), 7);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 3, 4, 6, 7]);
    drop(wal);

    let (mut wal, report) = open(&opts);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 3, 4, 6, 7]);

    // A header cut short, and without a ledger: the next seq comes from the records.
    drop(wal);
    std::fs::remove_file(dir.path().join(LEDGER_FILE)).expect("rm ledger");
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(5 * RECORD + 10).expect("cut");
    let (mut wal, report) = open(&opts);
    assert_eq!(report.ledger, LedgerStatus::Missing);
    assert_eq!(report.truncated_bytes, 10);
    assert_eq!(report.next_seq, 7);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 3, 4, 6]);
}

#[test]
fn corrupt_middle_record_is_skipped_and_reported() {
    for (name, at) in [
        ("payload", 2 * RECORD + HEADER_LEN as u64 + 500),
        ("header", 2 * RECORD + 10),
        ("magic", 2 * RECORD),
    ] {
        let (dir, opts, wal) = noise_wal(100, 1000, FullPolicy::Block, 5);
        drop(wal);
        let path = seg_path(dir.path(), 1);
        flip_byte(&path, at);

        let (mut wal, report) = open(&opts);
        assert_eq!(report.corrupt.len(), 1, "{name}: {report:?}");
        let range = &report.corrupt[0];
        assert_eq!(range.segment, path, "{name}");
        assert_eq!((range.offset, range.len), (2 * RECORD, RECORD), "{name}");
        assert_eq!(report.corrupt_batches, 1, "{name}");
        assert_eq!(range.seq, (name == "payload").then_some(3), "{name}");
        assert_eq!(
            report.corrupt_records,
            if name == "payload" { 3 } else { 0 }
        );
        assert_eq!(report.truncated_bytes, 0, "{name}");
        assert_eq!(report.pending_batches, 4, "{name}");
        assert_eq!(wal.stats().corrupt_batches, 1);
        assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 4, 5], "{name}");
        // The corrupt batch counts as acknowledged.
        wal.acknowledge(1);
        wal.acknowledge(2);
        assert_eq!(wal.stats().acked_through, 3, "{name}");
        assert_eq!(append_noise(&mut wal, 6), 6);
        drop(wal);
        // Still skipped after another restart (the file is left as it is), but no longer
        // reported: the watermark has passed it.
        let (mut wal, report) = open(&opts);
        assert_eq!(report.corrupt.len(), 0, "{name}");
        assert_eq!(report.corrupt_batches, 0, "{name}");
        assert_eq!(seqs(&drain(&mut wal)), vec![4, 5, 6], "{name}");
    }
}

#[test]
fn corruption_found_on_read_is_skipped() {
    let (dir, _, mut wal) = noise_wal(2, 100, FullPolicy::Block, 6);
    // Record 3 starts segment 3 [3,4]; damage it after it was validated.
    flip_byte(&seg_path(dir.path(), 3), HEADER_LEN as u64 + 7);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 4, 5, 6]);
    let stats = wal.stats();
    assert_eq!((stats.corrupt_batches, stats.corrupt_records), (1, 3));
    assert_eq!(stats.pending_batches, 5);
    wal.acknowledge(1);
    wal.acknowledge(2);
    assert_eq!(wal.stats().acked_through, 3);
}

#[test]
fn sequence_numbers_survive_deleting_everything() {
    let (dir, opts, mut wal) = noise_wal(2, 100, FullPolicy::Block, 7);
    for seq in 1..=7 {
        wal.acknowledge(seq);
    }
    assert_eq!(segment_files(dir.path()), vec![7]);
    wal.flush().expect("flush");
    drop(wal);

    // Reopen: continues after 7.
    let (mut wal, report) = open(&opts);
    assert_eq!((report.acked_through, report.next_seq), (7, 8));
    assert_eq!(append_noise(&mut wal, 8), 8);
    wal.acknowledge(8);
    drop(wal);

    // Every segment gone: the ledger still knows.
    for id in segment_files(dir.path()) {
        std::fs::remove_file(seg_path(dir.path(), id)).expect("rm");
    }
    let (mut wal, report) = open(&opts);
    assert_eq!(report.next_seq, 9);
    assert_eq!(append_noise(&mut wal, 9), 9);
    assert_eq!(segment_files(dir.path()), vec![9]);
    wal.acknowledge(9);
    drop(wal);

    // The ledger gone instead: the newest segment's name and records still know.
    std::fs::remove_file(dir.path().join(LEDGER_FILE)).expect("rm ledger");
    let (mut wal, report) = open(&opts);
    assert_eq!(report.next_seq, 10);
    assert_eq!(append_noise(&mut wal, 10), 10);
}

#[test]
fn second_open_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(dir.path(), 2, 100, FullPolicy::Block);
    let (wal, _) = open(&opts);
    let err = Wal::open(opts.clone()).expect_err("second open");
    assert!(matches!(err, WalError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("already in use"), "{msg}");
    assert!(
        msg.contains(&format!("(pid {})", std::process::id())),
        "{msg}"
    );
    drop(wal);
    Wal::open(opts).expect("open after close");
}

// ---------------------------------------------------------------- full WAL

#[test]
fn full_block_refuses_and_writes_nothing() {
    let (dir, _, mut wal) = noise_wal(2, 4, FullPolicy::Block, 4);
    let before: Vec<(u64, u64)> = segment_files(dir.path())
        .into_iter()
        .map(|id| (id, file_len(&seg_path(dir.path(), id))))
        .collect();
    for _ in 0..3 {
        let err = wal.append(0, 1, &noise(99, PAYLOAD)).expect_err("full");
        assert!(matches!(err, WalError::Full), "{err:?}");
    }
    let after: Vec<(u64, u64)> = segment_files(dir.path())
        .into_iter()
        .map(|id| (id, file_len(&seg_path(dir.path(), id))))
        .collect();
    assert_eq!(before, after);
    let stats = wal.stats();
    assert_eq!(stats.full_rejections, 3);
    assert_eq!(stats.last_seq, 4);
    assert_eq!(stats.disk_bytes, 4 * RECORD);
    assert_eq!((stats.dropped_batches, stats.dropped_records), (0, 0));

    // Acknowledging the oldest segment makes room; no seq was consumed by the refusals.
    wal.acknowledge(1);
    wal.acknowledge(2);
    assert_eq!(append_noise(&mut wal, 5), 5);
    assert_eq!(seqs(&drain(&mut wal)), vec![3, 4, 5]);

    assert_eq!(append_noise(&mut wal, 6), 6);
    assert!(matches!(wal.append(0, 1, b"x"), Err(WalError::Full)));

    // A fully acknowledged active segment is rolled away from (and deleted) to make room.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(&options(dir.path(), 2, 2, FullPolicy::Block));
    append_noise(&mut wal, 1);
    append_noise(&mut wal, 2);
    assert!(matches!(wal.append(0, 1, b"x"), Err(WalError::Full)));
    wal.acknowledge(1);
    wal.acknowledge(2);
    assert_eq!(segment_files(dir.path()), vec![1]);
    assert_eq!(append_noise(&mut wal, 3), 3);
    assert_eq!(segment_files(dir.path()), vec![3]);
    assert_eq!(wal.stats().disk_bytes, RECORD);
}

#[test]
fn full_drop_oldest_drops_exactly_the_oldest_segment() {
    let (dir, _, mut wal) = noise_wal(3, 6, FullPolicy::DropOldest, 6);
    assert_eq!(segment_files(dir.path()), vec![1, 4]);
    // Hand out 1 and 2: the consumer's later acks of dropped batches are ignored.
    assert_eq!(seqs(&[wal.next_unsent().unwrap().unwrap()]), vec![1]);
    assert_eq!(seqs(&[wal.next_unsent().unwrap().unwrap()]), vec![2]);
    wal.acknowledge(2);

    assert!(wal.is_pending(1));
    assert_eq!(append_noise(&mut wal, 7), 7);
    assert_eq!(segment_files(dir.path()), vec![4, 7]);
    // Batch 1 is handed out but dropped: no longer pending.
    assert!(!wal.is_pending(1) && !wal.is_pending(3) && wal.is_pending(4));
    let stats = wal.stats();
    // Batches 1 and 3 (2 was acknowledged): records 1 + 3.
    assert_eq!((stats.dropped_batches, stats.dropped_records), (2, 4));
    assert_eq!(stats.acked_through, 3);
    assert_eq!(stats.pending_batches, 4);
    assert_eq!(stats.disk_bytes, 4 * RECORD);
    wal.acknowledge(1);
    assert_eq!(wal.stats().acked_through, 3);
    assert_eq!(seqs(&drain(&mut wal)), vec![4, 5, 6, 7]);

    // One segment holding everything: it is rolled away from, then dropped.
    let (dir, _, mut wal) = noise_wal(10, 3, FullPolicy::DropOldest, 3);
    assert_eq!(append_noise(&mut wal, 4), 4);
    assert_eq!(segment_files(dir.path()), vec![4]);
    assert_eq!(wal.stats().dropped_batches, 3);
    assert_eq!(wal.stats().dropped_records, 6);
    assert_eq!(seqs(&drain(&mut wal)), vec![4]);
}

#[test]
fn full_drop_newest_counts() {
    let (_dir, _, mut wal) = noise_wal(2, 4, FullPolicy::DropNewest, 4);
    for records in [10, 20, 30] {
        assert_eq!(
            wal.append(1, records, &noise(7, PAYLOAD)).expect("append"),
            Appended::Dropped
        );
    }
    let stats = wal.stats();
    assert_eq!((stats.dropped_batches, stats.dropped_records), (3, 60));
    assert_eq!(stats.full_rejections, 0);
    assert_eq!(stats.disk_bytes, 4 * RECORD);
    assert_eq!(stats.last_seq, 4);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 3, 4]);
    wal.acknowledge(1);
    wal.acknowledge(2);
    assert_eq!(append_noise(&mut wal, 5), 5);
}

#[test]
fn too_large_batches_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(&options(dir.path(), 2, 4, FullPolicy::DropNewest));
    let err = wal
        .append(0, 1, &noise(1, 5 * PAYLOAD))
        .expect_err("too large");
    assert!(matches!(err, WalError::TooLarge { .. }), "{err:?}");
    assert_eq!(wal.stats().disk_bytes, 0);
    assert_eq!(append_noise(&mut wal, 1), 1);
}

#[test]
fn disk_full_behaves_like_a_full_wal() {
    // Block: Full, the half-written record is cut, no seq consumed.
    let (dir, opts, mut wal) = noise_wal(3, 100, FullPolicy::Block, 2);
    wal.fail_writes = 1;
    let err = wal.append(0, 1, &noise(3, PAYLOAD)).expect_err("no space");
    assert!(matches!(err, WalError::Full), "{err:?}");
    assert_eq!(file_len(&seg_path(dir.path(), 1)), 2 * RECORD);
    assert_eq!(wal.stats().disk_bytes, 2 * RECORD);
    assert_eq!(wal.stats().full_rejections, 1);
    assert_eq!(append_noise(&mut wal, 3), 3);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 3]);
    drop(wal);
    let (mut wal, report) = open(&opts);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2, 3]);

    // DropNewest: dropped and counted.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut wal, _) = open(&options(dir.path(), 3, 100, FullPolicy::DropNewest));
    append_noise(&mut wal, 1);
    wal.fail_writes = 1;
    assert_eq!(
        wal.append(0, 5, &noise(2, PAYLOAD)).expect("append"),
        Appended::Dropped
    );
    assert_eq!(wal.stats().dropped_records, 5);
    assert_eq!(append_noise(&mut wal, 2), 2);
    assert_eq!(seqs(&drain(&mut wal)), vec![1, 2]);

    // DropOldest: the oldest segment goes, then the write is tried again.
    let (dir, _, mut wal) = noise_wal(2, 100, FullPolicy::DropOldest, 4);
    wal.fail_writes = 1;
    assert_eq!(append_noise(&mut wal, 5), 5);
    assert_eq!(wal.stats().dropped_batches, 2);
    assert_eq!(segment_files(dir.path()), vec![3, 5]);
    assert_eq!(seqs(&drain(&mut wal)), vec![3, 4, 5]);
    // Nothing left to drop: Full.
    wal.fail_writes = 100;
    assert!(matches!(wal.append(0, 1, b"x"), Err(WalError::Full)));
    wal.fail_writes = 0;
}

#[test]
fn every_append_and_interval_policies_work() {
    for (fsync, fsync_interval) in [
        (FsyncPolicy::EveryAppend, Duration::ZERO),
        (FsyncPolicy::Interval, Duration::ZERO),
        (FsyncPolicy::Interval, Duration::from_secs(3600)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = WalOptions {
            fsync,
            fsync_interval,
            ..options(dir.path(), 2, 100, FullPolicy::Block)
        };
        let (mut wal, _) = open(&opts);
        for i in 1..=5 {
            append_noise(&mut wal, i);
        }
        wal.acknowledge(1);
        wal.flush().expect("flush");
        drop(wal);
        let (mut wal, report) = open(&opts);
        assert_eq!(report.acked_through, 1, "{fsync:?}");
        assert_eq!(seqs(&drain(&mut wal)), vec![2, 3, 4, 5], "{fsync:?}");
    }
}

// ---------------------------------------------------------------- read-only views

#[test]
fn dump_and_stats_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = options(dir.path(), 100, 1000, FullPolicy::Block);
    let (mut wal, _) = open(&opts);
    wal.append(2, 1, b"hello \"world\"\n").expect("append");
    wal.append(3, 2, b"a\\b\x00\xff").expect("append");
    wal.append(4, 3, &text(1, 2000)).expect("append");
    wal.acknowledge(1);
    wal.flush().expect("flush");
    let live = wal.stats();

    let mut out = Vec::new();
    dump(dir.path(), None, &mut out, &mut print_payload_escaped).expect("dump");
    let out = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        r#"seq=1 shard=2 records=1 bytes=14 acked=true payload="hello \"world\"\n""#
    );
    assert_eq!(
        lines[1],
        r#"seq=2 shard=3 records=2 bytes=5 acked=false payload="a\\b\x00\xff""#
    );
    assert!(lines[2].starts_with("seq=3 shard=4 records=3 bytes=2000 acked=false payload=\"{"));

    let mut out = Vec::new();
    dump(dir.path(), Some(3), &mut out, &mut print_payload_escaped).expect("dump");
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 1);

    // stats_of sees what the live WAL sees (but counters since open).
    let offline = stats_of(dir.path()).expect("stats_of");
    assert_eq!(offline.disk_bytes, live.disk_bytes);
    assert_eq!(offline.segments, live.segments);
    assert_eq!(offline.pending_batches, 2);
    assert_eq!(offline.pending_records, 5);
    assert_eq!(offline.acked_through, 1);
    assert_eq!(offline.last_seq, 3);

    // Corruption and a torn tail show as comments, and do not stop the dump.
    drop(wal);
    let path = seg_path(dir.path(), 1);
    flip_byte(&path, (HEADER_LEN + 14 + 20) as u64); // the header of seq 2
    let len = file_len(&path);
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&segment::MAGIC, len)
        .expect("append a torn header");
    let mut out = Vec::new();
    dump(dir.path(), None, &mut out, &mut print_payload_escaped).expect("dump");
    let out = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("seq=1 "), "{out}");
    assert!(lines[1].starts_with("seq=3 "), "{out}");
    assert_eq!(
        lines[2],
        format!(
            "# corrupt: {} bytes 54..99: record header checksum mismatch",
            path.display()
        )
    );
    assert_eq!(
        lines[3],
        format!(
            "# incomplete: {} bytes {len}..{}: a record being written, or torn",
            path.display(),
            len + 4
        )
    );
    let offline = stats_of(dir.path()).expect("stats_of");
    assert_eq!(offline.pending_batches, 1);
    assert_eq!(offline.corrupt_batches, 1);
}

// ---------------------------------------------------------------- garbage never panics

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_damage_never_panics(
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..40),
        cut in prop::option::of(any::<prop::sample::Index>()),
        garbage in prop::collection::vec(any::<u8>(), 0..3000),
        ledger_garbage in prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = options(dir.path(), 4, 1000, FullPolicy::Block);
        let (mut wal, _) = open(&opts);
        for i in 1..=10 {
            let payload = if i % 2 == 0 { noise(i, 300) } else { text(i, 3000) };
            wal.append(i as u16, i as u32, &payload).expect("append");
        }
        wal.acknowledge(2);
        drop(wal);

        let ids = segment_files(dir.path());
        for (n, &id) in ids.iter().enumerate() {
            let path = seg_path(dir.path(), id);
            let mut bytes = std::fs::read(&path).expect("read");
            for (at, v) in &damage {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = *v;
                }
            }
            if n == 0 {
                bytes.extend_from_slice(&garbage);
            }
            if let Some(cut) = cut {
                let keep = cut.index(bytes.len() + 1);
                bytes.truncate(keep);
            }
            std::fs::write(&path, &bytes).expect("write");
        }
        std::fs::write(seg_path(dir.path(), 1_000_000), &garbage).expect("write");
        if let Some(g) = ledger_garbage {
            std::fs::write(dir.path().join(LEDGER_FILE), g).expect("write ledger");
        }

        let mut out = Vec::new();
        dump(dir.path(), None, &mut out, &mut print_payload_escaped).expect("dump");
        stats_of(dir.path()).expect("stats_of");
        let (mut wal, report) = open(&opts);
        let delivered = drain(&mut wal);
        prop_assert!(delivered.windows(2).all(|w| w[0].seq < w[1].seq));
        prop_assert_eq!(delivered.len() as u64, report.pending_batches);
        for b in &delivered {
            prop_assert!(b.seq >= 1 && b.seq <= 10);
            let expected = if b.seq % 2 == 0 { noise(b.seq, 300) } else { text(b.seq, 3000) };
            prop_assert_eq!(&b.payload, &expected);
        }
        let next = match wal.append(0, 1, b"after").expect("append") {
            Appended::Stored(seq) => seq,
            Appended::Dropped => 0,
        };
        prop_assert!(next > 10);
        drop(wal);
        let (mut wal, _) = open(&opts);
        let again = drain(&mut wal);
        prop_assert_eq!(again.last().map(|b| b.seq), Some(next));
    }
}
