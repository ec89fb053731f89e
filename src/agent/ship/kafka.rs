//! The `kafka` shipper: lines straight to Kafka, acknowledged by librdkafka's delivery reports.
//!
//! Each line becomes the RFC 5424 message the other shippers send ([`super::rfc5424`]), is
//! parsed and encoded by the gateway's own code ([`crate::parse`], [`crate::encode`]) and routed
//! by the gateway's templates ([`Route`]): a consumer sees the same record, key and topic
//! whether the line came through a gateway or straight from the agent. The record's `source`
//! is the agent's host name.
//!
//! A batch is acknowledged once Kafka acknowledged every one of its lines, in batch order
//! (acknowledgements are cumulative, so a batch whose lines are all delivered still waits for
//! the batches before it). The producer is idempotent with `message.timeout.ms = 0`: it retries
//! until delivered, keeping per-partition order, and while Kafka is away the tailer stops at
//! `max_unacked_batches` (the files are the buffer). A line Kafka refuses for good (too large,
//! invalid) is counted in the log and acknowledged with its batch: retrying cannot help. Any
//! other failure (only a fatal producer error can cause one) stops the shipper: the agent then
//! exits with an error, and its restart resends from the checkpoints, so nothing is lost.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};

use super::rfc5424::MessageFormatter;
use super::{AckSender, Shipper, Stopped};
use crate::agent::batch::LineBatch;
use crate::agent::config::KafkaShipConfig;
use crate::encode::{self, Encoding, Envelope, format_rfc3339_micros};
use crate::metrics::RateLimitedWarning;
use crate::parse::{self, Format, LegacyZone, ParseContext};
use crate::pipeline::route::Route;
use crate::sink::kafka::{is_permanent, log_librdkafka};

/// See the [module docs](self).
pub struct KafkaShipper {
    producer: ThreadedProducer<Deliveries>,
    bootstrap_servers: String,
    topic: String,
    route: Route,
    encoding: Encoding,
    host: String,
    formatter: MessageFormatter,
    parse_context: ParseContext,
    received_at: Vec<u8>,
    message: Vec<u8>,
    value: Vec<u8>,
    key: Vec<u8>,
    topic_buf: Vec<u8>,
}

/// librdkafka's callbacks: counts delivery reports per batch and acknowledges batches in order.
struct Deliveries {
    /// Batches produced and not yet acknowledged: `(seq, lines without a report)`, in order.
    pending: Mutex<VecDeque<(u64, u32)>>,
    acks: AckSender,
    /// A line failed for a reason retrying could fix: the shipper stops (see the module docs).
    failed: AtomicBool,
    warning: RateLimitedWarning,
}

impl Deliveries {
    fn report(&self, seq: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(batch) = pending.iter_mut().find(|(s, _)| *s == seq) {
            batch.1 = batch.1.saturating_sub(1);
        }
        let mut acknowledged = None;
        while let Some(&(seq, 0)) = pending.front() {
            acknowledged = Some(seq);
            pending.pop_front();
        }
        drop(pending);
        if let Some(seq) = acknowledged {
            self.acks.acknowledge(seq);
        }
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka(&self.warning, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.failed.store(true, Ordering::Relaxed);
        }
        self.warning
            .warn(|| format!("librdkafka: {error}: {reason}"));
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        if let Err((error, _)) = result {
            let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
            if is_permanent(code) {
                self.warning
                    .warn(|| format!("kafka: a line was refused for good and is dropped: {code}"));
            } else {
                self.failed.store(true, Ordering::Relaxed);
                // Not counted as delivered: the batch is never acknowledged, and is resent
                // after the restart.
                return;
            }
        }
        self.report(seq as u64);
    }
}

