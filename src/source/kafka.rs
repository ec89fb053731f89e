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
//! Each record is one receive, with an [`AckToken`](crate::ack::AckToken) that the sink
//! releases once its batch is durable (indexed, stored, or in the WAL). A record's offset is
//! committed once it and every record taken before it are durable ([`Acknowledgements`]'s
//! prefix). A crash, `kill -9` or a rebalance therefore re-reads records that were not durable
//! (and some that were: at-least-once), never skips one. Auto-commit is off
//! (`enable.auto.commit = false`) whatever the passthrough table says.
//!
//! A batch the sink gave up on (its token dropped unreleased) breaks the chain: the consumer is
//! closed and a new one joins the group, starting again from the committed offsets.
//!
//! # Rebalances
//! The offsets owed are kept in an [`OffsetLedger`] (pure, tested on its own), which the
//! rebalance callbacks update inside `poll`, between two records:
//! - On a revocation the partitions are still ours: the durable prefix is committed
//!   synchronously (so the next owner starts after it), then the records of the revoked
//!   partitions still in flight are abandoned: their late acknowledgement commits nothing, even
//!   if the partition came back to us meanwhile (each assignment is an epoch of its own). The
//!   next owner reads them again.
//! - A lost assignment (the session expired while we did not poll) or a failed rebalance may
//!   already be someone else's: it is abandoned without a commit.
//! - Cooperative (`cooperative-sticky`, the default) and eager (`range`, `roundrobin`, by the
//!   passthrough `partition.assignment.strategy`) assignment both work: cooperative revokes
//!   only what moves; eager revokes everything at each rebalance, so everything in flight then
//!   is read twice.
//! - A clean stop waits up to [`FINISH_IN_FLIGHT`] for what was taken to become durable,
//!   commits, and closes the consumer, which leaves the group so the others take its
//!   partitions at once instead of after `session.timeout.ms`.
//!
//! So a rebalance re-reads, never skips: a member commits offset X of a partition only when it
//! took every record from where its assignment started up to X and made them durable; that
//! start was the committed offset then, below which everything was durable already (by the
//! same rule, whoever committed it). A late or stale commit can move the offset back (more
//! read twice), never past a record not durable. The Elasticsearch sink's stable
//! `_id` turns what is read twice into the same document; the local store keeps both copies.
//!
//! Consumer lag (`logtail_kafka_consumer_lag`, per partition) is the partition's end minus its
//! committed offset, from librdkafka's statistics every second, shown only for the partitions
//! owned now.
//!
//! # Backpressure
//! While the shard is blocked, nothing is polled: librdkafka's prefetch queue fills and it stops
//! fetching, and Kafka holds the backlog (consumer lag grows, `logtail_kafka_consumer_lag`).
//! A rebalance is served at the next poll, so a blocked member holds it up until it unblocks;
//! blocked longer than `max.poll.interval.ms` (5 minutes by default), it leaves the group and
//! its assignment comes back as lost (abandoned uncommitted, above). Pausing the assignment
//! while blocked and polling anyway was tried: pausing drops librdkafka's prefetch, and pausing
//! at every short block read a backlog at ~10 records a second.
//!
//! # Layering
//! A source comes before [`crate::kafka`] in the data flow, so this module uses rdkafka
//! directly; it only consumes, and shares no producer settings.

use std::collections::{BTreeMap, HashMap, VecDeque};
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
/// How long a clean stop waits for the records taken to become durable before it commits and
/// leaves the group: as long as the sinks wait for what is in flight at shutdown.
const FINISH_IN_FLIGHT: Duration = Duration::from_secs(5);

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
            // Cooperative: a rebalance revokes only the partitions that move, so the others keep
            // flowing and what they have in flight is not read again.
            .set("partition.assignment.strategy", "cooperative-sticky")
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

/// What the consumer's callbacks (run inside `poll`, on the source's thread) and the consuming
/// loop share: what is owed to Kafka, and the acknowledgements that say what is durable.
struct SourceContext {
    ledger: Mutex<OffsetLedger>,
    acks: Arc<Acknowledgements>,
    metrics: Arc<KafkaSourceMetrics>,
    listener: String,
}

