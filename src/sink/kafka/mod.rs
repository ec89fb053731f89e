//! The Kafka sink: batches go to Kafka through librdkafka, and to the write-ahead log
//! ([`crate::wal`]) whenever Kafka lags, is down, or has a backlog to catch up on.
//!
//! # States ([`State`], decided by [`state`])
//!
//! ```text
//!             lag or brokers down                    lag gone, WAL has a backlog
//!   direct ───────────────────────► spilling ──────────────────────────────► replaying
//!     ▲                                ▲                                         │
//!     │                                └──────────── lag or brokers down ────────┤
//!     └──────────────────────────── WAL backlog all handed to the producer ──────┘
//! ```
//!
//! - **direct**: a batch from the rings is handed straight to the producer. Nothing is written
//!   to disk on the way.
//! - **spilling**: Kafka lags, so new batches are appended to the WAL, and nothing is replayed.
//!   Kafka *lags* when any of these holds (`[sink.kafka.spill]`): the records (or value bytes)
//!   handed to the producer and not yet acknowledged pass a threshold; the oldest batch not yet
//!   acknowledged is older than `max_delivery_latency_ms`; librdkafka reported all brokers down
//!   (cleared by the next acknowledgement). While brokers are down and nothing is in flight, one
//!   batch from the WAL is handed to the producer as a probe, so that the first acknowledgement
//!   after an outage ends it.
//! - **replaying**: Kafka keeps up again and the WAL holds batches not yet handed over: they are
//!   read back in sequence order and produced, as far as the in-flight thresholds allow, and new
//!   batches are appended to the WAL behind them, so no record overtakes an older one.
//!
//! A batch read back from the WAL is acknowledged to the WAL once Kafka acknowledged every one of
//! its records; a WAL segment is deleted once all its batches are.
//!
//! # Why spill instead of always writing the WAL first
//!
//! Writing every batch to the WAL before producing it would make the healthy path pay an extra
//! lz4 compression and write of every byte (the WAL bench: ~1 GiB/s, so ~0.3 µs per 300-byte
//! record, about as much again as parse + encode), and librdkafka compresses the same bytes a
//! second time for the wire. Spilling only when Kafka lags keeps the healthy path at one copy
//! into librdkafka, and costs what matters only when Kafka is in trouble. The price is the
//! window below.
//!
//! # What can be lost, and what is only duplicated
//!
//! - Records in memory only: those in the rings and shard batches (bounded by
//!   `pipeline.ring_batches` batches per shard), and those handed to the producer straight from
//!   the rings and not yet acknowledged (bounded by `spill.max_in_flight_records` and
//!   `spill.max_in_flight_bytes`). A clean shutdown (SIGTERM) waits up to
//!   [`super::GIVE_UP_AFTER`] for their acknowledgements, then purges the producer and writes
//!   what was not acknowledged to the WAL: nothing is lost. `kill -9` or a crash loses them.
//! - Records in the WAL: safe from a crash of the gateway under every fsync policy; from a crash
//!   of the machine per the policy (see [`crate::wal`]).
//! - Duplicates: a batch replayed from the WAL whose acknowledgement had not reached the WAL's
//!   ledger before a crash or shutdown is produced again, whole. Consumers see at-least-once.
//!
//! # Order
//!
//! Records with the same key go to the same partition in the order the gateway received them
//! (librdkafka's idempotent producer keeps order through its own retries), across outages and
//! restarts, with one exception: a record whose delivery *fails* (only possible with a finite
//! `message_timeout_ms`, or for a non-retriable error) goes back to the WAL behind newer ones.
//! A fatal error of the idempotent producer (the broker lost records it had acknowledged, so
//! librdkafka can no longer vouch for order) fails every record in flight: they go back to the
//! WAL, a new producer is started (`logtail_kafka_producer_restarts_total`), and replay resumes.
//!
//! Records Kafka rejects for good (too large, invalid) are counted in
//! `logtail_kafka_rejected_records_total` and logged; they are the only records this sink
//! drops, apart from the WAL's `full_policy`.
//!
//! # Layout
//! - [`state`]: when to produce directly, spill or replay: a pure function of what the sink
//!   observes, unit-tested over every combination of its inputs.
//! - `producer`: librdkafka (FFI, topic handles, the delivery callbacks).
//! - `in_flight`: the batches handed to the producer and not yet fully reported.
//! - [`settings`]: the `[sink.kafka]` section.
//! - this file: the sink itself, which observes, asks [`state`], and does the I/O (WAL,
//!   producer, acknowledgements).

mod in_flight;
mod producer;
pub mod settings;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::error::RDKafkaErrorCode;

