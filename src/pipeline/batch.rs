//! Batches: the unit that moves from a shard to the sinks.
//!
//! A shard encodes every record straight into the batch it is filling (no allocation per line:
//! the buffer grows once and is then reused by the next batch of the same size), and hands the
//! whole batch to its ring when the batch is full or old enough. Everything after the ring
//! (store, stdout, later Kafka and the WAL) works on whole batches, so the cost of the hand-off
//! between threads is paid once per batch, not once per line.
//!
//! Layout: the encoded values of all records stand back to back in one buffer; `records` holds,
//! for each record, where its value ends and when it was received. Record `i` is
//! `data[records[i-1].end .. records[i].end]` (the first starts at 0).

use std::time::Instant;

/// Per-record metadata kept beside the encoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordMeta {
    /// Offset one past the last byte of this record's value in `Batch::data`.
    end: u32,
    /// When the gateway received the record, in microseconds since the Unix epoch.
    received_at_us: i64,
}

/// One record of a batch, as the sinks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// When the gateway received the record, in microseconds since the Unix epoch.
    pub received_at_us: i64,
    /// The encoded record (JSON or raw bytes, per the configured encoding), without a newline.
    pub value: &'a [u8],
}

/// A batch of encoded records cut from one shard, in the order the shard received them.
#[derive(Debug)]
pub struct Batch {
    shard: u16,
    data: Vec<u8>,
    records: Vec<RecordMeta>,
    /// When the first record went in: the batch's age for cutting, and the start of the
    /// in-gateway latency measured when a sink has written it.
    opened_at: Option<Instant>,
}

impl Batch {
    /// An empty batch for `shard`, with room reserved for `bytes` of values and `records` records.
    pub fn with_capacity(shard: u16, bytes: usize, records: usize) -> Self {
        Batch {
            shard,
            data: Vec::with_capacity(bytes),
            records: Vec::with_capacity(records),
            opened_at: None,
        }
    }

    /// The shard that cut this batch.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Total bytes of encoded values.
    pub fn value_bytes(&self) -> usize {
        self.data.len()
    }

    /// When the first record went in (`None` while empty).
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// Appends one record whose value `encode` writes at the end of the buffer it is given.
    /// `encode` must only append.
    pub fn push_with(&mut self, received_at_us: i64, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.opened_at.is_none() {
            self.opened_at = Some(Instant::now());
        }
        encode(&mut self.data);
        let end = u32::try_from(self.data.len())
            .expect("a batch is cut long before its buffer reaches 4 GiB");
        self.records.push(RecordMeta {
            end,
            received_at_us,
        });
    }

    /// Appends one record whose value is `value`.
    pub fn push(&mut self, received_at_us: i64, value: &[u8]) {
        self.push_with(received_at_us, |buf| buf.extend_from_slice(value));
    }

    /// The records in the order they were pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Entry<'_>> + '_ {
        let mut start = 0usize;
        self.records.iter().map(move |meta| {
            let end = meta.end as usize;
            let value = &self.data[start..end];
            start = end;
            Entry {
                received_at_us: meta.received_at_us,
                value,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_with_their_timestamps() {
        let mut batch = Batch::with_capacity(3, 16, 2);
        assert!(batch.is_empty());
        assert_eq!(batch.opened_at(), None);
        batch.push(10, b"first");
        batch.push_with(20, |buf| buf.extend_from_slice(b"second"));
        batch.push(30, b"");
        assert_eq!(batch.shard(), 3);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.value_bytes(), 11);
        assert!(batch.opened_at().is_some());
        let entries: Vec<(i64, &[u8])> =
            batch.iter().map(|e| (e.received_at_us, e.value)).collect();
        assert_eq!(
            entries,
            vec![(10, &b"first"[..]), (20, &b"second"[..]), (30, &b""[..])]
        );
    }
}
