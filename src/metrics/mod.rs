//! Counters, gauges and the latency histogram of each part of the gateway, and their
//! Prometheus text exposition ([`exposition`], `Metrics::render`).
//!
//! A leaf: it uses nothing of the crate. The HTTP server that serves the exposition at
//! `/metrics` is [`crate::http`]; rate-limited warnings are [`crate::log_limit`].
//!
//! Hot-path counters are plain relaxed atomics owned by one listener or one ring. A shard adds
//! to them once per read or per datagram batch, not once per line, so sharing a listener's
//! counters between shards costs one uncontended-in-practice atomic add per syscall. The one
//! histogram (in-gateway latency) is recorded by the sink thread once per batch.
//!
//! Exposed metrics (all prefixed `logtail_`):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `received_lines_total` | counter | listener, transport | messages received |
//! | `received_bytes_total` | counter | listener, transport | message bytes received (after framing) |
//! | `parse_errors_total` | counter | listener, transport | messages kept raw because they did not parse |
//! | `truncated_total` | counter | listener, transport | messages cut to `max_message_bytes` |
//! | `dropped_total` | counter | listener, transport, reason | messages not kept: `oversize`, `ring_full`, `empty` (agent batches), `kernel` (datagrams the kernel dropped for a full receive buffer, `SO_RXQ_OVFL`), `store_quota` (the listener's records take its whole `store_quota_bytes` of the store), `rate_limit` (datagrams over their address's `max_lines_per_sec_per_ip` or `max_bytes_per_sec_per_ip`) |
//! | `store_bytes` / `store_quota_bytes` | gauge | listener, transport | bytes of the local store the listener's records take now; its quota (listeners with `store_quota_bytes` only) |
//! | `framing_errors_total` | counter | listener, transport | untrusted or malformed octet counts |
//! | `connections_open` | gauge | listener, transport | open stream connections |
//! | `connections_total` | counter | listener, transport | stream connections accepted |
//! | `connections_rejected_total` | counter | listener, transport, reason | connections closed at once: `max_connections`, `per_ip` (`max_connections_per_ip`), `reserved` (only reserved slots left, and the peer has a connection) |
//! | `throttled_total` | counter | listener, transport | pauses of stream connections sending faster than `max_bytes_per_sec_per_connection`, or than their address's `max_lines_per_sec_per_ip` / `max_bytes_per_sec_per_ip`, and of agents waiting for their listener's spent `store_quota_bytes` |
//! | `connections_closed_total` | counter | listener, transport, reason | connections the gateway closed: `hello_timeout`, `idle`, `slow` (a frame or line arrived below the minimum rate), `protocol`, `memory` (the memory budget was spent) |
//! | `source_memory_bytes` / `source_memory_limit_bytes` | gauge | | bytes all connections hold in partial frames and undecoded batches; the budget |
//! | `source_memory_refusals_total` / `source_memory_waits_total` | counter | | frames refused, and stream reads that waited, because the budget was spent |
//! | `peers_refused_total` | counter | listener, transport, reason | connections closed before any of their data was taken ([`PeerRefusal`]: TLS handshakes, agents' hosts and tokens) |
//! | `ring_records` / `ring_batches` | gauge | shard | what waits in each shard's ring |
//! | `ring_capacity_batches` | gauge | shard | the ring's capacity |
//! | `sink_records_total`, `sink_batches_total`, `sink_bytes_total` | counter | sink | written by the sink |
//! | `sink_errors_total` | counter | sink | failed writes (retried) |
//! | `sink_lost_records_total` | counter | sink | records given up on at shutdown after the sink kept failing |
//! | `sink_disk_full` | gauge | sink | 1 while writes fail because the disk is full (logged when it starts) |
//! | `batch_latency_seconds` | summary | sink, quantile | receive of a batch's first record → written by the sink |
//! | `kafka_produced_records_total`, `kafka_delivered_records_total` | counter | | handed to the producer; acknowledged by Kafka |
//! | `kafka_rejected_records_total` | counter | | rejected by Kafka for good (e.g. too large): lost, and logged |
//! | `kafka_retried_records_total` | counter | | failed delivery, sent back to the WAL |
//! | `kafka_lost_records_total` | counter | | given up on at shutdown: not acknowledged, and the WAL refused them |
//! | `kafka_producer_restarts_total` | counter | | new producers after a fatal error of the previous one |
//! | `kafka_delivery_errors_total` | counter | error | delivery errors reported by librdkafka |
//! | `kafka_state` | gauge | state | 1 for the current one of `direct`, `spilling`, `replaying` |
//! | `kafka_brokers_down` | gauge | | 1 while librdkafka reports every broker down |
//! | `kafka_in_flight_records`, `kafka_in_flight_bytes` | gauge | | handed to the producer, not yet acknowledged |
//! | `kafka_delivery_latency_seconds` | summary | sink, quantile | receive of a batch's first record → Kafka acknowledged its last |
//! | `wal_spilled_records_total`, `wal_spilled_batches_total` | counter | | written to the WAL instead of the producer |
//! | `wal_replayed_records_total` | counter | | replayed from the WAL (its rate is the replay rate) |
//! | `wal_full_total` | counter | | batches refused by a full WAL under `block` (retried) |
//! | `wal_pending_records`, `wal_pending_batches`, `wal_disk_bytes` | gauge | | what the WAL holds |
//! | `wal_dropped_records`, `wal_corrupt_records` | gauge | | lost to `drop_oldest`/`drop_newest`, and to corruption, since start |
//! | `config_reloads_total`, `config_reload_failures_total` | counter | | live reloads applied; rejected (the running configuration stayed) |
//! | `config_info` | gauge | sha256 | 1, labelled with the SHA-256 of the configuration file in force |
//! | `config_needs_restart` | gauge | key | 1 for each key changed in the file that only takes effect at the next restart |
//! | `kafka_consumer_lag` | gauge | listener, topic, partition | a Kafka source's lag behind the partition's end (librdkafka's statistics, every second) |
//! | `kafka_source_consumed_records_total`, `kafka_source_committed_records_total` | counter | listener | records a Kafka source took; whose offsets it committed once durable |
//! | `elasticsearch_indexed_docs_total` | counter | | documents indexed (2xx) |
//! | `elasticsearch_already_indexed_docs_total` | counter | | `create` found the `_id` there (409): delivered before, counted as delivered |
//! | `elasticsearch_retried_docs_total` | counter | | documents sent again after a 429, a 5xx or a failed request |
//! | `elasticsearch_dead_lettered_docs_total` | counter | | documents refused for good, written to the dead-letter file |
//! | `elasticsearch_failed_docs_total` | counter | reason | failed items by reason (the error type, `http_NNN`, `connection`, `timeout`, `not_json`) |
//! | `elasticsearch_bulk_requests_total` | counter | | `_bulk` requests answered or failed |
//! | `elasticsearch_spilled_records_total`, `elasticsearch_replayed_records_total` | counter | | written to the WAL instead of sent; read back from it |
//! | `elasticsearch_lost_records_total` | counter | | given up on at shutdown (the WAL refused them) |
//! | `elasticsearch_state` | gauge | state | 1 for the current one of `direct`, `spilling`, `replaying` |
//! | `elasticsearch_unreachable` | gauge | | 1 while no endpoint answers (or the index template is not installed yet) |
//! | `elasticsearch_in_flight_docs`, `elasticsearch_requests_in_flight` | gauge | | documents taken and not yet indexed; requests sent and not answered |
//! | `elasticsearch_wal_pending_records` | gauge | | records in its WAL not yet indexed |
//! | `elasticsearch_bulk_latency_seconds` | summary | quantile | a `_bulk` request's round trip |
//! | `elasticsearch_indexed_latency_seconds` | summary | quantile | a record's receipt → Elasticsearch indexed it |