impl KafkaShipper {
    /// A producer for `config`, shipping as `host`.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration (the message names the property).
    pub fn new(
        config: &KafkaShipConfig,
        host: String,
        acks: AckSender,
    ) -> Result<KafkaShipper, KafkaError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", format!("logtail-agent-{host}"))
            .set("compression.codec", config.compression.as_str())
            .set("acks", &config.acks)
            .set("enable.idempotence", "true")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", "0");
        for (key, value) in &config.librdkafka {
            client.set(key, value);
        }
        if config.librdkafka.contains_key("debug") {
            // As for the gateway's sink: otherwise the debug lines asked for never show.
            client.set_log_level(RDKafkaLogLevel::Debug);
        }
        let deliveries = Deliveries {
            pending: Mutex::new(VecDeque::new()),
            acks,
            failed: AtomicBool::new(false),
            warning: RateLimitedWarning::new(Duration::from_secs(5)),
        };
        let producer = client.create_with_context(deliveries)?;
        let template = Some(config.topic_template.as_str()).filter(|t| !t.is_empty());
        // Validated with the configuration.
        let route = Route::new(&config.key, template)
            .map_err(|e| KafkaError::ClientCreation(format!("ship.kafka: {e}")))?;
        Ok(KafkaShipper {
            producer,
            bootstrap_servers: config.bootstrap_servers.clone(),
            topic: config.topic.clone(),
            route,
            encoding: config.encoding,
            formatter: MessageFormatter::new(host.clone()),
            host,
            parse_context: ParseContext::new(0, LegacyZone::Fixed(0)),
            received_at: Vec::new(),
            message: Vec::new(),
            value: Vec::new(),
            key: Vec::new(),
            topic_buf: Vec::new(),
        })
    }

    /// Hands one record to librdkafka, waiting while its queue is full.
    fn produce(&self, seq: u64, stop: &AtomicBool) -> Result<(), Stopped> {
        let topic = std::str::from_utf8(&self.topic_buf)
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.topic);
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, seq as usize)
            .payload(&self.value);
        if !self.key.is_empty() {
            record = record.key(&self.key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(Stopped);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    record = back;
                }
                Err((error, _)) => {
                    // Refused before it was queued (too large for message.max.bytes, ...):
                    // as permanent as a refusal by the broker.
                    self.producer.context().warning.warn(|| {
                        format!("kafka: a line was refused for good and is dropped: {error}")
                    });
                    self.producer.context().report(seq);
                    return Ok(());
                }
            }
        }
    }
}

impl Shipper for KafkaShipper {
    fn describe(&self) -> String {
        format!("kafka {} (acknowledged)", self.bootstrap_servers)
    }

    fn send(&mut self, batch: &LineBatch, stop: &AtomicBool) -> Result<(), Stopped> {
        if self.producer.context().failed.load(Ordering::Relaxed) {
            tracing::error!(
                "the Kafka producer failed; stopping, so that a restart resends what Kafka did \
                 not acknowledge"
            );
            return Err(Stopped);
        }
        let seq = batch.seq();
        self.producer
            .context()
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((seq, batch.len() as u32));
        let read_at = batch.read_at_us();
        self.parse_context.set_received_at(read_at);
        self.received_at.clear();
        format_rfc3339_micros(read_at, &mut self.received_at);
        self.formatter.start_batch(batch);
        for line in batch.lines() {
            self.message.clear();
            self.formatter.write(&line, &mut self.message);
            let record = parse::parse(&self.message, Format::Rfc5424, &mut self.parse_context);
            let envelope = Envelope {
                received_at: &self.received_at,
                source: &self.host,
            };
            self.value.clear();
            encode::encode(
                self.encoding,
                &self.message,
                &record,
                &envelope,
                &mut self.value,
            );
            self.key.clear();
            self.route.render_key(&record, &self.host, &mut self.key);
            self.topic_buf.clear();
            self.route
                .render_topic(&record, &self.host, &mut self.topic_buf);
            self.produce(seq, stop)?;
        }
        Ok(())
    }
}

impl Drop for KafkaShipper {
    /// What is still queued is not waited for: the checkpoints are final by now, and it is read
    /// and sent again at the next start.
    fn drop(&mut self) {
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}
