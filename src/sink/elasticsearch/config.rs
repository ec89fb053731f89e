//! `[sink.elasticsearch]`: where the Elasticsearch/OpenSearch sink sends documents and how it
//! batches, retries and authenticates. Every value is typed at load: endpoints are parsed URLs,
//! the index name a compiled [`IndexTemplate`], the auth a tagged enum.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::index::IndexTemplate;
use crate::setting::{InvalidSetting, Refusal};
use crate::sink::kafka::SpillConfig;
use crate::wal::WalConfig;

/// `[sink.elasticsearch]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchSinkConfig {
    /// Base URLs (`http://host:port` or `https://host:port`, optionally with a path prefix),
    /// tried in turn: a request goes to the one that last answered, and to the next on a
    /// connection error. Default: `["http://127.0.0.1:9200"]`.
    pub endpoints: Vec<Endpoint>,
    /// The index each document goes to: `strftime` fields (`%Y`, `%m`, `%d`, ...) from the
    /// event's `timestamp` in UTC (else its receipt time) and `{field}` for a top-level field of
    /// the record (lowercased; characters an index name cannot hold become `_`; `none` when the
    /// record has no such field). Default: `logs-%Y.%m.%d`.
    pub index: IndexTemplate,
    /// `create` (never overwrites; required by data streams; a 409 conflict means the document
    /// is there already, so it counts as delivered) or `index` (overwrites). Default: `create`.
    pub action: BulkAction,
    /// A `_bulk` request is sent once it holds this many documents... Default: 1000.
    pub bulk_max_docs: usize,
    /// ... or this many bytes of NDJSON (before compression)... Default: 5242880 (5 MiB).
    pub bulk_max_bytes: usize,
    /// ... or its first document waited this long. Default: 200.
    #[serde(
        rename = "bulk_max_age_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub bulk_max_age: Duration,
    /// `_bulk` requests in flight at once. Default: 4.
    pub max_requests_in_flight: usize,
    /// A request without a full answer after this long failed (and is retried). Default: 30000.
    #[serde(
        rename = "request_timeout_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub request_timeout: Duration,
    /// The first wait before retrying failed documents; it doubles per attempt (with jitter)
    /// up to `retry_max_backoff_ms`. Default: 100.
    #[serde(
        rename = "retry_initial_backoff_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub retry_initial_backoff: Duration,
    /// Default: 10000.
    #[serde(
        rename = "retry_max_backoff_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub retry_max_backoff: Duration,
    /// `gzip` or `none`: the request bodies' encoding. Default: `gzip`.
    pub compression: BodyCompression,
    /// Install the index template `template_name` (keyword fields for host, app, procid,
    /// msgid, source; dates for timestamps; text for message) at start, before any document.
    /// Default: true.
    pub install_template: bool,
    /// Default: `logtail`.
    pub template_name: String,
    /// How to authenticate. Default: none.
    pub auth: Auth,
    /// PEM file of the certificate authorities that sign the servers' certificates; required
    /// for `https` endpoints (the system's bundle is `/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<PathBuf>,
    /// Where documents that Elasticsearch refused for good (a 4xx other than 409 and 429, such
    /// as a mapping conflict) are appended, one JSON object a line with the reason. Default:
    /// `DATA_DIR/elasticsearch-dead-letter.ndjson`.
    pub dead_letter_file: Option<PathBuf>,
    /// When batches go to the WAL instead of Elasticsearch (as for the Kafka sink):
    /// documents not yet indexed count as in flight.
    pub spill: SpillConfig,
    /// The write-ahead log that holds batches while Elasticsearch is down or slow.
    pub wal: WalConfig,
}

impl Default for ElasticsearchSinkConfig {
    fn default() -> Self {
        ElasticsearchSinkConfig {
            endpoints: vec![Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9200,
                path_prefix: String::new(),
            }],
            index: IndexTemplate::default(),
            action: BulkAction::Create,
            bulk_max_docs: 1000,
            bulk_max_bytes: 5 << 20,
            bulk_max_age: Duration::from_millis(200),
            max_requests_in_flight: 4,
            request_timeout: Duration::from_secs(30),
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            compression: BodyCompression::Gzip,
            install_template: true,
            template_name: "logtail".into(),
            auth: Auth::None,
            ca_file: None,
            dead_letter_file: None,
            spill: SpillConfig::default(),
            wal: WalConfig::default(),
        }
    }
}

