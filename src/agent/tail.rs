//! The tailer: finds the files of every collect entry, follows them through rotation, reads
//! their lines into batches, and keeps the checkpoint table.
//!
//! One thread does all of it, so the tables below need no locks. It loops: apply configuration
//! changes and acknowledgements, expand the globs when a scan is due, read every file that may
//! have grown, cut the batch, hand a new checkpoint state to the writer, and sleep until the next
//! thing is due (or an acknowledgement or configuration change arrives).
//!
//! # Files
//!
//! Every file found is opened and kept open while it is tracked, and known by device and inode
//! and by the fingerprint of its first bytes ([`super::fingerprint`]), never by name:
//!
//! - **New files.** A file whose (device, inode) is not tracked is matched against the
//!   checkpoints: same (device, inode) and first bytes, or, for a full fingerprint, the same
//!   first bytes under another inode (content copied or moved while the agent was stopped):
//!   reading resumes at the checkpoint. A full fingerprint equal to a *tracked* file's is a
//!   copy of it (copytruncate at work): not read. Anything else is new: read from its end
//!   (`start_at = "end"`, only for files there when an entry without any checkpoint starts) or
//!   from its beginning (every other case: the file appeared while the entry ran, or while the
//!   agent was stopped).
//! - **Rename rotation** (`app.log` → `app.log.1`, new `app.log`): the open file keeps being
//!   read through its descriptor. When no glob of its entry reaches it any more (renamed away
//!   or deleted), it is read to its end and released once it did not grow for `rotate_wait_ms`;
//!   the new `app.log` is a new file, read from its beginning, but only once the file that had
//!   its path before it is read to its end, so that lines come out in the order they were
//!   written (a writer that keeps writing to the renamed file after that is read too, later).
//! - **Files that come and go between scans.** The directory of every glob is watched with
//!   inotify ([`super::wake`]): a file appearing there triggers a scan at once, so it is opened
//!   within milliseconds, not at the next `scan_interval_ms`. A file renamed away from a path
//!   an entry matches before it was opened is found under its new name (the rename event
//!   names it; its device and inode say it is not tracked) and read from its start like a
//!   rotated file. The periodic scan stays the fallback for everything inotify misses.
//! - **Copytruncate** (`app.log` copied to `app.log.1`, then truncated): a file shorter than the
//!   offset read, or whose first bytes changed, was truncated. The lines not read yet are in the
//!   copy: the file in the same directory whose first bytes match the old fingerprint. The
//!   tracked content moves to the copy and is read there to its end; the truncated file starts
//!   over as new content from offset 0, read after the copy. Without a copy (or with a short
//!   fingerprint: a file truncated before it reached `fingerprint_bytes`), what was
//!   between the last read and the truncation is lost, which is logged and counted
//!   (`truncations_without_copy`).
//! - **Rotation while stopped.** At start, a checkpointed file not found at its path is looked
//!   for in its directory by inode and first bytes, then by first bytes alone; when an entry
//!   whose globs match the old path starts, the moved file is read to its end like a rotated one.
//!
//! # Reading, batches and memory
//!
//! A file is read with `pread` at its offset into one shared buffer (`read_buffer_bytes`, at
//! least the longest `max_line_bytes` + 2) and cut into lines by its [`LineSplitter`]; bytes
//! after the last LF are read again next time, which is how partial lines are joined. A file
//! with data is read again at once (up to about one batch per pass, so a busy file cannot starve
//! the others); an idle one after 10 ms, doubling up to `max_poll_interval_ms`. A file found
//! idle twice in a row is also watched with inotify ([`super::wake`]): when it changes it is
//! read at once, but not within 10 ms of the read that found it idle, so that a file written a
//! line at a time is still read in batches.
//!
//! Lines are copied into the current [`LineBatch`], which is cut when full or when a pass found
//! nothing more to read. While `max_unacked_batches` batches wait for their acknowledgement,
//! nothing is read: memory is bounded by that many batches, plus the read buffer, plus per file
//! at most one held head of a long line or one multiline event.
//!
//! # Checkpoints
//!
//! The tailer keeps the table the checkpoint file is written from ([`super::checkpoint`]). A
//! file enters it when first opened, at its starting offset. Each batch cut records, per file,
//! the offset past its last line in the batch; when the batch is acknowledged those offsets are
//! applied to the table, and a new state goes to the writer thread. A released file leaves the
//! table once everything read from it is acknowledged. A stopped entry's files stay in it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use regex::bytes::Regex;

use super::batch::{LineBatch, Source};
use super::checkpoint::{self, CheckpointEntry, CheckpointWriter};
use super::config::{CollectEntry, Glob, StartAt, TailConfig};
use super::fingerprint::{Fingerprint, read_head};
use super::lines::{LineSplitter, Multiline};
use super::wake::{DirectoryEvent, FileWakeups};
use super::{AgentMetrics, FileLag};
use crate::log_limit::RateLimitedWarning;
use crate::time::now_unix_micros as now_us;

/// The shortest wait before reading an idle file again.
const MIN_POLL: Duration = Duration::from_millis(10);

/// What the tailer is told while it runs.
#[derive(Debug)]
pub enum Control {
    /// The collect entries now in force (all of them): added ones start, removed ones stop,
    /// changed ones restart; unchanged ones are not disturbed.
    SetEntries(Vec<CollectEntry>),
    /// Stop reading, wait up to the timeout for acknowledgements, write the last checkpoint.
    Shutdown(Duration),
}

/// What the tailer reports when it ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailSummary {
    /// Batches sent and never acknowledged: read again at the next start.
    pub unacknowledged_batches: u64,
}

/// A collect entry while it runs.
struct RunningEntry {
    config: CollectEntry,
    multiline: Option<Regex>,
    /// True until its first scan is done.
    starting: bool,
}

impl RunningEntry {
    fn new(config: CollectEntry) -> RunningEntry {
        RunningEntry {
            multiline: config.multiline.as_ref().map(|m| m.start_pattern.0.clone()),
            starting: true,
            config,
        }
    }

    fn matches(&self, path: &Path) -> bool {
        self.config.paths.iter().any(|p| p.matches_path(path)) && !self.excluded(path)
    }

    fn excluded(&self, path: &Path) -> bool {
        self.config.exclude.iter().any(|p| p.matches_path(path))
    }

