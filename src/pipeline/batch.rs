//! Batches: the unit that moves from a shard to the sinks, and the WAL's payload.
//!
//! A shard encodes every record straight into the batch it is filling (no allocation per line:
//! the buffers grow once and the next batch is sized like the last), and hands the whole batch
//! to its ring when the batch is full or old enough. Everything after the ring (store, stdout,
//! Kafka and the WAL) works on whole batches, so the cost of the hand-off between threads is
//! paid once per batch, not once per line.
//!
//! Layout: a record is a value (the encoded record), a Kafka key and a Kafka topic (both empty
//! unless the shard has a [`Route`](crate::kafka::route::Route)). The values of all records stand back
//! to back in one buffer, the keys in a second and the topics in a third; `records` holds, for
//! each record, where its value, key and topic end, and when it was received. Record `i`'s value
//! is `values[records[i-1].value_end .. records[i].value_end]` (the first starts at 0), and
//! likewise for keys and topics.
//!
//! # WAL payload format
//!
//! [`Batch::encode_wal`] writes a batch as one WAL payload and [`Batch::decode_wal`] reads it
//! back (the WAL adds the framing, checksum, shard, record count and lz4 compression around it).
//! Every integer is little-endian:
//!
//! ```text
//! struct BatchPayload {
//!     version:        u8,                 // 1
//!     record_count:   u32,                // n
//!     records:        [RecordLengths; n], // in the order the records were received
//!     values:         [u8],               // sum of value_len: the values back to back
//!     keys:           [u8],               // sum of key_len
//!     topics:         [u8],               // sum of topic_len; then the payload ends
//! }
//! struct RecordLengths {                  // 20 bytes
//!     received_at_us: i64,                //  0  microseconds since the Unix epoch
//!     value_len:      u32,                //  8
//!     key_len:        u32,                // 12  0: no key (a Kafka null key)
//!     topic_len:      u32,                // 16  0: the sink's fixed or fallback topic
//! }
//! ```
//!
//! Keeping the three byte areas apart from the lengths lets encoding copy each buffer whole.
//! Decoding checks every length against the bytes actually there before it allocates or
//! copies anything, so bad bytes give a [`BatchDecodeError`], never a panic, and never an
//! allocation larger than the payload.

use std::sync::Arc;
use std::time::Instant;

use crate::ack::AckToken;
use crate::encode::json::IndexedFields;
use crate::metrics::StoreQuota;

/// [`Batch::encode_wal`]'s format version.
const WAL_FORMAT_VERSION: u8 = 1;
/// `version` and `record_count`.
const WAL_HEADER_LEN: usize = 5;
/// One `RecordLengths`.
const WAL_RECORD_LEN: usize = 20;

/// Per-record metadata kept beside the byte areas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordMeta {
    /// Offset one past the last byte of this record's value in `Batch::values`.
    value_end: u32,
    /// Offset one past the last byte of this record's key in `Batch::keys`.
    key_end: u32,
    /// Offset one past the last byte of this record's topic in `Batch::topics`.
    topic_end: u32,
    /// When the gateway received the record, in microseconds since the Unix epoch.
    received_at_us: i64,
}

/// One record of a batch, as the sinks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord<'a> {
    /// When the gateway received the record, in microseconds since the Unix epoch.
    pub received_at_us: i64,
    /// The encoded record (JSON or raw bytes, per the configured encoding), without a newline.
    pub value: &'a [u8],
    /// The Kafka message key; empty for none (a null key).
    pub key: &'a [u8],
    /// The Kafka topic (a legal topic name when a [`Route`](crate::kafka::route::Route) rendered it);
    /// empty for the sink's fixed or fallback topic.
    pub topic: &'a [u8],
}

