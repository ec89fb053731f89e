//! The configuration file: its TOML schema, defaults and validation.
//!
//! Every field's doc comment is its reference documentation (unit and default); the commented
//! `config/logtail.toml` repeats them as a manual. A file only needs the keys it changes: every
//! section and key has a default, and with no file at all (`logtail serve`) the gateway listens
//! on UDP and TCP port 5514 and on two Unix sockets under `./run/`, and writes to the local store
//! under `./data/`.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every error
//! names the file, the key and what is allowed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::encode::Encoding;
use crate::http::MetricsConfig;
use crate::ingest::framing::{Framing, OversizePolicy};
use crate::parse::{Format, LegacyZone};
use crate::pipeline::route::Route;

/// A configuration error, naming the file and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the gateway's own data (the local store lives in `DATA_DIR/store`).
    /// Default: `data` (relative to the working directory).
    pub data_dir: PathBuf,
    /// Settings shared by all listeners.
    pub ingest: IngestConfig,
    /// The sockets to listen on. Default: UDP and TCP on `0.0.0.0:5514`, a Unix datagram socket
    /// at `run/log.sock` and a Unix stream socket at `run/log-stream.sock`. Giving any
    /// `[[listen]]` table replaces the whole default list.
    pub listen: Vec<ListenerConfig>,
    /// Batching and the per-shard rings.
    pub pipeline: PipelineConfig,
    /// Where records go.
    pub sink: SinkConfig,
    /// The Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            ingest: IngestConfig::default(),
            listen: ListenerConfig::defaults(),
            pipeline: PipelineConfig::default(),
            sink: SinkConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// `[ingest]`: settings shared by all listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Number of shard threads, each with its own sockets, connections and ring.
    /// Default: 0, meaning one per CPU core.
    pub shards: usize,
    /// Longest message accepted, in bytes. Default: 65536 (64 KiB).
    pub max_message_bytes: usize,
    /// What happens to a longer message: `truncate` (keep the first `max_message_bytes`) or
    /// `drop`. Either way it is counted. Default: `truncate`.
    pub oversize: OversizePolicy,
    /// Message format: `auto` (detect RFC 5424 or RFC 3164 per message), `rfc5424` or
    /// `rfc3164`. A listener may override it. Default: `auto`.
    pub format: Format,
    /// Time zone of RFC 3164 timestamps, which carry none: `local` (the gateway's zone, as
    /// rsyslog assumes), `utc`, or a fixed offset such as `+02:00`. Default: `local`.
    pub legacy_timezone: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            shards: 0,
            max_message_bytes: 64 * 1024,
            oversize: OversizePolicy::Truncate,
            format: Format::Auto,
            legacy_timezone: "local".to_string(),
        }
    }
}

/// The kind of socket a listener opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerKind {
    /// UDP datagrams, one message each (RFC 5426).
    Udp,
    /// TCP streams, newline or octet-counted (RFC 6587).
    Tcp,
    /// A Unix datagram socket, like `/dev/log`.
    UnixDatagram,
    /// A Unix stream socket.
    UnixStream,
    /// TCP, speaking the acknowledged protocol of `logtail agent` ([`crate::agent_protocol`]).
    Agent,
}

impl ListenerKind {
    /// The name used in config files and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Udp => "udp",
            ListenerKind::Tcp => "tcp",
            ListenerKind::UnixDatagram => "unix-datagram",
            ListenerKind::UnixStream => "unix-stream",
            ListenerKind::Agent => "agent",
        }
    }

    /// True for sockets of syslog streams, which need framing.
    pub fn is_stream(self) -> bool {
        matches!(self, ListenerKind::Tcp | ListenerKind::UnixStream)
    }

    /// True for Unix-domain sockets, which take a `path` instead of an `address`.
    pub fn is_unix(self) -> bool {
        matches!(self, ListenerKind::UnixDatagram | ListenerKind::UnixStream)
    }
}

