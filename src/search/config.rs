//! `[search]`: what the search API (and so the console) and `logtail search --config` search:
//! the local store, or an Elasticsearch/OpenSearch cluster that indexers fill
//! (`[search.elasticsearch]`). Live tail always follows the gateway's own pipeline.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::setting::{InvalidSetting, Refusal};
use crate::sink::elasticsearch::config::{Auth, Endpoint, check_endpoints};

/// `[search]`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// `store` (the local store under `data_dir`) or `elasticsearch` (the cluster of
    /// `[search.elasticsearch]`). Default: `store`.
    pub backend: SearchBackend,
    /// Used when `backend = "elasticsearch"`.
    pub elasticsearch: ElasticsearchSearchConfig,
}

impl SearchConfig {
    /// # Errors
    /// The first key whose value cannot work, relative to `[search]`.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        self.elasticsearch
            .check()
            .map_err(|e| e.within("elasticsearch"))
    }
}

/// `backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    #[default]
    Store,
    Elasticsearch,
}

/// `[search.elasticsearch]`: the cluster to search, with the keys of `[sink.elasticsearch]`
/// that say how to reach it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchSearchConfig {
    /// Base URLs, tried in turn (as the sink's). Default: `["http://127.0.0.1:9200"]`.
    pub endpoints: Vec<Endpoint>,
    /// The indices to search: an index pattern, or several separated by commas. Default:
    /// `logs-*` (what the sink's default `index = "logs-%Y.%m.%d"` writes).
    pub index: IndexPattern,
    /// How to authenticate (as the sink's `[sink.elasticsearch.auth]`). Default: none.
    pub auth: Auth,
    /// PEM file of the CAs that sign the servers' certificates; required for `https`.
    pub ca_file: Option<PathBuf>,
    /// A search without a full answer after this long fails (the API answers 502). Default:
    /// 10000.
    #[serde(
        rename = "request_timeout_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub request_timeout: Duration,
}

impl Default for ElasticsearchSearchConfig {
    fn default() -> Self {
        ElasticsearchSearchConfig {
            endpoints: crate::sink::elasticsearch::config::ElasticsearchSinkConfig::default()
                .endpoints,
            index: IndexPattern("logs-*".into()),
            auth: Auth::None,
            ca_file: None,
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl ElasticsearchSearchConfig {
    /// # Errors
    /// The first key whose value cannot work, relative to `[search.elasticsearch]`.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        check_endpoints(&self.endpoints, self.ca_file.as_deref())?;
        if self.request_timeout.is_zero() {
            return Err(InvalidSetting::new(
                "request_timeout_ms",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `index`: index names and patterns (`*`), separated by commas, as they go in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IndexPattern(String);

impl IndexPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IndexPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

crate::setting::serialize_as_text!(IndexPattern);

impl TryFrom<String> for IndexPattern {
    type Error = Refusal;

    fn try_from(text: String) -> Result<Self, Refusal> {
        let bad = text.split(',').find(|part| {
            part.is_empty()
                || part.starts_with(['-', '_', '+'])
                || part.chars().any(|c| {
                    c.is_ascii_uppercase() || " \\/?\"<>|#:%&=".contains(c) || c.is_control()
                })
        });
        match bad {
            Some(part) => Err(Refusal(format!(
                "{part:?} is not an index name or pattern: lowercase, no spaces or \\ / ? \" < > | \
                 # : % & =, not starting with - _ +; several separated by commas, e.g. \"logs-*\""
            ))),
            None => Ok(IndexPattern(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SearchConfig, String> {
        let config: SearchConfig = crate::setting::from_toml(text).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_elasticsearch_backend_is_typed_at_load() {
        let config = parse(
            "backend = \"elasticsearch\"\n[elasticsearch]\n\
             endpoints = [\"http://es1:9200\", \"http://es2:9200\"]\n\
             index = \"logs-*,archive-*\"\nrequest_timeout_ms = 2500\n\
             [elasticsearch.auth]\ntype = \"api_key\"\nkey = \"abc\"\n",
        )
        .unwrap();
        assert_eq!(config.backend, SearchBackend::Elasticsearch);
        assert_eq!(config.elasticsearch.endpoints[1].authority(), "es2:9200");
        assert_eq!(config.elasticsearch.index.as_str(), "logs-*,archive-*");
        assert_eq!(
            config.elasticsearch.request_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            config.elasticsearch.auth.header().as_deref(),
            Some("ApiKey abc")
        );
        let defaults = parse("").unwrap();
        assert_eq!(defaults.backend, SearchBackend::Store);
        assert_eq!(defaults.elasticsearch.index.as_str(), "logs-*");
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        let e = parse("backend = \"kibana\"\n").unwrap_err();
        assert!(e.contains("kibana"), "{e}");
        let e = parse("[elasticsearch]\nindex = \"Logs-*\"\n").unwrap_err();
        assert!(e.contains("not an index name or pattern"), "{e}");
        let e = parse("[elasticsearch]\nindex = \"logs-*,\"\n").unwrap_err();
        assert!(e.contains("\"\" is not an index name"), "{e}");
        let e = parse("[elasticsearch]\nendpoints = [\"https://es:9200\"]\n").unwrap_err();
        assert!(
            e.starts_with("elasticsearch.ca_file: an https endpoint"),
            "{e}"
        );
        let e = parse("[elasticsearch]\nendpoints = []\n").unwrap_err();
        assert_eq!(e, "elasticsearch.endpoints: give at least one URL");
        let e = parse("[elasticsearch]\nrequest_timeout_ms = 0\n").unwrap_err();
        assert_eq!(e, "elasticsearch.request_timeout_ms: must be at least 1");
        let e = parse("[elasticsearch]\nindx = \"x\"\n").unwrap_err();
        assert!(e.contains("indx"), "{e}");
    }
}
