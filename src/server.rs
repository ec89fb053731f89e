//! A running gateway: the shard threads, the sink thread and the metrics endpoint, started
//! together and stopped in order, and reloaded live.
//!
//! Shutdown order (what makes "nothing accepted is lost" true):
//! 1. the shards stop accepting and take what their sockets had already received;
//! 2. each shard hands its last records to its ring and closes it;
//! 3. the sink thread drains every ring to its end, then closes the sink (a final fsync);
//! 4. the HTTP server (metrics and API) stops last, so the final counts can be scraped until
//!    the end; its live tails end when it stops.
//!
//! Live reload ([`Server::reload`], on SIGHUP or a change of the file): the new file is loaded
//! and validated as at start; a file that does not is rejected, logged, and counted, and the
//! running configuration stays. Then listeners are compared by name: an unchanged one (same
//! `[[listen]]` table, same `[ingest]`) is not touched, its connections stay open; an added or
//! changed one is bound first, all of them, so that a port that cannot be bound rejects the
//! whole reload with nothing changed; then the new sockets are handed to the shards and the
//! removed or replaced listeners are stopped, each on its own: a stopped listener stops
//! accepting and its connections finish what they received, through the same shards, rings and
//! sink, so nothing received is lost or written twice. A changed listener on the same address is
//! bound before the old one closes (`SO_REUSEPORT`; a Unix socket file is replaced), so the
//! address never refuses. The batch limits of `[pipeline]` apply live (sizes up to those at
//! start, which the sink was opened for), and so do the store's retention and fsync interval
//! (`[sink.store] max_total_bytes`, `max_age_secs`, `fsync_interval_ms`: a lower limit deletes
//! at once). What the shards, the rings and the sink were built from (`data_dir`, `[ingest]
//! shards` and `legacy_timezone`, `ring_batches` and larger batches, the rest of `[sink]`,
//! `[metrics]`, `[api]`, `[search]`, `[console]`) takes effect at the next restart: a change there is logged as "needs a
//! restart" and shown in `logtail_config_needs_restart`
//! ([`crate::metrics::ReloadMetrics::needs_restart`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Config;
use crate::http::api::{ApiContext, ApiParts, ListenerAddress, StoreView};
use crate::metrics::{ListenerMetrics, MemoryBudgetMetrics, Metrics, SinkMetrics};
use crate::pipeline::ring;
use crate::pipeline::shard::{self, ShardCommand, ShardSettings};
use crate::search::config::SearchBackend;
use crate::search::elasticsearch::ElasticsearchSearch;
use crate::sink;
use crate::sink::live_tail::LiveTail;
use crate::source::limits::MemoryBudget;
use crate::source::{BoundListener, ListenerDefaults, Shutdown};

/// What a listener ended up bound to.
#[derive(Debug, Clone)]
pub struct BoundAddress {
    pub name: String,
    /// `IP:PORT` (with the real port when 0 was asked) or the socket path.
    pub local: String,
}

/// A listener the shards are reading.
struct OpenListener {
    address: BoundAddress,
    /// `udp`, `tcp`, `unix-datagram`, `unix-stream` or `agent`.
    kind: &'static str,
    /// What it was opened from: its `[[listen]]` table and `[ingest]`, as text. Equal text on
    /// reload: the listener is left alone.
    settings: String,
    metrics: Arc<ListenerMetrics>,
    /// A Kafka source's own metrics.
    kafka_metrics: Option<Arc<crate::metrics::KafkaSourceMetrics>>,
    unix_path: Option<PathBuf>,
    /// Fired to close it (on reload, or at shutdown).
    stop: tokio::sync::watch::Sender<bool>,
}

/// A running gateway.
pub struct Server {
    /// The configuration in force: the last file applied, but for the keys that need a
    /// restart, which keep their values from start.
    config: Config,
    /// The configuration the threads were built from.
    started: Config,
    listeners: Vec<OpenListener>,
    shard_commands: Vec<UnboundedSender<ShardCommand>>,
    budget: Arc<MemoryBudget>,
    metrics: Arc<Metrics>,
    /// The search API, told of the listeners open after each reload.
    api: Option<Arc<ApiContext>>,
    /// The store sink's settings that a reload changes live.
    store_settings: Option<Arc<sink::LiveStoreSettings>>,
    metrics_address: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    shards: Vec<JoinHandle<()>>,
    sink: JoinHandle<anyhow::Result<()>>,
    control: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
}