    fn source(&self, path: &Path) -> Arc<Source> {
        let c = &self.config;
        Arc::new(Source {
            entry: c.name.clone(),
            path: path.to_path_buf(),
            topic: c.topic.clone(),
            app: c.app.clone().unwrap_or_else(|| c.name.clone()),
            tags: c.tags.clone(),
        })
    }
}

/// One tracked file.
struct Stream {
    entry: String,
    source: Arc<Source>,
    file: File,
    id: (u64, u64),
    fingerprint: Fingerprint,
    path: PathBuf,
    /// The next byte to read.
    read_offset: u64,
    /// Past the last line handed to a batch: where a restart of this stream resumes.
    emitted_offset: u64,
    splitter: LineSplitter,
    multiline: Option<Multiline>,
    /// A glob of its entry reached it at the last scan.
    reachable: bool,
    /// Its last read found nothing new.
    at_eof: bool,
    /// The file that had this one's path before it (rotated away, or moved to a copy): this one
    /// is not read while that one is not at its end, so that lines come out in the order they
    /// were written. Cleared once that one is released.
    predecessor: Option<u64>,
    last_size: u64,
    last_growth: Instant,
    next_read: Instant,
    backoff: Duration,
    /// When a read last found nothing new: a wake-up does not read it again sooner than
    /// [`MIN_POLL`] after that, so a file written line by line is still read in batches.
    idle_since: Instant,
}

/// A cut batch waiting for its acknowledgement.
struct UnackedBatch {
    seq: u64,
    lines: u64,
    /// (checkpoint key, offset past the file's last line in the batch), in line order.
    positions: Vec<(u64, u64)>,
    /// Checkpoint keys to drop once this batch is acknowledged (released files).
    forget: Vec<u64>,
    /// When it was handed to the shipper: its acknowledgement latency starts here.
    sent_at: Instant,
}

/// The batch being filled and the ones in flight.
struct Output {
    batch: LineBatch,
    positions: Vec<(u64, u64)>,
    forget: Vec<u64>,
    in_flight: VecDeque<UnackedBatch>,
    /// The seq of `batch`.
    next_seq: u64,
    acked_seq: u64,
    max_unacked: u64,
    max_lines: usize,
    max_bytes: usize,
    batches: Sender<LineBatch>,
    recycled: Receiver<LineBatch>,
}

impl Output {
    fn push(&mut self, key: u64, source: &Arc<Source>, line: &[u8], end: u64, truncated: bool) {
        self.batch.push(source, line, end, truncated, now_us);
        match self.positions.last_mut() {
            Some((k, offset)) if *k == key => *offset = end,
            _ => self.positions.push((key, end)),
        }
    }

    fn is_full(&self) -> bool {
        self.batch.len() >= self.max_lines || self.batch.bytes() >= self.max_bytes
    }

    /// True while another batch may be sent.
    fn window_open(&self) -> bool {
        self.next_seq - 1 - self.acked_seq < self.max_unacked
    }

    fn unacked(&self) -> u64 {
        self.next_seq - 1 - self.acked_seq
    }

    /// Sends the batch if it has lines. Forgotten keys ride with it, or with the last batch in
    /// flight; with nothing in flight they are returned, to be applied at once.
    ///
    /// # Errors
    /// When the shipping thread is gone.
    fn cut(&mut self, metrics: &AgentMetrics) -> Result<Vec<u64>, ShipperGone> {
        if self.batch.is_empty() {
            if self.forget.is_empty() {
                return Ok(Vec::new());
            }
            return Ok(match self.in_flight.back_mut() {
                Some(last) => {
                    last.forget.append(&mut self.forget);
                    Vec::new()
                }
                None => std::mem::take(&mut self.forget),
            });
        }
        let mut next = self.recycled.try_recv().unwrap_or_else(|_| {
            LineBatch::with_capacity(self.max_bytes + self.max_bytes / 4, self.max_lines)
        });
        next.reset(self.next_seq + 1);
        let batch = std::mem::replace(&mut self.batch, next);
        metrics.batches_sent.add(1);
        // Counted per batch, which sees every line however it came (a read, a timed multiline
        // flush, a released file's last bytes).
        metrics.lines_read.add(batch.len() as u64);
        self.in_flight.push_back(UnackedBatch {
            seq: batch.seq(),
            lines: batch.len() as u64,
            positions: std::mem::take(&mut self.positions),
            forget: std::mem::take(&mut self.forget),
            sent_at: Instant::now(),
        });
        self.next_seq += 1;
        self.batches.send(batch).map_err(|_| ShipperGone)?;
        Ok(Vec::new())
    }
}

/// The shipping thread ended while the tailer still runs.
#[derive(Debug)]
pub struct ShipperGone;

/// What a newly found file is.
enum Known {
    /// Resume it from this checkpoint.
    Checkpoint(u64),
    /// Its first bytes are a tracked file's: a copy, not read.
    CopyOfTracked,
}

/// How a read of one file went.
enum ReadOutcome {
    /// Lines or bytes came; read again soon.
    Data,
    /// Nothing new (maybe a partial line).
    Idle,
    /// The read failed.
    Failed(io::Error),
}

/// See the [module docs](self).
pub struct Tailer {
    config: TailConfig,
    metrics: Arc<AgentMetrics>,
    entries: BTreeMap<String, RunningEntry>,
    streams: BTreeMap<u64, Stream>,
    by_id: HashMap<(u64, u64), u64>,
    /// The checkpoint table, by key: what the checkpoint file says.
    checkpoints: BTreeMap<u64, CheckpointEntry>,
    /// Checkpointed files found under another path at start: key → the path in the checkpoint.
    moved_from: HashMap<u64, PathBuf>,
    /// Where streams of stopped entries had read to (possibly beyond what is acknowledged).
    stopped_offsets: HashMap<u64, u64>,
    next_key: u64,
    out: Output,
    read_buf: Vec<u8>,
    head_buf: Vec<u8>,
    pass_keys: Vec<u64>,
    pass_start: usize,
    last_scan: Option<Instant>,
    checkpoints_dirty: bool,
    checkpoint_buf: Vec<u8>,
    writer: CheckpointWriter,
    /// Inotify wake-ups of idle files ([`super::wake`]); None when inotify is not available.
    wakeups: Option<FileWakeups>,
    /// The ids of fired watches (never ready without wake-ups).
    woken: Receiver<i32>,
    /// Files appearing in or renamed within the globs' directories (never ready without
    /// wake-ups).
    directory_events: Receiver<DirectoryEvent>,
}

