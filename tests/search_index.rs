//! The store's block index under search: for random stores (blocks of every format: without an
//! index, as written before it existed; with one filter per block, as written before granules;
//! with granules) and random queries, searching with the index finds exactly what a
//! brute-force filter over every record `read` returns; and blocks and granules are really
//! skipped.

use test_fixtures as common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use logtail::query::{JsonRecord, Matcher};
use logtail::search::{self, Order, RecordFormat, SearchOptions, record_time_us};
use logtail::store::{
    BlockFormat, MIN_GRANULE_BYTES, ReadOptions, StoreBatch, StoreOptions, StoreWriter, read,
};
use proptest::prelude::*;

struct VecBatch(Vec<(i64, Vec<u8>)>);

impl StoreBatch for VecBatch {
    fn shard(&self) -> u16 {
        0
    }

    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.0.iter().map(|(ts, v)| (*ts, v.as_slice()))
    }
}

/// Writes each batch as one block of its format (granules as small as a writer allows, so that
/// a batch of a few padded records makes several).
fn write_store(dir: &Path, batches: &[(BlockFormat, Vec<Vec<u8>>)]) {
    write_store_in_segments(dir, batches, StoreOptions::default().max_segment_bytes);
}

/// [`write_store`], rolling to a new segment past `max_segment_bytes` (1: a segment per block).
fn write_store_in_segments(
    dir: &Path,
    batches: &[(BlockFormat, Vec<Vec<u8>>)],
    max_segment_bytes: u64,
) {
    let mut writer = StoreWriter::open(StoreOptions {
        dir: dir.to_path_buf(),
        max_segment_bytes,
        ..StoreOptions::default()
    })
    .unwrap();
    writer.set_granule_bytes(MIN_GRANULE_BYTES);
    let mut ts = 0;
    for (format, records) in batches {
        writer.set_block_format(*format);
        let batch = VecBatch(
            records
                .iter()
                .map(|r| {
                    ts += 1;
                    (ts, r.clone())
                })
                .collect(),
        );
        writer.append(&batch).unwrap();
    }
    writer.sync().unwrap();
}

/// Appends syslog lines as the gateway does: each parsed, encoded into a pipeline batch with
/// what its encoder said about where the indexed members are, and the batch appended to the
/// store (the block index then comes from those fields, not from reading the JSON).
fn write_syslog_batches(dir: &Path, batches: &[Vec<(i64, Vec<u8>)>]) {
    use logtail::encode::{Encoding, Envelope, encode, format_rfc3339_micros};
    use logtail::parse::{Format, LegacyZone, ParseContext, parse};
    use logtail::pipeline::batch::Batch;
    let mut writer = StoreWriter::open(StoreOptions {
        dir: dir.to_path_buf(),
        ..StoreOptions::default()
    })
    .unwrap();
    let mut with_fields = 0;
    for lines in batches {
        let mut batch = Batch::with_capacity(3, 4096, lines.len());
        for (received_at_us, line) in lines {
            let mut received_at = Vec::new();
            format_rfc3339_micros(*received_at_us, &mut received_at);
            let envelope = Envelope::new(&received_at, "tcp:5514");
            let mut context = ParseContext::new(*received_at_us, LegacyZone::Fixed(0));
            let record = parse(line, Format::Auto, &mut context);
            let mut fields = None;
            batch.push_with(*received_at_us, |out| {
                fields = encode(Encoding::Json, line, &record, &envelope, out);
            });
            if let Some(fields) = fields {
                with_fields += 1;
                batch.set_index_fields(fields);
            }
        }
        writer.append(&batch).unwrap();
    }
    writer.sync().unwrap();
    // Every line generated below has a timestamp the encoder knows exactly, or none.
    assert_eq!(with_fields, batches.iter().map(Vec::len).sum::<usize>());
}

/// The records of output that ends each with a newline (some may be empty).
fn lines(out: &[u8]) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = out.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(
        records.pop(),
        Some(Vec::new()),
        "output ends with a newline"
    );
    records
}

fn all_records(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    read(
        dir,
        &ReadOptions::default(),
        &mut out,
        &AtomicBool::new(false),
    )
    .unwrap();
    lines(&out)
}