/// `[[listen]]`: one socket to receive on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in metrics labels and logs. Default: the `type`, numbered when repeated.
    #[serde(default)]
    pub name: Option<String>,
    /// `udp`, `tcp`, `unix-datagram`, `unix-stream` or `agent`. Required.
    #[serde(rename = "type")]
    pub kind: ListenerKind,
    /// `IP:PORT` to bind (`udp`, `tcp` and `agent`). Port 0 picks a free port.
    #[serde(default)]
    pub address: Option<String>,
    /// Socket file to create (`unix-datagram` and `unix-stream`); a stale socket file left by a
    /// previous run is replaced, any other file is an error.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Permissions of the socket file, in octal. Default: `"0666"`, so that any local program
    /// can log, as with `/dev/log`.
    #[serde(default = "default_socket_mode")]
    pub socket_mode: String,
    /// Stream framing: `auto` (per frame: octet counting when it starts with a digit),
    /// `newline` or `octet-counting`. Default: `auto`.
    #[serde(default)]
    pub framing: Framing,
    /// Message format for this listener; default: `[ingest] format`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Most simultaneous connections (stream listeners); a connection over the limit is closed
    /// at once and counted. Default: 10000.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a stream connection that sent nothing for this many seconds (its partial last
    /// line is kept). Default: 0, never.
    #[serde(default)]
    pub idle_timeout_secs: u64,
    /// Kernel receive buffer (`SO_RCVBUF`), in bytes. Datagram sockets: what absorbs bursts
    /// while a shard is off the CPU; default 33554432 (32 MiB; the kernel caps it at
    /// `net.core.rmem_max` unless running as root). Measured: at 300k datagrams/s of 200 bytes
    /// with both shards on one core, 8 MiB lost 1–2% to `RcvbufErrors`, 32 MiB none. Stream
    /// listeners: unset by default, so Linux sizes each connection's buffer itself (up to the
    /// maximum of `net.ipv4.tcp_rmem`, often 32 MiB); set, it caps the buffer of every accepted
    /// connection, so that a sender the gateway holds back feels it sooner. See
    /// [`ListenerConfig::receive_buffer`].
    #[serde(default)]
    pub receive_buffer_bytes: Option<usize>,
    /// The largest batch an agent may send (`agent` only), in bytes of messages before
    /// compression; a larger one is a protocol error. Default: 16777216 (16 MiB), well above
    /// the agent's default batch of 1 MiB of lines.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
}

fn default_socket_mode() -> String {
    "0666".to_string()
}
fn default_max_connections() -> usize {
    10_000
}
/// `receive_buffer_bytes` of datagram sockets when not set.
const DEFAULT_DATAGRAM_RECEIVE_BUFFER: usize = 32 * 1024 * 1024;
fn default_max_batch_bytes() -> usize {
    16 * 1024 * 1024
}

impl ListenerConfig {
    fn new(kind: ListenerKind, address: Option<&str>, path: Option<&str>) -> Self {
        ListenerConfig {
            name: None,
            kind,
            address: address.map(str::to_string),
            path: path.map(PathBuf::from),
            socket_mode: default_socket_mode(),
            framing: Framing::Auto,
            format: None,
            max_connections: default_max_connections(),
            idle_timeout_secs: 0,
            receive_buffer_bytes: None,
            max_batch_bytes: default_max_batch_bytes(),
        }
    }

    /// The listeners used when the configuration names none.
    pub fn defaults() -> Vec<ListenerConfig> {
        vec![
            ListenerConfig::new(ListenerKind::Udp, Some("0.0.0.0:5514"), None),
            ListenerConfig::new(ListenerKind::Tcp, Some("0.0.0.0:5514"), None),
            ListenerConfig::new(ListenerKind::UnixDatagram, None, Some("run/log.sock")),
            ListenerConfig::new(ListenerKind::UnixStream, None, Some("run/log-stream.sock")),
            ListenerConfig::new(ListenerKind::Agent, Some("0.0.0.0:5515"), None),
        ]
    }

    /// A listener of `kind` on `address` (UDP, TCP) with every other setting at its default.
    pub fn inet(kind: ListenerKind, address: &str) -> Self {
        ListenerConfig::new(kind, Some(address), None)
    }

    /// A listener of `kind` at `path` (Unix sockets) with every other setting at its default.
    pub fn unix(kind: ListenerKind, path: &Path) -> Self {
        let mut listener = ListenerConfig::new(kind, None, None);
        listener.path = Some(path.to_path_buf());
        listener
    }

    /// The `SO_RCVBUF` to give this listener's sockets: `receive_buffer_bytes`, or for
    /// datagram sockets 32 MiB when it is not set; `None` leaves the kernel's default.
    pub fn receive_buffer(&self) -> Option<usize> {
        match self.kind {
            ListenerKind::Udp | ListenerKind::UnixDatagram => Some(
                self.receive_buffer_bytes
                    .unwrap_or(DEFAULT_DATAGRAM_RECEIVE_BUFFER),
            ),
            _ => self.receive_buffer_bytes,
        }
    }