mod agents;
mod elasticsearch;
mod exposition;
mod kafka_source;

pub use elasticsearch::ElasticsearchMetrics;
pub use kafka_source::KafkaSourceMetrics;

pub use agents::{AgentConnection, AgentSeen, ConnectedAgents};
pub use exposition::{escape_label, header, single};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one listener counts.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// The listener's configured name.
    pub name: String,
    /// `udp`, `tcp`, `unix-datagram` or `unix-stream`.
    pub transport: &'static str,
    pub received_lines: Counter,
    pub received_bytes: Counter,
    pub parse_errors: Counter,
    pub truncated: Counter,
    pub dropped_oversize: Counter,
    pub dropped_ring_full: Counter,
    pub framing_errors: Counter,
    pub connections_open: Gauge,
    pub connections: Counter,
    pub connections_rejected: Counter,
    /// Empty messages (an agent batch may carry them), dropped and counted, never stored.
    pub dropped_empty: Counter,
    /// Datagrams the kernel dropped for a full receive buffer (`SO_RXQ_OVFL`).
    pub dropped_kernel: Counter,
    /// Times a stream connection was paused for `max_bytes_per_sec_per_connection`.
    pub throttled: Counter,
    /// Connections refused because their peer was at `max_connections_per_ip`...
    pub connections_rejected_per_ip: Counter,
    /// ...or already had a connection when only the reserved slots were left.
    pub connections_rejected_reserved: Counter,
    /// Connections closed by the gateway, by reason: no HELLO in time, silent too long,
    /// a frame or line that arrived too slowly, a protocol error, the memory budget spent.
    pub closed_hello_timeout: Counter,
    pub closed_idle: Counter,
    pub closed_slow: Counter,
    pub closed_protocol: Counter,
    pub closed_memory: Counter,
    /// Connections closed before any of their data was taken: failed TLS handshakes and
    /// agents claiming a host they may not, by [`PeerRefusal`].
    pub peers_refused: [Counter; PeerRefusal::ALL.len()],
    /// The agents of an agent listener (empty on the others).
    pub agents: ConnectedAgents,
    /// The listener's share of the local store (`store_quota_bytes`), if it has one.
    pub store_quota: Option<Arc<StoreQuota>>,
    /// Messages dropped because the listener held its whole store quota.
    pub dropped_store_quota: Counter,
    /// Datagrams dropped because their peer address was over its rate.
    pub dropped_rate_limit: Counter,
}