impl SourceContext {
    /// The ledger. Never held across a `poll` or a commit: the callbacks lock it too.
    fn ledger(&self) -> std::sync::MutexGuard<'_, OffsetLedger> {
        // The ledger is consistent at every unlock, so a panic elsewhere leaves it usable.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits the offsets of the records that became durable, in partitions still owned.
    fn commit_durable(&self, consumer: &BaseConsumer<SourceContext>, mode: CommitMode) {
        let commit = self.ledger().durable(self.acks.status().acknowledged);
        self.commit(consumer, &commit, mode);
    }

    fn commit(&self, consumer: &BaseConsumer<SourceContext>, commit: &Commit, mode: CommitMode) {
        if commit.offsets.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition, next) in &commit.offsets {
            // Only fails on an offset librdkafka cannot represent, which `next` never is.
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        match consumer.commit(&list, mode) {
            Ok(()) => self.metrics.committed_records.add(commit.records),
            Err(e) => {
                // Not fatal: a later commit covers these offsets, and if none comes they are
                // read again.
                tracing::debug!(listener = %self.listener, "kafka: commit failed: {e}");
            }
        }
    }
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        let ledger = self.ledger();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // librdkafka reports every partition of the topic, with stale figures for those
                // assigned here before, -1 for its "internal" partition and when nothing is
                // committed yet: only the partitions owned now have a lag of ours.
                if p.consumer_lag >= 0 && ledger.owns(topic, *partition) {
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
    /// Runs before librdkafka changes the assignment. On a revocation the partitions are still
    /// ours: what is durable is committed now (synchronously, so the next owner starts after
    /// it), then the records of the revoked partitions still in flight are abandoned. A lost
    /// assignment (the session expired) or a failed rebalance may already belong to another
    /// member: nothing of it is committed, everything of it is abandoned.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let lost = consumer.assignment_lost();
        let described = describe(rebalance, lost);
        if let Rebalance::Error(_) = rebalance {
            tracing::warn!(listener = %self.listener, "kafka: {described}");
        } else {
            tracing::info!(listener = %self.listener, "kafka: {described}");
        }
        let acknowledged = self.acks.status().acknowledged;
        let commit = match rebalance {
            Rebalance::Assign(_) => return,
            Rebalance::Revoke(partitions) => {
                let mut ledger = self.ledger();
                for element in partitions.elements() {
                    if lost {
                        ledger.revoke(element.topic(), element.partition());
                    }
                    self.metrics
                        .forget_lag(element.topic(), element.partition());
                }
                let commit = ledger.durable(acknowledged);
                for element in partitions.elements() {
                    ledger.revoke(element.topic(), element.partition());
                }
                commit
            }
            // rdkafka's default rebalance then unassigns everything (eager) or what it was
            // given (cooperative). Everything is abandoned: a partition whose reading went on
            // must not get a new epoch, which would commit past the records abandoned in it;
            // its records go uncommitted until the next assignment, from the committed offset.
            Rebalance::Error(_) => {
                let mut ledger = self.ledger();
                for (topic, partition) in ledger.revoke_all() {
                    self.metrics.forget_lag(&topic, partition);
                }
                ledger.durable(acknowledged);
                return;
            }
        };
        self.commit(consumer, &commit, CommitMode::Sync);
    }

    /// Runs once librdkafka assigned the partitions, before any record of them is polled.
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let mut ledger = self.ledger();
            for element in partitions.elements() {
                ledger.assign(element.topic(), element.partition());
            }
        }
    }
}

/// A rebalance as the log says it: `revoked logs/0 logs/1`.
fn describe(rebalance: &Rebalance<'_>, lost: bool) -> String {
    let (what, partitions) = match rebalance {
        Rebalance::Assign(partitions) => ("assigned", *partitions),
        Rebalance::Revoke(partitions) if lost => ("lost", *partitions),
        Rebalance::Revoke(partitions) => ("revoked", *partitions),
        Rebalance::Error(e) => return format!("rebalance failed: {e}"),
    };
    let mut text = what.to_string();
    for element in partitions.elements() {
        let _ = write!(text, " {}/{}", element.topic(), element.partition());
    }
    text
}

