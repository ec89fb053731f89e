//! The agent's configuration: its TOML file (the commented `config/agent.toml` is the manual)
//! and the collect entries, which come from that file, from an etcd key as JSON, or both.
//!
//! Every field's doc comment is its reference documentation (unit and default). Unknown keys are
//! errors in TOML and in JSON alike, and every error names its origin (the file, or the etcd key
//! and revision), the key at fault and what is allowed, e.g.
//! `etcd key /logtail/agents/web1/config (revision 7): collect[1].start_at: unknown variant
//! "middle", expected "end" or "beginning"`.
//!
//! The collect entries are what can change while the agent runs ([`super::live`] applies them);
//! everything else is read once at start.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::exposition::AgentMetricsConfig;
use super::ship::kafka::KafkaShipConfig;
use crate::agent::ship::tls::ShipTlsConfig;
use crate::setting::{InvalidSetting, Refusal, TomlError};

/// Where a configuration came from, as error messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The TOML file given with `--config`.
    File(PathBuf),
    /// An etcd key, at a revision.
    Etcd { key: String, revision: i64 },
    /// Options of the command line (`--etcd`, `--host`, `--etcd-key`).
    CommandLine,
    /// Built in code (defaults, tests).
    Defaults,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::File(path) => write!(f, "config file {}", path.display()),
            ConfigOrigin::Etcd { key, revision } => {
                write!(f, "etcd key {key} (revision {revision})")
            }
            ConfigOrigin::CommandLine => f.write_str("command line"),
            ConfigOrigin::Defaults => f.write_str("(defaults)"),
        }
    }
}

/// A configuration error, naming its origin and the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML or JSON, or not the schema (unknown key, wrong type, bad enum value).
    #[error("{origin}: {message}")]
    Syntax {
        origin: ConfigOrigin,
        message: String,
    },
    /// Well-formed, but a value is not allowed.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: ConfigOrigin,
        key: String,
        message: String,
    },
}

/// The whole agent configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Directory of the agent's state: the checkpoint file `checkpoints`, its lock `LOCK`, and
    /// `etcd-config.json`, the last good configuration read from etcd. Default: `agent-data`.
    pub data_dir: PathBuf,
    /// This host's name: the `<hostname>` of the etcd key and the HOSTNAME of shipped syslog
    /// messages. Default: the machine's host name (`gethostname`).
    pub host: Option<String>,
    /// How files are read.
    pub tail: TailConfig,
    /// Where lines go.
    pub ship: ShipConfig,
    /// Collect entries from etcd.
    pub etcd: EtcdConfig,
    /// The agent's Prometheus endpoint ([`AgentMetricsConfig`]).
    pub metrics: AgentMetricsConfig,
    /// The collect entries of this file. Default: none.
    pub collect: Vec<CollectEntry>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: PathBuf::from("agent-data"),
            host: None,
            tail: TailConfig::default(),
            ship: ShipConfig::default(),
            etcd: EtcdConfig::default(),
            metrics: AgentMetricsConfig::default(),
            collect: Vec::new(),
        }
    }
}

/// `[tail]`: how files are found and read, for every collect entry.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// How often every entry's globs are expanded again to find new and rotated files, in
    /// milliseconds. Default: 1000.
    pub scan_interval_ms: u64,
    /// The longest wait between two reads of a file that had nothing new, in milliseconds. A
    /// file that had data is read again at once; an idle one after 10 ms, doubling up to this,
    /// or as soon as inotify sees it change ([`super::wake`]). Default: 250.
    pub max_poll_interval_ms: u64,
    /// A file is identified by its first this many bytes (and its device and inode); see
    /// [`super::fingerprint`]. Default: 1024.
    pub fingerprint_bytes: usize,
    /// A file that no glob reaches any more (renamed away by rotation, or deleted) is read to
    /// its end, then kept open this long after it last grew, for a writer that has not reopened
    /// yet, before it is released. In milliseconds. Default: 5000.
    pub rotate_wait_ms: u64,
    /// A batch is cut at this many lines... Default: 4096.
    pub batch_max_lines: usize,
    /// ...or this many bytes of lines (it may exceed it by one read); a batch is also cut as
    /// soon as every file was read to its end. Default: 1048576 (1 MiB).
    pub batch_max_bytes: usize,
    /// Reading stops while this many batches are sent and not yet acknowledged: the files are
    /// the buffer, so memory stays bounded (about `batch_max_bytes` times this) whatever the
    /// destination does. Default: 8.
    pub max_unacked_batches: usize,
    /// Bytes read from a file by one read call. Default: 262144 (256 KiB).
    pub read_buffer_bytes: usize,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            scan_interval_ms: 1000,
            max_poll_interval_ms: 250,
            fingerprint_bytes: 1024,
            rotate_wait_ms: 5000,
            batch_max_lines: 4096,
            batch_max_bytes: 1 << 20,
            max_unacked_batches: 8,
            read_buffer_bytes: 256 << 10,
        }
    }
}

