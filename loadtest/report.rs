//! What a run reports: the [`Report`] (written as JSON), the table printed on the terminal, the
//! progress line while it runs, and the SVG chart of throughput and latency over time.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use plotters::prelude::*;
use serde::Serialize;

use crate::verify::Percentiles;

/// Everything about one scenario run. Serialized as the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub scenario: String,
    /// The command line that produced it.
    pub command: String,
    /// When it ran (UTC, RFC 3339).
    pub date: String,
    pub machine: Machine,
    /// The workload, as configured.
    pub workload: BTreeMap<String, String>,
    /// One run of traffic per step: a single one for `steady`, one per rate for `ramp`, one per
    /// kind of stop for `gateway-restart`.
    pub steps: Vec<Step>,
    /// `ramp` only: the highest rate that passed.
    pub ramp_max_rate: Option<f64>,
    /// The broker's cost over the whole run, when there was one.
    pub broker: Option<Cost>,
    /// The latency of the warm-up lines sent to the freshly started gateway before the steps
    /// (not part of any step: it shows the cost of a cold start).
    pub warm_up: Option<Percentiles>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_average_at_start: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            load_average_at_start: load,
        }
    }
}

/// One run of traffic and what came of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Step {
    pub name: String,
    /// Target lines per second (0: flat out).
    pub rate_target: f64,
    /// Seconds from the first send to the last.
    pub send_seconds: f64,
    pub sent: u64,
    /// `sent / send_seconds`.
    pub achieved_rate: f64,
    /// Distinct lines that arrived.
    pub delivered: u64,
    pub lost: u64,
    /// Of `lost`: lines written in the last 100 ms before their stream connection broke
    /// (bytes the local kernel took, which the gateway may never have read; see
    /// `generate::AT_RISK`).
    pub lost_at_break: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Records with a damaged marker (torn frames).
    pub malformed: u64,
    /// Datagrams the socket refused (not counted as sent).
    pub send_errors: u64,
    pub reconnects: u64,
    pub resent: u64,
    /// The first few lines that never arrived: `(sender, seq)`.
    pub missing_sample: Vec<(u32, u64)>,
    /// Send → available, every line.
    pub latency: Percentiles,
    /// The same, by when lines were sent (e.g. before / during / after an outage).
    pub windows: Vec<Window>,
    pub gateway: Cost,
    /// The `logtail agent`'s cost (the `agent` transport).
    pub agent: Option<Cost>,
    /// The indexer's cost (`--sink elasticsearch`: Kafka → Elasticsearch); lines per
    /// CPU-second of the pipeline are delivered / (gateway + indexer).
    pub indexer: Option<Cost>,
    /// The search server's cost (the Elasticsearch sinks), the verifier's searches included.
    pub search_server: Option<Cost>,
    /// What the verifier read from the index (the Elasticsearch sinks).
    pub index: Option<IndexReadback>,
    /// Seconds from the last send until the last line arrived (or the drain gave up).
    pub drain_seconds: f64,
    /// Selected gateway counters at the end of the step (logtail only).
    pub gateway_metrics: BTreeMap<String, f64>,
    pub events: Vec<Event>,
    pub timeline: Vec<Second>,
}

/// Latency of the lines sent in one window of a step.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub label: String,
    /// When the window opened, in seconds from the step's start.
    pub from_s: f64,
    pub latency: Percentiles,
    /// When the last of its lines arrived, in seconds from the step's start.
    pub last_arrival_s: f64,
}

/// What a process cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
    /// Delivered lines per CPU-second of the gateway (absent for the broker).
    pub lines_per_cpu_second: Option<f64>,
}

/// The index reader's figures for a step (`elasticsearch::follow_index`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexReadback {
    /// The index's `_count` at the end of the step (every run's documents, warm-up included).
    pub index_count: u64,
    /// Documents the reader read since the run started: equal to `index_count` when it missed
    /// none.
    pub documents_read_total: u64,
    /// Documents read during this step.
    pub documents_read: u64,
    /// Documents read during this step whose `_id` an earlier one had.
    pub duplicate_ids: u64,
    /// `_search` requests during this step, and their mean time.
    pub searches: u64,
    pub mean_search_ms: f64,
}

/// Something the scenario did, at a time from the step's start.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_s: f64,
    pub what: String,
}

/// One second of a step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    pub t: u64,
    pub sent: u64,
    /// First deliveries that arrived in this second.
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Gateway CPU in this second, percent of one core.
    pub gateway_cpu_pct: f64,
}

/// A pass/fail condition.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    #[serde(skip)]
    pub kind: CheckKind,
}

