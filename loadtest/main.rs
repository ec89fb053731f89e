//! `logtail-loadtest`: real syslog traffic into a gateway it starts, read back from Kafka or the
//! local store, and a report of loss, end-to-end latency and lines per CPU-second.
//!
//! ```text
//! generate (senders) ──► gateway (logtail | rsyslog) ──► Kafka (tansu) | store | file ──► verify
//!      │ marker: run, sender, seq, send time                                              │
//!      └──────────────────────────────── report ◄── cost (/proc of the gateway) ◄─────────┘
//! ```
//!
//! Modules, in the order data flows: [`marker`] (what every message carries), [`generate`]
//! (lines and senders), [`gateway`] and [`broker`] (the processes under test, via
//! [`process`]), [`verify`] (readers and the exact tally), [`cost`] (`/proc`), [`report`]
//! (table, JSON, SVG), [`scenario`] (the named scenarios and the harness they share).

mod agent;
mod broker;
mod cost;
mod elasticsearch;
mod gateway;
mod generate;
mod hostile;
mod marker;
mod process;
mod report;
mod scenario;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use logtail::time::parse_duration;

use crate::gateway::{Product, Sink};
use crate::generate::{Framing, SizeDistribution, Transport};
use crate::report::{Machine, Report};
use crate::scenario::{OutageKind, Outcome, RampPlan, Settings};

/// Load tests for the logtail gateway: drive real syslog traffic through a gateway (and a
/// Kafka broker) that this command starts, read back what came out, and report delivered,
/// lost, duplicated and reordered lines, end-to-end latency percentiles, and the gateway's CPU
/// seconds, peak RSS and lines per CPU-second.
///
/// Each scenario is one command; it prints a table, writes a JSON report and an SVG chart,
/// and exits 1 when a check of delivery fails (e.g. loss over a stream transport), 3 when only
/// latency checks fail (p99 over --max-p99-ms), 2 on an error. Build first: `cargo build
/// --release`.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// A fixed rate for a duration or a count (default: 50000 lines/s for 10 s over TCP).
    Steady {
        #[command(flatten)]
        common: Common,
    },
    /// Find the highest rate with zero loss and p99 within --max-p99-ms: steps from --from,
    /// times --factor each, then halving the gap between the last pass and the first fail.
    Ramp {
        #[command(flatten)]
        common: Common,
        /// First rate, lines per second.
        #[arg(long, default_value_t = 25_000.0)]
        from: f64,
        /// Each next step's rate is this times the last.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        /// Length of each step.
        #[arg(long, default_value = "8s", value_parser = parse_duration)]
        step_duration: Duration,
        #[arg(long, default_value_t = 10)]
        max_steps: u32,
        /// Steps between the last passing and the first failing rate.
        #[arg(long, default_value_t = 2)]
        refine: u32,
    },
    /// Steady traffic to Kafka while the broker goes away and comes back (default: 20 s, the
    /// network to the broker cut at 5 s for 5 s). Checks: no loss over TCP, p99 of the lines
    /// sent before the outage and from --recovery-grace after it within --max-p99-ms, and the
    /// backlog arrives.
    KafkaOutage {
        #[command(flatten)]
        common: Common,
        /// When the broker goes away.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        outage_at: Duration,
        /// For how long.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        outage_for: Duration,
        /// `network`: a proxy in front of the broker closes every connection and refuses new
        /// ones; `freeze`: SIGSTOP the broker (requests hang), then SIGCONT; `restart`: stop
        /// the broker and start it again on SQLite storage (slower: use --rate 10000).
        #[arg(long, value_enum, default_value_t = OutageKind::Network)]
        outage: OutageKind,
        /// Lines sent this long after the broker is back count as "after" the outage (their
        /// p99 is checked): the time allowed to replay the backlog.
        #[arg(long, default_value = "8s", value_parser = parse_duration)]
        recovery_grace: Duration,
    },
    /// Steady traffic while the gateway is stopped and started again: SIGTERM in the middle of
    /// a first step, kill -9 in the middle of a second. SIGTERM must lose nothing; what kill -9
    /// loses (lines only in memory) is reported.
    GatewayRestart {
        #[command(flatten)]
        common: Common,
        /// How long the gateway stays down.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        down: Duration,
    },
    /// Thousands of mostly idle TCP connections (each sends a line every --idle-interval) and
    /// a few hot ones (--senders at --rate, default 4 at 20000 lines/s).
    ManyConnections {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 2000)]
        idle_connections: u32,
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        idle_interval: Duration,
    },
    /// UDP bursts: --burst datagrams as fast as the senders can at the start of every
    /// --every. Reports what the kernel and the gateway dropped.
    UdpBurst {
        #[command(flatten)]
        common: Common,
        /// Datagrams per burst, all senders together.
        #[arg(long, default_value_t = 50_000)]
        burst: u64,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        every: Duration,
    },
    /// A good TCP sender at --rate while every attack of issue 11 runs against the same
    /// gateway: huge agent BATCH headers, 64 KiB batches of 4 M empty messages, slowloris
    /// connections, partial 60 KiB lines, a garbage flood. Fails (exit 1) unless every good
    /// line is stored, the shutdown exits 0 and the peak RSS stays under --max-rss-mib.
    Hostile(hostile::HostileArgs),
    /// Print two JSON reports side by side with their ratio (B / A): lines per CPU-second,
    /// latency, loss. `loadtest/compare.sh` uses it for rsyslog vs logtail.
    Compare { a: PathBuf, b: PathBuf },
}