static READ_WARNING: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));

impl Tailer {
    /// A tailer starting from the checkpoint table `loaded` (as read from the file).
    pub fn new(
        config: TailConfig,
        loaded: Vec<CheckpointEntry>,
        writer: CheckpointWriter,
        batches: Sender<LineBatch>,
        recycled: Receiver<LineBatch>,
        metrics: Arc<AgentMetrics>,
    ) -> Tailer {
        let mut batch = LineBatch::with_capacity(
            config.batch_max_bytes + config.batch_max_bytes / 4,
            config.batch_max_lines,
        );
        batch.reset(1);
        let (wakeups, woken) = match FileWakeups::start() {
            Ok((wakeups, woken)) => (Some(wakeups), woken),
            Err(e) => {
                tracing::warn!("inotify is not available ({e}): idle files are only polled");
                (None, crossbeam_channel::never())
            }
        };
        let directory_events = wakeups
            .as_ref()
            .map_or_else(crossbeam_channel::never, FileWakeups::directory_events);
        let mut tailer = Tailer {
            out: Output {
                batch,
                positions: Vec::new(),
                forget: Vec::new(),
                in_flight: VecDeque::new(),
                next_seq: 1,
                acked_seq: 0,
                max_unacked: config.max_unacked_batches as u64,
                max_lines: config.batch_max_lines,
                max_bytes: config.batch_max_bytes,
                batches,
                recycled,
            },
            read_buf: vec![0; config.read_buffer_bytes],
            head_buf: Vec::with_capacity(config.fingerprint_bytes),
            config,
            metrics,
            entries: BTreeMap::new(),
            streams: BTreeMap::new(),
            by_id: HashMap::new(),
            checkpoints: BTreeMap::new(),
            moved_from: HashMap::new(),
            stopped_offsets: HashMap::new(),
            next_key: 1,
            pass_keys: Vec::new(),
            pass_start: 0,
            last_scan: None,
            checkpoints_dirty: false,
            checkpoint_buf: Vec::new(),
            writer,
            wakeups,
            woken,
            directory_events,
        };
        tailer.reconcile_checkpoints(loaded);
        tailer
    }

    /// Runs until [`Control::Shutdown`] (or until `control` is closed, or the shipping thread
    /// is gone).
    pub fn run(mut self, control: &Receiver<Control>, acks: &Receiver<u64>) -> TailSummary {
        let mut shutdown_timeout = Duration::from_secs(5);
        loop {
            match self.step(control, acks) {
                Ok(Some(timeout)) => {
                    shutdown_timeout = timeout;
                    break;
                }
                Ok(None) => {}
                Err(ShipperGone) => {
                    tracing::error!("the shipping thread ended: the agent stops");
                    break;
                }
            }
        }
        self.shutdown(acks, shutdown_timeout)
    }

