//! The scenarios, and the [`Harness`] they share: a work directory, the broker, the gateway,
//! the verifier's reader, and [`Harness::step`], which runs one stretch of traffic with
//! scheduled disturbances and measures it.
//!
//! A step: reset the verifier to a new run id; start the senders; every 50 ms run the events
//! that are due (stop the broker, SIGTERM the gateway, ...) and sample what was sent, the
//! gateway's CPU and memory; every second show the progress line; once the senders are done,
//! drain: wait until every line sent arrived, or nothing new arrived for `settle`, or
//! `drain_timeout` passed; then count.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::agent::Agent;
use crate::broker::Broker;
use crate::elasticsearch::{INDEX, IndexTail, Indexer, SearchServer};
use crate::gateway::{Gateway, GatewayOptions, Product, Sink};
use crate::generate::{
    Framing, IdleFleet, Schedule, SenderPlan, SenderStats, SizeDistribution, Transport, Workload,
    now_us, spawn_sender,
};
use crate::report::{
    Check, Cost, Event, IndexReadback, Progress, Second, Step, Window, si, thousands,
};
use crate::verify::{Percentiles, SharedVerifier, Source, Verifier, spawn_reader};
use test_support::corpus::SplitMix64;
use test_support::prometheus_text::{metric_sum, metric_with_label};

/// The topic the gateway produces to.
pub const TOPIC: &str = "logs";

/// Everything a scenario needs to know, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub product: Product,
    pub sink: Sink,
    pub transport: Transport,
    pub framing: Framing,
    pub senders: u32,
    /// Lines per second, all senders together; 0 is flat out.
    pub rate: f64,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub sizes: SizeDistribution,
    pub replay: Option<PathBuf>,
    pub partitions: u32,
    /// Gateway shards (logtail) or imtcp workers (rsyslog); 0 = its default.
    pub threads: usize,
    pub gateway_binary: PathBuf,
    pub work_dir: Option<PathBuf>,
    pub keep: bool,
    /// Fail when p99 end-to-end latency is above this.
    pub max_p99_ms: f64,
    /// Fail when datagram loss is above this percentage (streams must never lose).
    pub max_datagram_loss_pct: Option<f64>,
    pub drain_timeout: Duration,
    /// The drain gives up after this long without a new arrival.
    pub settle: Duration,
    /// Put the broker behind the harness's proxy even when the scenario does not need it
    /// (always for rsyslog: the proxy fixes a handshake its librdkafka cannot parse; see
    /// `broker::fix_api_versions`). Comparisons use it for both gateways.
    pub broker_proxy: bool,
    /// How often the index reader asks for new documents (the Elasticsearch sinks).
    pub search_poll: Duration,
}

impl Settings {
    /// The workload's description for the report.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let mut w = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            w.insert(k.to_string(), v);
        };
        put("product", value_name(self.product));
        put(
            "sink",
            match (self.sink, self.product) {
                (Sink::Kafka, _) => "kafka (tansu)".into(),
                (Sink::Local, Product::Logtail) => "local store".into(),
                (Sink::Local, Product::Rsyslog) => "omfile".into(),
                (Sink::Elasticsearch, _) => {
                    format!("elasticsearch via kafka (tansu) and an indexer, index {INDEX}")
                }
                (Sink::ElasticsearchDirect, Product::Logtail) => {
                    format!("elasticsearch sink, index {INDEX}")
                }
                (Sink::ElasticsearchDirect, Product::Rsyslog) => {
                    format!("omelasticsearch, index {INDEX}")
                }
            },
        );
        put("transport", value_name(self.transport));
        put(
            "framing",
            if self.transport.is_stream() {
                value_name(self.framing)
            } else {
                "datagram".into()
            },
        );
        put("senders", self.senders.to_string());
        put(
            "rate",
            if self.rate > 0.0 {
                format!("{}", self.rate)
            } else {
                "flat out".into()
            },
        );
        if let Some(d) = self.duration {
            put("duration_s", format!("{}", d.as_secs_f64()));
        }
        if let Some(c) = self.count {
            put("count", c.to_string());
        }
        put(
            "message_bytes",
            match self.sizes {
                SizeDistribution::Realistic => "realistic (mean ~700 B)".into(),
                SizeDistribution::Fixed(n) => format!("{n}"),
            },
        );
        if let Some(r) = &self.replay {
            put("replay", r.display().to_string());
        }
        put("partitions", self.partitions.to_string());
        if self.sink.is_elasticsearch() {
            put(
                "search_poll_ms",
                format!("{}", self.search_poll.as_secs_f64() * 1000.0),
            );
        }
        if self.broker_proxy || self.product == Product::Rsyslog {
            put("broker_proxy", "yes".into());
        }
        put(
            "gateway_threads",
            if self.threads == 0 {
                "default".into()
            } else {
                self.threads.to_string()
            },
        );
        w
    }
}

/// The name of `value` on the command line (`unix-stream`, `octet-counting`).
pub fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// What the scenario does to the system mid-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Cut every connection to the broker (it keeps running).
    CutNetwork,
    RestoreNetwork,
    /// Stop the broker process.
    StopBroker,
    /// Start it again (same data, same address through the proxy).
    StartBroker,
    /// SIGSTOP the broker process.
    FreezeBroker,
    /// SIGCONT it.
    ThawBroker,
    /// Send this signal to the gateway and wait until it exited.
    StopGateway(i32),
    StartGateway,
    /// From now on, sent lines count in a new latency window.
    OpenWindow(&'static str),
}

/// One stretch of traffic.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub name: String,
    /// For all senders together (split evenly).
    pub schedule: Schedule,
    pub senders: u32,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    /// Mostly idle connections besides: how many, and how often each sends a line.
    pub idle: Option<(u32, Duration)>,
    /// Actions at times from the step's start, in order.
    pub events: Vec<(Duration, Action)>,
}

/// How the broker is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerMode {
    /// tansu in memory, clients connect to it directly.
    Direct,
    /// Behind a proxy; `durable` keeps its data in SQLite across a restart.
    Fronted { durable: bool },
}

/// A run's environment.
pub struct Harness {
    pub settings: Settings,
    dir: PathBuf,
    pub broker: Option<Broker>,
    pub gateway: Gateway,
    /// The `logtail agent` in front of the gateway (the `agent` transport).
    agent: Option<Agent>,
    /// osmem-server, for the Elasticsearch sinks.
    search_server: Option<SearchServer>,
    /// The indexer between Kafka and the search server (`Sink::Elasticsearch`).
    indexer: Option<Indexer>,
    /// What the index reader has read (the Elasticsearch sinks).
    index_tail: Option<Arc<IndexTail>>,
    verifier: SharedVerifier,
    reader_stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<anyhow::Result<()>>>,
    workload: Arc<Workload>,
    progress: Progress,
    /// The warm-up's latency (see [`Harness::warm_up`]).
    pub warm_up: Option<Percentiles>,
}