/// Options every scenario takes.
#[derive(Args, Clone)]
struct Common {
    /// The gateway under test.
    #[arg(long, value_enum, default_value_t = Product::Logtail)]
    target: Product,
    /// Where the gateway writes, and the verifier reads: a Kafka topic (on a tansu broker
    /// started for the run), the gateway's local output (logtail's store; rsyslog's omfile),
    /// or an osmem-server's index, through Kafka and logtail's indexer (`elasticsearch`) or
    /// from the gateway itself (`elasticsearch-direct`: logtail's Elasticsearch sink;
    /// rsyslog's omelasticsearch).
    #[arg(long, value_enum, default_value_t = Sink::Kafka)]
    sink: Sink,
    /// How the senders reach the gateway [default: tcp; udp for udp-burst].
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Framing on stream transports.
    #[arg(long, value_enum, default_value_t = Framing::Newline)]
    framing: Framing,
    /// Sender connections (or sockets) [default: 4].
    #[arg(long)]
    senders: Option<u32>,
    /// Lines per second, all senders together; 0 is flat out [default: 50000; 20000 for
    /// many-connections].
    #[arg(long)]
    rate: Option<f64>,
    /// How long to send, e.g. 10s, 500ms, 2m [default: 10s; 20s for kafka-outage].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Send this many lines in all instead (steady only, with or without --duration).
    #[arg(long)]
    count: Option<u64>,
    /// Message sizes: `realistic` (70% ~260 B, 20% to 1 KiB, 8% to 4 KiB, 2% to 16 KiB) or a
    /// fixed size in bytes.
    #[arg(long, default_value = "realistic")]
    message_bytes: SizeDistribution,
    /// Replay the lines of this file (round robin) instead of the generated mix; each gets
    /// the marker appended.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Gateway shards (logtail) or imtcp worker threads (rsyslog); 0 = its default.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The logtail binary [default: `logtail` beside this program, e.g. target/release/logtail].
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// The rsyslogd binary for --target rsyslog.
    #[arg(long, default_value = "/usr/sbin/rsyslogd")]
    rsyslogd: PathBuf,
    /// Fail when p99 end-to-end latency is above this many milliseconds.
    #[arg(long, default_value_t = 500.0)]
    max_p99_ms: f64,
    /// Fail when more than this percentage of datagrams is lost (default: report only).
    #[arg(long)]
    max_datagram_loss_pct: Option<f64>,
    /// After the senders stop, wait at most this long for lines to arrive.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// ... and stop waiting once nothing new arrived for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    settle: Duration,
    /// Clients reach the broker through the harness's TCP proxy (always so for --target
    /// rsyslog, whose librdkafka 2.0.2 needs the proxy's handshake fix for tansu; give it for
    /// logtail too when comparing the two).
    #[arg(long)]
    broker_proxy: bool,
    /// With the Elasticsearch sinks: how often the verifier asks the index for new documents.
    /// Searchable latencies include up to this much; each search costs the server a sorted
    /// page over the whole index (see RESULTS.md), so a longer interval loads it less.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    search_poll: Duration,
    /// The JSON report; the SVG chart goes beside it (same name, .svg).
    #[arg(long, default_value = "loadtest-report.json")]
    report: PathBuf,
    /// Work directory (gateway config, data, logs, broker) [default: a new one under $TMPDIR].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory afterwards.
    #[arg(long)]
    keep: bool,
}

