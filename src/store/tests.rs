//! Tests of the store: format, writer, recovery, retention, reader.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::block::{BlockCorruption, BlockHeader, HEADER_LEN};
use super::reader::Reader;
use super::*;
use crate::segments::{list_segments, segment_path};
use crate::time::now_unix_micros as now_us;

// ---------------------------------------------------------------- helpers

/// Options for a test store in `dir`.
fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        ..StoreOptions::default()
    }
}

/// The records of one batch, as `(received_at_us, value)`.
type Expected = Vec<(i64, Vec<u8>)>;

/// A batch as the writer takes it: `(received_at_us, value)` records cut by `shard`.
struct TestBatch {
    shard: u16,
    records: Expected,
}

impl StoreBatch for TestBatch {
    fn shard(&self) -> u16 {
        self.shard
    }

    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.records
            .iter()
            .map(|(ts, value)| (*ts, value.as_slice()))
    }
}

/// A batch of `(received_at_us, value)` records.
fn batch(shard: u16, records: &[(i64, &[u8])]) -> TestBatch {
    TestBatch {
        shard,
        records: records.iter().map(|(ts, v)| (*ts, v.to_vec())).collect(),
    }
}

/// `n` JSON-ish records of batch `id`, timestamps `base + i`.
fn json_batch(id: u32, n: u32, base: i64) -> (TestBatch, Expected) {
    let expected: Expected = (0..n)
        .map(|i| {
            let value =
                format!(r#"{{"batch":{id},"i":{i},"msg":"user login ok","host":"web-{i}"}}"#);
            (base + i64::from(i), value.into_bytes())
        })
        .collect();
    let b = TestBatch {
        shard: 0,
        records: expected.clone(),
    };
    (b, expected)
}

/// Appends JSON batch `id` (see [`json_batch`]) and adds its records to `expected`.
fn append_json(w: &mut StoreWriter, expected: &mut Vec<Expected>, id: u32, n: u32, base: i64) {
    let (b, e) = json_batch(id, n, base);
    w.append(&b).unwrap();
    expected.push(e);
}

/// What `read` writes for these values: each followed by '\n'.
fn joined<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn read_all(dir: &Path, opts: &ReadOptions) -> (Vec<u8>, ReadStats) {
    let mut out = Vec::new();
    let stop = AtomicBool::new(false);
    let stats = read(dir, opts, &mut out, &stop).expect("read");
    (out, stats)
}

fn plain() -> ReadOptions {
    ReadOptions::default()
}

fn only_segment(dir: &Path) -> PathBuf {
    let seqs = list_segments(dir).expect("list");
    assert_eq!(seqs.len(), 1, "expected a single segment, got {seqs:?}");
    segment_path(dir, seqs[0])
}

/// Appends each batch and returns where each block starts (one block per batch here).
fn append_all(w: &mut StoreWriter, batches: &[TestBatch]) -> Vec<u64> {
    let mut offsets = Vec::new();
    for b in batches {
        offsets.push(w.stats().bytes_written);
        w.append(b).expect("append");
    }
    offsets
}

/// A segment opened for a test to damage it.
fn open_rw(path: &Path) -> std::fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// Recomputes both checksums of the block at the start of `block`, after a test edited it.
fn reseal(block: &mut [u8]) {
    let compressed = u32::from_le_bytes(block[16..20].try_into().unwrap()) as usize;
    let end = (HEADER_LEN + compressed).min(block.len());
    let fields = crc32c::crc32c(&block[..40]);
    let crc = crc32c::crc32c_append(fields, &block[HEADER_LEN..end]);
    block[40..44].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&block[..44]);
    block[44..48].copy_from_slice(&hcrc.to_le_bytes());
}

/// A store in a new temporary directory holding five batches of 10 records, one block each, in
/// one segment; returns the directory, the segment, the expected records per batch and the
/// block offsets.
fn five_blocks() -> (tempfile::TempDir, PathBuf, Vec<Expected>, Vec<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    let (batches, expected): (Vec<_>, Vec<_>) = (0..5)
        .map(|id| json_batch(id, 10, i64::from(id) * 100))
        .unzip();
    let offsets = append_all(&mut w, &batches);
    assert_eq!(w.stats().blocks_written, 5);
    w.sync().unwrap();
    let seg = only_segment(tmp.path());
    (tmp, seg, expected, offsets)
}

fn values_of(batches: &[Expected]) -> Vec<u8> {
    joined(batches.iter().flatten().map(|(_, v)| v.as_slice()))
}

// ---------------------------------------------------------------- block format

