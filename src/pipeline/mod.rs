//! The pipeline between the shards and the sinks: batches and the per-shard rings.

pub mod batch;
pub mod ring;