impl Common {
    fn settings(
        &self,
        default_transport: Transport,
        default_rate: f64,
    ) -> anyhow::Result<Settings> {
        let gateway_binary = match self.target {
            Product::Rsyslog => self.rsyslogd.clone(),
            Product::Logtail => logtail_binary(self.gateway_bin.clone())?,
        };
        Ok(Settings {
            product: self.target,
            sink: self.sink,
            transport: self.transport.unwrap_or(default_transport),
            framing: self.framing,
            senders: self.senders.unwrap_or(4).max(1),
            rate: self.rate.unwrap_or(default_rate).max(0.0),
            duration: self.duration,
            count: self.count,
            sizes: self.message_bytes,
            replay: self.replay.clone(),
            partitions: self.partitions.max(1),
            threads: self.threads,
            gateway_binary,
            work_dir: self.work_dir.clone(),
            keep: self.keep,
            max_p99_ms: self.max_p99_ms,
            max_datagram_loss_pct: self.max_datagram_loss_pct,
            drain_timeout: self.drain_timeout,
            settle: self.settle,
            broker_proxy: self.broker_proxy,
            search_poll: self.search_poll,
        })
    }
}

/// The logtail binary to test: `explicit`, or `logtail` beside this program (built first
/// under cargo).
fn logtail_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let harness = std::env::current_exe().context("finding this program's directory")?;
    build_gateway_under_cargo(&harness)?;
    Ok(harness.with_file_name("logtail"))
}

/// Under `cargo run --bin logtail-loadtest`, cargo builds the harness but not the gateway
/// beside it: build that too (in the harness's profile), so the run measures the code at hand.
/// Outside cargo, the binary beside the harness is used as it is.
fn build_gateway_under_cargo(harness: &std::path::Path) -> anyhow::Result<()> {
    let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return Ok(());
    };
    let release = harness
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "release");
    if !release {
        eprintln!(
            "warning: this is a debug build; the gateway under test will be one too (use cargo run --release)"
        );
    }
    // The gateway is another package of the workspace: name it, from this package's directory.
    let mut command = std::process::Command::new(cargo);
    command.current_dir(manifest_dir).args([
        "build",
        "--quiet",
        "--package",
        "logtail",
        "--bin",
        "logtail",
    ]);
    if release {
        command.arg("--release");
    }
    let status = command
        .status()
        .context("running cargo build for the gateway")?;
    if !status.success() {
        anyhow::bail!("cargo build --bin logtail failed ({status})");
    }
    Ok(())
}

/// How a run ended, as its exit code: `tests/run.sh` runs a smoke test whose only failures
/// are latency once more (a shared machine is noisy), and never one that lost lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Every check passed: exit 0.
    Passed,
    /// A check of delivery failed (loss, the backlog, ...), latency checks maybe too: exit 1.
    DeliveryFailed,
    /// Only latency checks failed: exit 3.
    LatencyFailed,
}

impl Verdict {
    fn of(checks: &[report::Check]) -> Verdict {
        let mut failed = checks.iter().filter(|c| !c.passed).peekable();
        if failed.peek().is_none() {
            Verdict::Passed
        } else if failed.all(|c| c.kind == report::CheckKind::Latency) {
            Verdict::LatencyFailed
        } else {
            Verdict::DeliveryFailed
        }
    }