/// What a full scan without any index finds.
fn brute_force(dir: &Path, matcher: &Matcher, opts: &SearchOptions) -> Vec<Vec<u8>> {
    all_records(dir)
        .into_iter()
        .filter(|raw| {
            let record = JsonRecord::new(raw);
            if !matcher.is_match(&record) {
                return false;
            }
            if opts.from_us.is_none() && opts.to_us.is_none() {
                return true;
            }
            record_time_us(&record).is_some_and(|t| {
                opts.from_us.is_none_or(|from| t >= from) && opts.to_us.is_none_or(|to| t < to)
            })
        })
        .collect()
}

fn indexed_search(dir: &Path, matcher: &Matcher, opts: &SearchOptions) -> (Vec<Vec<u8>>, u64) {
    let mut out = Vec::new();
    let stats = search::search(
        dir,
        matcher,
        opts,
        RecordFormat::Json,
        &mut out,
        &AtomicBool::new(false),
    )
    .unwrap();
    (lines(&out), stats.skipped_blocks)
}

const HOSTS: &[&str] = &["web-01", "WEB-02", "db-1", "caché", "web-01 "];
const APPS: &[&str] = &["nginx", "sshd", "Cron", "postfix/smtpd"];
const WORDS: &[&str] = &[
    "timeout",
    "Timeout",
    "disk",
    "full",
    "reset",
    "error",
    "#42",
    "x42",
    "a_b",
    "grüße",
    "GRÜSSE",
    "conn",
    "connection",
    "peer",
    "K",
    "\u{212a}elvin",
    "kelvin",
    "ok",
];
const SEPARATORS: &[&str] = &[" ", ".", "\\n", "-", "\\\"", "\\u00e9", "\\\\x", "/", ""];
/// Times: minutes of one hour, some unreadable, with and without an offset.
const TIMES: &[&str] = &[
    "2026-11-21T10:00:00Z",
    "2026-11-21T10:10:00.5Z",
    "2026-11-21T11:20:00+01:00",
    "2026-11-21T10:30:00.123456789Z",
    "2026-11-21 10:40:00Z",
    "2026-11-21T10:50:60Z",
    "yesterday",
];
const SEVERITIES: &[&str] = &[
    "0", "3", "4", "6", "7", "\"3\"", "3.0", "2.5", "9", "\"info\"", "null",
];

fn message() -> impl Strategy<Value = String> {
    prop::collection::vec((0..WORDS.len(), 0..SEPARATORS.len()), 0..6).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(w, s)| format!("{}{}", WORDS[w], SEPARATORS[s]))
            .collect()
    })
}

/// A stored record: mostly the encoder's JSON with members left out at random, sometimes a
/// repeated member or an array, sometimes not JSON at all (a raw store).
fn record() -> impl Strategy<Value = Vec<u8>> {
    let json = (
        prop::option::of(0..SEVERITIES.len()),
        prop::option::of(0u8..26),
        prop::option::of(0..TIMES.len()),
        prop::option::of(0..HOSTS.len()),
        prop::option::of(0..APPS.len()),
        message(),
        prop::option::of(0..TIMES.len()),
        0u8..8,
    )
        .prop_map(|(sev, fac, ts, host, app, msg, received, quirk)| {
            let mut members = Vec::new();
            if let Some(f) = fac {
                members.push(format!("\"facility\":{f}"));
            }
            if let Some(s) = sev {
                members.push(format!("\"severity\":{}", SEVERITIES[s]));
            }
            if let Some(t) = ts {
                members.push(format!("\"timestamp\":\"{}\"", TIMES[t]));
            }
            if let Some(h) = host {
                members.push(format!("\"host\":\"{}\"", HOSTS[h]));
            }
            if let Some(a) = app {
                // As the encoder writes it: `/` unescaped (the search's literal prefilter also
                // copes with another writer's `\/`: see `src/query/prefilter.rs`).
                members.push(format!("\"app\":\"{}\"", APPS[a]));
            }
            match quirk {
                0 => members.push(format!("\"message\":[\"{msg}\",42]")),
                1 => members.push(format!("\"message\":\"{msg}\",\"message\":\"reset\"")),
                2 => members.push("\"host\":\"db-1\"".to_string()),
                _ => members.push(format!("\"message\":\"{msg}\"")),
            }
            if let Some(t) = received {
                members.push(format!("\"received_at\":\"{}\"", TIMES[t]));
            }
            if quirk == 3 {
                members.push("\"severity\":[7,1]".to_string());
            }
            if quirk == 4 {
                // Big enough that a few such records fill a granule.
                members.push(format!("\"pad\":\"{}\"", "p".repeat(6000)));
            }
            format!("{{{}}}", members.join(",")).into_bytes()
        });
    prop_oneof![
        9 => json,
        1 => message().prop_map(|m| m.replace("\\n", " ").into_bytes()),
    ]
}