/// What a Kafka source owes its group: the offset of every record taken and not yet committed,
/// and the partitions it owns now. A pure type; the consuming loop and the rebalance callbacks
/// drive it and do the committing.
///
/// Invariants (what makes "a rebalance re-reads, never skips" true):
/// - A record's offset is committed only once it and every record taken before it are durable:
///   records are numbered as they are taken, with the sequence numbers of
///   [`Acknowledgements`], whose `acknowledged` is that prefix.
/// - Only in the assignment it was taken in: each assignment of a partition has a new epoch,
///   which its records carry. A record taken before its partition was revoked is never
///   committed, even once durable, even if the partition came back (the new assignment starts
///   from the committed offset and reads it again): the late acknowledgement of a batch of a
///   revoked partition cannot move the offset of a partition someone else now owns.
/// - Within one assignment a partition is read in order from where it starts, so the highest
///   durable offset covers every record before it of that assignment.
#[derive(Debug, Default)]
struct OffsetLedger {
    /// Every partition ever assigned, with the epoch of its current assignment (`None`: not
    /// owned now). Indexed by `by_topic`; a handful per consumer, never removed.
    partitions: Vec<(String, i32, Option<u64>)>,
    by_topic: HashMap<String, HashMap<i32, usize>>,
    /// Records taken and not yet durable, in the order taken.
    taken: VecDeque<TakenRecord>,
    /// The last epoch given; epochs start at 1, so 0 is "taken while not owned".
    epoch: u64,
}

/// One record taken: its sequence number, its partition's index, the epoch of that partition's
/// assignment when it was taken, and the offset after it. No allocation per record.
#[derive(Debug, Clone, Copy)]
struct TakenRecord {
    seq: u64,
    partition: usize,
    epoch: u64,
    next: i64,
}

/// Offsets to commit, `(topic, partition, next offset)`, and how many records they cover.
#[derive(Debug, Default, PartialEq, Eq)]
struct Commit {
    offsets: Vec<(String, i32, i64)>,
    records: u64,
}

impl OffsetLedger {
    fn index(&self, topic: &str, partition: i32) -> Option<usize> {
        self.by_topic.get(topic)?.get(&partition).copied()
    }

    /// The partition is assigned here from now on, in a new epoch.
    fn assign(&mut self, topic: &str, partition: i32) {
        self.epoch += 1;
        let epoch = Some(self.epoch);
        match self.index(topic, partition) {
            Some(i) => self.partitions[i].2 = epoch,
            None => {
                let i = self.partitions.len();
                self.partitions.push((topic.to_string(), partition, epoch));
                self.by_topic
                    .entry(topic.to_string())
                    .or_default()
                    .insert(partition, i);
            }
        }
    }

    /// The partition is no longer ours: its records not yet committed are abandoned.
    fn revoke(&mut self, topic: &str, partition: i32) {
        if let Some(i) = self.index(topic, partition) {
            self.partitions[i].2 = None;
        }
    }

    /// Every partition is revoked; returns those that were owned.
    fn revoke_all(&mut self) -> Vec<(String, i32)> {
        let mut revoked = Vec::new();
        for (topic, partition, epoch) in &mut self.partitions {
            if epoch.take().is_some() {
                revoked.push((topic.clone(), *partition));
            }
        }
        revoked
    }

    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.index(topic, partition)
            .is_some_and(|i| self.partitions[i].2.is_some())
    }

    /// Record `seq` (numbered as taken, increasing) was taken at `offset` of the partition.
    fn took(&mut self, seq: u64, topic: &str, partition: i32, offset: i64) {
        // librdkafka never hands out a record of a partition not assigned; should it, the
        // record gets epoch 0, which no assignment has: it is never committed.
        let (partition, epoch) = match self.index(topic, partition) {
            Some(i) => (i, self.partitions[i].2.unwrap_or(0)),
            None => (usize::MAX, 0),
        };
        self.taken.push_back(TakenRecord {
            seq,
            partition,
            epoch,
            next: offset + 1,
        });
    }

    /// Forgets the records up to `acknowledged` (all durable) and returns the offsets to commit
    /// for those of partitions still owned in the epoch they were taken in.
    fn durable(&mut self, acknowledged: u64) -> Commit {
        let mut latest: BTreeMap<usize, i64> = BTreeMap::new();
        let mut records = 0;
        while let Some(record) = self.taken.front().copied() {
            if record.seq > acknowledged {
                break;
            }
            self.taken.pop_front();
            let current = self
                .partitions
                .get(record.partition)
                .and_then(|(_, _, epoch)| *epoch);
            if record.epoch != 0 && current == Some(record.epoch) {
                records += 1;
                let next = latest.entry(record.partition).or_insert(record.next);
                *next = (*next).max(record.next);
            }
        }
        Commit {
            offsets: latest
                .into_iter()
                .map(|(i, next)| {
                    let (topic, partition, _) = &self.partitions[i];
                    (topic.clone(), *partition, next)
                })
                .collect(),
            records,
        }
    }
}

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
            seq: 0,
            metrics: metrics.clone(),
            source: String::new(),
        };
        let broken = member
            .consume(intake, context, config.records, &mut stop)
            .await;
        if !broken {
            member.finish_in_flight().await;
        }
        let consumer = &member.consumer;
        consumer
            .context()
            .commit_durable(consumer, CommitMode::Sync);
        // Dropping the consumer closes it: it leaves the group (its revocation callback runs
        // first) and the others take its partitions at once.
        drop(member);
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
            ledger: Mutex::default(),
            acks: Acknowledgements::new(),
            metrics: metrics.clone(),
            listener: context.name.clone(),
        })?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// One membership of the group: a consumer and the numbering of what it took.
