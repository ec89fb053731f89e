//! Ingest: sockets and framing.
pub mod framing;