/// A listener's share of the local store: what its records take in the store now, against
/// its `store_quota_bytes`. The shard that encodes a listener's records adds their encoded
/// bytes to `in_flight_bytes` and reads [`StoreQuota::is_spent`] (a spent quota drops them
/// before they are parsed, unless the listener holds its senders back instead: an agent
/// listener, whose batches are acknowledged, waits before reading the next one, so that an
/// acknowledged batch is never one that was dropped); the store sink moves a stored batch's bytes from `in_flight_bytes`
/// to `held_bytes` (as they take on disk) and takes them off again when retention deletes the
/// segment (see `crate::sink::store`). Counting the records on their way too keeps a flood
/// from overshooting the quota by all that the rings hold: the quota is kept to within one
/// receive (one read of a connection, one `recvmmsg`).
#[derive(Debug)]
pub struct StoreQuota {
    /// The most bytes of the store the listener's records may take.
    pub limit_bytes: u64,
    /// The bytes they take in the store now (compressed, as on disk).
    pub held_bytes: Gauge,
    /// A spent quota makes the listener's connections wait (agent listeners) rather than
    /// drop their messages.
    pub holds_senders_back: bool,
    /// Encoded bytes of its records in batches not yet stored (uncompressed: an overestimate
    /// until they are stored).
    pub in_flight_bytes: Gauge,
}

