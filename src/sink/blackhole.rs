//! The `blackhole` sink: counts batches and discards them (for benchmarks of the ingest path).

use super::Sink;
use crate::pipeline::batch::Batch;

/// Discards everything.
pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn write(&mut self, _batch: &Batch) -> anyhow::Result<()> {
        Ok(())
    }
}
