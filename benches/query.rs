//! Query matching over stored records: the realistic corpus parsed and JSON-encoded as the store
//! keeps it (~200-byte lines, ~330-byte records), each record indexed with `JsonRecord::new`
//! and tested with `Matcher::is_match`, as `logtail search` does on every record it scans.
//!
//! The `query_prefiltered` group times what `logtail search` runs on each piece of records the
//! store's reader hands over: the literal prefilter over the whole piece
//! (`Matcher::candidates`), then `is_match` on the candidates only. Against the `query` group
//! it shows what the prefilter saves for each query form.
//!
//! The `block_skip_decision` group times what the store's reader asks of each block's index
//! before deciding to skip it, or which of its granules to read (`Matcher::may_match_block` on
//! the block, then on each granule).
//!
//! The `query` and `query_prefiltered` groups report the thread's CPU time, not wall time.
//!
//! `cargo bench --bench query`. Throughput is in bytes of records; records/s is that divided by
//! the mean record size printed at the start.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::pipeline::batch::Batch;
use logtail::query::{JsonRecord, Matcher};
use logtail::store::{BlockIndex, StoreOptions, StoreWriter};

mod common;

use test_support::corpus;

const LINES: usize = 10_000;

/// Queries of each form, named for the report (how many records each matches is printed, so
/// that the figures can be read against it).
const QUERIES: &[(&str, &str)] = &[
    ("word_absent", "xylophone"),
    ("word_common", "timeout"),
    ("phrase", r#""connection reset""#),
    ("regex", r"/err(or)? \d+/"),
    ("regex_rare", r"/zebr[a]corn \w+/"),
    ("word_get", "GET"),
    ("host_severity", "host:web-* severity:<=warning"),
    ("sd_param", "sd.origin.ip:10.0.1*"),
    ("boolean", "(error OR warning) -app:cron NOT disk"),
    ("exists", "_exists_:procid"),
];

fn benches(c: &mut Criterion) {
    let records = test_fixtures::stored_corpus(LINES);
    let bytes: usize = records.iter().map(Vec::len).sum();
    eprintln!(
        "corpus: {} records, mean {} bytes",
        records.len(),
        bytes / records.len()
    );

    let mut group = c.benchmark_group("query");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("index_only", |b| {
        b.iter(|| {
            for record in &records {
                black_box(JsonRecord::new(black_box(record)));
            }
        })
    });
    for &(name, query) in QUERIES {
        let matcher = Matcher::compile(query).expect("bench queries compile");
        let matched = records
            .iter()
            .filter(|r| matcher.is_match(&JsonRecord::new(r)))
            .count();
        eprintln!("{name}: {query:?} matches {matched} of {}", records.len());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                on_cpu(iters, || {
                    records
                        .iter()
                        .filter(|r| matcher.is_match(&JsonRecord::new(black_box(r))))
                        .count()
                })
            })
        });
    }
    group.finish();

    // What `logtail search` does: the literal prefilter over the whole piece the store's reader
    // hands over (all records, ~256 KiB at a time there), then each candidate record matched.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for record in &records {
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < 256 << 10 => chunk.extend_from_slice(record),
            _ => chunks.push(record.clone()),
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(b'\n');
        }
    }
    let mut group = c.benchmark_group("query_prefiltered");
    group.throughput(Throughput::Bytes(bytes as u64));
    for &(name, query) in QUERIES {
        let matcher = Matcher::compile(query).expect("bench queries compile");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                on_cpu(iters, || {
                    let mut n = 0;
                    for chunk in &chunks {
                        n += matcher
                            .candidates(black_box(chunk))
                            .filter(|r| matcher.is_match(&JsonRecord::new(r)))
                            .count();
                    }
                    n
                })
            })
        });
    }
    group.finish();

    // The skip decision: one block's index (the first ~3,000 records, one block as the gateway
    // cuts them at high rate) tested against each query, as the store's reader does per block
    // (and per granule).
    let tmp = tempfile::tempdir().expect("temp dir");
    let index = first_block_index(tmp.path(), &records);
    let index = BlockIndex::parse(&index).expect("the store wrote a valid index");
    let mut group = c.benchmark_group("block_skip_decision");
    // A block of granules (format 3): the block's view, then each granule's, as the reader
    // asks; the count of granules to read is the decision.
    let decide = |matcher: &Matcher, index: &BlockIndex<'_>| -> usize {
        if !matcher.may_match_block(index) {
            return 0;
        }
        index
            .granules()
            .filter(|granule| matcher.may_match_block(granule))
            .count()
    };
    for &(name, query) in QUERIES {
        let matcher = Matcher::compile(query).expect("bench queries compile");
        eprintln!(
            "{name}: granules to read: {} of {}",
            decide(&matcher, &index),
            index.granule_count()
        );
        group.bench_function(name, |b| b.iter(|| decide(&matcher, black_box(&index))));
    }
    group.finish();
}

/// The CPU time this thread spends running `f` `iters` times: what the `query` groups report,
/// because on the shared 2-core machine wall time under load measures the others' builds
/// (10× swings between runs of unchanged code were seen at load average 9).
fn on_cpu<T>(iters: u64, mut f: impl FnMut() -> T) -> std::time::Duration {
    let now = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the struct it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let start = now();
    for _ in 0..iters {
        black_box(f());
    }
    now() - start
}

/// Writes `records` to a store in `dir` and returns the index of its first block, read from the
/// segment as the format says: `index_len` at header offset 20, the index after the payload.
fn first_block_index(dir: &std::path::Path, records: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = StoreWriter::open(StoreOptions {
        dir: dir.to_path_buf(),
        ..StoreOptions::default()
    })
    .expect("open store");
    let mut batch = Batch::with_capacity(0, 1 << 22, records.len());
    for r in records {
        batch.push(corpus::CORPUS_RECEIVED_AT_US, r);
    }
    writer.append(&batch).expect("append");
    writer.sync().expect("sync");
    let segment = std::fs::read(dir.join("00000000000000000001.seg")).expect("segment");
    let le32 = |at: usize| u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes"));
    let (compressed, index_len) = (le32(16) as usize, le32(20) as usize);
    eprintln!(
        "first block: {} records, {compressed} bytes compressed, index {index_len} bytes",
        le32(8)
    );
    segment[48 + compressed..48 + compressed + index_len].to_vec()
}

criterion_group! {
    name = query;
    config = common::criterion();
    targets = benches
}
criterion_main!(query);
