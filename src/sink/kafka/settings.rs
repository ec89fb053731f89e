//! `[sink.kafka]`: the Kafka sink's section of the configuration file, typed when the file is
//! read (acks, compression and the route's templates are refused by serde, naming the key and
//! what is allowed); [`KafkaSinkConfig::check`] checks what serde cannot see.
//!
//! Every field's doc comment is its reference documentation; the commented
//! `config/logtail.toml` repeats them as a manual.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::state::SpillLimits;
use crate::kafka::route::{KeyTemplate, Route, TopicName, TopicTemplate};
use crate::kafka::{Acks, Compression, ProducerSettings, QueueLimits, check_bootstrap_servers};
use crate::setting::InvalidSetting;
use crate::wal::WalConfig;

/// `[sink.kafka]`: the Kafka producer.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSinkConfig {
    /// Comma-separated `HOST:PORT` list of brokers to bootstrap from.
    /// Default: `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// The topic every record goes to, and the fallback of `topic_template` when a record lacks
    /// a field it names. Default: `logs`.
    pub topic: TopicName,
    /// A topic per record, rendered from its fields, e.g. `logs.{app}` or `syslog.{facility}`.
    /// Fields: `host`, `app`, `procid`, `msgid`, `facility` and `severity` (as names: `local0`,
    /// `err`), `source`, and `topic` (the agent collect entry's `topic`: `{topic}` routes
    /// agents' lines per entry). Bytes that Kafka does not allow in a topic name become `_`.
    /// Default: empty, every record goes to `topic`.
    pub topic_template: TopicTemplate,
    /// The message key, a template over the same fields. Records with the same key go to the
    /// same partition, in order. A record lacking the field gets no key. Empty: no key at all.
    /// Default: `{host}`.
    pub key: KeyTemplate,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default: `lz4`.
    pub compression: Compression,
    /// `all`, `1` or `0`: how many replicas must have a message before the broker acknowledges
    /// it. Default: `all`.
    pub acks: Acks,
    /// Idempotent producer: no duplicates and no reordering from the producer's own retries.
    /// Default: true.
    pub idempotence: bool,
    /// How long librdkafka waits to fill a produce request, in milliseconds. Default: 5.
    pub linger_ms: u64,
    /// Upper size of one produce request per partition, in bytes (librdkafka `batch.size`).
    /// Default: 1000000.
    pub batch_max_bytes: u64,
    /// How long librdkafka keeps retrying a message before reporting it failed, in
    /// milliseconds; a failed message goes back to the WAL (so it arrives after newer ones).
    /// Default: 0, retry until delivered, which keeps per-key order through any outage.
    pub message_timeout_ms: u64,
    /// When Kafka is taken to lag, so that batches go to the WAL.
    pub spill: SpillConfig,
    /// The write-ahead log.
    pub wal: WalConfig,
    /// Any other librdkafka property, passed through as is (`"security.protocol" = "sasl_ssl"`,
    /// `"sasl.username" = "..."`); see librdkafka's CONFIGURATION.md. Applied last, so it
    /// overrides the settings above. Default: empty.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        KafkaSinkConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: TopicName::logs(),
            topic_template: TopicTemplate::default(),
            key: KeyTemplate::host(),
            compression: Compression::Lz4,
            acks: Acks::All,
            idempotence: true,
            linger_ms: 5,
            batch_max_bytes: 1_000_000,
            message_timeout_ms: 0,
            spill: SpillConfig::default(),
            wal: WalConfig::default(),
            librdkafka: BTreeMap::new(),
        }
    }
}

/// The largest batch the pipeline cuts (`[pipeline] batch_max_records` and `batch_max_bytes`),
/// which librdkafka's queue must hold on top of the spill limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargestBatch {
    pub records: usize,
    pub bytes: usize,
}