#[test]
fn block_header_round_trips_and_rejects_each_bad_field() {
    let mut enc = super::block::BlockEncoder::default();
    enc.push(5, b"abc", None);
    enc.push(-7, b"", None);
    let (count, max) = enc.finish(9);
    assert_eq!((count, max), (2, 5));
    let frame = enc.frame().to_vec();
    let head: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
    let h = BlockHeader::parse(&head).unwrap();
    assert_eq!(h.shard, 9);
    assert_eq!(h.record_count, 2);
    assert_eq!(h.uncompressed_len, 2 * 12 + 3);
    assert_eq!(h.min_received_at_us, -7);
    assert_eq!(h.max_received_at_us, 5);
    assert_eq!(h.block_len(), frame.len() as u64);
    assert_eq!(head[4], 3, "blocks are written with granules and an index");
    let payload_end = HEADER_LEN + h.compressed_len as usize;
    assert_eq!(h.index_len as usize, frame.len() - payload_end);
    let index = BlockIndex::parse(&frame[payload_end..]).unwrap();
    assert_eq!(index.granule_count(), 1);

    let mut raw = Vec::new();
    super::block::decode_payload(&h, &frame[HEADER_LEN..payload_end], Some(&index), &mut raw)
        .unwrap();
    let records: Vec<_> = super::block::Records::new(&raw).collect();
    assert_eq!(records, vec![(5, &b"abc"[..]), (-7, &b""[..])]);

    let edit = |at: usize, bytes: &[u8], fix: bool| {
        let mut b = head;
        b[at..at + bytes.len()].copy_from_slice(bytes);
        if fix {
            let hcrc = crc32c::crc32c(&b[..44]);
            b[44..48].copy_from_slice(&hcrc.to_le_bytes());
        }
        BlockHeader::parse(&b)
    };
    assert_eq!(edit(0, b"X", true), Err(BlockCorruption::BadMagic));
    assert_eq!(edit(6, &[1], false), Err(BlockCorruption::HeaderChecksum));
    assert_eq!(edit(4, &[4], true), Err(BlockCorruption::Version(4)));
    // A version-1 header must have no index.
    assert!(matches!(
        edit(4, &[1], true),
        Err(BlockCorruption::HeaderField("reserved is not zero"))
    ));
    assert_eq!(edit(5, &[0], true), Err(BlockCorruption::Compression(0)));
    assert!(matches!(
        edit(8, &0u32.to_le_bytes(), true),
        Err(BlockCorruption::HeaderField(_))
    ));
    assert!(matches!(
        edit(16, &u32::MAX.to_le_bytes(), true),
        Err(BlockCorruption::HeaderField(_))
    ));
    assert!(matches!(
        edit(12, &(64u32 << 20).to_le_bytes(), true),
        Err(BlockCorruption::HeaderField(_))
    ));
    assert!(matches!(
        edit(20, &[1], true),
        Err(BlockCorruption::HeaderField(_))
    ));
    assert!(matches!(
        edit(24, &100i64.to_le_bytes(), true),
        Err(BlockCorruption::HeaderField(_))
    ));

    // A payload bit flip is caught by block_crc.
    let mut bad = frame[HEADER_LEN..payload_end].to_vec();
    bad[0] ^= 1;
    assert_eq!(
        super::block::decode_payload(&h, &bad, Some(&index), &mut raw),
        Err(BlockCorruption::BlockChecksum)
    );
}

// ---------------------------------------------------------------- round trip and filters

#[test]
fn round_trip_keeps_every_byte_and_the_order() {
    let tmp = tempfile::tempdir().unwrap();
    let values: Vec<&[u8]> = vec![
        b"plain line",
        b"with\nnewline\n",
        b"",
        b"\x00\xff\xf7LTB binary \r\n\x00",
        br#"{"a":1}"#,
        b"",
        b"\n",
    ];
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    w.append(&batch(1, &[(1, values[0]), (2, values[1]), (3, values[2])]))
        .unwrap();
    w.append(&batch(2, &[])).unwrap(); // empty: writes nothing
    w.append(&batch(2, &[(4, values[3])])).unwrap();
    w.append(&batch(3, &[(5, values[4]), (6, values[5]), (7, values[6])]))
        .unwrap();
    w.sync().unwrap();
    let st = w.stats();
    assert_eq!(st.records_written, 7);
    assert_eq!(st.blocks_written, 3);
    assert_eq!(st.segments, 1);
    let seg_len = std::fs::metadata(only_segment(tmp.path())).unwrap().len();
    assert_eq!(st.disk_bytes, seg_len);
    assert_eq!(st.bytes_written, seg_len);

    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(out, joined(values.iter().copied()));
    assert_eq!(
        stats,
        ReadStats {
            records: 7,
            blocks: 3,
            skipped_blocks: 0,
            skipped_granules: 0,
            corrupt_blocks: 0,
            corrupt_bytes: 0
        }
    );
}

#[test]
fn since_skips_whole_blocks_and_filters_records_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    // Block k holds timestamps 100k .. 100k+9.
    let (batches, expected): (Vec<_>, Vec<_>) = (0..5)
        .map(|k| json_batch(k, 10, i64::from(k) * 100))
        .unzip();
    append_all(&mut w, &batches);

    let since = |s| ReadOptions {
        since_us: Some(s),
        ..plain()
    };
    // 205: blocks 0 and 1 skipped whole, block 2 filtered (205..=209), 3 and 4 whole.
    let (out, stats) = read_all(tmp.path(), &since(205));
    let want: Vec<&[u8]> = expected
        .iter()
        .flatten()
        .filter(|(ts, _)| *ts >= 205)
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(want.len(), 5 + 10 + 10);
    assert_eq!(out, joined(want));
    assert_eq!(stats.records, 25);
    assert_eq!(
        stats.blocks, 3,
        "blocks before `since` are not decompressed"
    );

    let (out, stats) = read_all(tmp.path(), &since(10_000));
    assert!(out.is_empty());
    assert_eq!((stats.records, stats.blocks), (0, 0));

    let (_, stats) = read_all(tmp.path(), &since(i64::MIN));
    assert_eq!((stats.records, stats.blocks), (50, 5));
}

#[test]
fn grep_matches_substrings_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    w.append(&batch(
        0,
        &[
            (1, b"error: disk full"),
            (2, b"info: all good"),
            (3, b"multi\nline error\n"),
            (4, b"ERROR upper case does not match"),
        ],
    ))
    .unwrap();
    w.append(&batch(0, &[(5, b"nothing here"), (6, b"no match")]))
        .unwrap();
    let grep = |g: &[u8], since| ReadOptions {
        grep: Some(g.to_vec()),
        since_us: since,
        follow: false,
    };
    let (out, stats) = read_all(tmp.path(), &grep(b"error", None));
    assert_eq!(
        out,
        joined([&b"error: disk full"[..], b"multi\nline error\n"])
    );
    assert_eq!((stats.records, stats.blocks), (2, 2));

    let (out, _) = read_all(tmp.path(), &grep(b"error", Some(2)));
    assert_eq!(out, joined([&b"multi\nline error\n"[..]]));

    let (out, stats) = read_all(tmp.path(), &grep(b"absent", None));
    assert!(out.is_empty());
    assert_eq!(stats.records, 0);
    // The frame bytes between values never make a match.
    let (out, _) = read_all(tmp.path(), &grep(b"good\x00", None));
    assert!(out.is_empty());
}

