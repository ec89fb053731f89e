//! The `store` sink: the embedded local store (see [`crate::store`]), fsync'ed on an interval,
//! and its `[sink.store]` config section; it keeps the listeners' store quotas
//! (`[[listen]] store_quota_bytes`) in step with what the store holds ([`QuotaLedger`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;

use super::Sink;
use crate::encode::json::IndexedFields;
use crate::metrics::StoreQuota;
use crate::pipeline::batch::Batch;
use crate::segments;
use crate::setting::InvalidSetting;
use crate::store::{StoreBatch, StoreOptions, StoreWriter};

/// `[sink.store]`: the local store.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSinkConfig {
    /// Directory of the segment files. Default: `DATA_DIR/store`.
    pub dir: Option<PathBuf>,
    /// A segment file is closed and a new one started past this size, in bytes; at least 4096.
    /// Default: 67108864 (64 MiB).
    pub max_segment_bytes: u64,
    /// Oldest segments are deleted while the store is larger than this, in bytes.
    /// Default: 1073741824 (1 GiB).
    pub max_total_bytes: u64,
    /// `max_age_secs`: segments whose newest record is older than this many seconds are
    /// deleted. Default: 0, no age limit (`None`).
    #[serde(
        rename = "max_age_secs",
        deserialize_with = "age_limit_secs",
        serialize_with = "crate::setting::as_optional_seconds"
    )]
    pub max_age: Option<Duration>,
    /// `fsync_interval_ms`: written data is fsync'ed at most this many milliseconds after it was
    /// written (a crash of the machine, not of the process, can lose that window). 0 syncs after
    /// every batch. Default: 1000.
    #[serde(
        rename = "fsync_interval_ms",
        deserialize_with = "crate::setting::millis",
        serialize_with = "crate::setting::as_millis"
    )]
    pub fsync_interval: Duration,
}

impl Default for StoreSinkConfig {
    fn default() -> Self {
        StoreSinkConfig {
            dir: None,
            max_segment_bytes: 64 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
            max_age: None,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// `max_age_secs`: whole seconds, 0 for no limit.
fn age_limit_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let secs = u64::deserialize(d)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

impl StoreSinkConfig {
    /// Checks what serde cannot: the segment size's lower bound.
    ///
    /// # Errors
    /// The key (relative to `[sink.store]`) and what is wrong with it.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        segments::check_max_segment_bytes(self.max_segment_bytes)
    }

    /// The store's directory: `dir`, or `store` under the gateway's data directory.
    pub fn dir_under(&self, data_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.join("store"))
    }
}

/// The store writes a pipeline batch straight from its buffers: the values are lent, not copied.
impl StoreBatch for Batch {
    fn shard(&self) -> u16 {
        Batch::shard(self)
    }

    fn records(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.iter().map(|e| (e.received_at_us, e.value))
    }

    fn index_fields(&self, i: usize) -> Option<&IndexedFields> {
        Batch::index_fields(self, i)
    }
}

/// The `[sink.store]` settings a reload changes while the store is open: retention
/// (`max_total_bytes`, `max_age_secs`) and `fsync_interval_ms`. The gateway sets them; the sink
/// thread takes a change before its next write or tick (one uncontended lock per batch, no
/// channel to poll), and the API reads them for its status.
#[derive(Debug)]
pub struct LiveStoreSettings {
    current: Mutex<StoreRetention>,
    /// Bumped by every change, so the sink sees one without taking the lock.
    generation: AtomicU64,
}

/// The live part of [`StoreSinkConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRetention {
    pub max_total_bytes: u64,
    pub max_age: Option<Duration>,
    pub fsync_interval: Duration,
}

impl StoreRetention {
    pub fn of(config: &StoreSinkConfig) -> Self {
        StoreRetention {
            max_total_bytes: config.max_total_bytes,
            max_age: config.max_age,
            fsync_interval: config.fsync_interval,
        }
    }
}