/// Separators as a sender writes them (the JSON encoder escapes some of them).
const RAW_SEPARATORS: &[&[u8]] = &[
    b" ",
    b".",
    b"\n",
    b"-",
    b"\"",
    "é".as_bytes(),
    b"\\x",
    b"/",
    b"",
    b"\t",
    b"\x01",
    b"\xff",
    b"\\",
];

fn raw_message() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0..WORDS.len(), 0..RAW_SEPARATORS.len()), 0..6).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(w, s)| [WORDS[w].as_bytes(), RAW_SEPARATORS[s]].concat())
            .collect()
    })
}

/// A syslog line and when it was received (within the hour `time_range` covers): RFC 5424 with
/// or without a timestamp, RFC 3164 (its year and zone from the receive time), or no header.
fn syslog_line() -> impl Strategy<Value = (i64, Vec<u8>)> {
    const BASE: i64 = 1_795_255_200_000_000;
    let received = (0i64..70).prop_map(|m| BASE + m * 60_000_000 + 123_456);
    let host = prop_oneof![
        (0..HOSTS.len()).prop_map(|h| HOSTS[h].replace(' ', "_").into_bytes()),
        Just(b"we\"b".to_vec()),
        Just(b"h\xffst".to_vec()),
    ];
    let app = (0..APPS.len()).prop_map(|a| APPS[a].replace(' ', "_").into_bytes());
    let header = prop_oneof![
        (0u8..192, 0..TIMES.len() + 1, host.clone(), app.clone()).prop_map(|(pri, t, h, a)| {
            let time = TIMES.get(t).filter(|t| !t.contains(' ')).unwrap_or(&"-");
            [
                format!("<{pri}>1 {time} ").into_bytes(),
                h,
                b" ".to_vec(),
                a,
                b" - - - ".to_vec(),
            ]
            .concat()
        }),
        (0u8..192, 0u8..70, host, app).prop_map(|(pri, m, h, a)| {
            let time = format!("Nov 21 {:02}:{:02}:07", 10 + m / 60, m % 60);
            [
                format!("<{pri}>{time} ").into_bytes(),
                h,
                b" ".to_vec(),
                a,
                b": ".to_vec(),
            ]
            .concat()
        }),
        Just(Vec::new()),
    ];
    (received, header, raw_message()).prop_map(|(at, header, msg)| (at, [header, msg].concat()))
}

fn term() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..WORDS.len()).prop_map(|w| WORDS[w].to_string()),
        (0..WORDS.len(), 0..WORDS.len())
            .prop_map(|(a, b)| format!("\"{} {}\"", WORDS[a], WORDS[b])),
        Just("\"imeout\"".to_string()),
        Just("\"ll.reset\"".to_string()),
        Just("tim*".to_string()),
        Just("/t.meout/".to_string()),
        (0..HOSTS.len()).prop_map(|h| format!("host:\"{}\"", HOSTS[h])),
        Just("host:web-*".to_string()),
        (0..APPS.len()).prop_map(|a| format!("app:\"{}\"", APPS[a])),
        (0..5usize, 0u8..8).prop_map(|(op, code)| {
            format!("severity:{}{code}", ["", "<", "<=", ">", ">="][op])
        }),
        Just("severity:err".to_string()),
        (0..5usize, 0u8..24).prop_map(|(op, code)| {
            format!("facility:{}{code}", ["", "<", "<=", ">", ">="][op])
        }),
        Just("_exists_:host".to_string()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    let leaf = term();
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            inner.prop_map(|a| format!("-{a}")),
        ]
    })
}

