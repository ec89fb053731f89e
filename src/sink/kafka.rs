//! The Kafka sink: batches go to Kafka through librdkafka, and to the write-ahead log
//! ([`crate::wal`]) whenever Kafka lags, is down, or has a backlog to catch up on.
//!
//! # States
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext, PurgeConfig};
use rdkafka_sys as rdsys;
use std::ffi::{c_int, c_void};

use super::{GIVE_UP_AFTER, Sink};
use crate::config::{Config, KafkaSinkConfig, WalFsync, WalFullPolicy};
use crate::log_limit::RateLimitedWarning;
use crate::metrics::KafkaMetrics;
use crate::pipeline::ack::{self, AckToken};
use crate::pipeline::batch::Batch;
use crate::time::now_unix_micros as unix_micros;
use crate::wal::{Appended, FsyncPolicy, FullPolicy, Wal, WalError, WalOptions};

/// How often the sink thread serves delivery reports and replays when no batch arrives.
pub const SERVICE_INTERVAL: Duration = Duration::from_millis(5);
/// librdkafka's `RD_KAFKA_PARTITION_UA` (a macro, so not in the bindings): let the
/// partitioner choose, by key.
const PARTITION_UNASSIGNED: i32 = -1;
/// How often the WAL's ledger (its acknowledgements) is written.
const LEDGER_INTERVAL: Duration = Duration::from_millis(100);

/// The Kafka sink. See the module doc.
pub struct KafkaSink {
    /// Dropped before `producer` (fields drop in order): handles must not outlive it.
    topics: TopicHandles,
    producer: BaseProducer<DeliveryContext>,
    /// To start a new producer after a fatal error.
    client_config: ClientConfig,
    topic: String,
    wal: Wal,
    limits: SpillLimits,
    in_flight: InFlight,
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
    /// Set when deliveries fail: no replay before then (see [`Lag::Failing`]).
    failing_until: Option<Instant>,
    /// The next backoff after a failure; reset by a successful delivery.
    failure_backoff: Duration,
    /// The state last reported in the metrics, to log its changes.
    reported_state: i64,
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

#[derive(Debug, Clone, Copy)]
struct SpillLimits {
    records: u64,
    bytes: u64,
    latency: Duration,
}

/// Why the sink spills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lag {
    /// Too many records or bytes in flight.
    InFlight,
    /// The oldest batch in flight is too old.
    Latency,
    /// librdkafka reported every broker down.
    BrokersDown,
    /// Deliveries failed a moment ago: replay waits out a backoff, so that a broker that
    /// refuses every record is not sent the same records in a tight loop.
    Failing,
}

impl Lag {
    fn describe(self) -> &'static str {
        match self {
            Lag::InFlight => "too many records in flight",
            Lag::Latency => "deliveries are slow",
            Lag::BrokersDown => "every broker is down",
            Lag::Failing => "deliveries failed; backing off",
        }
    }
}

/// The first pause after failed deliveries; it doubles while they keep failing.
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