    fn exit_code(self) -> ExitCode {
        match self {
            Verdict::Passed => ExitCode::SUCCESS,
            Verdict::DeliveryFailed => ExitCode::from(1),
            Verdict::LatencyFailed => ExitCode::from(3),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(verdict) => verdict.exit_code(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn cli_args() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// The options after the scenario name, for the report.
fn scenario_options(command: &str) -> String {
    command.split(' ').skip(2).collect::<Vec<_>>().join(" ")
}

/// Runs the scenario and says which checks failed.
fn run(cli: Cli) -> anyhow::Result<Verdict> {
    let machine = Machine::this();
    let date = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (name, common, settings, outcome): (&str, Common, Settings, Outcome) = match cli.scenario {
        Scenario::Compare { a, b } => {
            let read = |p: &PathBuf| -> anyhow::Result<serde_json::Value> {
                let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a loadtest JSON report", p.display()))
            };
            print!("{}", report::compare(&read(&a)?, &read(&b)?));
            return Ok(Verdict::Passed);
        }
        Scenario::Hostile(args) => {
            let gateway_binary = logtail_binary(args.gateway_bin.clone())?;
            let passed = hostile::run_and_print(&args, gateway_binary, &date, &cli_args())?;
            return Ok(if passed {
                Verdict::Passed
            } else {
                Verdict::DeliveryFailed
            });
        }
        Scenario::Steady { common } => {
            let s = common.settings(Transport::Tcp, 50_000.0)?;
            let outcome = scenario::steady(s.clone())?;
            ("steady", common, s, outcome)
        }
        Scenario::Ramp {
            common,
            from,
            factor,
            step_duration,
            max_steps,
            refine,
        } => {
            let mut s = common.settings(Transport::Tcp, from)?;
            s.duration = Some(step_duration);
            let plan = RampPlan {
                from: from.max(1.0),
                factor: factor.max(1.05),
                step_duration,
                max_steps,
                refine,
            };
            let outcome = scenario::ramp(s.clone(), plan)?;
            ("ramp", common, s, outcome)
        }
        Scenario::KafkaOutage {
            common,
            outage_at,
            outage_for,
            outage,
            recovery_grace,
        } => {
            let mut s = common.settings(Transport::Tcp, 50_000.0)?;
            s.duration = Some(s.duration.unwrap_or(Duration::from_secs(20)));
            let outcome =
                scenario::kafka_outage(s.clone(), outage_at, outage_for, outage, recovery_grace)?;
            ("kafka-outage", common, s, outcome)
        }
        Scenario::GatewayRestart { common, down } => {
            let s = common.settings(Transport::Tcp, 50_000.0)?;
            let outcome = scenario::gateway_restart(s.clone(), down)?;
            ("gateway-restart", common, s, outcome)
        }
        Scenario::ManyConnections {
            common,
            idle_connections,
            idle_interval,
        } => {
            let s = common.settings(Transport::Tcp, 20_000.0)?;
            let outcome = scenario::many_connections(s.clone(), idle_connections, idle_interval)?;
            ("many-connections", common, s, outcome)
        }
        Scenario::UdpBurst {
            common,
            burst,
            every,
        } => {
            let s = common.settings(Transport::Udp, 0.0)?;
            let outcome = scenario::udp_burst(s.clone(), burst, every)?;
            ("udp-burst", common, s, outcome)
        }
    };
    let mut workload = settings.describe();
    match name {
        "ramp" => {
            workload.insert("rate".into(), "ramp (see steps)".into());
        }
        "udp-burst" | "many-connections" => {
            workload.insert("scenario_options".into(), scenario_options(&cli_args()));
        }
        _ => {}
    }
    let verdict = Verdict::of(&outcome.checks);
    let passed = verdict == Verdict::Passed;
    let report = Report {
        tool: "logtail-loadtest",
        scenario: name.to_string(),
        command: cli_args(),
        date,
        machine,
        workload,
        steps: outcome.steps,
        ramp_max_rate: outcome.ramp_max_rate,
        broker: outcome.broker,
        warm_up: outcome.warm_up,
        checks: outcome.checks,
        passed,
    };
    print!("{}", report.table());
    report.write_json(&common.report)?;
    let svg = common.report.with_extension("svg");
    report.write_svg(&svg)?;
    println!("report: {} and {}", common.report.display(), svg.display());
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_latency_failures_exit_3_and_any_delivery_failure_exits_1() {
        use report::Check;
        let ok = || Check::new("no loss", true, String::new());
        let lost = || Check::new("no loss", false, String::new());
        let slow = || Check::latency("p99", false, String::new());
        let fast = || Check::latency("p99", true, String::new());
        assert_eq!(Verdict::of(&[ok(), fast()]), Verdict::Passed);
        assert_eq!(Verdict::of(&[]), Verdict::Passed);
        assert_eq!(Verdict::of(&[ok(), slow()]), Verdict::LatencyFailed);
        assert_eq!(Verdict::of(&[slow(), slow()]), Verdict::LatencyFailed);
        assert_eq!(Verdict::of(&[lost(), fast()]), Verdict::DeliveryFailed);
        assert_eq!(Verdict::of(&[slow(), lost()]), Verdict::DeliveryFailed);
    }

    #[test]
    fn cli_parses_every_scenario() {
        Cli::command_for_tests();
        for args in [
            "x steady --rate 50000 --duration 10s --sink kafka",
            "x ramp --from 10000 --factor 2",
            "x kafka-outage --outage restart --outage-at 3s --outage-for 2s",
            "x gateway-restart --down 2s",
            "x many-connections --idle-connections 3000",
            "x udp-burst --burst 1000 --every 500ms --sink local",
            "x steady --target rsyslog --sink local --transport udp --message-bytes 200",
            "x steady --sink elasticsearch --rate 2000 --count 20000 --search-poll 1s",
            "x steady --target rsyslog --sink elasticsearch-direct",
            "x compare a.json b.json",
        ] {
            let parsed = Cli::try_parse_from(args.split(' '));
            assert!(parsed.is_ok(), "{args}: {:?}", parsed.err());
        }
    }

    impl Cli {
        fn command_for_tests() {
            use clap::CommandFactory;
            Cli::command().debug_assert();
        }
    }
}