#[test]
fn a_huge_batch_is_split_into_blocks_of_about_one_mib() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    let value = vec![b'x'; 1000];
    let records: Vec<(i64, &[u8])> = (0..3000).map(|i| (i, &value[..])).collect();
    w.append(&batch(0, &records)).unwrap();
    // 3000 framed records of 1012 bytes = 3,036,000 bytes: 1036 records per MiB block.
    assert_eq!(w.stats().blocks_written, 3);
    assert_eq!(w.stats().records_written, 3000);
    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(stats.records, 3000);
    assert_eq!(stats.blocks, 3);
    assert_eq!(out.len(), 3000 * 1001);
}

#[test]
fn a_record_larger_than_a_block_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    let big = vec![0u8; MAX_BLOCK_BYTES];
    let err = w
        .append(&batch(0, &[(1, b"small"), (2, &big)]))
        .unwrap_err();
    assert!(matches!(err, StoreError::RecordTooLarge { len, .. } if len == MAX_BLOCK_BYTES));
    assert_eq!(w.stats().bytes_written, 0);
    assert_eq!(w.stats().disk_bytes, 0);
}

// ---------------------------------------------------------------- granules (format 3)

/// One block of `records` written with granules of [`MIN_GRANULE_BYTES`]; returns the
/// directory and the segment.
fn granular_store(records: &Expected) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    w.set_granule_bytes(MIN_GRANULE_BYTES);
    w.append(&TestBatch {
        shard: 0,
        records: records.clone(),
    })
    .unwrap();
    assert_eq!(w.stats().blocks_written, 1);
    w.sync().unwrap();
    let seg = only_segment(tmp.path());
    (tmp, seg)
}