impl StoreQuota {
    /// A quota of `limit_bytes`, nothing held yet; see [`StoreQuota::holds_senders_back`].
    pub fn new(limit_bytes: u64, holds_senders_back: bool) -> Self {
        StoreQuota {
            limit_bytes,
            held_bytes: Gauge::default(),
            holds_senders_back,
            in_flight_bytes: Gauge::default(),
        }
    }

    /// True once the listener's records, stored and on their way, take the whole quota: its
    /// new messages are dropped, or its senders wait.
    pub fn is_spent(&self) -> bool {
        self.held_bytes.get() + self.in_flight_bytes.get() >= self.limit_bytes as i64
    }
}

/// Why a connection was closed before anything it sent was taken (see
/// `crate::source::tls` and `crate::source::acked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRefusal {
    /// Not TLS on a TLS listener.
    Plaintext,
    /// No complete TLS handshake within `handshake_timeout_secs`.
    HandshakeTimeout,
    /// A TLS handshake that failed otherwise (version, cipher, unknown CA, protocol).
    HandshakeFailed,
    /// No client certificate where one is required.
    NoCertificate,
    /// A client certificate past its validity.
    CertificateExpired,
    /// A client certificate that does not verify (another CA, not yet valid, wrong usage).
    CertificateInvalid,
    /// A verified certificate that `allowed_peers` does not list.
    PeerNotAllowed,
    /// An agent whose HELLO names a host its certificate or token does not cover.
    HostNotAllowed,
    /// An agent with a missing or unknown token.
    BadToken,
}

impl PeerRefusal {
    /// Every reason, in the order of `ListenerMetrics::peers_refused`.
    pub const ALL: [PeerRefusal; 9] = [
        PeerRefusal::Plaintext,
        PeerRefusal::HandshakeTimeout,
        PeerRefusal::HandshakeFailed,
        PeerRefusal::NoCertificate,
        PeerRefusal::CertificateExpired,
        PeerRefusal::CertificateInvalid,
        PeerRefusal::PeerNotAllowed,
        PeerRefusal::HostNotAllowed,
        PeerRefusal::BadToken,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerRefusal::Plaintext => "plaintext",
            PeerRefusal::HandshakeTimeout => "handshake_timeout",
            PeerRefusal::HandshakeFailed => "handshake_failed",
            PeerRefusal::NoCertificate => "no_certificate",
            PeerRefusal::CertificateExpired => "certificate_expired",
            PeerRefusal::CertificateInvalid => "certificate_invalid",
            PeerRefusal::PeerNotAllowed => "peer_not_allowed",
            PeerRefusal::HostNotAllowed => "host_not_allowed",
            PeerRefusal::BadToken => "bad_token",
        }
    }
}

impl ListenerMetrics {
    /// Counts one connection refused for `reason`.
    pub fn refused(&self, reason: PeerRefusal) {
        self.peers_refused[reason as usize].add(1);
    }

    /// How many connections were refused for `reason`.
    pub fn refused_count(&self, reason: PeerRefusal) -> u64 {
        self.peers_refused[reason as usize].get()
    }
}

impl ListenerMetrics {
    /// Zeroed counters for a listener.
    pub fn new(name: &str, transport: &'static str) -> Self {
        ListenerMetrics {
            name: name.to_string(),
            transport,
            received_lines: Counter::default(),
            received_bytes: Counter::default(),
            parse_errors: Counter::default(),
            truncated: Counter::default(),
            dropped_oversize: Counter::default(),
            dropped_ring_full: Counter::default(),
            framing_errors: Counter::default(),
            connections_open: Gauge::default(),
            connections: Counter::default(),
            connections_rejected: Counter::default(),
            dropped_empty: Counter::default(),
            dropped_kernel: Counter::default(),
            throttled: Counter::default(),
            connections_rejected_per_ip: Counter::default(),
            connections_rejected_reserved: Counter::default(),
            closed_hello_timeout: Counter::default(),
            closed_idle: Counter::default(),
            closed_slow: Counter::default(),
            closed_protocol: Counter::default(),
            closed_memory: Counter::default(),
            peers_refused: Default::default(),
            agents: ConnectedAgents::default(),
            store_quota: None,
            dropped_store_quota: Counter::default(),
            dropped_rate_limit: Counter::default(),
        }
    }