impl TailConfig {
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms)
    }
    pub fn max_poll_interval(&self) -> Duration {
        Duration::from_millis(self.max_poll_interval_ms)
    }
    pub fn rotate_wait(&self) -> Duration {
        Duration::from_millis(self.rotate_wait_ms)
    }
}

/// `type` of `[ship]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShipKind {
    /// To the gateway's agent listener, acknowledged once durable there.
    #[default]
    Gateway,
    /// To the gateway's TCP syslog listener, RFC 5424 messages with RFC 6587 octet counting.
    SyslogTcp,
    /// Straight to Kafka, acknowledged by Kafka's delivery reports.
    Kafka,
    /// Appended to a file (or standard output): for tests and debugging.
    File,
}

impl ShipKind {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipKind::Gateway => "gateway",
            ShipKind::SyslogTcp => "syslog-tcp",
            ShipKind::Kafka => "kafka",
            ShipKind::File => "file",
        }
    }
}

/// `format` of a `file` shipper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// The line as read, then LF.
    #[default]
    Raw,
    /// One JSON object per line: entry, file, offset, topic, app, tags, line.
    Json,
}

/// `[ship]`: where lines go.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipConfig {
    /// `gateway`, `syslog-tcp`, `kafka` or `file`. Default: `gateway`.
    #[serde(rename = "type")]
    pub kind: ShipKind,
    /// `gateway`: the gateway's agent listener; `syslog-tcp`: its TCP syslog listener.
    /// `HOST:PORT`. Default: `127.0.0.1:5515` (the gateway's default agent listener).
    pub address: String,
    /// `file`: the file to append to; `-` is standard output. Default: `-`.
    pub path: PathBuf,
    /// `file`: `raw` or `json`. Default: `raw`.
    pub format: FileFormat,
    /// `gateway`, `syslog-tcp`: the first wait before reconnecting, in milliseconds; it doubles
    /// (with jitter) up to `reconnect_max_ms`. Default: 100.
    pub reconnect_min_ms: u64,
    /// `gateway`, `syslog-tcp`: the longest wait between reconnection attempts, in ms. Default: 5000.
    pub reconnect_max_ms: u64,
    /// At shutdown, how long to wait for batches in flight to be acknowledged before the last
    /// checkpoint is written (what is not acknowledged by then is read again at the next
    /// start), in milliseconds. Default: 5000.
    pub shutdown_timeout_ms: u64,
    /// `kafka`: the producer's settings.
    pub kafka: KafkaShipConfig,
    /// `gateway`: `[ship.tls]`, TLS to the gateway's agent listener, with this agent's
    /// certificate ([`ShipTlsConfig`]). Default: none, plaintext.
    pub tls: Option<ShipTlsConfig>,
    /// `gateway`: a file holding this host's token (the gateway's `tokens_file` binds it to
    /// this host), for gateways that authenticate agents by token. Default: none.
    pub token_file: Option<PathBuf>,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            kind: ShipKind::Gateway,
            address: "127.0.0.1:5515".into(),
            path: PathBuf::from("-"),
            format: FileFormat::Raw,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5000,
            shutdown_timeout_ms: 5000,
            kafka: KafkaShipConfig::default(),
            tls: None,
            token_file: None,
        }
    }
}