/// `n` records of about 1 KiB (15 to a granule of 16 KiB), record `i` holding `word{i}`.
fn kib_records(n: u32) -> Expected {
    (0..n)
        .map(|i| {
            let value = format!(r#"{{"message":"word{i} {}"}}"#, "x".repeat(1000));
            (i64::from(i), value.into_bytes())
        })
        .collect()
}

/// The header and granule table of the block at the start of `seg`.
fn granule_table(seg: &Path) -> (BlockHeader, Vec<super::index::GranuleEntry>) {
    let bytes = std::fs::read(seg).unwrap();
    let h = BlockHeader::parse(&bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    let at = h.index_offset() as usize;
    let index = BlockIndex::parse(&bytes[at..at + h.index_len as usize]).unwrap();
    (h, index.granule_entries().collect())
}

/// Reads `dir` with a filter accepting what may hold `word`.
fn read_word(dir: &Path, word: &str) -> (Vec<u8>, ReadStats) {
    let hash = super::index::token_hash(word.as_bytes());
    let filter = |index: &BlockIndex<'_>| index.may_have_token(hash);
    let mut out = Vec::new();
    let stats = read_filtered(dir, &plain(), &filter, &mut out, &AtomicBool::new(false)).unwrap();
    (out, stats)
}

#[test]
fn a_filtered_read_decompresses_only_the_granules_its_filter_accepts() {
    let records = kib_records(60);
    let (tmp, seg) = granular_store(&records);
    let (h, table) = granule_table(&seg);
    assert_eq!(h.version, 3);
    assert_eq!(table.len(), 4);
    assert_eq!(
        table.iter().map(|g| g.summary.records).collect::<Vec<_>>(),
        [15, 15, 15, 15]
    );
    // The granules tile the payload.
    assert_eq!(table[0].offset, 0);
    for pair in table.windows(2) {
        assert_eq!(
            pair[1].offset,
            pair[0].offset + pair[0].summary.compressed_len
        );
    }

    let (out, stats) = read_word(tmp.path(), "word20");
    assert_eq!(out, values_of(&[records[15..30].to_vec()]));
    assert_eq!(
        (stats.records, stats.blocks, stats.skipped_granules),
        (15, 1, 3)
    );
    let (out, stats) = read_word(tmp.path(), "nowhere");
    assert!(out.is_empty());
    assert_eq!((stats.blocks, stats.skipped_blocks), (0, 1));
    // A plain read reads all of it.
    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(out, values_of(&[records]));
    assert_eq!((stats.records, stats.skipped_granules), (60, 0));
}

#[test]
fn a_corrupt_granule_is_a_clear_corruption_error_never_a_panic() {
    use super::block::{GranuleSet, HeaderAt, Scanner};
    let records = kib_records(60);
    let (tmp, seg) = granular_store(&records);
    let (h, table) = granule_table(&seg);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[HEADER_LEN + table[2].offset as usize + 3] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let file = std::fs::File::open(&seg).unwrap();
    let len = bytes.len() as u64;
    let mut scanner = Scanner::default();
    assert_eq!(
        scanner.header_at(&file, 0, len).unwrap(),
        HeaderAt::Block(h)
    );
    assert_eq!(
        scanner
            .index_at(&file, 0, &h, len)
            .unwrap()
            .unwrap()
            .unwrap()
            .granule_count(),
        4
    );
    let one = |i: usize| {
        let mut set = GranuleSet::default();
        set.insert(i);
        set
    };
    assert_eq!(
        scanner.decode_granules_at(&file, 0, &h, &one(2)).unwrap(),
        Err(BlockCorruption::GranuleChecksum(2))
    );
    assert_eq!(
        BlockCorruption::GranuleChecksum(2).to_string(),
        "granule 2 checksum mismatch"
    );
    // The other granules still read on their own...
    assert_eq!(
        scanner.decode_granules_at(&file, 0, &h, &one(0)).unwrap(),
        Ok(true)
    );
    assert_eq!(scanner.records().count(), 15);
    // ...but the block as a whole is corrupt.
    assert_eq!(
        scanner.decode_at(&file, 0, &h).unwrap(),
        Err(BlockCorruption::BlockChecksum)
    );

    // Readers skip the block and count it, whether they wanted that granule or not.
    let (out, stats) = read_word(tmp.path(), "word40");
    assert!(out.is_empty());
    assert_eq!((stats.records, stats.corrupt_blocks), (0, 1));
    let (out, stats) = read_word(tmp.path(), "word5");
    assert_eq!(out, values_of(&[records[..15].to_vec()]));
    assert_eq!(stats.corrupt_blocks, 0, "granule 2 was not read");
    let (_, stats) = read_all(tmp.path(), &plain());
    assert_eq!((stats.records, stats.corrupt_blocks), (0, 1));

    // With the block checksum made to match, the granule's own checksum still catches it.
    reseal(&mut bytes);
    std::fs::write(&seg, &bytes).unwrap();
    let HeaderAt::Block(h) = scanner.header_at(&file, 0, len).unwrap() else {
        panic!("the resealed header is valid");
    };
    assert_eq!(
        scanner.decode_at(&file, 0, &h).unwrap(),
        Err(BlockCorruption::GranuleChecksum(2))
    );
}

#[test]
fn a_granule_table_that_does_not_add_up_is_corruption() {
    let records = kib_records(60);
    let (tmp, seg) = granular_store(&records);
    let (h, _) = granule_table(&seg);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = h.index_offset() as usize;
    let index = &mut bytes[at..at + h.index_len as usize];
    // Granule 1's record count, then the index's checksum made to match.
    let entry = super::index::INDEX_FIXED_LEN + super::index::GRANULE_ENTRY_LEN;
    index[entry + 8] += 1;
    let body = index.len() - 4;
    let crc = crc32c::crc32c(&index[..body]);
    index[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    for (_, stats) in [
        read_all(tmp.path(), &plain()),
        read_word(tmp.path(), "word1"),
    ] {
        assert_eq!((stats.records, stats.corrupt_blocks), (0, 1));
    }
}

#[test]
fn a_truncated_granular_block_is_incomplete_never_a_panic() {
    let records = kib_records(60);
    let (tmp, seg) = granular_store(&records);
    let (h, table) = granule_table(&seg);
    let full = std::fs::read(&seg).unwrap();
    let payload_end = HEADER_LEN + h.compressed_len as usize;
    for cut in [
        10,
        HEADER_LEN + 1,
        HEADER_LEN + table[2].offset as usize + 5,
        payload_end,
        payload_end + 40,
        full.len() - 1,
    ] {
        std::fs::write(&seg, &full[..cut]).unwrap();
        // The newest segment's last block is being written: nothing to read yet, no corruption.
        for (out, stats) in [
            read_all(tmp.path(), &plain()),
            read_word(tmp.path(), "word1"),
        ] {
            assert!(out.is_empty(), "cut at {cut}");
            assert_eq!(
                (stats.records, stats.corrupt_blocks),
                (0, 0),
                "cut at {cut}"
            );
        }
        let w = StoreWriter::open(options(tmp.path())).unwrap();
        assert_eq!(w.stats().truncated_at_open, cut as u64, "cut at {cut}");
    }
}

#[test]
fn a_small_block_is_one_granule() {
    let records: Expected = vec![(1, b"alpha".to_vec()), (2, b"beta gamma".to_vec())];
    let (tmp, seg) = granular_store(&records);
    let (h, table) = granule_table(&seg);
    assert_eq!(table.len(), 1);
    assert_eq!(table[0].offset, 0);
    assert_eq!(table[0].summary.compressed_len, h.compressed_len);
    assert_eq!(table[0].summary.raw_len, h.uncompressed_len);
    assert_eq!(table[0].summary.records, 2);
    let (out, stats) = read_word(tmp.path(), "GAMMA");
    assert_eq!(out, b"alpha\nbeta gamma\n");
    assert_eq!((stats.blocks, stats.skipped_granules), (1, 0));
    let (_, stats) = read_word(tmp.path(), "delta");
    assert_eq!((stats.blocks, stats.skipped_blocks), (0, 1));
}

#[test]
fn a_record_larger_than_a_granule_is_a_granule_of_its_own() {
    let big = format!("bigword {}", "y".repeat(3 * MIN_GRANULE_BYTES)).into_bytes();
    let mut records: Expected = (0..3).map(|i| (i, b"small one".to_vec())).collect();
    records.push((3, big.clone()));
    records.extend((4..7).map(|i| (i, b"small two".to_vec())));
    let (tmp, seg) = granular_store(&records);
    let (_, table) = granule_table(&seg);
    assert_eq!(
        table
            .iter()
            .map(|g| (g.summary.records, g.summary.raw_len as usize))
            .collect::<Vec<_>>(),
        [(3, 3 * 21), (1, 12 + big.len()), (3, 3 * 21)]
    );
    let (out, stats) = read_word(tmp.path(), "bigword");
    assert_eq!(out, values_of(&[records[3..4].to_vec()]));
    assert_eq!(stats.skipped_granules, 2);
    let (out, _) = read_all(tmp.path(), &plain());
    assert_eq!(out, values_of(&[records]));
}

// ---------------------------------------------------------------- rolls and retention

#[test]
fn segments_roll_and_size_retention_keeps_the_newest() {
    // Measure one block of the batches used below (their sizes differ by a few bytes at most).
    let probe = tempfile::tempdir().unwrap();
    let block = {
        let mut w = StoreWriter::open(options(probe.path())).unwrap();
        w.append(&json_batch(0, 20, 0).0).unwrap();
        w.stats().bytes_written
    };

    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_segment_bytes: 3 * block + block / 2, // three blocks per segment
        max_total_bytes: 7 * block,
        ..options(tmp.path())
    };
    let mut w = StoreWriter::open(opts).unwrap();
    let mut expected = Vec::new();
    for id in 0..10 {
        append_json(&mut w, &mut expected, id, 20, i64::from(id) * 1000);
    }
    // Segments [0,1,2] [3,4,5] [6,7,8] [9]: at the last roll 9 blocks > 7 → the first goes.
    let st = w.stats();
    assert_eq!(st.segments, 3);
    assert_eq!(list_segments(tmp.path()).unwrap(), vec![2, 3, 4]);
    assert_eq!(st.records_written, 200);
    let on_disk: u64 = list_segments(tmp.path())
        .unwrap()
        .iter()
        .map(|&s| {
            std::fs::metadata(segment_path(tmp.path(), s))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(st.disk_bytes, on_disk);

    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(stats.records, 140);
    assert_eq!(out, values_of(&expected[3..]));
}

#[test]
fn age_retention_deletes_segments_whose_newest_record_is_too_old() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_segment_bytes: 1, // every block gets its own segment
        max_age: Some(Duration::from_secs(3600)),
        ..options(tmp.path())
    };
    let old = now_us() - 2 * 3600 * 1_000_000;
    let new = now_us();
    let mut w = StoreWriter::open(opts.clone()).unwrap();
    let (b0, _) = json_batch(0, 5, old);
    let (b1, _) = json_batch(1, 5, old);
    let (b2, e2) = json_batch(2, 5, new);
    let (b3, e3) = json_batch(3, 5, new);
    for b in [&b0, &b1, &b2, &b3] {
        w.append(b).unwrap();
    }
    // Roll to 2 deletes 1 (old), roll to 3 deletes 2 (old), roll to 4 keeps 3 (recent).
    assert_eq!(list_segments(tmp.path()).unwrap(), vec![3, 4]);
    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(stats.records, 10);
    assert_eq!(out, values_of(&[e2, e3]));

    // Reopening applies retention too, judging older segments by their block headers.
    w.append(&json_batch(4, 5, old).0).unwrap(); // segment 5: old, but it is the active one
    w.append(&json_batch(5, 5, new).0).unwrap(); // segment 6
    drop(w);
    std::fs::remove_file(segment_path(tmp.path(), 3)).unwrap();
    std::fs::remove_file(segment_path(tmp.path(), 4)).unwrap();
    let w = StoreWriter::open(opts).unwrap();
    assert_eq!(list_segments(tmp.path()).unwrap(), vec![6]);
    assert_eq!(w.stats().segments, 1);
}

// ---------------------------------------------------------------- crash recovery

#[test]
fn a_torn_tail_is_not_corruption_and_open_cuts_it() {
    let (tmp, seg, expected, offsets) = five_blocks();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Tear the last block in the middle of its payload.
    let torn_at = offsets[4] + (len - offsets[4]) / 2;
    open_rw(&seg).set_len(torn_at).unwrap();

    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(out, values_of(&expected[..4]));
    assert_eq!(stats.records, 40);
    assert_eq!((stats.corrupt_blocks, stats.corrupt_bytes), (0, 0));

    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    assert_eq!(w.stats().truncated_at_open, torn_at - offsets[4]);
    assert_eq!(w.stats().disk_bytes, offsets[4]);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), offsets[4]);
    let (b5, e5) = json_batch(5, 10, 500);
    let (b6, e6) = json_batch(6, 3, 600);
    w.append(&b5).unwrap();
    w.append(&b6).unwrap();
    drop(w);

    let (out, stats) = read_all(tmp.path(), &plain());
    let mut want = expected[..4].to_vec();
    want.extend([e5, e6]);
    assert_eq!(out, values_of(&want));
    assert_eq!(stats.records, 53);
    assert_eq!(stats.corrupt_blocks, 0);
}

