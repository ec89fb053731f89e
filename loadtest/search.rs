//! `logtail-search-load`: the search scenario of issue 12 on a large store, rerunnable.
//!
//! `build` writes a store of `--records` realistic records spread evenly over `--hours` (the
//! benches' syslog corpus, parsed and encoded to JSON as the gateway does, each message
//! followed by a unique `req=` id; ~200-byte lines, ~330-byte JSON records), in the blocks the
//! gateway cuts at high rate (batches of 20,000 records, so 1 MiB blocks), and the same records
//! as a JSON-lines file for `rg`. One record in 10,000 carries the rare word `zebracorn`, spread
//! evenly; as many carry `krakenfail`, all within ten minutes (an incident).
//!
//! `--block-index` writes the previous format (version 2: one token filter per block) and
//! `--granule-kib` sets the granule size of the current one, to compare; `build` also counts
//! the distinct message tokens per granule and per block over the first 500,000 records.
//!
//! `query` warms the page cache, then times each query `--runs` times in this process
//! (`logtail::search::count`, reading the store in one thread, then in as many as `logtail
//! search` uses; `--threads` to choose) and `rg -F -c` over the JSON file, and prints medians,
//! blocks searched and skipped, how many times faster than rg each rare-word search was (by
//! wall time), and the peak RSS.
//!
//! ```text
//! nice -n 19 target/release/logtail-search-load build --dir /tmp/s --json /tmp/s.json --records 10000000
//! nice -n 19 target/release/logtail-search-load query --dir /tmp/s --json /tmp/s.json --runs 5
//! ```

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use logtail::encode::{Encoding, Envelope, encode, format_rfc3339_micros};
use logtail::parse::{Format, LegacyZone, ParseContext, Timestamp, parse};
use logtail::pipeline::batch::Batch;
use logtail::query::Matcher;
use logtail::search::{self, Order, SearchOptions};
use logtail::store::index::for_each_token;
use logtail::store::{BlockFormat, StoreOptions, StoreWriter};
use test_support::corpus;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Writes the store and the JSON-lines file.
    Build {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
        /// The records' times span this many hours, ending now.
        #[arg(long, default_value_t = 24)]
        hours: u64,
        /// Write blocks without an index (the format before it), to compare.
        #[arg(long)]
        no_index: bool,
        /// Write blocks of format 2 (one token filter per block, as before granules).
        #[arg(long, conflicts_with = "no_index")]
        block_index: bool,
        /// Framed bytes per granule, in KiB (format 3).
        #[arg(long, default_value_t = logtail::store::GRANULE_BYTES / 1024)]
        granule_kib: usize,
    },
    /// Times the queries.
    Query {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        json: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Only the two rare words (and rg), not the full scans.
        #[arg(long)]
        rare_only: bool,
        /// Search with each of these numbers of threads (default: 1, then as `logtail search`).
        #[arg(long, value_delimiter = ',')]
        threads: Vec<usize>,
    },
}

const RARE_EVERY: u64 = 10_000;
const RECORDS_PER_BATCH: usize = 20_000;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Step::Build {
            dir,
            json,
            records,
            hours,
            no_index,
            block_index,
            granule_kib,
        } => {
            let format = if no_index {
                BlockFormat::Unindexed
            } else if block_index {
                BlockFormat::BlockIndex
            } else {
                BlockFormat::Granules
            };
            build(&dir, &json, records, hours, format, granule_kib << 10)
        }
        Step::Query {
            dir,
            json,
            runs,
            rare_only,
            mut threads,
        } => {
            if threads.is_empty() {
                threads = vec![1, search::search_threads()];
                threads.dedup();
            }
            query(&dir, &json, runs, rare_only, &threads)
        }
    }
}

/// `unix_us` in UTC with millisecond precision, as most senders write it.
fn timestamp_of(unix_us: i64) -> Timestamp {
    let mut t = Timestamp::from_unix_micros(unix_us / 1000 * 1000);
    t.civil.fraction_digits = 3;
    t
}

/// Distinct message tokens per granule and per block over the first records, cutting them as
/// the block encoder does (by framed bytes), ASCII case ignored as the index does.
#[derive(Default)]
struct TokenCount {
    granule: std::collections::HashSet<Vec<u8>>,
    block: std::collections::HashSet<Vec<u8>>,
    granule_bytes: usize,
    block_bytes: usize,
    granules: u64,
    blocks: u64,
    granule_tokens: u64,
    block_tokens: u64,
}

impl TokenCount {
    const RECORDS: u64 = 500_000;

    fn add(&mut self, framed: usize, message: &[u8], granule_limit: usize) {
        if self.block_bytes + framed > logtail::store::TARGET_BLOCK_BYTES {
            self.end_granule();
            self.end_block();
        } else if self.granule_bytes + framed > granule_limit {
            self.end_granule();
        }
        self.granule_bytes += framed;
        self.block_bytes += framed;
        for_each_token(message, |t| {
            let t = t.to_ascii_lowercase();
            self.block.insert(t.clone());
            self.granule.insert(t);
        });
    }

