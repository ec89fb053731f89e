//! The batches whose documents are not all indexed yet, each a [`Ticket`] in a slot that its
//! documents name ([`super::bulk::BulkItem::ticket`]).
//!
//! # Invariants
//! - A ticket completes when `remaining` reaches 0: every document indexed, found indexed
//!   (409) or dead-lettered, plus, for a batch from the rings, the hold its senders'
//!   acknowledgements take ([`Tickets::hold_acks`]), so a batch cannot complete before they are
//!   attached.
//! - `docs` and `bytes` are the sums over the tickets of their documents not yet resolved: what
//!   the spill limits compare.

use std::time::Instant;

use crate::ack::AckToken;

/// Where a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Straight from the rings: only in memory.
    Direct,
    /// From the WAL, with its sequence number.
    Wal(u64),
}

#[derive(Debug)]
pub struct Ticket {
    pub origin: Origin,
    /// Documents not yet resolved, plus 1 until the senders' acknowledgements are attached.
    remaining: u32,
    pub taken_at: Instant,
    pub acks: Vec<AckToken>,
}

#[derive(Debug, Default)]
pub struct Tickets {
    slots: Vec<Option<Ticket>>,
    free: Vec<usize>,
    pub docs: u64,
    pub bytes: u64,
}

impl Tickets {
    pub fn is_empty(&self) -> bool {
        self.slots.len() == self.free.len()
    }

    /// A ticket for `docs` documents of `bytes`; one from the rings also waits for its
    /// acknowledgements.
    pub fn open(&mut self, origin: Origin, docs: u32, bytes: u64) -> usize {
        self.docs += u64::from(docs);
        self.bytes += bytes;
        let ticket = Ticket {
            origin,
            remaining: docs + u32::from(origin == Origin::Direct),
            taken_at: Instant::now(),
            acks: Vec::new(),
        };
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(ticket);
                slot
            }
            None => {
                self.slots.push(Some(ticket));
                self.slots.len() - 1
            }
        }
    }

    /// Attaches the senders' acknowledgements to the ticket just opened in `slot`; the
    /// ticket, if now complete, is returned.
    pub fn hold_acks(&mut self, slot: usize, acks: Vec<AckToken>) -> Option<Ticket> {
        let ticket = self.slots.get_mut(slot)?.as_mut()?;
        ticket.acks.extend(acks);
        self.settle(slot, 1)
    }

    /// One document of `slot`, of `bytes`, is resolved; the ticket, if now complete.
    pub fn resolve(&mut self, slot: usize, bytes: u64) -> Option<Ticket> {
        self.docs = self.docs.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
        self.settle(slot, 1)
    }

    fn settle(&mut self, slot: usize, n: u32) -> Option<Ticket> {
        let ticket = self.slots.get_mut(slot)?.as_mut()?;
        ticket.remaining = ticket.remaining.saturating_sub(n);
        if ticket.remaining > 0 {
            return None;
        }
        self.free.push(slot);
        self.slots[slot].take()
    }

    /// When the oldest ticket was opened. Linear in the slots: there are at most a few hundred
    /// (the spill limit over the batch size).
    pub fn oldest(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|t| t.taken_at).min()
    }

    pub fn origin(&self, slot: usize) -> Option<Origin> {
        self.slots.get(slot)?.as_ref().map(|t| t.origin)
    }

    /// Takes every ticket still open (at shutdown).
    pub fn drain(&mut self) -> Vec<(usize, Ticket)> {
        let open = self
            .slots
            .iter_mut()
            .enumerate()
            .filter_map(|(slot, t)| t.take().map(|t| (slot, t)))
            .collect();
        self.slots.clear();
        self.free.clear();
        self.docs = 0;
        self.bytes = 0;
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_batch_completes_only_once_its_acks_are_attached_and_docs_resolved() {
        let mut tickets = Tickets::default();
        let slot = tickets.open(Origin::Direct, 2, 20);
        assert_eq!((tickets.docs, tickets.bytes), (2, 20));
        assert!(tickets.resolve(slot, 10).is_none());
        assert!(
            tickets.resolve(slot, 10).is_none(),
            "its acks are not attached yet"
        );
        let done = tickets.hold_acks(slot, Vec::new()).expect("complete");
        assert_eq!(done.origin, Origin::Direct);
        assert!(tickets.is_empty());
        assert_eq!((tickets.docs, tickets.bytes), (0, 0));
    }

    #[test]
    fn a_wal_batch_completes_with_its_last_document_and_slots_are_reused() {
        let mut tickets = Tickets::default();
        let a = tickets.open(Origin::Wal(7), 1, 5);
        let b = tickets.open(Origin::Wal(8), 1, 5);
        assert_eq!(
            tickets.resolve(a, 5).map(|t| t.origin),
            Some(Origin::Wal(7))
        );
        let c = tickets.open(Origin::Wal(9), 1, 5);
        assert_eq!(c, a);
        assert_eq!(tickets.origin(b), Some(Origin::Wal(8)));
        assert_eq!(tickets.drain().len(), 2);
        assert!(tickets.is_empty());
    }
}