use super::spill::{self, Spilled, Unsent};
use super::{GIVE_UP_AFTER, Sink};
use crate::ack::{self, AckToken};
use crate::kafka::is_permanent;
use crate::log_limit::RateLimitedWarning;
use crate::metrics::KafkaMetrics;
use crate::pipeline::batch::Batch;
use crate::time::now_unix_micros as unix_micros;
use crate::wal::Wal;
use in_flight::{BatchInFlight, BatchesInFlight};
use producer::{DeliveryReports, LibrdkafkaProducer};
pub use settings::{KafkaSinkConfig, LargestBatch, SpillConfig};
pub use state::State;
use state::{Observation, SpillLimits, WriteTo};

/// How often the sink thread serves delivery reports and replays when no batch arrives.
pub const SERVICE_INTERVAL: Duration = Duration::from_millis(5);
/// How often the WAL's ledger (its acknowledgements) is written.
const LEDGER_INTERVAL: Duration = Duration::from_millis(100);

/// The Kafka sink. See the module doc.
pub struct KafkaSink {
    producer: LibrdkafkaProducer,
    wal: Wal,
    limits: SpillLimits,
    in_flight: BatchesInFlight,
    /// Records whose delivery failed, waiting to be appended to the WAL (only while it refuses).
    retry: Option<Batch>,
    /// WAL batches to acknowledge once `retry` is in the WAL: their failed records are in it.
    acks_after_retry: Vec<u64>,
    /// Senders' acknowledgements to release once `retry` is in the WAL, for the same reason.
    sender_acks_after_retry: Vec<AckToken>,
    /// Where the last [`Sink::write`] put its batch, for [`Sink::hold_acks`].
    last_write: LastWrite,
    /// The WAL holds batches not yet handed to the producer.
    backlog: bool,
    /// Set when deliveries fail: no replay before then (see [`state::Lag::Failing`]).
    failing_until: Option<Instant>,
    /// The next backoff after a failure; reset by a successful delivery.
    failure_backoff: Duration,
    /// The state last reported in the metrics, to log its changes.
    reported_state: State,
    last_state_log: Instant,
    /// Records of WAL batches dropped by `drop_oldest` while in flight (so not lost).
    recovered_from_drops: u64,
    /// Set by `close`: replay stops, and WAL batches that fail are left for the next start.
    stopping: bool,
    metrics: Arc<KafkaMetrics>,
    warning: RateLimitedWarning,
    wal_payload: Vec<u8>,
    reports: DeliveryReports,
    last_ledger_write: Instant,
}

/// The first pause after failed deliveries; it doubles while they keep failing.
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

impl KafkaSink {
    /// Opens the WAL in `wal_dir` (recovering it), creates the producer for batches up to
    /// `largest_batch`, and reports what the WAL holds.
    ///
    /// # Errors
    /// When the WAL cannot be opened (locked by another gateway, unreadable) or librdkafka
    /// refuses the configuration (the message names the property).
    pub fn open(
        kafka: &KafkaSinkConfig,
        wal_dir: PathBuf,
        largest_batch: LargestBatch,
        metrics: Arc<KafkaMetrics>,
    ) -> anyhow::Result<KafkaSink> {
        let (wal, report) = Wal::open(kafka.wal.options(wal_dir.clone()))
            .with_context(|| format!("cannot open the WAL in {}", wal_dir.display()))?;
        if report.pending_batches > 0 {
            tracing::info!(
                "kafka: the WAL holds {} record(s) in {} batch(es) from before; replaying them first",
                report.pending_records,
                report.pending_batches
            );
        }
        let producer = LibrdkafkaProducer::new(
            kafka.producer_settings(largest_batch).client_config(),
            kafka.topic.to_string(),
        )?;
        let mut sink = KafkaSink {
            producer,
            wal,
            limits: kafka.spill.limits(),
            in_flight: BatchesInFlight::default(),
            retry: None,
            acks_after_retry: Vec::new(),
            sender_acks_after_retry: Vec::new(),
            last_write: LastWrite::Dropped,
            backlog: report.pending_batches > 0,
            recovered_from_drops: 0,
            failing_until: None,
            failure_backoff: FIRST_FAILURE_BACKOFF,
            reported_state: State::Direct,
            last_state_log: Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or_else(Instant::now),
            stopping: false,
            metrics,
            warning: RateLimitedWarning::new(Duration::from_secs(1)),
            wal_payload: Vec::new(),
            reports: DeliveryReports::default(),
            last_ledger_write: Instant::now(),
        };
        sink.refresh_gauges();
        Ok(sink)
    }