    /// The counters of a listener whose records may take at most `limit_bytes` of the store;
    /// see [`StoreQuota::holds_senders_back`].
    pub fn with_store_quota(mut self, limit_bytes: Option<u64>, holds_senders_back: bool) -> Self {
        self.store_quota =
            limit_bytes.map(|limit| Arc::new(StoreQuota::new(limit, holds_senders_back)));
        self
    }
}

/// The sources' one memory budget for partial frames and undecoded batches.
#[derive(Debug, Default)]
pub struct MemoryBudgetMetrics {
    /// Bytes held now, by all connections together.
    pub held_bytes: Gauge,
    /// The budget.
    pub limit_bytes: Gauge,
    /// Frames refused, their connections closed, because the budget stayed spent.
    pub refusals: Counter,
    /// Times a stream connection waited for room (backpressure on its sender).
    pub waits: Counter,
}

/// What waits in one shard's ring.
#[derive(Debug)]
pub struct RingMetrics {
    pub shard: u16,
    pub capacity_batches: usize,
    pub records: Gauge,
    pub batches: Gauge,
}

/// What the sink did.
#[derive(Debug)]
pub struct SinkMetrics {
    /// `store`, `stdout` or `blackhole`.
    pub name: &'static str,
    pub records: Counter,
    pub batches: Counter,
    pub bytes: Counter,
    pub errors: Counter,
    pub lost_records: Counter,
    /// 1 while writes fail because the disk is full.
    pub disk_full: Gauge,
    /// From a batch's first receive to its write, one sample per batch.
    latency: LatencySummary,
}

impl SinkMetrics {
    /// Zeroed metrics for the sink `name`.
    pub fn new(name: &'static str) -> Self {
        SinkMetrics {
            name,
            records: Counter::default(),
            batches: Counter::default(),
            bytes: Counter::default(),
            errors: Counter::default(),
            lost_records: Counter::default(),
            disk_full: Gauge::default(),
            latency: LatencySummary::default(),
        }
    }

    /// From a batch's first receive to its write.
    pub fn latency(&self) -> &LatencySummary {
        &self.latency
    }

    /// Records a written batch whose first record arrived at `opened_at`.
    pub fn record_batch(&self, records: usize, bytes: usize, opened_at: Option<Instant>) {
        self.records.add(records as u64);
        self.batches.add(1);
        self.bytes.add(bytes as u64);
        if let Some(opened) = opened_at {
            self.latency.record(opened.elapsed());
        }
    }
}

/// A latency histogram (hdrhistogram: 3 significant digits, 1 µs to an hour), exported as a
/// Prometheus summary with the quantiles 0.5, 0.9, 0.99 and 0.999.
#[derive(Debug)]
pub struct LatencySummary(Mutex<Histogram<u64>>);

impl Default for LatencySummary {
    fn default() -> Self {
        LatencySummary(Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
        ))
    }
}

impl LatencySummary {
    /// Records one sample.
    pub fn record(&self, latency: Duration) {
        let us = latency.as_micros().clamp(1, 3_600_000_000) as u64;
        if let Ok(mut h) = self.0.lock() {
            let _ = h.record(us);
        }
    }

    /// The latency at quantile `q` (0..=1), and the number of samples.
    pub fn quantile(&self, q: f64) -> (Duration, u64) {
        self.0.lock().map_or((Duration::ZERO, 0), |h| {
            (Duration::from_micros(h.value_at_quantile(q)), h.len())
        })
    }
}