#[test]
fn open_cuts_garbage_after_the_last_valid_block() {
    let (tmp, seg, expected, _) = five_blocks();
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 100]).unwrap(); // e.g. zeroes left by a crash before data hit the disk
    drop(f);

    // Complete garbage in the newest segment (nothing valid after it) is reported by readers...
    let (_, stats) = read_all(tmp.path(), &plain());
    assert_eq!(
        (stats.records, stats.corrupt_blocks, stats.corrupt_bytes),
        (50, 1, 100)
    );

    // ...and cut by the writer.
    let w = StoreWriter::open(options(tmp.path())).unwrap();
    assert_eq!(w.stats().truncated_at_open, 100);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len);
    drop(w);
    let (out, stats) = read_all(tmp.path(), &plain());
    assert_eq!(out, values_of(&expected));
    assert_eq!(stats.corrupt_blocks, 0);
}

#[test]
fn open_leaves_a_corrupt_block_that_valid_blocks_follow() {
    let (tmp, seg, expected, offsets) = five_blocks();
    let f = open_rw(&seg);
    f.write_all_at(b"\xde\xad", offsets[1] + 60).unwrap();
    drop(f);

    let w = StoreWriter::open(options(tmp.path())).unwrap();
    assert_eq!(w.stats().truncated_at_open, 0);
    drop(w);
    let (out, stats) = read_all(tmp.path(), &plain());
    let want: Vec<_> = [0, 2, 3, 4].iter().map(|&i| expected[i].clone()).collect();
    assert_eq!(out, values_of(&want));
    assert_eq!(stats.corrupt_blocks, 1);
    assert_eq!(stats.corrupt_bytes, offsets[2] - offsets[1]);
}

// ---------------------------------------------------------------- corruption

/// Reads after `damage` edited the bytes of block 2 of five, checks the other 40 records come
/// back and exactly one corrupt region spanning block 2 is counted.
fn check_block_2_skipped(damage: impl FnOnce(&mut [u8])) {
    let (tmp, seg, expected, offsets) = five_blocks();
    let mut bytes = std::fs::read(&seg).unwrap();
    damage(&mut bytes[offsets[2] as usize..offsets[3] as usize]);
    std::fs::write(&seg, &bytes).unwrap();

    let (out, stats) = read_all(tmp.path(), &plain());
    let want: Vec<_> = [0, 1, 3, 4].iter().map(|&i| expected[i].clone()).collect();
    assert_eq!(out, values_of(&want));
    assert_eq!(
        stats,
        ReadStats {
            records: 40,
            blocks: 4,
            skipped_blocks: 0,
            skipped_granules: 0,
            corrupt_blocks: 1,
            corrupt_bytes: offsets[3] - offsets[2],
        }
    );
}

#[test]
fn flipped_payload_bytes_skip_just_that_block() {
    check_block_2_skipped(|b| {
        b[HEADER_LEN + 5] ^= 0xff;
        b[HEADER_LEN + 6] ^= 0x55;
    });
}

#[test]
fn flipped_header_bytes_skip_just_that_block() {
    check_block_2_skipped(|b| b[10] ^= 0x01);
}