    /// One turn of the loop; `Some(timeout)` when it is time to stop.
    fn step(
        &mut self,
        control: &Receiver<Control>,
        acks: &Receiver<u64>,
    ) -> Result<Option<Duration>, ShipperGone> {
        loop {
            match control.try_recv() {
                Ok(Control::SetEntries(entries)) => self.set_entries(entries),
                Ok(Control::Shutdown(timeout)) => return Ok(Some(timeout)),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Ok(Some(Duration::from_secs(5)));
                }
            }
        }
        self.drain_acks(acks);
        let now = Instant::now();
        while let Ok(id) = self.woken.try_recv() {
            self.woken_up(id, now);
        }
        while let Ok(event) = self.directory_events.try_recv() {
            self.directory_changed(event, now);
        }
        if self
            .last_scan
            .is_none_or(|last| now.duration_since(last) >= self.config.scan_interval())
        {
            self.scan_all(now);
        }
        let mut progressed = false;
        if self.out.window_open() {
            progressed = self.read_pass(now)?;
            if self.out.window_open() {
                let forget_now = self.out.cut(&self.metrics)?;
                self.forget(forget_now);
            }
        }
        self.submit_checkpoints();
        if !progressed {
            let timeout = self.next_due(now).saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(control) -> message => match message {
                    Ok(Control::SetEntries(entries)) => self.set_entries(entries),
                    Ok(Control::Shutdown(timeout)) => return Ok(Some(timeout)),
                    Err(_) => return Ok(Some(Duration::from_secs(5))),
                },
                recv(acks) -> ack => if let Ok(seq) = ack {
                    self.apply_acks(seq);
                },
                recv(self.woken) -> id => if let Ok(id) = id {
                    self.woken_up(id, Instant::now());
                },
                recv(self.directory_events) -> event => if let Ok(event) = event {
                    self.directory_changed(event, Instant::now());
                },
                default(timeout) => {},
            }
        }
        Ok(None)
    }

    fn next_due(&self, now: Instant) -> Instant {
        let mut due = self
            .last_scan
            .map_or(now, |last| last + self.config.scan_interval());
        if self.out.window_open() {
            for stream in self.streams.values() {
                due = due.min(stream.next_read);
                if let Some(deadline) = stream
                    .multiline
                    .as_ref()
                    .and_then(Multiline::flush_deadline)
                {
                    due = due.min(deadline);
                }
            }
        }
        due.max(now + Duration::from_millis(1))
    }

    /// A watched idle file changed: read it now, or [`MIN_POLL`] after it was found idle.
    fn woken_up(&mut self, id: i32, now: Instant) {
        let Some(key) = self.wakeups.as_mut().and_then(|w| w.fired(id)) else {
            return;
        };
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.backoff = MIN_POLL;
            stream.next_read = stream.next_read.min(now.max(stream.idle_since + MIN_POLL));
            self.metrics.files_woken.add(1);
        }
    }

    /// A file appeared in a glob's directory: scan at once instead of at the next
    /// `scan_interval_ms`. A file renamed away from a path an entry matches, that no stream
    /// tracks (it came and went between two scans), is opened under its new name and read
    /// from its start like a rotated file: to its end, then released.
    fn directory_changed(&mut self, event: DirectoryEvent, now: Instant) {
        self.last_scan = None;
        let DirectoryEvent::Renamed { from, to } = event else {
            return;
        };
        let Ok(meta) = std::fs::metadata(&to) else {
            return;
        };
        if !meta.is_file() || self.by_id.contains_key(&(meta.dev(), meta.ino())) {
            return;
        }
        let owner = self
            .entries
            .iter()
            .find(|(_, entry)| entry.matches(&from) && !entry.matches(&to))
            .map(|(name, _)| name.clone());
        if let Some(name) = owner {
            tracing::info!(
                "{} was renamed to {} before it was opened: reading it there",
                from.display(),
                to.display()
            );
            self.open_found(&name, &to, false, now);
            if let Some(key) = self.by_id.get(&(meta.dev(), meta.ino()))
                && let Some(stream) = self.streams.get_mut(key)
            {
                // No glob reaches it: read to its end, then released (see `scan_entry`).
                stream.reachable = false;
            }
        }
    }

    fn drain_acks(&mut self, acks: &Receiver<u64>) {
        let mut highest = None;
        while let Ok(seq) = acks.try_recv() {
            highest = highest.max(Some(seq));
        }
        if let Some(seq) = highest {
            self.apply_acks(seq);
        }
    }

    /// Applies everything an acknowledgement of `seq` covers.
    fn apply_acks(&mut self, seq: u64) {
        if seq <= self.out.acked_seq {
            return;
        }
        self.out.acked_seq = seq.min(self.out.next_seq - 1);
        while let Some(done) = self.out.in_flight.front() {
            if done.seq > self.out.acked_seq {
                break;
            }
            let Some(done) = self.out.in_flight.pop_front() else {
                break;
            };
            for (key, offset) in done.positions {
                if let Some(entry) = self.checkpoints.get_mut(&key) {
                    entry.offset = offset;
                }
            }
            self.metrics.batches_acked.add(1);
            self.metrics.ack_latency.record(done.sent_at.elapsed());
            self.metrics.lines_acked.add(done.lines);
            self.forget(done.forget);
            self.checkpoints_dirty = true;
        }
    }

    fn forget(&mut self, keys: Vec<u64>) {
        for key in keys {
            self.checkpoints.remove(&key);
            self.stopped_offsets.remove(&key);
            self.checkpoints_dirty = true;
        }
    }

    fn submit_checkpoints(&mut self) {
        if !self.checkpoints_dirty {
            return;
        }
        self.checkpoints_dirty = false;
        self.checkpoint_buf.clear();
        checkpoint::encode(self.checkpoints.values(), &mut self.checkpoint_buf);
        self.writer.submit(self.checkpoint_buf.clone());
    }

    // --- configuration ---

    fn set_entries(&mut self, entries: Vec<CollectEntry>) {
        let wanted: HashMap<&str, &CollectEntry> =
            entries.iter().map(|e| (e.name.as_str(), e)).collect();
        let running: Vec<String> = self.entries.keys().cloned().collect();
        for name in running {
            match wanted.get(name.as_str()) {
                None => {
                    tracing::info!(
                        "collect entry {name}: removed, stopping (its checkpoints are kept)"
                    );
                    self.stop_entry(&name);
                }
                Some(new) if self.entries.get(&name).is_some_and(|e| &e.config != *new) => {
                    tracing::info!("collect entry {name}: changed, restarting");
                    self.stop_entry(&name);
                }
                Some(_) => {}
            }
        }
        let mut added = Vec::new();
        for entry in entries {
            if !self.entries.contains_key(&entry.name) {
                tracing::info!(
                    "collect entry {}: collecting {}",
                    entry.name,
                    entry
                        .paths
                        .iter()
                        .map(Glob::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                added.push(entry.name.clone());
                self.entries
                    .insert(entry.name.clone(), RunningEntry::new(entry));
            }
        }
        let longest = self
            .entries
            .values()
            .map(|e| e.config.max_line_bytes + 2)
            .max()
            .unwrap_or(0);
        if longest > self.read_buf.len() {
            self.read_buf.resize(longest, 0);
        }
        let now = Instant::now();
        for name in added {
            self.scan_entry(&name, now);
        }
        self.metrics.entries.set(self.entries.len() as i64);
    }

    fn stop_entry(&mut self, name: &str) {
        self.entries.remove(name);
        let keys: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| s.entry == name)
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            if let Some(stream) = self.untrack(key) {
                self.stopped_offsets.insert(key, stream.emitted_offset);
            }
        }
        self.metrics.files_open.set(self.streams.len() as i64);
    }

    // --- finding files ---

    /// At start: checks every checkpointed file is still where the checkpoint says, looks for
    /// the ones that moved, and drops the ones that are gone.
    fn reconcile_checkpoints(&mut self, loaded: Vec<CheckpointEntry>) {
        let full = self.config.fingerprint_bytes;
        for mut entry in loaded {
            let key = self.next_key;
            self.next_key += 1;
            let same_inode = std::fs::metadata(&entry.path)
                .is_ok_and(|m| (m.dev(), m.ino()) == (entry.dev, entry.ino));
            // A file that cannot be read now (permissions) keeps its checkpoint.
            let same_head = match File::open(&entry.path) {
                Ok(f) => {
                    read_head(&f, full, &mut self.head_buf).is_err()
                        || entry.fingerprint.matches_head(&self.head_buf)
                }
                Err(_) => true,
            };
            if same_inode && same_head {
                self.checkpoints.insert(key, entry);
                continue;
            }
            let dir = entry.path.parent().unwrap_or(Path::new("."));
            let (id, fingerprint) = ((entry.dev, entry.ino), entry.fingerprint);
            let found = find_in_dir(dir, &mut self.head_buf, full, |candidate, head| {
                fingerprint.matches_head(head) && (candidate == id || fingerprint.is_full(full))
            });
            match found {
                Some((_, path, meta)) => {
                    tracing::info!(
                        "{} moved to {} while the agent was stopped: it is read there from \
                         offset {}",
                        entry.path.display(),
                        path.display(),
                        entry.offset
                    );
                    self.moved_from.insert(key, entry.path.clone());
                    entry.dev = meta.dev();
                    entry.ino = meta.ino();
                    entry.path = path;
                    self.checkpoints.insert(key, entry);
                }
                None => {
                    tracing::info!(
                        "forgetting the checkpoint of {}: no file with its inode and first \
                         bytes is left",
                        entry.path.display()
                    );
                    self.checkpoints_dirty = true;
                }
            }
        }
        self.checkpoints_dirty |= !self.moved_from.is_empty();
    }

    fn scan_all(&mut self, now: Instant) {
        self.last_scan = Some(now);
        let names: Vec<String> = self.entries.keys().cloned().collect();
        for name in names {
            self.scan_entry(&name, now);
        }
        self.verify_fingerprints(now);
        self.publish_lag();
    }

    /// Publishes each tracked file's lag: its size minus its checkpoint (what is acknowledged),
    /// sampled at each scan. One `fstat` per file per scan, never per read.
    fn publish_lag(&self) {
        let lags = self
            .streams
            .iter()
            .map(|(key, stream)| {
                let size = stream.file.metadata().map_or(stream.last_size, |m| m.len());
                let acked = self.checkpoints.get(key).map_or(0, |c| c.offset);
                FileLag {
                    entry: stream.entry.clone(),
                    path: stream.path.display().to_string(),
                    bytes: size.saturating_sub(acked),
                }
            })
            .collect();
        if let Ok(mut slot) = self.metrics.file_lag.lock() {
            *slot = lags;
        }
    }

    /// Expands an entry's globs: opens new files, marks which of its files are still reached.
    fn scan_entry(&mut self, name: &str, now: Instant) {
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        let starting = entry.starting;
        // start_at = "end" is for an entry's very first start: with a checkpoint of any of its
        // files, later files are read whole.
        let fresh = starting
            && entry.config.start_at == StartAt::End
            && !self.checkpoints.iter().any(|(k, c)| {
                entry.matches(&c.path) || self.moved_from.get(k).is_some_and(|p| entry.matches(p))
            });
        if starting {
            self.resume_moved(name, now);
        }
        let Some(entry) = self.entries.get_mut(name) else {
            return;
        };
        entry.starting = false;
        let patterns = entry.config.paths.clone();
        if let Some(wakeups) = &mut self.wakeups {
            for pattern in &patterns {
                let dir = literal_directory(pattern.as_str());
                if !dir.as_os_str().is_empty() {
                    wakeups.watch_directory(&dir);
                }
            }
        }
        let mut previously_reachable = Vec::new();
        for (&key, stream) in self.streams.iter_mut().filter(|(_, s)| s.entry == name) {
            if stream.reachable {
                previously_reachable.push(key);
            }
            stream.reachable = false;
        }
        for pattern in patterns {
            let Ok(paths) = glob::glob(pattern.as_str()) else {
                continue;
            };
            for path in paths.filter_map(Result::ok) {
                if self.entries.get(name).is_none_or(|e| e.excluded(&path)) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                if let Some(key) = self.by_id.get(&(meta.dev(), meta.ino())).copied() {
                    if let Some(stream) = self.streams.get_mut(&key)
                        && stream.entry == name
                    {
                        stream.reachable = true;
                        if stream.path != path {
                            // Renamed: lines may have been written just before, read to the end.
                            stream.at_eof = false;
                            stream.next_read = now;
                            stream.path = path.clone();
                            if let Some(c) = self.checkpoints.get_mut(&key) {
                                c.path = path;
                                self.checkpoints_dirty = true;
                            }
                        }
                    }
                    continue;
                }
                self.open_found(name, &path, fresh, now);
            }
        }
        for key in previously_reachable {
            if let Some(stream) = self.streams.get_mut(&key)
                && !stream.reachable
            {
                // Lines may have been written just before the rename: read to the end first.
                stream.at_eof = false;
                stream.next_read = now;
                tracing::debug!(
                    "{}: no longer reached by the globs of {name}",
                    stream.path.display()
                );
            }
        }
    }

    /// At an entry's first start: checkpointed files that moved away from a path it matches
    /// are read to their end, as rotated files.
    fn resume_moved(&mut self, name: &str, now: Instant) {
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        let moved: Vec<u64> = self
            .moved_from
            .iter()
            .filter(|(k, old)| entry.matches(old) && !self.streams.contains_key(k))
            .map(|(&k, _)| k)
            .collect();
        for key in moved {
            let Some(origin) = self.moved_from.remove(&key) else {
                continue;
            };
            let Some(c) = self.checkpoints.get(&key) else {
                continue;
            };
            let path = c.path.clone();
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            if (meta.dev(), meta.ino()) != (c.dev, c.ino)
                || self.by_id.contains_key(&(c.dev, c.ino))
            {
                continue;
            }
            let offset = self.stopped_offsets.remove(&key).unwrap_or(c.offset);
            let fingerprint = c.fingerprint;
            self.add_stream(
                key,
                name,
                file,
                &path,
                &origin,
                &meta,
                fingerprint,
                offset,
                false,
                now,
            );
        }
    }

    /// A file of entry `name` that no stream tracks: resume it from its checkpoint, skip it as
    /// a copy of a tracked file, or start it as a new file.
    fn open_found(&mut self, name: &str, path: &Path, fresh: bool, now: Instant) {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) => {
                READ_WARNING.warn(|| format!("cannot open {}: {e}; skipping it", path.display()));
                return;
            }
        };
        let Ok(meta) = file.metadata() else { return };
        let id = (meta.dev(), meta.ino());
        if self.by_id.contains_key(&id) {
            return;
        }
        let full = self.config.fingerprint_bytes;
        if read_head(&file, full, &mut self.head_buf).is_err() {
            return;
        }
        let head = &self.head_buf;
        let fingerprint = Fingerprint::of(head);
        let not_live = |k: &u64| !self.streams.contains_key(k);
        // The most recent checkpoint of this inode whose first bytes are still there...
        let by_inode = self
            .checkpoints
            .iter()
            .rev()
            .find(|(k, c)| (c.dev, c.ino) == id && not_live(k) && c.fingerprint.matches_head(head))
            .map(|(&k, _)| Known::Checkpoint(k));
        // ...or content known under another inode.
        let known = by_inode.or_else(|| {
            if !fingerprint.is_full(full) {
                return None;
            }
            if self.streams.values().any(|s| s.fingerprint == fingerprint) {
                return Some(Known::CopyOfTracked);
            }
            self.checkpoints
                .iter()
                .rev()
                .find(|(k, c)| not_live(k) && c.fingerprint == fingerprint)
                .map(|(&k, _)| Known::Checkpoint(k))
        });
        let (key, offset) = match known {
            Some(Known::CopyOfTracked) => {
                tracing::debug!(
                    "{} starts like a file already read (a copy): not reading it",
                    path.display()
                );
                return;
            }
            Some(Known::Checkpoint(key)) => {
                let Some(c) = self.checkpoints.get(&key) else {
                    return;
                };
                let offset = self.stopped_offsets.remove(&key).unwrap_or(c.offset);
                if offset > meta.len() {
                    tracing::warn!(
                        "{} is shorter ({} bytes) than its checkpoint ({offset}): it was \
                         truncated while not tracked; reading it from the beginning",
                        path.display(),
                        meta.len()
                    );
                    self.out.forget.push(key);
                    (self.new_key(), 0)
                } else {
                    tracing::info!("{}: resuming at offset {offset}", path.display());
                    (key, offset)
                }
            }
            None => {
                let offset = if fresh {
                    end_of_last_line(&file, meta.len(), &mut self.read_buf)
                } else {
                    0
                };
                tracing::info!("{}: new file, reading from offset {offset}", path.display());
                (self.new_key(), offset)
            }
        };
        // The file's own fingerprint: at least as long as a matching checkpoint's.
        self.add_stream(
            key,
            name,
            file,
            path,
            path,
            &meta,
            fingerprint,
            offset,
            true,
            now,
        );
    }

    fn new_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key - 1
    }

    /// Starts tracking `file`, now at `path`, under checkpoint `key`, reading at `offset`;
    /// enters (or updates) its checkpoint. `origin` is the path it had when it was written (the
    /// path its lines are shipped with): a file there before it is its predecessor.
    #[allow(clippy::too_many_arguments)]
    fn add_stream(
        &mut self,
        key: u64,
        entry_name: &str,
        file: File,
        path: &Path,
        origin: &Path,
        meta: &std::fs::Metadata,
        fingerprint: Fingerprint,
        offset: u64,
        reachable: bool,
        now: Instant,
    ) {
        let Some(entry) = self.entries.get(entry_name) else {
            return;
        };
        let id = (meta.dev(), meta.ino());
        let max_line = entry.config.max_line_bytes;
        let multiline = entry
            .config
            .multiline
            .as_ref()
            .zip(entry.multiline.clone())
            .map(|(config, start)| {
                Multiline::new(
                    start,
                    Duration::from_millis(config.flush_timeout_ms),
                    max_line,
                )
            });
        let predecessor = self
            .streams
            .iter()
            .rev()
            .find(|(k, s)| **k != key && s.entry == entry_name && s.source.path == origin)
            .map(|(&k, _)| k);
        let stream = Stream {
            entry: entry_name.to_string(),
            source: entry.source(origin),
            predecessor,
            file,
            id,
            fingerprint,
            path: path.to_path_buf(),
            read_offset: offset,
            emitted_offset: offset,
            splitter: LineSplitter::new(max_line),
            multiline,
            reachable,
            at_eof: false,
            last_size: meta.len(),
            last_growth: now,
            next_read: now,
            backoff: MIN_POLL,
            idle_since: now,
        };
        let checkpoint = self
            .checkpoints
            .entry(key)
            .or_insert_with(|| CheckpointEntry {
                dev: id.0,
                ino: id.1,
                fingerprint,
                offset,
                path: path.to_path_buf(),
            });
        checkpoint.dev = id.0;
        checkpoint.ino = id.1;
        checkpoint.fingerprint = fingerprint;
        checkpoint.path = path.to_path_buf();
        self.checkpoints_dirty = true;
        self.by_id.insert(id, key);
        self.streams.insert(key, stream);
        self.metrics.files_opened.add(1);
        self.metrics.files_open.set(self.streams.len() as i64);
    }

    /// Rereads every tracked file's first bytes: completes short fingerprints, and catches a
    /// file truncated and written again past the offset read between two reads.
    fn verify_fingerprints(&mut self, now: Instant) {
        let full = self.config.fingerprint_bytes;
        let keys: Vec<u64> = self.streams.keys().copied().collect();
        for key in keys {
            let Some(stream) = self.streams.get_mut(&key) else {
                continue;
            };
            if read_head(&stream.file, full, &mut self.head_buf).is_err() {
                continue;
            }
            if !stream.fingerprint.matches_head(&self.head_buf) {
                // Bytes that were there changed, or are gone: truncated (and maybe written again).
                self.truncated(key, now);
            } else if !stream.fingerprint.is_full(full)
                && self.head_buf.len() > stream.fingerprint.len as usize
            {
                stream.fingerprint = Fingerprint::of(&self.head_buf);
                if let Some(c) = self.checkpoints.get_mut(&key) {
                    c.fingerprint = stream.fingerprint;
                    self.checkpoints_dirty = true;
                }
            }
        }
    }

    // --- reading ---

    /// Reads every file that is due; true when any had data.
    fn read_pass(&mut self, now: Instant) -> Result<bool, ShipperGone> {
        self.pass_keys.clear();
        self.pass_keys.extend(self.streams.keys().copied());
        let count = self.pass_keys.len();
        if count == 0 {
            return Ok(false);
        }
        self.pass_start = (self.pass_start + 1) % count;
        let mut progressed = false;
        let budget = self.out.max_bytes.max(self.read_buf.len());
        for i in 0..count {
            if !self.out.window_open() {
                break;
            }
            let key = self.pass_keys[(self.pass_start + i) % count];
            let waiting = self
                .streams
                .get(&key)
                .and_then(|s| s.predecessor)
                .map(|p| self.streams.get(&p).map(|p| !p.at_eof));
            let Some(stream) = self.streams.get_mut(&key) else {
                continue;
            };
            if waiting == Some(None) {
                stream.predecessor = None;
            }
            if let Some(multiline) = &mut stream.multiline {
                let (out, source, emitted) =
                    (&mut self.out, &stream.source, &mut stream.emitted_offset);
                multiline.flush_if_stale(now, |event, end, truncated| {
                    out.push(key, source, event, end, truncated);
                    *emitted = end;
                });
            }
            if now < stream.next_read || waiting == Some(Some(true)) {
                continue;
            }
            let outcome = read_stream(
                key,
                stream,
                &mut self.out,
                &mut self.read_buf,
                budget,
                now,
                &self.metrics,
            )?;
            match outcome {
                ReadOutcome::Data => {
                    progressed = true;
                    stream.at_eof = false;
                    stream.backoff = MIN_POLL;
                    stream.next_read = now;
                    stream.last_growth = now;
                }
                ReadOutcome::Idle => {
                    // Polled again after MIN_POLL; found idle again, it is watched too, so that
                    // its next read does not wait for its growing backoff. (A file with short
                    // pauses costs no watches.)
                    let idle_again = stream.backoff > MIN_POLL;
                    stream.at_eof = true;
                    stream.idle_since = now;
                    stream.next_read = now + stream.backoff;
                    stream.backoff = (stream.backoff * 2).min(self.config.max_poll_interval());
                    if idle_again && let Some(wakeups) = &mut self.wakeups {
                        wakeups.arm(key, &stream.file);
                    }
                    self.at_end(key, now);
                }
                ReadOutcome::Failed(e) => {
                    READ_WARNING
                        .warn(|| format!("cannot read {}: {e}; retrying", stream.path.display()));
                    stream.next_read = now + self.config.max_poll_interval();
                }
            }
        }
        Ok(progressed)
    }

    /// A file read to its end: truncated? deleted? done with?
    fn at_end(&mut self, key: u64, now: Instant) {
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        let Ok(meta) = stream.file.metadata() else {
            return;
        };
        if meta.len() < stream.read_offset {
            self.truncated(key, now);
            return;
        }
        if meta.len() != stream.last_size {
            stream.last_size = meta.len();
            stream.last_growth = now;
        }
        if meta.nlink() == 0 {
            stream.reachable = false;
        }
        if !stream.reachable && now.duration_since(stream.last_growth) >= self.config.rotate_wait()
        {
            self.release(key);
        }
    }

    /// Removes a stream from the tables, and its watch.
    fn untrack(&mut self, key: u64) -> Option<Stream> {
        let stream = self.streams.remove(&key)?;
        self.by_id.remove(&stream.id);
        if let Some(wakeups) = &mut self.wakeups {
            wakeups.disarm(key);
        }
        Some(stream)
    }

    /// Stops tracking a file that no glob reaches and that was read to its end: its last
    /// partial line and pending event go out, its checkpoint goes once they are acknowledged.
    fn release(&mut self, key: u64) {
        let Some(mut stream) = self.untrack(key) else {
            return;
        };
        let end = stream
            .file
            .metadata()
            .map_or(stream.read_offset, |m| m.len());
        let rest_len = end
            .saturating_sub(stream.read_offset)
            .min(self.read_buf.len() as u64) as usize;
        let rest = match stream
            .file
            .read_at(&mut self.read_buf[..rest_len], stream.read_offset)
        {
            Ok(n) => &self.read_buf[..n],
            Err(_) => &[][..],
        };
        let end = stream.read_offset + rest.len() as u64;
        let (out, source) = (&mut self.out, &stream.source);
        let multiline = &mut stream.multiline;
        stream
            .splitter
            .finish(rest, end, |line, line_end, truncated| match multiline {
                Some(m) => m.push(line, line_end, truncated, Instant::now(), |event, e, t| {
                    out.push(key, source, event, e, t)
                }),
                None => out.push(key, source, line, line_end, truncated),
            });
        if let Some(m) = &mut stream.multiline {
            m.flush(|event, e, t| out.push(key, source, event, e, t));
        }
        count_line_counters(&mut stream, &self.metrics);
        tracing::info!(
            "{} (written as {}): rotated away or deleted, read to its end ({end} bytes): released",
            current_path(&stream.file).unwrap_or(stream.path).display(),
            stream.source.path.display()
        );
        self.out.forget.push(key);
        self.metrics.files_released.add(1);
        self.metrics.files_open.set(self.streams.len() as i64);
    }

    /// The file of `key` is shorter than what was read, or its first bytes changed: its
    /// content moves to its copy if there is one, and the file starts over.
    fn truncated(&mut self, key: u64, now: Instant) {
        let full = self.config.fingerprint_bytes;
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        let old_fingerprint = stream.fingerprint;
        let old_id = stream.id;
        let by_id = &self.by_id;
        let copy = if old_fingerprint.is_full(full) {
            let dir = stream.path.parent().unwrap_or(Path::new("."));
            find_in_dir(dir, &mut self.head_buf, full, |candidate, head| {
                candidate != old_id
                    && !by_id.contains_key(&candidate)
                    && old_fingerprint.matches_head(head)
            })
        } else {
            None
        };
        let path = stream.path.clone();
        let entry_name = stream.entry.clone();
        let original = match copy {
            Some((file, copy_path, meta)) => {
                tracing::info!(
                    "{} was truncated (copytruncate): reading the rest of it from its copy {} \
                     at offset {}",
                    path.display(),
                    copy_path.display(),
                    stream.read_offset
                );
                let original = std::mem::replace(&mut stream.file, file);
                if let Some(wakeups) = &mut self.wakeups {
                    wakeups.disarm(key);
                }
                stream.id = (meta.dev(), meta.ino());
                stream.path = copy_path.clone();
                stream.reachable = false;
                stream.last_size = meta.len();
                stream.last_growth = now;
                stream.next_read = now;
                let new_id = stream.id;
                self.by_id.remove(&old_id);
                self.by_id.insert(new_id, key);
                if let Some(c) = self.checkpoints.get_mut(&key) {
                    (c.dev, c.ino, c.path) = (new_id.0, new_id.1, copy_path);
                    self.checkpoints_dirty = true;
                }
                self.metrics.copytruncates_followed.add(1);
                original
            }
            None => {
                tracing::warn!(
                    "{} was truncated at offset {} and no copy of its first {full} bytes is \
                     beside it: lines written after that offset and before the truncation, if \
                     any, are lost; reading it again from the beginning",
                    path.display(),
                    stream.read_offset
                );
                self.metrics.truncations_without_copy.add(1);
                let Some(mut stream) = self.untrack(key) else {
                    return;
                };
                count_line_counters(&mut stream, &self.metrics);
                self.out.forget.push(key);
                stream.file
            }
        };
        // The truncated file itself: new content from offset 0.
        let Ok(meta) = original.metadata() else {
            return;
        };
        if read_head(&original, full, &mut self.head_buf).is_err() {
            return;
        }
        let fingerprint = Fingerprint::of(&self.head_buf);
        let new_key = self.new_key();
        self.add_stream(
            new_key,
            &entry_name,
            original,
            &path,
            &path,
            &meta,
            fingerprint,
            0,
            true,
            now,
        );
    }

    // --- stopping ---

    fn shutdown(mut self, acks: &Receiver<u64>, timeout: Duration) -> TailSummary {
        if let Ok(forget_now) = self.out.cut(&self.metrics) {
            self.forget(forget_now);
        }
        let deadline = Instant::now() + timeout;
        while self.out.unacked() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match acks.recv_timeout(left) {
                Ok(seq) => self.apply_acks(seq),
                Err(_) => break,
            }
        }
        self.drain_acks(acks);
        let unacknowledged = self.out.unacked();
        if unacknowledged > 0 {
            tracing::warn!(
                "{unacknowledged} batches were not acknowledged within {timeout:?}: they are read \
                 and sent again at the next start"
            );
        }
        self.checkpoints_dirty = true;
        self.submit_checkpoints();
        for stream in self.streams.values_mut() {
            count_line_counters(stream, &self.metrics);
        }
        self.writer.finish();
        TailSummary {
            unacknowledged_batches: unacknowledged,
        }
    }
}

