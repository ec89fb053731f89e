//! Kafka client plumbing, one copy for everything in logtail that talks to Kafka: the
//! gateway's Kafka sink (`sink::kafka`), the agent's `kafka` shipper (`agent::ship::kafka`) and
//! the Kafka source to come.
//!
//! - The settings every producer shares, typed once when the configuration is read: [`Acks`]
//!   and [`Compression`] (a bad value is refused by serde, naming the allowed ones), and
//!   [`ProducerSettings`], which turns them into librdkafka's `ClientConfig` the same way for
//!   every producer, the passthrough `librdkafka` table applied last; [`check_bootstrap_servers`].
//! - [`route`]: a record's Kafka key and topic, rendered from templates over its fields; the
//!   route's settings ([`route::TopicName`], [`route::KeyTemplate`],
//!   [`route::TopicTemplate`]) are compiled when the configuration is read.
//! - [`is_permanent`]: the delivery errors that retrying cannot fix.
//! - [`log_librdkafka`] and [`log_client_error`]: librdkafka's log lines and client errors
//!   into ours, rate-limited.
//!
//! # Layering
//! This module uses only leaves (`setting`, `metrics`, `agent_protocol`) and [`crate::parse`]
//! (the records a route renders): never the pipeline, a sink, the agent or the configuration,
//! so that all three can use it.

mod client;
pub mod route;

use serde::Deserialize;

pub use client::{
    ProducerSettings, QueueLimits, check_bootstrap_servers, is_permanent, log_client_error,
    log_librdkafka,
};

use crate::setting::Refusal;

/// `acks`: how many replicas must have a record before the broker acknowledges it.
///
/// Written `"all"` (also `"-1"`, librdkafka's spelling), `"1"` or `"0"`; anything else is refused
/// when the configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Acks {
    /// Every in-sync replica (`all`): what the idempotent producer needs.
    #[default]
    All,
    /// The partition leader alone (`1`).
    Leader,
    /// No acknowledgement at all (`0`): a record counts as delivered once sent.
    NoWait,
}

impl Acks {
    /// The value of librdkafka's `acks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::NoWait => "0",
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::setting::serialize_as_text!(Acks);

impl TryFrom<String> for Acks {
    type Error = Refusal;

    fn try_from(text: String) -> Result<Acks, Refusal> {
        match text.as_str() {
            "all" | "-1" => Ok(Acks::All),
            "1" => Ok(Acks::Leader),
            "0" => Ok(Acks::NoWait),
            _ => Err(Refusal(format!(
                "{text:?}: allowed \"all\", \"1\" or \"0\""
            ))),
        }
    }
}

/// `compression`: the codec of produce requests, librdkafka's `compression.codec`.
///
/// `none`, `gzip`, `snappy`, `lz4` or `zstd`; anything else is refused when the configuration
/// is read, naming these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    /// The value of librdkafka's `compression.codec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_take_librdkafkas_spellings_and_refuse_others_naming_the_allowed() {
        for (text, acks) in [
            ("all", Acks::All),
            ("-1", Acks::All),
            ("1", Acks::Leader),
            ("0", Acks::NoWait),
        ] {
            assert_eq!(Acks::try_from(text.to_string()).unwrap(), acks);
        }
        assert_eq!(Acks::All.as_str(), "all");
        let refusal = Acks::try_from("2".to_string()).unwrap_err();
        assert_eq!(refusal.0, "\"2\": allowed \"all\", \"1\" or \"0\"");
    }
}