/// `[etcd]`: where the collect entries of this host live in etcd.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// etcd endpoints, e.g. `["http://10.0.0.1:2379", "http://10.0.0.2:2379"]`; `--etcd`
    /// overrides. Default: none, etcd is not used.
    pub endpoints: Vec<String>,
    /// The key holding this host's collect entries. Default: `/logtail/agents/<host>/config`.
    pub key: Option<String>,
    /// How long to wait for a connection, in milliseconds. Default: 5000.
    pub connect_timeout_ms: u64,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: Vec::new(),
            key: None,
            connect_timeout_ms: 5000,
        }
    }
}

/// `start_at` of a collect entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// After the last complete line: only what is written from now on.
    #[default]
    End,
    /// The whole file.
    Beginning,
}

/// `multiline` of a collect entry: lines are joined into events.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this regular expression (Rust `regex` syntax) starts a new event; any
    /// other line is appended to the current one, after an LF. E.g. `^\d{4}-\d\d-\d\d ` for
    /// lines that start with a date, so that stack traces stay with their message. Required.
    pub start_pattern: StartPattern,
    /// An event is shipped when the next one starts, or when no line came for this long, in
    /// milliseconds. Default: 1000.
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
}

fn default_flush_timeout_ms() -> u64 {
    1000
}

/// A path glob (`*`, `?`, `[...]`, `**`), compiled when the config is read, kept with the text
/// it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    pattern: glob::Pattern,
}

impl Glob {
    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `path` matches the whole glob.
    pub fn matches_path(&self, path: &Path) -> bool {
        self.pattern.matches_path(path)
    }
}

impl TryFrom<String> for Glob {
    type Error = Refusal;

    fn try_from(text: String) -> Result<Glob, Refusal> {
        if text.is_empty() {
            return Err(Refusal("empty".into()));
        }
        match glob::Pattern::new(&text) {
            Ok(pattern) => Ok(Glob { text, pattern }),
            Err(e) => Err(Refusal(format!("{text:?} is not a glob: {e}"))),
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for StartPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

crate::setting::serialize_as_text!(Glob, StartPattern);

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Glob::try_from(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The regular expression that starts a multiline event, compiled when the config is read.
#[derive(Debug, Clone)]
pub struct StartPattern(pub regex::bytes::Regex);

impl PartialEq for StartPattern {
    /// The same text: how a changed entry is told from an unchanged one.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for StartPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        regex::bytes::Regex::new(&text)
            .map(StartPattern)
            .map_err(|e| {
                serde::de::Error::custom(Refusal(format!("not a regular expression: {e}")))
            })
    }
}

/// One collect entry: a set of files and what to attach to their lines. In TOML a
/// `[[collect]]` table; in etcd an element of the `collect` array.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CollectEntry {
    /// Unique name: how a changed configuration tells added, removed and changed entries
    /// apart. 1 to 64 of `A-Z a-z 0-9 . _ -`. Required.
    pub name: String,
    /// Paths and globs (`*`, `?`, `[...]`, `**`), e.g. `/var/log/nginx/*.log`. Relative ones
    /// are relative to the agent's working directory. Files that start matching while the
    /// entry runs are picked up at the next scan. Required, at least one.
    pub paths: Vec<Glob>,
    /// Globs of files not to collect even when `paths` matches them, e.g. `*.gz`. Default: none.
    #[serde(default)]
    pub exclude: Vec<Glob>,
    /// Where to start in a file that has no checkpoint and was already there when the entry
    /// started: `end` or `beginning`. Files that appear later are read from their beginning.
    /// Default: `end`.
    #[serde(default)]
    pub start_at: StartAt,
    /// Topic attached to every line (for the gateway's routing). Default: none.
    #[serde(default)]
    pub topic: Option<String>,
    /// Application name attached to every line (the syslog APP-NAME). Default: the entry's name.
    #[serde(default)]
    pub app: Option<String>,
    /// Tags attached to every line. Default: none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Longest line (or multiline event) shipped, in bytes; longer ones are cut to this length
    /// and counted. 64 to 16777216. Default: 65536.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Join lines into events by a start pattern. Default: off, every line is an event.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
}

fn default_max_line_bytes() -> usize {
    64 << 10
}

/// The etcd value: `{"collect": [ ... ]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdValue {
    collect: Vec<CollectEntry>,
}

/// Largest accepted `max_line_bytes`.
pub const MAX_LINE_BYTES_LIMIT: usize = 16 << 20;

impl AgentConfig {
    /// Reads and validates `path`, or returns the defaults when `path` is `None`.
    ///
    /// # Errors
    /// An [`AgentConfigError`] naming the file, the line or key at fault, and what is allowed.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig, AgentConfigError> {
        let Some(path) = path else {
            let config = AgentConfig::default();
            config.validate(&ConfigOrigin::Defaults)?;
            return Ok(config);
        };
        let text = std::fs::read_to_string(path).map_err(|source| AgentConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AgentConfig::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<AgentConfig, AgentConfigError> {
        let origin = ConfigOrigin::File(path.to_path_buf());
        let config: AgentConfig = crate::setting::from_toml(text).map_err(|e| match e {
            TomlError::Syntax(message) => AgentConfigError::Syntax {
                origin: origin.clone(),
                message,
            },
            TomlError::Invalid(e) => AgentConfigError::Invalid {
                origin: origin.clone(),
                key: e.key,
                message: e.message,
            },
        })?;
        config.validate(&origin)?;
        Ok(config)
    }

    /// Checks what the schema alone cannot.
    ///
    /// # Errors
    /// The first of [`AgentConfig::problems`], naming `origin`.
    pub fn validate(&self, origin: &ConfigOrigin) -> Result<(), AgentConfigError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(AgentConfigError::Invalid {
                origin: origin.clone(),
                key: e.key,
                message: e.message,
            }),
            None => Ok(()),
        }
    }