    /// The parsed bind address (validated by [`Config::validate`]).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.address.as_deref().and_then(|a| a.parse().ok())
    }

    /// The socket file's permissions (validated by [`Config::validate`]).
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8).unwrap_or(0o666)
    }

    /// How long a stream connection may stay silent, if limited.
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }
}

/// `[pipeline]`: batching and the per-shard rings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Capacity of each shard's ring, in batches. When it is full, stream connections of that
    /// shard stop being read (backpressure to the sender) and datagrams are dropped and counted.
    /// Default: 64.
    pub ring_batches: usize,
    /// A batch is cut when it holds this many records. Default: 4096.
    pub batch_max_records: usize,
    /// A batch is cut when its encoded records (with their Kafka keys and topics, when the sink
    /// routes them) reach this many bytes. Default: 1048576 (1 MiB).
    pub batch_max_bytes: usize,
    /// A batch is cut when its first record is this old, in milliseconds: the most a record
    /// waits in a shard on a quiet gateway. Default: 5.
    pub batch_max_age_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ring_batches: 64,
            batch_max_records: 4096,
            batch_max_bytes: 1024 * 1024,
            batch_max_age_ms: 5,
        }
    }
}

/// Which sink the records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The local on-disk store, read back with `logtail read`.
    #[default]
    Store,
    /// One record per line on standard output.
    Stdout,
    /// Counted and discarded (for benchmarks).
    Blackhole,
    /// Kafka, through librdkafka, with a write-ahead log that holds batches while Kafka lags
    /// or is down (`[sink.kafka]`).
    Kafka,
}

impl SinkKind {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Store => "store",
            SinkKind::Stdout => "stdout",
            SinkKind::Blackhole => "blackhole",
            SinkKind::Kafka => "kafka",
        }
    }
}

/// `[sink]`: where records go and how they are encoded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `store`, `stdout`, `blackhole` or `kafka`. Default: `store`.
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// `json` (one object per record) or `raw` (the bytes as received). Default: `json`.
    pub encoding: Encoding,
    /// Settings of the `store` sink.
    pub store: StoreSinkConfig,
    /// Settings of the `kafka` sink.
    pub kafka: KafkaSinkConfig,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Store,
            encoding: Encoding::Json,
            store: StoreSinkConfig::default(),
            kafka: KafkaSinkConfig::default(),
        }
    }
}

/// `[sink.store]`: the local store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSinkConfig {
    /// Directory of the segment files. Default: `DATA_DIR/store`.
    pub dir: Option<PathBuf>,
    /// A segment file is closed and a new one started past this size, in bytes.
    /// Default: 67108864 (64 MiB).
    pub max_segment_bytes: u64,
    /// Oldest segments are deleted while the store is larger than this, in bytes.
    /// Default: 1073741824 (1 GiB).
    pub max_total_bytes: u64,
    /// Segments whose newest record is older than this many seconds are deleted.
    /// Default: 0, no age limit.
    pub max_age_secs: u64,
    /// Written data is fsync'ed at most this many milliseconds after it was written (a crash of
    /// the machine, not of the process, can lose that window). 0 syncs after every batch.
    /// Default: 1000.
    pub fsync_interval_ms: u64,
}

impl Default for StoreSinkConfig {
    fn default() -> Self {
        StoreSinkConfig {
            dir: None,
            max_segment_bytes: 64 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
            max_age_secs: 0,
            fsync_interval_ms: 1000,
        }
    }
}