#[test]
fn bad_lz4_with_valid_checksums_skips_just_that_block() {
    check_block_2_skipped(|b| {
        for x in &mut b[HEADER_LEN..] {
            *x = 0xf0; // a literal run that never ends
        }
        reseal(b);
    });
}

#[test]
fn records_that_do_not_add_up_skip_just_that_block() {
    check_block_2_skipped(|b| {
        b[8..12].copy_from_slice(&9u32.to_le_bytes()); // 10 records inside, header says 9
        reseal(b);
    });
}

#[test]
fn a_lying_length_is_neither_trusted_nor_allocated() {
    // Without a matching header checksum.
    check_block_2_skipped(|b| b[16..20].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes()));
    // With one: the length is checked against the lz4 bound of the maximum block size.
    check_block_2_skipped(|b| {
        b[16..20].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
        reseal(b);
    });
    // Within the bound but past the end of the file, in the middle of the newest segment.
    check_block_2_skipped(|b| {
        b[12..16].copy_from_slice(&(16u32 << 20).to_le_bytes());
        b[16..20].copy_from_slice(&(16u32 << 20).to_le_bytes());
        reseal(b);
    });

    // And the reader's buffers stay small.
    let (tmp, seg, _, offsets) = five_blocks();
    let f = open_rw(&seg);
    let mut head = [0u8; HEADER_LEN];
    f.read_exact_at(&mut head, offsets[1]).unwrap();
    head[12..16].copy_from_slice(&(16u32 << 20).to_le_bytes());
    head[16..20].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    reseal(&mut head);
    f.write_all_at(&head, offsets[1]).unwrap();
    drop(f);
    let opts = plain();
    let mut reader = Reader::new(tmp.path(), &opts, None);
    let mut out = Vec::new();
    let stats = reader.run(&mut out, &AtomicBool::new(false)).unwrap();
    assert_eq!((stats.records, stats.corrupt_blocks), (40, 1));
    assert!(
        reader.buffer_capacity() < 1 << 20,
        "reader holds {} bytes",
        reader.buffer_capacity()
    );
}

#[test]
fn a_corrupt_block_is_logged_once_with_file_and_offset() {
    let (tmp, seg, _, offsets) = five_blocks();
    let f = open_rw(&seg);
    let at = offsets[3] + HEADER_LEN as u64 + 2;
    let mut b = [0u8; 3];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[!b[0], !b[1], !b[2]], at).unwrap();
    drop(f);

    let log = SharedOut::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let stats = tracing::subscriber::with_default(subscriber, || read_all(tmp.path(), &plain()).1);
    assert_eq!((stats.records, stats.corrupt_blocks), (40, 1));
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let want = format!(
        "{} at byte {}: block checksum mismatch; skipped {} bytes",
        seg.display(),
        offsets[3],
        offsets[4] - offsets[3]
    );
    assert_eq!(log.matches(&want).count(), 1, "log:\n{log}");
    assert_eq!(log.matches("WARN").count(), 1, "log:\n{log}");
}

#[test]
fn an_incomplete_block_in_an_older_segment_is_corruption() {
    let (tmp, seg, expected, offsets) = five_blocks();
    let len = std::fs::metadata(&seg).unwrap().len();
    open_rw(&seg).set_len(len - 7).unwrap();
    // A newer segment seals the torn one (copied in: a writer would first cut the tail).
    let other = tempfile::tempdir().unwrap();
    {
        let mut w = StoreWriter::open(options(other.path())).unwrap();
        w.append(&json_batch(9, 4, 900).0).unwrap();
    }
    std::fs::copy(segment_path(other.path(), 1), segment_path(tmp.path(), 2)).unwrap();

    let (out, stats) = read_all(tmp.path(), &plain());
    let mut want = values_of(&expected[..4]);
    want.extend(values_of(&[json_batch(9, 4, 900).1]));
    assert_eq!(out, want);
    assert_eq!(stats.records, 44);
    assert_eq!(stats.corrupt_blocks, 1);
    assert_eq!(stats.corrupt_bytes, len - 7 - offsets[4]);
}

#[test]
fn missing_directory_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let mut out = Vec::new();
    let err = read(&missing, &plain(), &mut out, &AtomicBool::new(false)).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

// ---------------------------------------------------------------- locking

#[test]
fn a_second_writer_on_the_same_directory_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let first = StoreWriter::open(options(tmp.path())).unwrap();
    let err = StoreWriter::open(options(tmp.path())).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("already in use by another writer"), "{msg}");
    assert!(msg.contains("LOCK"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(first);
    StoreWriter::open(options(tmp.path())).expect("lock released on drop");
}

// ---------------------------------------------------------------- follow

/// A `Write` whose contents another thread can look at.
#[derive(Clone, Default)]
struct SharedOut(Arc<Mutex<Vec<u8>>>);

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedOut {
    fn wait_for(&self, want: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.0.lock().unwrap().as_slice() == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let got = self.0.lock().unwrap().clone();
        panic!(
            "follower output after 10 s:\n{}\nwanted:\n{}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want)
        );
    }
}

/// Runs `read` with `opts` and `follow` on `dir` in a thread; returns its output, the flag that
/// stops it, and the thread.
fn spawn_follower(
    dir: &Path,
    opts: ReadOptions,
) -> (
    SharedOut,
    Arc<AtomicBool>,
    std::thread::JoinHandle<ReadStats>,
) {
    let opts = ReadOptions {
        follow: true,
        ..opts
    };
    let out = SharedOut::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (dir, mut o, s) = (dir.to_path_buf(), out.clone(), stop.clone());
    let handle = std::thread::spawn(move || read(&dir, &opts, &mut o, &s).expect("follow"));
    (out, stop, handle)
}

#[test]
fn follow_sees_new_blocks_across_rolls_and_stops_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_segment_bytes: 700, // a few blocks (of about 250 bytes) per segment
        ..options(tmp.path())
    };
    let mut w = StoreWriter::open(opts).unwrap();
    let (b0, e0) = json_batch(0, 10, 0);
    w.append(&b0).unwrap();

    let (out, stop, handle) = spawn_follower(
        tmp.path(),
        ReadOptions {
            grep: Some(b"batch".to_vec()),
            ..plain()
        },
    );
    let mut expected = vec![e0];
    out.wait_for(&values_of(&expected));
    for id in 1..12 {
        append_json(&mut w, &mut expected, id, 10, i64::from(id) * 100);
        if id % 4 == 0 {
            out.wait_for(&values_of(&expected));
        }
    }
    assert!(
        w.stats().segments >= 3,
        "the test must roll: {:?}",
        w.stats()
    );
    out.wait_for(&values_of(&expected));

    let started = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let stats = handle.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(stats.records, 120);
    assert_eq!(stats.blocks, 12);
    assert_eq!(stats.corrupt_blocks, 0);
}

