//! Kafka for the tests: librdkafka's mock cluster (real Kafka protocol on localhost, with
//! broker-down and latency injection), gateway settings that produce to it, and a consumer that
//! reads back what arrived.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logtail::config::{Config, SinkKind};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub const TOPIC: &str = "logs";

/// A one-broker mock cluster with `partitions` partitions of [`TOPIC`].
pub fn cluster(partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic(TOPIC, partitions, 1)
        .expect("create topic");
    cluster
}

/// Points `config`'s sink at `bootstrap`, with the WAL and spill thresholds the tests use.
pub fn use_kafka(config: &mut Config, bootstrap: &str) {
    config.sink.kind = SinkKind::Kafka;
    config.sink.kafka.bootstrap_servers = bootstrap.to_string();
    config.sink.kafka.topic = TOPIC.parse().expect("a topic name");
    config.sink.kafka.linger_ms = 2;
    config
        .sink
        .kafka
        .librdkafka
        .insert("reconnect.backoff.max.ms".into(), "200".into());
}

/// One message as consumed.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: serde_json::Value,
}

impl Consumed {
    pub fn message(&self) -> &str {
        self.value["message"].as_str().unwrap_or_default()
    }
}

/// A consumer of [`TOPIC`] from the beginning, in a group of its own.
fn consumer(bootstrap: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("test-{}-{:?}", std::process::id(), Instant::now()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    consumer
}

/// Reads [`TOPIC`] from the beginning, handing each message to `take`, until `take` says it has
/// all it wanted or `timeout` passed; then half a second more (to catch duplicates).
fn consume(bootstrap: &str, timeout: Duration, mut take: impl FnMut(Consumed) -> bool) {
    let consumer = consumer(bootstrap);
    let mut deadline = Instant::now() + timeout;
    let mut complete = false;
    while Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = result.expect("consume");
        let value = serde_json::from_slice(message.payload().unwrap_or_default())
            .expect("messages are JSON");
        let done = take(Consumed {
            partition: message.partition(),
            key: message.key().map(<[u8]>::to_vec),
            value,
        });
        if done && !complete {
            complete = true;
            deadline = Instant::now() + Duration::from_millis(500);
        }
    }
}

/// Reads [`TOPIC`] from the beginning until `total` distinct lines of senders numbered
/// `0..per_sender` arrived, or `timeout` passed, then half a second more (to catch
/// duplicates). Returns what was read, in the order read, and its tally.
pub fn consume_all(
    bootstrap: &str,
    per_sender: u64,
    total: u64,
    timeout: Duration,
) -> (Vec<Consumed>, Tally) {
    let mut tally = Tally::new(per_sender);
    let mut out = Vec::new();
    consume(bootstrap, timeout, |consumed| {
        tally.add(&consumed);
        out.push(consumed);
        tally.distinct >= total
    });
    (out, tally)
}

/// Reads [`TOPIC`] from the beginning until `total` messages arrived or `timeout` passed, then
/// half a second more (to catch duplicates).
pub fn consume_count(bootstrap: &str, total: usize, timeout: Duration) -> Vec<Consumed> {
    let mut out = Vec::new();
    consume(bootstrap, timeout, |consumed| {
        out.push(consumed);
        out.len() >= total
    });
    out
}

/// Lines of the form `<sender> <seq> <padding>`, checked per sender.
#[derive(Debug)]
pub struct Tally {
    per_sender: u64,
    /// Distinct lines seen.
    pub distinct: u64,
    /// Lines seen again.
    pub duplicates: u64,
    /// First occurrences that came after a higher seq of the same sender.
    pub reordered: u64,
    seen: BTreeMap<String, (Vec<bool>, Option<u64>)>,
}

impl Tally {
    /// An empty tally of senders that send `per_sender` lines numbered from 0.
    pub fn new(per_sender: u64) -> Tally {
        Tally {
            per_sender,
            distinct: 0,
            duplicates: 0,
            reordered: 0,
            seen: BTreeMap::new(),
        }
    }

    /// Counts one message.
    pub fn add(&mut self, m: &Consumed) {
        let mut words = m.message().split(' ');
        let sender = words.next().unwrap_or_default().to_string();
        let seq: u64 = words
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message {:?}", m.message()));
        assert!(seq < self.per_sender, "seq {seq} out of range");
        let per_sender = self.per_sender as usize;
        let (seen, last) = self
            .seen
            .entry(sender)
            .or_insert_with(|| (vec![false; per_sender], None));
        if seen[seq as usize] {
            self.duplicates += 1;
            return;
        }
        seen[seq as usize] = true;
        self.distinct += 1;
        if last.is_some_and(|l| seq < l) {
            self.reordered += 1;
        }
        *last = Some(seq);
    }

    /// The sequence numbers of `sender` never seen.
    pub fn missing(&self, sender: &str) -> Vec<u64> {
        match self.seen.get(sender) {
            Some((seen, _)) => (0..self.per_sender)
                .filter(|&i| !seen[i as usize])
                .collect(),
            None => (0..self.per_sender).collect(),
        }
    }
}

/// An RFC 5424 line from `host`, whose message is `<sender> <seq> <padding>`.
pub fn line(host: &str, sender: &str, seq: u64) -> String {
    format!(
        "<134>1 2026-11-21T10:00:00.000Z {host} app 42 - - {sender} {seq} lorem ipsum dolor sit amet\n"
    )
}

/// Sends `count` lines from `host` (sender name = host) over one TCP connection, then closes
/// it. The thread fails if the connection breaks.
pub fn send(
    addr: SocketAddr,
    host: &str,
    count: u64,
    pace: Option<(u64, Duration)>,
) -> JoinHandle<()> {
    let host = host.to_string();
    std::thread::spawn(move || {
        let mut conn = BufWriter::new(super::connect_with_small_send_buffer(addr));
        for seq in 0..count {
            conn.write_all(line(&host, &host, seq).as_bytes())
                .expect("the gateway keeps the connection");
            if let Some((every, pause)) = pace
                && seq % every == every - 1
            {
                conn.flush().expect("flush");
                std::thread::sleep(pause);
            }
        }
        conn.flush().expect("flush");
    })
}

/// Waits until `condition` holds, or panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
