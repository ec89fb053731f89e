//! Sinks: where batches go once they leave the rings.
//!
//! One sink thread takes batches from every shard's ring (whichever is ready; each ring in
//! order) and writes them to the configured sink. A failed write is retried with backoff while
//! the batch waits: the rings fill, and backpressure reaches the senders, instead of data being
//! dropped. Only once a shutdown has seen writes fail for [`GIVE_UP_AFTER`] are batches given
//! up on: that one, and each after it that fails its first attempt, so a broken sink delays a
//! shutdown by that long, not by that long per batch. Each is counted
//! (`logtail_sink_lost_records_total`) and logged.
//!
//! A batch may carry acknowledgements owed to its senders ([`crate::ack`]): the sink
//! thread takes them off before the write and hands them to the sink after it
//! ([`Sink::hold_acks`]), which releases them once the batch is durable. A batch given up on
//! drops them unreleased, so its senders resend.

mod blackhole;
pub mod elasticsearch;
pub mod kafka;
pub mod live_tail;
mod spill;
mod stdout;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Select;

use crate::ack::{self, AckToken};
use crate::encode::Encoding;
use crate::log_limit::RateLimitedWarning;
use crate::metrics::{ElasticsearchMetrics, KafkaMetrics, SinkMetrics};
use crate::pipeline::batch::Batch;
use crate::pipeline::ring::RingConsumer;

use std::path::Path;

use serde::Deserialize;

pub use blackhole::BlackholeSink;
pub use elasticsearch::{ElasticsearchSink, ElasticsearchSinkConfig};
pub use kafka::{KafkaSink, KafkaSinkConfig};
pub use stdout::StdoutSink;
pub use store::{LiveStoreSettings, StoreRetention, StoreSink, StoreSinkConfig};

/// How often a sink gets a [`Sink::tick`] (periodic fsync, flushes) unless it asks otherwise.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to write a batch that failed.
const MAX_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Batches are given up on once a shutdown has seen writes fail for this long.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// A destination for batches.
pub trait Sink: Send {
    /// The sink's name in metrics and logs.
    fn name(&self) -> &'static str;
    /// Writes one batch. On error nothing of the batch may be half-visible to readers: the
    /// caller retries the whole batch.
    fn write(&mut self, batch: &Batch) -> anyhow::Result<()>;
    /// Called about every [`Sink::tick_interval`], and between the attempts to write a batch
    /// that failed: time-driven work such as a periodic fsync, or serving delivery reports.
    fn tick(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// How often [`Sink::tick`] is wanted.
    fn tick_interval(&self) -> Duration {
        TICK
    }
    /// Takes the acknowledgements of the batch [`Sink::write`] just wrote, and releases each once
    /// that batch is durable. By default at once: the write itself made it durable.
    fn hold_acks(&mut self, acks: Vec<AckToken>) {
        ack::release_all(acks);
    }
    /// Makes everything written durable, before exit.
    fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Which sink the records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The local on-disk store, read back with `logtail read`.
    #[default]
    Store,
    /// One record per line on standard output.
    Stdout,
    /// Counted and discarded (for benchmarks).
    Blackhole,
    /// Kafka, through librdkafka, with a write-ahead log that holds batches while Kafka lags
    /// or is down (`[sink.kafka]`).
    Kafka,
    /// Elasticsearch or OpenSearch, with `_bulk` requests and the same WAL spill as Kafka
    /// (`[sink.elasticsearch]`).
    Elasticsearch,
}

impl SinkKind {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Store => "store",
            SinkKind::Stdout => "stdout",
            SinkKind::Blackhole => "blackhole",
            SinkKind::Kafka => "kafka",
            SinkKind::Elasticsearch => "elasticsearch",
        }
    }
}

