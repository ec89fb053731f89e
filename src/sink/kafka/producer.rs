//! The librdkafka side of the Kafka sink: the producer, its topic handles, and the callbacks
//! that gather delivery reports for the sink thread.
//!
//! # Invariants
//! - Every record carries its batch's in-flight slot as librdkafka's delivery opaque (a
//!   `usize` in the message's `_private` pointer), and gets exactly one report: a delivery, a
//!   failure (from the broker, or a refusal at enqueue time recorded here), or a purge.
//! - Topic handles are released before the producer that made them ([`LibrdkafkaProducer`]'s
//!   field order, and [`LibrdkafkaProducer::restart`]).
//! - The callbacks only run inside `poll`, on the sink thread: the reports' mutex is never
//!   contended.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext, PurgeConfig};
use rdkafka_sys as rdsys;

use super::unix_micros;
use crate::kafka::{log_client_error, log_librdkafka};
use crate::log_limit::RateLimitedWarning;
use crate::pipeline::batch::Batch;

/// librdkafka's `RD_KAFKA_PARTITION_UA` (a macro, so not in the bindings): let the
/// partitioner choose, by key.
const PARTITION_UNASSIGNED: i32 = -1;

/// A librdkafka producer with its topic handles. See the module doc.
pub(super) struct LibrdkafkaProducer {
    /// Dropped before `producer` (fields drop in order): handles must not outlive it.
    topics: TopicHandles,
    producer: BaseProducer<DeliveryContext>,
    /// To start a new producer after a fatal error.
    client_config: ClientConfig,
    /// The topic of records whose batch names none.
    topic: String,
}

impl LibrdkafkaProducer {
    /// A producer on `client_config`, producing to `topic` unless a record names another.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration (the message names the property).
    pub(super) fn new(
        client_config: ClientConfig,
        topic: String,
    ) -> anyhow::Result<LibrdkafkaProducer> {
        Ok(LibrdkafkaProducer {
            topics: TopicHandles(HashMap::new()),
            producer: new_producer(&client_config)?,
            client_config,
            topic,
        })
    }

    /// The fixed topic.
    pub(super) fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands every record of `batch` to librdkafka, with `slot` as delivery opaque.
    pub(super) fn produce(&mut self, batch: &Batch, slot: usize) {
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

    /// Serves the events librdkafka has queued (delivery reports, logs, errors), all of them.
    ///
    /// `poll(0)` serves one event. One delivery report event covers one partition's message set
    /// of one produce response, so at tens of thousands of records a second with a few
    /// partitions, hundreds of events a second arrive: served one per `service` call, they
    /// queued up until the oldest batch looked 2 s late and the sink spilled to the WAL for
    /// seconds (the "3–4 s delivery stalls" of the load tests, while the broker answered every
    /// request within milliseconds). Bounded, so that a flood of events cannot hold the sink
    /// thread.
    pub(super) fn serve_events(&self) {
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

    /// Serves events for up to `timeout`.
    pub(super) fn poll(&self, timeout: Duration) {
        self.producer.poll(timeout);
    }

    /// Fails every record queued or in flight: each gets a purge report.
    pub(super) fn purge(&self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
    }

    /// librdkafka reported every broker down, and no delivery succeeded since.
    pub(super) fn brokers_down(&self) -> bool {
        self.producer.context().brokers_down.load(Ordering::Relaxed)
    }

    /// librdkafka raised a fatal error: this producer is done (see [`Self::restart`]).
    pub(super) fn is_fatal(&self) -> bool {
        self.producer.context().fatal.load(Ordering::Relaxed)
    }

    /// Marks this producer as done, for a fatal error seen in a delivery report (librdkafka does
    /// not always report it through `ClientContext::error` too).
    pub(super) fn set_fatal(&self) {
        self.producer.context().fatal.store(true, Ordering::Relaxed);
    }

    /// librdkafka's text of the fatal error.
    pub(super) fn fatal_reason(&self) -> String {
        self.producer.client().fatal_error().map_or_else(
            || "unknown".to_string(),
            |(code, text)| format!("{code}: {text}"),
        )
    }

    /// Swaps the reports gathered by the callbacks with `reports` (emptied by the caller).
    pub(super) fn swap_reports(&self, reports: &mut DeliveryReports) {
        std::mem::swap(reports, &mut *self.producer.context().lock_reports());
    }

    /// Replaces this producer by a new one on the same configuration.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub(super) fn restart(&mut self) -> anyhow::Result<()> {
        // The handles belong to the old producer: released before it is.
        self.topics = TopicHandles(HashMap::new());
        self.producer = new_producer(&self.client_config)?;
        Ok(())
    }
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
struct TopicHandles(HashMap<String, TopicHandle>);

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
        // before the producer (field order of `LibrdkafkaProducer`). A null configuration means
        // the producer's default topic configuration.
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

/// A record whose delivery failed, copied out of librdkafka's report.
#[derive(Debug)]
pub(super) struct FailedRecord {
    pub(super) slot: usize,
    pub(super) code: RDKafkaErrorCode,
    pub(super) received_at_us: i64,
    pub(super) key: Vec<u8>,
    pub(super) topic: String,
    pub(super) value: Vec<u8>,
}

/// What delivery callbacks gathered since the sink last looked.
#[derive(Debug, Default)]
pub(super) struct DeliveryReports {
    /// The slot of each record acknowledged.
    pub(super) delivered: Vec<usize>,
    pub(super) failed: Vec<FailedRecord>,
}

/// librdkafka's callbacks. Delivery reports are served by `poll` on the sink thread, so the
/// mutex is never contended; it is there because librdkafka requires the context to be `Sync`.
struct DeliveryContext {
    reports: Mutex<DeliveryReports>,
    brokers_down: AtomicBool,
    /// librdkafka raised a fatal error: this producer is done.
    fatal: AtomicBool,
    /// Events served by `poll` that reached this context (delivery reports, logs, errors):
    /// tells [`LibrdkafkaProducer::serve_events`] whether the last `poll` found one.
    events_served: AtomicU64,
    warning: RateLimitedWarning,
}

impl DeliveryContext {
    fn lock_reports(&self) -> std::sync::MutexGuard<'_, DeliveryReports> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
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
        log_client_error(&self.warning, &error, reason);
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
