//! The `kafka` shipper: lines straight to Kafka, acknowledged by librdkafka's delivery reports.
//!
//! Each line becomes the RFC 5424 message the other shippers send ([`super::rfc5424`]), is
//! parsed and encoded by the gateway's own code ([`crate::parse`], [`crate::encode`]) and routed
//! by the gateway's templates ([`Route`]): a consumer sees the same record, key and topic
//! whether the line came through a gateway or straight from the agent. The record's `source`
//! is the agent's host name. All the lines of one file in one batch differ only in their
//! message, so that is done once per file and batch ([`SourceTemplate`]), and each line costs
//! one JSON escape of its bytes; a test holds the result byte for byte to the full path.
//!
//! A batch is acknowledged once Kafka acknowledged every one of its lines, in batch order
//! (acknowledgements are cumulative, so a batch whose lines are all delivered still waits for
//! the batches before it). The producer is idempotent with `message.timeout.ms = 0`: it retries
//! until delivered, keeping per-partition order, and while Kafka is away the tailer stops at
//! `max_unacked_batches` (the files are the buffer). A line Kafka refuses for good (too large,
//! invalid) is counted in the log and acknowledged with its batch: retrying cannot help. Any
//! other failure (only a fatal producer error can cause one) stops the shipper: the agent then
//! exits with an error, and its restart resends from the checkpoints, so nothing is lost.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use serde::Deserialize;

use super::rfc5424::MessageFormatter;
use super::{AckSender, Shipper, Stopped};
use crate::agent::batch::LineBatch;
use crate::encode::{self, Encoding, Envelope, format_rfc3339_micros, json};
use crate::kafka::route::{KeyTemplate, Route, TopicName, TopicTemplate};
use crate::kafka::{
    Acks, Compression, ProducerSettings, check_bootstrap_servers, is_permanent, log_client_error,
    log_librdkafka,
};
use crate::log_limit::RateLimitedWarning;
use crate::parse::{self, Format, LegacyZone, ParseContext};
use crate::setting::InvalidSetting;

/// `[ship.kafka]`: the `kafka` shipper. Each line is formatted, parsed and encoded exactly as
/// the gateway would have stored it, and routed by the same templates, so consumers cannot
/// tell which way it came.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaShipConfig {
    /// Comma-separated `HOST:PORT` list of brokers. Default: `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// The topic of lines whose `topic_template` renders nothing. Default: `logs`.
    pub topic: TopicName,
    /// A topic per line from its fields ([`crate::kafka::route`]), as the gateway's
    /// `[sink.kafka] topic_template`. Default: `{topic}`, the collect entry's `topic`.
    pub topic_template: TopicTemplate,
    /// The message key, a template over the same fields; empty: no key. Default: `{host}`.
    pub key: KeyTemplate,
    /// [`Compression`]. Default: `lz4`.
    pub compression: Compression,
    /// [`Acks`]. Default: `all`.
    pub acks: Acks,
    /// How long librdkafka waits to fill a produce request, in milliseconds. Default: 5.
    pub linger_ms: u64,
    /// `json` (the gateway's record) or `raw` (the RFC 5424 message). Default: `json`.
    pub encoding: Encoding,
    /// Any other librdkafka property, applied last (SASL, SSL, ...). Default: empty.
    pub librdkafka: BTreeMap<String, String>,
}

impl KafkaShipConfig {
    /// Checks what serde cannot see; keys are relative to `[ship.kafka]`.
    ///
    /// # Errors
    /// The first key whose value cannot be used.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        check_bootstrap_servers(&self.bootstrap_servers)
    }
}

impl Default for KafkaShipConfig {
    fn default() -> Self {
        KafkaShipConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: TopicName::logs(),
            topic_template: TopicTemplate::agent_topic(),
            key: KeyTemplate::host(),
            compression: Compression::Lz4,
            acks: Acks::All,
            linger_ms: 5,
            encoding: Encoding::Json,
            librdkafka: BTreeMap::new(),
        }
    }
}

/// See the [module docs](self).
pub struct KafkaShipper {
    producer: ThreadedProducer<Deliveries>,
    bootstrap_servers: String,
    topic: TopicName,
    route: Route,
    encoding: Encoding,
    host: String,
    formatter: MessageFormatter,
    parse_context: ParseContext,
    received_at: Vec<u8>,
    /// Per source of the current batch: its lines' record around the message, key and topic.
    templates: Vec<SourceTemplate>,
    message: Vec<u8>,
    value: Vec<u8>,
}