/// Why a reload was rejected; the running configuration stayed.
#[derive(Debug, thiserror::Error)]
#[error("reload rejected, the running configuration stays: {0:#}")]
pub struct ReloadRejected(pub anyhow::Error);

impl Server {
    /// Opens the sink, binds every listener, and starts the threads.
    ///
    /// # Errors
    /// When the sink cannot be opened, a listener cannot be bound, or a thread cannot start;
    /// the message names the part at fault.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        let shard_count = config.shard_count().min(u16::MAX as usize);
        let sink::Opened {
            sink,
            kafka_metrics,
            elasticsearch_metrics,
            store_settings,
        } = sink::open(
            &config.sink,
            &config.data_dir,
            sink::kafka::LargestBatch {
                records: config.pipeline.batch_max_records,
                bytes: config.pipeline.batch_max_bytes,
            },
        )?;
        let sink_metrics = Arc::new(SinkMetrics::new(sink.name()));

        let budget = MemoryBudget::new(
            config.ingest.limits.memory_budget(),
            Arc::new(MemoryBudgetMetrics::default()),
        );
        let bound = bind_listeners(config, &budget, shard_count, &[])?;
        let http_plan = config
            .http_server()
            .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.message))?;
        let http_listener = http_plan
            .as_ref()
            .map(|plan| crate::http::bind(plan.address))
            .transpose()?;
        let tail = LiveTail::new(crate::http::api::MAX_TAILS);

        let route = config.kafka_route().map(Arc::new);
        let (shutdown, signal) = Shutdown::new();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut consumers = Vec::with_capacity(shard_count);
        let mut ring_metrics = Vec::with_capacity(shard_count);
        let mut shards = Vec::with_capacity(shard_count);
        let mut shard_commands = Vec::with_capacity(shard_count);
        let limits = config.pipeline.batch_limits();
        for id in 0..shard_count {
            let (producer, consumer, metrics) = ring::ring(id as u16, config.pipeline.ring_batches);
            consumers.push(consumer);
            ring_metrics.push(metrics);
            let settings = ShardSettings {
                id: id as u16,
                encoding: config.sink.encoding,
                legacy_zone: config.ingest.legacy_timezone,
                limits,
                route: route.clone(),
            };
            let (commands, received) = tokio::sync::mpsc::unbounded_channel();
            shard_commands.push(commands);
            shards.push(shard::spawn_shard(
                settings,
                producer,
                received,
                signal.clone(),
            )?);
        }

        let sink_thread = {
            let (metrics, stopping, tail) = (sink_metrics.clone(), stopping.clone(), tail.clone());
            std::thread::Builder::new()
                .name("sink".into())
                .spawn(move || sink::run(consumers, sink, metrics, stopping, tail))?
        };

        let metrics = Arc::new(
            Metrics::new(Vec::new(), ring_metrics, sink_metrics, kafka_metrics)
                .with_memory_budget(budget.metrics().clone())
                .with_elasticsearch(elasticsearch_metrics),
        );
        let metrics_address = http_listener.as_ref().and_then(|l| l.local_addr().ok());
        let api = match &http_plan {
            Some(plan) if plan.api => Some(ApiContext::new(ApiParts {
                metrics: metrics.clone(),
                store: store_settings.clone().map(|retention| StoreView {
                    dir: config.store_dir(),
                    retention,
                }),
                elasticsearch: match config.search.backend {
                    SearchBackend::Store => None,
                    SearchBackend::Elasticsearch => Some(Arc::new(
                        ElasticsearchSearch::new(&config.search.elasticsearch)
                            .map_err(|e| e.within("search.elasticsearch"))?,
                    )),
                },
                sink: config.sink.kind.as_str(),
                tail: tail.clone(),
                token_file: plan.token_file.clone(),
            })?),
            _ => None,
        };
        let control = match (http_listener, &http_plan) {
            (Some(listener), Some(plan)) => {
                let state = crate::http::HttpState {
                    metrics: metrics.clone(),
                    api: api.clone(),
                    serve_metrics: plan.metrics,
                    console: Arc::new(config.console.clone()),
                };
                Some(crate::http::spawn(listener, state)?)
            }
            _ => None,
        };
        let mut server = Server {
            config: config.clone(),
            started: config.clone(),
            listeners: Vec::new(),
            shard_commands,
            budget,
            metrics,
            api,
            store_settings,
            metrics_address,
            shutdown,
            stopping,
            shards,
            sink: sink_thread,
            control,
        };
        server.open(bound)?;
        if let (Some(addr), Some(plan)) = (metrics_address, &http_plan) {
            if plan.metrics {
                tracing::info!("metrics at http://{addr}/metrics");
            }
            if plan.api {
                tracing::info!("API at http://{addr}/api/v1/");
            }
        }
        tracing::info!(
            "gateway running: {shard_count} shard(s), sink {}",
            config.sink.kind.as_str()
        );
        Ok(server)
    }

    /// Hands bound listeners to the shards and keeps them as open.
    fn open(&mut self, bound: Vec<(BoundListener, String)>) -> anyhow::Result<()> {
        for (b, settings) in bound {
            let (stop, signal) = Shutdown::new();
            for (id, commands) in self.shard_commands.iter().enumerate() {
                let sockets = match b.for_shard(id) {
                    Ok(Some(socket)) => vec![(b.context.clone(), socket)],
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(e).context("cannot share the listeners with the shards");
                    }
                };
                let listen = ShardCommand::Listen {
                    sockets,
                    stop: signal.clone(),
                };
                if commands.send(listen).is_err() {
                    anyhow::bail!("shard {id} has stopped");
                }
            }
            tracing::info!(listener = %b.context.name, "listening on {} {}", b.kind.as_str(), b.local);
            self.listeners.push(OpenListener {
                address: BoundAddress {
                    name: b.context.name.clone(),
                    local: b.local.clone(),
                },
                kind: b.kind.as_str(),
                settings,
                metrics: b.context.metrics.clone(),
                kafka_metrics: b.kafka_metrics.clone(),
                unix_path: b.unix_path.clone(),
                stop,
            });
        }
        self.metrics
            .set_listeners(self.listeners.iter().map(|l| l.metrics.clone()).collect());
        self.metrics.set_kafka_sources(
            self.listeners
                .iter()
                .filter_map(|l| l.kafka_metrics.clone())
                .collect(),
        );
        if let Some(api) = &self.api {
            api.set_listeners(
                self.listeners
                    .iter()
                    .map(|l| ListenerAddress {
                        name: l.address.name.clone(),
                        kind: l.kind,
                        address: l.address.local.clone(),
                    })
                    .collect(),
            );
        }
        Ok(())
    }

    /// Puts `new` in force (see the module doc): listeners added, removed and changed, each
    /// without touching the others; changes that need a restart are logged and returned.
    /// `config_sha256` identifies the file in `logtail_config_info`.
    ///
    /// # Errors
    /// [`ReloadRejected`] when a new or changed listener cannot be bound (nothing changed then).
    pub fn reload(
        &mut self,
        new: &Config,
        config_sha256: String,
    ) -> Result<Vec<String>, ReloadRejected> {
        let needs_restart = needs_restart(&self.started, new);
        let shard_count = self.shard_commands.len();
        // A new budget only when its size changed: listeners left alone keep theirs.
        let budget =
            if new.ingest.limits.memory_budget() == self.config.ingest.limits.memory_budget() {
                self.budget.clone()
            } else {
                MemoryBudget::new(
                    new.ingest.limits.memory_budget(),
                    self.budget.metrics().clone(),
                )
            };
        let kept: Vec<bool> = self
            .listeners
            .iter()
            .map(|open| {
                (0..new.listen.len()).any(|i| {
                    new.listener_name(i) == open.address.name
                        && listener_settings(new, i) == open.settings
                })
            })
            .collect();
        let unchanged: Vec<&str> = self
            .listeners
            .iter()
            .zip(&kept)
            .filter(|(_, kept)| **kept)
            .map(|(open, _)| open.address.name.as_str())
            .collect();
        let previous: Vec<(String, Arc<ListenerMetrics>)> = self
            .listeners
            .iter()
            .map(|l| (l.address.name.clone(), l.metrics.clone()))
            .collect();
        let to_open: Vec<usize> = (0..new.listen.len())
            .filter(|&i| !unchanged.contains(&new.listener_name(i).as_str()))
            .collect();
        let bound = bind_some(new, &budget, shard_count, &to_open, &previous)
            .map_err(|e| self.rejected(e))?;
        let closing: Vec<OpenListener> = {
            let listeners = std::mem::take(&mut self.listeners);
            let (keep, close): (Vec<_>, Vec<_>) =
                listeners.into_iter().zip(kept).partition(|(_, kept)| *kept);
            self.listeners = keep.into_iter().map(|(l, _)| l).collect();
            close.into_iter().map(|(l, _)| l).collect()
        };
        // The new sockets are read before the old ones close: an address that stays never
        // refuses.
        self.open(bound).map_err(|e| self.rejected(e))?;
        for old in closing {
            let _ = old.stop.send(true);
            let path_reused = self
                .listeners
                .iter()
                .any(|l| l.unix_path.is_some() && l.unix_path == old.unix_path);
            if let Some(path) = old.unix_path.filter(|_| !path_reused) {
                let _ = std::fs::remove_file(path);
            }
            tracing::info!(listener = %old.address.name, "closed {}", old.address.local);
        }
        self.budget = budget;
        let mut running = new.clone();
        keep_restart_only_sections(&mut running, &self.started);
        if running.pipeline.batch_limits() != self.config.pipeline.batch_limits() {
            for commands in &self.shard_commands {
                let _ = commands.send(ShardCommand::SetLimits(running.pipeline.batch_limits()));
            }
            tracing::info!("pipeline: batches cut by the new limits");
        }
        if let Some(store) = &self.store_settings {
            if store.set(&new.sink.store) {
                tracing::info!("store: retention and fsync interval changed live");
            }
            // Only the live keys of [sink.store]: the others stay as started (needs_restart).
            let live = store.current();
            running.sink.store.max_total_bytes = live.max_total_bytes;
            running.sink.store.max_age = live.max_age;
            running.sink.store.fsync_interval = live.fsync_interval;
        }
        self.config = running;
        for key in &needs_restart {
            tracing::warn!("reload: {key} changed; needs a restart to take effect");
        }
        self.metrics.reload.reloads.add(1);
        self.metrics
            .reload
            .set_running(config_sha256, needs_restart.clone());
        tracing::info!(
            "configuration reloaded: {} listener(s) open",
            self.listeners.len()
        );
        Ok(needs_restart)
    }

    /// Counts a rejected reload.
    fn rejected(&self, e: anyhow::Error) -> ReloadRejected {
        self.metrics.reload.failures.add(1);
        ReloadRejected(e)
    }

    /// Counts a reload whose file did not load (logged by the caller).
    pub fn reload_failed(&self) {
        self.metrics.reload.failures.add(1);
    }

    /// The bound address of the UDP or TCP listener `name`.
    pub fn socket_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.address.name == name)
            .and_then(|l| l.address.local.parse().ok())
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where the HTTP server (metrics and API) listens, if enabled.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// Stops the gateway in order (see the module doc) and waits until everything accepted is
    /// written.
    ///
    /// # Errors
    /// When the sink failed to close (its final fsync), or a thread panicked; [`GaveUp`] when
    /// records taken in were given up on.
    pub fn shutdown(self) -> anyhow::Result<()> {
        self.stopping.store(true, Ordering::Relaxed);
        for listener in &self.listeners {
            let _ = listener.stop.send(true);
        }
        let _ = self.shutdown.send(true);
        let mut panicked = false;
        for shard in self.shards {
            panicked |= shard.join().is_err();
        }
        let sink_result = self
            .sink
            .join()
            .map_err(|_| anyhow::anyhow!("the sink thread panicked"))?;
        if let Some((thread, stop)) = self.control {
            let _ = stop.send(());
            let _ = thread.join();
        }
        for path in self.listeners.iter().filter_map(|l| l.unix_path.as_ref()) {
            let _ = std::fs::remove_file(path);
        }
        if panicked {
            anyhow::bail!("a shard thread panicked");
        }
        sink_result.context("closing the sink")?;
        let lost = self.metrics.sink.lost_records.get()
            + self
                .metrics
                .kafka
                .as_ref()
                .map_or(0, |k| k.lost_records.get());
        if lost > 0 {
            return Err(GaveUp { records: lost }.into());
        }
        Ok(())
    }
}