fn format() -> impl Strategy<Value = BlockFormat> {
    prop_oneof![
        1 => Just(BlockFormat::Unindexed),
        1 => Just(BlockFormat::BlockIndex),
        2 => Just(BlockFormat::Granules),
    ]
}

fn time_range() -> impl Strategy<Value = (Option<i64>, Option<i64>)> {
    // 2026-11-21T10:00:00Z and minutes after it.
    const BASE: i64 = 1_795_255_200_000_000;
    let at = (0i64..70).prop_map(|m| BASE + m * 60_000_000);
    (prop::option::of(at.clone()), prop::option::of(at))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn indexed_search_finds_exactly_what_a_full_scan_finds(
        batches in prop::collection::vec(
            (format(), prop::collection::vec(record(), 1..12)),
            1..10,
        ),
        syslog_batches in prop::collection::vec(prop::collection::vec(syslog_line(), 1..12), 0..6),
        query in query(),
        (from_us, to_us) in time_range(),
        // Searched in 1 to 3 threads, over one segment or one per block of `batches`.
        threads in 1usize..4,
        segment_per_block in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let segment_bytes = if segment_per_block { 1 } else { StoreOptions::default().max_segment_bytes };
        write_store_in_segments(tmp.path(), &batches, segment_bytes);
        write_syslog_batches(tmp.path(), &syslog_batches);
        let matcher = Matcher::compile(&query).unwrap();
        let opts = SearchOptions {
            from_us,
            to_us,
            limit: None,
            order: Order::OldestFirst,
            follow: false,
            threads,
        };
        let want = brute_force(tmp.path(), &matcher, &opts);
        let (got, _) = indexed_search(tmp.path(), &matcher, &opts);
        prop_assert_eq!(
            got.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>(),
            want.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>(),
            "query {:?}", query
        );
        let count = search::count(tmp.path(), &matcher, &opts, &AtomicBool::new(false)).unwrap();
        prop_assert_eq!(count.matched, want.len() as u64);
        prop_assert_eq!(
            count.scanned_blocks + count.skipped_blocks,
            (batches.len() + syslog_batches.len()) as u64
        );
    }
}

/// Eight blocks of records that differ by host, app, severity, time and words: each query
/// below reads only the blocks that can match, and blocks written without an index are read.
#[test]
fn queries_skip_the_blocks_their_index_rules_out() {
    let block = |i: usize| -> Vec<Vec<u8>> {
        (0..50)
            .map(|j| {
                format!(
                    r#"{{"facility":{},"severity":{},"timestamp":"2026-11-21T{:02}:{:02}:00Z","host":"host-{i}","app":"app-{}","message":"request {j} served word{i} in {}ms"}}"#,
                    16 + i % 2,
                    i % 8,
                    10 + i,
                    j,
                    i % 4,
                    j * 7,
                )
                .into_bytes()
            })
            .collect()
    };
    for format in [BlockFormat::BlockIndex, BlockFormat::Granules] {
        let tmp = tempfile::tempdir().unwrap();
        // Block 7 is written as before the index: it is always read.
        let batches: Vec<(BlockFormat, Vec<Vec<u8>>)> = (0..8)
            .map(|i| {
                let f = if i == 7 {
                    BlockFormat::Unindexed
                } else {
                    format
                };
                (f, block(i))
            })
            .collect();
        write_store(tmp.path(), &batches);
        check_skips(tmp.path(), format);
    }
}