fn count_line_counters(stream: &mut Stream, metrics: &AgentMetrics) {
    let mut counters = stream.splitter.take_counters();
    if let Some(m) = &mut stream.multiline {
        let more = m.take_counters();
        counters.truncated += more.truncated;
        counters.discarded_bytes += more.discarded_bytes;
        metrics.multiline_events.add(more.events);
    }
    metrics.lines_truncated.add(counters.truncated);
}

/// Reads one file from its offset into batches, at most about `budget` bytes.
fn read_stream(
    key: u64,
    stream: &mut Stream,
    out: &mut Output,
    buf: &mut [u8],
    budget: usize,
    now: Instant,
    metrics: &AgentMetrics,
) -> Result<ReadOutcome, ShipperGone> {
    let mut consumed_total = 0usize;
    let result = loop {
        if out.is_full() {
            if !out.window_open() {
                break ReadOutcome::Data;
            }
            out.cut(metrics)?;
            if !out.window_open() {
                break ReadOutcome::Data;
            }
        }
        let n = match stream.file.read_at(buf, stream.read_offset) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break ReadOutcome::Failed(e),
        };
        let data = &buf[..n];
        let (source, emitted, multiline) = (
            &stream.source,
            &mut stream.emitted_offset,
            &mut stream.multiline,
        );
        let consumed =
            stream.splitter.split(
                data,
                stream.read_offset,
                |line, end, truncated| match multiline {
                    Some(m) => m.push(line, end, truncated, now, |event, e, t| {
                        out.push(key, source, event, e, t);
                        *emitted = e;
                    }),
                    None => {
                        out.push(key, source, line, end, truncated);
                        *emitted = end;
                    }
                },
            );
        stream.read_offset += consumed as u64;
        consumed_total += consumed;
        if consumed == 0 || n < buf.len() || consumed_total >= budget {
            break if consumed_total > 0 {
                ReadOutcome::Data
            } else {
                ReadOutcome::Idle
            };
        }
    };
    metrics.bytes_read.add(consumed_total as u64);
    count_line_counters(stream, metrics);
    Ok(result)
}