/// A shutdown that had to give records up: the sink kept failing (a full disk, Kafka and its
/// WAL both refusing) until the shutdown's time ran out. `logtail serve` exits non-zero with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "stopped, but gave up {records} records the sink could not write \
     (sink_lost_records_total, kafka_lost_records_total)"
)]
pub struct GaveUp {
    pub records: u64,
}

/// `[[listen]]` table `index` and `[ingest]` as text: what a listener was opened from.
fn listener_settings(config: &Config, index: usize) -> String {
    format!("{:?}\n{:?}", config.listen[index], config.ingest)
}

/// Binds every listener of `config`.
fn bind_listeners(
    config: &Config,
    budget: &Arc<MemoryBudget>,
    shard_count: usize,
    previous: &[(String, Arc<ListenerMetrics>)],
) -> anyhow::Result<Vec<(BoundListener, String)>> {
    let all: Vec<usize> = (0..config.listen.len()).collect();
    bind_some(config, budget, shard_count, &all, previous)
}

/// Binds listeners `indices` of `config`; one that had a listener of the same name before keeps
/// its counters (`previous`). All or none: the first failure drops those already bound.
fn bind_some(
    config: &Config,
    budget: &Arc<MemoryBudget>,
    shard_count: usize,
    indices: &[usize],
    previous: &[(String, Arc<ListenerMetrics>)],
) -> anyhow::Result<Vec<(BoundListener, String)>> {
    let defaults: ListenerDefaults = config.ingest.listener_defaults(budget);
    indices
        .iter()
        .map(|&i| {
            let name = config.listener_name(i);
            let mut bound =
                BoundListener::bind(&config.listen[i], name.clone(), &defaults, i, shard_count)?;
            if let Some((_, metrics)) = previous.iter().find(|(n, _)| *n == name) {
                bound.context.metrics = metrics.clone();
            }
            Ok((bound, listener_settings(config, i)))
        })
        .collect()
}

