//! A running gateway: the shard threads, the sink thread and the metrics endpoint, started
//! together and stopped in order.
//!
//! Shutdown order (what makes "nothing accepted is lost" true):
//! 1. the shards stop accepting and take what their sockets had already received;
//! 2. each shard hands its last records to its ring and closes it;
//! 3. the sink thread drains every ring to its end, then closes the sink (a final fsync);
//! 4. the HTTP server (metrics and API) stops last, so the final counts can be scraped until
//!    the end; its live tails end when it stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;

use crate::config::Config;
use crate::http::api::{ApiContext, ApiParts, ListenerAddress, StoreView};
use crate::metrics::{MemoryBudgetMetrics, Metrics, SinkMetrics};
use crate::pipeline::ring;
use crate::pipeline::shard::{self, ShardSettings};
use crate::sink;
use crate::sink::live_tail::LiveTail;
use crate::source::limits::MemoryBudget;
use crate::source::{BoundListener, Shutdown};

/// What a listener ended up bound to.
#[derive(Debug, Clone)]
pub struct BoundAddress {
    pub name: String,
    /// `IP:PORT` (with the real port when 0 was asked) or the socket path.
    pub local: String,
}

/// A running gateway.
pub struct Server {
    addresses: Vec<BoundAddress>,
    metrics: Arc<Metrics>,
    metrics_address: Option<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    shards: Vec<JoinHandle<()>>,
    sink: JoinHandle<anyhow::Result<()>>,
    control: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
    unix_paths: Vec<std::path::PathBuf>,
}

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
        let defaults = config.ingest.listener_defaults(&budget);
        let bound: Vec<BoundListener> = config
            .listen
            .iter()
            .enumerate()
            .map(|(i, listener)| {
                BoundListener::bind(listener, config.listener_name(i), &defaults, i, shard_count)
            })
            .collect::<Result<_, _>>()?;
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
        let limits = config.pipeline.batch_limits();
        for id in 0..shard_count {
            let (producer, consumer, metrics) = ring::ring(id as u16, config.pipeline.ring_batches);
            consumers.push(consumer);
            ring_metrics.push(metrics);
            let sockets = bound
                .iter()
                .filter_map(|b| match b.for_shard(id) {
                    Ok(Some(socket)) => Some(Ok((b.context.clone(), socket))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<std::io::Result<Vec<_>>>()
                .context("cannot share the listeners with the shards")?;
            let settings = ShardSettings {
                id: id as u16,
                encoding: config.sink.encoding,
                legacy_zone: config.ingest.legacy_timezone,
                limits,
                route: route.clone(),
            };
            shards.push(shard::spawn_shard(
                settings,
                producer,
                sockets,
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
            Metrics::new(
                bound.iter().map(|b| b.context.metrics.clone()).collect(),
                ring_metrics,
                sink_metrics,
                kafka_metrics,
            )
            .with_memory_budget(budget.metrics().clone()),
        );
        let metrics_address = http_listener.as_ref().and_then(|l| l.local_addr().ok());
        let control = match (http_listener, &http_plan) {
            (Some(listener), Some(plan)) => {
                let api = if plan.api {
                    Some(ApiContext::new(ApiParts {
                        metrics: metrics.clone(),
                        store: (config.sink.kind == sink::SinkKind::Store).then(|| StoreView {
                            dir: config.store_dir(),
                            max_total_bytes: config.sink.store.max_total_bytes,
                            max_age: config.sink.store.max_age,
                        }),
                        sink: config.sink.kind.as_str(),
                        listeners: bound
                            .iter()
                            .map(|b| ListenerAddress {
                                name: b.context.name.clone(),
                                kind: b.kind.as_str(),
                                address: b.local.clone(),
                            })
                            .collect(),
                        tail: tail.clone(),
                        token_file: plan.token_file.clone(),
                    })?)
                } else {
                    None
                };
                let state = crate::http::HttpState {
                    metrics: metrics.clone(),
                    api,
                    serve_metrics: plan.metrics,
                    console: Arc::new(config.console.clone()),
                };
                Some(crate::http::spawn(listener, state)?)
            }
            _ => None,
        };
        let addresses = bound
            .iter()
            .map(|b| BoundAddress {
                name: b.context.name.clone(),
                local: b.local.clone(),
            })
            .collect();
        let unix_paths = bound.iter().filter_map(|b| b.unix_path.clone()).collect();
        for b in &bound {
            tracing::info!(listener = %b.context.name, "listening on {} {}", b.kind.as_str(), b.local);
        }
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
        Ok(Server {
            addresses,
            metrics,
            metrics_address,
            shutdown,
            stopping,
            shards,
            sink: sink_thread,
            control,
            unix_paths,
        })
    }

    /// The bound address of the UDP or TCP listener `name`.
    pub fn socket_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addresses
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.local.parse().ok())
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
        for path in &self.unix_paths {
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