/// Where an open file is now (after renames), as the kernel knows it; "(deleted)" is appended
/// for a deleted one.
/// The deepest directory of a glob pattern without wildcards: `/var/log` for
/// `/var/log/app.log` and for `/var/log/*/app.log`.
fn literal_directory(pattern: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    let mut components = Path::new(pattern).components().peekable();
    while let Some(component) = components.next() {
        let text = component.as_os_str().to_string_lossy();
        if components.peek().is_none() || text.contains(['*', '?', '[']) {
            break;
        }
        dir.push(component);
    }
    dir
}

fn current_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// The offset just past the last LF of a file of `size` bytes, looked for in its last
/// `buf.len()` bytes: where `start_at = "end"` starts, so that the first line read is whole.
/// With no LF there, the start of the file if all of it was looked at, else its end.
fn end_of_last_line(file: &File, size: u64, buf: &mut [u8]) -> u64 {
    let window = size.min(buf.len() as u64) as usize;
    let start = size - window as u64;
    match file.read_at(&mut buf[..window], start) {
        Ok(n) => match memchr::memrchr(b'\n', &buf[..n]) {
            Some(lf) => start + lf as u64 + 1,
            None if start == 0 => 0,
            None => size,
        },
        Err(_) => size,
    }
}

/// The first regular file in `dir` for which `accept((dev, ino), first bytes)` holds, opened,
/// with its path and metadata.
fn find_in_dir(
    dir: &Path,
    head: &mut Vec<u8>,
    head_len: usize,
    mut accept: impl FnMut((u64, u64), &[u8]) -> bool,
) -> Option<(File, PathBuf, std::fs::Metadata)> {
    let mut seen = HashSet::new();
    for dirent in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = dirent.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if read_head(&file, head_len, head).is_ok() && accept((meta.dev(), meta.ino()), head) {
            return Some((file, path, meta));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_watched_directory_of_a_glob_is_its_deepest_literal_one() {
        for (pattern, dir) in [
            ("/var/log/app.log", "/var/log"),
            ("/var/log/app*.log", "/var/log"),
            ("/var/log/*/app.log", "/var/log"),
            ("/srv/[ab]/x/*.log", "/srv"),
            ("app.log", ""),
        ] {
            assert_eq!(literal_directory(pattern), PathBuf::from(dir), "{pattern}");
        }
    }

    #[test]
    fn start_at_end_starts_after_the_last_whole_line() {
        let mut file = tempfile::tempfile().unwrap();
        let mut buf = vec![0; 8];
        assert_eq!(end_of_last_line(&file, 0, &mut buf), 0);
        file.write_all(b"one\ntwo\nthr").unwrap();
        assert_eq!(end_of_last_line(&file, 11, &mut buf), 8);
        let mut long = tempfile::tempfile().unwrap();
        long.write_all(b"no line end in the last eight bytes")
            .unwrap();
        assert_eq!(end_of_last_line(&long, 35, &mut buf), 35);
        let mut short = tempfile::tempfile().unwrap();
        short.write_all(b"partial").unwrap();
        assert_eq!(end_of_last_line(&short, 7, &mut buf), 0);
    }
}