/// What a check guards, and so whether its failure can be noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// End-to-end latency: a busy, shared machine can fail it now and then.
    Latency,
    /// Loss, delivery, the scenario's own conditions: a failure is never noise.
    Delivery,
}

impl Check {
    /// A check of delivery (loss, the backlog arriving, ...).
    pub fn new(name: &str, passed: bool, detail: String) -> Check {
        Check {
            name: name.to_string(),
            passed,
            detail,
            kind: CheckKind::Delivery,
        }
    }

    /// A check of end-to-end latency.
    pub fn latency(name: &str, passed: bool, detail: String) -> Check {
        Check {
            kind: CheckKind::Latency,
            ..Check::new(name, passed, detail)
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `2450000.0` → `2.45 M`, `51234.0` → `51.2 k`.
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn ms(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.2} s", x / 1000.0)
    } else if x >= 10.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.1} ms")
    }
}

impl Report {
    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w = &self.workload;
        let get = |k: &str| w.get(k).map_or("-", String::as_str);
        let replay = w
            .get("replay")
            .map_or(String::new(), |f| format!(", lines replayed from {f}"));
        out.push_str(&format!(
            "\n{} — {} → {} over {} ({}), {} sender(s), messages {}{replay}\n",
            self.scenario,
            get("product"),
            get("sink"),
            get("transport"),
            get("framing"),
            get("senders"),
            get("message_bytes"),
        ));
        out.push_str(&format!(
            "{:<14} {:>9} {:>12} {:>12} {:>9} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8}\n",
            "step", "target/s", "sent", "delivered", "lost", "dup", "reord", "p50", "p90", "p99",
            "p99.9", "max", "gw CPU", "lines/CPUs", "peak RSS"
        ));
        for s in &self.steps {
            let target = if s.rate_target > 0.0 {
                si(s.rate_target)
            } else {
                "max".into()
            };
            out.push_str(&format!(
                "{:<14} {:>9} {:>12} {:>12} {:>9} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7.2}s {:>9} {:>5} MiB\n",
                s.name,
                target,
                thousands(s.sent),
                thousands(s.delivered),
                thousands(s.lost),
                s.duplicated,
                s.reordered,
                ms(s.latency.p50_ms),
                ms(s.latency.p90_ms),
                ms(s.latency.p99_ms),
                ms(s.latency.p999_ms),
                ms(s.latency.max_ms),
                s.gateway.cpu_seconds,
                s.gateway.lines_per_cpu_second.map_or("-".into(), si),
                s.gateway.peak_rss_kib / 1024,
            ));
        }
        for s in &self.steps {
            out.push_str(&format!(
                "  {}: achieved {}/s over {:.1} s, drained in {:.1} s",
                s.name,
                si(s.achieved_rate),
                s.send_seconds,
                s.drain_seconds
            ));
            if let Some(agent) = &s.agent {
                out.push_str(&format!(
                    "; logtail agent CPU {:.2} s ({} lines per CPU-second), peak RSS {} MiB",
                    agent.cpu_seconds,
                    agent.lines_per_cpu_second.map_or("-".into(), si),
                    agent.peak_rss_kib / 1024
                ));
            }
            for (who, cost) in [("indexer", &s.indexer), ("search server", &s.search_server)] {
                if let Some(c) = cost {
                    out.push_str(&format!(
                        "; {who} CPU {:.2} s, peak RSS {} MiB",
                        c.cpu_seconds,
                        c.peak_rss_kib / 1024
                    ));
                }
            }
            if let Some(i) = &s.indexer {
                let cpu = s.gateway.cpu_seconds + i.cpu_seconds;
                out.push_str(&format!(
                    "; gateway + indexer {} lines per CPU-second",
                    if cpu > 0.0 {
                        si(s.delivered as f64 / cpu)
                    } else {
                        "-".into()
                    }
                ));
            }
            if let Some(x) = &s.index {
                out.push_str(&format!(
                    "; index: _count {}, read {} in {} searches ({:.1} ms each), duplicate _ids {}",
                    thousands(x.index_count),
                    thousands(x.documents_read),
                    x.searches,
                    x.mean_search_ms,
                    x.duplicate_ids
                ));
            }
            if s.lost_at_break > 0 {
                out.push_str(&format!(
                    "; {} of the lost lines were written in the last 100 ms before their connection broke",
                    thousands(s.lost_at_break)
                ));
            }
            if s.send_errors + s.reconnects + s.resent + s.malformed > 0 {
                out.push_str(&format!(
                    "; send errors {}, reconnects {}, resent {}, torn {}",
                    s.send_errors, s.reconnects, s.resent, s.malformed
                ));
            }
            out.push('\n');
            if s.windows.len() > 1 {
                for win in &s.windows {
                    out.push_str(&format!(
                        "    lines sent {:<10} (from {:>5.1} s): {:>10} lines, p50 {}, p99 {}, max {}, last arrived at {:.1} s\n",
                        win.label,
                        win.from_s,
                        thousands(win.latency.count),
                        ms(win.latency.p50_ms),
                        ms(win.latency.p99_ms),
                        ms(win.latency.max_ms),
                        win.last_arrival_s
                    ));
                }
            }
            for e in &s.events {
                out.push_str(&format!("    {:>6.1} s  {}\n", e.at_s, e.what));
            }
            if !s.missing_sample.is_empty() {
                let sample: Vec<String> = s
                    .missing_sample
                    .iter()
                    .map(|(sender, seq)| format!("{sender}:{seq}"))
                    .collect();
                out.push_str(&format!(
                    "    first missing (sender:seq): {}\n",
                    sample.join(" ")
                ));
            }
        }
        if let Some(rate) = self.ramp_max_rate {
            out.push_str(&format!(
                "highest rate with zero loss and p99 within the limit: {}/s\n",
                si(rate)
            ));
        }
        if let Some(w) = &self.warm_up {
            out.push_str(&format!(
                "warm-up (250 lines to the freshly started gateway, then 1 s at the run's rate, not counted above): p50 {}, max {} of the 250\n",
                ms(w.p50_ms),
                ms(w.max_ms)
            ));
        }
        if let Some(b) = &self.broker {
            out.push_str(&format!(
                "broker (tansu): CPU {:.2} s, peak RSS {} MiB\n",
                b.cpu_seconds,
                b.peak_rss_kib / 1024
            ));
        }
        for c in &self.checks {
            out.push_str(&format!(
                "{} {}: {}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        out
    }

    /// Writes the JSON report to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Draws throughput (sent and delivered per second) above latency (p50, p99 and max per
    /// second, log scale) over the run's time, steps one after the other, with the scenario's
    /// events as vertical lines.
    ///
    /// # Errors
    /// When the chart cannot be drawn or written.
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let mut points: Vec<(f64, &Second)> = Vec::new();
        let mut events: Vec<(f64, String)> = Vec::new();
        let mut offset = 0.0;
        for s in &self.steps {
            // Seconds at the end with nothing sent or delivered (the drain waiting for lines
            // that never come) would only stretch the chart.
            let active = s
                .timeline
                .iter()
                .rposition(|sec| sec.sent > 0 || sec.delivered > 0)
                .map_or(0, |last| last + 2)
                .min(s.timeline.len());
            let timeline = &s.timeline[..active];
            for sec in timeline {
                points.push((offset + sec.t as f64, sec));
            }
            // Windows opening are bookkeeping, not something that happened to the system.
            for e in s.events.iter().filter(|e| !e.what.starts_with("window ")) {
                events.push((offset + e.at_s, e.what.clone()));
            }
            offset += timeline.len() as f64;
        }
        let end = offset.max(1.0);
        let root = SVGBackend::new(path, (1100, 700)).into_drawing_area();
        let draw = || -> Result<(), Box<dyn std::error::Error>> {
            root.fill(&WHITE)?;
            let title = format!(
                "{} — {} → {} ({}), {}",
                self.scenario,
                self.workload.get("product").map_or("", String::as_str),
                self.workload.get("sink").map_or("", String::as_str),
                self.workload.get("transport").map_or("", String::as_str),
                self.date
            );
            let root = root.titled(&title, ("sans-serif", 18))?;
            let (top, bottom) = root.split_vertically(330);
            let max_rate = points
                .iter()
                .map(|(_, s)| s.sent.max(s.delivered))
                .max()
                .unwrap_or(1)
                .max(1) as f64;
            let mut chart = ChartBuilder::on(&top)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..end, 0.0..max_rate * 1.1)?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc("lines per second")
                .y_label_formatter(&|y| si(*y))
                .draw()?;
            let series = [
                (
                    "sent/s",
                    BLUE,
                    (|s: &Second| s.sent as f64) as fn(&Second) -> f64,
                ),
                ("delivered/s", GREEN, |s: &Second| s.delivered as f64),
            ];
            for (label, color, value) in series {
                chart
                    .draw_series(LineSeries::new(
                        points.iter().map(|(t, s)| (*t, value(s))),
                        color.stroke_width(2),
                    ))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            for (t, _) in &events {
                chart.draw_series(LineSeries::new(
                    [(*t, 0.0), (*t, max_rate * 1.1)],
                    RED.mix(0.5).stroke_width(1),
                ))?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;

            let max_ms = points.iter().map(|(_, s)| s.max_ms).fold(1.0f64, f64::max);
            let mut chart = ChartBuilder::on(&bottom)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..end, (0.1f64..max_ms * 2.0).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("seconds (by arrival)")
                .y_desc("end-to-end latency, ms")
                .draw()?;
            let series = [
                ("p50", GREEN, (|s: &Second| s.p50_ms) as fn(&Second) -> f64),
                ("p99", BLUE, |s: &Second| s.p99_ms),
                ("max", RED, |s: &Second| s.max_ms),
            ];
            // A second without arrivals has no latency: the line breaks there instead of
            // drawing a straight line across an outage.
            let runs: Vec<Vec<(f64, &Second)>> = points
                .split(|(_, s)| s.delivered == 0)
                .filter(|run| !run.is_empty())
                .map(<[_]>::to_vec)
                .collect();
            for (label, color, value) in series {
                for (i, run) in runs.iter().enumerate() {
                    let drawn = chart.draw_series(LineSeries::new(
                        run.iter().map(|(t, s)| (*t, value(s).max(0.1))),
                        color.stroke_width(2),
                    ))?;
                    if i == 0 {
                        drawn.label(label).legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    }
                }
            }
            for (i, (t, what)) in events.iter().enumerate() {
                chart.draw_series(LineSeries::new(
                    [(*t, 0.1), (*t, max_ms * 2.0)],
                    RED.mix(0.5).stroke_width(1),
                ))?;
                // The event's name only ("SIGTERM to the gateway"), on rows that alternate so
                // that events close in time do not overwrite each other.
                let name = what
                    .split([':', '(', ';'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                let row = if i % 2 == 0 { 1.5 } else { 0.8 };
                chart.draw_series(std::iter::once(Text::new(
                    format!(" {name}"),
                    (*t, max_ms * row),
                    ("sans-serif", 11),
                )))?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
            root.present()?;
            Ok(())
        };
        draw().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
    }
}

/// The progress line: on a terminal, rewritten in place every second; otherwise a line every
/// five seconds (CI logs).
pub struct Progress {
    tty: bool,
    last_print: Option<Instant>,
    silent: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last_print: None,
            silent: false,
        }
    }

    /// A progress that shows nothing (the warm-up).
    pub fn silent() -> Progress {
        Progress {
            tty: false,
            last_print: None,
            silent: true,
        }
    }

    /// Shows `line` (called about once a second).
    pub fn show(&mut self, line: &str) {
        if self.silent {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else if self
            .last_print
            .is_none_or(|t| t.elapsed().as_secs_f64() >= 4.9)
        {
            let _ = writeln!(err, "{line}");
            self.last_print = Some(Instant::now());
        }
        let _ = err.flush();
    }

    /// Prints `line` on a line of its own (an event), above the progress line.
    pub fn note(&mut self, line: &str) {
        if self.silent {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = writeln!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Ends the progress line.
    pub fn done(&mut self) {
        if self.tty && !self.silent {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// The number at `path` in `s`; NaN when absent (shown as such, and no ratio).
fn num(s: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(s, |v, k| &v[*k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// The number at `path` in `s`; 0 when absent (a process the run did not have costs nothing).
fn num_or_0(s: &serde_json::Value, path: &[&str]) -> f64 {
    let x = num(s, path);
    if x.is_nan() { 0.0 } else { x }
}

/// Side by side: two reports' first steps, and the ratio `b / a` of lines per CPU-second, p99
/// latency and loss.
pub fn compare(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let name = |r: &serde_json::Value| {
        format!(
            "{} → {}",
            r["workload"]["product"].as_str().unwrap_or("?"),
            r["workload"]["sink"].as_str().unwrap_or("?")
        )
    };
    // The first step, with the run's broker CPU (when there was a broker) put in it.
    let step = |r: &serde_json::Value| {
        let mut s = r["steps"][0].clone();
        s["broker_cpu_seconds"] = r["broker"]["cpu_seconds"].clone();
        s
    };
    let (sa, sb) = (step(a), step(b));
    // (label, the figure from a step, format)
    type Row<'a> = (&'a str, fn(&serde_json::Value) -> f64, fn(f64) -> String);
    let count = |x: f64| thousands(x as u64);
    let seconds = |x: f64| format!("{x:.2}");
    let rows: [Row; 14] = [
        ("sent", |s| num(s, &["sent"]), count),
        ("delivered", |s| num(s, &["delivered"]), count),
        ("lost", |s| num(s, &["lost"]), count),
        ("duplicated", |s| num(s, &["duplicated"]), count),
        ("p50 latency", |s| num(s, &["latency", "p50_ms"]), ms),
        ("p99 latency", |s| num(s, &["latency", "p99_ms"]), ms),
        ("max latency", |s| num(s, &["latency", "max_ms"]), ms),
        (
            "CPU seconds",
            |s| num(s, &["gateway", "cpu_seconds"]),
            seconds,
        ),
        (
            "lines per CPU-second",
            |s| num(s, &["gateway", "lines_per_cpu_second"]),
            si,
        ),
        (
            "peak RSS (KiB)",
            |s| num(s, &["gateway", "peak_rss_kib"]),
            count,
        ),
        (
            "indexer CPU seconds",
            |s| num(s, &["indexer", "cpu_seconds"]),
            seconds,
        ),
        (
            "gw+indexer lines/CPU-s",
            |s| {
                let cpu =
                    num(s, &["gateway", "cpu_seconds"]) + num_or_0(s, &["indexer", "cpu_seconds"]);
                num(s, &["delivered"]) / cpu
            },
            si,
        ),
        (
            "broker CPU seconds",
            |s| num(s, &["broker_cpu_seconds"]),
            seconds,
        ),
        (
            "search server CPU s",
            |s| num(s, &["search_server", "cpu_seconds"]),
            seconds,
        ),
    ];
    let mut out = format!(
        "{:<22} {:>18} {:>18} {:>10}\n",
        "",
        name(a),
        name(b),
        "B / A"
    );
    for (label, figure, fmt) in rows {
        let (x, y) = (figure(&sa), figure(&sb));
        let ratio = if x > 0.0 && y.is_finite() {
            format!("{:.2}x", y / x)
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{label:<22} {:>18} {:>18} {ratio:>10}\n",
            fmt(x),
            fmt(y)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(si(2_450_000.0), "2.45 M");
        assert_eq!(si(51_234.0), "51.2 k");
        assert_eq!(si(12.0), "12");
        assert_eq!(ms(0.25), "0.2 ms");
        assert_eq!(ms(12.4), "12 ms");
        assert_eq!(ms(2500.0), "2.50 s");
    }

    fn report() -> Report {
        let step = Step {
            name: "steady".into(),
            rate_target: 50_000.0,
            sent: 500_000,
            delivered: 500_000,
            latency: Percentiles {
                count: 500_000,
                p50_ms: 6.0,
                p90_ms: 9.0,
                p99_ms: 20.0,
                p999_ms: 40.0,
                max_ms: 80.0,
            },
            gateway: Cost {
                cpu_seconds: 2.0,
                peak_rss_kib: 65_536,
                lines_per_cpu_second: Some(250_000.0),
            },
            timeline: (0..10)
                .map(|t| Second {
                    t,
                    sent: 50_000,
                    delivered: 50_000,
                    p50_ms: 6.0,
                    p99_ms: 20.0,
                    max_ms: 30.0,
                    gateway_cpu_pct: 20.0,
                })
                .collect(),
            events: vec![Event {
                at_s: 5.0,
                what: "broker stopped".into(),
            }],
            ..Step::default()
        };
        Report {
            tool: "logtail-loadtest",
            scenario: "steady".into(),
            command: "logtail-loadtest steady".into(),
            date: "2026-11-21T10:00:00Z".into(),
            machine: Machine::this(),
            workload: [("product", "logtail"), ("sink", "kafka")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            steps: vec![step],
            ramp_max_rate: None,
            broker: None,
            warm_up: None,
            checks: vec![Check::new("no loss", true, "0 of 500,000".into())],
            passed: true,
        }
    }

    #[test]
    fn table_json_and_svg_carry_the_figures() {
        let r = report();
        let table = r.table();
        assert!(table.contains("500,000"), "{table}");
        assert!(table.contains("20 ms"), "{table}");
        assert!(table.contains("250.0 k"), "{table}");
        assert!(table.contains("PASS no loss"), "{table}");
        let dir = std::env::temp_dir().join(format!("loadtest-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        r.write_json(&dir.join("r.json")).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
        assert_eq!(json["steps"][0]["delivered"], 500_000);
        assert_eq!(json["steps"][0]["latency"]["p99_ms"], 20.0);
        r.write_svg(&dir.join("r.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.join("r.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("delivered/s"));
        let side = compare(&json, &json);
        assert!(side.contains("1.00x"), "{side}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
