//! The live tail: every record the sink writes, offered to whoever follows them as they are
//! written (the HTTP API's `GET /api/v1/tail`), never holding the sink up.
//!
//! # Cost
//! - Nobody following: one relaxed atomic load per batch in the sink thread
//!   ([`LiveTail::is_followed`]); nothing is copied.
//! - Someone following: the sink thread copies each written batch's values once into a shared
//!   [`TailBatch`] (one allocation and one copy per batch, whatever the number of
//!   subscribers), then offers it to each subscriber's queue without waiting. Filtering by the
//!   query is the subscriber's work, on its own thread, never the sink's.
//!
//! # Bounds
//! A subscriber's queue holds at most [`MAX_QUEUED_BYTES`] of values; a batch that does not fit
//! is not queued for it, and its records are counted in the subscriber's `dropped` count
//! ([`TailSubscription::take_dropped`]) instead. Batches are shared, so all queues together hold
//! at most about [`MAX_QUEUED_BYTES`] plus the batch being offered. At most `max_subscribers`
//! follow at once; [`LiveTail::subscribe`] refuses more.
//!
//! Lock: `queues` is taken by the sink thread once per batch while someone follows, and by
//! subscribe/unsubscribe; never held across anything that waits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::pipeline::batch::Batch;

/// The most one subscriber's queue holds, in bytes of record values: about 40,000 records of
/// 200 bytes, 0.4 s at 100k lines/s.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

/// Records of one written batch, in order, shared by every subscriber.
#[derive(Debug)]
pub struct TailBatch {
    values: Vec<u8>,
    /// Where each record's value ends in `values`.
    ends: Vec<usize>,
}

impl TailBatch {
    /// The records' values, in the order they were written.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let value = &self.values[start..end];
            start = end;
            value
        })
    }

    /// Every record's value, back to back (for a prefilter that looks for required text in
    /// the whole batch at once).
    pub fn bytes(&self) -> &[u8] {
        &self.values
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// A batch of `records`, for tests of subscribers.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> TailBatch {
        let mut batch = TailBatch {
            values: Vec::new(),
            ends: Vec::new(),
        };
        for record in records {
            batch.values.extend_from_slice(record);
            batch.ends.push(batch.values.len());
        }
        batch
    }
}

/// One subscriber's end of the hub.
struct Queue {
    id: u64,
    sender: mpsc::UnboundedSender<Arc<TailBatch>>,
    counts: Arc<QueueCounts>,
}

#[derive(Debug, Default)]
struct QueueCounts {
    /// Bytes of values queued and not yet taken.
    queued_bytes: AtomicUsize,
    /// Records not queued for a full queue, since the subscriber last took the count.
    dropped: AtomicU64,
}

/// The hub the sink thread feeds and subscribers follow.
#[derive(Debug)]
pub struct LiveTail {
    followers: AtomicUsize,
    max_subscribers: usize,
    queues: Mutex<Vec<Queue>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("id", &self.id).finish()
    }
}

