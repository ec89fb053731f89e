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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::encode::Encoding;
use crate::http::console::ConsoleConfig;
use crate::http::{ApiConfig, MetricsConfig};
use crate::kafka::route::Route;
use crate::parse::LegacyZone;
use crate::pipeline::PipelineConfig;
use crate::search::config::SearchConfig;
use crate::setting::{InvalidSetting, TomlError};
pub use crate::sink::{SinkConfig, SinkKind};
pub use crate::source::config::{ListenerConfig, ListenerKind};
use crate::source::framing::OversizePolicy;
use crate::source::limits::{MemoryBudget, SourceLimits};
use crate::source::{Format, ListenerDefaults};

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
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// The HTTP server: its address, the search API and its token.
    pub api: ApiConfig,
    /// The web console at `/` of the metrics endpoint.
    pub console: ConsoleConfig,
    /// What the search API, the console and `logtail search` search: the local store or
    /// Elasticsearch.
    pub search: SearchConfig,
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
            api: ApiConfig::default(),
            console: ConsoleConfig::default(),
            search: SearchConfig::default(),
        }
    }
}

/// `[ingest]`: settings shared by all listeners.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    pub legacy_timezone: LegacyZone,
    /// `[ingest.limits]`: what hostile clients can make the sources hold.
    pub limits: SourceLimits,
}

impl IngestConfig {
    /// What every listener takes from this section unless it sets its own.
    pub fn listener_defaults(&self, budget: &Arc<MemoryBudget>) -> ListenerDefaults {
        ListenerDefaults {
            format: self.format,
            max_message_bytes: self.max_message_bytes,
            oversize: self.oversize,
            limits: self.limits,
            budget: budget.clone(),
        }
    }

