//! Per-shard rings: bounded queues of batches from one shard to the sink thread.
//!
//! Each shard owns the producing end of its own ring, so no two shards ever touch the same
//! queue (no lock or cache line shared between shards on the hot path). A ring holds whole
//! batches, so a hand-off costs one queue operation per batch (thousands of lines), not one per
//! line; its capacity in records is `capacity × batch_max_records`.
//!
//! Backpressure: [`RingProducer::try_push`] never blocks (a shard thread serves many sockets
//! and must not sleep on one). When it fails the shard keeps the batch, stops reading its
//! stream connections and drops datagrams (counted), and awaits
//! [`RingProducer::space`], which the consumer signals after every pop. The signal is a tokio
//! `Notify` permit, so a pop that happens between a failed push and the wait is not lost.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::Notify;

use super::batch::Batch;
use crate::metrics::{Gauge, RingMetrics};

struct Shared {
    space: Notify,
    metrics: Arc<RingMetrics>,
}

/// The shard's end of a ring.
pub struct RingProducer {
    tx: Sender<Batch>,
    shared: Arc<Shared>,
}

/// The sink's end of a ring.
pub struct RingConsumer {
    rx: Receiver<Batch>,
    shared: Arc<Shared>,
}

/// A ring for `shard` holding up to `capacity` batches; also returns its metrics.
pub fn ring(shard: u16, capacity: usize) -> (RingProducer, RingConsumer, Arc<RingMetrics>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let metrics = Arc::new(RingMetrics {
        shard,
        capacity_batches: capacity,
        records: Gauge::default(),
        batches: Gauge::default(),
    });
    let shared = Arc::new(Shared {
        space: Notify::new(),
        metrics: metrics.clone(),
    });
    (
        RingProducer {
            tx,
            shared: shared.clone(),
        },
        RingConsumer { rx, shared },
        metrics,
    )
}

/// Why a push failed; the batch comes back either way.
#[derive(Debug)]
pub enum PushError {
    /// The ring is full: wait for [`RingProducer::space`] and try again.
    Full(Batch),
    /// The consumer is gone (only during a failed shutdown).
    Closed(Batch),
}

impl RingProducer {
    /// Hands `batch` to the ring without blocking.
    // The batch comes back in the error by value: boxing it would cost an allocation per push.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, batch: Batch) -> Result<(), PushError> {
        let records = batch.len() as i64;
        match self.tx.try_send(batch) {
            Ok(()) => {
                let m = &self.shared.metrics;
                m.records.add(records);
                m.batches.add(1);
                Ok(())
            }
            Err(TrySendError::Full(batch)) => Err(PushError::Full(batch)),
            Err(TrySendError::Disconnected(batch)) => Err(PushError::Closed(batch)),
        }
    }

    /// Resolves after the consumer has taken a batch since the last call.
    pub async fn space(&self) {
        self.shared.space.notified().await;
    }
}

impl RingConsumer {
    /// The queue to select on.
    pub fn receiver(&self) -> &Receiver<Batch> {
        &self.rx
    }

    /// Books a batch taken from [`receiver`](Self::receiver) and wakes the producer.
    pub fn taken(&self, batch: &Batch) {
        let m = &self.shared.metrics;
        m.records.add(-(batch.len() as i64));
        m.batches.add(-1);
        self.shared.space.notify_one();
    }

    /// Takes a batch, blocking until one is there; `None` once the producer is gone and the ring
    /// is empty.
    pub fn recv(&self) -> Option<Batch> {
        let batch = self.rx.recv().ok()?;
        self.taken(&batch);
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: usize) -> Batch {
        let mut b = Batch::with_capacity(0, 0, records);
        for i in 0..records {
            b.push(i as i64, b"x");
        }
        b
    }

    #[test]
    fn full_ring_returns_the_batch_and_space_wakes_the_producer() {
        let (producer, consumer, metrics) = ring(0, 2);
        producer.try_push(batch(3)).unwrap();
        producer.try_push(batch(4)).unwrap();
        assert_eq!((metrics.records.get(), metrics.batches.get()), (7, 2));
        let rejected = match producer.try_push(batch(5)) {
            Err(PushError::Full(b)) => b,
            other => panic!("expected Full, got {other:?}"),
        };
        assert_eq!(rejected.len(), 5);

        assert_eq!(consumer.recv().map(|b| b.len()), Some(3));
        assert_eq!((metrics.records.get(), metrics.batches.get()), (4, 1));
        // The pop happened before anyone waited: the permit is kept, so this resolves at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), producer.space())
                .await
                .expect("space signalled");
        });
        producer.try_push(rejected).unwrap();
        drop(producer);
        assert_eq!(consumer.recv().map(|b| b.len()), Some(4));
        assert_eq!(consumer.recv().map(|b| b.len()), Some(5));
        assert!(consumer.recv().is_none());
        assert_eq!((metrics.records.get(), metrics.batches.get()), (0, 0));
    }
}