/// Why [`Batch::decode_wal`] refused a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchDecodeError {
    /// The payload is shorter than its header, record lengths and byte areas say.
    #[error("batch payload truncated: {needed} bytes needed, {available} present")]
    Truncated { needed: u64, available: usize },
    /// The payload holds bytes after the last byte area.
    #[error("batch payload has {extra} bytes after its last record")]
    TrailingBytes { extra: usize },
    /// A format version this build does not know.
    #[error(
        "batch payload format version {0} is not supported (this build reads version \
         {WAL_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    /// The payload is larger than a batch can be (its offsets are 32-bit).
    #[error("batch payload of {0} bytes is larger than 4 GiB")]
    TooLarge(usize),
}

/// A batch of encoded records cut from one shard, in the order the shard received them.
#[derive(Debug)]
pub struct Batch {
    shard: u16,
    values: Vec<u8>,
    keys: Vec<u8>,
    topics: Vec<u8>,
    records: Vec<RecordMeta>,
    /// When the first record went in: the batch's age for cutting, and the start of the
    /// in-gateway latency measured when a sink has written it.
    opened_at: Option<Instant>,
    /// Acknowledgements owed to senders once this batch is durable (see [`super::ack`]). Never
    /// part of the WAL payload: once a batch is in the WAL they are released.
    acks: Vec<AckToken>,
    /// Bytes of values per listener with a store quota, for the store sink to charge once the
    /// batch is stored. One entry per such listener in the batch (a few at most), so finding
    /// one is a short scan. Not part of the WAL payload either: only the store has quotas.
    store_charges: Vec<(Arc<StoreQuota>, u64)>,
    /// For record `i`, where its encoder wrote the members the store's block index reads, if it
    /// said ([`IndexedFields`]); shorter than `records` when the last records have none (empty
    /// for a batch that has none). Lets the store index a record without reading its JSON
    /// again. Not part of the WAL payload: a replayed batch is indexed from its JSON.
    index_fields: Vec<Option<IndexedFields>>,
}

impl Batch {
    /// An empty batch for `shard`, with room reserved for `bytes` of values and `records` records.
    pub fn with_capacity(shard: u16, bytes: usize, records: usize) -> Self {
        Batch {
            shard,
            values: Vec::with_capacity(bytes),
            keys: Vec::new(),
            topics: Vec::new(),
            records: Vec::with_capacity(records),
            opened_at: None,
            acks: Vec::new(),
            store_charges: Vec::new(),
            index_fields: Vec::new(),
        }
    }