impl LiveStoreSettings {
    pub fn new(config: &StoreSinkConfig) -> Self {
        LiveStoreSettings {
            current: Mutex::new(StoreRetention::of(config)),
            generation: AtomicU64::new(0),
        }
    }

    /// The settings in force.
    pub fn current(&self) -> StoreRetention {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `config`'s live settings; true when they changed.
    pub fn set(&self, config: &StoreSinkConfig) -> bool {
        let new = StoreRetention::of(config);
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == new {
            return false;
        }
        *current = new;
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// The settings, when they changed since `seen` (which is then brought up to date).
    fn changed_since(&self, seen: &mut u64) -> Option<StoreRetention> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation == *seen {
            return None;
        }
        *seen = generation;
        Some(self.current())
    }
}

/// Appends each batch as one block of the local store.
pub struct StoreSink {
    writer: StoreWriter,
    live: Arc<LiveStoreSettings>,
    /// The generation of `live` last applied.
    live_seen: u64,
    fsync_interval: Duration,
    /// When data was first written since the last fsync.
    unsynced_since: Option<Instant>,
    quotas: QuotaLedger,
}

/// What each listener with a store quota holds in each segment, so that retention deleting a
/// segment gives its bytes back to the listeners that wrote them.
///
/// A batch's bytes on disk (compressed, headers included) are shared among its listeners in
/// proportion to their bytes of values in it, and charged to the segment being appended to
/// after the batch; a batch whose blocks straddle a roll charges the newer segment, which is
/// deleted later: a listener is never credited early. Segments from before a restart are
/// charged to nobody (which listener wrote them is not on disk); retention deletes them first.
#[derive(Default)]
struct QuotaLedger {
    /// Oldest first: a segment's sequence number and its charges.
    segments: VecDeque<(u64, Charges)>,
}

/// Bytes per listener with a store quota.
type Charges = Vec<(Arc<StoreQuota>, u64)>;

impl QuotaLedger {
    /// Charges `batch`'s listeners for the `written` bytes it took in segment `seq`.
    fn charge(&mut self, seq: u64, batch: &Batch, written: u64) {
        let values = batch.value_bytes() as u128;
        if batch.store_charges().is_empty() || values == 0 {
            return;
        }
        if self.segments.back().is_none_or(|(s, _)| *s != seq) {
            self.segments.push_back((seq, Vec::new()));
        }
        let Some((_, charges)) = self.segments.back_mut() else {
            return;
        };
        for (quota, bytes) in batch.store_charges() {
            let share = (u128::from(written) * u128::from(*bytes)).div_ceil(values) as u64;
            quota.in_flight_bytes.add(-(*bytes as i64));
            quota.held_bytes.add(share as i64);
            match charges.iter_mut().find(|(q, _)| Arc::ptr_eq(q, quota)) {
                Some((_, held)) => *held += share,
                None => charges.push((quota.clone(), share)),
            }
        }
    }

    /// Gives back what segments older than `oldest` held: retention deleted them.
    fn release_before(&mut self, oldest: u64) {
        while let Some((seq, _)) = self.segments.front()
            && *seq < oldest
        {
            if let Some((_, charges)) = self.segments.pop_front() {
                for (quota, held) in charges {
                    quota.held_bytes.add(-(held as i64));
                }
            }
        }
    }
}

impl StoreSink {
    /// Opens (and recovers) the store in `dir` (see [`StoreSinkConfig::dir_under`]) with the
    /// settings of `config`, then follows `live` for those that change while it runs.
    ///
    /// # Errors
    /// When the directory cannot be created, is locked by another gateway, or cannot be read.
    pub fn open(
        config: &StoreSinkConfig,
        dir: PathBuf,
        live: Arc<LiveStoreSettings>,
    ) -> anyhow::Result<Self> {
        let writer = StoreWriter::open(StoreOptions {
            dir: dir.clone(),
            max_segment_bytes: config.max_segment_bytes,
            max_total_bytes: config.max_total_bytes,
            max_age: config.max_age,
        })
        .with_context(|| format!("cannot open the local store in {}", dir.display()))?;
        Ok(StoreSink {
            writer,
            live,
            live_seen: 0,
            fsync_interval: config.fsync_interval,
            unsynced_since: None,
            quotas: QuotaLedger::default(),
        })
    }
}

impl StoreSink {
    /// Applies the live settings if a reload changed them: retention runs at once (a lower
    /// limit deletes now, not at the next roll), and quotas get back what it deleted.
    fn follow_live_settings(&mut self) {
        let Some(new) = self.live.changed_since(&mut self.live_seen) else {
            return;
        };
        self.writer.set_retention(new.max_total_bytes, new.max_age);
        self.quotas.release_before(self.writer.segment_range().0);
        self.fsync_interval = new.fsync_interval;
        tracing::info!(
            "store: max_total_bytes = {}, max_age_secs = {}, fsync_interval_ms = {} (reloaded)",
            new.max_total_bytes,
            new.max_age.map_or(0, |age| age.as_secs()),
            new.fsync_interval.as_millis()
        );
    }
}

impl Sink for StoreSink {
    fn name(&self) -> &'static str {
        "store"
    }

