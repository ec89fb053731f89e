//! One way to configure a librdkafka producer, and to hear what librdkafka says.

use std::collections::BTreeMap;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{Acks, Compression};
use crate::log_limit::RateLimitedWarning;
use crate::setting::InvalidSetting;

/// The librdkafka settings of a logtail producer. Each producer fills in its own section's
/// values; [`ProducerSettings::client_config`] is the only place that names librdkafka
/// properties.
#[derive(Debug, Clone)]
pub struct ProducerSettings<'a> {
    /// `bootstrap.servers`: comma-separated `HOST:PORT`.
    pub bootstrap_servers: &'a str,
    /// `client.id`, as brokers log it.
    pub client_id: String,
    pub compression: Compression,
    pub acks: Acks,
    /// `enable.idempotence`: no duplicates and no reordering from the producer's own retries.
    pub idempotence: bool,
    /// `linger.ms`.
    pub linger_ms: u64,
    /// `message.timeout.ms`; 0 retries until delivered.
    pub message_timeout_ms: u64,
    /// `batch.size`, the largest produce request per partition; `None` leaves librdkafka's.
    pub batch_size: Option<u64>,
    /// `queue.buffering.max.messages` and `queue.buffering.max.kbytes`; `None` leaves
    /// librdkafka's.
    pub queue_limits: Option<QueueLimits>,
    /// Any other librdkafka property, applied last, so it overrides the settings above.
    pub librdkafka: &'a BTreeMap<String, String>,
}

/// The size of librdkafka's own queue of records not yet delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub messages: u64,
    pub kbytes: u64,
}

impl ProducerSettings<'_> {
    /// librdkafka's configuration of these settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("compression.codec", self.compression.as_str())
            .set("acks", self.acks.as_str())
            .set("enable.idempotence", self.idempotence.to_string())
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.message_timeout_ms.to_string());
        if let Some(batch_size) = self.batch_size {
            client.set("batch.size", batch_size.to_string());
        }
        if let Some(queue) = self.queue_limits {
            client
                .set("queue.buffering.max.messages", queue.messages.to_string())
                .set("queue.buffering.max.kbytes", queue.kbytes.to_string());
        }
        for (key, value) in self.librdkafka {
            client.set(key, value);
        }
        if self.librdkafka.contains_key("debug") {
            // rdkafka otherwise sets the client's log level from the `log` crate's, which this
            // program does not use, and librdkafka's debug lines would never reach the log.
            client.set_log_level(RDKafkaLogLevel::Debug);
        }
        client
    }
}

/// Checks a `bootstrap_servers` setting (key `bootstrap_servers`).
///
/// # Errors
/// When it is empty.
pub fn check_bootstrap_servers(servers: &str) -> Result<(), InvalidSetting> {
    if servers.trim().is_empty() {
        return Err(InvalidSetting::new(
            "bootstrap_servers",
            "empty; give HOST:PORT[,HOST:PORT...], e.g. \"127.0.0.1:9092\"",
        ));
    }
    for server in servers.split(',') {
        crate::setting::check_host_port(server.trim()).map_err(|message| {
            InvalidSetting::new(
                "bootstrap_servers",
                format!("{message}; give HOST:PORT[,HOST:PORT...], e.g. \"127.0.0.1:9092\""),
            )
        })?;
    }
    Ok(())
}

/// Errors that retrying cannot fix: the record is dropped (counted and logged).
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::InvalidRecord
    )
}

/// A librdkafka log line: warnings and worse through `warning` (rate-limited), the rest at
/// debug level.
pub fn log_librdkafka(
    warning: &RateLimitedWarning,
    level: RDKafkaLogLevel,
    facility: &str,
    message: &str,
) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => warning.warn(|| format!("librdkafka: {facility}: {message}")),
        _ => tracing::debug!("librdkafka: {facility}: {message}"),
    }
}

/// A client error librdkafka reported (`ClientContext::error`), through `warning`.
pub fn log_client_error(warning: &RateLimitedWarning, error: &KafkaError, reason: &str) {
    warning.warn(|| format!("librdkafka: {error}: {reason}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_retrying_cannot_fix_are_permanent() {
        assert!(is_permanent(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(is_permanent(RDKafkaErrorCode::InvalidTopic));
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::PurgeQueue,
            RDKafkaErrorCode::PurgeInflight,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(!is_permanent(code), "{code:?}");
        }
    }

    #[test]
    fn the_passthrough_table_overrides_and_optional_settings_stay_unset() {
        let librdkafka = BTreeMap::from([("linger.ms".to_string(), "50".to_string())]);
        let settings = ProducerSettings {
            bootstrap_servers: "k1:9092",
            client_id: "logtail".into(),
            compression: Compression::Zstd,
            acks: Acks::Leader,
            idempotence: true,
            linger_ms: 5,
            message_timeout_ms: 0,
            batch_size: None,
            queue_limits: None,
            librdkafka: &librdkafka,
        };
        let client = settings.client_config();
        assert_eq!(client.get("linger.ms"), Some("50"));
        assert_eq!(client.get("compression.codec"), Some("zstd"));
        assert_eq!(client.get("acks"), Some("1"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("batch.size"), None);
        assert_eq!(client.get("queue.buffering.max.messages"), None);
    }
}