    /// # Errors
    /// `max_message_bytes` out of range, relative to `[ingest]`.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        InvalidSetting::check_range(
            "max_message_bytes",
            self.max_message_bytes,
            64,
            16 << 20,
            "bytes",
        )?;
        self.limits.check().map_err(|e| e.within("limits"))
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            shards: 0,
            max_message_bytes: 64 * 1024,
            oversize: OversizePolicy::Truncate,
            format: Format::Auto,
            legacy_timezone: LegacyZone::Local,
            limits: SourceLimits::default(),
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
        let config: Config = crate::setting::from_toml(text).map_err(|e| match e {
            TomlError::Syntax(message) => ConfigError::Syntax {
                path: path.to_path_buf(),
                message,
            },
            TomlError::Invalid(e) => ConfigError::Invalid {
                path: path.to_path_buf(),
                key: e.key,
                message: e.message,
            },
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what the schema alone cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.check().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: e.key,
            message: e.message,
        })
    }

    /// Each section's own check, under its path, then what spans sections: the first problem.
    fn check(&self) -> Result<(), InvalidSetting> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem the sections' checks find, in file order: each section (each listener) is
    /// checked on its own, so one bad section does not hide the next (`logtail validate`
    /// reports them all). Each section still reports its first problem only.
    pub fn problems(&self) -> Vec<InvalidSetting> {
        let mut problems = self.source_problems();
        let sections = [
            self.pipeline.check().map_err(|e| e.within("pipeline")),
            self.console.check().map_err(|e| e.within("console")),
            self.sink.store.check().map_err(|e| e.within("sink.store")),
            self.sink.kafka.check().map_err(|e| e.within("sink.kafka")),
            self.sink
                .kafka
                .wal
                .check()
                .map_err(|e| e.within("sink.kafka.wal")),
            self.sink
                .elasticsearch
                .check()
                .map_err(|e| e.within("sink.elasticsearch")),
            self.search.check().map_err(|e| e.within("search")),
        ];
        problems.extend(sections.into_iter().filter_map(Result::err));
        // Documents are the records' JSON.
        if self.sink.kind == SinkKind::Elasticsearch && self.sink.encoding != Encoding::Json {
            problems.push(InvalidSetting::new(
                "sink.encoding",
                "the elasticsearch sink sends JSON documents: set encoding = \"json\"",
            ));
        }
        // A pipeline batch is one WAL payload when the Kafka or Elasticsearch sink spills it.
        if matches!(self.sink.kind, SinkKind::Kafka | SinkKind::Elasticsearch)
            && self.pipeline.batch_max_bytes > crate::wal::MAX_PAYLOAD_BYTES / 2
        {
            problems.push(InvalidSetting::new(
                "sink.kafka.(pipeline.batch_max_bytes)",
                format!(
                    "pipeline.batch_max_bytes = {} is too large for the Kafka sink's WAL: at most {}",
                    self.pipeline.batch_max_bytes,
                    crate::wal::MAX_PAYLOAD_BYTES / 2
                ),
            ));
        }
        problems.extend(self.check_store_quotas().err());
        problems.extend(self.http_server().err());
        problems
    }

    /// Where the one HTTP server listens and what it serves (`[api]` and `[metrics]`); `None`
    /// when it serves nothing.
    ///
    /// # Errors
    /// See [`crate::http::check`].
    pub fn http_server(&self) -> Result<Option<crate::http::ServerPlan>, InvalidSetting> {
        crate::http::check(&self.api, &self.metrics)
    }

    /// A listener's `store_quota_bytes` is a share of the local store: only with the store
    /// sink, and below its `max_total_bytes` (a quota the size retention reaches first
    /// protects nobody).
    fn check_store_quotas(&self) -> Result<(), InvalidSetting> {
        for (i, listener) in self.listen.iter().enumerate() {
            let Some(quota) = listener.store_quota_bytes else {
                continue;
            };
            let section = format!("listen[{i}]");
            if self.sink.kind != SinkKind::Store {
                return Err(InvalidSetting::new(
                    "store_quota_bytes",
                    format!(
                        "is a share of the local store, and [sink] type = \"{}\"",
                        self.sink.kind.as_str()
                    ),
                )
                .within(&section));
            }
            let total = self.sink.store.max_total_bytes;
            if quota >= total {
                return Err(InvalidSetting::new(
                    "store_quota_bytes",
                    format!(
                        "{quota} is not below [sink.store] max_total_bytes = {total}: size \
                         retention would act first"
                    ),
                )
                .within(&section));
            }
        }
        Ok(())
    }

    /// Checks `[ingest]` and every `[[listen]]` table, and that listener names are unique.
    fn source_problems(&self) -> Vec<InvalidSetting> {
        let mut problems = Vec::new();
        if let Err(e) = self.ingest.check() {
            problems.push(e.within("ingest"));
        }
        if self.listen.is_empty() {
            problems.push(InvalidSetting::new(
                "listen",
                "no listener: give at least one [[listen]] table",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, listener) in self.listen.iter().enumerate() {
            let section = format!("listen[{i}]");
            if let Err(e) = listener.check() {
                problems.push(e.within(&section));
            }
            if let Some(name) = &listener.name
                && !names.insert(name.as_str())
            {
                problems.push(
                    InvalidSetting::new("name", format!("{name:?} is used by two listeners"))
                        .within(&section),
                );
            }
        }
        problems
    }

    /// The number of shard threads to run.
    pub fn shard_count(&self) -> usize {
        if self.ingest.shards > 0 {
            self.ingest.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The local store's directory.
    pub fn store_dir(&self) -> PathBuf {
        self.sink.store.dir_under(&self.data_dir)
    }

    /// The key and topic templates of the Kafka sink, when the sink is Kafka and one is set
    /// (compiled when the file was read).
    pub fn kafka_route(&self) -> Option<Route> {
        if self.sink.kind != SinkKind::Kafka {
            return None;
        }
        self.sink.kafka.route()
    }

    /// The Kafka sink's WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.sink.kafka.wal.dir_under(&self.data_dir)
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
        assert_eq!(config.listen[0].address, "0.0.0.0:5514".parse().ok());
        assert_eq!(config.listen[4].address, "0.0.0.0:5515".parse().ok());
        assert_eq!(
            config.listen[2].path.as_deref(),
            Some(Path::new("run/log.sock"))
        );
        assert_eq!(config.store_dir(), Path::new("data/store"));
        assert_eq!(config.sink.kind, SinkKind::Store);
        assert_eq!(config.ingest.max_message_bytes, 65536);
        assert_eq!(config.api.address.to_string(), "127.0.0.1:9100");
        assert_eq!(
            config
                .http_server()
                .unwrap()
                .map(|plan| plan.address.to_string()),
            Some("127.0.0.1:9100".to_string())
        );
    }

    #[test]
    fn hostile_client_limits_are_typed_and_checked_with_their_keys() {
        let config = load(
            "[ingest.limits]\nmemory_budget_bytes = 8388608\nframe_timeout_secs = 2\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:601\"\nmax_connections = 60\n\
             max_connections_per_ip = 40\n",
        )
        .unwrap();
        assert_eq!(config.ingest.limits.memory_budget(), 8 << 20);
        assert_eq!(
            config.ingest.limits.frame_timeout,
            std::time::Duration::from_secs(2)
        );
        let admission = config.listen[0].admission();
        assert_eq!(
            (admission.max_per_ip, admission.reserved),
            (40, 6),
            "a tenth of max_connections is reserved by default"
        );
        let err = load("[ingest.limits]\nmax_expansion_ratio = 300\n").unwrap_err();
        assert!(
            err.contains(
                "ingest.limits.max_expansion_ratio: 300 is out of range: allowed 1 to 255"
            ),
            "{err}"
        );
        let err = load(
            "[[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:601\"\nmax_connections = 5\n\
             reserved_connections = 5\n",
        )
        .unwrap_err();
        assert!(
            err.contains("reserved_connections: 5 leaves no slot"),
            "{err}"
        );
        let err = load("[ingest.limits]\nhello_timeout_secs = \"5s\"\n").unwrap_err();
        assert!(err.contains("hello_timeout_secs"), "{err}");
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
        assert_eq!(
            config.listen[0].framing,
            crate::source::framing::Framing::OctetCounting
        );
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
    fn store_quotas_and_per_ip_rates_are_checked_against_the_sink_and_the_socket() {
        let listen = "[[listen]]\ntype = \"tcp\"\naddress = \"0.0.0.0:1\"\n";
        let config = load(&format!(
            "{listen}store_quota_bytes = 1000\nmax_lines_per_sec_per_ip = 10\n"
        ))
        .unwrap();
        assert_eq!(config.listen[0].store_quota_bytes, Some(1000));
        assert_eq!(config.listen[0].peer_rate_limit().lines_per_sec, 10);
        let err = load(&format!(
            "{listen}store_quota_bytes = 2000\n[sink.store]\nmax_total_bytes = 2000\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("listen[0].store_quota_bytes") && err.contains("max_total_bytes = 2000"),
            "{err}"
        );
        let err = load(&format!(
            "{listen}store_quota_bytes = 1000\n[sink]\ntype = \"stdout\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("type = \"stdout\""), "{err}");
        let err = load(&format!("{listen}store_quota_bytes = 0\n")).unwrap_err();
        assert!(
            err.contains("listen[0].store_quota_bytes: 0 would drop"),
            "{err}"
        );
        let err = load(
            "[[listen]]\ntype = \"unix-stream\"\npath = \"x.sock\"\nmax_bytes_per_sec_per_ip = 5\n",
        )
        .unwrap_err();
        assert!(err.contains("listen[0].max_bytes_per_sec_per_ip"), "{err}");
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
        assert_eq!(kafka.compression, crate::kafka::Compression::Zstd);
        assert_eq!(kafka.wal.full_policy, crate::wal::FullPolicy::DropOldest);
        assert_eq!(kafka.wal.fsync, crate::wal::FsyncPolicy::EveryAppend);
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