/// `[sink]`: where records go and how they are encoded.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `store`, `stdout`, `blackhole`, `kafka` or `elasticsearch`. Default: `store`.
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// `json` (one object per record) or `raw` (the bytes as received). Default: `json`.
    pub encoding: Encoding,
    /// Settings of the `store` sink.
    pub store: StoreSinkConfig,
    /// Settings of the `kafka` sink.
    pub kafka: KafkaSinkConfig,
    /// Settings of the `elasticsearch` sink.
    pub elasticsearch: ElasticsearchSinkConfig,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Store,
            encoding: Encoding::Json,
            store: StoreSinkConfig::default(),
            kafka: KafkaSinkConfig::default(),
            elasticsearch: ElasticsearchSinkConfig::default(),
        }
    }
}

/// An opened sink, with the metrics only the Kafka or the Elasticsearch sink has, and the
/// settings the store sink takes live.
pub struct Opened {
    pub sink: Box<dyn Sink>,
    pub kafka_metrics: Option<Arc<KafkaMetrics>>,
    pub elasticsearch_metrics: Option<Arc<ElasticsearchMetrics>>,
    pub store_settings: Option<Arc<LiveStoreSettings>>,
}

/// Opens the sink `config` asks for, with its files under `data_dir` unless the config names
/// their directory; `largest_batch` is the most a shard puts in one batch.
///
/// # Errors
/// When the sink cannot be opened (e.g. the store directory is not writable or locked).
pub fn open(
    config: &SinkConfig,
    data_dir: &Path,
    largest_batch: kafka::LargestBatch,
) -> anyhow::Result<Opened> {
    let only = |sink: Box<dyn Sink>| Opened {
        sink,
        kafka_metrics: None,
        elasticsearch_metrics: None,
        store_settings: None,
    };
    Ok(match config.kind {
        SinkKind::Store => {
            let live = Arc::new(LiveStoreSettings::new(&config.store));
            Opened {
                store_settings: Some(live.clone()),
                ..only(Box::new(StoreSink::open(
                    &config.store,
                    config.store.dir_under(data_dir),
                    live,
                )?))
            }
        }
        SinkKind::Stdout => only(Box::<StdoutSink>::default()),
        SinkKind::Blackhole => only(Box::new(BlackholeSink)),
        SinkKind::Kafka => {
            let metrics = Arc::new(KafkaMetrics::default());
            Opened {
                sink: Box::new(KafkaSink::open(
                    &config.kafka,
                    config.kafka.wal.dir_under(data_dir),
                    largest_batch,
                    metrics.clone(),
                )?),
                kafka_metrics: Some(metrics),
                elasticsearch_metrics: None,
                store_settings: None,
            }
        }
        SinkKind::Elasticsearch => {
            let metrics = Arc::new(ElasticsearchMetrics::default());
            let es = &config.elasticsearch;
            Opened {
                sink: Box::new(ElasticsearchSink::open(
                    es,
                    es.wal.dir_under(data_dir),
                    es.dead_letter_under(data_dir),
                    metrics.clone(),
                )?),
                kafka_metrics: None,
                elasticsearch_metrics: Some(metrics),
                store_settings: None,
            }
        }
    })
}

/// Drains `rings` into `sink` until every ring is closed and empty, then closes the sink.
/// `stopping` tells that the gateway is shutting down, which bounds the retries of a failing
/// sink. Each batch written is offered to `tail`'s followers, if any ([`live_tail`]).
pub fn run(
    rings: Vec<RingConsumer>,
    mut sink: Box<dyn Sink>,
    metrics: Arc<SinkMetrics>,
    stopping: Arc<AtomicBool>,
    tail: Arc<live_tail::LiveTail>,
) -> anyhow::Result<()> {
    let warning = RateLimitedWarning::new(Duration::from_secs(1));
    let mut live = rings;
    let mut last_tick = Instant::now();
    let tick_interval = sink.tick_interval();
    let mut failing = Failing::default();
    while !live.is_empty() {
        let closed = {
            let mut select = Select::new();
            for ring in &live {
                select.recv(ring.receiver());
            }
            match select.select_timeout(tick_interval) {
                Ok(op) => {
                    let index = op.index();
                    match op.recv(live[index].receiver()) {
                        Ok(mut batch) => {
                            live[index].taken(&batch);
                            let acks = batch.take_acks();
                            let written = write_with_retry(
                                &mut *sink,
                                &batch,
                                &metrics,
                                &stopping,
                                &warning,
                                &mut failing,
                            );
                            if written {
                                sink.hold_acks(acks);
                                if tail.is_followed() {
                                    tail.publish(&batch);
                                }
                            }
                            None
                        }
                        Err(_) => Some(index),
                    }
                }
                Err(_) => None,
            }
        };
        if let Some(index) = closed {
            live.swap_remove(index);
        }
        if last_tick.elapsed() >= tick_interval {
            last_tick = Instant::now();
            if let Err(e) = sink.tick() {
                metrics.errors.add(1);
                warning.warn(|| format!("sink {}: {e:#}", sink.name()));
            }
        }
    }
    sink.close()
}