    /// Every value the schema alone cannot refuse, in file order: each key is checked on its
    /// own, so one mistake does not hide the next (`logtail validate --agent` reports them all).
    pub fn problems(&self) -> Vec<InvalidSetting> {
        let mut problems = Vec::new();
        let mut invalid = |key: &str, message: String| {
            problems.push(InvalidSetting::new(key, message));
        };
        if let Some(host) = &self.host
            && !is_syslog_name(host, 255)
        {
            invalid(
                "host",
                format!("{host:?}: 1 to 255 printable ASCII characters, no spaces"),
            );
        }
        let t = &self.tail;
        for (key, value) in [
            ("tail.scan_interval_ms", t.scan_interval_ms as usize),
            ("tail.max_poll_interval_ms", t.max_poll_interval_ms as usize),
            ("tail.batch_max_lines", t.batch_max_lines),
            ("tail.batch_max_bytes", t.batch_max_bytes),
            ("tail.max_unacked_batches", t.max_unacked_batches),
        ] {
            if value == 0 {
                invalid(key, "must be at least 1".into());
            }
        }
        if !(16..=1 << 20).contains(&t.fingerprint_bytes) {
            invalid(
                "tail.fingerprint_bytes",
                format!(
                    "{} is out of range: allowed 16 to 1048576",
                    t.fingerprint_bytes
                ),
            );
        }
        if !(4096..=64 << 20).contains(&t.read_buffer_bytes) {
            invalid(
                "tail.read_buffer_bytes",
                format!(
                    "{} is out of range: allowed 4096 to 67108864",
                    t.read_buffer_bytes
                ),
            );
        }
        if t.batch_max_bytes > 256 << 20 {
            invalid("tail.batch_max_bytes", "at most 268435456 (256 MiB)".into());
        }
        let ship = &self.ship;
        if matches!(ship.kind, ShipKind::Gateway | ShipKind::SyslogTcp)
            && let Err(message) = crate::setting::check_host_port(&ship.address)
        {
            invalid(
                "ship.address",
                format!(
                    "{message} (required for type = {:?}), e.g. address = \"127.0.0.1:5515\"",
                    ship.kind.as_str()
                ),
            );
        }
        if ship.kind == ShipKind::Gateway {
            if let Some(tls) = &ship.tls
                && let Err(e) = tls.load(&ship.address)
            {
                invalid(&format!("ship.tls.{}", e.key), e.message);
            }
            if let Some(path) = &ship.token_file
                && let Err(message) = crate::agent::ship::gateway::read_token(path)
            {
                invalid("ship.token_file", message);
            }
        } else if ship.tls.is_some() || ship.token_file.is_some() {
            let key = if ship.tls.is_some() {
                "ship.tls"
            } else {
                "ship.token_file"
            };
            invalid(
                key,
                format!(
                    "only used by type = \"gateway\", not {:?}",
                    ship.kind.as_str()
                ),
            );
        }
        if ship.kind == ShipKind::Kafka
            && let Err(e) = ship.kafka.check()
        {
            let e = e.within("ship.kafka");
            invalid(&e.key, e.message);
        }
        if ship.reconnect_min_ms == 0 || ship.reconnect_max_ms < ship.reconnect_min_ms {
            invalid(
                "ship.reconnect_max_ms",
                format!(
                    "reconnect_min_ms ({}) must be at least 1 and at most reconnect_max_ms ({})",
                    ship.reconnect_min_ms, ship.reconnect_max_ms
                ),
            );
        }
        for (i, endpoint) in self.etcd.endpoints.iter().enumerate() {
            if let Err(message) = check_etcd_endpoint(endpoint) {
                invalid(&format!("etcd.endpoints[{i}]"), message);
            }
        }
        if let Some(key) = &self.etcd.key
            && !key.starts_with('/')
        {
            invalid(
                "etcd.key",
                format!("{key:?} must start with /, e.g. \"/logtail/agents/web1/config\""),
            );
        }
        problems.extend(entry_problems(&self.collect));
        problems
    }