    /// Serves delivery reports, moves failed records back to the WAL, replays what Kafka can
    /// take, and writes the WAL's ledger when due.
    fn service(&mut self) -> anyhow::Result<()> {
        self.producer.serve_events();
        if self.producer.is_fatal() {
            self.replace_producer()?;
        }
        self.take_reports();
        self.append_retry();
        self.replay()?;
        if self.last_ledger_write.elapsed() >= LEDGER_INTERVAL {
            self.last_ledger_write = Instant::now();
            self.wal.flush().context("cannot write the WAL's ledger")?;
        }
        self.refresh_gauges();
        Ok(())
    }

    /// After a fatal error (the idempotent producer can no longer guarantee order or
    /// exactly-once, e.g. the broker lost acknowledged data), librdkafka fails every record:
    /// purges the old producer, sends what it held back to the WAL, and starts a new one.
    fn replace_producer(&mut self) -> anyhow::Result<()> {
        let reason = self.producer.fatal_reason();
        tracing::error!(
            "kafka: the producer hit a fatal error ({reason}); starting a new one, records in \
             flight go back to the WAL"
        );
        self.producer.purge();
        self.await_reports(Instant::now() + GIVE_UP_AFTER);
        if !self.in_flight.is_empty() {
            tracing::error!(
                "kafka: {} record(s) got no delivery report from the failed producer; those \
                 from the WAL are replayed, the others are lost",
                self.in_flight.records
            );
            self.metrics
                .lost_records
                .add(self.in_flight.direct_records());
            self.in_flight = BatchesInFlight::default();
        }
        self.append_retry();
        // Whatever the WAL handed out and is not acknowledged is handed out again.
        self.wal.rewind();
        self.backlog = true;
        self.producer.restart()?;
        self.metrics.producer_restarts.add(1);
        Ok(())
    }

