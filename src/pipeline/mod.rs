//! The pipeline between the shards and the sinks: batches, the per-shard rings, the routes
//! that give each record its Kafka key and topic, and the acknowledgements some senders wait for.

pub mod ack;
pub mod batch;
pub mod ring;
pub mod route;