/// What the Kafka sink and its WAL did. Counters are added by the sink thread; the gauges are
/// refreshed by it every few milliseconds.
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    /// Records handed to the producer (straight from the rings or replayed from the WAL).
    pub produced_records: Counter,
    /// Records Kafka acknowledged.
    pub delivered_records: Counter,
    /// Records rejected by Kafka for good (e.g. too large for the broker): lost, and logged.
    pub rejected_records: Counter,
    /// Records whose delivery failed and that went back to the WAL to be retried.
    pub retried_records: Counter,
    /// Records written to the WAL instead of the producer, and their batches.
    pub spilled_records: Counter,
    pub spilled_batches: Counter,
    /// Records read back from the WAL and handed to the producer.
    pub replayed_records: Counter,
    /// Batches refused by a full WAL under `full_policy = "block"` (each is retried).
    pub wal_full: Counter,
    /// Records given up on at shutdown: not acknowledged by Kafka, and refused by the WAL.
    pub lost_records: Counter,
    /// New producers started after a fatal error of the previous one.
    pub producer_restarts: Counter,
    /// Delivery errors reported by librdkafka, by error name.
    delivery_errors: Mutex<std::collections::BTreeMap<String, u64>>,
    /// The sink's state, as `sink::kafka::State::metric_value` numbers it.
    pub state: Gauge,
    /// 1 while librdkafka reports every broker down.
    pub brokers_down: Gauge,
    pub in_flight_records: Gauge,
    pub in_flight_bytes: Gauge,
    pub wal_pending_records: Gauge,
    pub wal_pending_batches: Gauge,
    pub wal_disk_bytes: Gauge,
    pub wal_dropped_records: Gauge,
    pub wal_corrupt_records: Gauge,
    /// From a batch's first receive to Kafka's acknowledgement of its last record.
    pub delivery_latency: LatencySummary,
}

/// The values of the `KafkaMetrics::state` gauge and their names (`sink::kafka::State`).
pub const KAFKA_STATES: [(i64, &str); 3] = [(0, "direct"), (1, "spilling"), (2, "replaying")];

impl KafkaMetrics {
    /// The name of the sink's current state (`direct`, `spilling`, `replaying`).
    pub fn state_name(&self) -> &'static str {
        let value = self.state.get();
        KAFKA_STATES
            .iter()
            .find(|(v, _)| *v == value)
            .map_or("unknown", |(_, name)| name)
    }

    /// Counts `n` delivery errors of kind `error`.
    pub fn delivery_error(&self, error: &str, n: u64) {
        if let Ok(mut map) = self.delivery_errors.lock() {
            *map.entry(error.to_string()).or_default() += n;
        }
    }

    /// The delivery errors counted for `error`.
    pub fn delivery_errors(&self, error: &str) -> u64 {
        self.delivery_errors
            .lock()
            .map_or(0, |map| map.get(error).copied().unwrap_or(0))
    }
}

/// Every metric of a running gateway.
#[derive(Debug)]
pub struct Metrics {
    /// The listeners open now (a live reload adds and removes them).
    listeners: std::sync::RwLock<Vec<std::sync::Arc<ListenerMetrics>>>,
    pub rings: Vec<std::sync::Arc<RingMetrics>>,
    pub sink: std::sync::Arc<SinkMetrics>,
    /// Set when the sink is Kafka.
    pub kafka: Option<std::sync::Arc<KafkaMetrics>>,
    /// The sources' memory budget, when the gateway has one.
    pub memory_budget: Option<std::sync::Arc<MemoryBudgetMetrics>>,
    /// Live reloads of the configuration.
    pub reload: ReloadMetrics,
    /// Set when the sink is Elasticsearch.
    pub elasticsearch: Option<std::sync::Arc<ElasticsearchMetrics>>,
    /// One per Kafka source open now.
    pub kafka_sources: std::sync::RwLock<Vec<std::sync::Arc<KafkaSourceMetrics>>>,
    started: Instant,
}