/// The keys whose change only takes effect at a restart, changed from `running` (the
/// configuration at start) to `new`: what the shards, rings, sink and HTTP server were built
/// from.
fn needs_restart(running: &Config, new: &Config) -> Vec<String> {
    let text = |c: &Config| {
        [
            ("data_dir", format!("{:?}", c.data_dir)),
            ("ingest.shards", format!("{:?}", c.ingest.shards)),
            (
                "ingest.legacy_timezone",
                format!("{:?}", c.ingest.legacy_timezone),
            ),
            (
                "pipeline.ring_batches",
                format!("{:?}", c.pipeline.ring_batches),
            ),
            ("sink", format!("{:?}", without_live_keys(&c.sink))),
            ("metrics", format!("{:?}", c.metrics)),
            ("api", format!("{:?}", c.api)),
            ("search", format!("{:?}", c.search)),
            ("console", format!("{:?}", c.console)),
        ]
    };
    let mut keys: Vec<String> = text(running)
        .into_iter()
        .zip(text(new))
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0.to_string())
        .collect();
    // The sink was opened for batches up to these sizes (the Kafka sink sizes its WAL payloads
    // by them): smaller ones apply live, larger ones at the next start.
    let (was, now) = (&running.pipeline, &new.pipeline);
    if now.batch_max_records > was.batch_max_records {
        keys.push("pipeline.batch_max_records".into());
    }
    if now.batch_max_bytes > was.batch_max_bytes {
        keys.push("pipeline.batch_max_bytes".into());
    }
    keys
}

