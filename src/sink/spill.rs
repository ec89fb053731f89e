//! What the Kafka and Elasticsearch sinks share to spill batches to their WAL and read them
//! back: appending a batch (with what `full_policy` did to it) and taking the next batch the WAL
//! has not handed out (decoded, or acknowledged and counted when it cannot be). When to spill
//! and replay is decided by the state machine they also share ([`super::kafka::state`]).

use anyhow::Context as _;

use crate::log_limit::RateLimitedWarning;
use crate::pipeline::batch::Batch;
use crate::wal::{Appended, Wal, WalError};

/// What [`append`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spilled {
    /// In the WAL.
    Stored,
    /// Dropped by `full_policy = "drop_newest"` (warned about).
    Dropped,
    /// Refused: the WAL is full under `full_policy = "block"`. Retry later.
    Full,
}

/// Appends `batch` to `wal`, encoding it into `payload` (a buffer kept between calls).
///
/// # Errors
/// When the WAL cannot be written (other than being full).
pub fn append(
    wal: &mut Wal,
    payload: &mut Vec<u8>,
    batch: &Batch,
    sink: &str,
    warning: &RateLimitedWarning,
) -> anyhow::Result<Spilled> {
    payload.clear();
    batch.encode_wal(payload);
    let records = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    match wal.append(batch.shard(), records, payload) {
        Ok(Appended::Stored(_)) => Ok(Spilled::Stored),
        Ok(Appended::Dropped) => {
            warning.warn(|| {
                format!(
                    "{sink}: the WAL is full; dropped a batch of {} new records \
                     (full_policy = drop_newest)",
                    batch.len()
                )
            });
            Ok(Spilled::Dropped)
        }
        Err(WalError::Full) => Ok(Spilled::Full),
        Err(e) => Err(e).context("cannot append to the WAL"),
    }
}

/// The next batch of the WAL not yet handed out.
pub enum Unsent {
    /// Its sequence number (to acknowledge) and the batch.
    Batch(u64, Batch),
    /// A batch that cannot be decoded (its CRC was right, so it was written by another version,
    /// or a bug): acknowledged, logged, and its records counted here as lost.
    Undecodable(u32),
    /// Nothing left.
    None,
}

/// Takes the next batch `wal` has not handed out.
///
/// # Errors
/// When the WAL cannot be read.
pub fn next_unsent(wal: &mut Wal, sink: &str) -> anyhow::Result<Unsent> {
    let Some(stored) = wal.next_unsent().context("cannot read the WAL")? else {
        return Ok(Unsent::None);
    };
    match Batch::decode_wal(stored.shard, &stored.payload) {
        Ok(batch) => Ok(Unsent::Batch(stored.seq, batch)),
        Err(e) => {
            tracing::error!(
                "{sink}: WAL batch seq {} ({} records) cannot be decoded, skipped: {e}",
                stored.seq,
                stored.records
            );
            wal.acknowledge(stored.seq);
            Ok(Unsent::Undecodable(stored.records))
        }
    }
}
