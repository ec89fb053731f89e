//! A batch's trip through the WAL format: a realistic 4096-record batch as a shard routing to
//! Kafka cuts it (the realistic syslog mix parsed and encoded to JSON, key `{host}`, topic
//! `syslog.{facility}.{app}`), serialized with `Batch::encode_wal` and lz4-compressed the way
//! the WAL stores a payload, and decoded back with `Batch::decode_wal` (what replay does after
//! the WAL has decompressed it).
//!
//! `cargo bench --bench batch -- --warm-up-time 1 --measurement-time 3`
//! Throughput is in records and in bytes of the uncompressed payload.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::encode::{self, Encoding, Envelope};
use logtail::kafka::route::Route;
use logtail::parse::{self, Format, LegacyZone, ParseContext};
use logtail::pipeline::batch::Batch;
use test_support::corpus;

/// Records per batch: the default `batch_max_records`.
const RECORDS: usize = 4096;
const SOURCE: &str = "tcp:5514";

/// The batch a shard with a Kafka route fills from `RECORDS` lines of the realistic mix.
fn routed_batch() -> Batch {
    let route = Route::new("{host}", Some("syslog.{facility}.{app}")).expect("valid route");
    let mut received_at = Vec::new();
    encode::format_rfc3339_micros(corpus::CORPUS_RECEIVED_AT_US, &mut received_at);
    let envelope = Envelope::new(&received_at, SOURCE);
    let mut context = ParseContext::new(corpus::CORPUS_RECEIVED_AT_US, LegacyZone::Fixed(0));
    let mut batch = Batch::with_capacity(0, 1 << 20, RECORDS);
    for line in corpus::realistic_mix(RECORDS, 11) {
        let record = parse::parse(&line, Format::Auto, &mut context);
        batch.push_routed(
            corpus::CORPUS_RECEIVED_AT_US,
            |keys| route.render_key(&record, SOURCE, keys),
            |topics| {
                route.render_topic(&record, SOURCE, topics);
            },
            |values| {
                encode::encode(Encoding::Json, &line, &record, &envelope, values);
            },
        );
    }
    batch
}

fn bench_wal_format(c: &mut Criterion) {
    let batch = routed_batch();
    let mut payload = Vec::new();
    batch.encode_wal(&mut payload);
    let mut compressed = vec![0; lz4_flex::block::get_maximum_output_size(payload.len())];
    let compressed_len =
        lz4_flex::block::compress_into(&payload, &mut compressed).expect("buffer of max size");
    eprintln!(
        "batch: {} records, {} value + {} key + {} topic bytes, payload {} bytes, lz4 {} bytes",
        batch.len(),
        batch.value_bytes(),
        batch.key_bytes(),
        batch.topic_bytes(),
        payload.len(),
        compressed_len
    );

    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::ElementsAndBytes {
        elements: RECORDS as u64,
        bytes: payload.len() as u64,
    });
    let mut out = Vec::with_capacity(payload.len());
    group.bench_function("encode_wal", |b| {
        b.iter(|| {
            out.clear();
            black_box(&batch).encode_wal(&mut out);
            black_box(&out);
        })
    });
    group.bench_function("encode_wal+lz4", |b| {
        b.iter(|| {
            out.clear();
            black_box(&batch).encode_wal(&mut out);
            lz4_flex::block::compress_into(&out, &mut compressed).expect("buffer of max size")
        })
    });
    group.bench_function("decode_wal", |b| {
        b.iter(|| Batch::decode_wal(0, black_box(&payload)).expect("valid payload"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_wal_format
}
criterion_main!(benches);