impl LiveTail {
    /// A hub that at most `max_subscribers` follow at once.
    pub fn new(max_subscribers: usize) -> Arc<LiveTail> {
        Arc::new(LiveTail {
            followers: AtomicUsize::new(0),
            max_subscribers,
            queues: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// Whether anyone follows: the sink thread's one check per batch.
    #[inline]
    pub fn is_followed(&self) -> bool {
        self.followers.load(Ordering::Relaxed) > 0
    }

    /// The number of subscribers now.
    pub fn subscribers(&self) -> usize {
        self.followers.load(Ordering::Relaxed)
    }

    /// Follows the records written from now on; `None` when `max_subscribers` already follow.
    pub fn subscribe(self: &Arc<Self>) -> Option<TailSubscription> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if queues.len() >= self.max_subscribers {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        let counts = Arc::new(QueueCounts::default());
        queues.push(Queue {
            id,
            sender,
            counts: counts.clone(),
        });
        self.followers.store(queues.len(), Ordering::Relaxed);
        Some(TailSubscription {
            id,
            hub: self.clone(),
            receiver,
            counts,
        })
    }

    /// Offers the records of `batch`, just written, to every subscriber (see the module doc).
    pub fn publish(&self, batch: &Batch) {
        if !self.is_followed() || batch.is_empty() {
            return;
        }
        let mut values = Vec::with_capacity(batch.value_bytes());
        let mut ends = Vec::with_capacity(batch.len());
        for record in batch.iter() {
            values.extend_from_slice(record.value);
            ends.push(values.len());
        }
        self.offer(Arc::new(TailBatch { values, ends }));
    }

    /// Offers `batch` to every subscriber's queue, without waiting.
    pub fn offer(&self, batch: Arc<TailBatch>) {
        let bytes = batch.values.len();
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for queue in queues.iter() {
            let queued = queue.counts.queued_bytes.load(Ordering::Relaxed);
            // An empty queue takes any batch, so a batch larger than the bound still gets
            // through to a subscriber that keeps up.
            if queued > 0 && queued + bytes > MAX_QUEUED_BYTES {
                queue
                    .counts
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                continue;
            }
            queue
                .counts
                .queued_bytes
                .fetch_add(bytes, Ordering::Relaxed);
            // A closed receiver is a subscription being dropped: it unsubscribes itself.
            let _ = queue.sender.send(batch.clone());
        }
    }

    fn unsubscribe(&self, id: u64) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|q| q.id != id);
        self.followers.store(queues.len(), Ordering::Relaxed);
    }
}

/// A subscriber: the batches written since it subscribed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct TailSubscription {
    id: u64,
    hub: Arc<LiveTail>,
    receiver: mpsc::UnboundedReceiver<Arc<TailBatch>>,
    counts: Arc<QueueCounts>,
}

impl TailSubscription {
    /// The next batch written (and not dropped for this subscriber).
    pub async fn next(&mut self) -> Option<Arc<TailBatch>> {
        let batch = self.receiver.recv().await?;
        self.counts
            .queued_bytes
            .fetch_sub(batch.values.len(), Ordering::Relaxed);
        Some(batch)
    }

    /// Records dropped for this subscriber since the last call (its queue was full).
    pub fn take_dropped(&self) -> u64 {
        self.counts.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for TailSubscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[&[u8]]) -> Batch {
        let mut batch = Batch::with_capacity(0, 1024, 16);
        for record in records {
            batch.push(1, record);
        }
        batch
    }

    #[tokio::test(flavor = "current_thread")]
    async fn subscribers_get_batches_written_after_they_subscribed_and_leave_on_drop() {
        let hub = LiveTail::new(2);
        assert!(!hub.is_followed());
        hub.publish(&batch(&[b"before"]));
        let mut first = hub.subscribe().unwrap();
        let second = hub.subscribe().unwrap();
        assert!(hub.subscribe().is_none(), "at most max_subscribers");
        assert_eq!(hub.subscribers(), 2);
        hub.publish(&batch(&[b"a", b"bc"]));
        let got = first.next().await.unwrap();
        assert_eq!(got.records().collect::<Vec<_>>(), [&b"a"[..], b"bc"]);
        drop(second);
        assert_eq!(hub.subscribers(), 1);
        drop(first);
        assert!(!hub.is_followed());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_counts_the_records_it_could_not_take() {
        let hub = LiveTail::new(1);
        let mut slow = hub.subscribe().unwrap();
        let big = vec![b'x'; MAX_QUEUED_BYTES / 4];
        for _ in 0..3 {
            hub.publish(&batch(&[&big, &big]));
        }
        // Two batches fit the bound exactly; the third's two records are counted.
        assert_eq!(slow.take_dropped(), 2);
        assert_eq!(slow.take_dropped(), 0);
        assert_eq!(slow.next().await.unwrap().len(), 2);
        assert_eq!(slow.next().await.unwrap().len(), 2);
        hub.publish(&batch(&[b"after"]));
        assert_eq!(
            slow.next().await.unwrap().records().collect::<Vec<_>>(),
            [&b"after"[..]]
        );
        assert_eq!(slow.take_dropped(), 0);
    }
}