    fn end_granule(&mut self) {
        if self.granule_bytes > 0 {
            self.granules += 1;
            self.granule_tokens += self.granule.len() as u64;
            self.granule.clear();
            self.granule_bytes = 0;
        }
    }

    fn end_block(&mut self) {
        if self.block_bytes > 0 {
            self.blocks += 1;
            self.block_tokens += self.block.len() as u64;
            self.block.clear();
            self.block_bytes = 0;
        }
    }
}

fn build(
    dir: &Path,
    json: &Path,
    records: u64,
    hours: u64,
    format: BlockFormat,
    granule_bytes: usize,
) -> anyhow::Result<()> {
    if dir.exists() {
        bail!("{} exists: give a new directory", dir.display());
    }
    let pool = corpus::realistic_mix(20_000, 0x5EA2C4);
    let mut writer = StoreWriter::open(StoreOptions {
        dir: dir.to_path_buf(),
        max_total_bytes: u64::MAX,
        ..StoreOptions::default()
    })?;
    writer.set_block_format(format);
    writer.set_granule_bytes(granule_bytes);
    let mut tokens = TokenCount::default();
    let mut lines = BufWriter::with_capacity(
        1 << 20,
        File::create(json).context("creating the JSON file")?,
    );
    let span_us = (hours * 3_600_000_000) as i64;
    let end_us = logtail::time::now_unix_micros();
    let start_us = end_us - span_us;
    // The incident: ten minutes, two thirds into the span.
    let incident_from = start_us + span_us * 2 / 3;
    let incident_records = records * 600_000_000 / span_us.max(1) as u64;
    let incident_first = records * 2 / 3;
    let incident_every = (incident_records / (records / RARE_EVERY).max(1)).max(1);

    let mut line = Vec::with_capacity(512);
    let mut received_at = Vec::with_capacity(40);
    let new_batch = || Batch::with_capacity(0, 400 * RECORDS_PER_BATCH, RECORDS_PER_BATCH);
    let mut batch = new_batch();
    let mut encoded = Vec::with_capacity(1024);
    let started = Instant::now();
    let mut input_bytes = 0u64;
    for i in 0..records {
        let received_us = start_us + (i as i128 * span_us as i128 / records as i128) as i64;
        line.clear();
        line.extend_from_slice(&pool[(i % pool.len() as u64) as usize]);
        if i % RARE_EVERY == RARE_EVERY / 2 {
            line.extend_from_slice(b" zebracorn");
        }
        if i >= incident_first
            && i < incident_first + incident_records
            && (i - incident_first).is_multiple_of(incident_every)
        {
            line.extend_from_slice(b" krakenfail");
        }
        write!(
            line,
            " req={:012x}",
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16
        )?;
        input_bytes += line.len() as u64 + 1;
        received_at.clear();
        format_rfc3339_micros(received_us, &mut received_at);
        let mut ctx = ParseContext::new(received_us, LegacyZone::Fixed(0));
        let mut record = parse(&line, Format::Auto, &mut ctx);
        // Sender clocks: a little behind the gateway's.
        record.timestamp = Some(timestamp_of(received_us - 1_500_000));
        let envelope = Envelope::new(&received_at, "tcp:5514");
        encoded.clear();
        encode(Encoding::Json, &line, &record, &envelope, &mut encoded);
        lines.write_all(&encoded)?;
        lines.write_all(b"\n")?;
        if i < TokenCount::RECORDS {
            tokens.add(encoded.len() + 12, record.message, granule_bytes);
        }
        batch.push(received_us, &encoded);
        if batch.len() == RECORDS_PER_BATCH {
            writer.append(&batch)?;
            batch = new_batch();
        }
    }
    if !batch.is_empty() {
        writer.append(&batch)?;
    }
    writer.sync()?;
    lines.flush()?;
    tokens.end_granule();
    tokens.end_block();
    println!(
        "distinct message tokens, first {} records: {:.0} per granule of {} KiB ({} granules), \
         {:.0} per 1 MiB block ({} blocks); a granule's filter holds {:.2}x the tokens of its \
         share of a block filter",
        TokenCount::RECORDS.min(records),
        tokens.granule_tokens as f64 / tokens.granules.max(1) as f64,
        granule_bytes >> 10,
        tokens.granules,
        tokens.block_tokens as f64 / tokens.blocks.max(1) as f64,
        tokens.blocks,
        tokens.granule_tokens as f64 / tokens.block_tokens.max(1) as f64
    );
    let stats = writer.stats();
    let json_bytes = std::fs::metadata(json)?.len();
    println!(
        "{records} records ({:.0} bytes per syslog line, {:.0} per JSON record) in {:.1} s; \
         incident: {incident_records} records from {}",
        input_bytes as f64 / records as f64,
        json_bytes as f64 / records as f64,
        started.elapsed().as_secs_f64(),
        chrono::DateTime::from_timestamp_micros(incident_from).unwrap_or_default()
    );
    println!(
        "store: {} blocks, {} bytes on disk ({:.2}x smaller than the JSON file), index {} bytes \
         ({:.2}% of the blocks)",
        stats.blocks_written,
        stats.bytes_written,
        json_bytes as f64 / stats.bytes_written as f64,
        stats.index_bytes_written,
        100.0 * stats.index_bytes_written as f64 / stats.bytes_written as f64
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// User+system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

/// User+system CPU seconds of the children waited for so far (`rg`).
fn children_cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_CHILDREN)
}

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn peak_rss_mib() -> f64 {
    // SAFETY: as above.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

fn warm(path: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let paths: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        let mut f = File::open(&p)?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

fn query(
    dir: &Path,
    json: &Path,
    runs: usize,
    rare_only: bool,
    thread_counts: &[usize],
) -> anyhow::Result<()> {
    if runs == 0 || thread_counts.contains(&0) {
        bail!("--runs and --threads must be at least 1");
    }
    let json_bytes = warm(json)?;
    let store_bytes = warm(dir)?;
    println!(
        "page cache warmed: JSON file {:.2} GB, store {:.2} GB",
        json_bytes as f64 / 1e9,
        store_bytes as f64 / 1e9
    );
    let now = logtail::time::now_unix_micros();
    let last_hour = Some(now - 3_600_000_000);
    let cases: &[(&str, &str, Option<i64>)] = &[
        ("rare word, evenly spread (0.01%)", "zebracorn", None),
        ("rare word, one incident (0.01%)", "krakenfail", None),
        (
            "host + severity, last hour",
            "host:web-01 severity:<=err",
            last_hour,
        ),
        ("full-scan regex (no skip)", r"/zebr[a]corn \w+/", None),
        ("full scan, word in every block", "GET", None),
    ];
    let cases = if rare_only { &cases[..2] } else { cases };
    let stop = AtomicBool::new(false);
    println!(
        "| query | threads | matched | blocks searched / skipped | granules skipped | median wall | median CPU | records GB/s per core |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // (query, threads, median wall) of the rare words, to compare with rg.
    let mut rare_walls = Vec::new();
    for (label, q, from_us) in cases {
        let matcher = Matcher::compile(q)?;
        for &threads in thread_counts {
            let opts = SearchOptions {
                from_us: *from_us,
                to_us: None,
                limit: None,
                order: Order::OldestFirst,
                follow: false,
                threads,
            };
            let (mut walls, mut cpus) = (Vec::new(), Vec::new());
            let mut last = None;
            for _ in 0..runs {
                let (t0, c0) = (Instant::now(), cpu_seconds());
                let stats = search::count(dir, &matcher, &opts, &stop)?;
                walls.push(t0.elapsed().as_secs_f64());
                cpus.push(cpu_seconds() - c0);
                last = Some(stats);
            }
            let Some(stats) = last else {
                bail!("--runs must be at least 1");
            };
            let (wall, cpu) = (median(walls), median(cpus));
            if from_us.is_none() && ["zebracorn", "krakenfail"].contains(q) {
                rare_walls.push((*q, threads, wall));
            }
            println!(
                "| {label}: `{q}` | {threads} | {} | {} / {} | {} | {:.1} ms | {:.1} ms | {:.2} |",
                stats.matched,
                stats.scanned_blocks,
                stats.skipped_blocks,
                stats.read.skipped_granules,
                wall * 1e3,
                cpu * 1e3,
                json_bytes as f64 / 1e9 / cpu.max(1e-9),
            );
        }
    }
    let mut rg_walls = Vec::new();
    for word in ["zebracorn", "krakenfail"] {
        let (mut walls, mut cpus) = (Vec::new(), Vec::new());
        let mut count = String::new();
        for _ in 0..runs {
            let (t0, c0) = (Instant::now(), children_cpu_seconds());
            let out = Command::new("rg")
                .args(["-F", "-c", word])
                .arg(json)
                .output();
            let out = out.context("running rg (apt-get install ripgrep)")?;
            walls.push(t0.elapsed().as_secs_f64());
            cpus.push(children_cpu_seconds() - c0);
            count = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        let rg_wall = median(walls);
        println!(
            "| `rg -F -c {word}` over the JSON file | 1 | {count} | – | – | {:.1} ms | {:.1} ms | {:.2} |",
            rg_wall * 1e3,
            median(cpus.clone()) * 1e3,
            json_bytes as f64 / 1e9 / median(cpus).max(1e-9)
        );
        rg_walls.push((word, rg_wall));
    }
    for (word, threads, wall) in rare_walls {
        if let Some((_, rg_wall)) = rg_walls.iter().find(|(w, _)| *w == word) {
            println!(
                "`{word}`, {threads} thread(s): {:.1}× faster than rg (median wall times)",
                rg_wall / wall.max(1e-9)
            );
        }
    }
    println!("peak RSS of the searches: {:.0} MiB", peak_rss_mib());
    Ok(())
}
