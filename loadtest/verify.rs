//! Reading back what came out, and counting it exactly: per sender a bitmap of sequence
//! numbers (delivered, duplicated, lost), per sender and partition the last sequence number
//! (reordered), and the end-to-end latency of every first delivery in an hdrhistogram, whole
//! and per second.
//!
//! Four readers feed the same [`Verifier`]:
//! - [`consume_kafka`]: an rdkafka consumer assigned every partition of the topic from the
//!   beginning, polling while the run goes on. "Available" is when the consumer receives the
//!   record; it fetches with `fetch.wait.max.ms = 10`, so the consumer adds at most ~10 ms.
//! - [`follow_store`]: the gateway's own store reader in follow mode (`logtail read --follow`),
//!   which polls for new blocks every ~100 ms: store latencies include up to that.
//! - [`follow_file`]: a file that grows line by line (rsyslog's `omfile`), polled every
//!   [`FILE_POLL`]: as often as the store reader polls, so that both local outputs are
//!   measured alike (each adds 0–100 ms).
//! - [`crate::elasticsearch::follow_index`]: the search server's index, walked with `_search`
//!   every 100 ms too; "available" is "searchable".
//!
//! Order is a per-partition property in Kafka (the store and a file are one partition): a line
//! is *reordered* when it arrives in a partition after a later line of the same sender in that
//! partition. Lines of one sender in different partitions have no order to keep.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::generate::now_us;
use crate::marker::{Found, MarkerFinder};

/// One sender's sequence numbers seen so far.
#[derive(Debug, Default, Clone)]
struct SenderSeen {
    /// Bit `seq` is set once `seq` arrived.
    bits: Vec<u64>,
    distinct: u64,
    /// (partition, highest seq seen in it).
    last_in_partition: Vec<(i32, u64)>,
}

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival, in order.
    New,
    /// First arrival, after a later line of the same sender in the same partition.
    NewReordered,
    /// Seen before.
    Duplicate,
}

/// Exact delivery counts per sender.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    senders: Vec<SenderSeen>,
    pub distinct: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

/// The partition of a reader whose output has no order to keep (an Elasticsearch index: bulks
/// in flight at once and several Kafka partitions interleave a sender's lines): its arrivals
/// are never counted as reordered.
pub const UNORDERED: i32 = -1;

/// The most senders a tally keeps (a marker naming more is someone else's or damaged).
const MAX_SENDERS: u32 = 1 << 20;
/// The highest sequence number a tally keeps a bit for (2^32: 512 MiB of bitmap for one sender).
const MAX_SEQ: u64 = 1 << 32;