/// `sink` but for the keys the store sink takes live ([`sink::LiveStoreSettings`]).
fn without_live_keys(sink: &sink::SinkConfig) -> sink::SinkConfig {
    let mut sink = sink.clone();
    let defaults = sink::StoreSinkConfig::default();
    sink.store.max_total_bytes = defaults.max_total_bytes;
    sink.store.max_age = defaults.max_age;
    sink.store.fsync_interval = defaults.fsync_interval;
    sink
}

/// `running` with the keys that need a restart set back to what `started` (the configuration
/// the threads were built from) says; batch sizes at most what the sink was opened for.
fn keep_restart_only_sections(running: &mut Config, started: &Config) {
    running.data_dir = started.data_dir.clone();
    running.ingest.shards = started.ingest.shards;
    running.ingest.legacy_timezone = started.ingest.legacy_timezone;
    running.pipeline.ring_batches = started.pipeline.ring_batches;
    running.pipeline.batch_max_records = running
        .pipeline
        .batch_max_records
        .min(started.pipeline.batch_max_records);
    running.pipeline.batch_max_bytes = running
        .pipeline
        .batch_max_bytes
        .min(started.pipeline.batch_max_bytes);
    running.sink = started.sink.clone();
    running.metrics = started.metrics.clone();
    running.api = started.api.clone();
    running.search = started.search.clone();
    running.console = started.console.clone();
}
