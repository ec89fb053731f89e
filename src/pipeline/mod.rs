//! The pipeline between the shards and the sinks: batches, the per-shard rings, and the
//! acknowledgements some senders wait for. (The routes that give each record its Kafka key and
//! topic are [`crate::kafka::route`], shared with the agent's Kafka shipper.)

pub mod ack;
pub mod batch;
pub mod ring;
