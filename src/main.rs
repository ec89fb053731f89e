//! The `logtail` command: argument parsing, then a call into the library.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use logtail::agent;
use logtail::config::Config;
use logtail::encode::{self, Encoding, Envelope};
use logtail::parse::{self, Format, LegacyZone, ParseContext};
use logtail::pipeline::batch::Batch;
use logtail::server::Server;
use logtail::store::{self, ReadOptions};
use logtail::time::{parse_duration, parse_time, unix_micros_ago};
use logtail::wal;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A log ingest gateway: syslog in over UDP, TCP and Unix sockets, structured records out.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config it listens on UDP and TCP 0.0.0.0:5514 and on
    /// run/log.sock (datagram) and run/log-stream.sock (stream), and stores records under
    /// data/store, readable with `logtail read`. Stops cleanly on SIGTERM or SIGINT.
    Serve {
        /// Configuration file (TOML); see config/logtail.toml for every key and its default.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the records in the local store, one JSON object per line, oldest first.
    Read {
        /// Take the store directory from this configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The store directory (default: from the configuration, else data/store).
        #[arg(long, conflicts_with = "config")]
        dir: Option<PathBuf>,
        /// Keep printing records as they arrive, until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// Only records received within this long, e.g. 30s, 15m, 2h, 7d.
        #[arg(long, value_parser = parse_duration)]
        since: Option<Duration>,
        /// Only records containing this text (exact bytes, case-sensitive).
        #[arg(long)]
        grep: Option<String>,
    },
    /// Find records in the local store with a query (see README, "Query language"): newest
    /// first, at most --limit of them, as JSON lines like `read` prints, or as text.
    /// A bad query exits with status 2 and the column of the mistake.
    Search(SearchArgs),
    /// Inspect a write-ahead log (the Kafka spill buffer) without changing it; safe while the
    /// gateway runs.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Tail files and ship their lines to the gateway (its agent listener, port 5515 by default,
    /// acknowledged once stored) or straight to Kafka, resuming exactly where it left off after
    /// any restart. The files come from the [[collect]] entries of --config and/or from the etcd
    /// key /logtail/agents/<host>/config (JSON: {"collect": [...]}), both watched while it runs:
    /// the file is read again on SIGHUP and when it changes, the etcd key on every change. A bad
    /// configuration is rejected with the error logged, and the last good one stays in force.
    /// Stops cleanly on SIGTERM or SIGINT.
    Agent {
        /// Configuration file (TOML); see config/agent.toml for every key and its default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// etcd endpoint(s), e.g. http://127.0.0.1:2379 (repeat, or separate with commas);
        /// overrides [etcd] endpoints.
        #[arg(long, value_delimiter = ',')]
        etcd: Vec<String>,
        /// This host's name, for the etcd key and the syslog HOSTNAME (default: the machine's).
        #[arg(long)]
        host: Option<String>,
        /// The etcd key of this host's collect entries (default /logtail/agents/<host>/config).
        #[arg(long)]
        etcd_key: Option<String>,
    },
    /// Check a gateway (or with --agent, an agent) config file without starting anything:
    /// syntax, keys and values, certificate and token files, Kafka and etcd addresses, and
    /// the directories it will write. Prints the effective configuration (defaults filled in, as TOML)
    /// and exits 0, or prints every problem as FILE:LINE: KEY: MESSAGE and exits 2.
    Validate {
        /// The configuration file to check.
        #[arg(long, short)]
        config: PathBuf,
        /// The file is an agent's (`logtail agent --config`), not the gateway's.
        #[arg(long)]
        agent: bool,
    },
    /// Parse syslog messages from standard input, one per line, and print each as the gateway
    /// would store it (JSON): the first tool to reach for when a device's lines look wrong.
    Parse {
        /// Message format: auto-detect, or force one.
        #[arg(long, default_value = "auto")]
        format: Format,
        /// Time zone of RFC 3164 timestamps: local, utc, or an offset like +02:00.
        #[arg(long, default_value = "local")]
        legacy_timezone: LegacyZone,
        /// Parse as if received at this RFC 3339 time (default: now). It decides the year of
        /// RFC 3164 timestamps, which have none: replays and tests get the same fields.
        #[arg(long, value_parser = parse_received_at)]
        received_at: Option<i64>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SearchFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum WalCommand {
    /// Segments, bytes, pending (unacknowledged) batches and records, sequence numbers, and
    /// batches lost to corruption.
    Stats {
        /// The WAL directory (e.g. data/wal).
        dir: PathBuf,
    },
    /// One line per batch: seq, shard, records, bytes, whether acknowledged, and the payload
    /// (escaped); corrupt stretches as `#` lines.
    Dump {
        /// The WAL directory (e.g. data/wal).
        dir: PathBuf,
        /// Start at this sequence number.
        #[arg(long)]
        from: Option<u64>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Read {
            config,
            dir,
            follow,
            since,
            grep,
        } => read(config, dir, follow, since, grep),
        Command::Search(args) => search(args),
        Command::Wal { command } => wal(command),
        Command::Agent {
            config,
            etcd,
            host,
            etcd_key,
        } => agent::live::run(agent::live::RunOptions {
            config,
            etcd,
            host,
            etcd_key,
        })
        .map_err(anyhow::Error::from),
        Command::Validate { config, agent } => return validate(&config, agent),
        Command::Parse {
            format,
            legacy_timezone,
            received_at,
        } => parse_stdin(format, legacy_timezone, received_at),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    // The file's stamp before it is read: a change made while the gateway starts is then
    // seen by the watch below (the metrics endpoint answers before the watch begins).
    let mut stamp = config_path
        .as_deref()
        .and_then(logtail::setting::file_stamp);
    let (config, mut sha256) = load_for_serve(config_path.as_deref())?;
    logtail::runtime::raise_open_files_limit(u64::MAX);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Signal handlers go in before the listeners open, so an early SIGTERM is a clean stop too.
    let (mut terminate, mut hangup) = {
        let _guard = runtime.enter();
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        )
    };
    let mut server = Server::start(&config)?;
    server
        .metrics()
        .reload
        .set_running(sha256.clone(), Vec::new());
    runtime.block_on(async {
        // The file is also watched: a change is reloaded like a SIGHUP.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A change is read once the file stayed the same for a tick: an editor writing it in
        // place is not caught half-way (an empty file is a valid config: the defaults).
        let mut changing = None;
        loop {
            let why = tokio::select! {
                _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); break; }
                _ = hangup.recv() => "SIGHUP",
                _ = tick.tick() => {
                    let now = config_path.as_deref().and_then(logtail::setting::file_stamp);
                    if now == stamp || now.is_none() {
                        changing = None;
                        continue;
                    }
                    if changing != Some(now) {
                        changing = Some(now);
                        continue;
                    }
                    "the file changed"
                }
            };
            changing = None;
            stamp = config_path
                .as_deref()
                .and_then(logtail::setting::file_stamp);
            tracing::info!("{why}: reading the configuration again");
            match load_for_serve(config_path.as_deref()) {
                Err(e) => {
                    server.reload_failed();
                    tracing::error!("reload rejected, the running configuration stays: {e:#}");
                }
                Ok((_, new_sha256)) if new_sha256 == sha256 => {
                    tracing::info!("the configuration is unchanged");
                }
                Ok((new, new_sha256)) => match server.reload(&new, new_sha256.clone()) {
                    Ok(_) => sha256 = new_sha256,
                    Err(e) => tracing::error!("{e}"),
                },
            }
        }
    });
    server.shutdown()?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The gateway's configuration (the defaults without a file) and the SHA-256 of its text.
fn load_for_serve(path: Option<&std::path::Path>) -> anyhow::Result<(Config, String)> {
    let Some(path) = path else {
        return Ok((Config::load(None)?, sha256_hex(b"")));
    };
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let utf8 = std::str::from_utf8(&text)
        .with_context(|| format!("config file {}: not UTF-8", path.display()))?;
    let config = Config::from_toml(utf8, path)?;
    Ok((config, sha256_hex(&text)))
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `logtail validate`: every problem on stderr and exit 2, or the effective config and exit 0.
fn validate(path: &std::path::Path, agent: bool) -> ExitCode {
    let validation = if agent {
        logtail::validate::agent(path)
    } else {
        logtail::validate::gateway(path)
    };
    match &validation.effective {
        Some(effective) => {
            let mut out = std::io::stdout().lock();
            // `logtail validate ... | head` closes the pipe early: that is not an error.
            let _ = writeln!(
                out,
                "# {}: valid; the effective configuration:\n{effective}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        None => {
            eprint!("{validation}");
            eprintln!(
                "{}: {} problem(s)",
                path.display(),
                validation.problems.len()
            );
            ExitCode::from(2)
        }
    }
}

fn read(
    config_path: Option<PathBuf>,
    dir: Option<PathBuf>,
    follow: bool,
    since: Option<Duration>,
    grep: Option<String>,
) -> anyhow::Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => Config::load(config_path.as_deref())?.store_dir(),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "no store at {}: start the gateway (`logtail serve`) first, or name the store with --dir",
            dir.display()
        );
    }
    let since_us = since.map(|ago| logtail::time::unix_micros_ago(ago).max(0));
    let options = ReadOptions {
        since_us,
        grep: grep.map(String::into_bytes),
        follow,
    };
    let stop = AtomicBool::new(false);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    match store::read(&dir, &options, &mut out, &stop) {
        Ok(stats) => {
            out.flush().ok();
            if stats.corrupt_blocks > 0 {
                eprintln!(
                    "warning: skipped {} corrupt blocks ({} bytes) in {}",
                    stats.corrupt_blocks,
                    stats.corrupt_bytes,
                    dir.display()
                );
            }
            Ok(())
        }
        // `logtail read | head` closes the pipe early: that is not an error.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading the store in {}", dir.display())),
    }
}

