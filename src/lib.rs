//! logtail: a log ingest gateway.
//!
//! Syslog messages arrive over UDP, TCP and Unix sockets and leave as batches for a sink. The
//! data flows one way, and each stage is a module that only uses the stages before it:
//!
//! ```text
//! sockets ──► frames ──► records ──► encoded ──► per-shard ring ──► sink thread ──► Kafka
//! (ingest)  (framing)    (parse)     (encode)    (pipeline::ring)     (sink)        └─► WAL ─► replay
//!                                                                                  store
//!                                                                                  stdout
//!                                                                                  blackhole
//! ```
//!
//! - [`ingest`]: listeners bound once, read by one shard thread per core ([`ingest::shard`]);
//!   stream bytes are cut into messages by [`ingest::framing`], datagrams are one message each,
//!   and agents' batches arrive over the acknowledged [`agent_protocol`] ([`ingest::acked`]).
//! - [`parse`]: RFC 5424 and RFC 3164 (as real devices send it) into a zero-copy
//!   [`parse::Record`] that borrows from the receive buffer.
//! - [`encode`]: a record as one JSON object, or the raw bytes.
//! - [`pipeline`]: the [`pipeline::batch::Batch`] a shard fills and its bounded ring to the sink;
//!   [`kafka::route`] renders each record's Kafka key and topic into the batch;
//!   [`pipeline::ack`] carries senders' acknowledgements along until the sink made the batch
//!   durable.
//! - [`sink`]: the thread that drains every ring into Kafka ([`sink::kafka`], spilling to the
//!   write-ahead log [`wal`] while Kafka lags), the local [`store`], stdout or nowhere.
//! - [`kafka`]: Kafka client plumbing shared by the Kafka sink and the agent's Kafka shipper
//!   (acks, compression, producer settings, routes, error classification).
//! - [`metrics`]: counters and the Prometheus endpoint; [`config`]: the TOML schema;
//!   [`server`]: starts and stops the whole.
//!
//! [`agent`] is the other half, run on every host by `logtail agent`: it tails files through
//! rotation, with checkpoints that only move on acknowledgements, configured live from a file
//! and etcd, and ships the lines to the gateway ([`agent_protocol`]) or straight to Kafka.

pub mod ack;
pub mod agent;
pub mod agent_protocol;
pub mod config;
pub mod encode;
pub mod http;
pub mod kafka;
pub mod log_limit;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod query;
pub mod runtime;
pub mod search;
pub mod segments;
pub mod server;
pub mod setting;
pub mod sink;
pub mod source;
pub mod store;
pub mod time;
pub mod wal;