/// Whether the sink's writes are failing, kept across batches until one succeeds.
#[derive(Default)]
struct Failing {
    /// The last write failed.
    now: bool,
    /// When the first write failed once the shutdown had begun: the give-up clock.
    since_stopping: Option<Instant>,
}

/// True when `e` comes from a full disk (`ENOSPC`, or a quota: `EDQUOT`).
fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
        })
    })
}

/// Writes `batch`, retrying with backoff. False when it was given up on at shutdown.
fn write_with_retry(
    sink: &mut dyn Sink,
    batch: &Batch,
    metrics: &SinkMetrics,
    stopping: &AtomicBool,
    warning: &RateLimitedWarning,
    failing: &mut Failing,
) -> bool {
    let mut backoff = Duration::from_millis(10);
    loop {
        match sink.write(batch) {
            Ok(()) => {
                metrics.record_batch(batch.len(), batch.value_bytes(), batch.opened_at());
                if std::mem::take(failing).now {
                    tracing::info!("sink {}: writing again", sink.name());
                }
                metrics.disk_full.set(0);
                return true;
            }
            Err(e) => {
                metrics.errors.add(1);
                // A full disk is said at once, not only at shutdown: it is what a flood of
                // data does, and what an operator must act on.
                if is_disk_full(&e) && metrics.disk_full.get() == 0 {
                    metrics.disk_full.set(1);
                    tracing::error!(
                        "sink {}: the disk is full; retrying, and holding senders back until there is room: {e:#}",
                        sink.name()
                    );
                }
                warning.warn(|| format!("sink {}: write failed, retrying: {e:#}", sink.name()));
                failing.now = true;
                let given_up = stopping.load(Ordering::Relaxed)
                    && failing
                        .since_stopping
                        .get_or_insert_with(Instant::now)
                        .elapsed()
                        >= GIVE_UP_AFTER;
                if given_up {
                    metrics.lost_records.add(batch.len() as u64);
                    tracing::error!(
                        "sink {}: giving up on a batch of {} records at shutdown: {e:#}",
                        sink.name(),
                        batch.len()
                    );
                    return false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                if let Err(e) = sink.tick() {
                    warning.warn(|| format!("sink {}: {e:#}", sink.name()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_at_once_and_cleared_when_writes_succeed() {
        struct FullThenRoom(u32);
        impl Sink for FullThenRoom {
            fn name(&self) -> &'static str {
                "store"
            }
            fn write(&mut self, _: &Batch) -> anyhow::Result<()> {
                if self.0 == 0 {
                    return Ok(());
                }
                self.0 -= 1;
                let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
                Err(anyhow::Error::new(full).context("appending a block"))
            }
        }
        let metrics = SinkMetrics::new("store");
        let batch = Batch::with_capacity(0, 64, 1);
        let mut sink = FullThenRoom(2);
        let mut failing = Failing::default();
        let warning = RateLimitedWarning::new(Duration::from_secs(1));
        let stopping = AtomicBool::new(false);
        // The first failure sets the gauge; the write then succeeds and clears it.
        assert!(write_with_retry(
            &mut sink,
            &batch,
            &metrics,
            &stopping,
            &warning,
            &mut failing
        ));
        assert_eq!(metrics.errors.get(), 2);
        assert_eq!(metrics.disk_full.get(), 0);
        assert!(is_disk_full(
            &anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull)).context("x")
        ));
        assert!(!is_disk_full(&anyhow::anyhow!("broker down")));
    }
}