/// `logtail search`'s arguments.
#[derive(clap::Args)]
struct SearchArgs {
    /// Take the store directory from this configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The store directory (default: from the configuration, else data/store).
    #[arg(long, conflicts_with = "config")]
    dir: Option<PathBuf>,
    /// Only records at or after this time: RFC 3339 (2026-11-21T02:53:47Z, a date, or
    /// without zone meaning UTC), or a duration ago (15m). The time of a record is its
    /// event timestamp, else when it was received.
    #[arg(long, value_parser = parse_time, conflicts_with = "since")]
    from: Option<i64>,
    /// Only records before this time (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Only records within this long, e.g. 30s, 15m, 2h, 7d (the same as --from 15m).
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// At most this many records (0: no limit, with --oldest-first or --follow).
    #[arg(long, short = 'n', default_value_t = 100)]
    limit: usize,
    /// Print the oldest matches first (and stop after --limit of them).
    #[arg(long)]
    oldest_first: bool,
    /// Print only the number of matches.
    #[arg(long, conflicts_with_all = ["histogram", "follow"])]
    count: bool,
    /// Print the number of matches per bucket of this width (30s, 1m, 1h, 1d) over the
    /// range (or from the first to the last match).
    #[arg(long, value_parser = parse_duration, conflicts_with = "follow")]
    histogram: Option<Duration>,
    /// After the last --limit matches, keep printing new matches as they are stored,
    /// until interrupted.
    #[arg(long, short)]
    follow: bool,
    /// json: the stored record, as `read` prints it; text: time, host, app, severity and
    /// message, coloured when standard output is a terminal.
    #[arg(long, default_value = "json")]
    format: SearchFormat,
    /// Afterwards, print on standard error how much was read: records matched and scanned,
    /// store blocks searched and blocks skipped by their index.
    #[arg(long)]
    stats: bool,
    /// Read the store's segments in this many threads (default: one per core, up to 4);
    /// --follow reads in one.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: Option<u16>,
    /// The query, e.g. 'host:web-* severity:<=warning "connection reset"' (empty: all).
    /// It may start with `-` (NOT): `logtail search -- -app:cron` or `logtail search -app:cron`.
    #[arg(default_value = "", allow_hyphen_values = true)]
    query: String,
}

