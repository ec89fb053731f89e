//! WAL throughput: appending batch payloads of about 1 MiB and of 64 KiB (JSON-ish log lines,
//! FsyncPolicy::Never, each batch acknowledged right away so that segments are deleted as they
//! roll), and replaying a whole WAL (rewind, then `next_unsent` until caught up: checksum and lz4
//! decompression of every batch).
//!
//! `cargo bench --bench wal -- --warm-up-time 1 --measurement-time 3`
//! Batches per second are 1 / the time per iteration of the append benchmarks.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::wal::{Appended, FsyncPolicy, FullPolicy, Wal, WalOptions};
use test_support::corpus;

/// Distinct payloads cycled through, so that batches differ as real traffic does.
const DISTINCT: usize = 8;
/// Payload bytes in the WAL the replay benchmark reads.
const REPLAY_BYTES: usize = 64 << 20;

/// Newline-separated JSON records of about 300 bytes, `len` bytes at least; returns the
/// payload and its record count.
fn payload(rng: &mut corpus::SplitMix64, len: usize) -> (Vec<u8>, u32) {
    let mut buf = Vec::with_capacity(len + 512);
    let mut records = 0;
    while buf.len() < len {
        corpus::json_record(rng, &mut buf);
        buf.push(b'\n');
        records += 1;
    }
    (buf, records)
}

fn payloads(len: usize) -> Vec<(Vec<u8>, u32)> {
    let mut rng = corpus::SplitMix64(0x9E37_79B9_7F4A_7C15);
    (0..DISTINCT).map(|_| payload(&mut rng, len)).collect()
}

fn options(dir: &std::path::Path) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Never,
        full: FullPolicy::Block,
        max_total_bytes: 1 << 30,
        ..WalOptions::default()
    }
}

fn bench_append(c: &mut Criterion) {
    for (name, len) in [("1MiB", 1 << 20), ("64KiB", 64 << 10)] {
        let payloads = payloads(len);
        let tmp = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(options(tmp.path())).expect("open");
        let mut group = c.benchmark_group("wal_append");
        group.throughput(Throughput::Bytes(payloads[0].0.len() as u64));
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (p, records) = &payloads[i % payloads.len()];
                match wal.append(0, *records, black_box(p)).expect("append") {
                    Appended::Stored(seq) => wal.acknowledge(seq),
                    Appended::Dropped => unreachable!("Block never drops"),
                }
                i += 1;
            })
        });
        group.finish();
        eprintln!(
            "wal_append/{name}: {} bytes per payload, {} bytes stored per batch",
            payloads[0].0.len(),
            wal.stats().appended_bytes / wal.stats().appended_batches.max(1)
        );
    }
}

fn bench_replay(c: &mut Criterion) {
    for (name, len) in [("1MiB", 1 << 20), ("64KiB", 64 << 10)] {
        let payloads = payloads(len);
        let tmp = tempfile::tempdir().expect("temp dir");
        let (mut wal, _) = Wal::open(options(tmp.path())).expect("open");
        let mut total = 0usize;
        let mut i = 0;
        while total < REPLAY_BYTES {
            let (p, records) = &payloads[i % payloads.len()];
            wal.append(0, *records, p).expect("append");
            total += p.len();
            i += 1;
        }
        eprintln!(
            "wal_replay/{name}: {i} batches, {total} payload bytes, {} bytes on disk",
            wal.stats().disk_bytes
        );
        let mut group = c.benchmark_group("wal_replay");
        group.throughput(Throughput::Bytes(total as u64));
        group.sample_size(10);
        group.bench_function(name, |b| {
            b.iter(|| {
                wal.rewind();
                let mut n = 0;
                while let Some(batch) = wal.next_unsent().expect("next_unsent") {
                    black_box(&batch.payload);
                    n += 1;
                }
                assert_eq!(n, i);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_append, bench_replay
}
criterion_main!(benches);