impl KafkaSink {
    /// Opens the WAL (recovering it), creates the producer, and reports what the WAL holds.
    ///
    /// # Errors
    /// When the WAL cannot be opened (locked by another gateway, unreadable) or librdkafka
    /// refuses the configuration (the message names the property).
    pub fn open(config: &Config, metrics: Arc<KafkaMetrics>) -> anyhow::Result<KafkaSink> {
        let kafka = &config.sink.kafka;
        let (wal, report) = Wal::open(wal_options(config))
            .with_context(|| format!("cannot open the WAL in {}", config.wal_dir().display()))?;
        if report.pending_batches > 0 {
            tracing::info!(
                "kafka: the WAL holds {} record(s) in {} batch(es) from before; replaying them first",
                report.pending_records,
                report.pending_batches
            );
        }
        let client_config = client_config(config);
        let producer = new_producer(&client_config)?;
        let spill = &kafka.spill;
        let mut sink = KafkaSink {
            topics: TopicHandles(Default::default()),
            producer,
            client_config,
            topic: kafka.topic.clone(),
            wal,
            limits: SpillLimits {
                records: spill.max_in_flight_records,
                bytes: spill.max_in_flight_bytes,
                latency: Duration::from_millis(spill.max_delivery_latency_ms),
            },
            in_flight: InFlight::default(),
            retry: None,
            acks_after_retry: Vec::new(),
            sender_acks_after_retry: Vec::new(),
            last_write: LastWrite::Dropped,
            backlog: report.pending_batches > 0,
            recovered_from_drops: 0,
            failing_until: None,
            failure_backoff: FIRST_FAILURE_BACKOFF,
            reported_state: 0,
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
        self.serve_events();
        if self.producer.context().fatal.load(Ordering::Relaxed) {
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

    /// Serves the events librdkafka has queued (delivery reports, logs, errors), all of them.
    ///
    /// `poll(0)` serves one event. One delivery report event covers one partition's message set
    /// of one produce response, so at tens of thousands of records a second with a few
    /// partitions, hundreds of events a second arrive: served one per `service` call, they
    /// queued up until the oldest batch looked 2 s late and the sink spilled to the WAL for
    /// seconds (the "3–4 s delivery stalls" of the load tests, while the broker answered every
    /// request within milliseconds). Bounded, so that a flood of events cannot hold the sink
    /// thread.
    fn serve_events(&self) {
        const MAX_EVENTS_PER_CALL: usize = 10_000;
        let served = &self.producer.context().events_served;
        for _ in 0..MAX_EVENTS_PER_CALL {
            let before = served.load(Ordering::Relaxed);
            self.producer.poll(Duration::ZERO);
            if served.load(Ordering::Relaxed) == before {
                break;
            }
        }
    }

    /// After a fatal error (the idempotent producer can no longer guarantee order or
    /// exactly-once, e.g. the broker lost acknowledged data), librdkafka fails every record:
    /// purges the old producer, sends what it held back to the WAL, and starts a new one.
    fn replace_producer(&mut self) -> anyhow::Result<()> {
        let reason = self.producer.client().fatal_error().map_or_else(
            || "unknown".to_string(),
            |(code, text)| format!("{code}: {text}"),
        );
        tracing::error!(
            "kafka: the producer hit a fatal error ({reason}); starting a new one, records in \
             flight go back to the WAL"
        );
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + GIVE_UP_AFTER;
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
            self.take_reports();
        }
        if !self.in_flight.is_empty() {
            tracing::error!(
                "kafka: {} record(s) got no delivery report from the failed producer; those \
                 from the WAL are replayed, the others are lost",
                self.in_flight.records
            );
            self.metrics
                .lost_records
                .add(self.in_flight.direct_records());
            self.in_flight = InFlight::default();
        }
        self.append_retry();
        // Whatever the WAL handed out and is not acknowledged is handed out again.
        self.wal.rewind();
        self.backlog = true;
        // The handles belong to the old producer: released before it is.
        self.topics = TopicHandles(Default::default());
        self.producer = new_producer(&self.client_config)?;
        self.metrics.producer_restarts.add(1);
        Ok(())
    }

    fn brokers_down(&self) -> bool {
        self.producer.context().brokers_down.load(Ordering::Relaxed)
    }

    /// Whether Kafka lags, and why.
    fn lag(&self) -> Option<Lag> {
        if self.failing_until.is_some_and(|t| Instant::now() < t) {
            return Some(Lag::Failing);
        }
        if self.brokers_down() && !self.in_flight.is_empty() {
            // With nothing in flight, one batch may go as a probe.
            return Some(Lag::BrokersDown);
        }
        if self.in_flight.records >= self.limits.records
            || self.in_flight.bytes >= self.limits.bytes
        {
            return Some(Lag::InFlight);
        }
        if self
            .in_flight
            .oldest_produced_at()
            .is_some_and(|t| t.elapsed() >= self.limits.latency)
        {
            return Some(Lag::Latency);
        }
        None
    }

    /// Hands WAL batches to the producer while Kafka keeps up.
    fn replay(&mut self) -> anyhow::Result<()> {
        while self.backlog && !self.stopping && self.retry.is_none() && self.lag().is_none() {
            let Some(stored) = self.wal.next_unsent().context("cannot read the WAL")? else {
                self.backlog = false;
                break;
            };
            match Batch::decode_wal(stored.shard, &stored.payload) {
                Ok(batch) => {
                    self.metrics.replayed_records.add(batch.len() as u64);
                    self.produce(&batch, Origin::Wal(stored.seq));
                }
                Err(e) => {
                    // The WAL checked the record's CRC, so this is a payload written by a
                    // different version, or a bug: it can never be delivered.
                    self.metrics.rejected_records.add(u64::from(stored.records));
                    tracing::error!(
                        "kafka: WAL batch seq {} ({} records) cannot be decoded, skipped: {e}",
                        stored.seq,
                        stored.records
                    );
                    self.wal.acknowledge(stored.seq);
                }
            }
        }
        Ok(())
    }

    /// Appends `batch` to the WAL: `Ok(true)` once stored, `Ok(false)` when the WAL was full
    /// and dropped it (`drop_newest`), `Err` when it is full and the policy is `block`.
    fn spill(&mut self, batch: &Batch) -> anyhow::Result<bool> {
        self.wal_payload.clear();
        batch.encode_wal(&mut self.wal_payload);
        let records = u32::try_from(batch.len()).unwrap_or(u32::MAX);
        match self.wal.append(batch.shard(), records, &self.wal_payload) {
            Ok(Appended::Stored(_)) => {
                self.backlog = true;
                self.metrics.spilled_records.add(batch.len() as u64);
                self.metrics.spilled_batches.add(1);
                Ok(true)
            }
            Ok(Appended::Dropped) => {
                self.warning.warn(|| {
                    format!(
                        "kafka: the WAL is full; dropped a batch of {} new records \
                         (full_policy = drop_newest)",
                        batch.len()
                    )
                });
                Ok(false)
            }
            Err(WalError::Full) => {
                self.metrics.wal_full.add(1);
                anyhow::bail!("the WAL is full and Kafka is not taking its backlog")
            }
            Err(e) => Err(e).context("cannot append to the WAL"),
        }
    }

    /// Hands every record of `batch` to the producer; returns the in-flight slot it took.
    fn produce(&mut self, batch: &Batch, origin: Origin) -> Option<usize> {
        if batch.is_empty() {
            if let Origin::Wal(seq) = origin {
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
        // Records go to librdkafka in runs of the same topic, one `rd_kafka_produce_batch` call
        // per run (see [`TopicHandles`]).
        let mut run: Vec<rdsys::rd_kafka_message_t> = Vec::with_capacity(batch.len());
        let mut run_topic: &[u8] = &[];
        for entry in batch.iter() {
            if entry.topic != run_topic && !run.is_empty() {
                self.produce_run(run_topic, &mut run, slot);
            }
            run_topic = entry.topic;
            run.push(rdsys::rd_kafka_message_t {
                err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                rkt: std::ptr::null_mut(),
                partition: PARTITION_UNASSIGNED,
                payload: entry.value.as_ptr() as *mut c_void,
                len: entry.value.len(),
                key: if entry.key.is_empty() {
                    std::ptr::null_mut()
                } else {
                    entry.key.as_ptr() as *mut c_void
                },
                key_len: entry.key.len(),
                offset: 0,
                // The delivery opaque of `DeliveryContext` is a `usize` carried as the pointer.
                _private: slot as *mut c_void,
            });
        }
        if !run.is_empty() {
            self.produce_run(run_topic, &mut run, slot);
        }
        Some(slot)
    }

    /// Hands `run` (records of one topic; empty = the fixed topic) to librdkafka, and empties
    /// it. A record librdkafka refuses at once is reported as a failed delivery.
    fn produce_run(&mut self, topic: &[u8], run: &mut Vec<rdsys::rd_kafka_message_t>, slot: usize) {
        let topic_name = std::str::from_utf8(topic)
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.topic)
            .to_string();
        let rkt = self.topics.get(&self.producer, &topic_name);
        let mut pending = std::mem::take(run);
        loop {
            // SAFETY: `rkt` is a live topic handle of this producer; every message points into
            // `batch` (borrowed by our caller for the whole call) and librdkafka copies payload
            // and key (RD_KAFKA_MSG_F_COPY) before returning.
            let enqueued = unsafe {
                rdsys::rd_kafka_produce_batch(
                    rkt,
                    PARTITION_UNASSIGNED,
                    rdsys::RD_KAFKA_MSG_F_COPY,
                    pending.as_mut_ptr(),
                    pending.len() as c_int,
                )
            };
            if enqueued as usize == pending.len() {
                break;
            }
            let mut queue_full = Vec::new();
            for message in pending.drain(..) {
                let code = RDKafkaErrorCode::from(message.err);
                match code {
                    RDKafkaErrorCode::NoError => {}
                    // librdkafka's queue is sized well above the spill thresholds, so this is
                    // rare: wait for deliveries to make room, then try again.
                    RDKafkaErrorCode::QueueFull => queue_full.push(rdsys::rd_kafka_message_t {
                        err: rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                        ..message
                    }),
                    _ => {
                        // SAFETY: as above, the pointers are into the caller's batch.
                        let (key, value) = unsafe {
                            (
                                bytes(message.key, message.key_len),
                                bytes(message.payload, message.len),
                            )
                        };
                        self.producer
                            .context()
                            .lock_reports()
                            .failed
                            .push(FailedRecord {
                                slot,
                                code,
                                received_at_us: unix_micros(),
                                key: key.to_vec(),
                                topic: topic_name.clone(),
                                value: value.to_vec(),
                            });
                    }
                }
            }
            if queue_full.is_empty() {
                break;
            }
            self.producer.poll(Duration::from_millis(1));
            pending = queue_full;
        }
        pending.clear();
        *run = pending;
    }

    /// Applies the delivery reports gathered since the last call.
    fn take_reports(&mut self) {
        std::mem::swap(
            &mut self.reports,
            &mut *self.producer.context().lock_reports(),
        );
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
                // librdkafka does not always report it through `ClientContext::error` too.
                self.producer.context().fatal.store(true, Ordering::Relaxed);
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
            } else if let Some(Origin::Wal(seq)) = origin
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
                let topic = if record.topic == self.topic {
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
        if batch.origin == Origin::Direct {
            if batch.failed > 0 && self.retry.is_some() {
                self.sender_acks_after_retry.extend(batch.sender_acks);
            } else {
                ack::release_all(batch.sender_acks);
            }
            return;
        }
        if let Origin::Wal(seq) = batch.origin {
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
        let lag = self
            .lag()
            .or(self.brokers_down().then_some(Lag::BrokersDown));
        let state = match lag {
            Some(_) => 1,
            None if self.backlog => 2,
            None => 0,
        };
        if state != self.reported_state {
            self.reported_state = state;
            // Under a load near the thresholds the state can change many times a second: at
            // most one line a second, the current state.
            if self.last_state_log.elapsed() >= Duration::from_secs(1) {
                self.last_state_log = Instant::now();
                match lag {
                    Some(lag) => tracing::warn!("kafka: spilling to the WAL: {}", lag.describe()),
                    None if self.backlog => tracing::info!("kafka: replaying the WAL"),
                    None => tracing::info!("kafka: caught up; producing directly"),
                }
            }
        }
        let m = &self.metrics;
        m.state.set(state);
        m.brokers_down.set(i64::from(self.brokers_down()));
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
        self.last_write = if self.backlog
            || self.retry.is_some()
            || self.brokers_down()
            || self.lag().is_some()
        {
            if self.spill(batch)? {
                LastWrite::Wal
            } else {
                LastWrite::Dropped
            }
        } else {
            match self.produce(batch, Origin::Direct) {
                Some(slot) => LastWrite::Direct(slot),
                None => LastWrite::Wal,
            }
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
        let deadline = Instant::now() + GIVE_UP_AFTER;
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
            self.take_reports();
        }
        if !self.in_flight.is_empty() {
            tracing::warn!(
                "kafka: {} record(s) not acknowledged after {GIVE_UP_AFTER:?}; keeping them in the WAL",
                self.in_flight.records
            );
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.in_flight.is_empty() && Instant::now() < deadline {
                self.producer.poll(Duration::from_millis(10));
                self.take_reports();
            }
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
enum Origin {
    /// Straight from the rings: only in memory.
    Direct,
    /// From the WAL, with its sequence number.
    Wal(u64),
}

/// Bytes at `ptr`, `len` long; empty for a null pointer.
///
/// # Safety
/// A non-null `ptr` must point to `len` readable bytes that outlive the returned slice.
unsafe fn bytes<'a>(ptr: *mut c_void, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }
    }
}

/// librdkafka topic handles, one per topic produced to, kept for the life of the producer.
///
/// Producing through a handle with `rd_kafka_produce_batch` instead of one `producev` call per
/// record (what `BaseProducer::send` does) saves a topic-name lookup under librdkafka's
/// read-write lock and a `CString` per record: flat out (2M 200-byte lines to tansu, gateway on
/// one core) 0.78M lines per CPU-second with `send`, 0.84–0.87M with batches.
struct TopicHandles(std::collections::HashMap<String, TopicHandle>);

struct TopicHandle(*mut rdsys::rd_kafka_topic_t);

// SAFETY: librdkafka topic handles are thread-safe (reference-counted, internally locked).
unsafe impl Send for TopicHandle {}

impl TopicHandles {
    /// The handle of `topic`, created on first use.
    fn get(
        &mut self,
        producer: &BaseProducer<DeliveryContext>,
        topic: &str,
    ) -> *mut rdsys::rd_kafka_topic_t {
        if let Some(handle) = self.0.get(topic) {
            return handle.0;
        }
        // Topic names were checked (config validation, route rendering): no NUL inside.
        let name = std::ffi::CString::new(topic).unwrap_or_default();
        // SAFETY: the client pointer is live for the producer's life, and this map is dropped
        // before the producer (field order of `KafkaSink`). A null configuration means the
        // producer's default topic configuration.
        let rkt = unsafe {
            rdsys::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        self.0.insert(topic.to_string(), TopicHandle(rkt));
        rkt
    }
}

impl Drop for TopicHandles {
    fn drop(&mut self) {
        for (_, handle) in self.0.drain() {
            if !handle.0.is_null() {
                // SAFETY: created by rd_kafka_topic_new and released once, here.
                unsafe { rdsys::rd_kafka_topic_destroy(handle.0) };
            }
        }
    }
}

/// A batch handed to the producer whose records are not all reported yet.
#[derive(Debug)]
struct BatchInFlight {
    /// Set by [`InFlight::insert`]: tells this batch from a later one in the same slot.
    id: u64,
    origin: Origin,
    records: u32,
    remaining: u32,
    failed: u32,
    bytes: u64,
    produced_at: Instant,
    first_received_us: i64,
    keep_unacknowledged: bool,
    /// Senders' acknowledgements owed once every record is acknowledged.
    sender_acks: Vec<AckToken>,
}

/// The batches in flight, in slots that their records' delivery opaque names, and the order
/// they were produced in (for the age of the oldest).
#[derive(Debug, Default)]
struct InFlight {
    slots: Vec<Option<BatchInFlight>>,
    free: Vec<usize>,
    /// `(slot, id)` in produce order; an entry whose slot no longer holds batch `id` is stale
    /// and is dropped when it reaches the front.
    order: VecDeque<(usize, u64)>,
    next_id: u64,
    records: u64,
    bytes: u64,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn insert(&mut self, mut batch: BatchInFlight) -> usize {
        self.records += u64::from(batch.remaining);
        self.bytes += batch.bytes;
        batch.id = self.next_id;
        self.next_id += 1;
        let id = batch.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(batch);
                slot
            }
            None => {
                self.slots.push(Some(batch));
                self.slots.len() - 1
            }
        };
        self.order.push_back((slot, id));
        slot
    }

    fn origin(&self, slot: usize) -> Option<Origin> {
        self.slots.get(slot)?.as_ref().map(|b| b.origin)
    }

    /// Attaches senders' acknowledgements to the batch in `slot`, just produced. Should it be
    /// gone already, they are dropped unreleased: their senders resend, nothing is lost.
    fn hold_sender_acks(&mut self, slot: usize, acks: Vec<AckToken>) {
        if let Some(Some(batch)) = self.slots.get_mut(slot) {
            batch.sender_acks.extend(acks);
        }
    }

    fn keep_unacknowledged(&mut self, slot: usize) {
        if let Some(Some(batch)) = self.slots.get_mut(slot) {
            batch.keep_unacknowledged = true;
        }
    }

    /// Counts one record's report; returns the batch once all its records are reported.
    fn report(&mut self, slot: usize, failed: bool) -> Option<BatchInFlight> {
        let batch = self.slots.get_mut(slot)?.as_mut()?;
        batch.remaining = batch.remaining.saturating_sub(1);
        batch.failed += u32::from(failed);
        self.records = self.records.saturating_sub(1);
        if batch.remaining > 0 {
            return None;
        }
        let batch = self.slots[slot].take()?;
        self.bytes = self.bytes.saturating_sub(batch.bytes);
        self.free.push(slot);
        while let Some(&(slot, id)) = self.order.front() {
            if self.slots[slot].as_ref().is_some_and(|b| b.id == id) {
                break;
            }
            self.order.pop_front();
        }
        Some(batch)
    }

    /// Records in flight that came straight from the rings (so are nowhere else).
    fn direct_records(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .filter(|b| b.origin == Origin::Direct)
            .map(|b| u64::from(b.remaining))
            .sum()
    }

    /// When the oldest batch still in flight was produced.
    fn oldest_produced_at(&self) -> Option<Instant> {
        let &(slot, _) = self.order.front()?;
        self.slots[slot].as_ref().map(|b| b.produced_at)
    }
}

/// A record whose delivery failed, copied out of librdkafka's report.
#[derive(Debug)]
struct FailedRecord {
    slot: usize,
    code: RDKafkaErrorCode,
    received_at_us: i64,
    key: Vec<u8>,
    topic: String,
    value: Vec<u8>,
}

/// What delivery callbacks gathered since the sink last looked.
#[derive(Debug, Default)]
struct DeliveryReports {
    /// The slot of each record acknowledged.
    delivered: Vec<usize>,
    failed: Vec<FailedRecord>,
}

/// librdkafka's callbacks. Delivery reports are served by `poll` on the sink thread, so the
/// mutex is never contended; it is there because librdkafka requires the context to be `Sync`.
struct DeliveryContext {
    reports: Mutex<DeliveryReports>,
    brokers_down: AtomicBool,
    /// librdkafka raised a fatal error: this producer is done.
    fatal: AtomicBool,
    /// Events served by `poll` that reached this context (delivery reports, logs, errors):
    /// tells [`KafkaSink::serve_events`] whether the last `poll` found one.
    events_served: AtomicU64,
    warning: RateLimitedWarning,
}

impl DeliveryContext {
    fn lock_reports(&self) -> std::sync::MutexGuard<'_, DeliveryReports> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A librdkafka log line: warnings and worse through `warning` (rate-limited), the rest at
/// debug level.
pub(crate) fn log_librdkafka(
    warning: &RateLimitedWarning,
    level: RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => warning.warn(|| format!("librdkafka: {facility}: {message}")),
        _ => tracing::debug!("librdkafka: {facility}: {message}"),
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.events_served.fetch_add(1, Ordering::Relaxed);
        log_librdkafka(&self.warning, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.events_served.fetch_add(1, Ordering::Relaxed);
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.brokers_down.store(true, Ordering::Relaxed);
            }
            Some(RDKafkaErrorCode::Fatal) => self.fatal.store(true, Ordering::Relaxed),
            _ => {}
        }
        self.warning
            .warn(|| format!("librdkafka: {error}: {reason}"));
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        self.events_served.fetch_add(1, Ordering::Relaxed);
        let mut reports = self.lock_reports();
        match result {
            Ok(_) => {
                reports.delivered.push(slot);
                self.brokers_down.store(false, Ordering::Relaxed);
            }
            Err((error, message)) => {
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                reports.failed.push(FailedRecord {
                    slot,
                    code,
                    received_at_us: message
                        .timestamp()
                        .to_millis()
                        .filter(|&ms| ms > 0)
                        .map_or_else(unix_micros, |ms| ms.saturating_mul(1000)),
                    key: message.key().map(<[u8]>::to_vec).unwrap_or_default(),
                    topic: message.topic().to_string(),
                    value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                });
            }
        }
    }
}

/// A producer on `config`, with a fresh [`DeliveryContext`].
fn new_producer(config: &ClientConfig) -> anyhow::Result<BaseProducer<DeliveryContext>> {
    let context = DeliveryContext {
        reports: Mutex::new(DeliveryReports::default()),
        brokers_down: AtomicBool::new(false),
        fatal: AtomicBool::new(false),
        events_served: AtomicU64::new(0),
        warning: RateLimitedWarning::new(Duration::from_secs(5)),
    };
    config
        .create_with_context(context)
        .map_err(|e| anyhow::anyhow!("sink.kafka: librdkafka refused the configuration: {e}"))
}

/// Errors that retrying cannot fix: the record is dropped (counted and logged).
pub(crate) fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidRecord
    )
}

/// The librdkafka configuration of `[sink.kafka]`; the passthrough table is applied last.
fn client_config(config: &Config) -> ClientConfig {
    let kafka: &KafkaSinkConfig = &config.sink.kafka;
    let mut client = ClientConfig::new();
    // librdkafka's own queue must never be what limits: the spill thresholds are, so that a
    // lagging Kafka fills the WAL, not memory.
    let queue_messages = kafka
        .spill
        .max_in_flight_records
        .saturating_mul(2)
        .saturating_add(config.pipeline.batch_max_records as u64)
        .clamp(100_000, 10_000_000);
    let queue_kbytes = (kafka.spill.max_in_flight_bytes / 1024)
        .saturating_mul(2)
        .saturating_add(config.pipeline.batch_max_bytes as u64 / 512)
        .clamp(64 * 1024, 2_097_151);
    client
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", "logtail")
        .set("compression.codec", kafka.compression.as_str())
        .set("acks", &kafka.acks)
        .set("enable.idempotence", kafka.idempotence.to_string())
        .set("linger.ms", kafka.linger_ms.to_string())
        .set("batch.size", kafka.batch_max_bytes.to_string())
        .set("message.timeout.ms", kafka.message_timeout_ms.to_string())
        .set("queue.buffering.max.messages", queue_messages.to_string())
        .set("queue.buffering.max.kbytes", queue_kbytes.to_string());
    for (key, value) in &kafka.librdkafka {
        client.set(key, value);
    }
    if kafka.librdkafka.contains_key("debug") {
        // rdkafka otherwise sets the client's log level from the `log` crate's, which this
        // program does not use, and librdkafka's debug lines would never reach the log.
        client.set_log_level(RDKafkaLogLevel::Debug);
    }
    client
}

fn wal_options(config: &Config) -> WalOptions {
    let wal = &config.sink.kafka.wal;
    WalOptions {
        dir: config.wal_dir(),
        max_segment_bytes: wal.max_segment_bytes,
        max_total_bytes: wal.max_total_bytes,
        fsync: match wal.fsync {
            WalFsync::Never => FsyncPolicy::Never,
            WalFsync::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(wal.fsync_interval_ms))
            }
            WalFsync::EveryBatch => FsyncPolicy::EveryAppend,
        },
        full: match wal.full_policy {
            WalFullPolicy::Block => FullPolicy::Block,
            WalFullPolicy::DropOldest => FullPolicy::DropOldest,
            WalFullPolicy::DropNewest => FullPolicy::DropNewest,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(origin: Origin, records: u32, produced_at: Instant) -> BatchInFlight {
        BatchInFlight {
            id: 0,
            origin,
            records,
            remaining: records,
            failed: 0,
            bytes: u64::from(records) * 10,
            produced_at,
            first_received_us: 0,
            keep_unacknowledged: false,
            sender_acks: Vec::new(),
        }
    }

    #[test]
    fn in_flight_batches_complete_when_every_record_is_reported_and_slots_are_reused() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let t2 = t0 + Duration::from_millis(2);
        let mut in_flight = InFlight::default();
        let a = in_flight.insert(batch(Origin::Wal(7), 2, t0));
        let b = in_flight.insert(batch(Origin::Direct, 1, t1));
        assert_eq!((in_flight.records, in_flight.bytes), (3, 30));
        assert_eq!(in_flight.oldest_produced_at(), Some(t0));

        // b completes first; a is still the oldest.
        let done = in_flight.report(b, false).expect("b complete");
        assert_eq!(done.origin, Origin::Direct);
        assert_eq!(in_flight.oldest_produced_at(), Some(t0));
        // b's slot is reused by c, which must not be taken for the old b in the order.
        let c = in_flight.insert(batch(Origin::Direct, 1, t2));
        assert_eq!(c, b);

        assert!(in_flight.report(a, true).is_none());
        let done = in_flight.report(a, false).expect("a complete");
        assert_eq!((done.origin, done.failed), (Origin::Wal(7), 1));
        assert_eq!(in_flight.oldest_produced_at(), Some(t2));
        assert!(!in_flight.is_empty());
        assert!(in_flight.report(c, false).is_some());
        assert!(in_flight.is_empty());
        assert_eq!((in_flight.records, in_flight.bytes), (0, 0));
        assert_eq!(in_flight.oldest_produced_at(), None);
        // A report for a slot with nothing in it is ignored.
        assert!(in_flight.report(a, false).is_none());
    }

    #[test]
    fn only_errors_retrying_cannot_fix_are_permanent() {
        assert!(is_permanent(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(is_permanent(RDKafkaErrorCode::InvalidTopic));
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::PurgeQueue,
            RDKafkaErrorCode::PurgeInflight,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(!is_permanent(code), "{code:?}");
        }
    }
}
