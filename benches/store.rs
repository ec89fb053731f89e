//! Local store throughput: appending batches of 1,000 JSON-ish records of about 300 bytes, and
//! reading a whole store back (no filter, output discarded).
//!
//! `append_realistic` appends the corpus as the gateway stores it, with the block index and
//! without (version-1 blocks), in the same run: the difference is what the index costs. The
//! index is built from each record's JSON (`indexed`: WAL replays, raw sources) or from what the
//! encoder said about where its members are (`indexed_from_fields`: the gateway's shards).
//!
//! `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::AtomicBool;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::pipeline::batch::Batch;
use logtail::store::{BlockFormat, ReadOptions, StoreOptions, StoreWriter, read};
use test_support::corpus;

const RECORDS_PER_BATCH: usize = 1000;
/// Distinct batches cycled through, so that blocks differ as real traffic does.
const DISTINCT_BATCHES: usize = 16;
/// Batches in the store that the read benchmark reads.
const READ_BATCHES: usize = 100;

fn batches() -> Vec<Batch> {
    let mut rng = corpus::SplitMix64(0x9E37_79B9_7F4A_7C15);
    let mut ts = 1_741_943_000_000_000i64;
    (0..DISTINCT_BATCHES)
        .map(|i| {
            let mut b =
                Batch::with_capacity((i % 4) as u16, 320 * RECORDS_PER_BATCH, RECORDS_PER_BATCH);
            for _ in 0..RECORDS_PER_BATCH {
                ts += 50;
                b.push_with(ts, |buf| corpus::json_record(&mut rng, buf));
            }
            b
        })
        .collect()
}

fn options(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        max_total_bytes: 256 << 20, // keep the disk use of long runs bounded
        ..StoreOptions::default()
    }
}

fn bench_append(c: &mut Criterion) {
    let batches = batches();
    let value_bytes = batches[0].value_bytes() as u64;
    let throughputs = [
        ("append_bytes", Throughput::Bytes(value_bytes)),
        (
            "append_records",
            Throughput::Elements(RECORDS_PER_BATCH as u64),
        ),
    ];
    for (name, throughput) in throughputs {
        let mut group = c.benchmark_group(name);
        group.throughput(throughput);
        // With the block index (what the gateway writes), and without (blocks as before the
        // index, version 1): the difference is what building the index costs.
        for (label, format) in [
            ("batch_of_1000", BlockFormat::Granules),
            ("batch_of_1000_no_index", BlockFormat::Unindexed),
        ] {
            bench_appending(&mut group, label, &batches, format);
        }
        group.finish();
    }
}

/// Times appending `batches` in turn to a new store, in blocks of `format`; returns the writer's
/// counts at the end.
fn bench_appending(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    batches: &[Batch],
    format: BlockFormat,
) -> logtail::store::StoreStats {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut writer = StoreWriter::open(options(tmp.path())).expect("open");
    writer.set_block_format(format);
    let mut i = 0;
    group.bench_function(label, |b| {
        b.iter(|| {
            writer
                .append(black_box(&batches[i % batches.len()]))
                .expect("append");
            i += 1;
        })
    });
    writer.stats()
}

/// The benches' syslog corpus as the gateway stores it (~330-byte records with a `message` the
/// block index tokenizes), in batches of 1,000; with `fields`, each record carries what its
/// encoder said about where its indexed members are, as the gateway's shards hand it over.
fn realistic_batches(fields: bool) -> Vec<Batch> {
    let records = test_fixtures::stored_corpus_with_fields(RECORDS_PER_BATCH * DISTINCT_BATCHES);
    records
        .chunks(RECORDS_PER_BATCH)
        .map(|chunk| {
            let mut b = Batch::with_capacity(0, 400 * RECORDS_PER_BATCH, RECORDS_PER_BATCH);
            for (record, indexed) in chunk {
                b.push(corpus::CORPUS_RECEIVED_AT_US, record);
                if let Some(indexed) = indexed.filter(|_| fields) {
                    b.set_index_fields(indexed);
                }
            }
            b
        })
        .collect()
}

/// Appending realistic records with the block index of today (granules, format 3), of before
/// (one filter per block, format 2), and without: what building it costs.
fn bench_append_index(c: &mut Criterion) {
    let (batches, with_fields) = (realistic_batches(false), realistic_batches(true));
    let mut group = c.benchmark_group("append_realistic");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    for (label, batches, format) in [
        ("indexed", &batches, BlockFormat::Granules),
        ("indexed_from_fields", &with_fields, BlockFormat::Granules),
        ("block_index_v2", &batches, BlockFormat::BlockIndex),
        ("no_index", &batches, BlockFormat::Unindexed),
    ] {
        let stats = bench_appending(&mut group, label, batches, format);
        eprintln!(
            "{label}: {} blocks, index {:.2}% of the bytes written",
            stats.blocks_written,
            100.0 * stats.index_bytes_written as f64 / stats.bytes_written.max(1) as f64
        );
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let batches = batches();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut value_bytes = 0u64;
    {
        let mut writer = StoreWriter::open(options(tmp.path())).expect("open");
        for i in 0..READ_BATCHES {
            let b = &batches[i % batches.len()];
            writer.append(b).expect("append");
            value_bytes += b.value_bytes() as u64;
        }
        writer.sync().expect("sync");
        eprintln!(
            "read bench store: {} records, {} value bytes, {} bytes on disk",
            writer.stats().records_written,
            value_bytes,
            writer.stats().disk_bytes
        );
    }
    let opts = ReadOptions::default();
    let stop = AtomicBool::new(false);
    let throughputs = [
        ("read_bytes", Throughput::Bytes(value_bytes)),
        (
            "read_records",
            Throughput::Elements((READ_BATCHES * RECORDS_PER_BATCH) as u64),
        ),
    ];
    for (name, throughput) in throughputs {
        let mut group = c.benchmark_group(name);
        group.throughput(throughput);
        group.bench_function("whole_store", |b| {
            b.iter(|| {
                let stats = read(tmp.path(), &opts, &mut std::io::sink(), &stop).expect("read");
                assert_eq!(stats.records, (READ_BATCHES * RECORDS_PER_BATCH) as u64);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_append, bench_append_index, bench_read
}
criterion_main!(benches);