fn search(args: SearchArgs) -> anyhow::Result<()> {
    use logtail::query::Matcher;
    use logtail::search::{self, Order, RecordFormat, SearchOptions};

    // The query first: a typo is reported before anything is read.
    let matcher = Matcher::compile(&args.query).map_err(|e| {
        let caret = " ".repeat(e.column.saturating_sub(1));
        anyhow::anyhow!("{e}\n  {}\n  {caret}^", args.query)
    })?;
    let dir = match args.dir.clone() {
        Some(dir) => dir,
        None => {
            let config = Config::load(args.config.as_deref())?;
            if config.search.backend == logtail::search::config::SearchBackend::Elasticsearch {
                return search_elasticsearch(&args, &config.search.elasticsearch);
            }
            config.store_dir()
        }
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "no store at {}: start the gateway (`logtail serve`) first, or name the store with --dir",
            dir.display()
        );
    }
    let from_us = args.from.or_else(|| args.since.map(unix_micros_ago));
    let opts = SearchOptions {
        from_us,
        to_us: args.to,
        limit: (args.limit > 0).then_some(args.limit),
        order: if args.oldest_first {
            Order::OldestFirst
        } else {
            Order::NewestFirst
        },
        follow: args.follow,
        threads: args
            .threads
            .map_or_else(search::search_threads, usize::from),
    };
    let stop = AtomicBool::new(false);
    let stdout = std::io::stdout();
    let is_tty = std::io::IsTerminal::is_terminal(&stdout);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let result = if args.count {
        search::count(&dir, &matcher, &opts, &stop).and_then(|stats| {
            writeln!(out, "{}", stats.matched)
                .map(|()| stats)
                .map_err(|e| store::StoreError::Output(e).into())
        })
    } else if let Some(width) = args.histogram {
        let width_us = i64::try_from(width.as_micros()).unwrap_or(i64::MAX).max(1);
        search::histogram(&dir, &matcher, &opts, width_us, &stop).and_then(|histogram| {
            write_histogram(&mut out, &histogram.buckets, args.format)
                .map_err(store::StoreError::Output)?;
            Ok(histogram.stats)
        })
    } else {
        let format = match args.format {
            SearchFormat::Json => RecordFormat::Json,
            SearchFormat::Text => RecordFormat::Text { color: is_tty },
        };
        search::search(&dir, &matcher, &opts, format, &mut out, &stop)
    };
    match result.map_err(anyhow::Error::from).and_then(|stats| {
        out.flush()?;
        Ok(stats)
    }) {
        Ok(stats) => {
            if args.stats {
                eprintln!(
                    "{} matched, {} records scanned; {} blocks searched, {} skipped by the index",
                    stats.matched, stats.scanned, stats.scanned_blocks, stats.skipped_blocks
                );
            }
            if stats.read.corrupt_blocks > 0 {
                eprintln!(
                    "warning: skipped {} corrupt blocks ({} bytes) in {}",
                    stats.read.corrupt_blocks,
                    stats.read.corrupt_bytes,
                    dir.display()
                );
            }
            Ok(())
        }
        // `logtail search | head` closes the pipe early: that is not an error.
        Err(e) if is_broken_pipe(e.as_ref()) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("searching the store in {}", dir.display())),
    }
}