impl Tally {
    /// Counts one arrival of `(sender, seq)` in `partition`; `None` when out of range.
    pub fn add(&mut self, sender: u32, seq: u64, partition: i32) -> Option<Arrival> {
        if sender >= MAX_SENDERS || seq >= MAX_SEQ {
            return None;
        }
        let s = sender as usize;
        if self.senders.len() <= s {
            self.senders.resize_with(s + 1, SenderSeen::default);
        }
        let seen = &mut self.senders[s];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if seen.bits.len() <= word {
            // Grow geometrically: a sender's seqs arrive mostly in order.
            seen.bits.resize((word + 1).max(seen.bits.len() * 2), 0);
        }
        if seen.bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return Some(Arrival::Duplicate);
        }
        seen.bits[word] |= 1 << bit;
        seen.distinct += 1;
        self.distinct += 1;
        if partition == UNORDERED {
            return Some(Arrival::New);
        }
        let last = match seen
            .last_in_partition
            .iter_mut()
            .find(|(p, _)| *p == partition)
        {
            Some((_, last)) => last,
            None => {
                seen.last_in_partition.push((partition, seq));
                return Some(Arrival::New);
            }
        };
        if seq < *last {
            self.reordered += 1;
            Some(Arrival::NewReordered)
        } else {
            *last = seq;
            Some(Arrival::New)
        }
    }

    /// Distinct lines of `sender` seen.
    pub fn distinct_of(&self, sender: u32) -> u64 {
        self.senders.get(sender as usize).map_or(0, |s| s.distinct)
    }

    /// Lines of each sender that never arrived, given how many each sent: `sent[i]` for sender
    /// `i`. A sender's arrivals beyond what it sent (which only a resent write can cause) do
    /// not offset another's losses.
    pub fn lost(&self, sent: &[u64]) -> u64 {
        sent.iter()
            .enumerate()
            .map(|(i, &n)| n.saturating_sub(self.distinct_of(i as u32)))
            .sum()
    }

    /// How many of the sequence numbers in `ranges` (`[from, to)`) `sender` never delivered.
    pub fn missing_in(&self, sender: u32, ranges: &[(u64, u64)]) -> u64 {
        let bits = self
            .senders
            .get(sender as usize)
            .map_or(&[][..], |s| &s.bits[..]);
        ranges
            .iter()
            .flat_map(|&(from, to)| from..to)
            .filter(|&seq| {
                bits.get((seq / 64) as usize)
                    .is_none_or(|w| w & (1 << (seq % 64)) == 0)
            })
            .count() as u64
    }

    /// The first `limit` sequence numbers below `sent` that `sender` never delivered.
    pub fn missing(&self, sender: u32, sent: u64, limit: usize) -> Vec<u64> {
        let bits = self
            .senders
            .get(sender as usize)
            .map_or(&[][..], |s| &s.bits[..]);
        (0..sent)
            .filter(|&seq| {
                bits.get((seq / 64) as usize)
                    .is_none_or(|w| w & (1 << (seq % 64)) == 0)
            })
            .take(limit)
            .collect()
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Send → available latencies, in microseconds: all of them, per second of the run (by arrival
/// time) for the chart, and per window of send time (before, during and after an outage).
#[derive(Debug, Clone)]
pub struct Latencies {
    /// The run's start, wall clock µs: second 0 of the buckets.
    pub start_us: u64,
    pub all: Histogram<u64>,
    /// Per second: arrivals (first deliveries) and their latencies (2 significant digits, which
    /// is plenty for a chart and keeps a bucket at ~20 KiB).
    pub seconds: Vec<(u64, Histogram<u64>)>,
    /// Windows of send time, in the order they opened; a line belongs to the last window
    /// opened at or before it was sent.
    pub windows: Vec<SendWindow>,
}

/// The lines sent from `from_us` until the next window opened.
#[derive(Debug, Clone)]
pub struct SendWindow {
    pub label: String,
    pub from_us: u64,
    pub latency: Histogram<u64>,
    /// Wall-clock µs when the last of its lines arrived.
    pub last_arrival_us: u64,
}

/// Latencies are recorded from 1 µs to 1 hour; longer (clocks gone wrong) are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

impl Latencies {
    pub fn new(start_us: u64) -> Latencies {
        Latencies {
            start_us,
            all: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
            seconds: Vec::new(),
            windows: Vec::new(),
        }
    }

    /// Opens a window of send time called `label` at `from_us` (now, or later).
    pub fn open_window(&mut self, label: &str, from_us: u64) {
        self.windows.push(SendWindow {
            label: label.to_string(),
            from_us,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
            last_arrival_us: 0,
        });
    }

    /// Records one first delivery sent at `sent_us` and available at `now_us`.
    pub fn record(&mut self, sent_us: u64, now_us: u64) {
        let latency = now_us.saturating_sub(sent_us).clamp(1, MAX_LATENCY_US);
        let _ = self.all.record(latency);
        if let Some(w) = self.windows.iter_mut().rev().find(|w| w.from_us <= sent_us) {
            let _ = w.latency.record(latency);
            w.last_arrival_us = w.last_arrival_us.max(now_us);
        }
        let second = (now_us.saturating_sub(self.start_us) / 1_000_000) as usize;
        // A clock far off would make a huge vector: the chart covers at most a day.
        if second > 86_400 {
            return;
        }
        while self.seconds.len() <= second {
            let h = Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("valid bounds");
            self.seconds.push((0, h));
        }
        let (arrivals, h) = &mut self.seconds[second];
        *arrivals += 1;
        let _ = h.record(latency);
    }
}

/// Everything read back so far; shared between the reader thread and the scenario.
pub struct Verifier {
    finder: MarkerFinder,
    pub tally: Tally,
    pub latencies: Latencies,
    /// Records without a marker of this run (other traffic, other runs).
    pub foreign: u64,
    /// Records with a damaged marker (a frame torn by a broken connection).
    pub malformed: u64,
    /// Wall-clock µs of the last first delivery.
    pub last_new_us: u64,
    /// Set by the reader once it reads (the consumer has its partitions).
    pub reader_ready: bool,
}

impl Verifier {
    pub fn new(run: u32, start_us: u64) -> Verifier {
        Verifier {
            finder: MarkerFinder::new(run),
            tally: Tally::default(),
            latencies: Latencies::new(start_us),
            foreign: 0,
            malformed: 0,
            last_new_us: 0,
            reader_ready: false,
        }
    }

    /// Starts counting a new run `run` from `start_us`, forgetting the previous one (whose
    /// stragglers now count as foreign).
    pub fn reset(&mut self, run: u32, start_us: u64) {
        let ready = self.reader_ready;
        *self = Verifier::new(run, start_us);
        self.reader_ready = ready;
    }

    /// Counts one record read from `partition` at `now_us`.
    pub fn add(&mut self, record: &[u8], partition: i32, now_us: u64) {
        match self.finder.find(record) {
            Found::Ours(m) => match self.tally.add(m.sender, m.seq, partition) {
                Some(Arrival::New | Arrival::NewReordered) => {
                    self.latencies.record(m.sent_us, now_us);
                    self.last_new_us = now_us;
                }
                Some(Arrival::Duplicate) => {}
                None => self.malformed += 1,
            },
            Found::OtherRun | Found::None => self.foreign += 1,
            Found::Malformed => self.malformed += 1,
        }
    }
}

pub type SharedVerifier = Arc<Mutex<Verifier>>;

/// Consumes every partition of `topic` at `bootstrap` from the beginning into `verifier`
/// until `stop` is set.
///
/// # Errors
/// When the consumer cannot be created or the topic's partitions cannot be learned within
/// 30 s (the broker is not there).
pub fn consume_kafka(
    bootstrap: &str,
    topic: &str,
    verifier: &SharedVerifier,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "logtail-loadtest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("reconnect.backoff.max.ms", "200")
        .set("log_level", "3")
        .create()
        .context("creating the Kafka consumer")?;
    let mut partitions = 0;
    for _ in 0..30 {
        if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(1))
            && let Some(t) = metadata.topics().first()
            && t.error().is_none()
        {
            partitions = t.partitions().len();
            if partitions > 0 {
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
    }
    if partitions == 0 {
        anyhow::bail!("topic {topic:?} has no partitions at {bootstrap} after 30 s");
    }
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .context("assigning a partition")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;
    verifier.lock().expect("verifier lock").reader_ready = true;
    let mut batch: Vec<(Vec<u8>, i32)> = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        // Poll without the lock, then count a batch under it.
        batch.clear();
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
            batch.push((m.payload().unwrap_or_default().to_vec(), m.partition()));
            while batch.len() < 1024 {
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        batch.push((m.payload().unwrap_or_default().to_vec(), m.partition()))
                    }
                    _ => break,
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let now = now_us();
        let mut v = verifier.lock().expect("verifier lock");
        for (payload, partition) in &batch {
            v.add(payload, *partition, now);
        }
    }
    Ok(())
}

/// Follows the gateway's store at `dir` into `verifier` until `stop` is set.
///
/// # Errors
/// When the store cannot be read.
pub fn follow_store(
    dir: &Path,
    verifier: &SharedVerifier,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    while !dir.is_dir() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let options = logtail::store::ReadOptions {
        since_us: None,
        grep: None,
        follow: true,
    };
    verifier.lock().expect("verifier lock").reader_ready = true;
    let mut lines = LineSink {
        verifier: verifier.clone(),
        partial: Vec::new(),
    };
    logtail::store::read(dir, &options, &mut lines, stop)
        .with_context(|| format!("following the store in {}", dir.display()))?;
    Ok(())
}

/// How often [`follow_file`] looks for new lines: the store reader's follow interval
/// (`store::POLL_INTERVAL`, 100 ms).
pub const FILE_POLL: Duration = Duration::from_millis(100);

/// Follows `path`, a file written line by line, into `verifier` until `stop` is set.
///
/// # Errors
/// When the file cannot be read.
pub fn follow_file(
    path: &Path,
    verifier: &SharedVerifier,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    // The file appears with the first line written; nothing can be missed before that.
    verifier.lock().expect("verifier lock").reader_ready = true;
    let mut file = loop {
        match std::fs::File::open(path) {
            Ok(f) => break f,
            Err(_) if !stop.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => return Ok(()),
        }
    };
    let mut lines = LineSink {
        verifier: verifier.clone(),
        partial: Vec::new(),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while !stop.load(Ordering::Relaxed) {
        file.seek(SeekFrom::Start(pos))
            .with_context(|| format!("reading {}", path.display()))?;
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            std::thread::sleep(FILE_POLL);
            continue;
        }
        pos += n as u64;
        std::io::Write::write_all(&mut lines, &buf[..n])?;
    }
    Ok(())
}

/// Splits what it is given into lines and counts each as partition 0.
struct LineSink {
    verifier: SharedVerifier,
    partial: Vec<u8>,
}

impl std::io::Write for LineSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let now = now_us();
        let mut v = self.verifier.lock().expect("verifier lock");
        let mut rest = bytes;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            if self.partial.is_empty() {
                v.add(&rest[..end], 0, now);
            } else {
                self.partial.extend_from_slice(&rest[..end]);
                v.add(&self.partial, 0, now);
                self.partial.clear();
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the verifier reads from.
#[derive(Debug, Clone)]
pub enum Source {
    Kafka {
        bootstrap: String,
        topic: String,
    },
    Store(PathBuf),
    File(PathBuf),
    /// The search server's index ([`crate::elasticsearch::follow_index`]).
    Elasticsearch {
        address: std::net::SocketAddr,
        poll: Duration,
        tail: Arc<crate::elasticsearch::IndexTail>,
    },
}

/// Starts the reader of `source` in a thread.
pub fn spawn_reader(
    source: Source,
    verifier: SharedVerifier,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::Builder::new()
        .name("verifier".into())
        .spawn(move || match &source {
            Source::Kafka { bootstrap, topic } => consume_kafka(bootstrap, topic, &verifier, &stop),
            Source::Store(dir) => follow_store(dir, &verifier, &stop),
            Source::File(path) => follow_file(path, &verifier, &stop),
            Source::Elasticsearch {
                address,
                poll,
                tail,
            } => crate::elasticsearch::follow_index(*address, *poll, tail, &verifier, &stop),
        })
        .expect("spawning the verifier thread")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::Marker;

    #[test]
    fn tally_counts_new_duplicate_and_reordered_per_partition() {
        let mut t = Tally::default();
        assert_eq!(t.add(0, 0, 0), Some(Arrival::New));
        assert_eq!(t.add(0, 2, 0), Some(Arrival::New));
        assert_eq!(t.add(0, 1, 0), Some(Arrival::NewReordered));
        assert_eq!(t.add(0, 2, 0), Some(Arrival::Duplicate));
        // Another partition has its own order: seq 3 there after seq 2 here is fine, and so is
        // seq 5 here after seq 7 there.
        assert_eq!(t.add(0, 7, 1), Some(Arrival::New));
        assert_eq!(t.add(0, 5, 0), Some(Arrival::New));
        // Another sender has its own bitmap.
        assert_eq!(t.add(1, 2, 0), Some(Arrival::New));
        assert_eq!((t.distinct, t.duplicates, t.reordered), (6, 1, 1));
        assert_eq!(t.distinct_of(0), 5);
        assert_eq!(t.distinct_of(1), 1);
        assert_eq!(t.distinct_of(9), 0);
        // Without order: never reordered, still deduplicated.
        let mut u = Tally::default();
        assert_eq!(u.add(0, 5, UNORDERED), Some(Arrival::New));
        assert_eq!(u.add(0, 1, UNORDERED), Some(Arrival::New));
        assert_eq!(u.add(0, 5, UNORDERED), Some(Arrival::Duplicate));
        assert_eq!((u.distinct, u.duplicates, u.reordered), (2, 1, 0));
    }

    #[test]
    fn lost_and_missing_come_from_the_bitmaps() {
        let mut t = Tally::default();
        for seq in (0..200).filter(|s| s % 50 != 7) {
            t.add(0, seq, 0);
        }
        t.add(1, 0, 0);
        // Sender 0 sent 200 and lost 4; sender 1 sent 3 and lost 2; sender 2 sent 1, lost it.
        assert_eq!(t.lost(&[200, 3, 1]), 7);
        assert_eq!(t.missing(0, 200, 10), vec![7, 57, 107, 157]);
        assert_eq!(t.missing(0, 200, 2), vec![7, 57]);
        assert_eq!(t.missing(1, 3, 10), vec![1, 2]);
        assert_eq!(t.missing(2, 1, 10), vec![0]);
        assert_eq!(t.missing_in(0, &[(0, 10), (50, 60)]), 2);
        assert_eq!(t.missing_in(0, &[]), 0);
        assert_eq!(t.missing_in(2, &[(0, 1)]), 1);
    }

    #[test]
    fn tally_bitmap_grows_across_words_and_rejects_absurd_ids() {
        let mut t = Tally::default();
        assert_eq!(t.add(0, 100_000, 0), Some(Arrival::New));
        assert_eq!(t.add(0, 63, 0), Some(Arrival::NewReordered));
        assert_eq!(t.add(0, 64, 0), Some(Arrival::NewReordered));
        assert_eq!(t.add(0, 100_000, 0), Some(Arrival::Duplicate));
        assert_eq!(t.add(MAX_SENDERS, 0, 0), None);
        assert_eq!(t.add(0, MAX_SEQ, 0), None);
        assert_eq!(t.distinct, 3);
    }

    #[test]
    fn latencies_go_into_the_whole_histogram_and_per_second_buckets() {
        let start = 1_000_000_000;
        let mut l = Latencies::new(start);
        // Second 0: 100 arrivals at 1 ms; second 2: one at 300 ms.
        for i in 0..100 {
            l.record(start + i * 1000, start + i * 1000 + 1000);
        }
        l.record(start + 1_900_000, start + 2_200_000);
        assert_eq!(l.seconds.len(), 3);
        assert_eq!(l.seconds[0].0, 100);
        assert_eq!(l.seconds[1].0, 0);
        assert_eq!(l.seconds[2].0, 1);
        let p = Percentiles::of(&l.all);
        assert_eq!(p.count, 101);
        assert_eq!(p.p50_ms, 1.0);
        assert!((299.0..=301.0).contains(&p.max_ms), "{}", p.max_ms);
        let p2 = Percentiles::of(&l.seconds[2].1);
        assert!((297.0..=303.0).contains(&p2.p99_ms), "{}", p2.p99_ms);
        // Windows by send time: lines sent from 1.5 s on are "outage".
        let mut w = Latencies::new(start);
        w.open_window("before", start);
        w.open_window("outage", start + 1_500_000);
        w.record(start + 1_000_000, start + 1_010_000);
        w.record(start + 1_400_000, start + 3_000_000);
        w.record(start + 1_600_000, start + 2_900_000);
        assert_eq!(w.windows[0].latency.len(), 2);
        assert_eq!(w.windows[0].last_arrival_us, start + 3_000_000);
        assert_eq!(w.windows[1].latency.len(), 1);
        assert_eq!(w.windows[1].last_arrival_us, start + 2_900_000);
        // A send stamp after the arrival (clocks) counts as 1 µs, not as a wrap-around.
        l.record(start + 5_000, start + 4_000);
        assert_eq!(l.all.min(), 1);
    }

    #[test]
    fn verifier_counts_ours_foreign_and_malformed_and_splits_lines() {
        let run = 0x1234;
        let verifier = Arc::new(Mutex::new(Verifier::new(run, now_us())));
        let mut sink = LineSink {
            verifier: verifier.clone(),
            partial: Vec::new(),
        };
        let mut text = Vec::new();
        for seq in 0..3 {
            text.extend_from_slice(b"{\"message\":\"x ");
            Marker {
                run,
                sender: 0,
                seq,
                sent_us: now_us(),
            }
            .write(&mut text);
            text.extend_from_slice(b"\"}\n");
        }
        text.extend_from_slice(b"no marker\nltm:00001234:0:\n");
        // Handed over in pieces that cut lines anywhere.
        for piece in text.chunks(7) {
            std::io::Write::write_all(&mut sink, piece).unwrap();
        }
        let v = verifier.lock().unwrap();
        assert_eq!(v.tally.distinct, 3);
        assert_eq!(v.foreign, 1);
        assert_eq!(v.malformed, 1);
        assert_eq!(v.latencies.all.len(), 3);
    }
}