    /// A batch for `shard` holding copies of `entries`, in order. Its `opened_at` is `None`:
    /// these records were received at various times, see their `received_at_us`.
    pub fn from_entries<'a>(
        shard: u16,
        entries: impl IntoIterator<Item = BatchRecord<'a>>,
    ) -> Self {
        let entries = entries.into_iter();
        let mut batch = Batch::with_capacity(shard, 0, entries.size_hint().0);
        for entry in entries {
            batch.append(
                entry.received_at_us,
                |keys| keys.extend_from_slice(entry.key),
                |topics| topics.extend_from_slice(entry.topic),
                |values| values.extend_from_slice(entry.value),
            );
        }
        batch
    }

    /// Reserves room for `key_bytes` more bytes of keys and `topic_bytes` of topics.
    pub fn reserve_keys_and_topics(&mut self, key_bytes: usize, topic_bytes: usize) {
        self.keys.reserve(key_bytes);
        self.topics.reserve(topic_bytes);
    }

    /// Reserves room for the [`IndexedFields`] of `records` records.
    pub fn reserve_index_fields(&mut self, records: usize) {
        self.index_fields.reserve(records);
    }

    /// How many records the batch holds [`IndexedFields`] slots for (for sizing the next one).
    pub fn index_fields_len(&self) -> usize {
        self.index_fields.len()
    }

    /// Records where the encoder of the last record pushed wrote its indexed members. Does
    /// nothing on an empty batch.
    pub fn set_index_fields(&mut self, fields: IndexedFields) {
        let Some(last) = self.records.len().checked_sub(1) else {
            return;
        };
        self.index_fields.resize(last, None);
        self.index_fields.push(Some(fields));
    }

    /// Where record `i`'s indexed members are, if its encoder said.
    pub fn index_fields(&self, i: usize) -> Option<&IndexedFields> {
        self.index_fields.get(i).and_then(Option::as_ref)
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
        self.values.len()
    }

    /// Total bytes of keys.
    pub fn key_bytes(&self) -> usize {
        self.keys.len()
    }

    /// Total bytes of topics.
    pub fn topic_bytes(&self) -> usize {
        self.topics.len()
    }

    /// Adds the acknowledgement owed once this batch is durable.
    pub fn attach_ack(&mut self, token: AckToken) {
        self.acks.push(token);
    }

    /// Takes the acknowledgements owed for this batch, for the sink that writes it.
    pub fn take_acks(&mut self) -> Vec<AckToken> {
        std::mem::take(&mut self.acks)
    }

    /// Adds `bytes` of values to what `quota`'s listener has in this batch.
    pub fn charge_store_quota(&mut self, quota: &Arc<StoreQuota>, bytes: u64) {
        match self
            .store_charges
            .iter_mut()
            .find(|(q, _)| Arc::ptr_eq(q, quota))
        {
            Some((_, charged)) => *charged += bytes,
            None => self.store_charges.push((quota.clone(), bytes)),
        }
    }

    /// The bytes of values each listener with a store quota has in this batch.
    pub fn store_charges(&self) -> &[(Arc<StoreQuota>, u64)] {
        &self.store_charges
    }

    /// When the first record went in (`None` while empty, and for a batch decoded from the WAL
    /// or made [`from_entries`](Batch::from_entries)).
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at
    }

    /// Appends one record: `key`, `topic` and `value` each write that part at the end of the
    /// buffer they are given (nothing for an empty key or topic), and must only append.
    pub fn push_routed(
        &mut self,
        received_at_us: i64,
        key: impl FnOnce(&mut Vec<u8>),
        topic: impl FnOnce(&mut Vec<u8>),
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        if self.opened_at.is_none() {
            self.opened_at = Some(Instant::now());
        }
        self.append(received_at_us, key, topic, value);
    }

    /// Appends one record without key or topic, whose value `encode` writes at the end of the
    /// buffer it is given. `encode` must only append.
    pub fn push_with(&mut self, received_at_us: i64, encode: impl FnOnce(&mut Vec<u8>)) {
        self.push_routed(received_at_us, |_| {}, |_| {}, encode);
    }

    /// Appends one record without key or topic whose value is `value`.
    pub fn push(&mut self, received_at_us: i64, value: &[u8]) {
        self.push_with(received_at_us, |buf| buf.extend_from_slice(value));
    }

    /// [`push_routed`](Batch::push_routed) without touching `opened_at`.
    fn append(
        &mut self,
        received_at_us: i64,
        key: impl FnOnce(&mut Vec<u8>),
        topic: impl FnOnce(&mut Vec<u8>),
        value: impl FnOnce(&mut Vec<u8>),
    ) {
        key(&mut self.keys);
        topic(&mut self.topics);
        value(&mut self.values);
        self.records.push(RecordMeta {
            value_end: end_offset(&self.values),
            key_end: end_offset(&self.keys),
            topic_end: end_offset(&self.topics),
            received_at_us,
        });
    }

    /// The records in the order they were pushed.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = BatchRecord<'_>> + '_ {
        let (mut value_start, mut key_start, mut topic_start) = (0, 0, 0);
        self.records.iter().map(move |meta| {
            let (value_end, key_end, topic_end) = (
                meta.value_end as usize,
                meta.key_end as usize,
                meta.topic_end as usize,
            );
            let entry = BatchRecord {
                received_at_us: meta.received_at_us,
                value: &self.values[value_start..value_end],
                key: &self.keys[key_start..key_end],
                topic: &self.topics[topic_start..topic_end],
            };
            (value_start, key_start, topic_start) = (value_end, key_end, topic_end);
            entry
        })
    }

    /// Appends the batch to `out` in the WAL payload format (see the [module docs](self)).
    pub fn encode_wal(&self, out: &mut Vec<u8>) {
        let record_count = u32::try_from(self.records.len())
            .expect("a batch is cut long before it holds 4 billion records");
        out.reserve(
            WAL_HEADER_LEN
                + WAL_RECORD_LEN * self.records.len()
                + self.values.len()
                + self.keys.len()
                + self.topics.len(),
        );
        out.push(WAL_FORMAT_VERSION);
        out.extend_from_slice(&record_count.to_le_bytes());
        let (mut value_start, mut key_start, mut topic_start) = (0, 0, 0);
        for meta in &self.records {
            out.extend_from_slice(&meta.received_at_us.to_le_bytes());
            out.extend_from_slice(&(meta.value_end - value_start).to_le_bytes());
            out.extend_from_slice(&(meta.key_end - key_start).to_le_bytes());
            out.extend_from_slice(&(meta.topic_end - topic_start).to_le_bytes());
            (value_start, key_start, topic_start) = (meta.value_end, meta.key_end, meta.topic_end);
        }
        out.extend_from_slice(&self.values);
        out.extend_from_slice(&self.keys);
        out.extend_from_slice(&self.topics);
    }

    /// Reads a batch of `shard` written by [`encode_wal`](Batch::encode_wal). Its `opened_at`
    /// is `None`.
    ///
    /// # Errors
    /// When `payload` is not exactly one batch in a format version this build reads.
    pub fn decode_wal(shard: u16, payload: &[u8]) -> Result<Batch, BatchDecodeError> {
        let truncated = |needed: u64| BatchDecodeError::Truncated {
            needed,
            available: payload.len(),
        };
        if u32::try_from(payload.len()).is_err() {
            return Err(BatchDecodeError::TooLarge(payload.len()));
        }
        let (&version, rest) = payload
            .split_first()
            .ok_or(truncated(WAL_HEADER_LEN as u64))?;
        if version != WAL_FORMAT_VERSION {
            return Err(BatchDecodeError::UnsupportedVersion(version));
        }
        let (record_count, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(truncated(WAL_HEADER_LEN as u64))?;
        let record_count = u32::from_le_bytes(*record_count) as usize;
        // At most 2^32 - 1 records of 20 bytes: no overflow in u64.
        let table_len = record_count as u64 * WAL_RECORD_LEN as u64;
        let table = rest
            .get(..table_len as usize)
            .ok_or(truncated(WAL_HEADER_LEN as u64 + table_len))?;
        let areas = &rest[table.len()..];

        // The table fits in the payload, so `record_count` is bounded by its length.
        let mut records = Vec::with_capacity(record_count);
        // Each end stays at most `areas.len()` (< 4 GiB), checked after every record, so the
        // sums cannot overflow and fit the u32 offsets.
        let (mut value_end, mut key_end, mut topic_end) = (0u64, 0u64, 0u64);
        for lengths in table.chunks_exact(WAL_RECORD_LEN) {
            let (received_at_us, lengths) = lengths
                .split_first_chunk::<8>()
                .expect("a chunk of 20 bytes");
            let [value_len, key_len, topic_len] = [0, 4, 8].map(|at| {
                let mut len = [0u8; 4];
                len.copy_from_slice(&lengths[at..at + 4]);
                u64::from(u32::from_le_bytes(len))
            });
            value_end += value_len;
            key_end += key_len;
            topic_end += topic_len;
            let areas_len = value_end + key_end + topic_end;
            if areas_len > areas.len() as u64 {
                return Err(truncated((WAL_HEADER_LEN + table.len()) as u64 + areas_len));
            }
            records.push(RecordMeta {
                value_end: value_end as u32,
                key_end: key_end as u32,
                topic_end: topic_end as u32,
                received_at_us: i64::from_le_bytes(*received_at_us),
            });
        }
        let (value_end, key_end, topic_end) =
            (value_end as usize, key_end as usize, topic_end as usize);
        let extra = areas.len() - (value_end + key_end + topic_end);
        if extra > 0 {
            return Err(BatchDecodeError::TrailingBytes { extra });
        }
        let (values, rest) = areas.split_at(value_end);
        let (keys, topics) = rest.split_at(key_end);
        debug_assert_eq!(topics.len(), topic_end);
        Ok(Batch {
            shard,
            values: values.to_vec(),
            keys: keys.to_vec(),
            topics: topics.to_vec(),
            records,
            opened_at: None,
            acks: Vec::new(),
            store_charges: Vec::new(),
            index_fields: Vec::new(),
        })
    }
}

