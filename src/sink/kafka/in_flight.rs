//! The batches handed to the producer and not yet fully reported, found again by the slot
//! number each of their records carries as librdkafka's delivery opaque.
//!
//! # Invariants
//! - A slot holds at most one batch; its number is reused once the batch completes, so a batch
//!   also carries an `id` that tells it from a later one in the same slot.
//! - `records` and `bytes` are the sums over the batches in flight of their records not yet
//!   reported and of their value bytes: what the spill limits compare.
//! - The front of `order` is the oldest batch still in flight (stale entries are dropped as
//!   they reach the front), so its age is read in O(1).

use std::collections::VecDeque;
use std::time::Instant;

use super::BatchOrigin;
use crate::ack::AckToken;

/// A batch handed to the producer whose records are not all reported yet.
#[derive(Debug)]
pub(super) struct BatchInFlight {
    /// Set by [`BatchesInFlight::insert`]: tells this batch from a later one in the same slot.
    pub(super) id: u64,
    pub(super) origin: BatchOrigin,
    pub(super) records: u32,
    pub(super) remaining: u32,
    pub(super) failed: u32,
    pub(super) bytes: u64,
    pub(super) produced_at: Instant,
    pub(super) first_received_us: i64,
    pub(super) keep_unacknowledged: bool,
    /// Senders' acknowledgements owed once every record is acknowledged.
    pub(super) sender_acks: Vec<AckToken>,
}

/// The batches in flight, in slots that their records' delivery opaque names, and the order
/// they were produced in (for the age of the oldest).
#[derive(Debug, Default)]
pub(super) struct BatchesInFlight {
    slots: Vec<Option<BatchInFlight>>,
    free: Vec<usize>,
    /// `(slot, id)` in produce order; an entry whose slot no longer holds batch `id` is stale
    /// and is dropped when it reaches the front.
    order: VecDeque<(usize, u64)>,
    next_id: u64,
    pub(super) records: u64,
    pub(super) bytes: u64,
}

impl BatchesInFlight {
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub(super) fn insert(&mut self, mut batch: BatchInFlight) -> usize {
        self.records += u64::from(batch.remaining);
        self.bytes += batch.bytes;
        batch.id = self.next_id;
        self.next_id += 1;
        let id = batch.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(batch);
                slot
            }
            None => {
                self.slots.push(Some(batch));
                self.slots.len() - 1
            }
        };
        self.order.push_back((slot, id));
        slot
    }

    pub(super) fn origin(&self, slot: usize) -> Option<BatchOrigin> {
        self.slots.get(slot)?.as_ref().map(|b| b.origin)
    }

    /// Attaches senders' acknowledgements to the batch in `slot`, just produced. Should it be
    /// gone already, they are dropped unreleased: their senders resend, nothing is lost.
    pub(super) fn hold_sender_acks(&mut self, slot: usize, acks: Vec<AckToken>) {
        if let Some(Some(batch)) = self.slots.get_mut(slot) {
            batch.sender_acks.extend(acks);
        }
    }

    pub(super) fn keep_unacknowledged(&mut self, slot: usize) {
        if let Some(Some(batch)) = self.slots.get_mut(slot) {
            batch.keep_unacknowledged = true;
        }
    }

    /// Counts one record's report; returns the batch once all its records are reported.
    pub(super) fn report(&mut self, slot: usize, failed: bool) -> Option<BatchInFlight> {
        let batch = self.slots.get_mut(slot)?.as_mut()?;
        batch.remaining = batch.remaining.saturating_sub(1);
        batch.failed += u32::from(failed);
        self.records = self.records.saturating_sub(1);
        if batch.remaining > 0 {
            return None;
        }
        let batch = self.slots[slot].take()?;
        self.bytes = self.bytes.saturating_sub(batch.bytes);
        self.free.push(slot);
        while let Some(&(slot, id)) = self.order.front() {
            if self.slots[slot].as_ref().is_some_and(|b| b.id == id) {
                break;
            }
            self.order.pop_front();
        }
        Some(batch)
    }

    /// Records in flight that came straight from the rings (so are nowhere else).
    pub(super) fn direct_records(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .filter(|b| b.origin == BatchOrigin::Direct)
            .map(|b| u64::from(b.remaining))
            .sum()
    }

    /// When the oldest batch still in flight was produced.
    pub(super) fn oldest_produced_at(&self) -> Option<Instant> {
        let &(slot, _) = self.order.front()?;
        self.slots[slot].as_ref().map(|b| b.produced_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn batch(origin: BatchOrigin, records: u32, produced_at: Instant) -> BatchInFlight {
        BatchInFlight {
            id: 0,
            origin,
            records,
            remaining: records,
            failed: 0,
            bytes: u64::from(records) * 10,
            produced_at,
            first_received_us: 0,
            keep_unacknowledged: false,
            sender_acks: Vec::new(),
        }
    }

    #[test]
    fn in_flight_batches_complete_when_every_record_is_reported_and_slots_are_reused() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        let t2 = t0 + Duration::from_millis(2);
        let mut in_flight = BatchesInFlight::default();
        let a = in_flight.insert(batch(BatchOrigin::Wal(7), 2, t0));
        let b = in_flight.insert(batch(BatchOrigin::Direct, 1, t1));
        assert_eq!((in_flight.records, in_flight.bytes), (3, 30));
        assert_eq!(in_flight.oldest_produced_at(), Some(t0));

        // b completes first; a is still the oldest.
        let done = in_flight.report(b, false).expect("b complete");
        assert_eq!(done.origin, BatchOrigin::Direct);
        assert_eq!(in_flight.oldest_produced_at(), Some(t0));
        // b's slot is reused by c, which must not be taken for the old b in the order.
        let c = in_flight.insert(batch(BatchOrigin::Direct, 1, t2));
        assert_eq!(c, b);

        assert!(in_flight.report(a, true).is_none());
        let done = in_flight.report(a, false).expect("a complete");
        assert_eq!((done.origin, done.failed), (BatchOrigin::Wal(7), 1));
        assert_eq!(in_flight.oldest_produced_at(), Some(t2));
        assert!(!in_flight.is_empty());
        assert!(in_flight.report(c, false).is_some());
        assert!(in_flight.is_empty());
        assert_eq!((in_flight.records, in_flight.bytes), (0, 0));
        assert_eq!(in_flight.oldest_produced_at(), None);
        // A report for a slot with nothing in it is ignored.
        assert!(in_flight.report(a, false).is_none());
    }
}