fn check_skips(dir: &Path, format: BlockFormat) {
    let hour = |h: i64| 1_795_255_200_000_000 + (h - 10) * 3_600_000_000;
    for (query, from_us, to_us, matched, scanned) in [
        ("word3", None, None, 50, 2),
        ("WORD3 served", None, None, 50, 2),
        ("\"served word3 in\"", None, None, 50, 2),
        ("host:HOST-2", None, None, 50, 2),
        ("app:app-1", None, None, 100, 3),
        ("severity:<=crit", None, None, 150, 4),
        ("facility:local1", None, None, 200, 4),
        ("host:host-1 severity:1", None, None, 50, 2),
        ("host:host-1 severity:2", None, None, 0, 1),
        ("(word1 OR word4)", None, None, 100, 3),
        ("", Some(hour(12)), Some(hour(14)), 100, 3),
        ("word3", Some(hour(15)), None, 0, 1),
        // Never skipped: NOT, regexes, wildcards, words only inside a token.
        ("-word3", None, None, 350, 8),
        ("/word3/", None, None, 50, 8),
        ("word*", None, None, 400, 8),
        ("\"ord3\"", None, None, 50, 8),
        ("host:host-*", None, None, 400, 8),
    ] {
        let matcher = Matcher::compile(query).unwrap();
        let opts = SearchOptions {
            from_us,
            to_us,
            limit: None,
            order: Order::OldestFirst,
            follow: false,
            threads: 1,
        };
        let stats = search::count(dir, &matcher, &opts, &AtomicBool::new(false)).unwrap();
        assert_eq!(
            (stats.matched, stats.scanned_blocks, stats.skipped_blocks),
            (matched, scanned, 8 - scanned),
            "{query} {from_us:?} {to_us:?} {format:?}"
        );
        assert_eq!(
            brute_force(dir, &matcher, &opts).len() as u64,
            matched,
            "{query}"
        );
    }
}

