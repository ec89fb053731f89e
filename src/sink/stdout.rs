//! The `stdout` sink: one encoded record per line on standard output.

use std::io::Write;

use super::Sink;
use crate::pipeline::batch::Batch;

/// Writes records to standard output, flushed once per batch.
pub struct StdoutSink {
    buffer: Vec<u8>,
}

impl StdoutSink {
    /// A sink writing to this process's standard output.
    pub fn new() -> Self {
        StdoutSink { buffer: Vec::new() }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write(&mut self, batch: &Batch) -> anyhow::Result<()> {
        // One write per batch: lines of one batch are never interleaved with other output.
        self.buffer.clear();
        for entry in batch.iter() {
            self.buffer.extend_from_slice(entry.value);
            self.buffer.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buffer)?;
        out.flush()?;
        Ok(())
    }
}