/// What live reloads of the gateway's configuration did (`crate::server`).
#[derive(Debug, Default)]
pub struct ReloadMetrics {
    /// Reloads applied (SIGHUP, or the file changed).
    pub reloads: Counter,
    /// Reloads rejected (the file did not parse or validate, or a new listener could not be
    /// bound): the running configuration stayed.
    pub failures: Counter,
    /// SHA-256 (hex) of the configuration file in force.
    config_sha256: Mutex<String>,
    /// The keys changed in the file that only take effect at the next restart (`sink`,
    /// `pipeline`, ...), empty when the file is wholly in force.
    needs_restart: Mutex<Vec<String>>,
}

impl ReloadMetrics {
    /// Records that the file with this hash is in force, but for `needs_restart`.
    pub fn set_running(&self, config_sha256: String, needs_restart: Vec<String>) {
        if let Ok(mut hash) = self.config_sha256.lock() {
            *hash = config_sha256;
        }
        if let Ok(mut keys) = self.needs_restart.lock() {
            *keys = needs_restart;
        }
    }

    /// SHA-256 (hex) of the configuration file in force.
    pub fn config_sha256(&self) -> String {
        self.config_sha256
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The keys changed in the file that need a restart to take effect (for `/api/v1/status`).
    pub fn needs_restart(&self) -> Vec<String> {
        self.needs_restart
            .lock()
            .map(|k| k.clone())
            .unwrap_or_default()
    }
}

impl Metrics {
    /// Groups the metrics of a gateway's parts.
    pub fn new(
        listeners: Vec<std::sync::Arc<ListenerMetrics>>,
        rings: Vec<std::sync::Arc<RingMetrics>>,
        sink: std::sync::Arc<SinkMetrics>,
        kafka: Option<std::sync::Arc<KafkaMetrics>>,
    ) -> Self {
        Metrics {
            listeners: std::sync::RwLock::new(listeners),
            rings,
            sink,
            kafka,
            memory_budget: None,
            reload: ReloadMetrics::default(),
            elasticsearch: None,
            kafka_sources: std::sync::RwLock::new(Vec::new()),
            started: Instant::now(),
        }
    }

    /// The same metrics, with the sources' memory budget.
    #[must_use]
    pub fn with_memory_budget(mut self, budget: std::sync::Arc<MemoryBudgetMetrics>) -> Self {
        self.memory_budget = Some(budget);
        self
    }

    /// Time since the gateway started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The same metrics, with the Elasticsearch sink's.
    #[must_use]
    pub fn with_elasticsearch(
        mut self,
        elasticsearch: Option<std::sync::Arc<ElasticsearchMetrics>>,
    ) -> Self {
        self.elasticsearch = elasticsearch;
        self
    }

    /// The metrics of the Kafka sources open now.
    pub fn kafka_sources(&self) -> Vec<std::sync::Arc<KafkaSourceMetrics>> {
        self.kafka_sources
            .read()
            .map(|k| k.clone())
            .unwrap_or_default()
    }

    /// Replaces the Kafka sources' metrics after a live reload added or removed some.
    pub fn set_kafka_sources(&self, sources: Vec<std::sync::Arc<KafkaSourceMetrics>>) {
        if let Ok(mut k) = self.kafka_sources.write() {
            *k = sources;
        }
    }

    /// The listener metrics named `name`.
    pub fn listener(&self, name: &str) -> Option<std::sync::Arc<ListenerMetrics>> {
        self.listeners().into_iter().find(|l| l.name == name)
    }

    /// The metrics of the listeners open now.
    pub fn listeners(&self) -> Vec<std::sync::Arc<ListenerMetrics>> {
        self.listeners.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// Replaces the listeners' metrics after a live reload added or removed some.
    pub fn set_listeners(&self, listeners: Vec<std::sync::Arc<ListenerMetrics>>) {
        if let Ok(mut l) = self.listeners.write() {
            *l = listeners;
        }
    }
}