impl KafkaSinkConfig {
    /// Checks what serde cannot see; keys are relative to `[sink.kafka]`. (The WAL's own keys
    /// are checked with the WAL's section.)
    ///
    /// # Errors
    /// The first key whose value cannot be used.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        check_bootstrap_servers(&self.bootstrap_servers)?;
        self.spill.check().map_err(|e| e.within("spill"))
    }

    /// The route of every record, or `None` when it renders nothing (no key, no topic
    /// template).
    pub fn route(&self) -> Option<Route> {
        let route = Route::of(&self.key, &self.topic_template);
        (!route.is_empty()).then_some(route)
    }

    /// The producer's librdkafka settings for batches up to `largest_batch`.
    pub fn producer_settings(&self, largest_batch: LargestBatch) -> ProducerSettings<'_> {
        // librdkafka's own queue must never be what limits: the spill thresholds are, so that a
        // lagging Kafka fills the WAL, not memory.
        let messages = self
            .spill
            .max_in_flight_records
            .saturating_mul(2)
            .saturating_add(largest_batch.records as u64)
            .clamp(100_000, 10_000_000);
        let kbytes = (self.spill.max_in_flight_bytes / 1024)
            .saturating_mul(2)
            .saturating_add(largest_batch.bytes as u64 / 512)
            .clamp(64 * 1024, 2_097_151);
        ProducerSettings {
            bootstrap_servers: &self.bootstrap_servers,
            client_id: "logtail".into(),
            compression: self.compression,
            acks: self.acks,
            idempotence: self.idempotence,
            linger_ms: self.linger_ms,
            message_timeout_ms: self.message_timeout_ms,
            batch_size: Some(self.batch_max_bytes),
            queue_limits: Some(QueueLimits { messages, kbytes }),
            librdkafka: &self.librdkafka,
        }
    }
}

/// `[sink.kafka.spill]`: when batches go to the WAL instead of straight to Kafka. Any one of
/// the three conditions makes the sink spill; once none holds, the WAL replays in order and new
/// batches queue behind it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpillConfig {
    /// Records handed to the producer and not yet acknowledged by Kafka. Default: 200000.
    pub max_in_flight_records: u64,
    /// Bytes of record values handed to the producer and not yet acknowledged.
    /// Default: 67108864 (64 MiB).
    pub max_in_flight_bytes: u64,
    /// Age of the oldest batch handed to the producer and not yet acknowledged, in
    /// milliseconds. Default: 2000.
    pub max_delivery_latency_ms: u64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            max_in_flight_records: 200_000,
            max_in_flight_bytes: 64 << 20,
            max_delivery_latency_ms: 2000,
        }
    }
}

impl SpillConfig {
    /// Every limit is at least 1; keys are relative to `[sink.kafka.spill]`.
    ///
    /// # Errors
    /// The first limit that is 0.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [
            ("max_in_flight_records", self.max_in_flight_records),
            ("max_in_flight_bytes", self.max_in_flight_bytes),
            ("max_delivery_latency_ms", self.max_delivery_latency_ms),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The limits, as the state machine takes them (the Kafka and Elasticsearch sinks').
    pub fn limits(&self) -> SpillLimits {
        SpillLimits {
            records: self.max_in_flight_records,
            bytes: self.max_in_flight_bytes,
            latency: Duration::from_millis(self.max_delivery_latency_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_limits_of_zero_are_refused_by_key() {
        let spill = SpillConfig {
            max_delivery_latency_ms: 0,
            ..SpillConfig::default()
        };
        let e = KafkaSinkConfig {
            spill,
            ..KafkaSinkConfig::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spill.max_delivery_latency_ms: must be at least 1"
        );
        assert_eq!(KafkaSinkConfig::default().check(), Ok(()));
    }

    #[test]
    fn librdkafkas_queue_holds_twice_the_spill_limits_and_a_batch() {
        let config = KafkaSinkConfig::default();
        let settings = config.producer_settings(LargestBatch {
            records: 4096,
            bytes: 1 << 20,
        });
        assert_eq!(
            settings.queue_limits,
            Some(QueueLimits {
                messages: 404_096,
                kbytes: 133_120
            })
        );
        let client = settings.client_config();
        assert_eq!(client.get("client.id"), Some("logtail"));
        assert_eq!(client.get("batch.size"), Some("1000000"));
        assert_eq!(client.get("acks"), Some("all"));
    }
}