struct Member {
    consumer: BaseConsumer<SourceContext>,
    seq: u64,
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
            let source = self.consumer.context();
            if source.acks.status().broken {
                return true;
            }
            source.commit_durable(&self.consumer, CommitMode::Async);
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

    /// At a clean stop: waits up to [`FINISH_IN_FLIGHT`] for the records taken to become
    /// durable (the shard's ticker and the sink keep running until the sources are done), so
    /// that their offsets are committed before the partitions go to another member, which
    /// then does not read them again. What is still in flight after that is abandoned
    /// uncommitted.
    async fn finish_in_flight(&self) {
        let acks = &self.consumer.context().acks;
        let deadline = tokio::time::Instant::now() + FINISH_IN_FLIGHT;
        loop {
            let status = acks.status();
            if status.outstanding == 0 || status.broken {
                return;
            }
            tokio::select! {
                () = acks.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::info!(
                        "kafka: stopping with {} record(s) not yet durable: their offsets stay \
                         uncommitted, the next owner reads them again",
                        status.outstanding
                    );
                    return;
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
            // A rebalance is served inside `poll` (the callbacks above), between two records.
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
            let source = self.consumer.context();
            self.seq += 1;
            let seq = self.seq;
            let blocked = intake.receive_at(&context.metrics, at, |receive| {
                match records {
                    KafkaRecords::Json => receive.encoded(value),
                    KafkaRecords::Syslog => {
                        self.source.clear();
                        let _ = write!(self.source, "kafka:{topic}/{partition}@{offset}");
                        receive.message(value, context.format, &Sender::at(&self.source));
                    }
                }
                receive.acknowledge_when_durable(source.acks.token(seq));
                receive.is_blocked()
            });
            source.ledger().took(seq, topic, partition, offset);
            self.metrics.consumed_records.add(1);
            if blocked {
                break;
            }
        }
        took
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
    fn commit(offsets: &[(&str, i32, i64)], records: u64) -> Commit {
        Commit {
            offsets: offsets
                .iter()
                .map(|(topic, partition, next)| (topic.to_string(), *partition, *next))
                .collect(),
            records,
        }
    }

    #[test]
    fn commits_the_highest_offset_of_each_partition_in_the_durable_prefix_only() {
        let acks = Acknowledgements::new();
        let mut ledger = OffsetLedger::default();
        ledger.assign("logs", 0);
        ledger.assign("logs", 1);
        let mut tokens = Vec::new();
        for (seq, (partition, offset)) in [(0, 10), (1, 7), (0, 11), (1, 8), (0, 12)]
            .into_iter()
            .enumerate()
        {
            let seq = seq as u64 + 1;
            tokens.push(acks.token(seq));
            ledger.took(seq, "logs", partition, offset);
        }
        let [one, two, three, four, five]: [crate::ack::AckToken; 5] =
            tokens.try_into().expect("five tokens");
        // Durable out of order: 5, 4 and 2 before 1 commits nothing.
        five.release();
        four.release();
        two.release();
        assert_eq!(
            ledger.durable(acks.status().acknowledged),
            Commit::default()
        );
        one.release();
        assert_eq!(
            ledger.durable(acks.status().acknowledged),
            commit(&[("logs", 0, 11), ("logs", 1, 8)], 2)
        );
        three.release();
        assert_eq!(
            ledger.durable(acks.status().acknowledged),
            commit(&[("logs", 0, 13), ("logs", 1, 9)], 3)
        );
        assert_eq!(ledger.durable(5), Commit::default(), "committed once");
    }

    #[test]
    fn a_batch_given_up_on_stops_every_commit_after_it() {
        let acks = Acknowledgements::new();
        let mut ledger = OffsetLedger::default();
        ledger.assign("logs", 0);
        let (one, two) = (acks.token(1), acks.token(2));
        ledger.took(1, "logs", 0, 0);
        ledger.took(2, "logs", 0, 1);
        drop(one);
        two.release();
        let status = acks.status();
        assert!(status.broken);
        assert_eq!(ledger.durable(status.acknowledged), Commit::default());
    }

    #[test]
    fn a_revocation_commits_what_is_durable_and_abandons_what_is_in_flight() {
        let mut ledger = OffsetLedger::default();
        ledger.assign("logs", 0);
        ledger.assign("logs", 1);
        for (seq, partition, offset) in [(1, 0, 10), (2, 1, 20), (3, 0, 11), (4, 1, 21)] {
            ledger.took(seq, "logs", partition, offset);
        }
        // What the revocation callback does with 1 and 2 durable: commit, then revoke.
        assert_eq!(
            ledger.durable(2),
            commit(&[("logs", 0, 11), ("logs", 1, 21)], 2)
        );
        ledger.revoke("logs", 0);
        assert!(!ledger.owns("logs", 0));
        assert!(ledger.owns("logs", 1));
        // 3 (partition 0, revoked) becomes durable after the new owner started: never
        // committed here; 4 (partition 1, still ours) is.
        assert_eq!(ledger.durable(4), commit(&[("logs", 1, 22)], 1));
    }

    #[test]
    fn a_late_acknowledgement_never_commits_a_partition_that_came_back_in_a_new_assignment() {
        let mut ledger = OffsetLedger::default();
        ledger.assign("logs", 0);
        // Taken at 10..=12, in flight when the partition is revoked (eager: everything).
        for (seq, offset) in [(1, 10), (2, 11), (3, 12)] {
            ledger.took(seq, "logs", 0, offset);
        }
        assert_eq!(ledger.revoke_all(), vec![("logs".to_string(), 0)]);
        // Back here after another member committed up to 50: read from 50.
        ledger.assign("logs", 0);
        ledger.took(4, "logs", 0, 50);
        ledger.took(5, "logs", 0, 51);
        // 1..=3 durable only now: their offsets (up to 13) are the old assignment's and would
        // move the group's offset back; only 4 counts.
        assert_eq!(ledger.durable(4), commit(&[("logs", 0, 51)], 1));
        assert_eq!(ledger.durable(5), commit(&[("logs", 0, 52)], 1));
    }

    #[test]
    fn a_partition_revoked_and_given_back_in_one_rebalance_rereads_from_the_commit() {
        // Eager rebalancing revokes everything and may assign the same partition back; the new
        // assignment starts at the committed offset and reads the abandoned records again.
        let mut ledger = OffsetLedger::default();
        ledger.assign("logs", 0);
        ledger.took(1, "logs", 0, 10);
        ledger.took(2, "logs", 0, 11);
        assert_eq!(ledger.durable(1), commit(&[("logs", 0, 11)], 1));
        ledger.revoke("logs", 0);
        ledger.assign("logs", 0);
        ledger.took(3, "logs", 0, 11);
        assert_eq!(ledger.durable(2), Commit::default(), "2 was abandoned");
        assert_eq!(ledger.durable(3), commit(&[("logs", 0, 12)], 1));
    }

    #[test]
    fn a_record_of_a_partition_not_assigned_is_never_committed() {
        let mut ledger = OffsetLedger::default();
        ledger.took(1, "logs", 3, 5);
        ledger.assign("logs", 0);
        ledger.took(2, "logs", 0, 5);
        assert_eq!(ledger.durable(2), commit(&[("logs", 0, 6)], 1));
        assert!(!ledger.owns("logs", 3));
        assert!(!ledger.owns("other", 0));
    }

    #[test]
    fn revoking_everything_names_the_partitions_owned_once() {
        let mut ledger = OffsetLedger::default();
        ledger.assign("logs", 0);
        ledger.assign("logs", 1);
        ledger.assign("audit", 0);
        ledger.revoke("logs", 1);
        assert_eq!(
            ledger.revoke_all(),
            vec![("logs".to_string(), 0), ("audit".to_string(), 0)]
        );
        assert_eq!(ledger.revoke_all(), vec![]);
    }
}