/// `[sink.kafka]`: the Kafka producer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSinkConfig {
    /// Comma-separated `HOST:PORT` list of brokers to bootstrap from.
    /// Default: `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// The topic every record goes to, and the fallback of `topic_template` when a record lacks
    /// a field it names. Default: `logs`.
    pub topic: String,
    /// A topic per record, rendered from its fields, e.g. `logs.{app}` or `syslog.{facility}`.
    /// Fields: `host`, `app`, `procid`, `msgid`, `facility` and `severity` (as names: `local0`,
    /// `err`), `source`, and `topic` (the agent collect entry's `topic`: `{topic}` routes
    /// agents' lines per entry). Bytes that Kafka does not allow in a topic name become `_`.
    /// Default: empty, every record goes to `topic`.
    pub topic_template: String,
    /// The message key, a template over the same fields. Records with the same key go to the
    /// same partition, in order. A record lacking the field gets no key. Empty: no key at all.
    /// Default: `{host}`.
    pub key: String,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default: `lz4`.
    pub compression: KafkaCompression,
    /// `all`, `1` or `0`: how many replicas must have a message before the broker acknowledges
    /// it. Default: `all`.
    pub acks: String,
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
    pub librdkafka: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaSinkConfig {
    fn default() -> Self {
        KafkaSinkConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "logs".into(),
            topic_template: String::new(),
            key: "{host}".into(),
            compression: KafkaCompression::Lz4,
            acks: "all".into(),
            idempotence: true,
            linger_ms: 5,
            batch_max_bytes: 1_000_000,
            message_timeout_ms: 0,
            spill: SpillConfig::default(),
            wal: WalConfig::default(),
            librdkafka: Default::default(),
        }
    }
}

/// Checks a Kafka `topic` (a name), `topic_template` (empty: none) and `key` (templates);
/// `Err((key, message))` names the bad one.
///
/// # Errors
/// A topic that is not a legal name, or a template that does not parse.
pub fn validate_kafka_routing(
    topic: &str,
    topic_template: &str,
    key: &str,
) -> Result<(), (&'static str, String)> {
    if topic.contains(['{', '}']) || Route::new("", Some(topic)).is_err() {
        return Err((
            "topic",
            format!(
                "{topic:?} is not a Kafka topic name: 1 to 249 of A-Z a-z 0-9 . _ - (templates \
                 go in topic_template)"
            ),
        ));
    }
    Route::new(key, None).map_err(|e| ("key", e.to_string()))?;
    let template = Some(topic_template).filter(|t| !t.is_empty());
    Route::new("", template).map_err(|e| ("topic_template", e.to_string()))?;
    Ok(())
}

fn kafka_topic_template(kafka: &KafkaSinkConfig) -> Option<&str> {
    Some(kafka.topic_template.as_str()).filter(|t| !t.is_empty())
}

/// `compression` of `[sink.kafka]`: the codec of produce requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl KafkaCompression {
    /// The value of librdkafka's `compression.codec`.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// `[sink.kafka.spill]`: when batches go to the WAL instead of straight to Kafka. Any one of
/// the three conditions makes the sink spill; once none holds, the WAL replays in order and new
/// batches queue behind it.
#[derive(Debug, Clone, Deserialize)]
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

/// `fsync` of `[sink.kafka.wal]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalFsync {
    /// The OS writes back when it likes: safe against a crash of the gateway, not of the
    /// machine.
    Never,
    /// Every `fsync_interval_ms`: a crash of the machine loses at most that window.
    #[default]
    Interval,
    /// Before a batch counts as stored: nothing acknowledged to the WAL is lost.
    EveryBatch,
}

/// `full_policy` of `[sink.kafka.wal]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalFullPolicy {
    /// Stop taking batches: stream senders are slowed by TCP flow control, datagrams are
    /// dropped and counted.
    #[default]
    Block,
    /// Delete the oldest segment, undelivered records included (counted).
    DropOldest,
    /// Drop the new batch (counted).
    DropNewest,
}

/// `[sink.kafka.wal]`: the write-ahead log that holds batches while Kafka lags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// Directory of the WAL. Default: `DATA_DIR/wal`.
    pub dir: Option<PathBuf>,
    /// Size of one segment file, in bytes. Default: 67108864 (64 MiB).
    pub max_segment_bytes: u64,
    /// The WAL never takes more than this on disk, in bytes. Default: 4294967296 (4 GiB).
    pub max_total_bytes: u64,
    /// `never`, `interval` or `every_batch`. Default: `interval`.
    pub fsync: WalFsync,
    /// The interval of `fsync = "interval"`, in milliseconds. Default: 1000.
    pub fsync_interval_ms: u64,
    /// `block`, `drop_oldest` or `drop_newest`: what happens when the WAL is full or the disk
    /// is. Default: `block`.
    pub full_policy: WalFullPolicy,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            dir: None,
            max_segment_bytes: 64 << 20,
            max_total_bytes: 4 << 30,
            fsync: WalFsync::Interval,
            fsync_interval_ms: 1000,
            full_policy: WalFullPolicy::Block,
        }
    }
}