    fn write(&mut self, batch: &Batch) -> anyhow::Result<()> {
        self.follow_live_settings();
        let written_before = self.writer.stats().bytes_written;
        self.writer.append(batch)?;
        let (oldest, current) = self.writer.segment_range();
        let written = self.writer.stats().bytes_written - written_before;
        self.quotas.charge(current, batch, written);
        self.quotas.release_before(oldest);
        if self.fsync_interval.is_zero() {
            self.writer.sync()?;
        } else {
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        self.follow_live_settings();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batchs_disk_bytes_are_shared_by_value_bytes_and_given_back_with_its_segment() {
        let (a, b) = (
            Arc::new(StoreQuota::new(1000, false)),
            Arc::new(StoreQuota::new(1000, false)),
        );
        let mut batch = Batch::with_capacity(0, 1024, 16);
        batch.push(1, &[b'x'; 300]);
        batch.push(2, &[b'y'; 100]);
        batch.charge_store_quota(&a, 300);
        batch.charge_store_quota(&b, 100);
        a.in_flight_bytes.add(300);
        b.in_flight_bytes.add(100);
        let mut ledger = QuotaLedger::default();
        // 400 bytes of values took 101 on disk: 3/4 and 1/4 of it, rounded up.
        ledger.charge(7, &batch, 101);
        assert_eq!((a.held_bytes.get(), b.held_bytes.get()), (76, 26));
        assert_eq!((a.in_flight_bytes.get(), b.in_flight_bytes.get()), (0, 0));
        ledger.charge(8, &Batch::with_capacity(0, 0, 0), 50);
        let mut later = Batch::with_capacity(0, 64, 1);
        later.push(3, &[b'z'; 10]);
        later.charge_store_quota(&a, 10);
        a.in_flight_bytes.add(10);
        ledger.charge(8, &later, 40);
        assert_eq!(a.held_bytes.get(), 116);
        // Retention deleted segment 7: what it held goes back, segment 8's stays.
        ledger.release_before(8);
        assert_eq!((a.held_bytes.get(), b.held_bytes.get()), (40, 0));
        ledger.release_before(9);
        assert_eq!(a.held_bytes.get(), 0);
        assert!(!a.is_spent());
    }

    #[test]
    fn section_reads_durations_typed_and_zero_age_is_no_limit() {
        let c: StoreSinkConfig =
            toml::from_str("max_age_secs = 3600\nfsync_interval_ms = 0\n").expect("valid section");
        assert_eq!(c.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(c.fsync_interval, Duration::ZERO);
        let c: StoreSinkConfig = toml::from_str("max_age_secs = 0\n").expect("valid section");
        assert_eq!(c.max_age, None);
        assert_eq!(c.fsync_interval, Duration::from_secs(1));
        assert_eq!(c.dir_under(Path::new("data")), Path::new("data/store"));
    }
}