/// What every line of one source in one batch shares: all of its record but the message (the
/// source's fields, the batch's read time, the host), so its key and topic too. Built by
/// encoding the source's message for an empty line and cutting the result around the empty
/// message value; a line then costs one escape of its own bytes. See [`KafkaShipper::encode`].
#[derive(Debug, Default)]
struct SourceTemplate {
    /// The encoded record up to the first byte of its message value, and from just after it.
    /// `None` when the encoding has no such cut (`raw`, or no `"message":""` found).
    around_message: Option<(Vec<u8>, Vec<u8>)>,
    key: Vec<u8>,
    /// Empty: the fallback topic.
    topic: Vec<u8>,
}

/// The JSON encoder's message value when the message is empty (see [`crate::encode::json`]).
const EMPTY_MESSAGE: &[u8] = b"\"message\":\"\"";
/// A line that starts with a byte order mark: RFC 5424 parsing strips it from MSG, so such
/// lines take the full parse and encode.
const BOM: &[u8] = b"\xEF\xBB\xBF";

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
        log_client_error(&self.warning, &error, reason);
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
        let client = ProducerSettings {
            bootstrap_servers: &config.bootstrap_servers,
            client_id: format!("logtail-agent-{host}"),
            compression: config.compression,
            acks: config.acks,
            idempotence: true,
            linger_ms: config.linger_ms,
            // Retry until delivered: see the module docs.
            message_timeout_ms: 0,
            batch_size: None,
            queue_limits: None,
            librdkafka: &config.librdkafka,
        }
        .client_config();
        let deliveries = Deliveries {
            pending: Mutex::new(VecDeque::new()),
            acks,
            failed: AtomicBool::new(false),
            warning: RateLimitedWarning::new(Duration::from_secs(5)),
        };
        let producer = client.create_with_context(deliveries)?;
        Ok(KafkaShipper {
            producer,
            bootstrap_servers: config.bootstrap_servers.clone(),
            topic: config.topic.clone(),
            route: Route::of(&config.key, &config.topic_template),
            encoding: config.encoding,
            formatter: MessageFormatter::new(host.clone()),
            host,
            parse_context: ParseContext::new(0, LegacyZone::Fixed(0)),
            received_at: Vec::new(),
            templates: Vec::new(),
            message: Vec::new(),
            value: Vec::new(),
        })
    }

    /// Prepares for the lines of `batch`: its read time, and the [`SourceTemplate`] of each of
    /// its sources.
    fn start_batch(&mut self, batch: &LineBatch) {
        let read_at = batch.read_at_us();
        self.parse_context.set_received_at(read_at);
        self.received_at.clear();
        format_rfc3339_micros(read_at, &mut self.received_at);
        self.formatter.start_batch(batch);
        let sources = batch.sources().len();
        self.templates.resize_with(sources, SourceTemplate::default);
        for index in 0..sources {
            // The full path for an empty line: `self.message` and `self.value` hold its message
            // and record. Parsed once more for the key and topic: once per source and batch.
            self.encode_fully(index, b"");
            let record = parse::parse(&self.message, Format::Rfc5424, &mut self.parse_context);
            let template = &mut self.templates[index];
            template.key.clear();
            self.route
                .render_key(&record, &self.host, &mut template.key);
            template.topic.clear();
            self.route
                .render_topic(&record, &self.host, &mut template.topic);
            template.around_message = match self.encoding {
                Encoding::Json => memchr::memmem::find(&self.value, EMPTY_MESSAGE).map(|at| {
                    let cut = at + EMPTY_MESSAGE.len() - 1;
                    (self.value[..cut].to_vec(), self.value[cut..].to_vec())
                }),
                Encoding::Raw => None,
            };
        }
    }

    /// Encodes `line` (of source `source_index`) into `self.value`, exactly as the gateway would:
    /// from the source's template when it has one, else by formatting, parsing and encoding.
    fn encode(&mut self, source_index: usize, line: &[u8]) {
        self.value.clear();
        let template = &self.templates[source_index];
        if let Some((before, after)) = &template.around_message
            && !line.starts_with(BOM)
        {
            self.value.extend_from_slice(before);
            json::write_string_contents(&mut self.value, line);
            self.value.extend_from_slice(after);
            return;
        }
        self.encode_fully(source_index, line);
    }

    /// Formats, parses and encodes `line` into `self.value`: the gateway's own path.
    fn encode_fully(&mut self, source_index: usize, line: &[u8]) {
        self.value.clear();
        self.message.clear();
        self.formatter
            .write_for_source(source_index, line, &mut self.message);
        let record = parse::parse(&self.message, Format::Rfc5424, &mut self.parse_context);
        let envelope = Envelope::new(&self.received_at, &self.host);
        encode::encode(
            self.encoding,
            &self.message,
            &record,
            &envelope,
            &mut self.value,
        );
    }

    /// Hands `self.value` to librdkafka with the key and topic of source `source_index`,
    /// waiting while its queue is full.
    fn produce(&self, seq: u64, source_index: usize, stop: &AtomicBool) -> Result<(), Stopped> {
        let template = &self.templates[source_index];
        let topic = std::str::from_utf8(&template.topic)
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or(self.topic.as_str());
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, seq as usize)
            .payload(&self.value);
        if !template.key.is_empty() {
            record = record.key(&template.key);
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
        self.start_batch(batch);
        for line in batch.lines() {
            self.encode(line.source_index, line.bytes);
            self.produce(seq, line.source_index, stop)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::batch::Source;
    use crate::agent::ship::ack_channel;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn shipper(encoding: Encoding) -> KafkaShipper {
        let config = KafkaShipConfig {
            // Never contacted: the tests only encode.
            bootstrap_servers: "127.0.0.1:1".into(),
            topic_template: "logs.{topic}".parse().unwrap(),
            encoding,
            ..KafkaShipConfig::default()
        };
        KafkaShipper::new(&config, "web1".into(), ack_channel().0).unwrap()
    }

    #[test]
    fn templated_records_are_byte_for_byte_what_the_full_path_gives() {
        let long = "x".repeat(70_000);
        let lines: Vec<&[u8]> = vec![
            b"",
            b"plain text",
            b"quote \" backslash \\ bracket ] tab\t lf\n cr\r",
            b"\x00\x01\x1f\x7f controls",
            "\u{fc}n\u{ef}c\u{f8}de \u{2713} \u{1f680}".as_bytes(),
            b"\xff\xfe invalid utf-8 \xc3",
            b"\xEF\xBB\xBFstarts with a BOM",
            b"a BOM \xEF\xBB\xBF inside",
            b"   leading spaces",
            b"\"message\":\"\" lookalike",
            long.as_bytes(),
        ];
        let sources = [
            Arc::new(Source {
                entry: "a".into(),
                path: PathBuf::from("/var/log/a\"b].log"),
                topic: Some("web".into()),
                app: "nginx".into(),
                tags: vec!["x".into(), "y".into()],
            }),
            Arc::new(Source {
                entry: "b".into(),
                path: PathBuf::from("/b.log"),
                topic: None,
                app: "b".into(),
                tags: vec![],
            }),
        ];
        let mut batch = LineBatch::with_capacity(1 << 20, 64);
        batch.reset(1);
        for source in &sources {
            for line in &lines {
                batch.push(source, line, 0, false, || 1_795_229_627_123_456);
            }
        }
        for encoding in [Encoding::Json, Encoding::Raw] {
            let mut shipper = shipper(encoding);
            shipper.start_batch(&batch);
            for line in batch.lines() {
                shipper.encode(line.source_index, line.bytes);
                let templated = shipper.value.clone();
                shipper.encode_fully(line.source_index, line.bytes);
                assert_eq!(
                    String::from_utf8_lossy(&templated),
                    String::from_utf8_lossy(&shipper.value),
                    "{encoding:?}, line {:?}",
                    String::from_utf8_lossy(line.bytes)
                );
            }
            assert_eq!(shipper.templates[0].key, b"web1");
            assert_eq!(shipper.templates[0].topic, b"logs.web");
            assert!(
                shipper.templates[1].topic.is_empty(),
                "no topic: the fallback"
            );
        }
        // The JSON templates are in use (not the full path every time).
        let mut json = shipper(Encoding::Json);
        json.start_batch(&batch);
        assert!(json.templates.iter().all(|t| t.around_message.is_some()));
    }
}