#[test]
fn follow_moves_on_when_retention_deletes_the_segment_it_is_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_segment_bytes: 1, // one block per segment
        max_total_bytes: 1,   // and only the active segment is kept
        ..options(tmp.path())
    };
    let mut w = StoreWriter::open(opts).unwrap();
    let (b0, e0) = json_batch(0, 3, 0);
    w.append(&b0).unwrap();
    let (out, stop, handle) = spawn_follower(tmp.path(), plain());
    let mut expected = vec![e0];
    out.wait_for(&values_of(&expected));
    for id in 1..6 {
        // The follower sits at the end of the segment that this roll deletes.
        append_json(&mut w, &mut expected, id, 3, i64::from(id) * 10);
        out.wait_for(&values_of(&expected));
        assert_eq!(list_segments(tmp.path()).unwrap(), vec![u64::from(id) + 1]);
    }
    stop.store(true, Ordering::Relaxed);
    let stats = handle.join().unwrap();
    assert_eq!(stats.records, 18);
}

#[test]
fn follow_waits_for_a_torn_block_and_reads_what_recovery_writes_in_its_place() {
    let (tmp, seg, expected, offsets) = five_blocks();
    open_rw(&seg).set_len(offsets[4] + 30).unwrap();
    let (out, stop, handle) = spawn_follower(tmp.path(), plain());
    let mut want = expected[..4].to_vec();
    out.wait_for(&values_of(&want));
    let mut w = StoreWriter::open(options(tmp.path())).unwrap();
    append_json(&mut w, &mut want, 7, 2, 700);
    out.wait_for(&values_of(&want));
    stop.store(true, Ordering::Relaxed);
    let stats = handle.join().unwrap();
    assert_eq!((stats.records, stats.corrupt_blocks), (42, 0));
}

// ---------------------------------------------------------------- arbitrary input

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_a_segment_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        with_magic in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = bytes;
        if with_magic && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&super::block::MAGIC);
        }
        std::fs::write(segment_path(tmp.path(), 1), &bytes).unwrap();
        let (out, stats) = read_all(tmp.path(), &plain());
        prop_assert_eq!(stats.records, 0);
        prop_assert!(out.is_empty());
        prop_assert!(stats.corrupt_bytes <= bytes.len() as u64);
        // The writer recovers from it too: nothing valid, so everything goes.
        let w = StoreWriter::open(options(tmp.path())).unwrap();
        prop_assert_eq!(w.stats().truncated_at_open, bytes.len() as u64);
    }

    #[test]
    fn damaged_segments_never_panic_and_keep_undamaged_blocks(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let (tmp, seg, expected, offsets) = five_blocks();
        let mut bytes = std::fs::read(&seg).unwrap();
        let mut touched = Vec::new();
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            if bytes[i] != *value {
                bytes[i] = *value;
                touched.push(i as u64);
            }
        }
        if do_cut {
            let n = cut.index(bytes.len());
            bytes.truncate(n);
            touched.push(n as u64);
        }
        std::fs::write(&seg, &bytes).unwrap();
        let (_, stats) = read_all(tmp.path(), &plain());
        // Every block before the first damaged byte comes back.
        let first = touched.iter().copied().min().unwrap_or(u64::MAX);
        let intact = offsets.iter().skip(1).chain(std::iter::once(&u64::MAX))
            .take_while(|&&end| end <= first).count();
        let intact_records: u64 = expected[..intact].iter().map(|b| b.len() as u64).sum();
        prop_assert!(stats.records >= intact_records, "{:?} {}", stats, intact);
        prop_assert!(stats.records <= 50);
        let w = StoreWriter::open(options(tmp.path())).unwrap();
        prop_assert!(w.stats().disk_bytes <= bytes.len() as u64);
    }
}

// ---------------------------------------------------------------- the parallel reader

/// A store of `blocks` blocks of 20 records (`word{block}` in every record of a block), one
/// segment per `per_segment` blocks; returns the directory and every record's value in order.
fn segmented_store(blocks: u32, per_segment: u64) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let block_bytes = {
        let probe = tempfile::tempdir().unwrap();
        let mut w = StoreWriter::open(options(probe.path())).unwrap();
        w.append(&word_batch(0)).unwrap();
        w.stats().bytes_written
    };
    let opts = StoreOptions {
        max_segment_bytes: per_segment * block_bytes + block_bytes / 2,
        ..options(tmp.path())
    };
    let mut w = StoreWriter::open(opts).unwrap();
    let mut values = Vec::new();
    for b in 0..blocks {
        let batch = word_batch(b);
        values.extend(batch.records.iter().map(|(_, v)| v.clone()));
        w.append(&batch).unwrap();
    }
    w.sync().unwrap();
    (tmp, values)
}