    /// The host name in force: `host`, else the machine's.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(machine_host_name)
    }

    /// The etcd key of this host's collect entries.
    pub fn etcd_key(&self) -> String {
        self.etcd
            .key
            .clone()
            .unwrap_or_else(|| format!("/logtail/agents/{}/config", self.host_name()))
    }
}

/// Parses and validates the JSON value of an etcd key: `{"collect": [ENTRY, ...]}`, each ENTRY
/// with the keys of a `[[collect]]` table.
///
/// # Errors
/// An [`AgentConfigError`] naming `origin`, the path of the key at fault (`collect[2].paths`)
/// and what is allowed.
pub fn entries_from_json(
    text: &str,
    origin: &ConfigOrigin,
) -> Result<Vec<CollectEntry>, AgentConfigError> {
    const SHAPE: &str = "expected {\"collect\": [{\"name\": ..., \"paths\": [...]}, ...]}";
    if !text.trim_start().starts_with('{') {
        return Err(AgentConfigError::Syntax {
            origin: origin.clone(),
            message: format!("not a JSON object; {SHAPE}"),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value: EtcdValue = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = crate::setting::unmarked(&e.into_inner().to_string()).to_owned();
        if path.is_empty() || path == "." {
            AgentConfigError::Syntax {
                origin: origin.clone(),
                message: format!("{message}; {SHAPE}"),
            }
        } else {
            AgentConfigError::Invalid {
                origin: origin.clone(),
                key: path,
                message,
            }
        }
    })?;
    validate_entries(&value.collect, origin)?;
    Ok(value.collect)
}

/// Checks collect entries: names unique and well-formed, globs and patterns compile, values in
/// range.
///
/// # Errors
/// The first of [`entry_problems`], naming `origin`.
pub fn validate_entries(
    entries: &[CollectEntry],
    origin: &ConfigOrigin,
) -> Result<(), AgentConfigError> {
    match entry_problems(entries).into_iter().next() {
        Some(e) => Err(AgentConfigError::Invalid {
            origin: origin.clone(),
            key: e.key,
            message: e.message,
        }),
        None => Ok(()),
    }
}

/// Every problem of the collect entries, each key checked on its own, keyed `collect[I].KEY`.
pub fn entry_problems(entries: &[CollectEntry]) -> Vec<InvalidSetting> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let mut invalid = |field: &str, message: String| {
            problems.push(InvalidSetting::new(
                format!("collect[{i}].{field}"),
                message,
            ));
        };
        let name_ok = (1..=64).contains(&entry.name.len())
            && entry
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            invalid(
                "name",
                format!("{:?}: 1 to 64 of A-Z a-z 0-9 . _ -", entry.name),
            );
        }
        if !names.insert(entry.name.as_str()) {
            invalid("name", format!("{:?} is used by two entries", entry.name));
        }
        if entry.paths.is_empty() {
            invalid(
                "paths",
                "empty: give at least one path or glob, e.g. [\"/var/log/app/*.log\"]".into(),
            );
        }
        if let Some(topic) = &entry.topic {
            let ok = (1..=249).contains(&topic.len())
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                invalid(
                    "topic",
                    format!("{topic:?} is not a Kafka topic name: 1 to 249 of A-Z a-z 0-9 . _ -"),
                );
            }
        }
        if let Some(app) = &entry.app
            && !is_syslog_name(app, 48)
        {
            invalid(
                "app",
                format!(
                    "{app:?}: 1 to 48 printable ASCII characters, no spaces (RFC 5424 APP-NAME)"
                ),
            );
        }
        for (j, tag) in entry.tags.iter().enumerate() {
            if tag.is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
                invalid(
                    &format!("tags[{j}]"),
                    format!("{tag:?}: a tag is non-empty, without commas or control characters"),
                );
            }
        }
        if !(64..=MAX_LINE_BYTES_LIMIT).contains(&entry.max_line_bytes) {
            invalid(
                "max_line_bytes",
                format!(
                    "{} is out of range: allowed 64 to {MAX_LINE_BYTES_LIMIT}",
                    entry.max_line_bytes
                ),
            );
        }
        if let Some(multiline) = &entry.multiline
            && multiline.flush_timeout_ms == 0
        {
            invalid("multiline.flush_timeout_ms", "must be at least 1".into());
        }
    }
    problems
}

