//! Local store throughput: appending batches of 1,000 JSON-ish records of about 300 bytes, and
//! reading a whole store back (no filter, output discarded).
//!
//! `append_realistic` appends the corpus as the gateway stores it, with the block index and
//! without (version-1 blocks), in the same run: the difference is what the index costs. The
//! index is built from each record's JSON (`indexed`: WAL replays, raw sources) or from what the
//! encoder said about where its members are (`indexed_from_fields`: the gateway's shards).
//!
//! `tokenize` times the index's tokenizer alone (`store::index::for_each_token`) over the
//! corpus' syslog lines and over lines shaped like syslog-ng loggen's (the end-to-end
//! load test's sender: a sequence number, a run id, a time and a long padding word).
//!
//! `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::atomic::AtomicBool;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::pipeline::batch::Batch;
use logtail::store::index::for_each_token;
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
    let lines = corpus::realistic_mix(RECORDS_PER_BATCH * DISTINCT_BATCHES, 0x5EED);
    stored_batches(&lines, fields)
}

/// `lines` stored as the gateway stores them, in batches of 1,000 (see [`realistic_batches`]).
fn stored_batches(lines: &[Vec<u8>], fields: bool) -> Vec<Batch> {
    let records = test_fixtures::stored_with_fields(lines);
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
        report_index_share(label, &bench_appending(&mut group, label, batches, format));
    }
    group.finish();
    // The end-to-end load test's traffic (loggen), whose messages repeat most of their words.
    let loggen = stored_batches(
        &loggen_like_lines(RECORDS_PER_BATCH * DISTINCT_BATCHES),
        true,
    );
    let mut group = c.benchmark_group("append_loggen");
    group.throughput(Throughput::Elements(RECORDS_PER_BATCH as u64));
    for (label, format) in [
        ("indexed_from_fields", BlockFormat::Granules),
        ("no_index", BlockFormat::Unindexed),
    ] {
        report_index_share(label, &bench_appending(&mut group, label, &loggen, format));
    }
    group.finish();
}

fn report_index_share(label: &str, stats: &logtail::store::StoreStats) {
    eprintln!(
        "{label}: {} blocks, index {:.2}% of the bytes written",
        stats.blocks_written,
        100.0 * stats.index_bytes_written as f64 / stats.bytes_written.max(1) as f64
    );
}

/// Lines shaped like those syslog-ng's loggen sends with `-i -S -s 200` (200 bytes: a sequence
/// number, a run id, the time, then a padding word), written here from what it sends.
fn loggen_like_lines(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            // loggen sends thousands of lines a second: the time changes every thousand.
            let second = i / 1000;
            let time = format!("2025-03-14T09:{:02}:{:02}", (second / 60) % 60, second % 60);
            let mut line = format!(
                "<38>{time} localhost prg00000[1234]: seq: {i:010}, thread: 0000, runid: \
                 1741943000, stamp: {time} "
            );
            while line.len() < 200 {
                line.push_str("PADD");
            }
            line.truncate(200);
            line.into_bytes()
        })
        .collect()
}

fn bench_tokenize(c: &mut Criterion) {
    let corpus = corpus::realistic_mix(RECORDS_PER_BATCH, 7);
    let loggen = loggen_like_lines(RECORDS_PER_BATCH);
    let mut group = c.benchmark_group("tokenize");
    for (label, lines) in [("corpus_lines", &corpus), ("loggen_lines", &loggen)] {
        group.throughput(Throughput::Bytes(
            lines.iter().map(|l| l.len() as u64).sum(),
        ));
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut tokens = 0usize;
                for line in lines {
                    for_each_token(black_box(line), |token| tokens += token.len());
                }
                tokens
            })
        });
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
    targets = bench_append, bench_append_index, bench_tokenize, bench_read
}
criterion_main!(benches);
