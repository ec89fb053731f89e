//! Parse and parse + JSON-encode throughput on the shared realistic corpus.
//!
//! `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use logtail::encode::{Encoding, Envelope, encode, format_rfc3339_micros};
use logtail::parse::{Format, LegacyZone, ParseContext, parse};
use test_support::corpus;

mod common;

const LINES: usize = 10_000;

fn benches(c: &mut Criterion) {
    let lines = corpus::realistic_mix(LINES, 0x5EED);
    let received_us = corpus::CORPUS_RECEIVED_AT_US;
    check_corpus(&lines, received_us);

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("realistic_mix", |b| {
        b.iter(|| {
            // A context per pass, as the ingest creates one per receive.
            let mut ctx = ParseContext::new(received_us, LegacyZone::Local);
            for line in &lines {
                black_box(parse(black_box(line), Format::Auto, &mut ctx));
            }
        })
    });
    group.finish();

    let mut received_at = Vec::new();
    format_rfc3339_micros(received_us, &mut received_at);
    let envelope = Envelope::new(&received_at, "udp:5514");
    let mut out = Vec::with_capacity(LINES * 400);
    let mut group = c.benchmark_group("parse_encode_json");
    group.throughput(Throughput::Elements(LINES as u64));
    group.bench_function("realistic_mix", |b| {
        b.iter(|| {
            out.clear();
            let mut ctx = ParseContext::new(received_us, LegacyZone::Local);
            for line in &lines {
                let record = parse(black_box(line), Format::Auto, &mut ctx);
                encode(Encoding::Json, line, &record, &envelope, &mut out);
            }
            black_box(out.len())
        })
    });
    group.finish();
}

/// The bench measures the paths it claims to: every line parses, in the advertised mix.
fn check_corpus(lines: &[Vec<u8>], received_us: i64) {
    let mut ctx = ParseContext::new(received_us, LegacyZone::Local);
    let (mut rfc5424, mut with_sd, mut cisco, mut no_host) = (0, 0, 0, 0);
    for line in lines {
        let record = parse(line, Format::Auto, &mut ctx);
        assert_eq!(
            record.parse_error,
            None,
            "{}",
            String::from_utf8_lossy(line)
        );
        assert!(record.timestamp.is_some() && record.app.is_some());
        rfc5424 += usize::from(record.version.is_some());
        with_sd += usize::from(record.structured_data.is_some());
        cisco += usize::from(record.version.is_none() && record.msgid.is_some());
        no_host += usize::from(record.host.is_none());
    }
    let mean_len = lines.iter().map(Vec::len).sum::<usize>() / lines.len();
    eprintln!(
        "corpus: {} lines, mean {mean_len} bytes, {rfc5424} RFC 5424 ({with_sd} with SD), \
         {cisco} Cisco, {no_host} without hostname",
        lines.len()
    );
}

criterion_group! {
    name = parse_benches;
    config = common::criterion();
    targets = benches
}
criterion_main!(parse_benches);
