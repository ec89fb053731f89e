//! The agent's per-line work: a 256 KiB read of 200-byte lines (the default `read_buffer_bytes`)
//! cut by `LineSplitter` and copied into a `LineBatch`, as the tailer does for every read, and
//! the same through a `Multiline` joiner whose start pattern matches every line.
//!
//! `cargo bench --bench agent -- --warm-up-time 1 --measurement-time 3`
//! Throughput is in lines. `loadtest/agent-tail.sh` measures the whole agent (reads, batches,
//! shipping thread, checkpoints) in lines per CPU-second.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::agent::batch::{LineBatch, Source};
use logtail::agent::lines::{LineSplitter, Multiline};

const LINE_BYTES: usize = 200;
const READ_BYTES: usize = 256 << 10;

/// A read buffer of whole 200-byte lines (with their LF), numbered, as a writer appends them.
fn read_buffer() -> Vec<u8> {
    let mut buf = Vec::with_capacity(READ_BYTES);
    let mut n = 0;
    while buf.len() + LINE_BYTES <= READ_BYTES {
        let line = format!("2026-11-21T04:00:00.000Z app[{n}]: request served ");
        buf.extend_from_slice(line.as_bytes());
        buf.resize(buf.len() + LINE_BYTES - 1 - line.len(), b'x');
        buf.push(b'\n');
        n += 1;
    }
    buf
}

fn bench(c: &mut Criterion) {
    let buf = read_buffer();
    let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
    let source = Arc::new(Source {
        entry: "app".into(),
        path: PathBuf::from("/var/log/app.log"),
        topic: None,
        app: "app".into(),
        tags: Vec::new(),
    });
    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Elements(lines));
    let mut batch = LineBatch::with_capacity(READ_BYTES, lines as usize);
    let mut splitter = LineSplitter::new(64 << 10);
    group.bench_function("split_into_batch/256KiB_of_200B_lines", |b| {
        b.iter(|| {
            batch.reset(1);
            let used = splitter.split(black_box(&buf), 0, |line, end, truncated| {
                batch.push(&source, line, end, truncated, || 0)
            });
            black_box((used, batch.len()))
        })
    });
    let start = regex::bytes::Regex::new(r"^\d{4}-\d\d-\d\d").expect("regex");
    let mut multiline = Multiline::new(start, Duration::from_secs(1), 64 << 10);
    group.bench_function("split_multiline_into_batch/256KiB_of_200B_lines", |b| {
        b.iter(|| {
            batch.reset(1);
            let now = Instant::now();
            let used = splitter.split(black_box(&buf), 0, |line, end, truncated| {
                multiline.push(line, end, truncated, now, |event, e, t| {
                    batch.push(&source, event, e, t, || 0)
                })
            });
            black_box((used, batch.len()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