/// A random run id.
fn new_run_id() -> u32 {
    let seed = now_us() ^ (u64::from(std::process::id()) << 32);
    (SplitMix64(seed).next_u64() >> 32) as u32
}

impl Harness {
    /// Creates the work directory, starts the broker (for the Kafka sink) and the gateway, and
    /// the verifier's reader.
    ///
    /// # Errors
    /// When any of them does not start.
    pub fn setup(settings: Settings, broker_mode: BrokerMode) -> anyhow::Result<Harness> {
        let dir = match &settings.work_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!(
                "logtail-loadtest-{}-{:08x}",
                std::process::id(),
                new_run_id()
            )),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the work directory {}", dir.display()))?;
        let workload = Arc::new(match &settings.replay {
            Some(path) => Workload::replay(path, settings.sizes)?,
            None => Workload::realistic(settings.sizes, 0x10ad),
        });
        let broker_mode = match broker_mode {
            BrokerMode::Direct if settings.broker_proxy || settings.product == Product::Rsyslog => {
                BrokerMode::Fronted { durable: false }
            }
            other => other,
        };
        let broker = match settings.sink {
            Sink::Kafka | Sink::Elasticsearch => {
                let broker_dir = dir.join("broker");
                std::fs::create_dir_all(&broker_dir)?;
                let (fronted, durable) = match broker_mode {
                    BrokerMode::Direct => (false, false),
                    BrokerMode::Fronted { durable } => (true, durable),
                };
                Some(Broker::start(
                    &broker_dir,
                    TOPIC,
                    settings.partitions,
                    fronted,
                    durable,
                )?)
            }
            Sink::Local | Sink::ElasticsearchDirect => None,
        };
        let search_server = if settings.sink.is_elasticsearch() {
            let server_dir = dir.join("osmem");
            std::fs::create_dir_all(&server_dir)?;
            Some(SearchServer::start(&server_dir)?)
        } else {
            None
        };
        if !settings.gateway_binary.is_file() && settings.product == Product::Logtail {
            bail!(
                "no gateway binary at {}: build it with `cargo build --release`, or give --gateway-bin",
                settings.gateway_binary.display()
            );
        }
        let mut gateway = Gateway::prepare(
            &dir,
            GatewayOptions {
                product: settings.product,
                sink: settings.sink,
                binary: &settings.gateway_binary,
                kafka: broker.as_ref().map(|b| (b.bootstrap(), TOPIC.to_string())),
                elasticsearch: search_server.as_ref().map(SearchServer::url),
                threads: settings.threads,
            },
        )?;
        gateway.start()?;
        let indexer = match (&settings.sink, &broker, &search_server) {
            (Sink::Elasticsearch, Some(b), Some(s)) => Some(Indexer::start(
                &dir.join("indexer"),
                &settings.gateway_binary,
                &b.bootstrap(),
                TOPIC,
                &s.url(),
                settings.threads,
            )?),
            _ => None,
        };
        let agent = match settings.transport {
            Transport::Agent => Some(Agent::start(
                &dir,
                &settings.gateway_binary,
                gateway.agent,
                settings.senders.max(1),
            )?),
            _ => None,
        };
        let verifier = Arc::new(Mutex::new(Verifier::new(0, now_us())));
        let reader_stop = Arc::new(AtomicBool::new(false));
        let index_tail = search_server
            .as_ref()
            .map(|_| Arc::new(IndexTail::default()));
        let source = match (&search_server, &index_tail) {
            (Some(s), Some(tail)) => Source::Elasticsearch {
                address: s.address,
                poll: settings.search_poll,
                tail: tail.clone(),
            },
            _ => gateway.source(),
        };
        let reader = spawn_reader(source, verifier.clone(), reader_stop.clone());
        let mut harness = Harness {
            settings,
            dir,
            broker,
            gateway,
            agent,
            search_server,
            indexer,
            index_tail,
            verifier,
            reader_stop,
            reader: Some(reader),
            workload,
            progress: Progress::new(),
            warm_up: None,
        };
        harness.wait_for_reader()?;
        harness.warm_up()?;
        Ok(harness)
    }

    /// Sends a few hundred lines and waits until they arrived, so that measured steps start
    /// with every connection open (sender → gateway, producer → broker → consumer), then one
    /// second at the run's rate and senders. A fresh gateway's first lines to Kafka wait for the
    /// producer's start (about a second with tansu), and its first second at full rate is
    /// slower than what follows (buffers growing, the producer's batches filling up, the
    /// broker's first writes: p99 400–630 ms against ~40 ms after it on a slow day): start-up,
    /// not what the steps measure. The first part's latency is kept as a figure of its own.
    fn warm_up(&mut self) -> anyhow::Result<()> {
        let spec = StepSpec {
            name: "warm-up".into(),
            schedule: Schedule::Rate(500.0),
            senders: 1,
            duration: None,
            count: Some(250),
            idle: None,
            events: vec![],
        };
        let at_rate = StepSpec {
            name: "warm-up at rate".into(),
            schedule: rate_schedule(self.settings.rate),
            senders: self.settings.senders,
            duration: Some(Duration::from_secs(1)),
            count: None,
            idle: None,
            events: vec![],
        };
        let quiet = std::mem::replace(&mut self.progress, Progress::silent());
        let step = self.step(&spec);
        let ramp = match &step {
            Ok(_) => self.step(&at_rate).map(|_| ()),
            Err(_) => Ok(()),
        };
        self.progress = quiet;
        let step = step?;
        ramp?;
        self.warm_up = Some(step.latency);
        Ok(())
    }

    fn wait_for_reader(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if self.lock().reader_ready {
                return Ok(());
            }
            if self.reader.as_ref().is_some_and(JoinHandle::is_finished) {
                let result = self.reader.take().map(JoinHandle::join);
                return match result {
                    Some(Ok(Err(e))) => Err(e.context("the verifier's reader stopped")),
                    _ => bail!("the verifier's reader stopped"),
                };
            }
            if Instant::now() >= deadline {
                bail!("the verifier's reader was not ready after 40 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verifier> {
        self.verifier.lock().expect("verifier lock")
    }

    /// Runs one step of traffic and measures it.
    ///
    /// # Errors
    /// When an event fails (the gateway or broker does not come back).
    pub fn step(&mut self, spec: &StepSpec) -> anyhow::Result<Step> {
        let run = new_run_id();
        let started = Instant::now();
        let start_us = now_us();
        {
            let mut v = self.lock();
            v.reset(run, start_us);
            let first = if spec
                .events
                .iter()
                .any(|(_, a)| matches!(a, Action::OpenWindow(_)))
            {
                "before"
            } else {
                "all"
            };
            v.latencies.open_window(first, start_us);
        }
        let cpu0 = self.gateway.cost.cpu_seconds();
        let agent_cpu0 = self.agent.as_ref().map(|a| a.cost.cpu_seconds());
        let indexer_cpu0 = self.indexer.as_ref().map(|i| i.cost.cpu_seconds());
        let server_cpu0 = self.search_server.as_ref().map(|s| s.cost.cpu_seconds());
        let tail0 = self.index_tail.as_deref().map(TailCounts::of);
        let stop = Arc::new(AtomicBool::new(false));
        let until = spec.duration.map(|d| started + d);
        let destination = self.gateway.destination(self.settings.transport)?;
        let n = spec.senders.max(1);
        let mut stats: Vec<Arc<SenderStats>> = Vec::new();
        let mut threads = Vec::new();
        for id in 0..n {
            let share =
                |total: u64| total / u64::from(n) + u64::from(u64::from(id) < total % u64::from(n));
            let schedule = match spec.schedule {
                Schedule::Rate(r) => Schedule::Rate(r / f64::from(n)),
                Schedule::FlatOut => Schedule::FlatOut,
                Schedule::Bursts { per_burst, every } => Schedule::Bursts {
                    per_burst: share(per_burst),
                    every,
                },
            };
            let plan = SenderPlan {
                run,
                id,
                destination: destination.clone(),
                transport: self.settings.transport,
                framing: self.settings.framing,
                schedule,
                count: spec.count.map(share),
                until,
            };
            let s = Arc::new(SenderStats::default());
            stats.push(s.clone());
            threads.push(spawn_sender(plan, self.workload.clone(), s, stop.clone()));
        }
        let fleet_stop = Arc::new(AtomicBool::new(false));
        let fleet = spec.idle.map(|(connections, interval)| {
            let plan = SenderPlan {
                run,
                id: n,
                destination: destination.clone(),
                transport: self.settings.transport,
                framing: self.settings.framing,
                schedule: Schedule::FlatOut,
                count: None,
                until,
            };
            IdleFleet::start(
                &plan,
                connections,
                interval,
                self.workload.clone(),
                fleet_stop.clone(),
            )
        });
        let all_stats: Vec<Arc<SenderStats>> = stats
            .iter()
            .cloned()
            .chain(fleet.iter().flat_map(|f| f.stats.iter().cloned()))
            .collect();
        let total_sent =
            |all: &[Arc<SenderStats>]| all.iter().map(|s| s.sent.load(Ordering::Relaxed)).sum();

        let mut events = Vec::new();
        let mut next_event = 0;
        // (seconds from start, lines sent, gateway CPU seconds) every ~50 ms.
        let mut samples: Vec<(f64, u64, f64)> = vec![(0.0, 0, cpu0)];
        let mut metrics_peak: BTreeMap<String, f64> = BTreeMap::new();
        let mut next_progress = 1.0;
        let mut sending = true;
        let mut send_seconds = 0.0;
        let mut drain_started: Option<Instant> = None;
        let mut final_sent = 0;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let elapsed = started.elapsed();
            while next_event < spec.events.len() && spec.events[next_event].0 <= elapsed {
                let action = spec.events[next_event].1;
                next_event += 1;
                let at_s = started.elapsed().as_secs_f64();
                let what = self.act(action)?;
                self.progress
                    .note(&format!("[{at_s:6.1} s] {}: {what}", spec.name));
                events.push(Event { at_s, what });
            }
            let t = started.elapsed().as_secs_f64();
            let sent_now = total_sent(&all_stats);
            samples.push((t, sent_now, self.gateway.cost.cpu_seconds()));
            if t >= next_progress {
                next_progress = t.floor() + 1.0;
                self.gateway.sample();
                if let Some(b) = &mut self.broker {
                    b.sample();
                }
                if let Some(i) = &mut self.indexer {
                    i.sample();
                }
                if let Some(s) = &mut self.search_server {
                    s.sample();
                }
                if let Some(text) = self.gateway.scrape() {
                    let open = metric_sum(&text, "logtail_connections_open");
                    let peak = metrics_peak
                        .entry("connections_open_peak".into())
                        .or_insert(0.0);
                    *peak = peak.max(open);
                }
                let line = self.progress_line(&spec.name, t, sent_now, &samples, drain_started);
                self.progress.show(&line);
            }
            if sending {
                let hot_done = threads.iter().all(JoinHandle::is_finished);
                if hot_done {
                    fleet_stop.store(true, Ordering::Relaxed);
                }
                let fleet_done = fleet.as_ref().is_none_or(|f| f.thread.is_finished());
                // Events still due (a restart) happen even if the senders finished first.
                if hot_done && fleet_done && next_event >= spec.events.len() {
                    sending = false;
                    send_seconds = t;
                    final_sent = total_sent(&all_stats);
                    drain_started = Some(Instant::now());
                }
                if hot_done && fleet_done && next_event < spec.events.len() {
                    // Bring the remaining events forward.
                    let (_, action) = spec.events[next_event];
                    next_event += 1;
                    let at_s = started.elapsed().as_secs_f64();
                    let what = self.act(action)?;
                    self.progress.note(&format!(
                        "[{at_s:6.1} s] {}: {what} (after the senders finished)",
                        spec.name
                    ));
                    events.push(Event { at_s, what });
                }
                continue;
            }
            let Some(drain) = drain_started else {
                continue;
            };
            let (distinct, last_new_us) = {
                let v = self.lock();
                (v.tally.distinct, v.last_new_us)
            };
            if distinct >= final_sent {
                // Everything arrived; give duplicates a moment to show up too.
                std::thread::sleep(Duration::from_millis(300));
                break;
            }
            let quiet = Duration::from_micros(now_us().saturating_sub(last_new_us.max(start_us)));
            if drain.elapsed() >= self.settings.settle && quiet >= self.settings.settle {
                self.progress.note(&format!(
                    "[{t:6.1} s] {}: nothing new arrived for {:?}: {} of {} lines never arrived",
                    spec.name,
                    self.settings.settle,
                    thousands(final_sent.saturating_sub(distinct)),
                    thousands(final_sent)
                ));
                break;
            }
            if drain.elapsed() >= self.settings.drain_timeout {
                self.progress.note(&format!(
                    "[{t:6.1} s] {}: gave up draining after {:?}",
                    spec.name, self.settings.drain_timeout
                ));
                break;
            }
        }
        self.progress.done();
        for t in threads {
            let _ = t.join();
        }
        if let Some(f) = fleet {
            let _ = f.thread.join();
            let failed = f.failed_to_open.load(Ordering::Relaxed);
            if failed > 0 {
                events.push(Event {
                    at_s: 0.0,
                    what: format!("{failed} idle connections could not be opened"),
                });
            }
        }
        let drain_seconds = drain_started.map_or(0.0, |d| d.elapsed().as_secs_f64());
        let end_t = started.elapsed().as_secs_f64();
        samples.push((
            end_t,
            total_sent(&all_stats),
            self.gateway.cost.cpu_seconds(),
        ));
        self.gateway.sample();
        let cpu = self.gateway.cost.cpu_seconds() - cpu0;
        let agent_cpu = self.agent.as_mut().zip(agent_cpu0).map(|(a, cpu0)| {
            a.sample();
            (a.cost.cpu_seconds() - cpu0, a.cost.peak_rss_kib())
        });
        let indexer_cpu = self.indexer.as_mut().zip(indexer_cpu0).map(|(i, cpu0)| {
            i.sample();
            (i.cost.cpu_seconds() - cpu0, i.cost.peak_rss_kib())
        });
        let server_cpu = self
            .search_server
            .as_mut()
            .zip(server_cpu0)
            .map(|(s, cpu0)| {
                s.sample();
                (s.cost.cpu_seconds() - cpu0, s.cost.peak_rss_kib())
            });
        let index = match (&self.search_server, self.index_tail.as_deref(), tail0) {
            (Some(server), Some(tail), Some(before)) => Some(index_readback(server, tail, before)?),
            _ => None,
        };

        let sent: Vec<u64> = all_stats
            .iter()
            .map(|s| s.sent.load(Ordering::Relaxed))
            .collect();
        let sum = |f: fn(&SenderStats) -> u64| all_stats.iter().map(|s| f(s)).sum::<u64>();
        let v = self.lock();
        let lost = v.tally.lost(&sent);
        let mut missing_sample = Vec::new();
        for (sender, &n) in sent.iter().enumerate() {
            if missing_sample.len() >= 10 {
                break;
            }
            for seq in v.tally.missing(sender as u32, n, 10 - missing_sample.len()) {
                missing_sample.push((sender as u32, seq));
            }
        }
        let lost_at_break = all_stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let ranges = s.at_risk.lock().map(|r| r.clone()).unwrap_or_default();
                v.tally.missing_in(i as u32, &ranges)
            })
            .sum();
        let delivered = v.tally.distinct;
        let to_s = |us: u64| us.saturating_sub(start_us) as f64 / 1e6;
        let windows = v
            .latencies
            .windows
            .iter()
            .map(|w| Window {
                label: w.label.clone(),
                from_s: to_s(w.from_us),
                latency: Percentiles::of(&w.latency),
                last_arrival_s: if w.last_arrival_us > 0 {
                    to_s(w.last_arrival_us)
                } else {
                    0.0
                },
            })
            .collect();
        let timeline = timeline(&samples, &v.latencies.seconds);
        let step = Step {
            name: spec.name.clone(),
            rate_target: match spec.schedule {
                Schedule::Rate(r) => r,
                _ => 0.0,
            },
            send_seconds,
            sent: sent.iter().sum(),
            achieved_rate: if send_seconds > 0.0 {
                sent.iter().sum::<u64>() as f64 / send_seconds
            } else {
                0.0
            },
            delivered,
            lost,
            lost_at_break,
            duplicated: v.tally.duplicates,
            reordered: v.tally.reordered,
            malformed: v.malformed,
            send_errors: sum(|s| s.send_errors.load(Ordering::Relaxed)),
            reconnects: sum(|s| s.reconnects.load(Ordering::Relaxed)),
            resent: sum(|s| s.resent.load(Ordering::Relaxed)),
            missing_sample,
            latency: Percentiles::of(&v.latencies.all),
            windows,
            gateway: Cost {
                cpu_seconds: cpu,
                peak_rss_kib: self.gateway.cost.peak_rss_kib(),
                lines_per_cpu_second: (cpu > 0.0).then(|| delivered as f64 / cpu),
            },
            agent: agent_cpu.map(|(cpu, peak_rss_kib)| Cost {
                cpu_seconds: cpu,
                peak_rss_kib,
                lines_per_cpu_second: (cpu > 0.0).then(|| delivered as f64 / cpu),
            }),
            indexer: indexer_cpu.map(|(cpu, peak_rss_kib)| Cost {
                cpu_seconds: cpu,
                peak_rss_kib,
                lines_per_cpu_second: (cpu > 0.0).then(|| delivered as f64 / cpu),
            }),
            search_server: server_cpu.map(|(cpu, peak_rss_kib)| Cost {
                cpu_seconds: cpu,
                peak_rss_kib,
                lines_per_cpu_second: None,
            }),
            index,
            drain_seconds,
            gateway_metrics: metrics_peak,
            events,
            timeline,
        };
        drop(v);
        let mut step = step;
        step.gateway_metrics.extend(self.gateway_counters());
        if let Some(text) = self.indexer.as_ref().and_then(Indexer::scrape) {
            step.gateway_metrics.extend(
                counters(&text)
                    .into_iter()
                    .map(|(k, v)| (format!("indexer_{k}"), v)),
            );
        }
        Ok(step)
    }

    fn progress_line(
        &self,
        name: &str,
        t: f64,
        sent: u64,
        samples: &[(f64, u64, f64)],
        drain: Option<Instant>,
    ) -> String {
        let v = self.lock();
        let second = ((now_us().saturating_sub(v.latencies.start_us)) / 1_000_000) as usize;
        let last = second
            .checked_sub(1)
            .and_then(|s| v.latencies.seconds.get(s));
        let p99 = last.map_or("-".into(), |(_, h)| {
            format!("{:.1} ms", Percentiles::of(h).p99_ms)
        });
        let window = samples
            .iter()
            .rev()
            .find(|(st, _, _)| t - st >= 1.0)
            .unwrap_or(&samples[0]);
        let dt = (t - window.0).max(1e-3);
        let rate = (sent - window.1) as f64 / dt;
        let cpu_pct = (samples.last().map_or(0.0, |s| s.2) - window.2) / dt * 100.0;
        let phase = if drain.is_some() {
            "draining"
        } else {
            "sending"
        };
        format!(
            "[{t:6.1} s] {name} {phase}: sent {} ({}/s)  arrived {}  p99 (last s) {p99}  {} CPU {cpu_pct:.0}%  RSS {} MiB",
            thousands(sent),
            si(rate),
            thousands(v.tally.distinct),
            self.gateway.product_name(),
            self.gateway.cost.peak_rss_kib() / 1024,
        )
    }

    /// Does `action`; returns what happened, for the report.
    fn act(&mut self, action: Action) -> anyhow::Result<String> {
        let broker = || "the scenario needs a broker (--sink kafka)".to_string();
        Ok(match action {
            Action::CutNetwork => {
                self.broker.as_mut().context(broker())?.cut_network();
                "network to the broker cut".into()
            }
            Action::RestoreNetwork => {
                self.broker.as_mut().context(broker())?.restore_network()?;
                "network to the broker restored".into()
            }
            Action::StopBroker => {
                let t = Instant::now();
                self.broker.as_mut().context(broker())?.stop();
                format!(
                    "broker stopped (SIGTERM, {:.1} s)",
                    t.elapsed().as_secs_f64()
                )
            }
            Action::FreezeBroker => {
                self.broker
                    .as_mut()
                    .context(broker())?
                    .signal(libc::SIGSTOP);
                "broker frozen (SIGSTOP)".into()
            }
            Action::ThawBroker => {
                self.broker
                    .as_mut()
                    .context(broker())?
                    .signal(libc::SIGCONT);
                "broker thawed (SIGCONT)".into()
            }
            Action::StartBroker => {
                let t = Instant::now();
                self.broker.as_mut().context(broker())?.start_again()?;
                format!(
                    "broker started again (listening after {:.1} s)",
                    t.elapsed().as_secs_f64()
                )
            }
            Action::StopGateway(signal) => {
                let before = self.gateway_counters();
                let t = Instant::now();
                let ended = self.gateway.stop(signal);
                let name = if signal == libc::SIGKILL {
                    "kill -9"
                } else {
                    "SIGTERM"
                };
                let state = if before.is_empty() {
                    String::new()
                } else {
                    let g = |k: &str| before.get(k).copied().unwrap_or(0.0) as u64;
                    format!(
                        "; just before: received {}, written by the sink {}, Kafka acked {}, WAL pending {}",
                        thousands(g("received_lines")),
                        thousands(g("sink_records")),
                        thousands(g("kafka_delivered")),
                        thousands(g("wal_pending_records"))
                    )
                };
                match ended {
                    Some(e) => format!(
                        "{name} to the gateway: exited ({}) after {:.2} s{state}",
                        e.status,
                        t.elapsed().as_secs_f64()
                    ),
                    None => format!("{name}: the gateway was not running"),
                }
            }
            Action::StartGateway => {
                let t = Instant::now();
                self.gateway.start()?;
                format!(
                    "gateway started again (ready after {:.2} s)",
                    t.elapsed().as_secs_f64()
                )
            }
            Action::OpenWindow(label) => {
                self.lock().latencies.open_window(label, now_us());
                format!("window \"{label}\" opens")
            }
        })
    }

    /// The gateway's main counters now (logtail only).
    fn gateway_counters(&self) -> BTreeMap<String, f64> {
        self.gateway
            .scrape()
            .map_or_else(BTreeMap::new, |text| counters(&text))
    }

    /// Stops the gateway (SIGTERM), the reader and the broker (the work directory is removed
    /// on drop unless asked to keep it), and hands back the outcome.
    pub fn finish(
        mut self,
        steps: Vec<Step>,
        checks: Vec<Check>,
        ramp_max_rate: Option<f64>,
    ) -> Outcome {
        if let Some(agent) = &mut self.agent {
            agent.stop();
        }
        self.gateway.stop(libc::SIGTERM);
        if let Some(indexer) = &mut self.indexer {
            indexer.stop();
        }
        self.reader_stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(server) = &mut self.search_server {
            server.stop();
        }
        let cost = self.broker.as_mut().map(|b| {
            b.sample();
            let c = Cost {
                cpu_seconds: b.cost.cpu_seconds(),
                peak_rss_kib: b.cost.peak_rss_kib(),
                lines_per_cpu_second: None,
            };
            b.stop();
            c
        });
        Outcome {
            steps,
            checks,
            ramp_max_rate,
            broker: cost,
            warm_up: self.warm_up,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.reader_stop.store(true, Ordering::Relaxed);
        if self.settings.keep {
            eprintln!("work directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The main counters of a logtail's Prometheus `text` (gateway, indexer), those it exports.
fn counters(text: &str) -> BTreeMap<String, f64> {
    [
        ("received_lines", "logtail_received_lines_total"),
        ("dropped", "logtail_dropped_total"),
        ("sink_records", "logtail_sink_records_total"),
        ("kafka_delivered", "logtail_kafka_delivered_records_total"),
        ("kafka_lost", "logtail_kafka_lost_records_total"),
        ("wal_spilled_records", "logtail_wal_spilled_records_total"),
        ("wal_replayed_records", "logtail_wal_replayed_records_total"),
        ("wal_pending_records", "logtail_wal_pending_records"),
        ("connections_total", "logtail_connections_total"),
        ("es_indexed", "logtail_elasticsearch_indexed_docs_total"),
        (
            "es_already_indexed",
            "logtail_elasticsearch_already_indexed_docs_total",
        ),
        ("es_retried", "logtail_elasticsearch_retried_docs_total"),
        (
            "es_dead_lettered",
            "logtail_elasticsearch_dead_lettered_docs_total",
        ),
        (
            "es_bulk_requests",
            "logtail_elasticsearch_bulk_requests_total",
        ),
        (
            "es_spilled_records",
            "logtail_elasticsearch_spilled_records_total",
        ),
    ]
    .into_iter()
    // Only what this process exports: a gateway with a Kafka sink has no Elasticsearch counters.
    .filter(|(_, m)| text.contains(m))
    .map(|(k, m)| (k.to_string(), metric_sum(text, m)))
    .chain(
        [
            ("batch_latency_p99_ms", "logtail_batch_latency_seconds"),
            (
                "kafka_delivery_latency_p99_ms",
                "logtail_kafka_delivery_latency_seconds",
            ),
        ]
        .into_iter()
        .filter_map(|(k, m)| {
            let v = metric_with_label(text, m, "quantile=\"0.99\"")?;
            Some((k.to_string(), v * 1000.0))
        }),
    )
    .collect()
}

/// The step's figures of the index reader (`before`: its counts at the step's start), and the
/// index's `_count` once the reader caught up with it (up to 5 s).
fn index_readback(
    server: &SearchServer,
    tail: &IndexTail,
    before: TailCounts,
) -> anyhow::Result<IndexReadback> {
    let count = server.count()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TailCounts::of(tail).documents < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = TailCounts::of(tail);
    let searches = now.searches - before.searches;
    Ok(IndexReadback {
        index_count: count,
        documents_read_total: now.documents,
        documents_read: now.documents - before.documents,
        duplicate_ids: now.duplicate_ids - before.duplicate_ids,
        searches,
        mean_search_ms: if searches > 0 {
            (now.search_micros - before.search_micros) as f64 / searches as f64 / 1000.0
        } else {
            0.0
        },
    })
}

/// [`IndexTail`]'s counters at one moment.
#[derive(Debug, Clone, Copy)]
struct TailCounts {
    documents: u64,
    duplicate_ids: u64,
    searches: u64,
    search_micros: u64,
}

impl TailCounts {
    fn of(tail: &IndexTail) -> TailCounts {
        TailCounts {
            documents: tail.documents.load(Ordering::Relaxed),
            duplicate_ids: tail.duplicate_ids.load(Ordering::Relaxed),
            searches: tail.searches.load(Ordering::Relaxed),
            search_micros: tail.search_micros.load(Ordering::Relaxed),
        }
    }
}

/// Per-second points from `samples` (time, lines sent, gateway CPU; interpolated between
/// samples, so a second the monitor spent waiting on an event is spread evenly) and the
/// verifier's per-second arrivals and latencies.
fn timeline(
    samples: &[(f64, u64, f64)],
    arrivals: &[(u64, hdrhistogram::Histogram<u64>)],
) -> Vec<Second> {
    let at = |t: f64| -> (f64, f64) {
        let i = samples.partition_point(|s| s.0 < t);
        match (samples.get(i.wrapping_sub(1)), samples.get(i)) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let f = (t - a.0) / (b.0 - a.0);
                (
                    a.1 as f64 + f * (b.1 as f64 - a.1 as f64),
                    a.2 + f * (b.2 - a.2),
                )
            }
            (_, Some(b)) => (b.1 as f64, b.2),
            (Some(a), None) => (a.1 as f64, a.2),
            (None, None) => (0.0, 0.0),
        }
    };
    let end = samples.last().map_or(0.0, |s| s.0).ceil() as usize;
    let seconds = end.max(arrivals.len());
    (0..seconds)
        .map(|t| {
            let (s0, c0) = at(t as f64);
            let (s1, c1) = at(t as f64 + 1.0);
            let (delivered, p) = arrivals
                .get(t)
                .map_or((0, Percentiles::default()), |(n, h)| {
                    (*n, Percentiles::of(h))
                });
            Second {
                t: t as u64,
                sent: (s1 - s0).round().max(0.0) as u64,
                delivered,
                p50_ms: p.p50_ms,
                p99_ms: p.p99_ms,
                max_ms: p.max_ms,
                gateway_cpu_pct: ((c1 - c0) * 100.0).max(0.0),
            }
        })
        .collect()
}

/// The checks every scenario applies to a step: no loss over a stream transport, datagram
/// loss within `--max-datagram-loss-pct` when given, and p99 within `--max-p99-ms`.
fn standard_checks(settings: &Settings, step: &Step, check_latency: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    if settings.transport.is_stream() {
        checks.push(Check::new(
            &format!(
                "{}: no loss over {}",
                step.name,
                value_name(settings.transport)
            ),
            step.lost == 0 && step.sent > 0,
            format!(
                "{} of {} lines lost",
                thousands(step.lost),
                thousands(step.sent)
            ),
        ));
    } else if let Some(max) = settings.max_datagram_loss_pct {
        let pct = 100.0 * step.lost as f64 / step.sent.max(1) as f64;
        checks.push(Check::new(
            &format!("{}: datagram loss at most {max}%", step.name),
            pct <= max && step.sent > 0,
            format!(
                "{} of {} lost ({pct:.3}%)",
                thousands(step.lost),
                thousands(step.sent)
            ),
        ));
    }
    if let Some(index) = &step.index {
        checks.push(Check::new(
            &format!("{}: the reader read every document of the index", step.name),
            index.documents_read_total == index.index_count,
            format!(
                "_count {}, documents read {}",
                thousands(index.index_count),
                thousands(index.documents_read_total)
            ),
        ));
        checks.push(Check::new(
            &format!("{}: no duplicate documents", step.name),
            step.duplicated == 0 && index.duplicate_ids == 0,
            format!(
                "{} lines in more than one document, {} documents with an _id seen before",
                thousands(step.duplicated),
                thousands(index.duplicate_ids)
            ),
        ));
    }
    if check_latency {
        checks.push(Check::latency(
            &format!(
                "{}: p99 latency at most {} ms",
                step.name, settings.max_p99_ms
            ),
            step.latency.p99_ms <= settings.max_p99_ms && step.latency.count > 0,
            format!("p99 {:.1} ms", step.latency.p99_ms),
        ));
    }
    checks
}

/// What a scenario hands back for the report.
pub struct Outcome {
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    pub ramp_max_rate: Option<f64>,
    pub broker: Option<Cost>,
    pub warm_up: Option<Percentiles>,
}

fn default_duration(settings: &Settings) -> Option<Duration> {
    if settings.count.is_some() {
        settings.duration
    } else {
        Some(settings.duration.unwrap_or(Duration::from_secs(10)))
    }
}

fn rate_schedule(rate: f64) -> Schedule {
    if rate > 0.0 {
        Schedule::Rate(rate)
    } else {
        Schedule::FlatOut
    }
}

/// `steady`: a fixed rate for a duration or a count.
pub fn steady(settings: Settings) -> anyhow::Result<Outcome> {
    let mut h = Harness::setup(settings.clone(), BrokerMode::Direct)?;
    let step = h.step(&StepSpec {
        name: "steady".into(),
        schedule: rate_schedule(settings.rate),
        senders: settings.senders,
        duration: default_duration(&settings),
        count: settings.count,
        idle: None,
        events: vec![],
    })?;
    let checks = standard_checks(&settings, &step, true);
    Ok(h.finish(vec![step], checks, None))
}

/// How `ramp` climbs.
#[derive(Debug, Clone, Copy)]
pub struct RampPlan {
    pub from: f64,
    pub factor: f64,
    pub step_duration: Duration,
    pub max_steps: u32,
    /// Steps that halve the gap between the last passing and the first failing rate.
    pub refine: u32,
}

/// Whether a ramp step holds its rate: no loss, at least 95% of the target rate achieved
/// (a sender slowed by backpressure is a failure too), and p99 within the limit.
fn ramp_step_passes(settings: &Settings, step: &Step) -> bool {
    step.lost == 0
        && step.achieved_rate >= 0.95 * step.rate_target
        && step.latency.p99_ms <= settings.max_p99_ms
        && step.latency.count > 0
}

/// `ramp`: rates from `from`, times `factor` per step, until a step fails; then `refine`
/// steps between the best passing and the first failing rate.
pub fn ramp(settings: Settings, plan: RampPlan) -> anyhow::Result<Outcome> {
    let mut h = Harness::setup(settings.clone(), BrokerMode::Direct)?;
    let mut steps = Vec::new();
    let (mut best, mut failed) = (None::<f64>, None::<f64>);
    let mut rate = plan.from;
    let run_step = |h: &mut Harness, rate: f64, steps: &mut Vec<Step>| -> anyhow::Result<bool> {
        let step = h.step(&StepSpec {
            name: format!("{}/s", si(rate)),
            schedule: Schedule::Rate(rate),
            senders: settings.senders,
            duration: Some(plan.step_duration),
            count: None,
            idle: None,
            events: vec![],
        })?;
        let pass = ramp_step_passes(&settings, &step);
        eprintln!(
            "ramp {}/s: {} (achieved {}/s, lost {}, p99 {:.1} ms)",
            si(rate),
            if pass { "pass" } else { "fail" },
            si(step.achieved_rate),
            thousands(step.lost),
            step.latency.p99_ms
        );
        steps.push(step);
        Ok(pass)
    };
    for _ in 0..plan.max_steps {
        if run_step(&mut h, rate, &mut steps)? {
            best = Some(rate);
            rate *= plan.factor;
        } else {
            failed = Some(rate);
            break;
        }
    }
    if let Some(mut high) = failed {
        let mut low = best.unwrap_or(0.0);
        for _ in 0..plan.refine {
            let mid = ((low + high) / 2.0 / 1000.0).round() * 1000.0;
            if mid <= low || mid >= high {
                break;
            }
            if run_step(&mut h, mid, &mut steps)? {
                low = mid;
                best = Some(mid);
            } else {
                high = mid;
            }
        }
    }
    let checks = vec![Check::new(
        "ramp: a rate with zero loss",
        best.is_some(),
        match best {
            Some(r) => format!("{}/s held", si(r)),
            None => format!("even {}/s failed", si(plan.from)),
        },
    )];
    Ok(h.finish(steps, checks, best))
}

/// How `kafka-outage` takes the broker away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutageKind {
    /// Cut the network to it: the proxy in front closes every connection and refuses new
    /// ones (clients see resets and refused connections), then accepts again.
    Network,
    /// Freeze the broker process (SIGSTOP), then thaw it (SIGCONT): connections stay open and
    /// requests hang, as with a hung broker or a silent network partition.
    Freeze,
    /// Stop the broker process (SIGTERM) and start it again on its SQLite storage, so its data
    /// survives. tansu's SQLite engine holds about 15–20k lines/s on a 2-core machine: use a
    /// lower --rate.
    Restart,
}

/// `kafka-outage`: steady traffic; the broker goes away at `at` for `length`. Latency is
/// checked for the lines sent before the outage (up to a second before it: later ones may be
/// in flight when it comes) and for those sent from `grace` after it.
pub fn kafka_outage(
    settings: Settings,
    at: Duration,
    length: Duration,
    kind: OutageKind,
    grace: Duration,
) -> anyhow::Result<Outcome> {
    if settings.sink != Sink::Kafka {
        bail!("kafka-outage needs --sink kafka");
    }
    let duration = default_duration(&settings).unwrap_or(Duration::from_secs(20));
    let mut h = Harness::setup(
        settings.clone(),
        BrokerMode::Fronted {
            durable: kind == OutageKind::Restart,
        },
    )?;
    let (down, up) = match kind {
        OutageKind::Network => (Action::CutNetwork, Action::RestoreNetwork),
        OutageKind::Freeze => (Action::FreezeBroker, Action::ThawBroker),
        OutageKind::Restart => (Action::StopBroker, Action::StartBroker),
    };
    // Lines sent from `grace` after the broker is back are "after": by then the backlog
    // should be replayed and latency back to normal.
    let recovered = at + length + grace;
    // Lines sent just before the cut may be in flight when it comes, and wait for the broker's
    // return: they count with the outage, not before it.
    let in_flight = Duration::from_secs(1).min(at / 2);
    let mut events = vec![
        (at - in_flight, Action::OpenWindow("outage")),
        (at, down),
        (at + length, up),
        (at + length, Action::OpenWindow("recovery")),
    ];
    if recovered < duration {
        events.push((recovered, Action::OpenWindow("after")));
    }
    let step = h.step(&StepSpec {
        name: "kafka-outage".into(),
        schedule: rate_schedule(settings.rate),
        senders: settings.senders,
        duration: Some(duration),
        count: None,
        idle: None,
        events,
    })?;
    let mut checks = standard_checks(&settings, &step, false);
    for label in ["before", "after"] {
        if let Some(w) = step.windows.iter().find(|w| w.label == label) {
            checks.push(Check::latency(
                &format!(
                    "kafka-outage: p99 latency of lines sent {label} the outage at most {} ms",
                    settings.max_p99_ms
                ),
                w.latency.p99_ms <= settings.max_p99_ms && w.latency.count > 0,
                format!(
                    "p99 {:.1} ms over {} lines",
                    w.latency.p99_ms,
                    thousands(w.latency.count)
                ),
            ));
        }
    }
    if let Some(w) = step.windows.iter().find(|w| w.label == "outage") {
        let back = (at + length).as_secs_f64();
        checks.push(Check::new(
            "kafka-outage: the backlog arrived after the broker came back",
            w.latency.count > 0 && w.last_arrival_s >= back,
            format!(
                "{} lines sent during the outage, the last arrived {:.1} s after the broker was back",
                thousands(w.latency.count),
                (w.last_arrival_s - back).max(0.0)
            ),
        ));
    }
    Ok(h.finish(vec![step], checks, None))
}

/// `gateway-restart`: two steps of steady traffic; in the middle of the first the gateway gets
/// SIGTERM, in the middle of the second `kill -9`; each time it is started again after `down`.
pub fn gateway_restart(settings: Settings, down: Duration) -> anyhow::Result<Outcome> {
    let duration = default_duration(&settings).unwrap_or(Duration::from_secs(10));
    let mut h = Harness::setup(settings.clone(), BrokerMode::Direct)?;
    let mut steps = Vec::new();
    let mut checks = Vec::new();
    for (name, signal) in [("sigterm", libc::SIGTERM), ("kill-9", libc::SIGKILL)] {
        let step = h.step(&StepSpec {
            name: name.into(),
            schedule: rate_schedule(settings.rate),
            senders: settings.senders,
            duration: Some(duration),
            count: None,
            idle: None,
            events: vec![
                (duration / 2, Action::StopGateway(signal)),
                (duration / 2 + down, Action::StartGateway),
            ],
        })?;
        if signal == libc::SIGTERM && settings.transport.is_stream() {
            // Plain TCP syslog has no acknowledgements: what the senders wrote in the moments
            // before the gateway closed their connections may never have been read. Everything
            // else must arrive.
            checks.push(Check::new(
                "sigterm: no loss but the writes in flight when a connection closed",
                step.lost == step.lost_at_break && step.sent > 0,
                format!(
                    "{} of {} lines lost, {} of them written in the last 100 ms before their \
                     connection closed",
                    thousands(step.lost),
                    thousands(step.sent),
                    thousands(step.lost_at_break)
                ),
            ));
        } else if signal == libc::SIGTERM {
            checks.extend(standard_checks(&settings, &step, false));
        } else {
            checks.push(Check::new(
                "kill-9: loss is reported (not checked: what was only in memory is lost)",
                true,
                format!(
                    "{} of {} lines lost ({} written in the last 100 ms before their connection \
                     broke), {} duplicated",
                    thousands(step.lost),
                    thousands(step.sent),
                    thousands(step.lost_at_break),
                    thousands(step.duplicated)
                ),
            ));
        }
        steps.push(step);
    }
    Ok(h.finish(steps, checks, None))
}

/// `many-connections`: `settings.senders` hot connections at `settings.rate` together, and
/// `idle` connections that each send one line every `interval`.
pub fn many_connections(
    settings: Settings,
    idle: u32,
    interval: Duration,
) -> anyhow::Result<Outcome> {
    if !settings.transport.is_stream() {
        bail!("many-connections needs a stream transport (--transport tcp or unix-stream)");
    }
    logtail::runtime::raise_open_files_limit(u64::from(idle) + 1024);
    let mut h = Harness::setup(settings.clone(), BrokerMode::Direct)?;
    let step = h.step(&StepSpec {
        name: "many-connections".into(),
        schedule: rate_schedule(settings.rate),
        senders: settings.senders,
        duration: default_duration(&settings),
        count: None,
        idle: Some((idle, interval)),
        events: vec![],
    })?;
    let mut checks = standard_checks(&settings, &step, true);
    if h.gateway.product == Product::Logtail {
        let peak = step
            .gateway_metrics
            .get("connections_open_peak")
            .copied()
            .unwrap_or(0.0);
        let want = f64::from(idle + settings.senders);
        checks.push(Check::new(
            "many-connections: every connection was open at once",
            peak >= want,
            format!("peak {peak} open of {want}"),
        ));
    }
    Ok(h.finish(vec![step], checks, None))
}

/// `udp-burst`: `per_burst` datagrams as fast as possible at the start of every `every`.
pub fn udp_burst(settings: Settings, per_burst: u64, every: Duration) -> anyhow::Result<Outcome> {
    if settings.transport.is_stream() {
        bail!("udp-burst needs a datagram transport (--transport udp or unix-datagram)");
    }
    let errors_before = udp_receive_buffer_errors();
    let mut h = Harness::setup(settings.clone(), BrokerMode::Direct)?;
    let mut step = h.step(&StepSpec {
        name: "udp-burst".into(),
        schedule: Schedule::Bursts { per_burst, every },
        senders: settings.senders,
        duration: default_duration(&settings),
        count: None,
        idle: None,
        events: vec![],
    })?;
    if let (Some(a), Some(b)) = (errors_before, udp_receive_buffer_errors()) {
        step.gateway_metrics
            .insert("kernel_udp_rcvbuf_errors".into(), (b - a) as f64);
    }
    let checks = standard_checks(&settings, &step, true);
    Ok(h.finish(vec![step], checks, None))
}

/// `RcvbufErrors` of `/proc/net/snmp` (UDP datagrams the kernel dropped for a full receive
/// buffer, machine-wide).
fn udp_receive_buffer_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_spreads_samples_over_whole_seconds() {
        // 1000 lines and 0.5 CPU seconds per second, sampled unevenly, with a 1.5 s gap.
        let samples = vec![
            (0.0, 0, 0.0),
            (0.5, 500, 0.25),
            (2.0, 2000, 1.0),
            (3.0, 3000, 1.5),
        ];
        let mut h = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap();
        h.record(5000).unwrap();
        let arrivals = vec![(10, h.clone()), (0, h.clone()), (7, h)];
        let t = timeline(&samples, &arrivals);
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|s| s.sent == 1000), "{t:?}");
        assert!(t.iter().all(|s| (s.gateway_cpu_pct - 50.0).abs() < 1e-9));
        assert_eq!(t[0].delivered, 10);
        assert_eq!(t[2].delivered, 7);
        assert!((t[0].p99_ms - 5.0).abs() < 0.1);
    }

    #[test]
    fn ramp_step_fails_on_loss_lag_or_latency() {
        let settings = Settings {
            product: Product::Logtail,
            sink: Sink::Kafka,
            transport: Transport::Tcp,
            framing: Framing::Newline,
            senders: 1,
            rate: 1000.0,
            duration: None,
            count: None,
            sizes: SizeDistribution::Realistic,
            replay: None,
            partitions: 3,
            threads: 0,
            gateway_binary: PathBuf::new(),
            work_dir: None,
            keep: false,
            max_p99_ms: 500.0,
            max_datagram_loss_pct: None,
            drain_timeout: Duration::from_secs(1),
            settle: Duration::from_secs(1),
            broker_proxy: false,
            search_poll: Duration::from_millis(100),
        };
        let good = Step {
            rate_target: 1000.0,
            achieved_rate: 990.0,
            latency: Percentiles {
                count: 10,
                p99_ms: 20.0,
                ..Percentiles::default()
            },
            ..Step::default()
        };
        assert!(ramp_step_passes(&settings, &good));
        let lost = Step {
            lost: 1,
            ..good.clone()
        };
        let lagging = Step {
            achieved_rate: 900.0,
            ..good.clone()
        };
        let slow = Step {
            latency: Percentiles {
                count: 10,
                p99_ms: 600.0,
                ..Percentiles::default()
            },
            ..good.clone()
        };
        for bad in [lost, lagging, slow] {
            assert!(!ramp_step_passes(&settings, &bad));
        }
        assert_eq!(standard_checks(&settings, &good, true).len(), 2);
        assert!(
            !standard_checks(
                &settings,
                &Step {
                    sent: 5,
                    lost: 1,
                    ..good.clone()
                },
                true
            )[0]
            .passed
        );
    }

    #[test]
    fn snmp_udp_counters_parse() {
        // Whatever the machine says, reading it does not fail on Linux.
        assert!(udp_receive_buffer_errors().is_some());
    }
}
