//! The `store` sink: the embedded local store (see [`crate::store`]), fsync'ed on an interval.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Sink;
use crate::config::Config;
use crate::pipeline::batch::Batch;
use crate::store::{StoreBatch, StoreOptions, StoreWriter};

/// The store writes a pipeline batch straight from its buffers: the values are lent, not copied.
impl StoreBatch for Batch {
    fn shard(&self) -> u16 {
        Batch::shard(self)
    }

    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.iter().map(|e| (e.received_at_us, e.value))
    }
}

/// Appends each batch as one block of the local store.
pub struct StoreSink {
    writer: StoreWriter,
    fsync_interval: Duration,
    /// When data was first written since the last fsync.
    unsynced_since: Option<Instant>,
}

impl StoreSink {
    /// Opens (and recovers) the store `config` names.
    ///
    /// # Errors
    /// When the directory cannot be created, is locked by another gateway, or cannot be read.
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let store = &config.sink.store;
        let dir = config.store_dir();
        let writer = StoreWriter::open(StoreOptions {
            dir: dir.clone(),
            max_segment_bytes: store.max_segment_bytes,
            max_total_bytes: store.max_total_bytes,
            max_age: (store.max_age_secs > 0).then(|| Duration::from_secs(store.max_age_secs)),
        })
        .with_context(|| format!("cannot open the local store in {}", dir.display()))?;
        Ok(StoreSink {
            writer,
            fsync_interval: Duration::from_millis(store.fsync_interval_ms),
            unsynced_since: None,
        })
    }
}

impl Sink for StoreSink {
    fn name(&self) -> &'static str {
        "store"
    }

    fn write(&mut self, batch: &Batch) -> anyhow::Result<()> {
        self.writer.append(batch)?;
        if self.fsync_interval.is_zero() {
            self.writer.sync()?;
        } else {
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        if self
            .unsynced_since
            .is_some_and(|since| since.elapsed() >= self.fsync_interval)
        {
            self.writer.sync()?;
            self.unsynced_since = None;
        }
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        self.writer.sync()?;
        Ok(())
    }
}
