//! logtail: a log gateway, its agent, and the place where its logs are found.
//!
//! Syslog messages arrive over UDP, TCP and Unix sockets, and agents' batches over the
//! acknowledged agent protocol; they leave as batches for one sink. The data flows one way,
//! and each stage is a module that only imports the stages before it (checked by
//! `tests/layering.rs`):
//!
//! ```text
//!  source ──────► parse ──────► encode ──────► pipeline ─────────────────────► sink
//!  sockets,       RFC 5424,     JSON or raw    shard: a receive's records      kafka ─► wal (spill/replay)
//!  framing,       RFC 3164      bytes          into one batch, key and topic   store (+ search)
//!  agent batches, as devices                   (kafka::route); per-shard ring  elasticsearch ─► wal
//!  a Kafka        send it                      to the sink thread              stdout, blackhole
//!  consumer                                                                        │
//!       ▲                                                                          │
//!       └──────────────── ack: "durable" flows back to sources that wait ─────────┘
//!
//!  query (one grammar) ──► search over the store or Elasticsearch ──► `logtail search`, the HTTP API, the console
//! ```
//!
//! A source never calls the pipeline by name: it hands each receive to an
//! [`source::intake::Intake`], which the pipeline's [`pipeline::shard::Shard`] implements. A
//! sink takes [`pipeline::batch::Batch`]es and releases their [`ack::AckToken`]s once they are
//! durable. An input (TLS, the Kafka consumer, OTLP next) is a module of [`source`]; an output
//! (Elasticsearch) a module of [`sink`].
//!
//! The layers, each module with one job (a module imports only from layers above it in this
//! list; leaves and programs may also use each other, without cycles):
//!
//! 1. **Leaves**, no stage: [`runtime`] (threads with a tokio runtime, process limits),
//!    [`setting`] (what a config section reports), [`time`] (unix microseconds, durations as
//!    people write them), [`log_limit`] (rate-limited warnings), [`metrics`] (counters,
//!    gauges, histograms and their Prometheus text), [`ack`] (acknowledgements that ride with
//!    batches), [`agent_protocol`] (the agent's wire format), [`segments`] (the segment
//!    directory the store and the WAL share: lock, names, listing, I/O errors), [`pem`]
//!    (certificates and keys read from PEM files, for TLS on both sides), [`http_serve`]
//!    (serving HTTP with its limits on a thread: the gateway's server and the agent's metrics).
//! 2. **Stages**, in data-flow order: [`source`] (listeners, framing, TLS, the agent listener and
//!    its authentication, the Kafka consumer, and the limits hostile clients meet),
//!    [`parse`] (bytes to a zero-copy [`parse::Record`]), [`encode`] (a record as JSON or raw
//!    bytes), [`kafka`] (Kafka client plumbing and the key/topic [`kafka::route`]s, shared by
//!    the Kafka sink and the agent's Kafka shipper), [`pipeline`] (shards, batches, rings),
//!    [`store`] and [`wal`] (the on-disk formats of the local store and of the Kafka sink's
//!    write-ahead log), [`sink`] (the sink thread and its sinks: store, Kafka, Elasticsearch;
//!    and the live tail it offers written batches to while someone follows).
//! 3. **Reading back**: [`query`] (the query language and its matcher), [`search`] (queries
//!    over the store, or translated for Elasticsearch with `[search] backend = "elasticsearch"`,
//!    for `logtail search` and the HTTP API).
//! 4. **Programs**: [`config`] (reads the file; each section's struct lives with its
//!    component), [`server`] (starts and stops the gateway), [`http`] (the one HTTP server:
//!    `/metrics`, the search API under `/api/v1/`, and the console next), and [`agent`], the other half, run on every
//!    host by `logtail agent`: it tails files through rotation, with checkpoints that only
//!    move on acknowledgements, configured live from a file and etcd, and ships the lines to
//!    the gateway ([`agent_protocol`]) or straight to Kafka; and [`validate`], which checks a
//!    gateway or agent config file without starting anything and reports every problem.

pub mod ack;
pub mod agent;
pub mod agent_protocol;
pub mod config;
pub mod encode;
pub mod http;
pub mod http_serve;
pub mod kafka;
pub mod log_limit;
pub mod metrics;
pub mod parse;
pub mod pem;
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
pub mod validate;
pub mod wal;