impl Config {
    /// Loads and validates `path`, or returns the defaults when `path` is `None`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the line or key at fault, and what is allowed.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            let config = Config::default();
            config.validate(Path::new("(defaults)"))?;
            return Ok(config);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what the schema alone cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if self.ingest.max_message_bytes < 64 || self.ingest.max_message_bytes > 16 << 20 {
            return Err(invalid(
                "ingest.max_message_bytes".into(),
                format!(
                    "{} is out of range: allowed 64 to 16777216 bytes",
                    self.ingest.max_message_bytes
                ),
            ));
        }
        if let Err(e) = self.ingest.legacy_timezone.parse::<LegacyZone>() {
            return Err(invalid(
                "ingest.legacy_timezone".into(),
                format!(
                    "{:?}: {e}; allowed: \"local\", \"utc\" or an offset like \"+02:00\"",
                    self.ingest.legacy_timezone
                ),
            ));
        }
        if self.listen.is_empty() {
            return Err(invalid(
                "listen".into(),
                "no listener: give at least one [[listen]] table".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, listener) in self.listen.iter().enumerate() {
            let key = |field: &str| format!("listen[{i}].{field}");
            let kind = listener.kind.as_str();
            if listener.kind.is_unix() {
                if listener.path.is_none() {
                    return Err(invalid(
                        key("path"),
                        format!("required for type = \"{kind}\", e.g. path = \"run/log.sock\""),
                    ));
                }
                if listener.address.is_some() {
                    return Err(invalid(
                        key("address"),
                        format!("not used by type = \"{kind}\"; give `path` instead"),
                    ));
                }
                if u32::from_str_radix(listener.socket_mode.trim_start_matches("0o"), 8)
                    .map_or(true, |m| m > 0o777)
                {
                    return Err(invalid(
                        key("socket_mode"),
                        format!(
                            "{:?} is not an octal mode like \"0666\"",
                            listener.socket_mode
                        ),
                    ));
                }
            } else {
                match &listener.address {
                    None => {
                        return Err(invalid(
                            key("address"),
                            format!(
                                "required for type = \"{kind}\", e.g. address = \"0.0.0.0:5514\""
                            ),
                        ));
                    }
                    Some(a) if a.parse::<SocketAddr>().is_err() => {
                        return Err(invalid(
                            key("address"),
                            format!("{a:?} is not IP:PORT, e.g. \"0.0.0.0:5514\" or \"[::]:5514\""),
                        ));
                    }
                    Some(_) => {}
                }
                if listener.path.is_some() {
                    return Err(invalid(
                        key("path"),
                        format!("not used by type = \"{kind}\"; give `address` instead"),
                    ));
                }
            }
            if !listener.kind.is_stream() && listener.framing != Framing::Auto {
                return Err(invalid(
                    key("framing"),
                    format!("not used by type = \"{kind}\": a datagram is one message"),
                ));
            }
            if listener.kind == ListenerKind::Agent
                && !(1024..=crate::agent_protocol::MAX_FRAME_BYTES / 2)
                    .contains(&listener.max_batch_bytes)
            {
                return Err(invalid(
                    key("max_batch_bytes"),
                    format!(
                        "{} is out of range: 1024 to {}",
                        listener.max_batch_bytes,
                        crate::agent_protocol::MAX_FRAME_BYTES / 2
                    ),
                ));
            }
            if listener.max_connections == 0 {
                return Err(invalid(key("max_connections"), "must be at least 1".into()));
            }
            if let Some(name) = &listener.name
                && !names.insert(name.clone())
            {
                return Err(invalid(
                    key("name"),
                    format!("{name:?} is used by two listeners"),
                ));
            }
        }
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.ring_batches", p.ring_batches),
            ("pipeline.batch_max_records", p.batch_max_records),
            ("pipeline.batch_max_bytes", p.batch_max_bytes),
        ] {
            if value == 0 {
                return Err(invalid(key.into(), "must be at least 1".into()));
            }
        }
        if p.batch_max_bytes > 256 << 20 {
            return Err(invalid(
                "pipeline.batch_max_bytes".into(),
                "at most 268435456 (256 MiB)".into(),
            ));
        }
        if self.sink.store.max_segment_bytes < 4096 {
            return Err(invalid(
                "sink.store.max_segment_bytes".into(),
                "must be at least 4096".into(),
            ));
        }
        self.validate_kafka(path)
    }

