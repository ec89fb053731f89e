//! The pipeline between the shards and the sinks: batches, the per-shard rings, and the routes
//! that give each record its Kafka key and topic.

pub mod batch;
pub mod ring;
pub mod route;