/// An etcd endpoint: `http://HOST:PORT` or `https://HOST:PORT`.
fn check_etcd_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    match rest.map(|r| r.trim_end_matches('/')) {
        Some(host_port) if crate::setting::check_host_port(host_port).is_ok() => Ok(()),
        _ => Err(format!(
            "{endpoint:?} is not a URL like \"http://127.0.0.1:2379\""
        )),
    }
}

/// RFC 5424 names (HOSTNAME, APP-NAME): printable US-ASCII, no spaces.
fn is_syslog_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b))
}

use crate::runtime::machine_host_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AgentConfig, String> {
        AgentConfig::from_toml(text, Path::new("agent.toml")).map_err(|e| e.to_string())
    }

    fn etcd(text: &str) -> Result<Vec<CollectEntry>, String> {
        let origin = ConfigOrigin::Etcd {
            key: "/logtail/agents/h/config".into(),
            revision: 7,
        };
        entries_from_json(text, &origin).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_example_config_is_valid_and_matches_the_defaults_plus_its_entries() {
        let config = load(include_str!("../../config/agent.toml")).unwrap();
        let defaults = AgentConfig {
            collect: config.collect.clone(),
            ..AgentConfig::default()
        };
        assert_eq!(config, defaults);
        assert_eq!(config.collect.len(), 2);
    }

    #[test]
    fn entry_defaults_and_etcd_key() {
        let config =
            load("host = \"web1\"\n[[collect]]\nname = \"app\"\npaths = [\"/var/log/app.log\"]\n")
                .unwrap();
        let entry = &config.collect[0];
        assert_eq!(entry.start_at, StartAt::End);
        assert_eq!(entry.max_line_bytes, 65536);
        assert_eq!(entry.multiline, None);
        assert_eq!(config.etcd_key(), "/logtail/agents/web1/config");
    }

    #[test]
    fn toml_errors_name_the_file_line_and_key() {
        let err =
            load("[[collect]]\nname = \"a\"\npaths = [\"x\"]\nstart = \"end\"\n").unwrap_err();
        assert!(err.starts_with("config file agent.toml: "), "{err}");
        assert!(err.contains("line 4") && err.contains("start"), "{err}");
        let err = load("[[collect]]\nname = \"a\"\npaths = []\n").unwrap_err();
        assert_eq!(
            err,
            "config file agent.toml: collect[0].paths: empty: give at least one path or glob, \
             e.g. [\"/var/log/app/*.log\"]"
        );
    }

    #[test]
    fn etcd_json_is_read_and_checked() {
        let entries = etcd(
            r#"{"collect": [{"name": "nginx", "paths": ["/var/log/nginx/*.log"], "topic": "web",
                "tags": ["edge"], "start_at": "beginning",
                "multiline": {"start_pattern": "^\\d{4}-"}}]}"#,
        )
        .unwrap();
        assert_eq!(entries[0].start_at, StartAt::Beginning);
        assert_eq!(
            entries[0].multiline.as_ref().unwrap().flush_timeout_ms,
            1000
        );

        let err = etcd(r#"{"collect": [{"name": "a", "paths": ["x"], "pathz": []}]}"#).unwrap_err();
        assert!(
            err.starts_with("etcd key /logtail/agents/h/config (revision 7): collect[0].pathz: unknown field `pathz`, expected one of `name`, `paths`"),
            "{err}"
        );
        let err = etcd(r#"{"collect": [{"name": "a", "paths": ["x"], "start_at": "middle"}]}"#)
            .unwrap_err();
        assert!(
            err.contains("collect[0].start_at: unknown variant `middle`"),
            "{err}"
        );
        let err = etcd("{\"collect\": [").unwrap_err();
        assert!(
            err.starts_with(
                "etcd key /logtail/agents/h/config (revision 7): collect: EOF while parsing"
            ),
            "{err}"
        );
        let err = etcd(r#"[{"name": "a"}]"#).unwrap_err();
        assert!(err.contains("expected {\"collect\""), "{err}");
        let err =
            etcd(r#"{"collect": [{"name": "a", "paths": ["x"]}, {"name": "a", "paths": ["y"]}]}"#)
                .unwrap_err();
        assert_eq!(
            err,
            "etcd key /logtail/agents/h/config (revision 7): collect[1].name: \"a\" is used by two entries"
        );
        let err = etcd(
            r#"{"collect": [{"name": "a", "paths": ["x"], "multiline": {"start_pattern": "("}}]}"#,
        )
        .unwrap_err();
        assert!(
            err.contains("collect[0].multiline.start_pattern: not a regular expression"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_rejected_with_their_key() {
        for (text, key) in [
            (
                "[[collect]]\nname = \"a b\"\npaths = [\"x\"]\n",
                "collect[0].name",
            ),
            (
                "[[collect]]\nname = \"a\"\npaths = [\"[\"]\n",
                "collect[0].paths[0]",
            ),
            (
                "[[collect]]\nname = \"a\"\npaths = [\"x\"]\ntopic = \"a/b\"\n",
                "collect[0].topic",
            ),
            (
                "[[collect]]\nname = \"a\"\npaths = [\"x\"]\nmax_line_bytes = 1\n",
                "collect[0].max_line_bytes",
            ),
            (
                "[[collect]]\nname = \"a\"\npaths = [\"x\"]\ntags = [\"a,b\"]\n",
                "collect[0].tags[0]",
            ),
            ("[tail]\nfingerprint_bytes = 1\n", "tail.fingerprint_bytes"),
            (
                "[tail]\nmax_unacked_batches = 0\n",
                "tail.max_unacked_batches",
            ),
            (
                "[etcd]\nendpoints = [\"127.0.0.1:2379\"]\n",
                "etcd.endpoints[0]",
            ),
            ("[etcd]\nkey = \"x\"\n", "etcd.key"),
            ("host = \"a b\"\n", "host"),
            ("[ship]\naddress = \"\"\n", "ship.address"),
            (
                "[ship]\ntype = \"kafka\"\n[ship.kafka]\ntopic_template = \"logs.{hostname}\"\n",
                "ship.kafka.topic_template",
            ),
            (
                "[ship]\ntype = \"kafka\"\n[ship.kafka]\ntopic = \"a/b\"\n",
                "ship.kafka.topic",
            ),
            (
                "[ship]\ntype = \"kafka\"\n[ship.kafka]\nacks = \"2\"\n",
                "ship.kafka.acks",
            ),
        ] {
            let err = load(text).unwrap_err();
            assert!(
                err.starts_with(&format!("config file agent.toml: {key}: ")),
                "{text}: {err}"
            );
        }
    }
}