    /// Serves delivery reports until nothing is in flight or `deadline` passed.
    fn await_reports(&mut self, deadline: Instant) {
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
            self.take_reports();
        }
    }

    /// What the state machine decides on, now.
    fn observe(&self) -> Observation {
        Observation {
            now: Instant::now(),
            failing_until: self.failing_until,
            brokers_down: self.producer.brokers_down(),
            in_flight_records: self.in_flight.records,
            in_flight_bytes: self.in_flight.bytes,
            oldest_in_flight: self.in_flight.oldest_produced_at(),
            wal_backlog: self.backlog,
            retry_waiting: self.retry.is_some(),
            stopping: self.stopping,
        }
    }

    /// Hands WAL batches to the producer while Kafka keeps up.
    fn replay(&mut self) -> anyhow::Result<()> {
        while self.limits.may_replay(&self.observe()) {
            match spill::next_unsent(&mut self.wal, "kafka")? {
                Unsent::Batch(seq, batch) => {
                    self.metrics.replayed_records.add(batch.len() as u64);
                    self.produce(&batch, BatchOrigin::Wal(seq));
                }
                // It can never be delivered.
                Unsent::Undecodable(records) => {
                    self.metrics.rejected_records.add(u64::from(records));
                }
                Unsent::None => {
                    self.backlog = false;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Appends `batch` to the WAL: `Ok(true)` once stored, `Ok(false)` when the WAL was full
    /// and dropped it (`drop_newest`), `Err` when it is full and the policy is `block`.
    fn spill(&mut self, batch: &Batch) -> anyhow::Result<bool> {
        match spill::append(
            &mut self.wal,
            &mut self.wal_payload,
            batch,
            "kafka",
            &self.warning,
        )? {
            Spilled::Stored => {
                self.backlog = true;
                self.metrics.spilled_records.add(batch.len() as u64);
                self.metrics.spilled_batches.add(1);
                Ok(true)
            }
            Spilled::Dropped => Ok(false),
            Spilled::Full => {
                self.metrics.wal_full.add(1);
                anyhow::bail!("the WAL is full and Kafka is not taking its backlog")
            }
        }
    }

    /// Hands every record of `batch` to the producer; returns the in-flight slot it took.
    fn produce(&mut self, batch: &Batch, origin: BatchOrigin) -> Option<usize> {
        if batch.is_empty() {
            if let BatchOrigin::Wal(seq) = origin {
                self.wal.acknowledge(seq);
            }
            return None;
        }
        let first_received_us = batch.iter().next().map_or(0, |e| e.received_at_us);
        let slot = self.in_flight.insert(BatchInFlight {
            id: 0,
            origin,
            records: batch.len() as u32,
            remaining: batch.len() as u32,
            failed: 0,
            bytes: batch.value_bytes() as u64,
            produced_at: Instant::now(),
            first_received_us,
            keep_unacknowledged: false,
            sender_acks: Vec::new(),
        });
        self.metrics.produced_records.add(batch.len() as u64);
        self.producer.produce(batch, slot);
        Some(slot)
    }

    /// Applies the delivery reports gathered since the last call.
    fn take_reports(&mut self) {
        self.producer.swap_reports(&mut self.reports);
        if !self.reports.failed.is_empty() {
            self.take_failures();
        }
        let mut completed = Vec::new();
        for &slot in &self.reports.delivered {
            if let Some(batch) = self.in_flight.report(slot, false) {
                completed.push(batch);
            }
        }
        if !self.reports.delivered.is_empty() {
            self.failure_backoff = FIRST_FAILURE_BACKOFF;
        }
        self.metrics
            .delivered_records
            .add(self.reports.delivered.len() as u64);
        self.reports.delivered.clear();
        for batch in completed {
            self.complete(batch);
        }
    }

    fn take_failures(&mut self) {
        let failed = std::mem::take(&mut self.reports.failed);
        self.failing_until = Some(Instant::now() + self.failure_backoff);
        self.failure_backoff = (self.failure_backoff * 2).min(MAX_FAILURE_BACKOFF);
        let mut completed = Vec::new();
        for record in failed {
            self.metrics
                .delivery_error(&format!("{:?}", record.code), 1);
            if record.code == RDKafkaErrorCode::Fatal {
                self.producer.set_fatal();
            }
            let origin = self.in_flight.origin(record.slot);
            if is_permanent(record.code) {
                self.metrics.rejected_records.add(1);
                self.warning.warn(|| {
                    format!(
                        "kafka: a record for topic {} was rejected and is dropped: {}",
                        record.topic, record.code
                    )
                });
            } else if let Some(BatchOrigin::Wal(seq)) = origin
                && self.stopping
                && self.wal.is_pending(seq)
            {
                // Left unacknowledged in the WAL: the whole batch is replayed at the next start,
                // in its place.
                self.in_flight.keep_unacknowledged(record.slot);
            } else {
                self.metrics.retried_records.add(1);
                let retry = self
                    .retry
                    .get_or_insert_with(|| Batch::with_capacity(0, 64 * 1024, 64));
                let topic = if record.topic == self.producer.topic() {
                    &[][..]
                } else {
                    record.topic.as_bytes()
                };
                retry.push_routed(
                    record.received_at_us,
                    |keys| keys.extend_from_slice(&record.key),
                    |topics| topics.extend_from_slice(topic),
                    |values| values.extend_from_slice(&record.value),
                );
            }
            if let Some(batch) = self.in_flight.report(record.slot, true) {
                completed.push(batch);
            }
        }
        for batch in completed {
            self.complete(batch);
        }
    }

    /// A batch all of whose records have a delivery report.
    fn complete(&mut self, batch: BatchInFlight) {
        let received_us = batch.first_received_us;
        let now_us = unix_micros();
        self.metrics.delivery_latency.record(Duration::from_micros(
            now_us.saturating_sub(received_us).max(0) as u64,
        ));
        if batch.origin == BatchOrigin::Direct {
            if batch.failed > 0 && self.retry.is_some() {
                self.sender_acks_after_retry.extend(batch.sender_acks);
            } else {
                ack::release_all(batch.sender_acks);
            }
            return;
        }
        if let BatchOrigin::Wal(seq) = batch.origin {
            if batch.keep_unacknowledged {
                return;
            }
            if !self.wal.is_pending(seq) {
                // Dropped by `drop_oldest` while in flight, yet every record of it was
                // delivered, retried or rejected: none is lost to the drop.
                self.recovered_from_drops += u64::from(batch.records);
                return;
            }
            if batch.failed > 0 && self.retry.is_some() {
                self.acks_after_retry.push(seq);
            } else {
                self.wal.acknowledge(seq);
            }
        }
    }

    /// Moves the records whose delivery failed to the WAL.
    fn append_retry(&mut self) {
        let Some(retry) = self.retry.take() else {
            return;
        };
        match self.spill(&retry) {
            Ok(stored) => {
                for seq in self.acks_after_retry.drain(..) {
                    self.wal.acknowledge(seq);
                }
                let sender_acks = std::mem::take(&mut self.sender_acks_after_retry);
                if stored {
                    ack::release_all(sender_acks);
                }
            }
            Err(e) => {
                self.warning.warn(|| {
                    format!(
                        "kafka: {} records whose delivery failed wait in memory for the WAL: {e:#}",
                        retry.len()
                    )
                });
                self.retry = Some(retry);
            }
        }
    }

    fn refresh_gauges(&mut self) {
        let seen = self.observe();
        let (state, lag) = self.limits.state(&seen);
        if state != self.reported_state {
            self.reported_state = state;
            // Under a load near the thresholds the state can change many times a second: at
            // most one line a second, the current state.
            if self.last_state_log.elapsed() >= Duration::from_secs(1) {
                self.last_state_log = Instant::now();
                match lag {
                    Some(lag) => tracing::warn!("kafka: spilling to the WAL: {}", lag.describe()),
                    None if state == State::Replaying => tracing::info!("kafka: replaying the WAL"),
                    None => tracing::info!("kafka: caught up; producing directly"),
                }
            }
        }
        let m = &self.metrics;
        m.state.set(state.metric_value());
        m.brokers_down.set(i64::from(seen.brokers_down));
        m.in_flight_records.set(self.in_flight.records as i64);
        m.in_flight_bytes.set(self.in_flight.bytes as i64);
        let stats = self.wal.stats();
        m.wal_pending_records.set(stats.pending_records as i64);
        m.wal_pending_batches.set(stats.pending_batches as i64);
        m.wal_disk_bytes.set(stats.disk_bytes as i64);
        m.wal_dropped_records.set(
            stats
                .dropped_records
                .saturating_sub(self.recovered_from_drops) as i64,
        );
        m.wal_corrupt_records.set(stats.corrupt_records as i64);
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write(&mut self, batch: &Batch) -> anyhow::Result<()> {
        self.service()?;
        self.last_write = match self.limits.write_to(&self.observe()) {
            WriteTo::Wal if self.spill(batch)? => LastWrite::Wal,
            WriteTo::Wal => LastWrite::Dropped,
            WriteTo::Producer => match self.produce(batch, BatchOrigin::Direct) {
                Some(slot) => LastWrite::Direct(slot),
                None => LastWrite::Wal,
            },
        };
        Ok(())
    }

    /// Direct batches release their senders' acknowledgements once Kafka acknowledged every
    /// record (or, for records whose delivery failed, once they are in the WAL); spilled ones
    /// at once; dropped ones never, which makes their senders resend.
    fn hold_acks(&mut self, acks: Vec<AckToken>) {
        match self.last_write {
            LastWrite::Wal => ack::release_all(acks),
            LastWrite::Direct(slot) => self.in_flight.hold_sender_acks(slot, acks),
            LastWrite::Dropped => drop(acks),
        }
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        self.service()
    }

    fn tick_interval(&self) -> Duration {
        SERVICE_INTERVAL
    }

    /// Waits up to [`GIVE_UP_AFTER`] for what is in flight to be acknowledged, then purges the
    /// producer: records from the rings that were not acknowledged go to the WAL, batches from
    /// the WAL stay in it. Then the WAL's ledger is written and synced.
    fn close(&mut self) -> anyhow::Result<()> {
        self.stopping = true;
        self.await_reports(Instant::now() + GIVE_UP_AFTER);
        if !self.in_flight.is_empty() {
            tracing::warn!(
                "kafka: {} record(s) not acknowledged after {GIVE_UP_AFTER:?}; keeping them in the WAL",
                self.in_flight.records
            );
            self.producer.purge();
            self.await_reports(Instant::now() + Duration::from_secs(5));
        }
        let mut result = Ok(());
        let give_up = Instant::now() + GIVE_UP_AFTER;
        while let Some(retry) = &self.retry {
            if Instant::now() >= give_up {
                self.metrics.lost_records.add(retry.len() as u64);
                result = Err(anyhow::anyhow!(
                    "{} records whose delivery failed could not be written to the WAL",
                    retry.len()
                ));
                break;
            }
            self.append_retry();
            if self.retry.is_some() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !self.in_flight.is_empty() {
            tracing::error!(
                "kafka: {} record(s) handed to librdkafka got no delivery report and may be lost",
                self.in_flight.records
            );
        }
        self.wal.flush().context("cannot write the WAL's ledger")?;
        self.refresh_gauges();
        result
    }
}

/// Where [`Sink::write`] put the last batch.
#[derive(Debug, Clone, Copy)]
enum LastWrite {
    /// Handed to the producer, in this in-flight slot.
    Direct(usize),
    /// Appended to the WAL (or empty: nothing to make durable).
    Wal,
    /// Dropped by the WAL's `full_policy`.
    Dropped,
}

/// Where a batch handed to the producer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchOrigin {
    /// Straight from the rings: only in memory.
    Direct,
    /// From the WAL, with its sequence number.
    Wal(u64),
}