    fn validate_kafka(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: format!("sink.kafka.{key}"),
            message,
        };
        let kafka = &self.sink.kafka;
        if kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "bootstrap_servers",
                "empty; give HOST:PORT[,HOST:PORT...], e.g. \"127.0.0.1:9092\"".into(),
            ));
        }
        validate_kafka_routing(&kafka.topic, &kafka.topic_template, &kafka.key)
            .map_err(|(key, message)| invalid(key, message))?;
        if self.sink.kind == SinkKind::Kafka
            && self.pipeline.batch_max_bytes > crate::wal::MAX_PAYLOAD_BYTES / 2
        {
            return Err(invalid(
                "(pipeline.batch_max_bytes)",
                format!(
                    "pipeline.batch_max_bytes = {} is too large for the Kafka sink's WAL: at most {}",
                    self.pipeline.batch_max_bytes,
                    crate::wal::MAX_PAYLOAD_BYTES / 2
                ),
            ));
        }
        if !matches!(kafka.acks.as_str(), "all" | "-1" | "1" | "0") {
            return Err(invalid(
                "acks",
                format!("{:?}: allowed \"all\", \"1\" or \"0\"", kafka.acks),
            ));
        }
        let spill = &kafka.spill;
        for (key, value) in [
            ("spill.max_in_flight_records", spill.max_in_flight_records),
            ("spill.max_in_flight_bytes", spill.max_in_flight_bytes),
            (
                "spill.max_delivery_latency_ms",
                spill.max_delivery_latency_ms,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        let wal = &kafka.wal;
        if wal.max_segment_bytes < 4096 {
            return Err(invalid(
                "wal.max_segment_bytes",
                "must be at least 4096".into(),
            ));
        }
        if wal.max_total_bytes < wal.max_segment_bytes {
            return Err(invalid(
                "wal.max_total_bytes",
                format!(
                    "{} is below wal.max_segment_bytes ({})",
                    wal.max_total_bytes, wal.max_segment_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The number of shard threads to run.
    pub fn shard_count(&self) -> usize {
        if self.ingest.shards > 0 {
            self.ingest.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The RFC 3164 time zone (validated by [`Config::validate`]).
    pub fn legacy_zone(&self) -> LegacyZone {
        self.ingest
            .legacy_timezone
            .parse()
            .unwrap_or(LegacyZone::Local)
    }

    /// The local store's directory.
    pub fn store_dir(&self) -> PathBuf {
        self.sink
            .store
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("store"))
    }

    /// The key and topic templates of the Kafka sink, when the sink is Kafka and one is set
    /// (validated by [`Config::validate`]).
    pub fn kafka_route(&self) -> Option<Route> {
        if self.sink.kind != SinkKind::Kafka {
            return None;
        }
        let kafka = &self.sink.kafka;
        if kafka.key.is_empty() && kafka.topic_template.is_empty() {
            return None;
        }
        Route::new(&kafka.key, kafka_topic_template(kafka)).ok()
    }

    /// The Kafka sink's WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.sink
            .kafka
            .wal
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("wal"))
    }

    /// The name of listener `index`: its configured name, or its type, numbered from the second
    /// listener of the same type on.
    pub fn listener_name(&self, index: usize) -> String {
        let listener = &self.listen[index];
        if let Some(name) = &listener.name {
            return name.clone();
        }
        let kind = listener.kind;
        let same_before = self.listen[..index]
            .iter()
            .filter(|l| l.kind == kind && l.name.is_none())
            .count();
        if same_before == 0 {
            kind.as_str().to_string()
        } else {
            format!("{}-{}", kind.as_str(), same_before + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("test.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = load("").unwrap();
        let kinds: Vec<_> = config.listen.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["udp", "tcp", "unix-datagram", "unix-stream", "agent"]
        );
        assert_eq!(config.listen[0].address.as_deref(), Some("0.0.0.0:5514"));
        assert_eq!(config.listen[4].address.as_deref(), Some("0.0.0.0:5515"));
        assert_eq!(
            config.listen[2].path.as_deref(),
            Some(Path::new("run/log.sock"))
        );
        assert_eq!(config.store_dir(), Path::new("data/store"));
        assert_eq!(config.sink.kind, SinkKind::Store);
        assert_eq!(config.ingest.max_message_bytes, 65536);
        assert_eq!(config.metrics.address.to_string(), "127.0.0.1:9100");
    }

    #[test]
    fn the_shipped_example_config_is_valid_and_matches_the_defaults() {
        let text = include_str!("../config/logtail.toml");
        let config = load(text).unwrap();
        let defaults = Config::default();
        assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn listeners_replace_the_defaults_and_get_numbered_names() {
        let config = load(
            "[[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:601\"\nframing = \"octet-counting\"\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:602\"\n",
        )
        .unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.listen[0].framing, Framing::OctetCounting);
        assert_eq!(config.listener_name(0), "tcp");
        assert_eq!(config.listener_name(1), "tcp-2");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = load("[ingest]\nmax_mesage_bytes = 10\n").unwrap_err();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("max_mesage_bytes"), "{err}");
    }

    #[test]
    fn bad_enum_value_lists_the_allowed_values() {
        let err = load("[ingest]\noversize = \"cut\"\n").unwrap_err();
        assert!(
            err.contains("`truncate`") && err.contains("`drop`"),
            "{err}"
        );
    }

    #[test]
    fn missing_address_names_the_listener_key() {
        let err = load("[[listen]]\ntype = \"udp\"\n").unwrap_err();
        assert_eq!(
            err,
            "config file test.toml: listen[0].address: required for type = \"udp\", e.g. address = \"0.0.0.0:5514\""
        );
    }

    #[test]
    fn bad_address_and_timezone_are_rejected() {
        let err = load("[[listen]]\ntype = \"tcp\"\naddress = \"localhost\"\n").unwrap_err();
        assert!(
            err.contains("listen[0].address") && err.contains("\"localhost\""),
            "{err}"
        );
        let err = load("[ingest]\nlegacy_timezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(err.contains("ingest.legacy_timezone"), "{err}");
    }

    #[test]
    fn framing_on_a_datagram_listener_is_an_error() {
        let err =
            load("[[listen]]\ntype = \"udp\"\naddress = \"0.0.0.0:1\"\nframing = \"newline\"\n")
                .unwrap_err();
        assert!(err.contains("listen[0].framing"), "{err}");
    }

    #[test]
    fn kafka_sink_settings_are_read_and_checked() {
        let config = load(
            "[sink]\ntype = \"kafka\"\n[sink.kafka]\nbootstrap_servers = \"k1:9092,k2:9092\"\n\
             topic_template = \"syslog.{facility}\"\ncompression = \"zstd\"\n\
             [sink.kafka.wal]\nfull_policy = \"drop_oldest\"\nfsync = \"every_batch\"\n\
             [sink.kafka.librdkafka]\n\"security.protocol\" = \"sasl_ssl\"\n",
        )
        .unwrap();
        let kafka = &config.sink.kafka;
        assert_eq!(kafka.compression, KafkaCompression::Zstd);
        assert_eq!(kafka.wal.full_policy, WalFullPolicy::DropOldest);
        assert_eq!(kafka.wal.fsync, WalFsync::EveryBatch);
        assert_eq!(kafka.librdkafka["security.protocol"], "sasl_ssl");
        assert_eq!(config.wal_dir(), Path::new("data/wal"));
        assert!(config.kafka_route().is_some());

        for (text, expected) in [
            (
                "[sink.kafka]\ntopic = \"logs.{app}\"\n",
                "config file test.toml: sink.kafka.topic: \"logs.{app}\" is not a Kafka topic \
                 name: 1 to 249 of A-Z a-z 0-9 . _ - (templates go in topic_template)",
            ),
            (
                "[sink.kafka]\ntopic_template = \"logs.{hostname}\"\n",
                "config file test.toml: sink.kafka.topic_template: template \"logs.{hostname}\": \
                 unknown field {hostname}; the fields are {host}, {app}, {procid}, {msgid}, \
                 {facility}, {severity}, {source}, {topic}",
            ),
            (
                "[sink.kafka]\nacks = \"2\"\n",
                "config file test.toml: sink.kafka.acks: \"2\": allowed \"all\", \"1\" or \"0\"",
            ),
            (
                "[sink.kafka.wal]\nmax_total_bytes = 4096\nmax_segment_bytes = 8192\n",
                "config file test.toml: sink.kafka.wal.max_total_bytes: 4096 is below \
                 wal.max_segment_bytes (8192)",
            ),
        ] {
            assert_eq!(load(text).unwrap_err(), expected);
        }
        let err = load("[sink.kafka.wal]\nfull_policy = \"drop\"\n").unwrap_err();
        assert!(
            err.contains("`drop_oldest`") && err.contains("`block`"),
            "{err}"
        );
    }
}