/// `--histogram`'s output, whichever backend counted: a line per bucket, its start and count.
fn write_histogram(
    out: &mut impl Write,
    buckets: &[(i64, u64)],
    format: SearchFormat,
) -> std::io::Result<()> {
    for (start_us, count) in buckets {
        let mut time = Vec::with_capacity(32);
        encode::format_rfc3339_micros(*start_us, &mut time);
        let time = String::from_utf8_lossy(&time);
        match format {
            SearchFormat::Json => writeln!(out, "{{\"time\":\"{time}\",\"count\":{count}}}")?,
            SearchFormat::Text => writeln!(out, "{time} {count}")?,
        }
    }
    Ok(())
}

/// `logtail search` with `[search] backend = "elasticsearch"`: the same output from the
/// cluster (`--follow` excepted: live tail follows a gateway's own pipeline), page by page
/// (so `--limit 0` streams in either order).
fn search_elasticsearch(
    args: &SearchArgs,
    config: &logtail::search::config::ElasticsearchSearchConfig,
) -> anyhow::Result<()> {
    use logtail::query::JsonRecord;
    use logtail::search::elasticsearch::ElasticsearchSearch;
    use logtail::search::{Order, SearchOptions, write_text_line};

    if args.follow {
        anyhow::bail!(
            "--follow follows a gateway's own pipeline, and this configuration searches \
             Elasticsearch: follow with the console's live tail or GET /api/v1/tail on a gateway"
        );
    }
    let order = if args.oldest_first {
        Order::OldestFirst
    } else {
        Order::NewestFirst
    };
    let cluster = ElasticsearchSearch::new(config).map_err(|e| e.within("search.elasticsearch"))?;
    let opts = SearchOptions {
        from_us: args.from.or_else(|| args.since.map(unix_micros_ago)),
        to_us: args.to,
        limit: None,
        order,
        follow: false,
        threads: 1,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let stdout = std::io::stdout();
    let is_tty = std::io::IsTerminal::is_terminal(&stdout);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let query = args.query.as_str();
    let printed: anyhow::Result<u64> = runtime.block_on(async {
        if args.count {
            let count = cluster.count(query, &opts).await?;
            writeln!(out, "{count}")?;
            return Ok(count);
        }
        if let Some(width) = args.histogram {
            let width_us = i64::try_from(width.as_micros()).unwrap_or(i64::MAX).max(1);
            let histogram = cluster.histogram(query, &opts, width_us).await?;
            write_histogram(&mut out, &histogram.buckets, args.format)?;
            return Ok(histogram.buckets.iter().map(|(_, count)| count).sum());
        }
        // Pages of at most 1000 records, each after the last one's cursor.
        let mut left = if args.limit == 0 {
            u64::MAX
        } else {
            args.limit as u64
        };
        let (mut after, mut printed, mut line) = (None, 0u64, Vec::new());
        while left > 0 {
            let page_opts = SearchOptions {
                limit: Some(left.min(1000) as usize),
                ..opts.clone()
            };
            let page = cluster
                .page(query, &page_opts, after, logtail::http::api::MAX_PAGE_BYTES)
                .await?;
            for record in &page.records {
                match args.format {
                    SearchFormat::Json => {
                        out.write_all(record)?;
                        out.write_all(b"\n")?;
                    }
                    SearchFormat::Text => {
                        line.clear();
                        write_text_line(&JsonRecord::new(record), is_tty, &mut line);
                        out.write_all(&line)?;
                    }
                }
            }
            printed += page.records.len() as u64;
            left = left.saturating_sub(page.records.len() as u64);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(printed)
    });
    match printed.and_then(|printed| {
        out.flush()?;
        Ok(printed)
    }) {
        Ok(matched) => {
            if args.stats {
                eprintln!("{matched} matched (searched on Elasticsearch)");
            }
            Ok(())
        }
        Err(e) if is_broken_pipe(e.as_ref()) => Ok(()),
        Err(e) => Err(e).context(format!(
            "searching Elasticsearch ({})",
            config.index.as_str()
        )),
    }
}

fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn wal(command: WalCommand) -> anyhow::Result<()> {
    let dir = match &command {
        WalCommand::Stats { dir } | WalCommand::Dump { dir, .. } => dir.clone(),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "no WAL at {}: give the WAL directory, e.g. data/wal",
            dir.display()
        );
    }
    match command {
        WalCommand::Stats { .. } => {
            let s = wal::stats_of(&dir)
                .with_context(|| format!("reading the WAL in {}", dir.display()))?;
            println!("dir              {}", dir.display());
            println!("segments         {} ({} bytes)", s.segments, s.disk_bytes);
            println!(
                "pending          {} batches, {} records",
                s.pending_batches, s.pending_records
            );
            println!("acked through    seq {}", s.acked_through);
            println!("last seq         {}", s.last_seq);
            println!(
                "corrupt          {} batches, at least {} records",
                s.corrupt_batches, s.corrupt_records
            );
            Ok(())
        }
        WalCommand::Dump { from, .. } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match wal::dump(&dir, from, &mut out, &mut print_wal_batch)
                .and_then(|()| out.flush().map_err(wal::WalError::Output))
            {
                Err(e) if is_broken_pipe(&e) => Ok(()),
                other => other.with_context(|| format!("dumping the WAL in {}", dir.display())),
            }
        }
    }
}

