//! logtail: a log ingest gateway.

pub mod encode;
pub mod ingest;
pub mod parse;
pub mod pipeline;
pub mod sink;
pub mod store;
