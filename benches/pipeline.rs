//! The whole per-line hot path of a shard on a realistic mix: a TCP read buffer is framed
//! (newline and octet counting), each message parsed and encoded to JSON into a batch — what
//! `Shard::receive` does for every read. Throughput is in lines.
//!
//! Run: `cargo bench --bench pipeline`.

#[path = "common/mod.rs"]
mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logtail::encode::{self, Encoding, Envelope};
use logtail::parse::{self, Format, LegacyZone, ParseContext};
use logtail::pipeline::batch::Batch;
use logtail::source::framing::{Decoder, Framing, OversizePolicy};
use test_support::corpus;

const LINES: usize = 10_000;
/// 2026-11-21T10:00:00Z, a receive time close to the corpus' timestamps.
const NOW_US: i64 = 1_795_255_200_000_000;

/// The corpus as one stream: even lines newline-framed, odd ones octet-counted.
fn stream(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i % 2 == 0 {
            out.extend_from_slice(line);
            out.push(b'\n');
        } else {
            out.extend_from_slice(format!("{} ", line.len()).as_bytes());
            out.extend_from_slice(line);
        }
    }
    out
}

fn frame_parse_encode(c: &mut Criterion) {
    let lines = corpus::realistic_mix(LINES, 7);
    let input = stream(&lines);
    let mut group = c.benchmark_group("shard_hot_path");
    group.throughput(Throughput::Elements(LINES as u64));

    group.bench_function("frame", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(Framing::Auto, 65536, OversizePolicy::Truncate);
            let mut frames = 0usize;
            decoder.decode(&input, true, |_| frames += 1);
            assert_eq!(frames, LINES);
        })
    });

    group.bench_function("frame_parse", |b| {
        let mut context = ParseContext::new(NOW_US, LegacyZone::Fixed(0));
        b.iter(|| {
            let mut decoder = Decoder::new(Framing::Auto, 65536, OversizePolicy::Truncate);
            let mut parse_errors = 0usize;
            decoder.decode(&input, true, |frame| {
                let record = parse::parse(frame.message, Format::Auto, &mut context);
                parse_errors += usize::from(record.parse_error.is_some());
            });
            assert_eq!(parse_errors, 0);
        })
    });

    group.bench_function("frame_parse_encode_json", |b| {
        let mut received_at = Vec::new();
        encode::format_rfc3339_micros(NOW_US, &mut received_at);
        let mut context = ParseContext::new(NOW_US, LegacyZone::Fixed(0));
        b.iter_batched_ref(
            || Batch::with_capacity(0, 4 << 20, LINES),
            |batch| {
                let mut decoder = Decoder::new(Framing::Auto, 65536, OversizePolicy::Truncate);
                let envelope = Envelope::new(&received_at, "192.0.2.10:51514");
                decoder.decode(&input, true, |frame| {
                    let record = parse::parse(frame.message, Format::Auto, &mut context);
                    batch.push_with(NOW_US, |out| {
                        encode::encode(Encoding::Json, frame.message, &record, &envelope, out);
                    });
                });
                assert_eq!(batch.len(), LINES);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = frame_parse_encode
}
criterion_main!(benches);
