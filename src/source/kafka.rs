//! The Kafka source, `[[listen]] type = "kafka"` with `[listen.kafka]`: a consumer group
//! member that takes records from Kafka topics into the pipeline, as an indexer between Kafka
//! and Elasticsearch (or the local store) does.
//!
//! # Records
//! - `records = "json"` (default): logtail's JSON records, as its Kafka sink writes them, taken
//!   as they are ([`Receive::encoded`]): their own `received_at`, `source` and fields.
//! - `records = "syslog"`: each Kafka value is one syslog message, parsed as a listener's
//!   messages are (a value that does not parse is kept raw with `parse_error`). Its `source` is
//!   `kafka:TOPIC/PARTITION@OFFSET` and its `received_at` the Kafka record's timestamp, so a
//!   record read twice (after a crash or a rebalance) encodes to the same bytes, and the
//!   Elasticsearch sink gives it the same `_id`.
//!
//! # Offsets: committed only once durable
//! Each poll round is one receive per record timestamp, each with an [`AckToken`] that the sink
//! releases once its batch is durable (indexed, stored, or in the WAL). The offsets a receive
//! took are committed once it and every receive before it are durable ([`Acknowledgements`]'s
//! prefix). A crash, `kill -9` or a rebalance therefore re-reads records that were not durable
//! (and some that were: at-least-once), never skips one. Auto-commit is off
//! (`enable.auto.commit = false`) whatever the passthrough table says.
//!
//! A batch the sink gave up on (its token dropped unreleased) breaks the chain: the consumer is
//! closed and a new one joins the group, starting again from the committed offsets.
//!
//! # Rebalances
//! When partitions are revoked, the durable prefix is committed, and the offsets of receives not
//! yet durable for those partitions are abandoned (the next owner reads them again): a late
//! commit can never move a partition we no longer own.
//!
//! # Backpressure
//! While the shard is blocked, nothing is polled: librdkafka's prefetch queue fills and it stops
//! fetching, and Kafka holds the backlog (consumer lag grows, `logtail_kafka_consumer_lag`).
//!
//! # Layering
//! A source comes before [`crate::kafka`] in the data flow, so this module uses rdkafka
//! directly; it only consumes, and shares no producer settings.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message as _, Timestamp};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use serde::Deserialize;

use super::ListenerContext;
use super::intake::{Intake, Receive, Sender};
use crate::ack::Acknowledgements;
use crate::metrics::KafkaSourceMetrics;
use crate::setting::InvalidSetting;

/// The most records taken in one poll round, between checks of backpressure and acks.
const MAX_RECORDS_PER_ROUND: usize = 4096;
/// How long an idle consumer waits for records before it checks acknowledgements again.
const IDLE_WAIT: Duration = Duration::from_millis(10);

/// `[listen.kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Comma-separated `HOST:PORT` list of brokers. Required.
    pub bootstrap_servers: String,
    /// Topics to consume. Required, at least one.
    pub topics: Vec<String>,
    /// The consumer group: indexers in one group share the partitions. Required.
    pub group_id: String,
    /// `json` (logtail's records, default) or `syslog` (one message per value).
    #[serde(default)]
    pub records: KafkaRecords,
    /// Where a group with no committed offset starts: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Any other librdkafka consumer property (SASL, SSL, ...), applied last; except
    /// `enable.auto.commit`, which stays off.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// `records`: how a Kafka value becomes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaRecords {
    #[default]
    Json,
    Syslog,
}

/// `start_from`: librdkafka's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

impl KafkaSourceConfig {
    /// Checks what serde cannot; keys relative to `[listen.kafka]`.
    ///
    /// # Errors
    /// The first empty required value, or a passthrough property that would break the
    /// commit-after-durable rule.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(InvalidSetting::new(
                "bootstrap_servers",
                "required, e.g. \"k1:9092,k2:9092\"",
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.is_empty()) {
            return Err(InvalidSetting::new(
                "topics",
                "give at least one topic name",
            ));
        }
        if self.group_id.is_empty() {
            return Err(InvalidSetting::new(
                "group_id",
                "required: the consumer group",
            ));
        }
        for key in ["enable.auto.commit", "enable.auto.offset.store", "group.id"] {
            if self.librdkafka.contains_key(key) {
                return Err(InvalidSetting::new(
                    format!("librdkafka.\"{key}\""),
                    "set by logtail: offsets are committed only once records are durable",
                ));
            }
        }
        Ok(())
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("client.id", "logtail")
            .set(
                "auto.offset.reset",
                match self.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set("statistics.interval.ms", "1000")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in &self.librdkafka {
            config.set(key, value);
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        config
    }
}