impl ElasticsearchSinkConfig {
    /// Checks what serde cannot; keys are relative to `[sink.elasticsearch]`.
    ///
    /// # Errors
    /// The first key whose value cannot work.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [
            ("bulk_max_docs", self.bulk_max_docs),
            ("bulk_max_bytes", self.bulk_max_bytes),
            ("max_requests_in_flight", self.max_requests_in_flight),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        if self.retry_initial_backoff.is_zero()
            || self.retry_max_backoff < self.retry_initial_backoff
        {
            return Err(InvalidSetting::new(
                "retry_max_backoff_ms",
                "retry_initial_backoff_ms must be at least 1 and at most retry_max_backoff_ms",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(InvalidSetting::new(
                "request_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.install_template && !valid_template_name(&self.template_name) {
            return Err(InvalidSetting::new(
                "template_name",
                format!(
                    "{:?}: use lowercase letters, digits, '-', '_' and '.'",
                    self.template_name
                ),
            ));
        }
        check_endpoints(&self.endpoints, self.ca_file.as_deref())?;
        self.spill.check().map_err(|e| e.within("spill"))?;
        self.wal.check().map_err(|e| e.within("wal"))
    }

    /// The dead-letter file, under `data_dir` unless configured.
    pub fn dead_letter_under(&self, data_dir: &Path) -> PathBuf {
        self.dead_letter_file
            .clone()
            .unwrap_or_else(|| data_dir.join("elasticsearch-dead-letter.ndjson"))
    }
}

/// `endpoints` and `ca_file`, as every Elasticsearch client section has them (the sink's and
/// `[search.elasticsearch]`): at least one endpoint, and a readable CA file for `https` ones.
///
/// # Errors
/// Under `endpoints` or `ca_file`.
pub fn check_endpoints(
    endpoints: &[Endpoint],
    ca_file: Option<&Path>,
) -> Result<(), InvalidSetting> {
    if endpoints.is_empty() {
        return Err(InvalidSetting::new("endpoints", "give at least one URL"));
    }
    if endpoints.iter().any(|e| e.tls) {
        let Some(ca) = ca_file else {
            return Err(InvalidSetting::new(
                "ca_file",
                "an https endpoint needs the CA certificates that sign it (the system's \
                 bundle is /etc/ssl/certs/ca-certificates.crt)",
            ));
        };
        crate::pem::read_certificates("ca_file", ca)?;
    }
    Ok(())
}

fn valid_template_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// One `endpoints` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Endpoint {
    /// `https`.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// A path the server is mounted under (behind a proxy), without a trailing `/`.
    pub path_prefix: String,
}

impl Endpoint {
    /// `host:port`, for the `Host` header and logs.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path_prefix)
    }
}

crate::setting::serialize_as_text!(Endpoint);

impl TryFrom<String> for Endpoint {
    type Error = Refusal;

    fn try_from(text: String) -> Result<Self, Refusal> {
        Endpoint::parse(&text).map_err(Refusal)
    }
}

impl Endpoint {
    fn parse(text: &str) -> Result<Self, String> {
        let uri: hyper::Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "{text:?}: give http://host:port or https://host:port"
                ));
            }
        };
        let Some(host) = uri.host() else {
            return Err(format!("{text:?}: no host"));
        };
        if uri.query().is_some() {
            return Err(format!("{text:?}: no query string allowed"));
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Endpoint {
            tls,
            host,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            path_prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

/// `action`: the bulk operation of each document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    Create,
    Index,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Create => "create",
            BulkAction::Index => "index",
        }
    }
}

/// `compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyCompression {
    Gzip,
    None,
}

/// `[sink.elasticsearch.auth]`: `type = "basic"` with `username` and `password`,
/// `type = "api_key"` with `key` (the base64 `id:api_key` Elasticsearch returns as `encoded`),
/// or `type = "bearer"` with `token`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    #[default]
    None,
    Basic {
        username: String,
        password: String,
    },
    ApiKey {
        key: String,
    },
    Bearer {
        token: String,
    },
}

impl Auth {
    /// The `Authorization` header's value.
    pub fn header(&self) -> Option<String> {
        use base64::Engine as _;
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Auth::ApiKey { key } => Some(format!("ApiKey {key}")),
            Auth::Bearer { token } => Some(format!("Bearer {token}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ElasticsearchSinkConfig, String> {
        let config: ElasticsearchSinkConfig =
            crate::setting::from_toml(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn endpoints_auth_and_durations_are_typed_at_load() {
        let config = parse(
            "endpoints = [\"http://es1:9200\", \"http://[::1]:9201/prefix/\"]\n\
             action = \"index\"\nbulk_max_age_ms = 50\n\
             [auth]\ntype = \"basic\"\nusername = \"elastic\"\npassword = \"changeme\"\n",
        )
        .unwrap();
        assert_eq!(config.endpoints[0].to_string(), "http://es1:9200");
        assert_eq!(config.endpoints[1].authority(), "[::1]:9201");
        assert_eq!(config.endpoints[1].path_prefix, "/prefix");
        assert_eq!(config.action, BulkAction::Index);
        assert_eq!(config.bulk_max_age, Duration::from_millis(50));
        assert_eq!(
            config.auth.header().as_deref(),
            Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let e = parse("endpoints = [\"ftp://es:21\"]\n").unwrap_err();
        assert!(e.contains("give http://host:port"), "{e}");
        let e = parse("endpoints = [\"https://es:9200\"]\n").unwrap_err();
        assert!(e.starts_with("ca_file: an https endpoint needs"), "{e}");
        let e = parse("bulk_max_docs = 0\n").unwrap_err();
        assert_eq!(e, "bulk_max_docs: must be at least 1");
        let e = parse("[auth]\ntype = \"token\"\n").unwrap_err();
        assert!(e.contains("token"), "{e}");
        let e = parse("endpoints = []\n").unwrap_err();
        assert_eq!(e, "endpoints: give at least one URL");
    }
}