/// Prints a WAL payload as the batch the Kafka sink wrote: one indented line per record with
/// its key, topic (empty: the sink's fixed topic) and value; anything else as escaped bytes.
fn print_wal_batch(payload: &[u8], out: &mut dyn Write) -> std::io::Result<()> {
    let batch = match Batch::decode_wal(0, payload) {
        Ok(batch) => batch,
        Err(e) => {
            write!(out, "(not a batch: {e}) ")?;
            return wal::print_payload_escaped(payload, out);
        }
    };
    write!(out, "batch of {} record(s):", batch.len())?;
    for entry in batch.iter() {
        write!(
            out,
            "\n  key=\"{}\" topic=\"{}\" value=\"{}\"",
            entry.key.escape_ascii(),
            entry.topic.escape_ascii(),
            entry.value.escape_ascii()
        )?;
    }
    Ok(())
}

/// `--received-at`: an RFC 3339 time as microseconds since the epoch.
fn parse_received_at(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("{e}: expected an RFC 3339 time such as 2026-11-21T02:53:47Z"))
}

fn parse_stdin(
    format: Format,
    zone: LegacyZone,
    received_at_us: Option<i64>,
) -> anyhow::Result<()> {
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut received_at = Vec::with_capacity(32);
    let mut encoded = Vec::with_capacity(1024);
    let mut context = ParseContext::new(0, zone);
    for line in stdin.split(b'\n') {
        let line = line.context("reading standard input")?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        let now_us = received_at_us.unwrap_or_else(logtail::time::now_unix_micros);
        context.set_received_at(now_us);
        received_at.clear();
        encode::format_rfc3339_micros(now_us, &mut received_at);
        let record = parse::parse(line, format, &mut context);
        encoded.clear();
        let envelope = Envelope::new(&received_at, "stdin");
        encode::encode(Encoding::Json, line, &record, &envelope, &mut encoded);
        encoded.push(b'\n');
        if let Err(e) = out.write_all(&encoded) {
            return if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e.into())
            };
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