/// The length of `buffer` as a record end offset.
fn end_offset(buffer: &[u8]) -> u32 {
    u32::try_from(buffer.len()).expect("a batch is cut long before a buffer reaches 4 GiB")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `(received_at_us, value, key, topic)` of every record.
    type Parts<'a> = Vec<(i64, &'a [u8], &'a [u8], &'a [u8])>;

    /// `(received_at_us, value, key, topic)` of one record to push.
    type OwnedRecord = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

    fn parts(batch: &Batch) -> Parts<'_> {
        batch
            .iter()
            .map(|e| (e.received_at_us, e.value, e.key, e.topic))
            .collect()
    }

    fn push_all(batch: &mut Batch, records: &[OwnedRecord]) {
        for (at, value, key, topic) in records {
            batch.push_routed(
                *at,
                |keys| keys.extend_from_slice(key),
                |topics| topics.extend_from_slice(topic),
                |values| values.extend_from_slice(value),
            );
        }
    }

    /// A batch with a routed record between two unrouted ones.
    fn mixed_batch() -> Batch {
        let mut batch = Batch::with_capacity(3, 16, 2);
        batch.push(10, b"first");
        batch.push_routed(
            20,
            |keys| keys.extend_from_slice(b"web-1"),
            |topics| topics.extend_from_slice(b"logs.sshd"),
            |values| values.extend_from_slice(b"second"),
        );
        batch.push_with(-30, |buf| buf.extend_from_slice(b""));
        batch
    }

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
        assert_eq!(
            parts(&batch),
            vec![
                (10, &b"first"[..], &b""[..], &b""[..]),
                (20, b"second", b"", b""),
                (30, b"", b"", b"")
            ]
        );
    }

    #[test]
    fn routed_records_keep_their_key_and_topic() {
        let batch = mixed_batch();
        assert_eq!(
            (batch.value_bytes(), batch.key_bytes(), batch.topic_bytes()),
            (11, 5, 9)
        );
        assert_eq!(
            parts(&batch),
            vec![
                (10, &b"first"[..], &b""[..], &b""[..]),
                (20, b"second", b"web-1", b"logs.sshd"),
                (-30, b"", b"", b"")
            ]
        );
    }

    #[test]
    fn wal_payload_has_the_documented_layout() {
        let mut out = b"x".to_vec();
        mixed_batch().encode_wal(&mut out);
        let expected = [
            &b"x"[..],
            &[1],
            &3u32.to_le_bytes(),
            &10i64.to_le_bytes(),
            &[5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &20i64.to_le_bytes(),
            &[6, 0, 0, 0, 5, 0, 0, 0, 9, 0, 0, 0],
            &(-30i64).to_le_bytes(),
            &[0; 12],
            b"firstsecond",
            b"web-1",
            b"logs.sshd",
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn wal_payload_round_trips() {
        let batch = mixed_batch();
        let mut payload = Vec::new();
        batch.encode_wal(&mut payload);
        let decoded = Batch::decode_wal(7, &payload).unwrap();
        assert_eq!(decoded.shard(), 7);
        assert_eq!(decoded.opened_at(), None);
        assert_eq!(parts(&decoded), parts(&batch));

        let mut payload = Vec::new();
        Batch::with_capacity(0, 0, 0).encode_wal(&mut payload);
        assert_eq!(payload, [1, 0, 0, 0, 0]);
        assert!(Batch::decode_wal(0, &payload).unwrap().is_empty());
    }

    fn decode_error(payload: &[u8]) -> BatchDecodeError {
        Batch::decode_wal(0, payload).unwrap_err()
    }

    #[test]
    fn bad_wal_payloads_are_errors() {
        let mut payload = Vec::new();
        mixed_batch().encode_wal(&mut payload);
        assert_eq!(payload.len(), 5 + 3 * 20 + 25);
        let truncated = |needed: u64, available| BatchDecodeError::Truncated { needed, available };
        assert_eq!(decode_error(&[]), truncated(5, 0));
        assert_eq!(decode_error(&[1, 3, 0]), truncated(5, 3));
        assert_eq!(decode_error(&payload[..64]), truncated(65, 64));
        assert_eq!(decode_error(&payload[..89]), truncated(90, 89));
        let mut longer = payload.clone();
        longer.extend_from_slice(b"ab");
        assert_eq!(
            decode_error(&longer),
            BatchDecodeError::TrailingBytes { extra: 2 }
        );
        let mut version_2 = payload.clone();
        version_2[0] = 2;
        let error = decode_error(&version_2);
        assert_eq!(error, BatchDecodeError::UnsupportedVersion(2));
        assert_eq!(
            error.to_string(),
            "batch payload format version 2 is not supported (this build reads version 1)"
        );
        // A record count of 2^32 - 1 is refused before anything is allocated for it.
        let mut huge_count = payload.clone();
        huge_count[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_error(&huge_count),
            truncated(5 + 20 * u64::from(u32::MAX), 90)
        );
        // A lying value length is caught at its record.
        let mut lying_len = payload.clone();
        lying_len[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_error(&lying_len),
            truncated(65 + u64::from(u32::MAX), 90)
        );
    }

    #[test]
    fn from_entries_copies_a_subset() {
        let batch = mixed_batch();
        let rebuilt = Batch::from_entries(9, batch.iter().filter(|e| e.received_at_us != 10));
        assert_eq!((rebuilt.shard(), rebuilt.opened_at()), (9, None));
        assert_eq!(
            parts(&rebuilt),
            vec![
                (20, &b"second"[..], &b"web-1"[..], &b"logs.sshd"[..]),
                (-30, b"", b"", b"")
            ]
        );
    }

    fn record() -> impl Strategy<Value = OwnedRecord> {
        (
            any::<i64>(),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..8),
            prop::collection::vec(any::<u8>(), 0..8),
        )
    }

    proptest! {
        #[test]
        fn any_batch_round_trips_through_the_wal_format(
            shard in any::<u16>(),
            records in prop::collection::vec(record(), 0..40),
        ) {
            let mut batch = Batch::with_capacity(shard, 0, 0);
            push_all(&mut batch, &records);
            let mut payload = Vec::new();
            batch.encode_wal(&mut payload);
            let decoded = Batch::decode_wal(shard, &payload).unwrap();
            prop_assert_eq!(decoded.shard(), shard);
            prop_assert_eq!(parts(&decoded), parts(&batch));
            let again = Batch::from_entries(shard, decoded.iter());
            prop_assert_eq!(parts(&again), parts(&batch));
        }

        #[test]
        fn any_bytes_decode_to_a_batch_or_an_error(
            payload in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            if let Ok(batch) = Batch::decode_wal(0, &payload) {
                let mut encoded = Vec::new();
                batch.encode_wal(&mut encoded);
                prop_assert_eq!(encoded, payload);
            }
        }

        #[test]
        fn cut_payloads_are_errors_and_flipped_bytes_never_panic(
            records in prop::collection::vec(record(), 1..10),
            cut in any::<prop::sample::Index>(),
            flip_at in any::<prop::sample::Index>(),
            flip in 1..=255u8,
        ) {
            let mut batch = Batch::with_capacity(0, 0, 0);
            push_all(&mut batch, &records);
            let mut payload = Vec::new();
            batch.encode_wal(&mut payload);
            let mut flipped = payload.clone();
            flipped[flip_at.index(payload.len())] ^= flip;
            let _ = Batch::decode_wal(0, &flipped);
            let cut = cut.index(payload.len());
            prop_assert!(Batch::decode_wal(0, &payload[..cut]).is_err());
        }
    }
}