fn word_batch(b: u32) -> TestBatch {
    TestBatch {
        shard: 0,
        records: (0..20)
            .map(|i| {
                let value = format!(r#"{{"message":"word{b} record {i:02}","i":{i}}}"#);
                (i64::from(b * 100 + i), value.into_bytes())
            })
            .collect(),
    }
}

/// [`read_filtered_parallel`] with `threads`, a filter for `word` (or none) and a stage
/// keeping the records with `keep` in them, in the store's order.
fn read_parallel(
    dir: &Path,
    word: Option<&str>,
    keep: &[u8],
    threads: usize,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> ReadStats {
    read_parallel_in(
        dir,
        word,
        keep,
        threads,
        OutputOrder::OldestFirst,
        out,
        stop,
    )
}

fn read_parallel_in(
    dir: &Path,
    word: Option<&str>,
    keep: &[u8],
    threads: usize,
    order: OutputOrder,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> ReadStats {
    let hash = word.map(|w| super::index::token_hash(w.as_bytes()));
    let filter = |index: &BlockIndex<'_>| hash.is_none_or(|h| index.may_have_token(h));
    let finder = memchr::memmem::Finder::new(keep);
    let stage = |records: &[u8], kept: &mut Vec<u8>| {
        for record in records.split_inclusive(|&b| b == b'\n') {
            if finder.find(record).is_some() {
                kept.extend_from_slice(record);
            }
        }
    };
    read_filtered_parallel(dir, &filter, &stage, threads, order, out, stop).unwrap()
}

#[test]
fn a_parallel_read_writes_what_one_reader_writes_in_the_same_order() {
    let (tmp, values) = segmented_store(23, 2);
    assert_eq!(list_segments(tmp.path()).unwrap().len(), 12);
    let (all, all_stats) = read_all(tmp.path(), &plain());
    assert_eq!(all, joined(values.iter().map(Vec::as_slice)));
    let (word, word_stats) = read_word(tmp.path(), "word7");
    assert_eq!((word_stats.blocks, word_stats.skipped_blocks), (1, 22));
    let stop = AtomicBool::new(false);
    for threads in [1, 2, 3, 16] {
        let mut out = Vec::new();
        let stats = read_parallel(tmp.path(), None, b"", threads, &mut out, &stop);
        assert_eq!(out, all, "{threads} threads");
        assert_eq!(stats, all_stats, "{threads} threads");

        let mut out = Vec::new();
        let stats = read_parallel(tmp.path(), Some("word7"), b"", threads, &mut out, &stop);
        assert_eq!(out, word, "{threads} threads");
        assert_eq!(stats, word_stats, "{threads} threads");

        // The stage decides what reaches the output; `records` counts what was read.
        let mut out = Vec::new();
        let stats = read_parallel(tmp.path(), None, b"record 03", threads, &mut out, &stop);
        let want: Vec<&[u8]> = values
            .iter()
            .filter(|v| v.windows(9).any(|w| w == b"record 03"))
            .map(Vec::as_slice)
            .collect();
        assert_eq!(want.len(), 23);
        assert_eq!(out, joined(want), "{threads} threads");
        assert_eq!(stats.records, 460);

        // In any order: the same records, and pieces of whole records of one segment.
        let mut out = Vec::new();
        let stats = read_parallel_in(
            tmp.path(),
            None,
            b"",
            threads,
            OutputOrder::Any,
            &mut out,
            &stop,
        );
        assert_eq!(stats, all_stats, "{threads} threads");
        let mut got: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
        let mut want: Vec<&[u8]> = all.split_inclusive(|&b| b == b'\n').collect();
        if threads == 1 {
            assert_eq!(got, want);
        }
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{threads} threads");
    }
}

/// An output that counts its flushes.
#[derive(Default)]
struct CountFlushes {
    out: Vec<u8>,
    flushes: usize,
}

impl Write for CountFlushes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn newest_segment_first_writes_each_segment_in_order_and_flushes_after_each() {
    let (tmp, values) = segmented_store(23, 2);
    // Segment j holds blocks 2j and 2j + 1, of 20 records each.
    let want: Vec<&[u8]> = values
        .chunks(40)
        .rev()
        .flatten()
        .map(Vec::as_slice)
        .collect();
    for threads in [1, 2, 3] {
        let mut out = CountFlushes::default();
        let stats = read_parallel_in(
            tmp.path(),
            None,
            b"",
            threads,
            OutputOrder::NewestSegmentFirst,
            &mut out,
            &AtomicBool::new(false),
        );
        assert_eq!(out.out, joined(want.iter().copied()), "{threads} threads");
        assert_eq!(out.flushes, 12);
        assert_eq!(stats.records, 460);
    }
}

#[test]
fn a_parallel_read_skips_a_corrupt_block_as_one_reader_does() {
    let (tmp, _) = segmented_store(9, 3);
    let seqs = list_segments(tmp.path()).unwrap();
    assert_eq!(seqs.len(), 3);
    // The middle segment's second block gets a flipped payload byte.
    let seg = segment_path(tmp.path(), seqs[1]);
    let mut bytes = std::fs::read(&seg).unwrap();
    let first = BlockHeader::parse(&bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    bytes[first.block_len() as usize + HEADER_LEN + 3] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let (want, want_stats) = read_all(tmp.path(), &plain());
    assert_eq!((want_stats.records, want_stats.corrupt_blocks), (160, 1));
    let mut out = Vec::new();
    let stats = read_parallel(tmp.path(), None, b"", 2, &mut out, &AtomicBool::new(false));
    assert_eq!(out, want);
    assert_eq!(stats, want_stats);
}

/// An output that sets `stop` once it holds `after` bytes.
struct StopAfter<'s> {
    out: Vec<u8>,
    after: usize,
    stop: &'s AtomicBool,
}

impl Write for StopAfter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        if self.out.len() >= self.after {
            self.stop.store(true, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_parallel_read_stops_when_its_output_sets_stop() {
    // The output stops after the first segment's records: the read returns with a prefix.
    let (tmp, values) = segmented_store(40, 20);
    let (all, _) = read_all(tmp.path(), &plain());
    let stop = AtomicBool::new(false);
    let mut out = StopAfter {
        out: Vec::new(),
        after: 1,
        stop: &stop,
    };
    let started = Instant::now();
    read_parallel(tmp.path(), None, b"", 2, &mut out, &stop);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!out.out.is_empty() && out.out.len() < all.len());
    assert!(all.starts_with(&out.out));
    assert_eq!(values.len(), 800);
}

#[test]
fn a_parallel_read_of_an_empty_store_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    let stats = read_parallel(tmp.path(), None, b"", 2, &mut out, &AtomicBool::new(false));
    assert!(out.is_empty());
    assert_eq!(stats, ReadStats::default());
}
