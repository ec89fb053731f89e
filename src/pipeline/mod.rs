//! The pipeline between the sources and the sink: the shards that turn what sources receive
//! into batches ([`shard`]), the batches, and the per-shard rings to the sink thread. (The
//! routes that give each record its Kafka key and topic are [`crate::kafka::route`], shared
//! with the agent's Kafka shipper.)

pub mod batch;
pub mod ring;
pub mod shard;

use std::time::Duration;

use serde::Deserialize;

use crate::setting::InvalidSetting;

/// `[pipeline]`: batching and the per-shard rings.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    #[serde(
        rename = "batch_max_age_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub batch_max_age: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            ring_batches: 64,
            batch_max_records: 4096,
            batch_max_bytes: 1024 * 1024,
            batch_max_age: Duration::from_millis(5),
        }
    }
}

impl PipelineConfig {
    /// When a shard cuts its batches.
    pub fn batch_limits(&self) -> shard::BatchLimits {
        shard::BatchLimits {
            max_records: self.batch_max_records,
            max_bytes: self.batch_max_bytes,
            max_age: self.batch_max_age,
        }
    }

    /// Checks that rings and batches can hold something, and that a batch fits in memory.
    ///
    /// # Errors
    /// The first key at fault, relative to `[pipeline]`.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [
            ("ring_batches", self.ring_batches),
            ("batch_max_records", self.batch_max_records),
            ("batch_max_bytes", self.batch_max_bytes),
        ] {
            if value == 0 {
                return Err(InvalidSetting::new(key, "must be at least 1"));
            }
        }
        if self.batch_max_bytes > 256 << 20 {
            return Err(InvalidSetting::new(
                "batch_max_bytes",
                "at most 268435456 (256 MiB)",
            ));
        }
        Ok(())
    }
}