/// `logtail search --stats --dir DIR timeout`: its standard output and error.
fn search_timeout_with_stats(dir: &Path) -> (String, String) {
    let out = common::process::logtail()
        .args(["search", "--stats", "--dir"])
        .arg(dir)
        .arg("timeout")
        .output()
        .unwrap();
    assert!(out.status.success());
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A store written entirely before the index (version-1 blocks) searches as before: every
/// block is read, and the CLI says so with --stats. The same store written with an index reads
/// one block of three.
#[test]
fn a_store_without_index_still_searches() {
    let records = |words: &str| -> Vec<Vec<u8>> {
        vec![format!(r#"{{"severity":3,"host":"h","message":"{words}"}}"#).into_bytes()]
    };
    let match_line = "{\"severity\":3,\"host\":\"h\",\"message\":\"timeout here\"}\n";
    for (format, stats) in [
        (
            BlockFormat::Unindexed,
            "1 matched, 3 records scanned; 3 blocks searched, 0 skipped by the index\n",
        ),
        (
            BlockFormat::BlockIndex,
            "1 matched, 1 records scanned; 1 blocks searched, 2 skipped by the index\n",
        ),
        (
            BlockFormat::Granules,
            "1 matched, 1 records scanned; 1 blocks searched, 2 skipped by the index\n",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        write_store(
            tmp.path(),
            &[
                (format, records("disk full")),
                (format, records("timeout here")),
                (format, records("all good")),
            ],
        );
        assert_eq!(
            search_timeout_with_stats(tmp.path()),
            (match_line.to_string(), stats.to_string()),
            "{format:?}"
        );
    }
}

/// Granules a block of `records` is cut into at `granule_bytes`: as the writer cuts them, by
/// framed bytes (12 bytes of frame per record), a record never split.
fn granules_of(records: &[Vec<u8>], granule_bytes: usize) -> u64 {
    let (mut granules, mut filled) = (0, 0);
    for r in records {
        let framed = 12 + r.len();
        if filled == 0 || filled + framed > granule_bytes {
            granules += 1;
            filled = 0;
        }
        filled += framed;
    }
    granules
}

/// Blocks of several granules, one rare word per block in one granule: a search for it
/// decompresses that granule alone in each block and finds exactly its records; a word in
/// every record reads every granule.
#[test]
fn a_rare_word_reads_only_the_granules_that_hold_it() {
    let tmp = tempfile::tempdir().unwrap();
    let block = |b: usize| -> Vec<Vec<u8>> {
        (0..600)
            .map(|j| {
                let rare = if j == 50 + 70 * b { " zebracorn" } else { "" };
                format!(
                    r#"{{"severity":6,"host":"web-01","message":"GET /api/items/{} served in {}ms by worker {}{rare}"}}"#,
                    j % 10,
                    j % 13,
                    j % 7
                )
                .into_bytes()
            })
            .collect()
    };
    let blocks: Vec<Vec<Vec<u8>>> = (0..4).map(block).collect();
    let per_block = granules_of(&blocks[0], MIN_GRANULE_BYTES);
    assert!(per_block >= 3, "{per_block} granules per block");
    let batches: Vec<(BlockFormat, Vec<Vec<u8>>)> = blocks
        .into_iter()
        .map(|b| (BlockFormat::Granules, b))
        .collect();
    write_store(tmp.path(), &batches);
    let opts = SearchOptions {
        from_us: None,
        to_us: None,
        limit: None,
        order: Order::OldestFirst,
        follow: false,
        threads: 2,
    };
    let stop = AtomicBool::new(false);
    let count = |q: &str| search::count(tmp.path(), &Matcher::compile(q).unwrap(), &opts, &stop);
    let common = count("served").unwrap();
    assert_eq!(
        (common.matched, common.scanned, common.scanned_blocks),
        (2400, 2400, 4)
    );
    assert_eq!(common.read.skipped_granules, 0);
    let rare = count("zebracorn").unwrap();
    assert_eq!(
        (rare.matched, rare.scanned_blocks, rare.skipped_blocks),
        (4, 4, 0)
    );
    // All but one granule per block stay compressed. (A false positive of a granule's filter
    // would read one more: with these few distinct words per granule, the filters are far
    // from full. A filter capped by the disk budget is fuller: see the index's unit tests.)
    assert_eq!(rare.read.skipped_granules, 4 * (per_block - 1));
    assert!(rare.scanned < 4 * 600 / (per_block - 1), "{}", rare.scanned);
    // Words absent from the store: every granule is skipped, and so every block.
    let absent = count("xylophone").unwrap();
    assert_eq!((absent.matched, absent.skipped_blocks), (0, 4));
    assert_eq!(
        brute_force(tmp.path(), &Matcher::compile("zebracorn").unwrap(), &opts).len(),
        4
    );
}

/// Newest first, a search reads the segments from the newest and stops once it has `limit`
/// matches: a word in every record over a store of one segment per block reads the newest
/// block alone, and prints exactly what a full scan's last matches are, newest first.
#[test]
fn newest_first_reads_only_the_newest_segments_it_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let batches: Vec<(BlockFormat, Vec<Vec<u8>>)> = (0..6)
        .map(|b| {
            let records = (0..40)
                .map(|i| {
                    format!(r#"{{"host":"web-01","message":"request {b}-{i:02} served"}}"#)
                        .into_bytes()
                })
                .collect();
            (BlockFormat::Granules, records)
        })
        .collect();
    write_store_in_segments(tmp.path(), &batches, 1);
    let matcher = Matcher::compile("served").unwrap();
    for (limit, blocks) in [(5, 1), (40, 1), (41, 2), (100, 3), (1000, 6)] {
        for threads in [1, 2] {
            let opts = SearchOptions {
                from_us: None,
                to_us: None,
                limit: Some(limit),
                order: Order::NewestFirst,
                follow: false,
                threads,
            };
            let mut out = Vec::new();
            let stats = search::search(
                tmp.path(),
                &matcher,
                &opts,
                RecordFormat::Json,
                &mut out,
                &AtomicBool::new(false),
            )
            .unwrap();
            let all = brute_force(tmp.path(), &matcher, &opts);
            let want: Vec<Vec<u8>> = all.iter().rev().take(limit).cloned().collect();
            assert_eq!(lines(&out), want, "limit {limit}, {threads} threads");
            // A worker may have read one more segment meanwhile.
            let read = stats.scanned_blocks;
            assert!(
                read >= blocks && read < blocks + threads as u64,
                "limit {limit}, {threads} threads: {read} blocks read"
            );
        }
    }
}