/// What the consumer's callbacks (run inside `poll`, on the source's thread) tell the loop.
#[derive(Default)]
struct Revocations {
    /// Partitions revoked since the loop last looked.
    revoked: Vec<(String, i32)>,
}

struct SourceContext {
    revocations: Mutex<Revocations>,
    metrics: Arc<KafkaSourceMetrics>,
    listener: String,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // -1 is librdkafka's "internal" partition and partitions not assigned here.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.set_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::warn!(listener = %self.listener, "librdkafka {fac}: {log_message}");
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revocations = self.revocations.lock().unwrap_or_else(|e| e.into_inner());
            for element in partitions.elements() {
                revocations
                    .revoked
                    .push((element.topic().to_string(), element.partition()));
                self.metrics
                    .forget_lag(element.topic(), element.partition());
            }
        }
    }
}

/// The offsets one receive took: `(topic, partition, next offset)`.
type Taken = Vec<(String, i32, i64)>;

/// Consumes until `stop`, handing records to `intake`.
pub async fn run<I: Intake>(
    intake: &I,
    context: &ListenerContext,
    config: &KafkaSourceConfig,
    metrics: Arc<KafkaSourceMetrics>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let consumer = match subscribe(context, config, &metrics) {
            Ok(consumer) => consumer,
            Err(e) => {
                context.warning.warn(|| {
                    format!(
                        "listener {}: cannot start the Kafka consumer: {e}",
                        context.name
                    )
                });
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut member = Member {
            consumer,
            acks: Acknowledgements::new(),
            seq: 0,
            pending: VecDeque::new(),
            metrics: metrics.clone(),
            source: String::new(),
        };
        let broken = member
            .consume(intake, context, config.records, &mut stop)
            .await;
        member.commit_durable(CommitMode::Sync);
        if !broken {
            return;
        }
        tracing::warn!(
            listener = %context.name,
            "kafka: a batch was given up on; rejoining the group to read again from the committed offsets"
        );
    }
}

fn subscribe(
    context: &ListenerContext,
    config: &KafkaSourceConfig,
    metrics: &Arc<KafkaSourceMetrics>,
) -> Result<BaseConsumer<SourceContext>, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer<SourceContext> =
        config.client_config().create_with_context(SourceContext {
            revocations: Mutex::default(),
            metrics: metrics.clone(),
            listener: context.name.clone(),
        })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// One membership of the group: a consumer and what it owes.
struct Member {
    consumer: BaseConsumer<SourceContext>,
    acks: Arc<Acknowledgements>,
    seq: u64,
    /// Receives not yet committed, in order, with their offsets.
    pending: VecDeque<(u64, Taken)>,
    metrics: Arc<KafkaSourceMetrics>,
    /// The `source` of a syslog record, rewritten per record.
    source: String,
}

impl Member {
    /// Polls until `stop` (false) or until a batch was lost (true).
    async fn consume<I: Intake>(
        &mut self,
        intake: &I,
        context: &ListenerContext,
        records: KafkaRecords,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        loop {
            self.forget_revoked();
            if self.acks.status().broken {
                return true;
            }
            self.commit_durable(CommitMode::Async);
            let took = self.poll_round(intake, context, records);
            let idle = took == 0;
            // The shard's other tasks (its batch ticker, other listeners) run between rounds.
            tokio::task::yield_now().await;
            tokio::select! {
                biased;
                () = stop.as_mut() => return false,
                () = intake.until_unblocked() => {}
            }
            if idle {
                tokio::select! {
                    biased;
                    () = stop.as_mut() => return false,
                    () = tokio::time::sleep(IDLE_WAIT) => {}
                }
            }
        }
    }

    /// Takes up to [`MAX_RECORDS_PER_ROUND`] records, while the intake is not blocked.
    fn poll_round<I: Intake>(
        &mut self,
        intake: &I,
        context: &ListenerContext,
        records: KafkaRecords,
    ) -> usize {
        let mut took = 0;
        while took < MAX_RECORDS_PER_ROUND {
            let Some(result) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let message = match result {
                Ok(message) => message,
                Err(e) => {
                    context
                        .warning
                        .warn(|| format!("listener {}: kafka: {e}", context.name));
                    break;
                }
            };
            took += 1;
            let topic = message.topic();
            let (partition, offset) = (message.partition(), message.offset());
            let value = message.payload().unwrap_or_default();
            let at = match message.timestamp() {
                Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) if ms >= 0 => {
                    SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
                }
                _ => SystemTime::now(),
            };
            let blocked = intake.receive_at(&context.metrics, at, |receive| {
                match records {
                    KafkaRecords::Json => receive.encoded(value),
                    KafkaRecords::Syslog => {
                        self.source.clear();
                        let _ = write!(self.source, "kafka:{topic}/{partition}@{offset}");
                        receive.message(value, context.format, &Sender::at(&self.source));
                    }
                }
                self.seq += 1;
                receive.acknowledge_when_durable(self.acks.token(self.seq));
                receive.is_blocked()
            });
            self.pending
                .push_back((self.seq, vec![(topic.to_string(), partition, offset + 1)]));
            self.metrics.consumed_records.add(1);
            if blocked {
                break;
            }
        }
        took
    }

    /// Commits the offsets of the durable prefix of receives.
    fn commit_durable(&mut self, mode: CommitMode) {
        let durable = self.acks.status().acknowledged;
        let mut latest: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut records = 0u64;
        while let Some((seq, _)) = self.pending.front() {
            if *seq > durable {
                break;
            }
            if let Some((_, taken)) = self.pending.pop_front() {
                for (topic, partition, next) in taken {
                    records += 1;
                    let entry = latest.entry((topic, partition)).or_insert(next);
                    *entry = (*entry).max(next);
                }
            }
        }
        if latest.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &latest {
            if list
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .is_err()
            {
                continue;
            }
        }
        match self.consumer.commit(&list, mode) {
            Ok(()) => self.metrics.committed_records.add(records),
            Err(e) => {
                // Not fatal: a later commit covers these offsets, and if none comes they are
                // read again.
                tracing::debug!("kafka: commit failed: {e}");
            }
        }
    }

    /// Drops the offsets of revoked partitions from receives not yet committed, after
    /// committing the durable prefix.
    fn forget_revoked(&mut self) {
        let revoked: HashSet<(String, i32)> = {
            let mut revocations = self
                .consumer
                .context()
                .revocations
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            revocations.revoked.drain(..).collect()
        };
        if revoked.is_empty() {
            return;
        }
        for (_, taken) in &mut self.pending {
            taken.retain(|(topic, partition, _)| !revoked.contains(&(topic.clone(), *partition)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KafkaSourceConfig, String> {
        let config: KafkaSourceConfig =
            crate::setting::from_toml(text).map_err(|e| format!("{e:?}"))?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn auto_commit_stays_off_whatever_the_passthrough_says() {
        let config = parse(
            "bootstrap_servers = \"k:9092\"\ntopics = [\"logs\"]\ngroup_id = \"indexers\"\n\
             records = \"syslog\"\n[librdkafka]\n\"fetch.min.bytes\" = \"1000\"\n",
        )
        .unwrap();
        assert_eq!(config.records, KafkaRecords::Syslog);
        let client = config.client_config();
        assert_eq!(client.get("enable.auto.commit"), Some("false"));
        assert_eq!(client.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(client.get("fetch.min.bytes"), Some("1000"));
        assert_eq!(client.get("auto.offset.reset"), Some("earliest"));
        let e = parse(
            "bootstrap_servers = \"k:9092\"\ntopics = [\"logs\"]\ngroup_id = \"g\"\n\
             [librdkafka]\n\"enable.auto.commit\" = \"true\"\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("librdkafka.\"enable.auto.commit\": set by logtail"),
            "{e}"
        );
        let e =
            parse("bootstrap_servers = \"k:9092\"\ntopics = []\ngroup_id = \"g\"\n").unwrap_err();
        assert_eq!(e, "topics: give at least one topic name");
    }
}
